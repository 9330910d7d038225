"""Real `podbgp node` processes on loopback addresses with a real etcd: mesh, live joins and
leaves, route reflectors, restarts, and an etcd outage.

Every node listens for BGP on its own 127.x.y.z address (all on `lo`, no namespace needed),
with the cluster's listenPort; its REST API is on the same address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podbgp.cluster import ipam
from podbgp.cluster.datastore import DatastoreConfig, open_datastore
from podbgp.cluster.resources import BGPConfiguration, BGPPeer, IPPool, Node, Resource
from podbgp.cluster.selector import parse_selector
from tests.support.etcd import EtcdServer, etcd_available
from tests.support.podbgp import wait_for
from tests.support.podbgp_node import PodbgpNode, node_config, run_podbgp

BGP_PORT = 21000 + os.getpid() % 9000
NET = f"127.{200 + os.getpid() % 50}.{os.getpid() % 250}"
POOL = IPPool("pool-a", "10.160.0.0/16", block_size=24)


def ip(host: int) -> str:
    return f"{NET}.{host}"


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    reason = etcd_available()
    if reason is not None:
        pytest.skip(reason)
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    yield server
    server.stop()


class Cluster:
    """Nodes of one test, all under one etcd prefix; everything is stopped at the end."""

    def __init__(self, etcd: EtcdServer, workdir: Path) -> None:
        self.etcd = etcd
        self.workdir = workdir
        self.prefix = f"/podbgp-test-{uuid.uuid4().hex[:8]}/"
        self.nodes: dict[str, PodbgpNode] = {}
        self.env = {"PODBGP_ETCD_ENDPOINTS": etcd.endpoint, "PODBGP_ETCD_PREFIX": self.prefix}

    def apply(self, *resources: Resource) -> None:
        async def go() -> None:
            store = open_datastore(
                DatastoreConfig(type="etcd", endpoints=(self.etcd.endpoint,), prefix=self.prefix)
            )
            try:
                await store.apply(list(resources))
            finally:
                await store.close()

        asyncio.run(go())

    def start(self, name: str, host: int) -> PodbgpNode:
        cfg = node_config(name, f"{ip(host)}/24", self.etcd.endpoint, self.prefix)
        node = PodbgpNode(self.workdir, f"{name}-{len(self.nodes)}", cfg).start()
        self.nodes[name] = node
        return node

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.stop()


@pytest.fixture
def cluster(etcd: EtcdServer, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(etcd, tmp_path)
    yield c
    c.stop_all()


def http_get(node: PodbgpNode, path: str) -> tuple[int, str]:
    """Status and body of a GET on the node's API (error statuses included)."""
    try:
        with urllib.request.urlopen(node.api_url + path, timeout=3) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sessions(node: PodbgpNode) -> dict[str, tuple[str, str]]:
    """address -> (state, since) for every peer."""
    return {a: (p["state"], p["since"]) for a, p in node.peers().items()}


def all_established(node: PodbgpNode, addresses: set[str]) -> bool:
    return set(node.established()) == addresses


def routes_with(node: PodbgpNode, blocks: set[str]) -> dict[str, dict[str, Any]] | None:
    routes = node.routes_by_prefix()
    return routes if blocks <= set(routes) else None


def test_full_mesh_and_live_join_and_leave(cluster: Cluster) -> None:
    cluster.apply(BGPConfiguration("default", listen_port=BGP_PORT), POOL)
    nodes = [cluster.start(f"node-{i}", i) for i in (1, 2, 3)]
    ips = {n.ip for n in nodes}
    for n in nodes:
        wait_for(lambda n=n: all_established(n, ips - {n.ip}), 30, what=f"{n.name} meshed")
    blocks = {n.ip: wait_for(n.blocks, 10, what=f"{n.name} block")[0] for n in nodes}
    assert len(set(blocks.values())) == 3
    for n in nodes:
        routes = wait_for(lambda n=n: routes_with(n, set(blocks.values())), 10, what="routes")
        for owner, block in blocks.items():
            if owner != n.ip:
                assert routes[block]["nextHop"] == owner
                assert routes[block]["fromPeer"] == owner
        assert {p["type"] for p in n.peers().values()} == {"mesh"}
    status = nodes[0].node_status()
    assert status is not None
    assert status["name"] == "node-1" and status["addresses"] == [f"{ip(1)}/24"]
    assert status["asNumber"] == 64512 and status["routerId"] == ip(1)
    assert status["topology"]["mesh"] is True and status["datastore"]["connected"] is True
    assert status["blocks"] == [blocks[ip(1)]] and status["blocks"][0].startswith("10.160.")
    code, metrics = http_get(nodes[0], "/metrics")
    assert code == 200
    assert "podbgp_datastore_connected 1.0" in metrics
    assert "podbgp_ipam_blocks_owned 1.0" in metrics
    before = {n.ip: sessions(n) for n in nodes}

    # A fourth node joins: the others peer with it without a restart, other sessions stay up.
    fourth = cluster.start("node-4", 4)
    for n in nodes:
        wait_for(lambda n=n: fourth.ip in n.established(), 30, what=f"{n.name} peers with node-4")
    wait_for(lambda: all_established(fourth, ips), 30, what="node-4 meshed")
    block4 = wait_for(fourth.blocks, 10, what="node-4 block")[0]
    for n in nodes:
        wait_for(lambda n=n: routes_with(n, {block4}), 10, what=f"node-4's block at {n.name}")
        now = sessions(n)
        for peer, (state, since) in before[n.ip].items():
            assert now[peer] == (state, since), f"{n.name}: session to {peer} was disturbed"
        assert all(p["flaps"] == 0 for p in n.peers().values())

    # node-4 leaves: stopped and deleted; the others drop it, again without other changes.
    fourth.stop()
    run = run_podbgp("delete", "node", "node-4", env=cluster.env)
    assert run.returncode == 0, run.stderr
    for n in nodes:
        wait_for(lambda n=n: fourth.ip not in n.peers(), 20, what=f"{n.name} drops node-4")
        assert sessions(n) == before[n.ip]
        wait_for(lambda n=n: block4 not in n.route_prefixes(), 10, what="node-4 block gone")
    run = run_podbgp("ipam", "show", "--show-blocks", "-o", "json", env=cluster.env)
    assert block4 not in run.stdout  # its block went back to the pool

    # A restarted node gets its block back.
    second = cluster.nodes["node-2"]
    second.stop()
    again = cluster.start("node-2", 2)
    wait_for(lambda: all_established(again, ips - {again.ip}), 30, what="node-2 back")
    assert again.blocks() == [blocks[ip(2)]]


def test_route_reflectors_when_the_mesh_is_switched_off(cluster: Cluster, tmp_path: Path) -> None:
    rr_labels = (("route-reflector", "true"),)
    cluster.apply(
        BGPConfiguration("default", listen_port=BGP_PORT),
        POOL,
        Node("rr-1", route_reflector_cluster_id="1.0.0.1", labels=rr_labels),
        Node("rr-2", route_reflector_cluster_id="1.0.0.1", labels=rr_labels),
        BGPPeer(
            "peer-with-rrs",
            node_selector=parse_selector("all()"),
            peer_selector=parse_selector("route-reflector == 'true'"),
        ),
    )
    rr1, rr2 = cluster.start("rr-1", 11), cluster.start("rr-2", 12)
    clients = [cluster.start(f"node-{i}", i) for i in (13, 14, 15)]
    reflectors = {rr1.ip, rr2.ip}
    client_ips = {c.ip for c in clients}
    for c in clients:  # mesh on: the other clients, plus both reflectors
        want = (client_ips - {c.ip}) | reflectors
        wait_for(lambda c=c, want=want: all_established(c, want), 30, what=f"{c.name} peers")
    rr_sessions = {c.ip: {a: s for a, s in sessions(c).items() if a in reflectors} for c in clients}

    off = tmp_path / "mesh-off.yaml"
    off.write_text(
        "apiVersion: podbgp/v1\nkind: BGPConfiguration\nmetadata: {name: default}\n"
        f"spec: {{nodeToNodeMeshEnabled: false, listenPort: {BGP_PORT}}}\n"
    )
    run = run_podbgp("apply", "-f", str(off), env=cluster.env)
    assert run.returncode == 0, run.stderr

    for c in clients:
        wait_for(lambda c=c: set(c.peers()) == reflectors, 20, what=f"{c.name} leaves the mesh")
        assert {a: s for a, s in sessions(c).items()} == rr_sessions[c.ip]  # untouched
        assert {p["type"] for p in c.peers().values()} == {"route-reflector"}
        status = c.node_status()
        assert status is not None and status["topology"]["mesh"] is False
    for rr, other in ((rr1, rr2), (rr2, rr1)):
        want = client_ips | {other.ip}
        wait_for(lambda rr=rr, want=want: all_established(rr, want), 20, what="rr peers")
        types = {a: p["type"] for a, p in rr.peers().items()}
        assert types == {**dict.fromkeys(client_ips, "rr-client"), other.ip: "route-reflector"}
        status = rr.node_status()
        assert status is not None and status["topology"]["routeReflector"] is True

    # Routes now travel through the reflectors: next hop and originator are the owner's.
    blocks = {c.ip: wait_for(c.blocks, 10)[0] for c in clients}
    for c in clients:
        routes = wait_for(lambda c=c: routes_with(c, set(blocks.values())), 20, what="reflected")
        for owner, block in blocks.items():
            if owner == c.ip:
                continue
            route = routes[block]
            assert route["fromPeer"] in reflectors
            assert route["nextHop"] == owner
            assert route["originatorId"] == owner
            assert route["clusterList"] == ["1.0.0.1"]


def test_full_pool_is_reported_and_retried_when_space_frees(cluster: Cluster) -> None:
    one_block = IPPool("one", "10.170.0.0/24", block_size=24)
    cluster.apply(BGPConfiguration("default", listen_port=BGP_PORT), one_block)
    first = cluster.start("node-1", 31)
    wait_for(first.blocks, 20, what="node-1 claims the only block")
    second = cluster.start("node-2", 32)
    status = wait_for(
        lambda: (s := second.node_status()) and s["ipam"]["error"] and s, 20, what="ipam error"
    )
    assert status["ipam"]["error"] == (
        "no free block for node node-2: every block is claimed in "
        "one (10.170.0.0/24, 1 block of /24)"
    )
    assert status["blocks"] == []
    wait_for(lambda: first.ip in second.established(), 30, what="sessions regardless")
    # A pool change reaches the agent live (felix reads agent.pools).
    cluster.apply(IPPool("one", "10.170.0.0/24", block_size=24, ipip_mode="Always"))
    wait_for(
        lambda: (
            [p["ipipMode"] for p in (second.node_status() or {}).get("pools", [])] == ["Always"]
        ),
        20,
        what="pool change seen",
    )
    # node-1 goes away for good: its block is released and node-2 claims it without a restart.
    first.stop()
    run = run_podbgp("delete", "node", "node-1", env=cluster.env)
    assert run.returncode == 0, run.stderr
    wait_for(lambda: second.blocks() == ["10.170.0.0/24"], 30, what="node-2 claims the block")
    assert (second.node_status() or {})["ipam"]["error"] is None
    wait_for(lambda: "10.170.0.0/24" in second.route_prefixes(), 10, what="originated")


OUTAGE = 30.0  # seconds etcd stays down (the figure)


@pytest.fixture
def own_etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    reason = etcd_available()
    if reason is not None:
        pytest.skip(reason)
    server = EtcdServer(tmp_path, name="outage").start()
    yield server
    server.stop()


def test_etcd_outage_keeps_sessions_and_routes(own_etcd: EtcdServer, tmp_path: Path) -> None:
    cluster = Cluster(own_etcd, tmp_path)
    try:
        _outage_scenario(cluster, own_etcd)
    finally:
        cluster.stop_all()


def _outage_scenario(cluster: Cluster, etcd: EtcdServer) -> None:
    cluster.apply(BGPConfiguration("default", listen_port=BGP_PORT), POOL)
    nodes = [cluster.start(f"node-{i}", i) for i in (21, 22, 23)]
    ips = {n.ip for n in nodes}
    for n in nodes:
        wait_for(lambda n=n: all_established(n, ips - {n.ip}), 30, what=f"{n.name} meshed")
    blocks = {wait_for(n.blocks, 10)[0] for n in nodes}
    for n in nodes:
        wait_for(lambda n=n: routes_with(n, blocks), 10, what=f"{n.name} routes")
    before = {n.ip: (sessions(n), n.routes_by_prefix()) for n in nodes}
    synced_at = {n.ip: (n.node_status() or {})["datastore"]["lastSyncAt"] for n in nodes}

    etcd.stop()
    down_since = time.monotonic()
    for n in nodes:
        wait_for(
            lambda n=n: (n.node_status() or {}).get("datastore", {}).get("connected") is False,
            20,
            what=f"{n.name} notices etcd is gone",
        )
    code, body = http_get(nodes[0], "/readyz")
    assert code == 503 and "datastore not synced" in json.loads(body)["reason"]
    while time.monotonic() - down_since < OUTAGE:
        for n in nodes:
            sess, routes = before[n.ip]
            assert sessions(n) == sess, f"{n.name}: sessions changed during the outage"
            assert n.routes_by_prefix() == routes, f"{n.name}: routes changed during the outage"
        time.sleep(2)
    etcd.start()
    for n in nodes:
        wait_for(
            lambda n=n: (n.node_status() or {}).get("datastore", {}).get("connected") is True,
            30,
            what=f"{n.name} resyncs",
        )
        status = n.node_status() or {}
        assert status["datastore"]["synced"] is True
        assert status["datastore"]["lastSyncAt"] > synced_at[n.ip]
        assert etcd.endpoint in status["datastore"]["lastError"]  # names the etcd that was gone
        sess, routes = before[n.ip]
        assert sessions(n) == sess and n.routes_by_prefix() == routes
        assert http_get(n, "/readyz")[0] == 200

    # The watch is live again: a new global peer reaches every node, nothing else moves.
    cluster.apply(BGPPeer("tor", peer_ip=ip(99), as_number=65000))
    for n in nodes:
        wait_for(lambda n=n: ip(99) in n.peers(), 20, what=f"{n.name} adds the new peer")
        assert {a: s for a, s in sessions(n).items() if a != ip(99)} == before[n.ip][0]


def test_address_from_an_interface() -> None:
    from podbgp.cluster.datastore import DatastoreConfig as Ds
    from podbgp.node.config import NodeConfig, resolve_address

    config = NodeConfig(node_name="n", datastore=Ds(), interface="lo")
    assert resolve_address(config) == "127.0.0.1/8"
    with pytest.raises(OSError, match="interface nosuchif0 has no IPv4"):
        resolve_address(NodeConfig(node_name="n", datastore=Ds(), interface="nosuchif0"))


def test_a_full_block_brings_a_second_and_a_deleted_pool_gives_them_back(
    cluster: Cluster,
) -> None:
    # /29 blocks: six addresses each. felix is off, so no tunnel address takes one.
    small = IPPool("small", "10.161.0.0/24", block_size=29)
    cluster.apply(BGPConfiguration("default", listen_port=BGP_PORT), small)
    one, two = cluster.start("node-1", 1), cluster.start("node-2", 2)
    wait_for(lambda: two.ip in one.established() and one.ip in two.established(), 30, what="mesh")
    first = wait_for(one.blocks, 10, what="node-1 block")[0]
    block_two = wait_for(two.blocks, 10, what="node-2 block")[0]

    async def pods(verb: str, count: int) -> list[tuple[str, str]]:
        store = open_datastore(
            DatastoreConfig(type="etcd", endpoints=(cluster.etcd.endpoint,), prefix=cluster.prefix)
        )
        try:
            if verb == "add":  # as podbgp-cni on node-1 does
                return [
                    await ipam.assign_address(store, "node-1", f"pod{i}.eth0") for i in range(count)
                ]
            for i in range(count):
                assert await ipam.release_address(store, f"pod{i}.eth0")
            return []
        finally:
            await store.close()

    got = asyncio.run(pods("add", 7))
    assert {block for _ip, block in got[:6]} == {first}
    second = got[6][1]
    assert second != first
    # node-1 originates its second block; node-2 learns it from node-1.
    wait_for(lambda: one.blocks() == sorted([first, second], key=_net), 10, what="2 blocks")
    routes = wait_for(lambda: routes_with(two, {first, second}), 10, what="both at node-2")
    assert routes[second]["nextHop"] == one.ip

    # The pool goes (another takes its place): node-2's empty block is released at once and
    # node-2 claims from the new pool; node-1's blocks hold pods, so they stay until the pods go.
    cluster.apply(IPPool("spare", "10.162.0.0/24", block_size=29))
    run = run_podbgp("delete", "ippool", "small", env=cluster.env)
    assert run.returncode == 0, run.stderr
    assert f"Released 1 block(s): {block_two}" in run.stdout
    wait_for(lambda: [b.startswith("10.162.") for b in two.blocks()] == [True], 10, what="spare")
    wait_for(lambda: block_two not in one.route_prefixes(), 10, what="node-2's old block gone")
    assert {first, second} <= set(one.blocks())
    asyncio.run(pods("del", 7))
    wait_for(lambda: not {first, second} & set(one.blocks()), 10, what="node-1's blocks released")
    wait_for(lambda: not {first, second} & set(two.route_prefixes()), 10, what="withdrawn")
    run = run_podbgp("ipam", "show", "--show-blocks", "-o", "json", env=cluster.env)
    blocks = {b["cidr"] for b in json.loads(run.stdout)["blocks"]}
    assert blocks == set(one.blocks()) | set(two.blocks())
    assert all(b.startswith("10.162.") for b in blocks)


def _net(cidr: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(cidr)
