"""A session's routing policy (bgpd.policy_filters) and the filtered Adj-RIB-In (bgpd.import_rib):
no transit, cluster-owned export, RFC 8212, operations before our own prepend, re-import."""

from __future__ import annotations

import ipaddress

import pytest

from bgpd.bgpfilter import FilterError, parse_filter
from bgpd.bgpfilter_eval import Outcome
from bgpd.bgpfilter_support import check_supported
from bgpd.codec.types import Afi, PathAttributes, prefix_from_str
from bgpd.decision import LOCAL_SOURCE, PathSource
from bgpd.import_rib import FilteredAdjRibIn, ImportDecision
from bgpd.policy import PeerPolicy, export_attributes
from bgpd.policy_filters import (
    SessionFilters,
    export_verdict,
    import_verdict,
    transit_blocked,
)

EBGP_PEER = PathSource(peer="192.0.2.2", router_id=1, ebgp=True)
IBGP_PEER = PathSource(peer="192.0.2.3", router_id=2)
PATH = PathAttributes(as_path=((2, (65001,)),), next_hop="192.0.2.2")


def wire(prefix: str) -> bytes:
    return prefix_from_str(prefix)[1]


def accept_transit(cidr: str) -> SessionFilters:
    f = parse_filter(
        {"name": "t", "exportV4": [{"cidr": cidr, "matchOperator": "Equal", "action": "Accept"}]}
    )
    return SessionFilters(filters=(f,))


@pytest.mark.parametrize(
    ("source", "to_ebgp", "blocked"),
    [
        (EBGP_PEER, True, True),  # eBGP → eBGP: the route leak this prevents
        (EBGP_PEER, False, False),  # eBGP → iBGP: as BGP requires
        (IBGP_PEER, True, False),  # iBGP → eBGP: ordinary
        (LOCAL_SOURCE, True, False),  # our own prefixes go everywhere
    ],
)
def test_no_transit_default(source: PathSource, to_ebgp: bool, blocked: bool) -> None:
    policy = SessionFilters()
    assert transit_blocked(policy, to_ebgp, source) is blocked
    verdict = export_verdict(accept_transit("10.9.0.0/24"), to_ebgp, Afi.IPV4,
                             wire("10.1.0.0/24"), PATH, source)  # fmt: skip
    assert verdict.accepted is not blocked
    if blocked:
        assert verdict.outcome is Outcome.NO_TRANSIT


def test_a_filter_accepts_exactly_its_transit_prefix() -> None:
    policy = accept_transit("10.9.0.0/24")
    ok = export_verdict(policy, True, Afi.IPV4, wire("10.9.0.0/24"), PATH, EBGP_PEER)
    assert ok.accepted and ok.outcome is Outcome.RULE
    other = export_verdict(policy, True, Afi.IPV4, wire("10.9.1.0/24"), PATH, EBGP_PEER)
    assert not other.accepted and other.outcome is Outcome.NO_TRANSIT


def test_owned_only_exports_cluster_prefixes() -> None:
    policy = SessionFilters(owned=(ipaddress.ip_network("10.244.0.0/16"),))
    assert policy.prefix_dependent
    inside = export_verdict(policy, False, Afi.IPV4, wire("10.244.3.0/24"), PATH, IBGP_PEER)
    assert inside.accepted
    outside = export_verdict(policy, False, Afi.IPV4, wire("10.9.0.0/24"), PATH, LOCAL_SOURCE)
    assert not outside.accepted and outside.outcome is Outcome.NOT_OWNED


def test_rfc8212_blocks_and_says_why() -> None:
    policy = SessionFilters(ebgp_requires_policy=True)
    assert transit_blocked(policy, True, LOCAL_SOURCE)
    assert not transit_blocked(policy, False, LOCAL_SOURCE)  # iBGP: RFC 8212 is about eBGP
    assert len(policy.blocked(True)) == 4 and policy.blocked(False) == []
    assert policy.filters_import(True) and not policy.filters_import(False)
    verdict = import_verdict(policy, True, Afi.IPV4, wire("10.1.0.0/24"), PATH)
    assert not verdict.accepted and verdict.outcome is Outcome.NO_POLICY


def test_filter_prepend_comes_before_our_own_as() -> None:
    f = parse_filter(
        {
            "name": "p",
            "exportV4": [
                {"action": "Accept", "operations": [{"prependASPath": {"prefix": [64999]}}]}
            ],
        }
    )
    verdict = export_verdict(SessionFilters(filters=(f,)), True, Afi.IPV4, wire("10.244.1.0/24"),
                             PathAttributes(), LOCAL_SOURCE)  # fmt: skip
    assert verdict.attributes is not None
    policy = PeerPolicy(local_asn=64512, ebgp=True, next_hop_v4="192.0.2.1", next_hop_v6=None)
    out = export_attributes(verdict.attributes, LOCAL_SOURCE, policy, "192.0.2.1", False)
    assert out is not None and out.as_path == ((2, (64512, 64999)),)


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"interface": "eth*", "action": "Accept"}, "f.importV4[0].interface"),
        ({"priority": 5, "action": "Accept"}, "f.importV4[0].priority"),
        (
            {"action": "Accept", "operations": [{"setPriority": {"value": 1}}]},
            "f.importV4[0].operations[0].setPriority",
        ),
    ],
)
def test_fields_podbgp_cannot_act_on_are_refused(rule: dict[str, object], path: str) -> None:
    f = parse_filter({"name": "x", "importV4": [rule]})
    with pytest.raises(FilterError) as info:
        check_supported(f, "f")
    assert info.value.path == path


def _reject(prefix: str) -> ImportDecision:
    def decide(afi: int, p: bytes, attrs: PathAttributes) -> PathAttributes | None:
        return None if p == wire(prefix) else attrs

    return decide


def test_filtered_rib_keeps_what_was_received_and_reimports() -> None:
    rib = FilteredAdjRibIn()
    a, b = wire("10.1.0.0/24"), wire("10.2.0.0/24")
    changed = rib.receive(Afi.IPV4, [a, b], PATH, _reject("10.2.0.0/24"))
    assert changed == [a]
    assert set(rib.table(Afi.IPV4)) == {a} and set(rib.received.table(Afi.IPV4)) == {a, b}
    assert rib.received_count() == 2 and rib.count() == 1
    # The filter changes: b is accepted, a rejected — from the kept paths, nothing re-sent.
    redo = rib.reimport(_reject("10.1.0.0/24"))
    assert sorted(redo[Afi.IPV4]) == sorted([a, b])
    assert set(rib.table(Afi.IPV4)) == {b}
    # Graceful restart: both stale; the peer re-sends only b; End-of-RIB sweeps a everywhere.
    rib.mark_stale([Afi.IPV4])
    rib.receive(Afi.IPV4, [b], PATH, _reject("10.1.0.0/24"))
    rib.sweep_stale(Afi.IPV4)
    assert set(rib.received.table(Afi.IPV4)) == {b} and set(rib.table(Afi.IPV4)) == {b}
    rib.withdraw(Afi.IPV4, [b])
    assert rib.received_count() == 0 and rib.count() == 0


def test_rejected_path_leaves_the_stale_set() -> None:
    """A stale path re-sent and now rejected must not be swept again at End-of-RIB."""
    rib = FilteredAdjRibIn()
    a = wire("10.1.0.0/24")
    rib.receive(Afi.IPV4, [a], PATH, lambda _f, _p, attrs: attrs)
    rib.mark_stale([Afi.IPV4])
    rib.receive(Afi.IPV4, [a], PATH, _reject("10.1.0.0/24"))
    rib.sweep_stale(Afi.IPV4)  # raised KeyError before the fix in AdjRibIn.announce
    assert rib.count() == 0 and set(rib.received.table(Afi.IPV4)) == {a}
