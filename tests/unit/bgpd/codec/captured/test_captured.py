"""Golden vectors: messages BIRD 2 and GoBGP really sent, decoded by our codec.

The ``.hex`` files beside this test were recorded by ``python -m tests.support.capture`` (a raw
BGP peer on plain sockets, independent of ``bgpd.codec``); each file's ``#`` header says how.
The expected values below are the ones those capture scenarios configured
(``tests/support/capture_scenarios.py``): AS numbers, prefixes, communities, MED, LOCAL_PREF,
the route reflector's ORIGINATOR_ID/CLUSTER_LIST, capabilities.

Re-encoding is checked byte for byte where our encoder makes the same layout choices as the
sender; ``NOT_BYTE_IDENTICAL`` lists where it does not, and why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bgpd.codec.messages import CodecContext, decode_message, encode_message
from bgpd.codec.types import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    LongLivedGracefulRestart,
    Message,
    MpUnreach,
    Multiprotocol,
    Notification,
    Open,
    Origin,
    PathAttributes,
    RouteRefreshCap,
    SegmentType,
    UnknownCapability,
    Update,
    prefix_from_str,
    prefix_to_str,
)

HERE = Path(__file__).parent
DAEMONS = ("bird", "gobgp")
DAEMON_IP, DAEMON_IP6 = "192.0.2.1", "2001:db8::1"
CLIENT2 = "192.0.2.3"
EBGP_AS = {"bird": 4200000001, "gobgp": 65001}  # the daemon's own AS in the eBGP capture
IBGP_AS = 65001

EBGP = CodecContext(four_octet_as=True, ebgp=True)
IBGP = CodecContext(four_octet_as=True, ebgp=False)
ADD_PATH_IN = CodecContext(four_octet_as=True, add_path_receive=frozenset({IPV4_UNICAST}))
ADD_PATH_OUT = CodecContext(four_octet_as=True, add_path_send=frozenset({IPV4_UNICAST}))

ENHANCED_ROUTE_REFRESH, FQDN = 70, 73

# Files whose re-encoding differs from the capture, and why; every other file must re-encode
# to the same bytes (same attribute order, 1-octet lengths where they fit, one Capabilities
# parameter in an OPEN, capabilities in received order). The differing ones still decode back
# to the same message.
NOT_BYTE_IDENTICAL = {
    # BIRD sets the Extended Length flag on MP_REACH_NLRI/MP_UNREACH_NLRI even for values under
    # 256 octets; we use the 1-octet length whenever it fits (both are valid, RFC 4271 §4.3).
    "bird_update_ipv6": "BIRD: Extended Length on a short MP_REACH_NLRI",
    "bird_withdraw_ipv6": "BIRD: Extended Length on a short MP_UNREACH_NLRI",
    # GoBGP orders attributes by type code, MP_REACH_NLRI (14) after COMMUNITIES (8); we put
    # it first, as RFC 7606 §5.1 asks.
    "gobgp_update_ipv6": "GoBGP: MP_REACH_NLRI last, ours first (RFC 7606 §5.1)",
}


def community(high: int, low: int) -> int:
    return high << 16 | low


def frames(name: str) -> list[bytes]:
    """The messages in ``name``.hex: one hex message per line, ``#`` lines are comments."""
    lines = (HERE / f"{name}.hex").read_text().splitlines()
    out = [bytes.fromhex(ln) for ln in lines if ln.strip() and not ln.startswith("#")]
    assert out, f"{name}.hex holds no message"
    return out


def decoded(name: str, ctx: CodecContext) -> list[Message]:
    return [decode_message(frame, ctx) for frame in frames(name)]


def one(name: str, ctx: CodecContext) -> Message:
    (msg,) = decoded(name, ctx)
    return msg


def announced(updates: list[Message]) -> dict[str, PathAttributes | None]:
    """prefix -> attributes over every UPDATE (IPv4 NLRI and MP_REACH_NLRI)."""
    out: dict[str, PathAttributes | None] = {}
    for msg in updates:
        assert isinstance(msg, Update) and not msg.errors
        for wire in msg.nlri:
            out[prefix_to_str(1, wire)] = msg.attributes
        if msg.mp_reach is not None:
            for wire in msg.mp_reach.nlri:
                out[prefix_to_str(msg.mp_reach.afi, wire)] = msg.attributes
    return out


def wire(prefix: str) -> bytes:
    return prefix_from_str(prefix)[1]


def seq(*asns: int) -> tuple[tuple[int, tuple[int, ...]], ...]:
    return ((SegmentType.AS_SEQUENCE, asns),)


# -- OPEN -----------------------------------------------------------------------------------


def test_bird_open() -> None:
    msg = one("bird_open", EBGP)
    assert isinstance(msg, Open)
    # 4-octet AS: the 2-octet field carried AS_TRANS, the capability the real AS.
    assert (msg.version, msg.asn, msg.hold_time, msg.router_id) == (4, 4200000001, 240, DAEMON_IP)
    assert msg.capabilities == (
        Multiprotocol(1, 1),
        Multiprotocol(2, 1),
        RouteRefreshCap(),
        ExtendedMessage(),
        GracefulRestart(0, 120, ((1, 1, 0), (2, 1, 0))),
        FourOctetAs(4200000001),
        UnknownCapability(ENHANCED_ROUTE_REFRESH, b""),
        LongLivedGracefulRestart(()),  # RFC 9494 "aware": no family kept long-lived
    )


def test_gobgp_open() -> None:
    msg = one("gobgp_open", EBGP)
    assert isinstance(msg, Open)
    assert (msg.version, msg.asn, msg.hold_time, msg.router_id) == (4, 65001, 90, DAEMON_IP)
    caps = list(msg.capabilities)
    # GoBGP announces its host name (FQDN capability); its value depends on the machine.
    fqdn = [c for c in caps if isinstance(c, UnknownCapability) and c.code == FQDN]
    assert len(fqdn) == 1
    caps.remove(fqdn[0])
    assert caps == [
        RouteRefreshCap(),
        Multiprotocol(1, 1),
        Multiprotocol(2, 1),
        FourOctetAs(65001),
        GracefulRestart(0, 120, ((1, 1, 0), (2, 1, 0))),
        # IPv4 unicast with an IPv6 next hop (RFC 8950): AFI 1, SAFI 1, next-hop AFI 2.
        ExtendedNextHop(((1, 1, 2),)),
    ]


@pytest.mark.parametrize("daemon", DAEMONS)
def test_add_path_open(daemon: str) -> None:
    msg = one(f"{daemon}_addpath_open", IBGP)
    assert isinstance(msg, Open)
    assert (msg.asn, msg.router_id) == (IBGP_AS, DAEMON_IP)
    assert AddPath(((1, 1, 2),)) in msg.capabilities  # the daemon sends IPv4 paths with IDs
    assert FourOctetAs(IBGP_AS) in msg.capabilities


# -- KEEPALIVE, NOTIFICATION, End-of-RIB ----------------------------------------------------


@pytest.mark.parametrize("daemon", DAEMONS)
def test_keepalive(daemon: str) -> None:
    assert one(f"{daemon}_keepalive", EBGP) == Keepalive()


@pytest.mark.parametrize("daemon", DAEMONS)
def test_notification_cease_with_shutdown_message(daemon: str) -> None:
    # Cease / Administrative Shutdown with an RFC 8203 communication: length octet + UTF-8.
    message = b"capture done"
    assert one(f"{daemon}_notification", EBGP) == Notification(
        6, 2, bytes([len(message)]) + message
    )


@pytest.mark.parametrize("daemon", DAEMONS)
def test_end_of_rib(daemon: str) -> None:
    updates = decoded(f"{daemon}_eor", EBGP)
    assert all(isinstance(u, Update) for u in updates)
    assert [u.is_end_of_rib() for u in updates if isinstance(u, Update)] == [
        IPV4_UNICAST,
        IPV6_UNICAST,
    ]


# -- eBGP UPDATEs ---------------------------------------------------------------------------


@pytest.mark.parametrize("daemon", DAEMONS)
def test_ebgp_ipv4_updates(daemon: str) -> None:
    asn = EBGP_AS[daemon]
    assert announced(decoded(f"{daemon}_update_ipv4", EBGP)) == {
        "203.0.113.0/24": PathAttributes(
            origin=Origin.IGP,
            as_path=seq(asn),
            next_hop=DAEMON_IP,
            med=50,
            communities=(community(65000, 100), community(65000, 200)),
            large_communities=((65001, 1, 2),),
        ),
        "198.51.100.0/24": PathAttributes(
            origin=Origin.INCOMPLETE, as_path=seq(asn, 65100), next_hop=DAEMON_IP
        ),
    }


@pytest.mark.parametrize("daemon", DAEMONS)
def test_ebgp_ipv6_updates(daemon: str) -> None:
    updates = decoded(f"{daemon}_update_ipv6", EBGP)
    asn = EBGP_AS[daemon]
    assert announced(updates) == {
        "2001:db8:100::/48": PathAttributes(
            origin=Origin.IGP, as_path=seq(asn), communities=(community(65000, 600),)
        ),
        "2001:db8:200::/48": PathAttributes(origin=Origin.IGP, as_path=seq(asn)),
    }
    for update in updates:
        assert isinstance(update, Update) and update.mp_reach is not None
        assert (update.mp_reach.afi, update.mp_reach.safi) == IPV6_UNICAST
        hops = update.mp_reach.next_hop
        if daemon == "bird":  # BIRD adds its link-local address (32-octet next hop)
            assert hops[0] == DAEMON_IP6 and len(hops) == 2 and hops[1].startswith("fe80:")
        else:
            assert hops == (DAEMON_IP6,)


@pytest.mark.parametrize("daemon", DAEMONS)
def test_ebgp_withdrawals(daemon: str) -> None:
    v4 = one(f"{daemon}_withdraw_ipv4", EBGP)
    assert isinstance(v4, Update)
    assert (v4.withdrawn, v4.nlri, v4.mp_reach) == ((wire("198.51.100.0/24"),), (), None)
    v6 = one(f"{daemon}_withdraw_ipv6", EBGP)
    assert isinstance(v6, Update) and v6.mp_reach is None and not v6.nlri
    assert v6.mp_unreach == MpUnreach(2, 1, (wire("2001:db8:200::/48"),))


# -- iBGP through a route reflector ---------------------------------------------------------

OWN_ROUTE = PathAttributes(
    origin=Origin.IGP,
    next_hop=DAEMON_IP,
    med=50,
    local_pref=300,
    communities=(community(65000, 300),),
)
REFLECTED = PathAttributes(
    origin=Origin.IGP,
    next_hop=CLIENT2,
    local_pref=100,
    originator_id=CLIENT2,
    cluster_list=(DAEMON_IP,),
)
# GoBGP stamps ORIGINATOR_ID (itself) and CLUSTER_LIST even on routes it originates.
OWN_ROUTE_BY = {
    "bird": OWN_ROUTE,
    "gobgp": PathAttributes(
        origin=Origin.IGP,
        next_hop=DAEMON_IP,
        med=50,
        local_pref=300,
        communities=(community(65000, 300),),
        originator_id=DAEMON_IP,
        cluster_list=(DAEMON_IP,),
    ),
}


@pytest.mark.parametrize("daemon", DAEMONS)
def test_ibgp_updates_with_reflection(daemon: str) -> None:
    assert announced(decoded(f"{daemon}_ibgp_update_ipv4", IBGP)) == {
        "203.0.113.0/24": OWN_ROUTE_BY[daemon],  # best path: LOCAL_PREF 300 beats 100
        "198.51.100.0/24": REFLECTED,
    }


@pytest.mark.parametrize("daemon", DAEMONS)
def test_add_path_updates(daemon: str) -> None:
    paths: dict[str, dict[int, PathAttributes | None]] = {}
    for msg in decoded(f"{daemon}_addpath_update_ipv4", ADD_PATH_IN):
        assert isinstance(msg, Update) and not msg.errors
        for entry in msg.nlri:
            path_id = int.from_bytes(entry[:4], "big")
            paths.setdefault(prefix_to_str(1, entry[4:]), {})[path_id] = msg.attributes
    # Both paths to 203.0.113.0/24 (the daemon's own and client 2's), under distinct IDs.
    assert sorted(paths) == ["198.51.100.0/24", "203.0.113.0/24"]
    assert len(paths["203.0.113.0/24"]) == 2
    assert set(paths["203.0.113.0/24"].values()) == {REFLECTED, OWN_ROUTE_BY[daemon]}
    assert list(paths["198.51.100.0/24"].values()) == [REFLECTED]


# -- re-encoding ----------------------------------------------------------------------------


def contexts(name: str) -> tuple[CodecContext, CodecContext]:
    """(decode, encode) contexts for a capture file, as its session negotiated them."""
    if "_addpath_" in name:
        return ADD_PATH_IN, ADD_PATH_OUT
    return (IBGP, IBGP) if "_ibgp_" in name else (EBGP, EBGP)


CAPTURES = sorted(p.stem for p in HERE.glob("*.hex"))


def test_every_daemon_and_kind_was_captured() -> None:
    kinds = ["open", "keepalive", "notification", "eor", "update_ipv4", "update_ipv6"]
    kinds += ["withdraw_ipv4", "withdraw_ipv6", "ibgp_update_ipv4", "addpath_open"]
    expected = {f"{d}_{k}" for d in DAEMONS for k in (*kinds, "addpath_update_ipv4")}
    assert set(CAPTURES) == expected
    assert set(NOT_BYTE_IDENTICAL) <= expected


@pytest.mark.parametrize("name", CAPTURES)
def test_re_encoding(name: str) -> None:
    decode_ctx, encode_ctx = contexts(name)
    for frame in frames(name):
        msg = decode_message(frame, decode_ctx)
        again = encode_message(msg, encode_ctx)
        if name in NOT_BYTE_IDENTICAL:
            assert again != frame  # the documented layout difference is real
            assert decode_message(again, decode_ctx) == msg
        else:
            assert again == frame
