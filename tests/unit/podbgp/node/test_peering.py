"""Topology: mesh (one-directional), route reflectors, BGPPeer forms, overrides — pure."""

from __future__ import annotations

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.resources import BGPConfiguration, BGPPeer
from podbgp.cluster.selector import ALL, parse_selector
from podbgp.node.peering import compute_topology

MESH = BGPConfiguration("default", as_number=64512, listen_port=1790, node_mesh_password="pw")
NO_MESH = BGPConfiguration("default", as_number=64512, node_to_node_mesh_enabled=False)
RR_LABEL = (("route-reflector", "true"),)


def node(n: int, *, rr: bool = False, asn: int | None = None, v6: bool = False) -> NodeInfo:
    addresses = (f"192.0.2.{n}/24",) + ((f"2001:db8::{n}/64",) if v6 else ())
    return NodeInfo(
        name=f"node-{n}",
        addresses=addresses,
        as_number=asn,
        router_id=f"192.0.2.{n}",
        route_reflector_cluster_id="1.0.0.1" if rr else None,
        labels=RR_LABEL if rr else (),
    )


def cluster(*nodes: NodeInfo) -> dict[str, NodeInfo]:
    return {n.name: n for n in nodes}


RR_PEERING = BGPPeer(
    "peer-with-rrs", node_selector=ALL, peer_selector=parse_selector("has(route-reflector)")
)


def test_full_mesh_is_one_directional_lower_address_passive() -> None:
    nodes = cluster(node(1), node(2), node(3))
    tops = {n: compute_topology(n, nodes, MESH, []) for n in nodes}
    assert set(tops["node-2"].peers) == {"192.0.2.1", "192.0.2.3"}
    for name, top in tops.items():
        assert top.mesh
        for spec in top.peers.values():
            assert spec.peer_type == "mesh"
            assert spec.asn == 64512 and spec.port == 1790 and spec.password == "pw"
            assert spec.source_address == nodes[name].address(4)
            assert not spec.rr_client
    # For every pair exactly one side connects: the lower address waits.
    assert tops["node-1"].peers["192.0.2.2"].passive
    assert not tops["node-2"].peers["192.0.2.1"].passive
    assert tops["node-2"].peers["192.0.2.3"].passive
    assert not tops["node-3"].peers["192.0.2.2"].passive
    top = tops["node-1"]
    assert top.speaker.asn == 64512 and top.speaker.router_id == "192.0.2.1"
    assert top.speaker.cluster_id is None and top.speaker.restart_time == 120


def test_passive_uses_numeric_not_text_order() -> None:
    a = NodeInfo("a", ("10.0.0.9/24",), router_id="10.0.0.9")
    b = NodeInfo("b", ("10.0.0.10/24",), router_id="10.0.0.10")
    top = compute_topology("a", cluster(a, b), MESH, [])
    assert top.peers["10.0.0.10"].passive  # 10.0.0.9 < 10.0.0.10 although "9" > "1"


def test_mesh_covers_both_families() -> None:
    nodes = cluster(node(1, v6=True), node(2, v6=True), node(3))
    top = compute_topology("node-1", nodes, MESH, [])
    assert set(top.peers) == {"192.0.2.2", "2001:db8::2", "192.0.2.3"}
    assert top.peers["2001:db8::2"].source_address == "2001:db8::1"


def test_dual_stack_reflector_peerings_in_both_families() -> None:
    nodes = cluster(node(1, rr=True, v6=True), node(2, v6=True), node(3))
    client = compute_topology("node-2", nodes, NO_MESH, [RR_PEERING])
    assert set(client.peers) == {"192.0.2.1", "2001:db8::1"}
    v6 = client.peers["2001:db8::1"]
    assert v6.peer_type == "route-reflector" and v6.source_address == "2001:db8::2"
    reflector = compute_topology("node-1", nodes, NO_MESH, [RR_PEERING])
    # node-3 has no IPv6 address: one session with it, IPv4 only.
    assert set(reflector.peers) == {"192.0.2.2", "2001:db8::2", "192.0.2.3"}
    assert all(s.rr_client for s in reflector.peers.values())


def test_mesh_off_leaves_no_peers() -> None:
    top = compute_topology("node-1", cluster(node(1), node(2)), NO_MESH, [])
    assert not top.mesh and top.peers == {}


def test_route_reflector_topology_with_mesh_off() -> None:
    nodes = cluster(node(1, rr=True), node(2, rr=True), node(3), node(4), node(5))
    client = compute_topology("node-3", nodes, NO_MESH, [RR_PEERING])
    assert set(client.peers) == {"192.0.2.1", "192.0.2.2"}
    for spec in client.peers.values():
        assert spec.peer_type == "route-reflector" and not spec.rr_client
    assert client.speaker.cluster_id is None

    reflector = compute_topology("node-1", nodes, NO_MESH, [RR_PEERING])
    assert reflector.speaker.cluster_id == "1.0.0.1"
    assert not reflector.mesh
    clients = {a: s for a, s in reflector.peers.items() if s.rr_client}
    assert set(clients) == {"192.0.2.3", "192.0.2.4", "192.0.2.5"}
    assert all(s.peer_type == "rr-client" for s in clients.values())
    # The two reflectors peer as ordinary (non-client) iBGP peers.
    other = reflector.peers["192.0.2.2"]
    assert other.peer_type == "route-reflector" and not other.rr_client
    # Both ends agree on who connects.
    assert reflector.peers["192.0.2.3"].passive
    assert not client.peers["192.0.2.1"].passive


def test_reflectors_leave_the_mesh_even_when_it_is_on() -> None:
    nodes = cluster(node(1, rr=True), node(2), node(3))
    plain = compute_topology("node-2", nodes, MESH, [RR_PEERING])
    assert plain.peers["192.0.2.3"].peer_type == "mesh"
    assert plain.peers["192.0.2.1"].peer_type == "route-reflector"
    reflector = compute_topology("node-1", nodes, MESH, [RR_PEERING])
    assert not reflector.mesh
    assert {s.peer_type for s in reflector.peers.values()} == {"rr-client"}


def test_global_and_node_specific_external_peers() -> None:
    nodes = cluster(node(1), node(2))
    tor = BGPPeer("tor", peer_ip="192.0.2.254", as_number=65000)
    only2 = BGPPeer("edge", peer_ip="192.0.2.250", peer_port=1179, as_number=65001, node="node-2")
    top1 = compute_topology("node-1", nodes, NO_MESH, [tor, only2])
    assert set(top1.peers) == {"192.0.2.254"}
    spec = top1.peers["192.0.2.254"]
    assert (spec.peer_type, spec.asn, spec.port, spec.passive) == ("global", 65000, 179, False)
    top2 = compute_topology("node-2", nodes, NO_MESH, [tor, only2])
    assert top2.peers["192.0.2.250"].peer_type == "node"
    assert top2.peers["192.0.2.250"].port == 1179
    assert top2.reasons["192.0.2.250"] == "BGPPeer/edge"


def test_node_selector_picks_the_local_side() -> None:
    zone_a = NodeInfo("a", ("192.0.2.1/24",), router_id="192.0.2.1", labels=(("zone", "a"),))
    zone_b = NodeInfo("b", ("192.0.2.2/24",), router_id="192.0.2.2", labels=(("zone", "b"),))
    peer = BGPPeer(
        "tor-a", peer_ip="192.0.2.254", as_number=65000, node_selector=parse_selector("zone == 'a'")
    )
    nodes = cluster(zone_a, zone_b)
    assert set(compute_topology("a", nodes, NO_MESH, [peer]).peers) == {"192.0.2.254"}
    assert compute_topology("b", nodes, NO_MESH, [peer]).peers == {}


def test_explicit_peer_overrides_mesh_for_the_same_address() -> None:
    nodes = cluster(node(1), node(2))
    explicit = BGPPeer("to-2", peer_ip="192.0.2.2", as_number=64512, node="node-1", password="k")
    top = compute_topology("node-1", nodes, MESH, [explicit])
    spec = top.peers["192.0.2.2"]
    assert spec.peer_type == "node" and spec.password == "k"
    assert top.reasons["192.0.2.2"] == "BGPPeer/to-2"


def test_node_as_override_makes_ebgp_without_reflection() -> None:
    nodes = cluster(node(1, rr=True), node(2, asn=65099))
    top = compute_topology("node-1", nodes, NO_MESH, [RR_PEERING])
    spec = top.peers["192.0.2.2"]
    assert spec.asn == 65099 and not spec.rr_client
    assert compute_topology("node-2", nodes, NO_MESH, [RR_PEERING]).speaker.asn == 65099


def test_nodes_without_an_address_are_skipped() -> None:
    nodes = cluster(node(1), NodeInfo("ghost"))
    assert compute_topology("node-1", nodes, MESH, []).peers == {}


# --- the agent's inputs: registrations merged with Node resources ---------------------------


def test_merge_prefers_admin_labels_and_agent_addresses() -> None:
    from podbgp.cluster.datastore.records import merge_node
    from podbgp.cluster.resources import Node

    reg = NodeInfo("n", ("192.0.2.1/24",), as_number=64512, router_id="192.0.2.1", registered=True)
    res = Node("n", ("198.51.100.1/24",), 65001, "1.0.0.1", (), (("zone", "a"),))
    merged = merge_node("n", res, reg)
    assert merged.addresses == ("192.0.2.1/24",)  # the running agent knows its address
    assert merged.as_number == 65001 and merged.route_reflector_cluster_id == "1.0.0.1"
    assert merged.label_map == {"zone": "a"} and merged.registered
    declared_only = merge_node("n", res, None)
    assert declared_only.addresses == ("198.51.100.1/24",) and not declared_only.registered


def test_snapshot_follows_changes() -> None:
    from podbgp.cluster.datastore.kv import EventType, KeyValue, WatchEvent
    from podbgp.cluster.datastore.records import encode
    from podbgp.cluster.datastore.store import ChangeKind, Snapshot, decode_event
    from podbgp.cluster.resources import IPPool, to_dict

    pool = IPPool("p", "10.0.0.0/16")
    reg = NodeInfo("n1", ("192.0.2.1/24",), router_id="192.0.2.1")
    snap = Snapshot.from_kvs(
        [
            KeyValue("resources/IPPool/p", encode(to_dict(pool)), 5),
            KeyValue("nodes/n1", encode(reg.to_json()), 6),
            KeyValue("resources/IPPool/bad", b"{not json", 7),
        ],
        revision=7,
    )
    assert snap.pools() == [pool]
    assert snap.nodes()["n1"].address(4) == "192.0.2.1"
    assert "resources/IPPool/bad" in snap.errors
    affinity = encode({"cidr": "10.0.1.0/24", "pool": "p", "node": "n1"})
    key = "ipam/affinity/n1/10.0.1.0-24"
    change = decode_event(WatchEvent(EventType.PUT, key, affinity, 8))
    assert change.kind == ChangeKind.AFFINITY and change.name == "10.0.1.0/24"
    snap.apply(change)
    assert [(a.cidr, a.pool) for a in snap.blocks_of("n1")] == [("10.0.1.0/24", "p")]
    # Written before affinities carried the pool: still read.
    old = encode({"cidr": "10.0.2.0/24", "node": "n1"})
    snap.apply(decode_event(WatchEvent(EventType.PUT, "ipam/affinity/n1/10.0.2.0-24", old, 8)))
    assert [(a.cidr, a.pool) for a in snap.blocks_of("n1")][1] == ("10.0.2.0/24", "")
    # Pod allocations are not a snapshot's business.
    block = encode({"cidr": "10.0.1.0/24", "pool": "p", "node": "n1", "allocations": {}})
    other = decode_event(WatchEvent(EventType.PUT, "ipam/blocks/10.0.1.0-24", block, 8))
    assert other.kind == ChangeKind.OTHER
    snap.apply(decode_event(WatchEvent(EventType.DELETE, "resources/IPPool/p", b"", 9)))
    assert snap.pools() == [] and snap.revision == 9
    assert snap.bgp_configuration().as_number == 64512  # absent: Calico's defaults


def test_peer_options_reach_the_speaker_peer() -> None:
    # keepOriginalNextHop and maxRestartTime of a BGPPeer become the session's own settings.
    nodes = cluster(node(1), node(2))
    tor = BGPPeer(
        "tor", peer_ip="192.0.2.254", as_number=65000, keep_original_next_hop=True,
        max_restart_time=300,
    )  # fmt: skip
    plain = BGPPeer("plain", peer_ip="192.0.2.253", as_number=65000)
    spec = compute_topology("node-1", nodes, NO_MESH, [tor, plain]).peers
    assert (spec["192.0.2.254"].keep_next_hop, spec["192.0.2.254"].restart_time) == (True, 300)
    assert (spec["192.0.2.253"].keep_next_hop, spec["192.0.2.253"].restart_time) == (False, None)


def test_peer_filters_resolve_in_order_missing_fail_closed_external_owned_only() -> None:
    from bgpd.bgpfilter import RuleAction, parse_filter

    tag = parse_filter({"name": "tag", "exportV4": [{"action": "Accept"}]})
    tor = BGPPeer("tor", peer_ip="192.0.2.254", as_number=65001, filters=("tag", "gone"))
    policy = BGPConfiguration("default", as_number=64512, ebgp_requires_policy=True)
    nodes = cluster(node(1), node(2))
    top = compute_topology("node-1", nodes, policy, [tor], {"tag": tag})
    assert top.speaker.ebgp_requires_policy
    spec = top.peers["192.0.2.254"]
    assert [f.name for f in spec.filters] == ["tag", "gone"]
    assert spec.filters[0] == tag
    gone = spec.filters[1]  # no BGPFilter "gone": everything rejected, both ways, both families
    assert all(r.action is RuleAction.REJECT for r in gone.import_v4 + gone.export_v6)
    assert spec.owned_only  # an external router gets only what the cluster owns
    mesh = top.peers["192.0.2.2"]
    assert not mesh.owned_only and mesh.filters == ()


def test_max_prefixes_reach_the_peer_spec() -> None:
    from bgpd.prefix_limit import MaxPrefixes
    from podbgp.cluster.resources import PrefixLimit

    tor = BGPPeer("tor", peer_ip="192.0.2.254", as_number=65001,
                  max_prefixes=PrefixLimit(100, 90, 30))  # fmt: skip
    top = compute_topology("node-1", cluster(node(1)), MESH, [tor])
    assert top.peers["192.0.2.254"].max_prefixes == MaxPrefixes(100, 90, 30)


# --- BFD (RFC 5882) -------------------------------------------------------------------------


def test_node_mesh_bfd_on_mesh_and_reflector_sessions_hop_mode_by_subnet() -> None:
    from bgpd.bfd.peering import BfdSettings
    from bgpd.configcheck import BfdOptions

    fast = BfdOptions(min_rx_ms=100, min_tx_ms=100, multiplier=3)
    far = NodeInfo("node-9", ("198.51.100.9/24",), router_id="198.51.100.9")
    mesh = BGPConfiguration("default", node_mesh_bfd=fast)
    top = compute_topology("node-1", cluster(node(1), node(2), far), mesh, [])
    assert top.peers["192.0.2.2"].bfd == BfdSettings(100, 100, 3, multihop=False)
    assert top.peers["198.51.100.9"].bfd == BfdSettings(100, 100, 3, multihop=True)
    # Reflector sessions take nodeMeshBFD too.
    rr = BGPConfiguration("default", node_to_node_mesh_enabled=False, node_mesh_bfd=fast)
    nodes = cluster(node(1, rr=True), node(3))
    client = compute_topology("node-3", nodes, rr, [RR_PEERING])
    assert client.peers["192.0.2.1"].bfd == BfdSettings(100, 100, 3, multihop=False)
    reflector = compute_topology("node-1", nodes, rr, [RR_PEERING])
    assert reflector.peers["192.0.2.3"].bfd is not None
    # Without nodeMeshBFD: no BFD.
    assert (
        compute_topology("node-1", cluster(node(1), node(2)), MESH, []).peers["192.0.2.2"].bfd
        is None
    )


def test_bgp_peer_bfd_wins_over_node_mesh_bfd() -> None:
    from bgpd.bfd.peering import BfdSettings
    from bgpd.configcheck import BfdOptions

    mesh = BGPConfiguration("default", node_mesh_bfd=BfdOptions())
    off = BGPPeer("no-bfd", node_selector=ALL, peer_selector=ALL, bfd=BfdOptions(enabled=False))
    top = compute_topology("node-1", cluster(node(1), node(2)), mesh, [off])
    assert top.peers["192.0.2.2"].bfd is None
    router = BGPPeer("tor", peer_ip="192.0.2.254", as_number=65000, bfd=BfdOptions(multiplier=5))
    top = compute_topology("node-1", cluster(node(1)), NO_MESH, [router])
    assert top.peers["192.0.2.254"].bfd == BfdSettings(300, 300, 5, multihop=None)


def test_unnumbered_bgp_peer_waits_for_its_link_local_address() -> None:
    tor = BGPPeer("tor", interface="eth1", as_number=65000, node="node-1")
    top = compute_topology("node-1", cluster(node(1)), NO_MESH, [tor])
    spec = top.peers["%eth1"]
    assert (spec.interface, spec.extended_next_hop, spec.asn) == ("eth1", True, 65000)
    assert spec.owned_only and spec.peer_type == "node"
    off = BGPPeer("tor", interface="eth1", as_number=65000, extended_next_hop=False)
    assert (
        compute_topology("node-1", cluster(node(1)), NO_MESH, [off])
        .peers["%eth1"]
        .extended_next_hop
        is False
    )
    elsewhere = BGPPeer("tor", interface="eth1", as_number=65000, node="node-2")
    assert compute_topology("node-1", cluster(node(1)), NO_MESH, [elsewhere]).peers == {}
    v6 = BGPPeer("tor6", peer_ip="2001:db8::fe", as_number=65000, extended_next_hop=True)
    top = compute_topology("node-1", cluster(node(1, v6=True)), NO_MESH, [v6])
    assert top.peers["2001:db8::fe"].extended_next_hop is True
