"""Resource kinds: defaults, canonical form, one-line refusals, rules across resources."""

from __future__ import annotations

from typing import Any

import pytest

from bgpd.configcheck import BfdOptions
from podbgp.cluster.consistency import check_consistency
from podbgp.cluster.resources import (
    BGPConfiguration,
    BGPPeer,
    IPPool,
    Node,
    ResourceError,
    kind_of,
    parse_resource,
    to_dict,
)
from podbgp.cluster.selector import ALL, parse_selector


def doc(kind: str, name: str, spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "podbgp/v1",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": spec or {},
    }


def test_bgp_configuration_defaults_are_calicos() -> None:
    res = parse_resource(doc("BGPConfiguration", "default"), "t.yaml")
    assert res == BGPConfiguration(
        "default",
        as_number=64512,
        node_to_node_mesh_enabled=True,
        listen_port=179,
        node_mesh_password=None,
        node_mesh_max_restart_time=120,
    )


def test_durations_accept_seconds_and_calico_strings() -> None:
    for value, seconds in ((90, 90), ("120s", 120), ("2m", 120), ("1h1m1s", 3661)):
        spec = {"nodeMeshMaxRestartTime": value}
        res = parse_resource(doc("BGPConfiguration", "default", spec), "t")
        assert isinstance(res, BGPConfiguration)
        assert res.node_mesh_max_restart_time == seconds


def test_ip_pool_defaults_and_selector() -> None:
    res = parse_resource(doc("IPPool", "pool-a", {"cidr": "10.244.0.0/16"}), "t")
    assert res == IPPool("pool-a", "10.244.0.0/16", 24, "Never", "Never", False, False, ALL)
    v6 = parse_resource(doc("IPPool", "pool-6", {"cidr": "fd00:10::/64"}), "t")
    assert isinstance(v6, IPPool) and v6.block_size == 122


def test_ipv6_pool_vxlan_mode_and_block_sizes() -> None:
    # On an IPv6 pool vxlanMode is the VXLAN-over-IPv6 setting; vxlanModeV6 is its alias.
    for key in ("vxlanMode", "vxlanModeV6"):
        spec = {"cidr": "fd00:10::/64", "blockSize": 120, key: "CrossSubnet"}
        pool = parse_resource(doc("IPPool", "p6", spec), "t")
        assert isinstance(pool, IPPool) and pool.vxlan_mode == "CrossSubnet"
        assert pool.block_size == 120
        assert to_dict(pool)["spec"]["vxlanMode"] == "CrossSubnet"
    for size in (116, 128):
        pool = parse_resource(doc("IPPool", "p", {"cidr": "fd00::/64", "blockSize": size}), "t")
        assert isinstance(pool, IPPool) and pool.block_size == size
    sel = parse_resource(
        doc("IPPool", "p", {"cidr": "10.0.0.0/8", "nodeSelector": "zone == 'a'"}), "t"
    )
    assert isinstance(sel, IPPool) and sel.node_selector == parse_selector("zone == 'a'")


def test_bgp_peer_forms() -> None:
    external = parse_resource(
        doc("BGPPeer", "tor", {"peerIP": "192.0.2.1:1179", "asNumber": 65000, "node": "n1"}), "t"
    )
    assert isinstance(external, BGPPeer)
    assert (external.peer_ip, external.peer_port, external.node) == ("192.0.2.1", 1179, "n1")
    assert not external.is_global
    v6 = parse_resource(doc("BGPPeer", "v6", {"peerIP": "[2001:db8::1]:1179", "asNumber": 1}), "t")
    assert isinstance(v6, BGPPeer) and (v6.peer_ip, v6.peer_port) == ("2001:db8::1", 1179)
    rr = parse_resource(
        doc("BGPPeer", "rr", {"nodeSelector": "all()", "peerSelector": "has(route-reflector)"}),
        "t",
    )
    assert isinstance(rr, BGPPeer) and rr.peer_selector is not None and rr.peer_ip is None


def test_node_with_labels_addresses_and_pinned_blocks() -> None:
    res = parse_resource(
        doc(
            "Node",
            "node-1.example",
            {
                "addresses": ["192.0.2.11/24", "2001:db8::11/64"],
                "routeReflectorClusterID": "1.0.0.1",
                "blocks": ["10.244.1.0/24"],
            },
            labels={"route-reflector": "true", "topology.kubernetes.io/zone": "a"},
        ),
        "t",
    )
    assert isinstance(res, Node)
    assert res.addresses == ("192.0.2.11/24", "2001:db8::11/64")
    assert res.label_map == {"route-reflector": "true", "topology.kubernetes.io/zone": "a"}
    assert res.blocks == ("10.244.1.0/24",)


@pytest.mark.parametrize(
    "res",
    [
        BGPConfiguration("default", 65001, False, 1790, "s3cret", 300),
        BGPPeer("p", peer_ip="192.0.2.1", peer_port=1179, as_number=65000, node="n1"),
        BGPPeer("q", node_selector=ALL, peer_selector=parse_selector("has(rr)"), password="x"),
        IPPool("pool", "10.0.0.0/16", 26, "CrossSubnet", "Never", True, False, ALL),
        Node("n", ("192.0.2.1/24",), 65002, "1.0.0.1", ("10.0.1.0/24",), (("a", "b"),)),
        BGPConfiguration("default", node_mesh_bfd=BfdOptions(True, 100, 100, 3)),
        BGPPeer("b", peer_ip="192.0.2.1", as_number=65000, bfd=BfdOptions(False, 50, 60, 4)),
    ],
)
def test_canonical_form_round_trips(res: Any) -> None:
    assert parse_resource(to_dict(res), "stored") == res


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            doc("IPPool", "p", {"cidr": "10.0.0.1/16"}),
            "f.yaml IPPool/p: spec.cidr: host bits are set; did you mean 10.0.0.0/16?",
        ),
        (
            doc("IPPool", "p", {"cidr": "10.0.0.0/16", "blockSize": 8}),
            "f.yaml IPPool/p: spec.blockSize: must be an integer in 16..30",
        ),
        (
            doc("IPPool", "p", {"cidr": "10.0.0.0/24", "blockSize": 20}),
            "f.yaml IPPool/p: spec.blockSize: must be at least the pool's prefix length /24",
        ),
        (
            doc("IPPool", "p", {"cidr": "10.0.0.0/8", "ipipMode": "always"}),
            "f.yaml IPPool/p: spec.ipipMode: must be one of Never, Always, CrossSubnet",
        ),
        (
            doc("IPPool", "p", {"cidr": "10.0.0.0/8", "ipipMode": "Always", "vxlanMode": "Always"}),
            "spec.vxlanMode: ipipMode and vxlanMode cannot both be enabled",
        ),
        (
            doc("IPPool", "p", {"cidr": "fd00::/64", "blockSize": 96}),
            "f.yaml IPPool/p: spec.blockSize: must be an integer in 116..128",
        ),
        (
            doc("IPPool", "p", {"cidr": "10.0.0.0/16", "vxlanModeV6": "Always"}),
            "spec.vxlanModeV6: applies to IPv6 pools only; an IPv4 pool's setting is vxlanMode",
        ),
        (
            doc(
                "IPPool", "p", {"cidr": "fd00::/64", "vxlanMode": "Never", "vxlanModeV6": "Always"}
            ),
            "spec.vxlanModeV6: Always contradicts vxlanMode: Never",
        ),
        (
            doc("IPPool", "p", {"cidr": "fe80::/64"}),
            "f.yaml IPPool/p: spec.cidr: must not overlap the link-local range fe80::/10",
        ),
        (
            doc("IPPool", "p", {"cidr": "169.254.0.0/24"}),
            "spec.cidr: must not overlap the link-local range 169.254.0.0/16",
        ),
        (
            doc("IPPool", "p", {"cidr": "fd00::/64", "ipipMode": "Always"}),
            "spec.ipipMode: IPIP carries IPv4 only",
        ),
        (doc("IPPool", "p", {"cidr": "10.0.0.0/8", "cdir": 1}), "spec.cdir: unknown key"),
        (doc("IPPool", "Bad_Name", {"cidr": "10.0.0.0/8"}), "f.yaml: metadata.name: must be a"),
        (
            doc("Pool", "p"),
            "f.yaml: kind: must be one of BGPConfiguration, BGPPeer, BGPFilter, IPPool, Node",
        ),
        ({**doc("IPPool", "p"), "apiVersion": "v1"}, "f.yaml: apiVersion: must be podbgp/v1"),
        (
            doc("BGPPeer", "p", {"asNumber": 1}),
            "spec.peerIP: exactly one of peerIP and peerSelector",
        ),
        (doc("BGPPeer", "p", {"peerIP": "192.0.2.1"}), "spec.asNumber: required with peerIP"),
        (
            doc("BGPPeer", "p", {"peerSelector": "all()", "node": "a", "nodeSelector": "all()"}),
            "spec.nodeSelector: must not be set together with node",
        ),
        (
            doc("BGPPeer", "p", {"peerSelector": "zone = 'a'"}),
            "spec.peerSelector: invalid selector: unexpected character '='",
        ),
        (doc("BGPPeer", "p", {"peerIP": "224.0.0.1", "asNumber": 1}), "must be a unicast IP"),
        (
            doc("BGPConfiguration", "default", {"asNumber": 0}),
            "spec.asNumber: must be an integer in 1..4294967295",
        ),
        (
            doc("BGPConfiguration", "default", {"nodeMeshMaxRestartTime": "5000s"}),
            "between 1s and 4095s",
        ),
        (
            doc("BGPConfiguration", "default", {"nodeMeshBFD": {"minTx": 0}}),
            "f.yaml BGPConfiguration/default: spec.nodeMeshBFD.minTx: must be an integer in "
            "1..60000",
        ),
        (
            doc("BGPPeer", "p", {"peerSelector": "all()", "bfd": {"multipler": 3}}),
            "spec.bfd.multipler: unknown key; expected one of enabled, minRx, minTx, multiplier",
        ),
        (doc("Node", "n", {"addresses": ["192.0.2.1"]}), "spec.addresses[0]: must be an address"),
        (
            doc("Node", "n", {"addresses": ["192.0.2.1/24", "192.0.2.2/24"]}),
            "spec.addresses: at most one IPv4 and one IPv6 address",
        ),
        (
            doc("Node", "n", {"routeReflectorClusterID": "0.0.0.0"}),
            "spec.routeReflectorClusterID: must not be 0.0.0.0",
        ),
        (doc("Node", "n", labels={"bad key!": "x"}), "metadata.labels: label name 'bad key!'"),
        ("just a string", "f.yaml: must be a mapping"),
    ],
)
def test_refusals_are_one_line_with_key_and_problem(document: Any, message: str) -> None:
    with pytest.raises(ResourceError) as err:
        parse_resource(document, "f.yaml")
    text = str(err.value)
    assert "\n" not in text
    assert message in text


def test_overlapping_pools_are_refused() -> None:
    a = IPPool("a", "10.0.0.0/16")
    b = IPPool("b", "10.0.128.0/17")
    c = IPPool("c", "10.1.0.0/16")
    check_consistency([a, c])
    with pytest.raises(
        ResourceError, match=r"IPPool/b: spec.cidr: 10.0.128.0/17 overlaps IPPool/a"
    ):
        check_consistency([a, b, c])


def test_pinned_blocks_must_fit_a_pool_and_have_one_owner() -> None:
    pool = IPPool("a", "10.0.0.0/16", block_size=24)
    check_consistency([pool, Node("n1", blocks=("10.0.1.0/24",))])
    with pytest.raises(ResourceError, match="is not inside any IPPool"):
        check_consistency([pool, Node("n1", blocks=("10.9.1.0/24",))])
    with pytest.raises(ResourceError, match="must be a /24 block of IPPool/a"):
        check_consistency([pool, Node("n1", blocks=("10.0.1.0/25",))])
    with pytest.raises(ResourceError, match=r"10\.0\.1\.0/24 is pinned to Node/n1"):
        check_consistency(
            [pool, Node("n1", blocks=("10.0.1.0/24",)), Node("n2", blocks=("10.0.1.0/24",))]
        )


def test_kind_aliases() -> None:
    assert kind_of("ippools") == "IPPool"
    assert kind_of("Nodes") == "Node"
    assert kind_of("bgpconfig") == "BGPConfiguration"
    assert kind_of("BGPPeer") == "BGPPeer"
    assert kind_of("pods") is None


def test_bgp_filter_round_trip_and_refusals() -> None:
    from podbgp.cluster.resources import BGPFilter as FilterResource

    doc = {
        "apiVersion": "podbgp/v1",
        "kind": "BGPFilter",
        "metadata": {"name": "tor"},
        "spec": {
            "exportV4": [
                {
                    "cidr": "10.244.0.0/16",
                    "matchOperator": "In",
                    "action": "Accept",
                    "operations": [{"addCommunity": {"value": "64512:1"}}],
                }
            ],
            "importV6": [{"action": "Reject"}],
        },
    }
    res = parse_resource(doc, "f.yaml")
    assert isinstance(res, FilterResource) and res.rules.name == "tor"
    assert to_dict(res) == doc
    bad = {**doc, "spec": {"importV4": [{"cidr": "10.0.0.0/8", "action": "Accept"}]}}
    with pytest.raises(ResourceError) as info:
        parse_resource(bad, "f.yaml")
    assert str(info.value) == (
        "f.yaml BGPFilter/tor: spec.importV4[0].matchOperator: required when cidr is set"
    )
    prio = {**doc, "spec": {"exportV4": [{"priority": 3, "action": "Accept"}]}}
    with pytest.raises(ResourceError, match=r"spec.exportV4\[0\].priority: not supported"):
        parse_resource(prio, "f.yaml")


def test_peer_naming_a_missing_filter_is_refused() -> None:
    from podbgp.cluster.resources import BGPPeer

    peer = BGPPeer("tor", peer_ip="192.0.2.1", as_number=65001, filters=("nope",))
    with pytest.raises(ResourceError, match=r"spec.filters\[0\]: no BGPFilter named 'nope'"):
        check_consistency([peer])


def test_bgp_peer_max_prefixes() -> None:
    from podbgp.cluster.resources import BGPPeer, PrefixLimit

    spec = {"peerIP": "192.0.2.1", "asNumber": 65001,
            "maxPrefixes": {"limit": 500, "restartAfter": "2m"}}  # fmt: skip
    res = parse_resource({"apiVersion": "podbgp/v1", "kind": "BGPPeer",
                          "metadata": {"name": "tor"}, "spec": spec}, "f.yaml")  # fmt: skip
    assert isinstance(res, BGPPeer) and res.max_prefixes == PrefixLimit(500, 75, 120)
    assert to_dict(res)["spec"]["maxPrefixes"] == {
        "limit": 500, "warningThreshold": 75, "restartAfter": "120s"}  # fmt: skip
    spec["maxPrefixes"] = {"limit": 0}
    with pytest.raises(ResourceError, match=r"spec.maxPrefixes.limit: must be an integer"):
        parse_resource({"apiVersion": "podbgp/v1", "kind": "BGPPeer",
                        "metadata": {"name": "tor"}, "spec": spec}, "f.yaml")  # fmt: skip


def test_bgp_configuration_communities_and_prefix_advertisements() -> None:
    from podbgp.cluster.resources import BGPConfiguration

    spec: dict[str, Any] = {
        "communities": [{"name": "pods", "value": "64512:300"}],
        "prefixAdvertisements": [{"cidr": "10.244.0.0/16", "communities": ["pods", "1:2:3"]}],
    }
    doc = {"apiVersion": "podbgp/v1", "kind": "BGPConfiguration",
           "metadata": {"name": "default"}, "spec": spec}  # fmt: skip
    res = parse_resource(doc, "f.yaml")
    assert isinstance(res, BGPConfiguration)
    assert res.prefix_advertisements == (("10.244.0.0/16", ("64512:300", "1:2:3")),)
    spec["prefixAdvertisements"][0]["communities"] = ["nope"]
    with pytest.raises(ResourceError, match=r"prefixAdvertisements\[0\].communities\[0\]: 'nope'"):
        parse_resource(doc, "f.yaml")
    spec["prefixAdvertisements"] = []
    spec["communities"] = [{"name": "x", "value": "70000:1"}]
    with pytest.raises(ResourceError, match=r"spec.communities\[0\].value: community parts"):
        parse_resource(doc, "f.yaml")


def test_bgp_peer_next_hop_mode_and_local_as() -> None:
    from podbgp.cluster.resources import BGPPeer

    def peer(**spec: Any) -> Any:
        doc = {"apiVersion": "podbgp/v1", "kind": "BGPPeer", "metadata": {"name": "tor"},
               "spec": {"peerIP": "192.0.2.1", "asNumber": 65001, **spec}}  # fmt: skip
        return parse_resource(doc, "f.yaml")

    keep = peer(keepOriginalNextHop=True)
    assert isinstance(keep, BGPPeer) and keep.keep_original_next_hop
    assert peer(nextHopMode="Keep") == keep  # the alias and the new field mean one thing
    selfed = peer(nextHopMode="Self", localASNumber=65100)
    assert selfed.next_hop_self and selfed.local_as_number == 65100
    assert to_dict(selfed)["spec"]["nextHopMode"] == "Self"
    with pytest.raises(ResourceError, match=r"spec\.nextHopMode: Self contradicts"):
        peer(nextHopMode="Self", keepOriginalNextHop=True)


def test_bgp_peer_unnumbered_interface_and_extended_next_hop() -> None:
    def peer(**spec: Any) -> Any:
        return parse_resource(doc("BGPPeer", "tor", {"asNumber": 65001, **spec}), "f.yaml")

    tor = peer(interface="eth1", node="node-1")
    assert isinstance(tor, BGPPeer)
    assert (tor.interface, tor.peer_ip, tor.extended_next_hop) == ("eth1", None, None)
    assert to_dict(tor)["spec"]["interface"] == "eth1"
    assert peer(peerIP="2001:db8::1", extendedNextHop=True).extended_next_hop is True
    assert parse_resource(to_dict(tor), "f.yaml") == tor
    with pytest.raises(ResourceError, match=r"spec\.interface: not with peerIP or peerSelector"):
        peer(interface="eth1", peerIP="192.0.2.1")
    with pytest.raises(ResourceError, match=r"spec\.interface: must be an interface name"):
        peer(interface="eth 1")
    with pytest.raises(ResourceError, match=r"spec\.bfd: not supported on unnumbered"):
        peer(interface="eth1", bfd={"minRx": 100})
    with pytest.raises(ResourceError, match=r"spec\.asNumber: required with interface"):
        parse_resource(doc("BGPPeer", "tor", {"interface": "eth1"}), "f.yaml")
