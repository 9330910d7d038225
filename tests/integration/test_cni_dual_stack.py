"""``podbgp-cni`` on a dual-stack node: one IPv4 and one IPv6 address per pod, in real namespaces.

The file datastore holds an IPv4 and an IPv6 pool and the node with an address of each family,
so the first ADD claims a block of each family. The plugin runs as a runtime runs it (a
separate process per call, see test_cni.py).
"""

from __future__ import annotations

import ipaddress
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from podbgp.cni.plugin import GATEWAY, GATEWAY_V6, HOST_VETH_MAC, host_veth_name
from tests.integration.test_cni import cni, cni_node, file_datastore, pod_namespace
from tests.integration.test_cni_rollback import cni_with_fault
from tests.support.kernel import links, ping, routes
from tests.support.netns import NetnsFactory, run

pytestmark = pytest.mark.netns

CLUSTER = """apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods-v4}
spec: {cidr: 10.244.0.0/16, blockSize: 26}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods-v6}
spec: {cidr: "fd00:10::/64", blockSize: 122}
---
apiVersion: podbgp/v1
kind: Node
metadata: {name: node-1}
spec:
  addresses: [192.0.2.1/24, "2001:db8::1/64"]
"""


@pytest.fixture
def node(netns_factory: NetnsFactory, tmp_path: Path) -> SimpleNamespace:
    """A dual-stack node namespace with an uplink, and a file datastore with both pools."""
    return cni_node(
        netns_factory, tmp_path, CLUSTER, ["192.0.2.1/24", "2001:db8::1/64"],
        ["192.0.2.2/24", "2001:db8::2/64"],
    )  # fmt: skip


def addresses(result: dict[str, object]) -> list[str]:
    return [str(e["address"]).split("/")[0] for e in result["ips"]]  # type: ignore[attr-defined]


def test_dual_stack_add_check_and_repeated_add(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    v4, v6 = result["ips"]
    assert v4["address"].endswith("/32") and v4["gateway"] == GATEWAY
    assert v6["address"].endswith("/128") and v6["gateway"] == GATEWAY_V6
    ip4, ip6 = addresses(result)
    assert ipaddress.ip_address(ip4) in ipaddress.ip_network("10.244.0.0/16")
    assert ipaddress.ip_address(ip6) in ipaddress.ip_network("fd00:10::/64")
    assert result["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    host = host_veth_name("ctr-1", "eth0")
    # Pod side: both addresses (the IPv6 one usable at once), a default route per family.
    assert f"inet6 {ip6}/128 scope global nodad" in run(pod, "ip", "-6", "addr").stdout
    assert f"default via {GATEWAY_V6} dev eth0" in run(pod, "ip", "-6", "route").stdout
    assert f"default via {GATEWAY} dev eth0" in run(pod, "ip", "-4", "route").stdout
    neigh = run(pod, "ip", "-6", "neigh", "show", "dev", "eth0").stdout
    assert f"{GATEWAY_V6} lladdr {HOST_VETH_MAC} PERMANENT" in neigh
    # Host side: the gateway MAC, a route per address (felix's protocol), both in the alias.
    host_link = links(node.ns)[host]
    assert host_link["address"] == HOST_VETH_MAC
    assert host_link["ifalias"].startswith(f"podbgp:{ip4},{ip6} ")
    host_routes = routes(node.ns)
    assert f"{ip4} dev {host} scope link" in host_routes
    assert any(r.startswith(f"{ip6} dev {host} ") for r in host_routes), host_routes
    assert ping(pod, "2001:db8::1") and ping(node.ns, ip6)
    assert ping(pod, "192.0.2.1") and ping(node.ns, ip4)

    again_status, again, _ = cni(node, "ADD", "ctr-1", path)
    assert again_status == 0 and again == result  # same addresses, same interfaces
    assert [n for n in links(node.ns) if n.startswith("pbg")] == [host]
    check_status, check_out, err = cni(node, "CHECK", "ctr-1", path)
    assert (check_status, check_out) == (0, None), err
    # CHECK looks at each family.
    run(pod, "ip", "-6", "route", "del", "default")
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert status == 1 and error["code"] == 5
    assert error["msg"] == f"pod has no default route via {GATEWAY_V6}"
    run(node.ns, "ip", "-6", "route", "del", f"{ip6}/128")
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert f"host route to {ip6} via {host} is missing" in error["details"]
    # A repeated ADD repairs the attachment (same addresses).
    status, repaired, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0 and addresses(repaired) == [ip4, ip6], err
    assert cni(node, "CHECK", "ctr-1", path)[:2] == (0, None)


def test_dual_stack_pods_on_one_node_reach_each_other(node: SimpleNamespace) -> None:
    run(node.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run(node.ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    pods = [pod_namespace(node) for _ in range(2)]
    ips = []
    for n, (_ns, path) in enumerate(pods):
        status, result, err = cni(node, "ADD", f"ctr-{n}", path)
        assert status == 0, err
        ips.append(addresses(result))
    (a4, a6), (b4, b6) = ips
    assert a6 != b6 and a4 != b4
    assert ping(pods[0][0], b6) and ping(pods[1][0], a6)
    assert ping(pods[0][0], b4) and ping(pods[1][0], a4)


def test_dual_stack_del_releases_both_addresses(node: SimpleNamespace) -> None:
    _pod, path = pod_namespace(node)
    _, result, _ = cni(node, "ADD", "ctr-1", path)
    ip4, ip6 = addresses(result)
    status, out, err = cni(node, "DEL", "ctr-1", path)
    assert (status, out) == (0, None), err
    assert host_veth_name("ctr-1", "eth0") not in links(node.ns)
    assert not any(r.startswith((f"{ip4} ", f"{ip6} ")) for r in routes(node.ns))
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert status == 1 and error["code"] == 3  # no address left for that handle
    # Both released: the next pod gets them (the lowest free address of each block goes first).
    _pod2, path2 = pod_namespace(node)
    _, result2, _ = cni(node, "ADD", "ctr-2", path2)
    assert addresses(result2) == [ip4, ip6]
    assert cni(node, "DEL", "ctr-1", path)[:2] == (0, None)  # twice: still fine


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_older_cni_versions_get_both_addresses(node: SimpleNamespace, version: str) -> None:
    node.conf["cniVersion"] = version
    pod, path = pod_namespace(node)
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    assert [(e["version"], e["interface"]) for e in result["ips"]] == [("4", 1), ("6", 1)]
    assert ping(pod, "2001:db8::1")
    assert cni(node, "DEL", "ctr-1", path)[:2] == (0, None)


@pytest.mark.parametrize(("method", "side"), [("replace_route", "host"), ("add_address", "pod")])
def test_a_failed_dual_stack_add_rolls_back_both_families(
    node: SimpleNamespace, method: str, side: str
) -> None:
    pod, path = pod_namespace(node)
    status, error, err = cni_with_fault(node, "ctr-1", path, method, side)
    assert status == 1 and error["code"] == 5, err
    assert "released the address" in error["details"]
    assert not [n for n in links(node.ns) if n.startswith("pbg")]
    assert "eth0" not in links(pod)
    assert not routes(node.ns)
    assert cni(node, "CHECK", "ctr-1", path)[1]["code"] == 3  # neither address is held
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    assert [ipaddress.ip_address(a).version for a in addresses(result)] == [4, 6]
    assert ping(pod, "2001:db8::1") and ping(pod, "192.0.2.1")


def test_ipv6_works_at_once_where_duplicate_address_detection_is_on(
    node: SimpleNamespace,
) -> None:
    """The kernel default (accept_dad=1) would leave the host end's link-local address
    tentative for a second or two after ADD: no ND answers for the gateway, no solicitations
    for the pod's address. ADD adds the gateway address itself, without DAD."""
    pod, path = pod_namespace(node)
    for ns in (node.ns, pod):
        for key in ("all", "default"):
            run(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=1")
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    _ip4, ip6 = addresses(result)
    host = host_veth_name("ctr-1", "eth0")
    shown = run(node.ns, "ip", "-6", "addr", "show", "dev", host).stdout
    assert f"inet6 {GATEWAY_V6}/64 scope link nodad" in shown and "tentative" not in shown
    # The very first packet each way gets through (one echo, no retry).
    assert ping(node.ns, ip6, count=1) and ping(pod, "2001:db8::1", count=1)
    # CHECK notices a host end without the gateway address.
    run(node.ns, "ip", "-6", "addr", "del", f"{GATEWAY_V6}/64", "dev", host)
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert status == 1 and f"{host} lacks the gateway {GATEWAY_V6}" in error["details"]


def test_add_time_single_and_dual_stack_measured(node: SimpleNamespace, tmp_path: Path) -> None:
    """ADD wall time per pod, dual stack against IPv4 only (printed with ``pytest -s``; the
    plugin is a fresh Python process per call, as a runtime runs it)."""
    timings: dict[str, list[float]] = {}
    for label, cluster in (("dual-stack", CLUSTER), ("ipv4-only", CLUSTER.split("---")[0])):
        node.conf["datastore"] = file_datastore(tmp_path / label, cluster)
        seen: set[tuple[str, ...]] = set()
        for n in range(8):
            _pod, path = pod_namespace(node)
            start = time.monotonic()
            status, result, err = cni(node, "ADD", f"{label}-{n}", path)
            timings.setdefault(label, []).append(time.monotonic() - start)
            assert status == 0, err
            seen.add(tuple(addresses(result)))
        assert len(seen) == 8
        assert {len(a) for a in seen} == {2 if label == "dual-stack" else 1}
    for label, values in timings.items():
        values.sort()
        print(
            f"\nCNI ADD {label}: min {values[0] * 1000:.0f} ms, median "
            f"{statistics.median(values) * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms (n=8)"
        )
