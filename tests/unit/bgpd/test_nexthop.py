"""Next hops across families and links (bgpd.nexthop): which received address we use, which we
announce, their wire form, and where a path's next hop may go — plus the RFC 8950 UPDATE form
that carries an IPv6 next hop for IPv4 routes, decoded again."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgpd.codec.messages import CodecContext, decode_message, encode_updates
from bgpd.codec.types import Afi, MpReach, PathAttributes, Update, prefix_from_str
from bgpd.fsm_types import Negotiated
from bgpd.nexthop import (
    exportable,
    interface_of,
    link_locals,
    own_link_local,
    own_next_hops,
    received_next_hop,
    session_link,
    split_scope,
    wire_next_hop,
)


@pytest.mark.parametrize(
    ("hops", "peer", "expected"),
    [
        (("2001:db8::2",), "2001:db8::2", "2001:db8::2"),
        (("2001:db8::2", "fe80::2"), "2001:db8::2", "2001:db8::2"),  # global wins
        (("::", "fe80::2"), "fe80::2%eth0", "fe80::2%eth0"),  # the common unnumbered form
        (("fe80::2", "fe80::2"), "fe80::2%eth0", "fe80::2%eth0"),  # link-local as "global"
        (("fe80::2",), "fe80::2%eth0", "fe80::2%eth0"),  # 16 octets, link-local only
        (("10.0.0.1",), "10.0.0.1", "10.0.0.1"),
        ((), "10.0.0.1", None),
    ],
)
def test_received_next_hop(hops: tuple[str, ...], peer: str, expected: str | None) -> None:
    assert received_next_hop(hops, session_link(peer, "")) == expected


def test_link_local_next_hop_on_a_global_session_takes_the_local_interface(
    tmp_path: Path,
) -> None:
    table = tmp_path / "if_inet6"
    table.write_text("20010db8000000000000000000000001 04 40 00 80     uplink0\n")
    assert interface_of("2001:db8::1", str(table)) == "uplink0"
    assert interface_of("2001:db8::9", str(table)) is None
    assert interface_of("fe80::1%eth3", str(table)) == "eth3"
    assert interface_of("10.0.0.1", str(table)) is None
    # No interface holds 2001:db8::77 here: the link-local next hop stays without one.
    link = session_link("2001:db8::2", "2001:db8::77", str(table))
    assert received_next_hop(("::", "fe80::2"), link) == "fe80::2"
    assert session_link("2001:db8::2", "2001:db8::1", str(table)) == "uplink0"


def negotiated(ext: frozenset[tuple[int, int, int]]) -> Negotiated:
    return Negotiated(
        peer_asn=65001, peer_router_id="192.0.2.2", hold_time=90, keepalive_time=30,
        four_octet_as=True, extended_message=False, route_refresh=True,
        families=((1, 1), (2, 1)), graceful_restart=None, add_path_receive=frozenset(),
        add_path_send=frozenset(), peer_capabilities=(), extended_next_hop=ext,
    )  # fmt: skip


def test_own_next_hops_per_family() -> None:
    assert own_next_hops("192.0.2.1", negotiated(frozenset())) == ("192.0.2.1", None)
    assert own_next_hops("2001:db8::1", negotiated(frozenset())) == (None, "2001:db8::1")
    rfc8950 = negotiated(frozenset({(1, 1, 2)}))
    assert own_next_hops("2001:db8::1", rfc8950) == ("2001:db8::1", "2001:db8::1")
    assert own_next_hops("fe80::1%eth0", rfc8950) == ("fe80::1%eth0", "fe80::1%eth0")


def test_wire_form_and_scope() -> None:
    assert wire_next_hop("2001:db8::1") == ("2001:db8::1",)
    assert wire_next_hop("2001:db8::1", "fe80::1%eth0") == ("2001:db8::1", "fe80::1")
    assert wire_next_hop("fe80::1%eth0") == ("::", "fe80::1")
    assert wire_next_hop("fe80::1%eth0", "fe80::1%eth0") == ("::", "fe80::1")
    assert split_scope("fe80::1%eth0") == ("fe80::1", "eth0")
    assert split_scope("10.0.0.1") == ("10.0.0.1", None)


@pytest.mark.parametrize(
    ("next_hop", "own", "ipv6", "expected"),
    [
        ("2001:db8::9", "2001:db8::1", True, "2001:db8::9"),  # reflected, kept
        ("fe80::9%eth1", "2001:db8::1", True, "2001:db8::1"),  # another link's: ours instead
        ("fe80::9%eth1", None, True, None),
        ("fe80::1%eth0", "fe80::1%eth0", True, "fe80::1%eth0"),  # our own on this link
        ("2001:db8::9", "192.0.2.1", False, None),  # IPv4 route, v6 next hop, no RFC 8950
        ("2001:db8::9", "2001:db8::1", False, "2001:db8::9"),  # RFC 8950 negotiated
        ("10.0.0.9", "2001:db8::1", False, "10.0.0.9"),
        (None, "10.0.0.1", False, None),
    ],
)
def test_exportable(
    next_hop: str | None, own: str | None, ipv6: bool, expected: str | None
) -> None:
    assert exportable(next_hop, own, ipv6) == expected


def test_ipv4_routes_with_an_ipv6_next_hop_go_in_mp_reach() -> None:
    ctx = CodecContext()
    _afi, p1 = prefix_from_str("10.244.1.0/24")
    _afi, p2 = prefix_from_str("10.244.2.0/24")
    attrs = PathAttributes(as_path=((2, (64512,)),), next_hop="fe80::1%eth0")
    for hops in (("::", "fe80::1"), ("2001:db8::1",), ("2001:db8::1", "fe80::1")):
        (raw,) = encode_updates(attrs, [p1, p2], ctx, Afi.IPV4, hops)
        msg = decode_message(raw, ctx)
        assert isinstance(msg, Update)
        assert msg.nlri == () and msg.attributes is not None
        assert msg.attributes.next_hop is None  # no NEXT_HOP attribute (RFC 8950 §4)
        assert msg.mp_reach == MpReach(1, 1, hops, (p1, p2))


def test_our_link_local_addresses_from_the_table(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    table.write_text(
        "fe800000000000000000000000000009 04 40 20 80     eth0\n"
        "fe800000000000000000000000000001 04 40 20 80     eth0\n"
        "20010db8000000000000000000000001 04 40 00 80     eth0\n"
        "fe800000000000000000000000000002 05 40 20 80     eth1\n"
    )
    assert link_locals("eth0", str(table)) == ["fe80::1", "fe80::9"]
    assert link_locals("eth9", str(table)) == []
    assert link_locals("eth0", str(tmp_path / "missing")) == []
    assert own_link_local("2001:db8::1", str(table)) == "fe80::1%eth0"
    assert own_link_local("2001:db8::2", str(table)) is None  # not ours: no link known
    assert own_link_local("fe80::1%eth0", str(table)) is None  # `::` + it, not global + it
    assert own_link_local("192.0.2.1", str(table)) is None
