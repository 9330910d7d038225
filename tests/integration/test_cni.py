"""``podbgp-cni`` as a container runtime runs it: a separate process per call, inside the node's
network namespace, config on stdin, ``CNI_*`` in the environment, JSON on stdout.

Uses the ``file`` datastore (a temporary YAML directory with one IPPool; allocations persist in
its state file), so each test is self-contained; the cluster test uses the plugin against etcd.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from podbgp.cni.plugin import GATEWAY, host_veth_name
from tests.support.kernel import links, ping, routes
from tests.support.netns import NetnsFactory, run

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
POOL = """apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, blockSize: 26}
"""


def file_datastore(path: Path, resources: str) -> dict[str, str]:
    """A ``file`` datastore in a new directory ``path`` holding ``resources`` (YAML)."""
    path.mkdir()
    (path / "cluster.yaml").write_text(resources)
    return {"type": "file", "path": str(path)}


def cni_node(
    factory: NetnsFactory, tmp_path: Path, resources: str, node_addrs: list[str],
    peer_addrs: list[str],
) -> SimpleNamespace:  # fmt: skip
    """A node namespace with an uplink ``up0`` to a peer namespace, a file datastore holding
    ``resources``, and the plugin's network config for ``node-1`` (``conf``)."""
    ns = factory.namespace("n")
    peer = factory.namespace("q")
    factory.veth(ns, peer, node_addrs, peer_addrs, "up0", "up0")
    conf = {
        "cniVersion": "1.0.0",
        "name": "podbgp",
        "type": "podbgp-cni",
        "nodeName": "node-1",
        "datastore": file_datastore(tmp_path / "cluster", resources),
    }
    return SimpleNamespace(ns=ns, conf=conf, factory=factory)


@pytest.fixture
def node(netns_factory: NetnsFactory, tmp_path: Path) -> SimpleNamespace:
    """A node namespace with an uplink, and a file datastore holding one pool."""
    return cni_node(netns_factory, tmp_path, POOL, ["192.0.2.1/24"], ["192.0.2.2/24"])


def cni(
    node: SimpleNamespace, command: str, container: str = "", netns: str = "",
    stdin: bytes | None = None, ifname: str = "eth0",
) -> tuple[int, Any, str]:  # fmt: skip
    """Run the plugin once; returns (exit status, parsed stdout or None, stderr)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": str(REPO),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": netns,
        "CNI_IFNAME": ifname,
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
    }
    data = json.dumps(node.conf).encode() if stdin is None else stdin
    argv = ["ip", "netns", "exec", node.ns, sys.executable, "-m", "podbgp.cni.main"]
    proc = subprocess.run(argv, input=data, capture_output=True, env=env, timeout=30, check=False)
    out = proc.stdout.decode().strip()
    return proc.returncode, json.loads(out) if out else None, proc.stderr.decode()


def pod_namespace(node: SimpleNamespace) -> tuple[str, str]:
    ns = node.factory.namespace("p")
    return ns, f"/run/netns/{ns}"


def test_add_wires_the_pod_and_a_second_add_is_idempotent(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    address = result["ips"][0]["address"]
    ip = address.split("/")[0]
    assert address.endswith("/32") and ipaddress.ip_address(ip) in ipaddress.ip_network(
        "10.244.0.0/16"
    )
    assert result["ips"][0]["gateway"] == GATEWAY
    host = host_veth_name("ctr-1", "eth0")
    assert [i["name"] for i in result["interfaces"]] == [host, "eth0"]
    assert result["interfaces"][1]["sandbox"] == path
    assert f"inet {address}" in run(pod, "ip", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"default via {GATEWAY} dev eth0" in run(pod, "ip", "route").stdout
    assert f"{ip} dev {host} scope link" in routes(node.ns)
    host_link = links(node.ns)[host]
    assert host_link["ifalias"].startswith(f"podbgp:{ip} ")
    assert run(node.ns, "sysctl", "-n", f"net.ipv4.conf.{host}.proxy_arp").stdout.strip() == "1"
    assert ping(node.ns, ip) and ping(pod, "192.0.2.1")

    again_status, again, _ = cni(node, "ADD", "ctr-1", path)
    assert again_status == 0 and again == result  # same address, same interfaces
    assert [n for n in links(node.ns) if n.startswith("pbg")] == [host]
    check_status, check_out, err = cni(node, "CHECK", "ctr-1", path)
    assert (check_status, check_out) == (0, None), err


def test_pods_get_distinct_addresses_that_persist_across_plugin_runs(node: SimpleNamespace) -> None:
    pods = [pod_namespace(node) for _ in range(3)]
    ips = []
    for n, (_ns, path) in enumerate(pods):
        status, result, err = cni(node, "ADD", f"ctr-{n}", path)
        assert status == 0, err
        ips.append(result["ips"][0]["address"].split("/")[0])
    assert len(set(ips)) == 3
    run(node.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    assert ping(pods[0][0], ips[1]) and ping(pods[2][0], ips[0])
    # The allocation is recorded: a fresh plugin process repeating ADD gets the same address.
    status, result, _ = cni(node, "ADD", "ctr-1", pods[1][1])
    assert status == 0 and result["ips"][0]["address"] == f"{ips[1]}/32"


def test_del_removes_everything_and_releases_the_address(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    _, result, _ = cni(node, "ADD", "ctr-1", path)
    ip = result["ips"][0]["address"].split("/")[0]
    status, out, err = cni(node, "DEL", "ctr-1", path)
    assert (status, out) == (0, None), err
    host = host_veth_name("ctr-1", "eth0")
    assert host not in links(node.ns)
    assert "eth0" not in links(pod)
    assert not any(r.startswith(f"{ip} ") for r in routes(node.ns))
    # Released: the next pod may have it (the lowest free address goes first).
    _pod2, path2 = pod_namespace(node)
    _, result2, _ = cni(node, "ADD", "ctr-2", path2)
    assert result2["ips"][0]["address"] == f"{ip}/32"
    assert cni(node, "DEL", "ctr-1", path)[:2] == (0, None)  # twice: still fine


def test_del_of_an_unknown_container_succeeds(node: SimpleNamespace) -> None:
    assert cni(node, "DEL", "never-added", "")[:2] == (0, None)
    assert cni(node, "DEL", "never-added", "/run/netns/does-not-exist")[:2] == (0, None)


def test_check_reports_what_is_broken(node: SimpleNamespace) -> None:
    pod, path = pod_namespace(node)
    assert cni(node, "ADD", "ctr-1", path)[0] == 0
    run(pod, "ip", "route", "del", "default")
    status, error, _ = cni(node, "CHECK", "ctr-1", path)
    assert status == 1 and error["code"] == 5
    assert "default route" in error["details"]
    status, error, _ = cni(node, "CHECK", "ctr-unknown", path)
    assert status == 1 and error["code"] == 3


@pytest.mark.parametrize("stdin", [b"", b"{", b"\x00\xff garbage", b'{"cniVersion": 7}', b"[]"])
def test_malformed_stdin_gives_a_cni_error_object_not_a_traceback(
    node: SimpleNamespace, stdin: bytes
) -> None:
    _pod, path = pod_namespace(node)
    status, error, err = cni(node, "ADD", "ctr-1", path, stdin=stdin)
    assert status == 1
    assert error["code"] in (6, 7) and error["msg"]
    assert "Traceback" not in err


def test_add_into_a_missing_namespace_is_unknown_container(node: SimpleNamespace) -> None:
    status, error, _ = cni(node, "ADD", "ctr-1", "/run/netns/pb-no-such-namespace")
    assert status == 1 and error["code"] == 3


def test_version(node: SimpleNamespace) -> None:
    status, out, _ = cni(node, "VERSION", stdin=b'{"cniVersion": "1.0.0"}')
    assert status == 0
    assert out["cniVersion"] == "1.0.0" and "1.0.0" in out["supportedVersions"]


def test_unreachable_datastore_asks_the_runtime_to_try_again(node: SimpleNamespace) -> None:
    _pod, path = pod_namespace(node)
    node.conf["datastore"] = {"type": "etcd", "endpoints": ["http://127.0.0.1:1"]}
    for command in ("ADD", "DEL"):
        status, error, _ = cni(node, command, "ctr-1", path)
        assert status == 1 and error["code"] == 11, error


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0"])
def test_older_cni_versions_get_results_shaped_for_them(
    node: SimpleNamespace, version: str
) -> None:
    """kubelet 1.20's libcni (and older containerd/CRI-O) speak at most CNI 0.4.0."""
    node.conf["cniVersion"] = version
    pod, path = pod_namespace(node)
    status, result, err = cni(node, "ADD", "ctr-1", path)
    assert status == 0, err
    assert result["cniVersion"] == version
    [ip] = result["ips"]
    assert ip["version"] == "4" and ip["interface"] == 1 and ip["gateway"] == GATEWAY
    assert result["interfaces"][1] == {"name": "eth0", "mac": result["interfaces"][1]["mac"],
                                       "sandbox": path}  # fmt: skip
    assert ping(pod, "192.0.2.1")
    status, out, err = cni(node, "CHECK", "ctr-1", path)
    if version == "0.4.0":
        assert (status, out) == (0, None), err
    else:  # CHECK arrived with 0.4.0
        assert status == 1 and out["code"] == 1 and out["cniVersion"] == version
    assert cni(node, "DEL", "ctr-1", path)[:2] == (0, None)
    assert host_veth_name("ctr-1", "eth0") not in links(node.ns)
