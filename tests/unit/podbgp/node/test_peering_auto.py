"""Topology with automatic route reflectors: who peers with whom, as which type, in which family."""

from __future__ import annotations

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import BGPConfiguration, BGPPeer
from podbgp.node.peering import compute_topology

RR = RouteReflectors("auto", node_threshold=4, hysteresis=1, count=2, cluster_id="244.0.0.9")
AUTO = BGPConfiguration("default", node_mesh_password="pw", route_reflectors=RR)


def node(n: int, subnet: int = 2, v6: bool = False) -> NodeInfo:
    return NodeInfo(
        name=f"node-{n}",
        addresses=(f"192.0.{subnet}.{n}/24",) + ((f"2001:db8::{n}/64",) if v6 else ()),
        router_id=f"192.0.{subnet}.{n}",
        registered=True,
    )


def cluster(*nodes: NodeInfo) -> dict[str, NodeInfo]:
    return {n.name: n for n in nodes}


def test_below_threshold_is_the_mesh() -> None:
    nodes = cluster(node(1), node(2), node(3))
    top = compute_topology("node-1", nodes, AUTO, [])
    assert top.mesh and not top.election.active and not top.elected_reflector
    assert {s.peer_type for s in top.peers.values()} == {"mesh"}
    assert top.speaker.cluster_id is None


def test_above_threshold_elected_reflect_and_the_rest_are_clients() -> None:
    nodes = cluster(node(1), node(2), node(3), node(4, subnet=3), node(5))
    tops = {n: compute_topology(n, nodes, AUTO, []) for n in nodes}
    assert tops["node-1"].election.reflectors == ("node-1", "node-4")  # one per subnet
    rr1, rr4 = tops["node-1"], tops["node-4"]
    for rr in (rr1, rr4):
        assert rr.elected_reflector and not rr.mesh
        assert rr.speaker.cluster_id == "244.0.0.9"
    # node-1 reflects for every other node; node-4 is its non-client peer
    assert {a: (s.peer_type, s.rr_client) for a, s in rr1.peers.items()} == {
        "192.0.2.2": ("rr-client", True),
        "192.0.2.3": ("rr-client", True),
        "192.0.3.4": ("route-reflector", False),
        "192.0.2.5": ("rr-client", True),
    }
    client = tops["node-2"]
    assert not client.mesh and not client.elected_reflector
    assert client.speaker.cluster_id is None
    assert {a: s.peer_type for a, s in client.peers.items()} == {
        "192.0.2.1": "route-reflector",
        "192.0.3.4": "route-reflector",
    }
    assert set(client.reasons.values()) == {"auto-reflector"}
    spec = client.peers["192.0.2.1"]
    assert spec.password == "pw" and not spec.rr_client
    # both ends agree on who connects: exactly one side is passive
    assert spec.passive != rr1.peers["192.0.2.2"].passive


def test_dual_stack_nodes_peer_with_reflectors_in_both_families() -> None:
    nodes = cluster(node(1, v6=True), node(2, v6=True), node(3, v6=True), node(4))
    top = compute_topology("node-3", nodes, AUTO, [])
    assert top.election.reflectors == ("node-1", "node-2")
    assert set(top.peers) == {"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"}
    assert set(compute_topology("node-4", nodes, AUTO, []).peers) == {"192.0.2.1", "192.0.2.2"}


def test_an_explicit_bgppeer_wins_for_its_address() -> None:
    nodes = cluster(node(1), node(2), node(3), node(4))
    peer = BGPPeer("to-node-1", peer_ip="192.0.2.1", node="node-3", password="other")
    top = compute_topology("node-3", nodes, AUTO, [peer])
    assert top.reasons["192.0.2.1"] == "BGPPeer/to-node-1"
    assert top.peers["192.0.2.1"].password == "other"
    assert top.reasons["192.0.2.2"] == "auto-reflector"
