"""BGPFilter: parsing and validation (field paths), matching per field, operations, RFC 8212."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.bgpfilter import (
    AddCommunity,
    BGPFilter,
    Community,
    Direction,
    Family,
    FilterError,
    MatchOperator,
    PeerType,
    PrefixLength,
    PrependASPath,
    RouteSource,
    Rule,
    RuleAction,
    SetPriority,
    parse_filter,
    parse_filter_spec,
    parse_rule,
)
from bgpd.bgpfilter_eval import (
    Outcome,
    RouteView,
    SessionContext,
    apply_filters,
    evaluate,
    prepend_as_path,
    rfc8212_block,
    rule_matches,
)
from bgpd.codec.types import PathAttributes, SegmentType

SEQ = int(SegmentType.AS_SEQUENCE)
SET = int(SegmentType.AS_SET)
EBGP = SessionContext(PeerType.EBGP)
IBGP = SessionContext(PeerType.IBGP)
EBGP_STRICT = SessionContext(PeerType.EBGP, ebgp_requires_policy=True)
IBGP_STRICT = SessionContext(PeerType.IBGP, ebgp_requires_policy=True)


def route(
    prefix: str = "10.244.1.0/24",
    *,
    from_peer: bool = True,
    interface: str | None = None,
    priority: int | None = None,
    **attrs: Any,
) -> RouteView:
    return RouteView(
        prefix=ipaddress.ip_network(prefix),
        attributes=PathAttributes(**attrs),
        from_peer=from_peer,
        interface=interface,
        priority=priority,
    )


def rule(family: Family = Family.V4, **fields: Any) -> Rule:
    return parse_rule({"action": "Accept", **fields}, family, "r")


def matches(r: Rule, rv: RouteView, ctx: SessionContext = EBGP) -> bool:
    return rule_matches(r, rv, ctx)


# --- parsing -----------------------------------------------------------------------------


def test_parse_full_rule_into_typed_fields() -> None:
    f = parse_filter(
        {
            "name": "edge",
            "exportV4": [
                {
                    "action": "Accept",
                    "cidr": "10.244.0.0/16",
                    "matchOperator": "In",
                    "prefixLength": {"min": 24, "max": 26},
                    "source": "RemotePeers",
                    "interface": "eth*",
                    "peerType": "eBGP",
                    "communities": {"values": ["65000:100", "65000:1:2"]},
                    "asPathPrefix": [65001, "1.10"],
                    "priority": 512,
                    "operations": [
                        {"addCommunity": {"value": "65000:200"}},
                        {"prependASPath": {"prefix": [64512, 64512]}},
                        {"setPriority": {"value": 100}},
                    ],
                }
            ],
        }
    )
    (r,) = f.export_v4
    assert r == Rule(
        action=RuleAction.ACCEPT,
        cidr=ipaddress.IPv4Network("10.244.0.0/16"),
        match_operator=MatchOperator.IN,
        prefix_length=PrefixLength(24, 26),
        source=RouteSource.REMOTE_PEERS,
        interface="eth*",
        peer_type=PeerType.EBGP,
        communities=(Community((65000, 100)), Community((65000, 1, 2))),
        as_path_prefix=(65001, 65546),  # asdot 1.10 = 65536 + 10
        priority=512,
        operations=(
            AddCommunity(Community((65000, 200))),
            PrependASPath((64512, 64512)),
            SetPriority(100),
        ),
    )
    assert f.import_v4 == f.export_v6 == f.import_v6 == ()
    assert f.rules(Direction.EXPORT, Family.V4) == (r,)


def test_spec_form_reports_paths_under_spec() -> None:
    f = parse_filter_spec("edge", {"importV6": [{"action": "Reject"}]})
    assert f == BGPFilter(name="edge", import_v6=(Rule(action=RuleAction.REJECT),))
    with pytest.raises(FilterError) as e:
        parse_filter_spec("edge", {"importV6": [{"action": "Drop"}]})
    assert e.value.path == "spec.importV6[0].action"


def test_error_path_is_prefixed_with_where() -> None:
    with pytest.raises(FilterError) as e:
        parse_filter({"name": "f", "exportV4": [{"action": "Accept", "cidr": "x"}]}, "filters[3]")
    assert e.value.path == "filters[3].exportV4[0].cidr"
    assert str(e.value).startswith("filters[3].exportV4[0].cidr: ")


def _f(rule_: dict[str, Any], key: str = "exportV4") -> dict[str, Any]:
    return {"name": "f", key: [{"action": "Accept", **rule_}]}


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, filter, error path, words in the reason)
    ("missing name", {"exportV4": []}, "name", "required"),
    ("bad name", {"name": "-x"}, "name", "not a valid name"),
    ("unknown top key", {"name": "f", "exportv4": []}, "exportv4", "unknown key"),
    ("list not a list", {"name": "f", "importV4": {"action": "Accept"}}, "importV4", "list"),
    ("rule not a mapping", {"name": "f", "importV4": ["Accept"]}, "importV4[0]", "mapping"),
    ("missing action", {"name": "f", "exportV4": [{}]}, "exportV4[0].action", "required"),
    ("bad action", _f({"action": "accept"}), "exportV4[0].action", "Accept or Reject"),
    ("unknown rule key", _f({"nextHop": "1.1.1.1"}), "exportV4[0].nextHop", "unknown key"),
    ("cidr without operator", _f({"cidr": "10.0.0.0/8"}), "exportV4[0].matchOperator", "cidr"),
    ("operator without cidr", _f({"matchOperator": "In"}), "exportV4[0].cidr", "matchOperator"),
    (
        "bad operator",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "Within"}),
        "exportV4[0].matchOperator",
        "NotIn",
    ),
    (
        "not a cidr",
        _f({"cidr": "10.0.0/8x", "matchOperator": "In"}),
        "exportV4[0].cidr",
        "not a CIDR",
    ),
    (
        "no length",
        _f({"cidr": "10.0.0.0", "matchOperator": "In"}),
        "exportV4[0].cidr",
        "no prefix length",
    ),
    (
        "host bits",
        _f({"cidr": "10.1.0.0/8", "matchOperator": "In"}),
        "exportV4[0].cidr",
        "did you mean 10.0.0.0/8",
    ),
    (
        "v6 in v4 list",
        _f({"cidr": "fd00::/8", "matchOperator": "In"}),
        "exportV4[0].cidr",
        "takes IPv4",
    ),
    (
        "v4 in v6 list",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "In"}, "importV6"),
        "importV6[0].cidr",
        "takes IPv6",
    ),
    (
        "prefixLength no cidr",
        _f({"prefixLength": {"min": 24}}),
        "exportV4[0].prefixLength",
        "requires cidr",
    ),
    (
        "prefixLength with Equal",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "Equal", "prefixLength": {"max": 24}}),
        "exportV4[0].prefixLength",
        "In or NotIn",
    ),
    (
        "prefixLength min over 32",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"min": 33}}),
        "exportV4[0].prefixLength.min",
        "0..32",
    ),
    (
        "prefixLength max over 128",
        _f({"cidr": "fd00::/8", "matchOperator": "In", "prefixLength": {"max": 129}}, "exportV6"),
        "exportV6[0].prefixLength.max",
        "0..128",
    ),
    (
        "prefixLength min > max",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"min": 28, "max": 24}}),
        "exportV4[0].prefixLength.min",
        "greater than max",
    ),
    (
        "prefixLength default min > max",
        _f({"cidr": "10.0.0.0/24", "matchOperator": "In", "prefixLength": {"max": 16}}),
        "exportV4[0].prefixLength.min",
        "24 is greater than max 16",
    ),
    (
        "prefixLength unknown key",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"mn": 9}}),
        "exportV4[0].prefixLength.mn",
        "unknown key",
    ),
    (
        "prefixLength bool",
        _f({"cidr": "10.0.0.0/8", "matchOperator": "In", "prefixLength": {"min": True}}),
        "exportV4[0].prefixLength.min",
        "integer",
    ),
    ("bad source", _f({"source": "Local"}), "exportV4[0].source", "RemotePeers"),
    ("bad interface", _f({"interface": "eth 0"}), "exportV4[0].interface", "glob"),
    ("bad peerType", _f({"peerType": "ebgp"}), "exportV4[0].peerType", "eBGP or iBGP"),
    ("communities list", _f({"communities": ["1:1"]}), "exportV4[0].communities", "mapping"),
    (
        "communities empty",
        _f({"communities": {"values": []}}),
        "exportV4[0].communities.values",
        "at least one",
    ),
    (
        "community format",
        _f({"communities": {"values": ["1:2", "1-2"]}}),
        "exportV4[0].communities.values[1]",
        "aa:nn or aa:nn:mm",
    ),
    (
        "standard community 16-bit",
        _f({"communities": {"values": ["65536:1"]}}),
        "exportV4[0].communities.values[0]",
        "standard community parts are 16-bit",
    ),
    (
        "large community 32-bit",
        _f({"communities": {"values": ["1:2:4294967296"]}}),
        "exportV4[0].communities.values[0]",
        "large community parts are 32-bit",
    ),
    ("asPathPrefix empty", _f({"asPathPrefix": []}), "exportV4[0].asPathPrefix", "at least"),
    ("asPathPrefix AS 0", _f({"asPathPrefix": [1, 0]}), "exportV4[0].asPathPrefix[1]", "7607"),
    ("asPathPrefix big", _f({"asPathPrefix": [2**32]}), "exportV4[0].asPathPrefix[0]", "outside"),
    (
        "asPathPrefix text",
        _f({"asPathPrefix": ["AS1"]}),
        "exportV4[0].asPathPrefix[0]",
        "not an AS number",
    ),
    ("priority negative", _f({"priority": -1}), "exportV4[0].priority", "outside"),
    ("priority text", _f({"priority": "5"}), "exportV4[0].priority", "integer"),
    (
        "operations with Reject",
        _f({"action": "Reject", "operations": [{"setPriority": {"value": 1}}]}),
        "exportV4[0].operations",
        "only allowed with action Accept",
    ),
    (
        "eleven operations",
        _f({"operations": [{"setPriority": {"value": i}} for i in range(11)]}),
        "exportV4[0].operations",
        "at most 10",
    ),
    (
        "operation with two fields",
        _f(
            {
                "operations": [
                    {"setPriority": {"value": 1}, "addCommunity": {"value": "1:1"}},
                ]
            }
        ),
        "exportV4[0].operations[0]",
        "exactly one",
    ),
    ("operation empty", _f({"operations": [{}]}), "exportV4[0].operations[0]", "exactly one"),
    (
        "operation unknown",
        _f({"operations": [{"setLocalPref": {"value": 1}}]}),
        "exportV4[0].operations[0].setLocalPref",
        "unknown key",
    ),
    (
        "addCommunity bad value",
        _f({"operations": [{"addCommunity": {"value": "no"}}]}),
        "exportV4[0].operations[0].addCommunity.value",
        "not a community",
    ),
    (
        "addCommunity missing value",
        _f({"operations": [{"addCommunity": {}}]}),
        "exportV4[0].operations[0].addCommunity.value",
        "required",
    ),
    (
        "prependASPath AS 0",
        _f({"operations": [{"prependASPath": {"prefix": [0]}}]}),
        "exportV4[0].operations[0].prependASPath.prefix[0]",
        "RFC 7607",
    ),
    (
        "prependASPath empty",
        _f({"operations": [{"prependASPath": {"prefix": []}}]}),
        "exportV4[0].operations[0].prependASPath.prefix",
        "at least one",
    ),
    (
        "setPriority bad",
        _f({"operations": [{"setPriority": {"value": 2**32}}]}),
        "exportV4[0].operations[0].setPriority.value",
        "outside",
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "words"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_filters_name_field_and_reason(data: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(FilterError) as e:
        parse_filter(data)
    assert e.value.path == path
    assert words in e.value.reason, e.value.reason
    assert str(e.value) == f"{e.value.path}: {e.value.reason}"


def test_zero_operations_and_ten_operations_are_fine() -> None:
    ten = [{"setPriority": {"value": i}} for i in range(10)]
    assert len(parse_filter(_f({"operations": ten})).export_v4[0].operations) == 10
    assert parse_filter(_f({"action": "Reject", "operations": []})).export_v4[0].operations == ()


# --- matching, one field at a time -------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "prefix", "expected"),
    [
        ("Equal", "10.244.0.0/16", True),
        ("Equal", "10.244.1.0/24", False),
        ("NotEqual", "10.244.0.0/16", False),
        ("NotEqual", "10.244.1.0/24", True),
        ("In", "10.244.0.0/16", True),  # the cidr itself is within it
        ("In", "10.244.1.0/24", True),
        ("In", "10.0.0.0/8", False),  # a supernet is not within
        ("In", "10.245.0.0/24", False),
        ("NotIn", "10.244.1.0/24", False),
        ("NotIn", "10.245.0.0/24", True),
        ("NotIn", "10.0.0.0/8", True),
    ],
)
def test_cidr_operators(op: str, prefix: str, expected: bool) -> None:
    r = rule(cidr="10.244.0.0/16", matchOperator=op)
    assert matches(r, route(prefix)) is expected


@pytest.mark.parametrize(
    ("bounds", "prefix", "expected"),
    [
        ({"min": 24}, "10.244.1.0/24", True),
        ({"min": 24}, "10.244.1.1/32", True),  # max defaults to 32
        ({"min": 24}, "10.244.0.0/23", False),
        ({"max": 24}, "10.244.0.0/16", True),  # min defaults to the cidr's 16
        ({"max": 24}, "10.244.1.0/25", False),
        ({"min": 24, "max": 26}, "10.244.1.64/26", True),
        ({"min": 24, "max": 26}, "10.245.1.0/24", False),  # outside the cidr
        ({"min": 8, "max": 16}, "10.0.0.0/8", True),  # BIRD pattern: first 8 bits agree
        ({"min": 8, "max": 16}, "11.0.0.0/8", False),
    ],
)
def test_in_with_prefix_length(bounds: dict[str, int], prefix: str, expected: bool) -> None:
    r = rule(cidr="10.244.0.0/16", matchOperator="In", prefixLength=bounds)
    assert matches(r, route(prefix)) is expected
    negated = rule(cidr="10.244.0.0/16", matchOperator="NotIn", prefixLength=bounds)
    assert matches(negated, route(prefix)) is not expected


def test_source_remote_peers_matches_learned_routes_only() -> None:
    r = rule(source="RemotePeers")
    assert matches(r, route(from_peer=True))
    assert not matches(r, route(from_peer=False))


@pytest.mark.parametrize(
    ("pattern", "interface", "expected"),
    [
        ("eth*", "eth0", True),
        ("eth*", "eth", True),
        ("eth*", "veth0", False),
        ("*.calico", "vxlan.calico", True),
        ("*.calico", "vxlanXcalico", False),  # '.' is literal
        ("eth?", "eth1", True),
        ("eth?", "eth10", False),
        ("tunl0", "tunl0", True),
        ("eth[0]", "eth0", False),  # no character classes in BIRD patterns
        ("eth*", None, False),  # a route without an interface never matches
    ],
)
def test_interface_glob(pattern: str, interface: str | None, expected: bool) -> None:
    assert matches(rule(interface=pattern), route(interface=interface)) is expected


def test_peer_type() -> None:
    assert matches(rule(peerType="eBGP"), route(), EBGP)
    assert not matches(rule(peerType="eBGP"), route(), IBGP)
    assert matches(rule(peerType="iBGP"), route(), IBGP)
    assert not matches(rule(peerType="iBGP"), route(), EBGP)


def test_standard_and_large_communities_all_must_be_present() -> None:
    std = (65000 << 16) | 100
    r = rule(communities={"values": ["65000:100"]})
    assert matches(r, route(communities=(1, std)))
    assert not matches(r, route(communities=((65000 << 16) | 101,)))
    large = rule(communities={"values": ["65000:1:2"]})
    assert matches(large, route(large_communities=((65000, 1, 2),)))
    assert not matches(large, route(communities=(std,), large_communities=((65000, 1, 3),)))
    both = rule(communities={"values": ["65000:100", "65000:1:2"]})
    assert matches(both, route(communities=(std,), large_communities=((65000, 1, 2),)))
    assert not matches(both, route(communities=(std,)))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (((SEQ, (65001, 65002, 65003)),), True),
        (((SEQ, (65001,)), (SEQ, (65002, 9))), True),  # across leading sequences
        (((SEQ, (65001,)),), False),  # too short
        (((SEQ, (65002, 65001)),), False),  # order matters
        (((SEQ, (9, 65001, 65002)),), False),  # a prefix, not anywhere in the path
        (((SET, (65001, 65002)),), False),  # an AS_SET has no order
        (((SEQ, (65001,)), (SET, (65002,))), False),
        ((), False),  # a local route has an empty path
    ],
)
def test_as_path_prefix(path: tuple[Any, ...], expected: bool) -> None:
    assert matches(rule(asPathPrefix=[65001, 65002]), route(as_path=path)) is expected


def test_priority_matches_the_routes_priority() -> None:
    r = rule(priority=512)
    assert matches(r, route(priority=512))
    assert not matches(r, route(priority=511))
    assert not matches(r, route(priority=None))


def test_rule_without_match_fields_matches_everything() -> None:
    r = rule()
    assert matches(r, route("0.0.0.0/0", from_peer=False), IBGP)
    assert matches(rule(Family.V6), route("fd00::/8"), EBGP)


def test_all_fields_must_hold() -> None:
    r = rule(cidr="10.244.0.0/16", matchOperator="In", source="RemotePeers", peerType="eBGP")
    assert matches(r, route("10.244.1.0/24", from_peer=True), EBGP)
    assert not matches(r, route("10.244.1.0/24", from_peer=False), EBGP)
    assert not matches(r, route("10.244.1.0/24", from_peer=True), IBGP)
    assert not matches(r, route("10.1.1.0/24", from_peer=True), EBGP)


def test_cidr_family_mismatch_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="family"):
        matches(rule(cidr="10.0.0.0/8", matchOperator="In"), route("fd00::/64"))


# --- evaluation: first match, operations, verdicts ---------------------------------------


def _rules(*rules: dict[str, Any], key: str = "exportV4") -> tuple[Rule, ...]:
    f = parse_filter({"name": "f", key: list(rules)})
    return f.rules(
        Direction.EXPORT if key.startswith("export") else Direction.IMPORT,
        Family.V4 if key.endswith("V4") else Family.V6,
    )


def test_first_match_wins() -> None:
    rules = _rules(
        {"action": "Reject", "cidr": "10.244.1.0/24", "matchOperator": "Equal"},
        {"action": "Accept", "cidr": "10.244.0.0/16", "matchOperator": "In"},
        {"action": "Reject"},
    )
    v = evaluate(rules, route("10.244.1.0/24"), EBGP, filter_name="f", list_name="exportV4")
    assert (v.accepted, v.outcome, v.rule_index) == (False, Outcome.RULE, 0)
    assert v.attributes is None
    assert v.reason == "rejected by f exportV4[0]"
    v = evaluate(rules, route("10.244.2.0/24"), EBGP, filter_name="f", list_name="exportV4")
    assert (v.accepted, v.rule_index) == (True, 1)
    assert v.reason == "accepted by f exportV4[1]"
    v = evaluate(rules, route("192.0.2.0/24"), EBGP)
    assert (v.accepted, v.rule_index) == (False, 2)


def test_no_match_accepts_unchanged_like_calico() -> None:
    rv = route("192.0.2.0/24", communities=(7,), priority=3)
    rules = _rules({"action": "Reject", "cidr": "10.0.0.0/8", "matchOperator": "In"})
    for ctx in (EBGP, IBGP, IBGP_STRICT):
        v = evaluate(rules, rv, ctx)
        assert (v.accepted, v.outcome) == (True, Outcome.NO_MATCH)
        assert v.attributes == rv.attributes and v.priority == 3
        assert v.rule_index is None and v.reason == "accepted: no rule matched"


def test_no_match_is_default_deny_on_ebgp_with_ebgp_requires_policy() -> None:
    rules = _rules({"action": "Accept", "cidr": "10.0.0.0/8", "matchOperator": "In"})
    v = evaluate(rules, route("192.0.2.0/24"), EBGP_STRICT)
    assert (v.accepted, v.outcome, v.attributes) == (False, Outcome.DEFAULT_DENY, None)
    assert v.reason == "rejected: default deny (RFC 8212)"
    assert evaluate(rules, route("10.1.0.0/16"), EBGP_STRICT).accepted


def test_add_standard_community_appends_without_duplicates() -> None:
    rules = _rules({"action": "Accept", "operations": [{"addCommunity": {"value": "65000:7"}}]})
    v = evaluate(rules, route(communities=(1,)), EBGP)
    assert v.attributes is not None
    assert v.attributes.communities == (1, (65000 << 16) | 7)
    again = evaluate(rules, route(communities=((65000 << 16) | 7, 1)), EBGP)
    assert again.attributes is not None
    assert again.attributes.communities == ((65000 << 16) | 7, 1)


def test_add_large_community_appends_without_duplicates() -> None:
    rules = _rules(
        {"action": "Accept", "operations": [{"addCommunity": {"value": "4200000000:1:2"}}]}
    )
    v = evaluate(rules, route(large_communities=((1, 1, 1),)), EBGP)
    assert v.attributes is not None
    assert v.attributes.large_communities == ((1, 1, 1), (4200000000, 1, 2))
    assert v.attributes.communities == ()
    again = evaluate(rules, route(large_communities=((4200000000, 1, 2),)), EBGP)
    assert again.attributes is not None
    assert again.attributes.large_communities == ((4200000000, 1, 2),)


def test_prepend_as_path_into_leading_sequence_in_written_order() -> None:
    rules = _rules(
        {"action": "Accept", "operations": [{"prependASPath": {"prefix": [64512, 64513]}}]}
    )
    v = evaluate(rules, route(as_path=((SEQ, (65001,)), (SET, (1, 2)))), EBGP)
    assert v.attributes is not None
    assert v.attributes.as_path == ((SEQ, (64512, 64513, 65001)), (SET, (1, 2)))
    local = evaluate(rules, route(as_path=()), EBGP)
    assert local.attributes is not None and local.attributes.as_path == ((SEQ, (64512, 64513)),)
    before_set = evaluate(rules, route(as_path=((SET, (1, 2)),)), EBGP)
    assert before_set.attributes is not None
    assert before_set.attributes.as_path == ((SEQ, (64512, 64513)), (SET, (1, 2)))


def test_prepend_splits_segments_over_255() -> None:
    path = prepend_as_path(((SEQ, tuple(range(1, 255))),), (7, 8))
    assert [len(asns) for _t, asns in path] == [255, 1]
    assert path[0][1][:3] == (7, 8, 1) and path[1][1] == (254,)


def test_set_priority_and_operations_run_in_order() -> None:
    rules = _rules(
        {
            "action": "Accept",
            "operations": [
                {"setPriority": {"value": 10}},
                {"addCommunity": {"value": "1:1"}},
                {"setPriority": {"value": 20}},
                {"prependASPath": {"prefix": [5]}},
                {"prependASPath": {"prefix": [6]}},
            ],
        }
    )
    v = evaluate(rules, route(priority=1), EBGP)
    assert v.priority == 20
    assert v.attributes is not None
    assert v.attributes.communities == ((1 << 16) | 1,)
    assert v.attributes.as_path == ((SEQ, (6, 5)),)


def test_accept_without_operations_keeps_the_path() -> None:
    rv = route(as_path=((SEQ, (65001,)),), communities=(3,), priority=9)
    v = evaluate(_rules({"action": "Accept"}), rv, EBGP)
    assert v.attributes is rv.attributes and v.priority == 9


# --- several filters, RFC 8212 -----------------------------------------------------------


ACCEPT_PODS = parse_filter(
    {
        "name": "pods",
        "exportV4": [
            {
                "action": "Accept",
                "cidr": "10.244.0.0/16",
                "matchOperator": "In",
                "operations": [{"addCommunity": {"value": "64512:1"}}],
            },
        ],
    }
)
REJECT_LEARNED = parse_filter(
    {
        "name": "no-transit",
        "exportV4": [{"action": "Reject", "source": "RemotePeers"}],
        "importV6": [{"action": "Accept", "cidr": "fd00::/8", "matchOperator": "In"}],
    }
)


def test_filters_in_order_first_filter_with_a_match_decides() -> None:
    filters = (ACCEPT_PODS, REJECT_LEARNED)
    pod = apply_filters(filters, Direction.EXPORT, route("10.244.3.0/24"), EBGP)
    assert (pod.accepted, pod.filter_name, pod.list_name, pod.rule_index) == (
        True,
        "pods",
        "exportV4",
        0,
    )
    assert pod.attributes is not None and pod.attributes.communities == ((64512 << 16) | 1,)
    learned = apply_filters(filters, Direction.EXPORT, route("192.0.2.0/24"), EBGP)
    assert (learned.accepted, learned.filter_name) == (False, "no-transit")
    assert learned.reason == "rejected by no-transit exportV4[0]"
    local = apply_filters(filters, Direction.EXPORT, route("192.0.2.0/24", from_peer=False), EBGP)
    assert (local.accepted, local.outcome) == (True, Outcome.NO_MATCH)
    reversed_order = apply_filters(
        (REJECT_LEARNED, ACCEPT_PODS), Direction.EXPORT, route("10.244.3.0/24"), EBGP
    )
    assert (reversed_order.accepted, reversed_order.filter_name) == (False, "no-transit")


def test_filters_use_the_list_for_direction_and_family() -> None:
    filters = (REJECT_LEARNED,)
    v6 = apply_filters(filters, Direction.IMPORT, route("fd00:1::/64"), EBGP)
    assert (v6.accepted, v6.list_name, v6.rule_index) == (True, "importV6", 0)
    v4_import = apply_filters(filters, Direction.IMPORT, route("192.0.2.0/24"), EBGP)
    assert v4_import.outcome is Outcome.NO_MATCH  # exportV4's reject does not apply on import


def test_rfc8212_no_policy_blocks_ebgp_only() -> None:
    reason = rfc8212_block((ACCEPT_PODS,), Direction.IMPORT, Family.V4, EBGP_STRICT)
    assert reason is not None
    assert "no import policy for IPv4" in reason and "RFC 8212" in reason
    assert "importV4" in reason
    assert rfc8212_block((ACCEPT_PODS,), Direction.EXPORT, Family.V4, EBGP_STRICT) is None
    assert rfc8212_block((), Direction.EXPORT, Family.V6, EBGP) is None  # policy off
    assert rfc8212_block((), Direction.EXPORT, Family.V6, IBGP_STRICT) is None  # iBGP
    v = apply_filters((ACCEPT_PODS,), Direction.IMPORT, route("10.244.3.0/24"), EBGP_STRICT)
    assert (v.accepted, v.outcome) == (False, Outcome.NO_POLICY)
    assert v.reason == "rejected: no policy (RFC 8212)"
    ibgp = apply_filters((), Direction.IMPORT, route("10.244.3.0/24"), IBGP_STRICT)
    assert ibgp.accepted


def test_rfc8212_with_filters_default_denies_unmatched() -> None:
    filters = (ACCEPT_PODS,)
    hit = apply_filters(filters, Direction.EXPORT, route("10.244.3.0/24"), EBGP_STRICT)
    assert hit.accepted and hit.filter_name == "pods"
    miss = apply_filters(filters, Direction.EXPORT, route("192.0.2.0/24"), EBGP_STRICT)
    assert (miss.accepted, miss.outcome) == (False, Outcome.DEFAULT_DENY)
    ibgp_miss = apply_filters(filters, Direction.EXPORT, route("192.0.2.0/24"), IBGP_STRICT)
    assert (ibgp_miss.accepted, ibgp_miss.outcome) == (True, Outcome.NO_MATCH)


def test_ipv6_rules() -> None:
    rules = _rules(
        {"action": "Reject", "cidr": "fd00:1::/64", "matchOperator": "Equal"},
        {
            "action": "Accept",
            "cidr": "fd00::/16",
            "matchOperator": "In",
            "prefixLength": {"min": 48, "max": 64},
        },
        {"action": "Reject", "cidr": "fd00::/16", "matchOperator": "NotIn"},
        key="importV6",
    )
    assert not evaluate(rules, route("fd00:1::/64"), EBGP).accepted
    assert evaluate(rules, route("fd00:2::/64"), EBGP).rule_index == 1
    assert evaluate(rules, route("fd00:2::/80"), EBGP).outcome is Outcome.NO_MATCH
    assert evaluate(rules, route("2001:db8::/32"), EBGP).rule_index == 2


# --- round trip --------------------------------------------------------------------------


def test_to_dict_is_calicos_shape() -> None:
    data = {
        "name": "edge",
        "exportV4": [
            {
                "action": "Accept",
                "cidr": "10.244.0.0/16",
                "matchOperator": "In",
                "prefixLength": {"max": 26},
                "communities": {"values": ["65000:100"]},
                "asPathPrefix": [65001],
                "operations": [{"prependASPath": {"prefix": [64512]}}],
            }
        ],
        "importV6": [{"action": "Reject", "interface": "eth*", "peerType": "iBGP"}],
    }
    assert parse_filter(data).to_dict() == data


_asn = st.integers(1, 2**32 - 1)
_std = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(lambda t: f"{t[0]}:{t[1]}")
_large = st.tuples(_asn, _asn, _asn).map(lambda t: f"{t[0]}:{t[1]}:{t[2]}")
_community = st.one_of(_std, _large)
_operation = st.one_of(
    _community.map(lambda c: {"addCommunity": {"value": c}}),
    st.lists(_asn, min_size=1, max_size=4).map(lambda p: {"prependASPath": {"prefix": p}}),
    st.integers(0, 2**32 - 1).map(lambda v: {"setPriority": {"value": v}}),
)


@st.composite
def _rule_dicts(draw: st.DrawFn, family: Family) -> dict[str, Any]:
    out: dict[str, Any] = {"action": draw(st.sampled_from(["Accept", "Reject"]))}
    maxlen = family.max_length
    if draw(st.booleans()):
        length = draw(st.integers(0, maxlen))
        bits = draw(st.integers(0, 2**maxlen - 1)) >> (maxlen - length) << (maxlen - length)
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = (
            ipaddress.IPv4Network((bits, length))
            if family is Family.V4
            else ipaddress.IPv6Network((bits, length))
        )
        out["cidr"] = str(net)
        out["matchOperator"] = draw(st.sampled_from(["Equal", "NotEqual", "In", "NotIn"]))
        if out["matchOperator"] in ("In", "NotIn") and draw(st.booleans()):
            lo = draw(st.none() | st.integers(0, maxlen))
            floor = lo if lo is not None else length
            hi = draw(st.none() | st.integers(floor, maxlen))
            out["prefixLength"] = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    if draw(st.booleans()):
        out["source"] = "RemotePeers"
    if draw(st.booleans()):
        out["interface"] = draw(st.sampled_from(["eth*", "tunl0", "*.calico", "en?s1"]))
    if draw(st.booleans()):
        out["peerType"] = draw(st.sampled_from(["eBGP", "iBGP"]))
    if draw(st.booleans()):
        out["communities"] = {"values": draw(st.lists(_community, min_size=1, max_size=3))}
    if draw(st.booleans()):
        out["asPathPrefix"] = draw(st.lists(_asn, min_size=1, max_size=3))
    if draw(st.booleans()):
        out["priority"] = draw(st.integers(0, 2**32 - 1))
    if out["action"] == "Accept" and draw(st.booleans()):
        out["operations"] = draw(st.lists(_operation, min_size=1, max_size=10))
    return out


@st.composite
def _filters(draw: st.DrawFn) -> BGPFilter:
    data: dict[str, Any] = {
        "name": draw(st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,10}[a-z0-9])?", fullmatch=True))
    }
    for key, family in (
        ("exportV4", Family.V4),
        ("importV4", Family.V4),
        ("exportV6", Family.V6),
        ("importV6", Family.V6),
    ):
        if draw(st.booleans()):
            data[key] = draw(st.lists(_rule_dicts(family), max_size=3))
    return parse_filter(data)


@settings(max_examples=200, deadline=None)
@given(_filters())
def test_parse_of_to_dict_is_identity(f: BGPFilter) -> None:
    assert parse_filter(f.to_dict()) == f
    assert parse_filter_spec(f.name, f.spec_dict()) == f
