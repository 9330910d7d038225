"""Graceful restart rules that are not timers: which session ends keep a peer's routes.

Pure functions over the negotiated capabilities and the NOTIFICATIONs of a session's end, used by
the FSM (what to send) and the speaker (whether to keep the routes stale):

- RFC 4724: a session that ends without a NOTIFICATION (TCP closed or reset) keeps the routes of
  a peer that advertised graceful restart, stale, for its Restart Time.
- RFC 8538 (Notification GR): when both sides set the N bit, a session that ends with a
  NOTIFICATION — sent or received, hold timer expiry included — keeps them too, unless it is
  Cease/Hard Reset. Whoever wants the routes flushed sends Hard Reset, carrying the
  NOTIFICATION it would have sent as data (§3: ErrorCode, Subcode, Data).
- RFC 9494: the long-lived stale time of each family both sides advertised LLGR for
  (:func:`stale_times`; what happens to the paths then is :mod:`bgpd.llgr`).
- RFC 5882 §4.3: our BFD shares fate with the control plane (C bit 0), so a session ended by BFD
  (Cease/BFD Down, RFC 9384, or a Hard Reset carrying it) never keeps the routes.
"""

from __future__ import annotations

from bgpd.codec.errors import CeaseSubcode, ErrorCode
from bgpd.codec.types import GracefulRestart, LongLivedGracefulRestart, Notification

RESTART_STATE = 0x8  # R bit (RFC 4724 §3): we restarted
NOTIFICATION = 0x4  # N bit (RFC 8538 §2): Notification GR supported
FORWARDING = 0x80  # per-family F bit: forwarding state kept across the restart


def notification_gr(ours: GracefulRestart | None, theirs: GracefulRestart | None) -> bool:
    """Both sides advertised graceful restart with the N bit (RFC 8538 §2)."""
    return (
        ours is not None
        and theirs is not None
        and bool(ours.restart_flags & NOTIFICATION)
        and bool(theirs.restart_flags & NOTIFICATION)
    )


def is_hard_reset(notification: Notification | None) -> bool:
    return (
        notification is not None
        and notification.code == ErrorCode.CEASE
        and notification.subcode == CeaseSubcode.HARD_RESET
    )


def is_bfd_down(notification: Notification | None) -> bool:
    """Cease/BFD Down, bare or carried in a Hard Reset."""
    if notification is None or notification.code != ErrorCode.CEASE:
        return False
    if notification.subcode == CeaseSubcode.BFD_DOWN:
        return True
    data = notification.data
    return (
        notification.subcode == CeaseSubcode.HARD_RESET
        and len(data) >= 2
        and data[0] == ErrorCode.CEASE
        and data[1] == CeaseSubcode.BFD_DOWN
    )


def hard_reset(inner: Notification) -> Notification:
    """RFC 8538 §3: Cease/Hard Reset carrying ``inner`` (ErrorCode, Subcode, Data)."""
    data = bytes([inner.code, inner.subcode]) + inner.data
    return Notification(ErrorCode.CEASE, CeaseSubcode.HARD_RESET, data)


def keeps_routes(
    peer_gr: GracefulRestart | None,
    n_bit: bool,
    sent: Notification | None,
    received: Notification | None,
) -> bool:
    """Whether a session end keeps the peer's routes (stale) for its Restart Time."""
    if peer_gr is None or peer_gr.restart_time == 0:
        return False
    return ends_gracefully(n_bit, sent, received)


def ends_gracefully(n_bit: bool, sent: Notification | None, received: Notification | None) -> bool:
    """A session end that graceful restart (and LLGR, RFC 9494 §4.2) covers."""
    if sent is None and received is None:
        return True  # RFC 4724: the TCP connection just went away
    if not n_bit:
        return False
    return not any(is_hard_reset(n) or is_bfd_down(n) for n in (sent, received))


def stale_times(
    ours: LongLivedGracefulRestart | None, theirs: LongLivedGracefulRestart | None
) -> dict[int, int]:
    """afi -> long-lived stale time for the unicast families both sides advertised."""
    if ours is None or theirs is None:
        return {}
    mine = {(afi, safi): time for afi, safi, _flags, time in ours.families}
    out: dict[int, int] = {}
    for afi, safi, _flags, time in theirs.families:
        if (afi, safi) in mine and safi == 1:
            stale = min(time, mine[(afi, safi)])
            if stale > 0:
                out[afi] = stale
    return out
