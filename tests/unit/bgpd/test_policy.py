"""Import/export rules: loops, split horizon, next hop self, eBGP attribute handling."""

from __future__ import annotations

from bgpd.codec.types import PathAttributes, SegmentType
from bgpd.decision import LOCAL_SOURCE, PathSource
from bgpd.policy import PeerPolicy, export_attributes, import_path, may_advertise

SEQ = SegmentType.AS_SEQUENCE
IBGP_PEER = PeerPolicy(local_asn=64512, ebgp=False, next_hop_v4="192.0.2.11", next_hop_v6=None)
EBGP_PEER = PeerPolicy(local_asn=64512, ebgp=True, next_hop_v4="192.0.2.11", next_hop_v6=None)
FROM_IBGP = PathSource(peer="192.0.2.12", router_id=12)
FROM_EBGP = PathSource(peer="198.51.100.1", router_id=99, ebgp=True)


def test_ebgp_import_drops_paths_with_our_as_and_sets_local_pref() -> None:
    looped = PathAttributes(as_path=((SEQ, (65001, 64512)),), next_hop="198.51.100.1")
    assert import_path(looped, local_asn=64512, router_id="192.0.2.11", ebgp=True) is None
    fine = PathAttributes(as_path=((SEQ, (65001,)),), next_hop="198.51.100.1", local_pref=900)
    imported = import_path(fine, local_asn=64512, router_id="192.0.2.11", ebgp=True)
    assert imported is not None and imported.local_pref == 100


def test_ibgp_import_defaults_local_pref_and_drops_reflection_loops() -> None:
    plain = PathAttributes(next_hop="192.0.2.12")
    got = import_path(plain, local_asn=64512, router_id="192.0.2.11", ebgp=False)
    assert got is not None and got.local_pref == 100
    ours = PathAttributes(next_hop="192.0.2.12", originator_id="192.0.2.11")
    assert import_path(ours, local_asn=64512, router_id="192.0.2.11", ebgp=False) is None
    looped = PathAttributes(next_hop="192.0.2.12", cluster_list=("1.1.1.1",))
    kwargs = {"local_asn": 64512, "router_id": "192.0.2.11", "ebgp": False}
    assert import_path(looped, cluster_id="1.1.1.1", **kwargs) is None  # type: ignore[arg-type]
    assert import_path(looped, cluster_id="2.2.2.2", **kwargs) is not None  # type: ignore[arg-type]


def test_split_horizon_and_no_echo() -> None:
    assert may_advertise(LOCAL_SOURCE, "192.0.2.12", IBGP_PEER)
    assert may_advertise(FROM_EBGP, "192.0.2.12", IBGP_PEER)
    assert not may_advertise(FROM_IBGP, "192.0.2.13", IBGP_PEER)  # iBGP → iBGP: never
    assert may_advertise(FROM_IBGP, "198.51.100.1", EBGP_PEER)
    assert not may_advertise(FROM_EBGP, "198.51.100.1", EBGP_PEER)  # back to its sender


def test_local_route_to_ibgp_gets_next_hop_self_and_local_pref() -> None:
    out = export_attributes(PathAttributes(), LOCAL_SOURCE, IBGP_PEER, "192.0.2.11", ipv6=False)
    assert out is not None
    assert out.next_hop == "192.0.2.11" and out.local_pref == 100 and out.as_path == ()


def test_ebgp_export_prepends_and_strips_internal_attributes() -> None:
    learned = PathAttributes(
        as_path=((SEQ, (64513,)),),
        next_hop="192.0.2.12",
        local_pref=300,
        med=7,
        originator_id="192.0.2.50",
        cluster_list=("1.1.1.1",),
    )
    out = export_attributes(learned, FROM_IBGP, EBGP_PEER, "192.0.2.11", ipv6=False)
    assert out is not None
    assert out.as_path == ((SEQ, (64512, 64513)),)
    assert out.next_hop == "192.0.2.11"
    assert out.local_pref is None and out.med is None
    assert out.originator_id is None and out.cluster_list == ()


def test_no_next_hop_of_the_family_means_no_export() -> None:
    assert export_attributes(PathAttributes(), LOCAL_SOURCE, IBGP_PEER, "192.0.2.11", True) is None


def test_keep_original_next_hop_towards_an_ebgp_peer() -> None:
    keep = PeerPolicy(
        local_asn=64512, ebgp=True, next_hop_v4="192.0.2.11", next_hop_v6=None, keep_next_hop=True
    )
    learned = PathAttributes(next_hop="192.0.2.12", local_pref=100)
    out = export_attributes(learned, FROM_IBGP, keep, "192.0.2.11", ipv6=False)
    assert out is not None and out.next_hop == "192.0.2.12"  # the owning node, not us
    own = export_attributes(PathAttributes(), LOCAL_SOURCE, keep, "192.0.2.11", ipv6=False)
    assert own is not None and own.next_hop == "192.0.2.11"  # our own block: us


def test_next_hop_mode_self_and_keep() -> None:
    """Calico nextHopMode: Self sets our address on reflected paths too; Keep passes an
    eBGP-learned path's next hop on to iBGP peers."""
    import dataclasses

    client = PathSource(peer="192.0.2.12", router_id=12, rr_client=True)
    path = PathAttributes(next_hop="192.0.2.12", local_pref=100)
    reflector = dataclasses.replace(IBGP_PEER, cluster_id="1.0.0.1", rr_client=True)
    auto = export_attributes(path, client, reflector, "192.0.2.11", False)
    assert auto is not None and auto.next_hop == "192.0.2.12"
    self_ = dataclasses.replace(reflector, next_hop_self=True)
    forced = export_attributes(path, client, self_, "192.0.2.11", False)
    assert forced is not None and forced.next_hop == "192.0.2.11"
    assert forced.cluster_list == ("1.0.0.1",)
    learned = PathAttributes(next_hop="198.51.100.1", local_pref=100)
    keep = dataclasses.replace(IBGP_PEER, keep_next_hop=True)
    kept = export_attributes(learned, FROM_EBGP, keep, "192.0.2.11", False)
    assert kept is not None and kept.next_hop == "198.51.100.1"
    selfed = export_attributes(learned, FROM_EBGP, IBGP_PEER, "192.0.2.11", False)
    assert selfed is not None and selfed.next_hop == "192.0.2.11"


def test_ipv4_paths_over_an_ipv6_session_need_extended_next_hop() -> None:
    """RFC 8950: our IPv4 next hop on an IPv6 session is our IPv6 address only when negotiated
    (bgpd.nexthop.own_next_hops); without it an IPv6 next hop never rides on IPv4 routes."""
    v6_only = PeerPolicy(local_asn=64512, ebgp=True, next_hop_v4=None, next_hop_v6="2001:db8::1")
    assert export_attributes(PathAttributes(), LOCAL_SOURCE, v6_only, "192.0.2.11", False) is None
    rfc8950 = PeerPolicy(
        local_asn=64512, ebgp=True, next_hop_v4="fe80::1%eth0", next_hop_v6="fe80::1%eth0"
    )
    out = export_attributes(PathAttributes(), LOCAL_SOURCE, rfc8950, "192.0.2.11", False)
    assert out is not None and out.next_hop == "fe80::1%eth0"
    # A path learned over RFC 8950 with a v6 next hop does not go to an IPv4-only session.
    learned = PathAttributes(next_hop="2001:db8::9", local_pref=100)
    keep = PeerPolicy(local_asn=64512, ebgp=True, next_hop_v4="192.0.2.11", next_hop_v6=None,
                      keep_next_hop=True)  # fmt: skip
    assert export_attributes(learned, FROM_IBGP, keep, "192.0.2.11", ipv6=False) is None


def test_a_link_local_next_hop_stays_on_its_link() -> None:
    client = PathSource(peer="fe80::2%eth0", router_id=12, rr_client=True)
    path = PathAttributes(next_hop="fe80::2%eth0", local_pref=100)
    reflector = PeerPolicy(
        local_asn=64512,
        ebgp=False,
        next_hop_v4=None,
        next_hop_v6="2001:db8::1",
        cluster_id="1.0.0.1",
        rr_client=True,
    )
    out = export_attributes(path, client, reflector, "192.0.2.11", ipv6=True)
    assert out is not None and out.next_hop == "2001:db8::1"  # ours, not another link's
