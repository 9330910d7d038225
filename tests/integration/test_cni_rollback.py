"""``podbgp-cni`` ADD is all or nothing, and works where ``/proc/sys`` is read-only.

Issue 14, found by running docker-compose: in a container ``/proc/sys`` is read-only, so the old
sysctl write for proxy ARP failed halfway through ADD; the half-made veth stayed behind and every
retried ADD then failed with ``add address ... to eth0: No such device``. Here, with real
namespaces, a real kernel and the real file datastore:

* a step of ADD fails halfway (the proxy-ARP setting, the pod's address, the host route, each in
  turn) → nothing is left behind: no veth on the node, no interface in the pod, no route, no
  address allocation → the next ADD succeeds and the pod pings its node;
* an attachment half-made by an earlier plugin run that died (veth pair there, nothing
  configured) is rebuilt by the next ADD;
* ADD from a process whose ``/proc/sys`` is mounted read-only (as in a container) succeeds, with
  proxy ARP on the host end.

The failure is injected by a small driver that runs the plugin's own entry point after making
one kernel call of :class:`felix.kernel.netlink.Netlink` fail with EPERM, as a kernel refusing it
would; everything else is the product.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest

from podbgp.cni.plugin import host_veth_name
from tests.integration.test_cni import REPO, cni, node, pod_namespace
from tests.support.kernel import links, ping, routes
from tests.support.netns import run

pytestmark = pytest.mark.netns
__all__ = ["node"]  # the fixture, shared with test_cni

DRIVER = """
import errno, os, sys
from felix.kernel import netlink
from podbgp.cni import main

method, side = os.environ["FAULT_METHOD"], os.environ["FAULT_SIDE"]
original = getattr(netlink.Netlink, method)

async def refused(self, *args, **kwargs):
    if (side == "host") == (self.netns is None):
        raise netlink.KernelError(errno.EPERM, f"{method} (injected)")
    return await original(self, *args, **kwargs)

setattr(netlink.Netlink, method, refused)
sys.exit(main.run(sys.stdin.buffer.read(), os.environ, sys.stdout))
"""


def cni_with_fault(
    node: SimpleNamespace, container: str, netns: str, method: str, side: str
) -> tuple[int, Any, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": str(REPO),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
        "FAULT_METHOD": method,
        "FAULT_SIDE": side,
    }
    argv = ["ip", "netns", "exec", node.ns, sys.executable, "-c", DRIVER]
    proc = subprocess.run(
        argv, input=json.dumps(node.conf).encode(), capture_output=True, env=env, timeout=30,
        check=False,
    )  # fmt: skip
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None, proc.stderr.decode()


def podbgp_links(ns: str) -> list[str]:
    return sorted(name for name in links(ns) if name.startswith("pbg"))


@pytest.mark.parametrize(
    ("method", "side"),
    [
        ("set_ipv4_conf", "host"),  # the proxy-ARP "sysctl" on the host end
        ("add_address", "pod"),  # the pod's address
        ("replace_route", "host"),  # the host's /32 route, the last step
    ],
)
def test_a_failed_add_leaves_nothing_behind_and_the_next_add_succeeds(
    node: SimpleNamespace, method: str, side: str
) -> None:
    pod, path = pod_namespace(node)
    status, error, err = cni_with_fault(node, "ctr-1", path, method, side)
    assert status == 1, err
    assert error["code"] == 5 and f"{method} (injected)" in error["msg"], error
    assert "deleted pbg" in error["details"] and "released the address" in error["details"]
    # Nothing left: no veth on the node, no interface in the pod, no pod route, no allocation.
    assert podbgp_links(node.ns) == []
    assert "eth0" not in links(pod)
    assert not any(" dev pbg" in r for r in routes(node.ns))
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert status == 1 and error["code"] == 3 and "no address is allocated" in error["msg"]

    # The runtime's retry, the cause gone: a complete attachment, the pool's first address.
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    ip = result["ips"][0]["address"].split("/")[0]
    # The lowest address of the node's /26 block: the failed ADD's address was released.
    assert int(ipaddress.ip_address(ip)) % 64 == 1, ip
    assert podbgp_links(node.ns) == [host_veth_name("ctr-1", "eth0")]
    assert cni(node, "CHECK", "ctr-1", path)[:2] == (0, None)
    assert ping(pod, "192.0.2.1") and ping(node.ns, ip)


def test_a_failed_repeat_add_keeps_the_address_it_did_not_assign(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    status, first, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    run(pod, "ip", "route", "del", "default")  # broken: the repeated ADD rebuilds it ...
    status, error, err = cni_with_fault(node, "ctr-1", path, "add_address", "pod")  # ... and fails
    assert status == 1 and "released" not in error["details"], error
    assert podbgp_links(node.ns) == []
    status, again, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    assert again["ips"] == first["ips"]  # the first ADD's address, never handed out in between


def test_add_rebuilds_an_attachment_half_made_by_a_plugin_that_died(
    node: SimpleNamespace,
) -> None:
    """What a SIGKILLed plugin leaves: the veth pair, nothing configured (the issue's retry bug)."""
    pod, path = pod_namespace(node)
    host = host_veth_name("ctr-1", "eth0")
    run(node.ns, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", pod)
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    ip = result["ips"][0]["address"].split("/")[0]
    assert cni(node, "CHECK", "ctr-1", path)[:2] == (0, None)
    assert ping(pod, "192.0.2.1") and ping(node.ns, ip)


def test_add_works_with_a_read_only_proc_sys_as_in_a_container(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": str(REPO),
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "ctr-ro",
        "CNI_NETNS": path,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    # A private mount namespace whose /proc/sys is read-only, as Docker and podman mount it.
    script = (
        "mount --make-rprivate / && mount --bind /proc/sys /proc/sys && "
        "mount -o remount,bind,ro /proc/sys && "
        "! (echo 1 > /proc/sys/net/ipv4/conf/lo/forwarding) 2>/dev/null && "
        f'exec nsenter --net=/run/netns/{node.ns} "$0" -m podbgp.cni.main'
    )
    proc = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, sys.executable],
        input=json.dumps(node.conf).encode(), capture_output=True, env=env, timeout=30,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    ip = json.loads(proc.stdout)["ips"][0]["address"].split("/")[0]
    host = host_veth_name("ctr-ro", "eth0")
    assert run(node.ns, "sysctl", "-n", f"net.ipv4.conf.{host}.proxy_arp").stdout.strip() == "1"
    assert run(node.ns, "sysctl", "-n", f"net.ipv4.neigh.{host}.proxy_delay").stdout.strip() == "0"
    # Proxy ARP at work: the pod resolves an address on the node's uplink subnet through it.
    run(pod, "ip", "neigh", "flush", "dev", "eth0")
    assert ping(pod, "192.0.2.1") and ping(node.ns, ip)
