"""A dual-stack cluster in network namespaces: real etcd, ``podbgp node`` processes with an IPv4
and an IPv6 address each, and ``podbgp-cni`` pods with one address of each family.

Two subnets joined by a router namespace — 192.0.2.0/24 + 2001:db8:1::/64 with n1 and n2,
198.51.100.0/24 + 2001:db8:2::/64 with n3 — and an IPv4 and an IPv6 IPPool. Each node claims a
block of each family, meshes over both families (a session between the IPv4 addresses and one
between the IPv6 addresses), and originates its IPv6 block with its IPv6 address as next hop.
felix runs in every node: pods ping each other over both families, directly within a subnet
and through ``vxlan.podbgp`` / ``vxlan-v6.podbgp`` across (both pools ``CrossSubnet``).
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from podbgp.cni.plugin import host_veth_name
from tests.integration.test_cluster_dataplane import (
    ETCD,
    REPO,
    Cluster,
    cni,
    established,
    running_cluster,
)
from tests.support.kernel import ping, route_get, routes
from tests.support.netns import NetnsFactory, run, wait_until

pytestmark = pytest.mark.netns

NODES = {
    "n1": ("192.0.2.11/24", "2001:db8:1::11/64"),
    "n2": ("192.0.2.12/24", "2001:db8:1::12/64"),
    "n3": ("198.51.100.13/24", "2001:db8:2::13/64"),
}
ROUTER = {
    "192.0.2": ("192.0.2.254", "2001:db8:1::254"),
    "198.51.100": ("198.51.100.254", "2001:db8:2::254"),
}
RESOURCES = """
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods-v4}
spec: {cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods-v6}
spec: {cidr: "fd00:244::/112", blockSize: 120, vxlanModeV6: CrossSubnet}
"""


def bare(address: str) -> str:
    return address.split("/")[0]


def build_dual_stack(factory: NetnsFactory) -> tuple[str, dict[str, str]]:
    router = factory.namespace("r")
    run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run(router, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    ns = {name: factory.namespace(name) for name in NODES}
    for subnet, (gw4, gw6) in ROUTER.items():
        members = [m for m, (v4, _v6) in NODES.items() if v4.startswith(subnet + ".")]
        lan = factory.lan({ns[m]: list(NODES[m]) for m in members}, ifname="eth0")
        link = factory.veth(router, lan.bridge_ns, [f"{gw4}/24", f"{gw6}/64"], [])
        run(lan.bridge_ns, "ip", "link", "set", link.ifname_b, "master", lan.bridge)
        for m in members:
            run(ns[m], "ip", "route", "add", "default", "via", gw4)
            run(ns[m], "ip", "-6", "route", "add", "default", "via", gw6)
    return router, ns


@dataclass
class DualStackCluster(Cluster):
    def node_config(self, name: str) -> Path:
        path = self.workdir / f"{name}.yaml"
        v4, v6 = NODES[name]
        config = {
            "nodeName": name,
            "address": v4,
            "addressV6": v6,
            "datastore": {"type": "etcd", "endpoints": [ETCD]},
            "api": {"listen": "127.0.0.1:9179"},
            "felix": {"resyncInterval": 2},
            "logLevel": "info",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def podbgp(self, *args: str) -> str:
        env = ["env", f"PYTHONPATH={REPO}", f"PODBGP_ETCD_ENDPOINTS={ETCD}"]
        return run(self.router, *env, sys.executable, "-m", "podbgp", *args, timeout=30).stdout


def node_blocks(cluster: Cluster, name: str) -> dict[int, str]:
    info = cluster.api(name, "/v1/node") or {}
    blocks = (info.get("ipam") or {}).get("blocks") or []
    return {ipaddress.ip_network(b).version: b for b in blocks}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DualStackCluster]:
    def ready(c: DualStackCluster) -> bool:
        # Two sessions with each other node: one per family.
        return all(established(c, n, 4) and len(node_blocks(c, n)) == 2 for n in NODES)

    with running_cluster(
        tmp_path_factory, "dual", RESOURCES, NODES, ready, DualStackCluster, build_dual_stack
    ) as c:
        for name in NODES:
            pod = c.factory.namespace("p")
            result = json.loads(cni(c, "ADD", name, 0, pod))
            c.pods[name] = [(pod, bare(e["address"])) for e in result["ips"]]
        yield c


def test_each_node_registers_both_addresses_and_owns_a_block_of_each_family(
    cluster: DualStackCluster,
) -> None:
    for name, addresses in NODES.items():
        info = cluster.api(name, "/v1/node")
        assert info["addresses"] == list(addresses)
        assert info["routerId"] == bare(addresses[0])
        assert cluster.api(name, "/v1/status")["addresses"] == list(addresses)
        blocks = node_blocks(cluster, name)
        assert ipaddress.ip_network(blocks[4]).subnet_of(ipaddress.ip_network("10.244.0.0/16"))
        v6 = ipaddress.ip_network(blocks[6])
        assert v6.prefixlen == 120 and v6.subnet_of(ipaddress.ip_network("fd00:244::/112"))
    table = cluster.podbgp("get", "nodes")
    for name, (v4, v6) in NODES.items():
        [row] = [ln for ln in table.splitlines() if ln.startswith(f"| {name} ")]
        blocks = node_blocks(cluster, name)
        assert f"| {v4},{v6} " in row and f"| {blocks[4]},{blocks[6]} " in row
    docs = json.loads(cluster.podbgp("get", "nodes", "-o", "json"))
    assert {d["metadata"]["name"]: d["status"]["addresses"] for d in docs} == {
        n: list(a) for n, a in NODES.items()
    }


def test_the_mesh_has_a_session_per_family_and_v6_blocks_go_via_v6_next_hops(
    cluster: DualStackCluster,
) -> None:
    blocks = {name: node_blocks(cluster, name) for name in NODES}
    for name in NODES:
        peers = {p["address"]: p for p in cluster.api(name, "/v1/peers")}
        want = {bare(a) for other, pair in NODES.items() if other != name for a in pair}
        assert set(peers) == want
        assert {p["state"] for p in peers.values()} == {"Established"}
        assert {p["type"] for p in peers.values()} == {"mesh"}

        def learned(name: str = name) -> dict[str, Any] | None:
            routes = {r["prefix"]: r for r in cluster.api(name, "/v1/routes") or []}
            want = {b for other in NODES if other != name for b in blocks[other].values()}
            return routes if want <= set(routes) else None

        routes = wait_until(learned, timeout=20)
        for other, (v4, v6) in NODES.items():
            if other == name:
                continue
            assert routes[blocks[other][4]]["nextHop"] == bare(v4)
            assert routes[blocks[other][6]]["nextHop"] == bare(v6)
            # Each family over its own session.
            assert routes[blocks[other][6]]["fromPeer"] == bare(v6)
            assert routes[blocks[other][4]]["fromPeer"] == bare(v4)


def test_pods_get_an_address_of_each_family_from_their_nodes_blocks(
    cluster: DualStackCluster,
) -> None:
    pod = cluster.factory.namespace("p")
    result = json.loads(cni(cluster, "ADD", "n2", 9, pod))
    ip4, ip6 = (ipaddress.ip_interface(e["address"]) for e in result["ips"])
    blocks = node_blocks(cluster, "n2")
    assert ip4.ip in ipaddress.ip_network(blocks[4]) and ip4.network.prefixlen == 32
    assert ip6.ip in ipaddress.ip_network(blocks[6]) and ip6.network.prefixlen == 128
    cni(cluster, "DEL", "n2", 9, pod)


def test_every_pod_pings_every_other_pod_over_both_families(cluster: DualStackCluster) -> None:
    pods = cluster.all_pods()  # (node, pod namespace, address): one per family per node
    assert sorted(ipaddress.ip_address(ip).version for _n, _ns, ip in pods) == [4, 4, 4, 6, 6, 6]

    def converged() -> bool:
        return all(ping(src_ns, ip) for _n, src_ns, _ip in pods[:1] for _m, _ns, ip in pods)

    wait_until(converged, timeout=30)
    failures = [
        f"{src}:{src_ip} -> {dst}:{dst_ip}"
        for src, src_ns, src_ip in pods
        for dst, _dst_ns, dst_ip in pods
        if src != dst
        and ipaddress.ip_address(src_ip).version == ipaddress.ip_address(dst_ip).version
        and not ping(src_ns, dst_ip)
    ]
    assert failures == []


def test_same_subnet_goes_direct_and_cross_subnet_through_vxlan_in_both_families(
    cluster: DualStackCluster,
) -> None:
    n1 = cluster.ns["n1"]
    pod = {name: {ipaddress.ip_address(ip).version: ip for _ns, ip in cluster.pods[name]}
           for name in NODES}  # fmt: skip
    assert f"via {bare(NODES['n2'][0])} dev eth0" in route_get(n1, pod["n2"][4])
    assert f"via {bare(NODES['n2'][1])} dev eth0" in route_get(n1, pod["n2"][6])
    assert "dev vxlan.podbgp" in route_get(n1, pod["n3"][4])
    assert "dev vxlan-v6.podbgp" in route_get(n1, pod["n3"][6])
    assert "dev vxlan-v6.podbgp" in route_get(cluster.ns["n3"], pod["n1"][6])
    blocks = node_blocks(cluster, "n1")
    own = routes(n1)
    assert f"blackhole {blocks[4]}" in own
    assert any(r.startswith(f"blackhole {blocks[6]} ") for r in own), own
    # Each local pod: a /32 and a /128 through its veth (the CNI plugin's, kept by felix).
    veth = host_veth_name("n1-pod0", "eth0")
    assert f"{pod['n1'][4]} dev {veth} scope link" in own
    assert any(r.startswith(f"{pod['n1'][6]} dev {veth} ") for r in own), own
