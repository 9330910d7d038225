"""OPEN validation and negotiation as the FSM applies them (RFC 4271 §4.2 and §6.2, RFC 6793,
RFC 6286, RFC 4760, RFC 5492, RFC 7911), plus the configuration checks.

Driven like test_fsm.py: a fake clock, no sockets.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bgpd.codec.errors import ErrorCode, OpenSubcode
from bgpd.codec.types import (
    AS_TRANS,
    AddPath,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    Message,
    Multiprotocol,
    Notification,
    Open,
    RouteRefreshCap,
)
from bgpd.fsm import (
    Fsm,
    FsmConfig,
    ManualStart,
    MessageReceived,
    Send,
    State,
    TcpConnected,
)

LOCAL_ID = "10.0.0.1"
PEER_ID = "10.0.0.2"
CONFIG = FsmConfig(65001, LOCAL_ID, 65002, capabilities=(FourOctetAs(65001), RouteRefreshCap()))


def peer_open(
    asn: int = 65002,
    hold: int = 90,
    router_id: str = PEER_ID,
    caps: tuple[object, ...] = (FourOctetAs(65002), RouteRefreshCap()),
) -> Open:
    return Open(asn, hold, router_id, caps)  # type: ignore[arg-type]


def rx(conn: int, message: Message) -> MessageReceived:
    return MessageReceived(conn, message)


def to_open_sent(fsm: Fsm) -> None:
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpConnected(1), 0.0)


def to_open_confirm(fsm: Fsm, **open_args: object) -> None:
    to_open_sent(fsm)
    fsm.handle(rx(1, peer_open(**open_args)), 0.0)  # type: ignore[arg-type]


def to_established(fsm: Fsm, **open_args: object) -> None:
    to_open_confirm(fsm, **open_args)
    fsm.handle(rx(1, Keepalive()), 0.0)
    assert fsm.state is State.ESTABLISHED


def sends(actions: Sequence[object]) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Send)]


def test_bad_peer_as_is_described_with_both_numbers() -> None:
    fsm = Fsm(FsmConfig(65002, LOCAL_ID, 65002))
    to_open_sent(fsm)
    fsm.handle(rx(1, peer_open(asn=65001, caps=())), 1.0)
    assert fsm.last_error == "Bad peer AS 65001 (expected 65002)"


def test_four_octet_as_comes_from_the_capability_not_the_as_trans_field() -> None:
    config = FsmConfig(65001, LOCAL_ID, 4_200_000_000, capabilities=(FourOctetAs(65001),))
    fsm = Fsm(config)
    to_open_sent(fsm)
    good = peer_open(asn=AS_TRANS, caps=(FourOctetAs(4_200_000_000),))
    assert fsm.handle(rx(1, good), 1.0) == [Send(1, Keepalive())]

    fsm = Fsm(config)
    to_open_sent(fsm)
    bad = peer_open(asn=AS_TRANS, caps=(FourOctetAs(4_200_000_001),))
    actions = fsm.handle(rx(1, bad), 1.0)
    assert sends(actions) == [Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)]
    assert fsm.last_error == "Bad peer AS 4200000001 (expected 4200000000)"


def test_as_trans_without_the_capability_is_a_bad_peer_as() -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 4_200_000_000))
    to_open_sent(fsm)
    actions = fsm.handle(rx(1, peer_open(asn=AS_TRANS, caps=())), 1.0)
    assert sends(actions) == [Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)]
    assert fsm.last_error == "Bad peer AS 23456 (AS_TRANS) (expected 4200000000)"


def test_ibgp_peer_with_our_identifier_is_refused() -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65001))
    to_open_sent(fsm)
    actions = fsm.handle(rx(1, peer_open(asn=65001, router_id=LOCAL_ID, caps=())), 1.0)
    assert sends(actions) == [Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_BGP_IDENTIFIER)]
    assert fsm.last_error == f"Bad BGP identifier {LOCAL_ID}"


def test_ebgp_peer_may_share_our_identifier() -> None:
    # RFC 6286 §2.2: identifiers need only be unique within an AS.
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    assert fsm.handle(rx(1, peer_open(router_id=LOCAL_ID)), 1.0) == [Send(1, Keepalive())]


@pytest.mark.parametrize(
    ("ours", "our_keepalive", "theirs", "hold", "keepalive"),
    [
        (90, None, 90, 90, 30),
        (90, None, 30, 30, 10),  # the smaller hold time wins
        (30, None, 180, 30, 10),
        (90, 5, 90, 90, 5),  # a shorter configured keepalive is kept
        (90, 60, 30, 30, 10),  # a longer one is clipped to a third of the hold time
        (3, None, 90, 3, 1),
        (90, None, 0, 0, 0),  # either side proposing 0 turns keepalives off
        (0, None, 90, 0, 0),
    ],
)
def test_hold_and_keepalive_negotiation(
    ours: int, our_keepalive: int | None, theirs: int, hold: int, keepalive: int
) -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, hold_time=ours, keepalive_time=our_keepalive))
    to_established(fsm, hold=theirs)
    assert fsm.negotiated is not None
    assert (fsm.negotiated.hold_time, fsm.negotiated.keepalive_time) == (hold, keepalive)


def test_hold_time_zero_runs_no_timers_at_all() -> None:
    fsm = Fsm(CONFIG)
    to_open_confirm(fsm, hold=0)
    assert fsm.next_deadline() is None  # OpenConfirm: no hold timer, no keepalives
    fsm.handle(rx(1, Keepalive()), 5.0)
    assert fsm.state is State.ESTABLISHED
    assert fsm.next_deadline() is None
    assert fsm.handle_timeout(1_000_000.0) == []
    assert fsm.state is State.ESTABLISHED


def test_capability_negotiation() -> None:
    ours = (
        Multiprotocol(1, 1),
        Multiprotocol(2, 1),
        ExtendedMessage(),
        AddPath(((1, 1, 3), (2, 1, 1))),
    )
    graceful = GracefulRestart(0x8, 120, ((1, 1, 0x80),))
    theirs = (
        Multiprotocol(1, 1),
        Multiprotocol(2, 1),
        Multiprotocol(1, 2),
        ExtendedMessage(),
        graceful,
        AddPath(((1, 1, 2), (2, 1, 2))),
    )
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, capabilities=ours))
    to_established(fsm, caps=theirs)
    neg = fsm.negotiated
    assert neg is not None
    assert neg.families == ((1, 1), (2, 1))
    assert neg.extended_message is True
    assert neg.four_octet_as is False  # we did not advertise it
    assert neg.route_refresh is False
    assert neg.graceful_restart == graceful
    # We receive where we said receive and they said send; they receive nowhere.
    assert neg.add_path_receive == frozenset({(1, 1), (2, 1)})
    assert neg.add_path_send == frozenset()
    assert neg.peer_capabilities == theirs


@pytest.mark.parametrize(
    ("ours", "theirs", "agreed"),
    [
        (((1, 1, 2),), ((1, 1, 2),), {(1, 1, 2)}),
        (((1, 1, 2),), None, set()),  # the peer did not offer it: IPv4 keeps IPv4 next hops
        (None, ((1, 1, 2),), set()),
        (((1, 1, 2),), ((1, 1, 2), (1, 128, 2)), {(1, 1, 2)}),
    ],
)
def test_extended_next_hop_needs_both_sides(
    ours: tuple[tuple[int, int, int], ...] | None,
    theirs: tuple[tuple[int, int, int], ...] | None,
    agreed: set[tuple[int, int, int]],
) -> None:
    base = (Multiprotocol(1, 1), Multiprotocol(2, 1))
    mine = base + ((ExtendedNextHop(ours),) if ours else ())
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, capabilities=mine))
    to_established(fsm, caps=base + ((ExtendedNextHop(theirs),) if theirs else ()))
    assert fsm.negotiated is not None
    assert fsm.negotiated.extended_next_hop == agreed


def test_a_side_without_multiprotocol_capabilities_means_ipv4_unicast() -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, capabilities=(Multiprotocol(2, 1),)))
    to_established(fsm, caps=())
    assert fsm.negotiated is not None
    assert fsm.negotiated.families == ()  # they do IPv4 only, we IPv6 only

    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002))
    to_established(fsm, caps=(Multiprotocol(1, 1), Multiprotocol(2, 1)))
    assert fsm.negotiated is not None
    assert fsm.negotiated.families == ((1, 1),)


def test_config_rejects_values_the_rfc_forbids() -> None:
    with pytest.raises(ValueError, match="hold_time"):
        FsmConfig(65001, LOCAL_ID, 65002, hold_time=2)
    with pytest.raises(ValueError, match="local_router_id"):
        FsmConfig(65001, "10.0.0", 65002)
    with pytest.raises(ValueError, match="peer_asn"):
        FsmConfig(65001, LOCAL_ID, 0)
    with pytest.raises(ValueError, match="connect_retry_time"):
        FsmConfig(65001, LOCAL_ID, 65002, connect_retry_time=0)
