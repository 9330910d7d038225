"""Graceful restart rules (RFC 4724, RFC 8538 Notification GR, RFC 5882 BFD): which session ends
keep a peer's routes, and the Hard Reset the FSM sends under the N bit. Pure, no sockets."""

from __future__ import annotations

import pytest

from bgpd import gr
from bgpd.codec.errors import CeaseSubcode, ErrorCode
from bgpd.codec.types import FourOctetAs, GracefulRestart, Keepalive, Notification, Open
from bgpd.fsm import (
    BfdDown,
    Close,
    Fsm,
    FsmConfig,
    ManualStart,
    ManualStop,
    MessageReceived,
    Send,
    SessionDown,
    TcpConnected,
)

WITH_N = GracefulRestart(gr.NOTIFICATION, 120, ((1, 1, gr.FORWARDING),))
WITHOUT_N = GracefulRestart(0, 120, ((1, 1, gr.FORWARDING),))
HOLD = Notification(ErrorCode.HOLD_TIMER_EXPIRED)
ADMIN = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
BFD = Notification(ErrorCode.CEASE, CeaseSubcode.BFD_DOWN)
UPDATE_ERROR = Notification(ErrorCode.UPDATE_MESSAGE, 1)


def test_hard_reset_carries_the_inner_notification() -> None:
    inner = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, b"\x03bye")
    outer = gr.hard_reset(inner)
    assert (outer.code, outer.subcode) == (ErrorCode.CEASE, CeaseSubcode.HARD_RESET)
    assert outer.data == bytes([ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN]) + b"\x03bye"
    assert gr.is_hard_reset(outer) and not gr.is_bfd_down(outer)
    assert gr.is_bfd_down(BFD) and gr.is_bfd_down(gr.hard_reset(BFD))


@pytest.mark.parametrize(
    ("peer_gr", "n_bit", "sent", "received", "kept"),
    [
        (WITH_N, True, None, None, True),  # RFC 4724: TCP just closed
        (WITHOUT_N, False, None, None, True),
        (None, False, None, None, False),  # no GR from the peer
        (GracefulRestart(0, 0, ()), False, None, None, False),  # restart time 0
        (WITHOUT_N, False, HOLD, None, False),  # a NOTIFICATION without N: flush
        (WITH_N, True, HOLD, None, True),  # RFC 8538: hold timer expiry keeps them
        (WITH_N, True, None, ADMIN, True),  # a Cease other than Hard Reset keeps them
        (WITH_N, True, UPDATE_ERROR, None, True),
        (WITH_N, True, None, gr.hard_reset(ADMIN), False),  # Hard Reset flushes
        (WITH_N, True, gr.hard_reset(ADMIN), None, False),
        (WITH_N, True, BFD, None, False),  # BFD (C bit 0) never keeps them
        (WITH_N, True, gr.hard_reset(BFD), None, False),
    ],
)
def test_keeps_routes(
    peer_gr: GracefulRestart | None,
    n_bit: bool,
    sent: Notification | None,
    received: Notification | None,
    kept: bool,
) -> None:
    assert gr.keeps_routes(peer_gr, n_bit, sent, received) is kept


def config(caps: tuple[object, ...]) -> FsmConfig:
    return FsmConfig(65001, "10.0.0.1", 65001, capabilities=(FourOctetAs(65001), *caps))  # type: ignore[arg-type]


def established(ours: GracefulRestart, theirs: GracefulRestart) -> Fsm:
    fsm = Fsm(config((ours,)))
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpConnected(1), 0.0)
    peer_open = Open(65001, 90, "10.0.0.2", (FourOctetAs(65001), theirs))
    fsm.handle(MessageReceived(1, peer_open), 0.0)
    fsm.handle(MessageReceived(1, Keepalive()), 0.0)
    return fsm


@pytest.mark.parametrize(
    ("ours", "theirs", "n"),
    [(WITH_N, WITH_N, True), (WITH_N, WITHOUT_N, False), (WITHOUT_N, WITH_N, False)],
)
def test_n_bit_is_negotiated_only_when_both_set_it(
    ours: GracefulRestart, theirs: GracefulRestart, n: bool
) -> None:
    fsm = established(ours, theirs)
    assert fsm.negotiated is not None and fsm.negotiated.notification_gr is n


def test_under_n_a_stop_sends_hard_reset_so_the_peer_flushes() -> None:
    fsm = established(WITH_N, WITH_N)
    actions = fsm.handle(ManualStop(), 1.0)
    hard = gr.hard_reset(ADMIN)
    assert actions == [Send(1, hard), Close(1), SessionDown(actions[2].reason, hard, None)]  # type: ignore[union-attr]


def test_without_n_a_stop_sends_the_plain_cease() -> None:
    fsm = established(WITH_N, WITHOUT_N)
    assert fsm.handle(ManualStop(), 1.0)[0] == Send(1, ADMIN)


def test_under_n_bfd_down_sends_hard_reset() -> None:
    fsm = established(WITH_N, WITH_N)
    assert fsm.handle(BfdDown(), 1.0)[0] == Send(1, gr.hard_reset(BFD))


def test_graceful_shutdown_attribute_rules() -> None:
    from bgpd.codec.types import PathAttributes
    from bgpd.shutdown import GRACEFUL_SHUTDOWN, drained, on_import

    ours = drained(PathAttributes(local_pref=100, communities=(1,)))
    assert ours.local_pref == 0 and ours.communities == (1, GRACEFUL_SHUTDOWN)
    assert drained(ours) == ours
    received = PathAttributes(local_pref=200, communities=(GRACEFUL_SHUTDOWN,))
    assert on_import(received) == PathAttributes(local_pref=0, communities=(GRACEFUL_SHUTDOWN,))
    plain = PathAttributes(local_pref=200)
    assert on_import(plain) is plain and on_import(None) is None
