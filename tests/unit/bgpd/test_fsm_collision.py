"""Connection collision detection (RFC 4271 §6.8, RFC 6286 §2.3) in the sans-IO FSM.

Connection 1 is always the one we initiated (TcpConnected), 2 the one the peer initiated
(TcpAccepted). No sockets, no sleeps: time is the ``now`` argument.
"""

from __future__ import annotations

import pytest

from bgpd.codec.errors import CeaseSubcode, ErrorCode, OpenSubcode
from bgpd.codec.types import FourOctetAs, GracefulRestart, Keepalive, Message, Notification, Open
from bgpd.fsm import (
    Close,
    Connect,
    Fsm,
    FsmConfig,
    ManualStart,
    MessageReceived,
    Send,
    SessionDown,
    SessionUp,
    State,
    TcpAccepted,
    TcpConnected,
    TcpFailed,
)

PEER_ID = "10.0.0.2"
COLLISION = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
OUTBOUND, INBOUND = 1, 2


def config(local_id: str = "10.0.0.1", local_asn: int = 65001, **kw: object) -> FsmConfig:
    return FsmConfig(local_asn, local_id, 65002, **kw)  # type: ignore[arg-type]


def peer_open(router_id: str = PEER_ID) -> Open:
    return Open(asn=65002, hold_time=90, router_id=router_id)


def rx(conn: int, message: Message) -> MessageReceived:
    return MessageReceived(conn, message)


def two_connections(cfg: FsmConfig) -> Fsm:
    """Our connect and the peer's connect both complete before any OPEN arrives."""
    fsm = Fsm(cfg)
    assert fsm.handle(ManualStart(), 0.0) == [Connect()]
    assert fsm.handle(TcpAccepted(INBOUND), 0.1) == [Send(INBOUND, _our_open(cfg))]
    assert fsm.handle(TcpConnected(OUTBOUND), 0.2) == [Send(OUTBOUND, _our_open(cfg))]
    return fsm


def _our_open(cfg: FsmConfig) -> Open:
    return Open(cfg.local_asn, cfg.hold_time, cfg.local_router_id, cfg.capabilities)


def test_both_connections_are_kept_until_an_open_makes_them_comparable() -> None:
    fsm = two_connections(config())
    assert fsm.connections == {OUTBOUND: State.OPEN_SENT, INBOUND: State.OPEN_SENT}
    assert fsm.state is State.OPEN_SENT
    # One OPEN is not enough: the other connection has none to compare with yet.
    assert fsm.handle(rx(OUTBOUND, peer_open()), 1.0) == [Send(OUTBOUND, Keepalive())]
    assert fsm.connections == {OUTBOUND: State.OPEN_CONFIRM, INBOUND: State.OPEN_SENT}
    assert fsm.state is State.OPEN_CONFIRM


# Identifiers compare as unsigned 32-bit integers: 128.0.0.1 is above 10.0.0.2 (a signed
# comparison would say below) and 9.255.255.255 is below it (a text comparison would say above).
@pytest.mark.parametrize(
    ("local_id", "first", "survivor"),
    [
        ("128.0.0.1", OUTBOUND, OUTBOUND),
        ("128.0.0.1", INBOUND, OUTBOUND),
        ("9.255.255.255", OUTBOUND, INBOUND),
        ("9.255.255.255", INBOUND, INBOUND),
    ],
)
def test_collision_keeps_the_connection_initiated_by_the_higher_identifier(
    local_id: str, first: int, survivor: int
) -> None:
    fsm = two_connections(config(local_id))
    second = INBOUND if first == OUTBOUND else OUTBOUND
    loser = INBOUND if survivor == OUTBOUND else OUTBOUND
    assert fsm.handle(rx(first, peer_open()), 1.0) == [Send(first, Keepalive())]
    actions = fsm.handle(rx(second, peer_open()), 2.0)
    expected: list[object] = [Send(loser, COLLISION), Close(loser)]
    if survivor == second:
        expected.append(Send(second, Keepalive()))
    assert actions == expected
    assert fsm.connections == {survivor: State.OPEN_CONFIRM}
    assert fsm.last_error == ""  # resolving a collision is not an error
    up = fsm.handle(rx(survivor, Keepalive()), 3.0)
    assert [type(a) for a in up] == [SessionUp]
    assert up[0] == SessionUp(survivor, up[0].negotiated)  # type: ignore[union-attr]


@pytest.mark.parametrize(("local_asn", "survivor"), [(65001, INBOUND), (65003, OUTBOUND)])
def test_equal_identifiers_are_resolved_by_the_larger_as(local_asn: int, survivor: int) -> None:
    # RFC 6286 §2.3: between ASes identifiers may be equal; the larger AS's connection stays.
    fsm = two_connections(config(PEER_ID, local_asn))
    fsm.handle(rx(OUTBOUND, peer_open()), 1.0)
    fsm.handle(rx(INBOUND, peer_open()), 2.0)
    assert fsm.connections == {survivor: State.OPEN_CONFIRM}


def test_known_peer_identifier_resolves_against_a_connection_still_in_open_sent() -> None:
    fsm = two_connections(config(peer_router_id=PEER_ID))
    # We are the lower identifier, so the peer's connection wins as soon as one OPEN arrives.
    actions = fsm.handle(rx(OUTBOUND, peer_open()), 1.0)
    assert actions == [Send(OUTBOUND, COLLISION), Close(OUTBOUND)]
    assert fsm.connections == {INBOUND: State.OPEN_SENT}


def test_reaching_established_closes_the_connection_still_in_open_sent() -> None:
    fsm = two_connections(config())
    fsm.handle(rx(INBOUND, peer_open()), 1.0)
    actions = fsm.handle(rx(INBOUND, Keepalive()), 2.0)
    assert actions[:2] == [Send(OUTBOUND, COLLISION), Close(OUTBOUND)]
    assert isinstance(actions[2], SessionUp) and actions[2].conn == INBOUND
    assert fsm.connections == {INBOUND: State.ESTABLISHED}


def established_inbound() -> Fsm:
    fsm = Fsm(config())
    fsm.handle(ManualStart(), 0.0)  # our connect is still pending
    fsm.handle(TcpAccepted(INBOUND), 0.0)
    fsm.handle(rx(INBOUND, peer_open()), 0.0)
    fsm.handle(rx(INBOUND, Keepalive()), 0.0)
    assert fsm.state is State.ESTABLISHED
    return fsm


def test_new_inbound_connection_while_established_is_closed() -> None:
    fsm = established_inbound()
    assert fsm.handle(TcpAccepted(5), 1.0) == [Send(5, COLLISION), Close(5)]
    assert fsm.connections == {INBOUND: State.ESTABLISHED}


def test_our_connect_completing_while_established_is_closed() -> None:
    fsm = established_inbound()
    assert fsm.handle(TcpConnected(OUTBOUND), 1.0) == [Send(OUTBOUND, COLLISION), Close(OUTBOUND)]
    assert fsm.connections == {INBOUND: State.ESTABLISHED}


def test_peer_closing_its_side_of_a_collision_is_not_an_error() -> None:
    fsm = two_connections(config())
    assert fsm.handle(rx(OUTBOUND, COLLISION), 1.0) == [Close(OUTBOUND)]
    assert fsm.last_error == ""
    assert fsm.connections == {INBOUND: State.OPEN_SENT}
    assert fsm.state is State.OPEN_SENT


def test_failure_of_one_connection_leaves_the_other_running() -> None:
    fsm = two_connections(config())
    assert fsm.handle(TcpFailed(OUTBOUND, "Connection reset by peer"), 1.0) == []
    assert fsm.state is State.OPEN_SENT  # not Idle: the session still has a connection
    assert fsm.handle(rx(INBOUND, peer_open()), 2.0) == [Send(INBOUND, Keepalive())]


def test_bad_open_on_one_connection_leaves_the_other_running() -> None:
    fsm = two_connections(config())
    bad = Open(asn=65009, hold_time=90, router_id=PEER_ID)
    actions = fsm.handle(rx(OUTBOUND, bad), 1.0)
    notification = Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS)
    assert actions == [Send(OUTBOUND, notification), Close(OUTBOUND)]
    assert fsm.last_error == "Bad peer AS 65009 (expected 65002)"
    assert fsm.connections == {INBOUND: State.OPEN_SENT}


def test_a_new_inbound_connection_replaces_an_older_inbound_one() -> None:
    cfg = config(passive=True)
    fsm = Fsm(cfg)
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpAccepted(3), 0.0)
    actions = fsm.handle(TcpAccepted(4), 1.0)
    assert actions == [Send(3, COLLISION), Close(3), Send(4, _our_open(cfg))]
    assert fsm.connections == {4: State.OPEN_SENT}


def test_late_failure_of_a_closed_connection_is_not_taken_for_the_pending_connect() -> None:
    cfg = config()
    fsm = Fsm(cfg)
    fsm.handle(ManualStart(), 0.0)  # our connect is pending
    fsm.handle(TcpAccepted(3), 0.0)
    fsm.handle(TcpAccepted(4), 0.0)  # closes 3
    assert fsm.handle(TcpFailed(3, "Connection reset by peer"), 0.5) == []
    # Still waiting for our connect, which is then taken as the outbound connection.
    assert fsm.handle(TcpConnected(OUTBOUND), 1.0) == [Send(OUTBOUND, _our_open(cfg))]
    assert fsm.connections == {4: State.OPEN_SENT, OUTBOUND: State.OPEN_SENT}


def test_graceful_restart_peer_reconnecting_while_established_replaces_the_session() -> None:
    # RFC 4724 §4.2: the peer restarted before we noticed; its new connection wins, and the old
    # session ends without a NOTIFICATION so that its routes can be kept as stale.
    gr_open = Open(
        asn=65002, hold_time=90, router_id=PEER_ID,
        capabilities=(FourOctetAs(65002), GracefulRestart(0, 120, ((1, 1, 0x80),))),
    )  # fmt: skip
    fsm = Fsm(config(passive=True))
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpAccepted(INBOUND), 0.0)
    fsm.handle(rx(INBOUND, gr_open), 0.0)
    fsm.handle(rx(INBOUND, Keepalive()), 0.0)
    assert fsm.state is State.ESTABLISHED
    actions = fsm.handle(TcpAccepted(5), 1.0)
    downs = [a for a in actions if isinstance(a, SessionDown)]
    assert len(downs) == 1 and downs[0].sent is None and downs[0].received is None
    assert Close(INBOUND) in actions
    assert not any(isinstance(a, Send) and a.conn == INBOUND for a in actions)
    assert any(isinstance(a, Send) and a.conn == 5 and isinstance(a.message, Open) for a in actions)
    assert fsm.connections == {5: State.OPEN_SENT}
