"""The sans-IO session FSM (RFC 4271 §8, §6.8) driven with a fake clock: no sockets, no sleeps.

Time is just the ``now`` passed to ``handle``/``handle_timeout``; each test states its instants.
OPEN validation and negotiation are in test_fsm_open.py, collision detection in
test_fsm_collision.py, the randomised invariants in test_fsm_properties.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bgpd.codec.errors import BGPError, CeaseSubcode, ErrorCode, FsmSubcode, OpenSubcode
from bgpd.codec.types import (
    FourOctetAs,
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    RouteRefreshCap,
    Update,
)
from bgpd.fsm import (
    OPEN_SENT_HOLD_TIME,
    Close,
    Connect,
    DecodeFailed,
    Deliver,
    Fsm,
    FsmConfig,
    ManualStart,
    ManualStop,
    MessageReceived,
    Negotiated,
    Send,
    SessionDown,
    SessionUp,
    State,
    TcpAccepted,
    TcpConnected,
    TcpFailed,
)

LOCAL_ID = "10.0.0.1"
PEER_ID = "10.0.0.2"
CONFIG = FsmConfig(
    local_asn=65001,
    local_router_id=LOCAL_ID,
    peer_asn=65002,
    capabilities=(FourOctetAs(65001), RouteRefreshCap()),
)
HOLD_EXPIRED = Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0)


def peer_open(
    asn: int = 65002,
    hold: int = 90,
    router_id: str = PEER_ID,
    caps: tuple[object, ...] = (FourOctetAs(65002), RouteRefreshCap()),
    version: int = 4,
) -> Open:
    return Open(asn=asn, hold_time=hold, router_id=router_id, capabilities=caps, version=version)  # type: ignore[arg-type]


def our_open(config: FsmConfig = CONFIG) -> Open:
    return Open(config.local_asn, config.hold_time, config.local_router_id, config.capabilities)


def rx(conn: int, message: Message) -> MessageReceived:
    return MessageReceived(conn, message)


def to_open_sent(fsm: Fsm, now: float = 0.0, conn: int = 1) -> None:
    fsm.handle(ManualStart(), now)
    fsm.handle(TcpConnected(conn), now)


def to_open_confirm(fsm: Fsm, now: float = 0.0, conn: int = 1, **open_args: object) -> None:
    to_open_sent(fsm, now, conn)
    fsm.handle(rx(conn, peer_open(**open_args)), now)  # type: ignore[arg-type]


def to_established(fsm: Fsm, now: float = 0.0, conn: int = 1, **open_args: object) -> None:
    to_open_confirm(fsm, now, conn, **open_args)
    fsm.handle(rx(conn, Keepalive()), now)
    assert fsm.state is State.ESTABLISHED


def sends(actions: Sequence[object]) -> list[Message]:
    return [a.message for a in actions if isinstance(a, Send)]


# --- starting and connecting ----------------------------------------------------------------


def test_new_fsm_is_idle_with_no_timers() -> None:
    fsm = Fsm(CONFIG)
    assert fsm.state is State.IDLE
    assert fsm.next_deadline() is None
    assert fsm.last_error == ""
    assert fsm.negotiated is None
    assert fsm.handle_timeout(1000.0) == []


def test_manual_start_connects_and_arms_connect_retry() -> None:
    fsm = Fsm(CONFIG)
    assert fsm.handle(ManualStart(), 10.0) == [Connect()]
    assert fsm.state is State.CONNECT
    assert fsm.next_deadline() == 10.0 + CONFIG.connect_retry_time


def test_manual_start_passive_waits_in_active_without_connecting() -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, passive=True))
    assert fsm.handle(ManualStart(), 0.0) == []
    assert fsm.state is State.ACTIVE
    assert fsm.next_deadline() is None
    assert fsm.handle_timeout(10_000.0) == []


def test_second_manual_start_is_ignored() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    assert fsm.handle(ManualStart(), 1.0) == []
    assert fsm.next_deadline() == 5.0


def test_connect_retry_timer_retries_an_unanswered_connect() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    assert fsm.handle_timeout(4.9) == []
    assert fsm.handle_timeout(5.0) == [Connect()]
    assert fsm.state is State.CONNECT
    assert fsm.next_deadline() == 10.0


def test_connect_failure_goes_active_then_retries_on_the_timer() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    assert fsm.handle(TcpFailed(7, "Connection refused"), 0.5) == []
    assert fsm.state is State.ACTIVE
    assert fsm.last_error == "Connection refused"
    assert fsm.next_deadline() == 5.0
    assert fsm.handle_timeout(5.0) == [Connect()]
    assert fsm.state is State.CONNECT


def test_tcp_connected_sends_our_open_and_uses_the_large_hold_timer() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    actions = fsm.handle(TcpConnected(1), 2.0)
    assert actions == [Send(1, our_open())]
    assert fsm.state is State.OPEN_SENT
    assert fsm.connections == {1: State.OPEN_SENT}
    # The connect-retry timer stopped; only the OpenSent hold timer runs.
    assert fsm.next_deadline() == 2.0 + OPEN_SENT_HOLD_TIME == 242.0


def test_tcp_accepted_sends_our_open_for_a_passive_peer() -> None:
    config = FsmConfig(65001, LOCAL_ID, 65002, passive=True, hold_time=30)
    fsm = Fsm(config)
    fsm.handle(ManualStart(), 0.0)
    assert fsm.handle(TcpAccepted(3), 1.0) == [Send(3, our_open(config))]
    assert fsm.state is State.OPEN_SENT


def test_open_sent_hold_timer_expiry_sends_4_0_and_goes_idle() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    assert fsm.handle_timeout(239.0) == []
    actions = fsm.handle_timeout(240.0)
    assert actions == [Send(1, HOLD_EXPIRED), Close(1)]  # no SessionDown: never up
    assert fsm.state is State.IDLE
    assert fsm.last_error == "Hold timer expired"


# --- OPEN ----------------------------------------------------------------------------------


def test_valid_open_sends_keepalive_and_enters_open_confirm() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    actions = fsm.handle(rx(1, peer_open(hold=60)), 1.0)
    assert actions == [Send(1, Keepalive())]
    assert fsm.state is State.OPEN_CONFIRM
    # Negotiated hold 60 → keepalive every 20 s; the keepalive timer is the earliest.
    assert fsm.next_deadline() == 21.0


def test_keepalive_in_open_confirm_establishes_with_negotiated_parameters() -> None:
    fsm = Fsm(CONFIG)
    to_open_confirm(fsm)
    actions = fsm.handle(rx(1, Keepalive()), 3.0)
    expected = Negotiated(
        peer_asn=65002,
        peer_router_id=PEER_ID,
        hold_time=90,
        keepalive_time=30,
        four_octet_as=True,
        extended_message=False,
        route_refresh=True,
        families=((1, 1),),
        graceful_restart=None,
        add_path_receive=frozenset(),
        add_path_send=frozenset(),
        peer_capabilities=(FourOctetAs(65002), RouteRefreshCap()),
    )
    assert actions == [SessionUp(1, expected)]
    assert fsm.state is State.ESTABLISHED
    assert fsm.negotiated == expected


@pytest.mark.parametrize(
    ("message", "subcode", "data", "error"),
    [
        (peer_open(version=3), OpenSubcode.UNSUPPORTED_VERSION, b"\x00\x04", "version 3"),
        (peer_open(asn=65001, caps=()), OpenSubcode.BAD_PEER_AS, b"", "Bad peer AS 65001"),
        (peer_open(hold=1), OpenSubcode.UNACCEPTABLE_HOLD_TIME, b"", "hold time 1"),
        (peer_open(hold=2), OpenSubcode.UNACCEPTABLE_HOLD_TIME, b"", "hold time 2"),
        (peer_open(router_id="0.0.0.0"), OpenSubcode.BAD_BGP_IDENTIFIER, b"", "0.0.0.0"),
    ],
)
def test_bad_open_is_answered_with_its_notification(
    message: Open, subcode: int, data: bytes, error: str
) -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    actions = fsm.handle(rx(1, message), 1.0)
    assert actions == [Send(1, Notification(ErrorCode.OPEN_MESSAGE, subcode, data)), Close(1)]
    assert fsm.state is State.IDLE
    assert error in fsm.last_error


# --- Established: keepalives, hold timer, delivery ---------------------------------------------


def test_keepalive_timer_sends_a_keepalive_every_third_of_the_hold_time() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    assert fsm.next_deadline() == 30.0
    assert fsm.handle_timeout(29.9) == []
    assert fsm.handle_timeout(30.0) == [Send(1, Keepalive())]
    assert fsm.next_deadline() == 60.0
    assert fsm.handle_timeout(60.0) == [Send(1, Keepalive())]
    assert fsm.next_deadline() == 90.0  # the next keepalive, and the silent peer's hold timer


def test_a_late_timer_call_reschedules_from_the_actual_time() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    assert fsm.handle_timeout(45.0) == [Send(1, Keepalive())]  # was due at 30
    assert fsm.next_deadline() == 75.0  # not 60: the next one is a full interval later


@pytest.mark.parametrize("message", [Keepalive(), Update(), RouteRefresh(1, 1)])
def test_received_messages_restart_the_hold_timer(message: Message) -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    assert fsm.handle_timeout(30.0) == [Send(1, Keepalive())]
    assert fsm.handle_timeout(60.0) == [Send(1, Keepalive())]
    fsm.handle(rx(1, message), 80.0)  # hold timer now expires at 170, not 90
    for t in (90.0, 120.0, 150.0):
        assert fsm.handle_timeout(t) == [Send(1, Keepalive())]
    assert fsm.state is State.ESTABLISHED
    assert fsm.next_deadline() == 170.0
    actions = fsm.handle_timeout(170.0)
    assert actions == [
        Send(1, HOLD_EXPIRED),
        Close(1),
        SessionDown("Hold timer expired", HOLD_EXPIRED, None),
    ]


def test_hold_timer_expiry_in_established_sends_4_0_closes_and_reports_down() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    fsm.handle_timeout(30.0)
    fsm.handle_timeout(60.0)
    actions = fsm.handle_timeout(90.0)
    assert actions == [
        Send(1, HOLD_EXPIRED),
        Close(1),
        SessionDown("Hold timer expired", HOLD_EXPIRED, None),
    ]
    assert fsm.state is State.IDLE
    assert fsm.negotiated is None
    assert fsm.last_error == "Hold timer expired"


def test_open_confirm_hold_timer_uses_the_negotiated_value() -> None:
    fsm = Fsm(CONFIG)
    to_open_confirm(fsm, hold=9)
    assert fsm.handle_timeout(3.0) == [Send(1, Keepalive())]
    assert fsm.handle_timeout(6.0) == [Send(1, Keepalive())]
    assert fsm.handle_timeout(9.0) == [Send(1, HOLD_EXPIRED), Close(1)]


def test_updates_and_route_refresh_are_delivered_in_established() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    update = Update(nlri=(b"\x18\x0a\x00\x01",))
    assert fsm.handle(rx(1, update), 1.0) == [Deliver(update)]
    assert fsm.handle(rx(1, RouteRefresh(1, 1)), 2.0) == [Deliver(RouteRefresh(1, 1))]
    assert fsm.handle(rx(1, Keepalive()), 3.0) == []


# --- errors ----------------------------------------------------------------------------------


def test_notification_in_open_sent_closes_without_session_down() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    cease = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    assert fsm.handle(rx(1, cease), 1.0) == [Close(1)]
    assert fsm.state is State.IDLE
    assert fsm.last_error == "Received NOTIFICATION Cease/Administrative shutdown"


def test_notification_in_established_reports_what_was_received() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    note = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, b"\x05maint")
    actions = fsm.handle(rx(1, note), 1.0)
    reason = 'Received NOTIFICATION Cease/Administrative shutdown: "maint"'
    assert actions == [Close(1), SessionDown(reason, None, note)]
    assert fsm.last_error == reason


def test_decode_failure_sends_the_codec_error_and_resets() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    error = BGPError(ErrorCode.UPDATE_MESSAGE, 11, b"\x02\x05", reason="Malformed AS_PATH")
    sent = Notification(ErrorCode.UPDATE_MESSAGE, 11, b"\x02\x05")
    actions = fsm.handle(DecodeFailed(1, error), 1.0)
    assert actions == [Send(1, sent), Close(1), SessionDown("Malformed AS_PATH", sent, None)]
    assert fsm.last_error == "Malformed AS_PATH"
    assert fsm.state is State.IDLE


def test_decode_failure_before_established_has_no_session_down() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    error = BGPError(ErrorCode.MESSAGE_HEADER, 2, b"\x00\x0a")
    actions = fsm.handle(DecodeFailed(1, error), 1.0)
    assert actions == [Send(1, Notification(1, 2, b"\x00\x0a")), Close(1)]


@pytest.mark.parametrize(
    ("reach", "message", "subcode", "error"),
    [
        (to_open_sent, Keepalive(), FsmSubcode.UNEXPECTED_IN_OPENSENT, "KEEPALIVE in OpenSent"),
        (to_open_sent, Update(), FsmSubcode.UNEXPECTED_IN_OPENSENT, "UPDATE in OpenSent"),
        (to_open_sent, RouteRefresh(1, 1), 1, "ROUTE-REFRESH in OpenSent"),
        (to_open_confirm, peer_open(), 2, "OPEN in OpenConfirm"),
        (to_open_confirm, Update(), 2, "UPDATE in OpenConfirm"),
        (to_open_confirm, RouteRefresh(1, 1), 2, "ROUTE-REFRESH in OpenConfirm"),
        (to_established, peer_open(), 3, "OPEN in Established"),
    ],
)
def test_unexpected_message_is_an_fsm_error_with_the_rfc_6608_subcode(
    reach: object, message: Message, subcode: int, error: str
) -> None:
    fsm = Fsm(CONFIG)
    reach(fsm)  # type: ignore[operator]
    was_up = fsm.state is State.ESTABLISHED
    actions = fsm.handle(rx(1, message), 1.0)
    sent = Notification(ErrorCode.FSM, subcode)
    expected: list[object] = [Send(1, sent), Close(1)]
    if was_up:
        expected.append(SessionDown(f"Unexpected {error}", sent, None))
    assert actions == expected
    assert fsm.last_error == f"Unexpected {error}"
    assert fsm.state is State.IDLE


def test_tcp_failure_of_the_established_connection_reports_down_without_close() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    actions = fsm.handle(TcpFailed(1, "Connection reset by peer"), 10.0)
    assert actions == [SessionDown("Connection reset by peer", None, None)]
    assert fsm.state is State.IDLE
    assert fsm.last_error == "Connection reset by peer"
    # Back to Connect once the idle hold (1 s after the first error) is over.
    assert fsm.next_deadline() == 11.0
    assert fsm.handle_timeout(11.0) == [Connect()]
    assert fsm.state is State.CONNECT


def test_tcp_failure_in_open_sent_goes_idle_then_active_for_a_passive_peer() -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, passive=True))
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpAccepted(1), 0.0)
    assert fsm.handle(TcpFailed(1, "Connection closed by peer"), 2.0) == []
    assert fsm.state is State.IDLE
    assert fsm.handle_timeout(3.0) == []  # passive: no Connect after the idle hold
    assert fsm.state is State.ACTIVE


def test_inbound_connection_while_stopped_is_rejected() -> None:
    fsm = Fsm(CONFIG)
    rejected = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED)
    assert fsm.handle(TcpAccepted(1), 0.0) == [Send(1, rejected), Close(1)]
    assert fsm.state is State.IDLE


def test_inbound_connection_during_backoff_is_accepted() -> None:
    # Two speakers that failed together must not reject each other's connects in lockstep.
    fsm = Fsm(CONFIG)
    to_open_sent(fsm, conn=2)
    fsm.handle(TcpFailed(2, "reset"), 1.0)  # idle hold until 2.0
    assert fsm.state is State.IDLE
    actions = fsm.handle(TcpAccepted(3), 1.5)
    assert len(actions) == 1 and isinstance(actions[0], Send)
    assert isinstance(actions[0].message, Open)
    assert fsm.state is State.OPEN_SENT
    assert fsm.handle_timeout(2.0) == []  # the idle-hold timer is gone: no extra Connect


# --- backoff -------------------------------------------------------------------------------


def fail_once(fsm: Fsm, now: float, conn: int) -> float:
    """Let the session restart at ``now``, connect, and fail; return the idle hold it got."""
    assert fsm.handle_timeout(now) == [Connect()]
    fsm.handle(TcpConnected(conn), now)
    fsm.handle(TcpFailed(conn, "Connection reset by peer"), now)
    deadline = fsm.next_deadline()
    assert deadline is not None
    assert fsm.state is State.IDLE
    return deadline - now


def test_idle_hold_doubles_per_consecutive_error_and_is_capped() -> None:
    config = FsmConfig(65001, LOCAL_ID, 65002, idle_hold_time=1.0, max_idle_hold_time=10.0)
    fsm = Fsm(config)
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpConnected(1), 0.0)
    fsm.handle(TcpFailed(1, "reset"), 0.0)
    holds = [1.0]
    now = 1.0
    for conn in range(2, 8):
        holds.append(fail_once(fsm, now, conn))
        now += holds[-1]
    assert holds == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_errors_older_than_error_forget_time_no_longer_count() -> None:
    config = FsmConfig(65001, LOCAL_ID, 65002, error_forget_time=300.0)
    fsm = Fsm(config)
    to_established(fsm, conn=1)
    fsm.handle(TcpFailed(1, "reset"), 10.0)  # first error: 1 s
    assert fail_once(fsm, 11.0, 2) == 2.0  # second, within 300 s
    # Third: Established at 13, then stable for longer than error_forget_time.
    assert fsm.handle_timeout(13.0) == [Connect()]
    fsm.handle(TcpConnected(3), 13.0)
    fsm.handle(rx(3, peer_open(hold=0)), 13.0)
    fsm.handle(rx(3, Keepalive()), 13.0)
    fsm.handle(TcpFailed(3, "reset"), 400.0)
    assert fsm.next_deadline() == 401.0


def test_manual_stop_and_start_reset_the_backoff() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    fsm.handle(TcpFailed(1, "reset"), 0.0)
    fail_once(fsm, 1.0, 2)  # now holding 2 s
    fsm.handle(ManualStop(), 1.5)
    assert fsm.handle(ManualStart(), 1.5) == [Connect()]  # no idle hold on an operator start
    fsm.handle(TcpConnected(3), 1.5)
    fsm.handle(TcpFailed(3, "reset"), 1.5)
    assert fsm.next_deadline() == 2.5


# --- ManualStop in every state ---------------------------------------------------------------

ADMIN = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)


def test_manual_stop_when_idle_does_nothing() -> None:
    fsm = Fsm(CONFIG)
    assert fsm.handle(ManualStop(), 0.0) == []
    assert fsm.state is State.IDLE
    assert fsm.last_error == ""


def test_manual_stop_in_connect_abandons_the_pending_connection() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    assert fsm.handle(ManualStop(), 1.0) == []
    assert fsm.state is State.IDLE
    assert fsm.next_deadline() is None
    assert fsm.handle(TcpConnected(1), 2.0) == [Close(1)]  # it completed after all


def test_manual_stop_in_active_stops_the_connect_retry() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpFailed(1, "Connection refused"), 0.0)
    assert fsm.state is State.ACTIVE
    assert fsm.handle(ManualStop(), 1.0) == []
    assert fsm.state is State.IDLE
    assert fsm.handle_timeout(100.0) == []


def test_manual_stop_during_idle_hold_cancels_the_restart() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    fsm.handle(TcpFailed(1, "reset"), 0.0)
    assert fsm.handle(ManualStop(), 0.5) == []
    assert fsm.next_deadline() is None
    assert fsm.handle_timeout(100.0) == []
    assert fsm.state is State.IDLE


@pytest.mark.parametrize("reach", [to_open_sent, to_open_confirm])
def test_manual_stop_before_established_sends_cease_and_closes(reach: object) -> None:
    fsm = Fsm(CONFIG)
    reach(fsm)  # type: ignore[operator]
    assert fsm.handle(ManualStop(), 1.0) == [Send(1, ADMIN), Close(1)]
    assert fsm.state is State.IDLE
    assert fsm.next_deadline() is None
    assert fsm.last_error == "Stopped (Cease/Administrative shutdown)"


def test_manual_stop_in_established_reports_the_session_down() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    actions = fsm.handle(ManualStop(), 1.0)
    reason = "Stopped (Cease/Administrative shutdown)"
    assert actions == [Send(1, ADMIN), Close(1), SessionDown(reason, ADMIN, None)]
    assert fsm.state is State.IDLE
    assert fsm.negotiated is None
    assert fsm.handle_timeout(1000.0) == []  # stays down until the next ManualStart


def test_manual_stop_carries_the_shutdown_communication_and_subcode() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    actions = fsm.handle(ManualStop(reason="maintenance"), 1.0)
    assert sends(actions) == [Notification(6, 2, b"\x0bmaintenance")]
    assert fsm.last_error == 'Stopped (Cease/Administrative shutdown: "maintenance")'

    fsm = Fsm(CONFIG)
    to_established(fsm)
    actions = fsm.handle(ManualStop(CeaseSubcode.PEER_DECONFIGURED, "gone"), 1.0)
    assert sends(actions) == [Notification(6, 3)]  # only subcodes 2 and 4 carry text


def test_manual_stop_for_max_prefixes_carries_afi_safi_and_limit() -> None:
    """RFC 4486 §4: Cease subcode 1 with AFI (2 octets), SAFI (1) and the limit (4)."""
    from bgpd.prefix_limit import cease_data

    fsm = Fsm(CONFIG)
    to_established(fsm)
    data = cease_data(1, 1000)
    assert data == b"\x00\x01\x01\x00\x00\x03\xe8"
    actions = fsm.handle(ManualStop(CeaseSubcode.MAX_PREFIXES_REACHED, data=data), 1.0)
    assert sends(actions) == [Notification(6, 1, data)]


def test_manual_stop_without_notification_just_closes() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    actions = fsm.handle(ManualStop(notify=False), 1.0)
    assert actions == [Close(1), SessionDown("Stopped", None, None)]
    assert fsm.state is State.IDLE


def test_shutdown_communication_is_cut_at_255_octets_on_a_character_boundary() -> None:
    fsm = Fsm(CONFIG)
    to_open_sent(fsm)
    (note,) = sends(fsm.handle(ManualStop(reason="é" * 200), 1.0))
    assert isinstance(note, Notification)
    assert note.data[0] == 254 == len(note.data) - 1
    assert note.data[1:].decode("utf-8") == "é" * 127


# --- timing details ----------------------------------------------------------------------------


def test_handle_fires_timers_that_were_already_due() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    # The driver was late: the hold timer (90) expired before this KEEPALIVE is processed.
    actions = fsm.handle(rx(1, Keepalive()), 95.0)
    assert actions[-1] == SessionDown("Hold timer expired", HOLD_EXPIRED, None)
    assert fsm.state is State.IDLE


def test_a_clock_that_steps_back_does_not_arm_timers_in_the_past() -> None:
    fsm = Fsm(CONFIG)
    fsm.handle(ManualStart(), 100.0)
    fsm.handle(TcpConnected(1), 50.0)
    deadline = fsm.next_deadline()
    assert deadline is not None and deadline >= 100.0


def test_late_events_for_unknown_connections_are_ignored() -> None:
    fsm = Fsm(CONFIG)
    to_established(fsm)
    assert fsm.handle(rx(9, Keepalive()), 1.0) == []
    assert fsm.handle(DecodeFailed(9, BGPError(1, 1)), 1.0) == []
    assert fsm.handle(TcpFailed(9, "reset"), 1.0) == []
    assert fsm.state is State.ESTABLISHED


# --- BFD (RFC 5882) -------------------------------------------------------------------------


def test_bfd_down_ends_the_established_session_with_cease_bfd_down() -> None:
    from bgpd.fsm import BfdDown

    fsm = Fsm(CONFIG)
    to_established(fsm)
    cease = Notification(ErrorCode.CEASE, CeaseSubcode.BFD_DOWN)
    actions = fsm.handle(BfdDown("BFD session down"), 1.0)
    # A NOTIFICATION was sent, so the speaker keeps no stale routes (C bit 0).
    assert actions == [Send(1, cease), Close(1), SessionDown("BFD session down", cease, None)]
    assert fsm.state is State.IDLE  # the usual backoff, then the session is retried
    assert fsm.last_error == "BFD session down"
    assert fsm.handle_timeout(2.0) == [Connect()]


def test_bfd_down_leaves_a_session_that_is_not_established_alone() -> None:
    from bgpd.fsm import BfdDown

    fsm = Fsm(CONFIG)
    to_open_confirm(fsm)
    assert fsm.handle(BfdDown(), 1.0) == []
    assert fsm.state is State.OPEN_CONFIRM
