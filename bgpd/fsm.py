"""The sans-IO BGP session finite state machine (RFC 4271 §8, collisions per §6.8).

One ``Fsm`` per configured peer. It owns the session state, the per-connection states (two TCP
connections may exist at once while a collision is unresolved), the timers (connect-retry, hold,
keepalive, idle hold with exponential backoff) and ``last_error``. It does no I/O and reads no
clock: the driver feeds events with ``handle(event, now)`` and timer expiry with
``handle_timeout(now)``, asks ``next_deadline()`` when to call back, and executes the returned
actions in order. Unexpected messages get the RFC 6608 FSM error subcodes; an administrative stop
carries an RFC 9003 shutdown communication. OPEN validation and negotiation live in
``bgpd.fsm_open``; the event, action and configuration types in ``bgpd.fsm_types`` (re-exported
here, so drivers import everything from this module).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from bgpd import gr
from bgpd.codec.errors import CeaseSubcode, ErrorCode, FsmSubcode
from bgpd.codec.types import (
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
    message_type,
)
from bgpd.fsm_open import (
    SHUTDOWN_SUBCODES,
    check_open,
    describe_notification,
    local_open,
    local_side_wins,
    negotiate,
    shutdown_data,
)
from bgpd.fsm_types import (
    Action,
    BfdDown,
    Close,
    Connect,
    DecodeFailed,
    Deliver,
    Event,
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

__all__ = [
    "OPEN_SENT_HOLD_TIME",
    "Action",
    "BfdDown",
    "Close",
    "Connect",
    "DecodeFailed",
    "Deliver",
    "Event",
    "Fsm",
    "FsmConfig",
    "ManualStart",
    "ManualStop",
    "MessageReceived",
    "Negotiated",
    "Send",
    "SessionDown",
    "SessionUp",
    "State",
    "TcpAccepted",
    "TcpConnected",
    "TcpFailed",
]

# RFC 4271 §8.2.2: in OpenSent the hold timer is set to "a large value"; 4 minutes is suggested.
OPEN_SENT_HOLD_TIME = 240.0

# Ids of connections we closed are remembered so a late TcpFailed for one of them is not taken
# for the failure of a pending outbound connect. A driver reports such events promptly, so a
# short memory suffices and stays bounded however long the session flaps.
_CLOSED_MEMORY = 64

# Past 2**60 the backoff is long capped; the bound keeps the float arithmetic finite.
_MAX_BACKOFF_EXPONENT = 60

_RANK = {State.OPEN_SENT: 1, State.OPEN_CONFIRM: 2, State.ESTABLISHED: 3}

_UNEXPECTED_SUBCODE = {
    State.OPEN_SENT: FsmSubcode.UNEXPECTED_IN_OPENSENT,
    State.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_IN_OPENCONFIRM,
    State.ESTABLISHED: FsmSubcode.UNEXPECTED_IN_ESTABLISHED,
}

_COLLISION = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
_REJECTED = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED)

# Timer kinds, in the order they fire when due at the same instant: a connection whose hold
# timer expired gets no KEEPALIVE first.
_HOLD, _KEEPALIVE, _IDLE, _CONNECT_RETRY = range(4)
_SESSION = -1  # the "connection id" of session-wide timers

_Timer = tuple[float, int, int]  # (deadline, kind, connection id)


@dataclass(slots=True)
class _Conn:
    """One TCP connection's own state machine, from OpenSent on (the OPEN is sent on connect)."""

    conn: int
    outbound: bool
    state: State = State.OPEN_SENT
    negotiated: Negotiated | None = None  # set when the peer's OPEN is accepted
    hold_deadline: float | None = None
    keepalive_deadline: float | None = None


def _flushing(c: _Conn, sent: Notification | None) -> Notification | None:
    """A NOTIFICATION that must make the peer drop our routes: under Notification GR
    (RFC 8538) a bare Cease would keep them stale, so it travels inside a Hard Reset."""
    if sent is None or c.negotiated is None or not c.negotiated.notification_gr:
        return sent
    return gr.hard_reset(sent)


class Fsm:
    """The session FSM of one peer. See the module docstring for how a driver uses it."""

    def __init__(self, config: FsmConfig) -> None:
        self.config = config
        self.last_error = ""  # the last error in words, for the API's "info"
        self._started = False  # ManualStart seen and no ManualStop since
        self._idle_until: float | None = None  # idle hold after a failure, then restart
        self._connecting = False  # a Connect was emitted and not yet answered
        self._connect_retry_at: float | None = None
        self._conns: dict[int, _Conn] = {}
        self._closed: deque[int] = deque(maxlen=_CLOSED_MEMORY)
        self._failures = 0  # consecutive session failures, for the backoff
        self._last_failure_at: float | None = None
        self._now = float("-inf")

    # --- what the driver and the API read --------------------------------------------------

    @property
    def state(self) -> State:
        """The session's state: that of its most advanced connection, Idle when stopped."""
        if not self._started or self._idle_until is not None:
            return State.IDLE
        if self._conns:
            return max((c.state for c in self._conns.values()), key=_RANK.__getitem__)
        return State.CONNECT if self._connecting else State.ACTIVE

    @property
    def negotiated(self) -> Negotiated | None:
        """The Established session's negotiated parameters; None when not Established."""
        established = self._established()
        return established.negotiated if established is not None else None

    @property
    def connections(self) -> dict[int, State]:
        """Each open connection's own state (two during an unresolved collision)."""
        return {c.conn: c.state for c in self._conns.values()}

    def next_deadline(self) -> float | None:
        """When ``handle_timeout`` must next be called; None when no timer runs."""
        timers = self._timers()
        return min(t[0] for t in timers) if timers else None

    # --- inputs ----------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """Process one event at time ``now``; timers already due fire first."""
        now = self._advance(now)
        actions = self._fire_due(now)
        actions += self._dispatch(event, now)
        self._ensure_progress(now)
        return actions

    def handle_timeout(self, now: float) -> list[Action]:
        """Fire every timer due at ``now`` (in deadline order)."""
        now = self._advance(now)
        actions = self._fire_due(now)
        self._ensure_progress(now)
        return actions

    def _advance(self, now: float) -> float:
        # A clock that steps back must not re-arm timers in the past.
        self._now = max(self._now, now)
        return self._now

    def _dispatch(self, event: Event, now: float) -> list[Action]:
        match event:
            case ManualStart():
                return self._manual_start(now)
            case ManualStop():
                return self._manual_stop(event)
            case TcpConnected(conn=conn):
                return self._tcp_connected(conn, now)
            case TcpAccepted(conn=conn):
                return self._tcp_accepted(conn, now)
            case TcpFailed(conn=conn, reason=reason):
                return self._tcp_failed(conn, reason, now)
            case MessageReceived(conn=conn, message=message):
                c = self._conns.get(conn)
                return self._message(c, message, now) if c is not None else []
            case DecodeFailed(conn=conn, error=error):
                c = self._conns.get(conn)
                if c is None:
                    return []
                sent = Notification(error.code, error.subcode, error.data)
                return self._end(c, now, error.reason, sent=sent)
            case BfdDown(reason=reason):
                return self._bfd_down(reason, now)
            case _:
                raise TypeError(f"not an FSM event: {event!r}")

    # --- administrative events -------------------------------------------------------------

    def _manual_start(self, now: float) -> list[Action]:
        if self._started:
            return []  # RFC 4271 §8.2.2: ManualStart is ignored outside Idle
        self._started = True
        self._failures = 0  # an operator's start begins a fresh backoff
        self._last_failure_at = None
        return self._restart(now)

    def _manual_stop(self, event: ManualStop) -> list[Action]:
        was_started = self._started
        self._started = False
        self._idle_until = None
        self._connecting = False
        self._connect_retry_at = None
        self._failures = 0
        self._last_failure_at = None
        data = shutdown_data(event.reason) if event.subcode in SHUTDOWN_SUBCODES else event.data
        sent: Notification | None = None
        reason = "Stopped"
        if event.notify:
            sent = Notification(ErrorCode.CEASE, event.subcode, data)
            reason = f"Stopped ({describe_notification(sent)})"
        actions: list[Action] = []
        for c in list(self._conns.values()):
            actions += self._end(c, self._now, reason, sent=_flushing(c, sent), failure=False)
        if was_started:
            self.last_error = reason
        return actions

    def _bfd_down(self, reason: str, now: float) -> list[Action]:
        """RFC 5882 §4.3: the Established session goes down at once, with Cease/BFD Down
        (RFC 9384); connections still opening are left alone (BFD says nothing about them)."""
        c = self._established()
        if c is None:
            return []
        sent = _flushing(c, Notification(ErrorCode.CEASE, CeaseSubcode.BFD_DOWN))
        return self._end(c, now, reason, sent=sent)

    def _restart(self, now: float) -> list[Action]:
        """Leave Idle: connect (Connect state), or wait for the peer (Active) when passive."""
        self._idle_until = None
        return [] if self.config.passive else self._connect(now)

    def _connect(self, now: float) -> list[Action]:
        self._connecting = True
        self._connect_retry_at = now + self.config.connect_retry_time
        return [Connect()]

    def _ensure_progress(self, now: float) -> None:
        # Safety net: a started, active peer with nothing open, nothing pending and no timer
        # would wait forever; give it a connect-retry timer.
        if (
            self._started
            and not self.config.passive
            and self._idle_until is None
            and not self._conns
            and not self._connecting
            and self._connect_retry_at is None
        ):
            self._connect_retry_at = now + self.config.connect_retry_time

    # --- TCP events ------------------------------------------------------------------------

    def _tcp_connected(self, conn: int, now: float) -> list[Action]:
        if conn in self._conns:
            return []  # reported twice
        self._connecting = False
        if self._established() is not None:
            # §6.8: a new connection colliding with an Established one is the one closed.
            return self._reject(conn, _COLLISION)
        wanted = (
            self._started
            and self._idle_until is None
            and not self.config.passive
            and not any(c.outbound for c in self._conns.values())
        )
        if not wanted:
            self._closed.append(conn)
            return [Close(conn)]
        return self._open_connection(conn, outbound=True, now=now)

    def _tcp_accepted(self, conn: int, now: float) -> list[Action]:
        if conn in self._conns:
            return []
        if not self._started:
            # RFC 4271 §8.2.2: Idle refuses connections; RFC 4486 §4 says how to tell the peer.
            return self._reject(conn, _REJECTED)
        if self._idle_until is not None:
            # Backing off after an error only holds back our own connects: accepting the peer's
            # (passive TCP establishment, §8.1.1) keeps two speakers that fail together from
            # rejecting each other in lockstep forever.
            self._idle_until = None
        actions: list[Action] = []
        established = self._established()
        if established is not None:
            neg = established.negotiated
            if neg is None or neg.graceful_restart is None:
                return self._reject(conn, _COLLISION)
            # RFC 4724 §4.2: a graceful-restart peer connecting again while we still hold its
            # old session has restarted; the old session ends without a NOTIFICATION (its
            # routes turn stale) and the new connection proceeds.
            actions += self._end(
                established, now, "Peer restarted (graceful restart)", failure=False
            )
        for old in [c for c in self._conns.values() if not c.outbound]:
            # A peer has one outbound connection at a time: a new one means it gave up the old.
            actions += self._end(old, now, "", sent=_COLLISION, failure=False)
        return actions + self._open_connection(conn, outbound=False, now=now)

    def _reject(self, conn: int, notification: Notification) -> list[Action]:
        self._closed.append(conn)
        return [Send(conn, notification), Close(conn)]

    def _open_connection(self, conn: int, *, outbound: bool, now: float) -> list[Action]:
        self._conns[conn] = _Conn(conn, outbound, hold_deadline=now + OPEN_SENT_HOLD_TIME)
        self._connect_retry_at = None  # §8.2.2: a connection stops the ConnectRetryTimer
        return [Send(conn, local_open(self.config))]

    def _tcp_failed(self, conn: int, reason: str, now: float) -> list[Action]:
        c = self._conns.get(conn)
        if c is not None:
            return self._end(c, now, reason or "Connection closed", tcp_open=False)
        if conn in self._closed or not self._connecting:
            return []  # a late report about a connection we already let go
        # The pending connect failed: Active until the connect-retry timer fires (§8.2.2).
        self._connecting = False
        if not self._conns:
            self.last_error = reason or "Connection failed"
        return []

    # --- messages --------------------------------------------------------------------------

    def _message(self, c: _Conn, message: Message, now: float) -> list[Action]:
        if isinstance(message, Notification):
            return self._notification_received(c, message, now)
        if c.state is State.OPEN_SENT:
            if isinstance(message, Open):
                return self._open_received(c, message, now)
        elif c.state is State.OPEN_CONFIRM:
            if isinstance(message, Keepalive):
                return self._establish(c, now)
        elif isinstance(message, Keepalive):
            self._restart_hold(c, now)
            return []
        elif isinstance(message, Update | RouteRefresh):
            self._restart_hold(c, now)
            return [Deliver(message)]
        # RFC 6608: the subcode says in which state the message was unexpected.
        sent = Notification(ErrorCode.FSM, _UNEXPECTED_SUBCODE[c.state])
        name = message_type(message).name.replace("_", "-")
        return self._end(c, now, f"Unexpected {name} in {c.state}", sent=sent)

    def _notification_received(self, c: _Conn, received: Notification, now: float) -> list[Action]:
        # The peer closing its side of a collision is not an error while the other survives.
        collision = received == _COLLISION and len(self._conns) > 1
        reason = f"Received NOTIFICATION {describe_notification(received)}"
        return self._end(c, now, reason, received=received, failure=not collision)

    def _open_received(self, c: _Conn, peer_open: Open, now: float) -> list[Action]:
        rejected = check_open(self.config, peer_open)
        if rejected is not None:
            return self._end(c, now, rejected.reason, sent=rejected.notification)
        actions, survives = self._resolve_collision(c, peer_open, now)
        if not survives:
            return actions
        negotiated = negotiate(self.config, peer_open)
        c.negotiated = negotiated
        c.state = State.OPEN_CONFIRM
        self._restart_hold(c, now)
        if negotiated.hold_time:
            c.keepalive_deadline = now + negotiated.keepalive_time
        return [*actions, Send(c.conn, Keepalive())]

    def _resolve_collision(
        self, c: _Conn, peer_open: Open, now: float
    ) -> tuple[list[Action], bool]:
        """RFC 4271 §6.8 on receipt of an OPEN on ``c``; returns (actions, ``c`` survives)."""
        actions: list[Action] = []
        for other in [o for o in self._conns.values() if o is not c]:
            if other.state is State.ESTABLISHED:
                return self._end(c, now, "", sent=_COLLISION, failure=False), False
            # Comparable only once the other connection has an OPEN too, unless the peer's
            # identifier is known out of band (the RFC's "MAY also examine OpenSent").
            if other.negotiated is None and self.config.peer_router_id is None:
                continue
            keep_ours = local_side_wins(self.config, peer_open)
            loser = other if c.outbound == keep_ours else c
            actions += self._end(loser, now, "", sent=_COLLISION, failure=False)
            if loser is c:
                return actions, False
        return actions, True

    def _establish(self, c: _Conn, now: float) -> list[Action]:
        actions: list[Action] = []
        for other in [o for o in self._conns.values() if o is not c]:
            # §6.8: once one connection is Established, any other is the colliding one.
            actions += self._end(other, now, "", sent=_COLLISION, failure=False)
        negotiated = c.negotiated
        assert negotiated is not None, "OpenConfirm is only entered with a negotiated OPEN"
        c.state = State.ESTABLISHED
        self._connecting = False
        self._connect_retry_at = None
        self._restart_hold(c, now)
        actions.append(SessionUp(c.conn, negotiated))
        return actions

    def _restart_hold(self, c: _Conn, now: float) -> None:
        hold = c.negotiated.hold_time if c.negotiated is not None else 0
        c.hold_deadline = now + hold if hold else None

    # --- ending connections ----------------------------------------------------------------

    def _end(
        self,
        c: _Conn,
        now: float,
        reason: str,
        *,
        sent: Notification | None = None,
        received: Notification | None = None,
        tcp_open: bool = True,
        failure: bool = True,
    ) -> list[Action]:
        """Drop one connection: NOTIFICATION (if any) and Close, SessionDown if it was up.

        ``failure`` marks an error: it becomes ``last_error``, and when no connection is
        left the session goes Idle for the backoff time.
        """
        actions: list[Action] = []
        if tcp_open:
            if sent is not None:
                actions.append(Send(c.conn, sent))
            actions.append(Close(c.conn))
        del self._conns[c.conn]
        self._closed.append(c.conn)
        if c.state is State.ESTABLISHED:
            actions.append(SessionDown(reason, sent, received))
        if failure:
            self.last_error = reason
            if not self._conns:
                self._session_failed(now)
        return actions

    def _session_failed(self, now: float) -> None:
        """Go Idle for the idle hold time, doubled per consecutive failure (capped)."""
        forget = self.config.error_forget_time
        if self._last_failure_at is not None and now - self._last_failure_at > forget:
            self._failures = 0
        self._failures += 1
        self._last_failure_at = now
        exponent = min(self._failures - 1, _MAX_BACKOFF_EXPONENT)
        idle_hold = min(self.config.idle_hold_time * 2**exponent, self.config.max_idle_hold_time)
        self._idle_until = now + idle_hold
        self._connecting = False
        self._connect_retry_at = None

    # --- timers ----------------------------------------------------------------------------

    def _timers(self) -> list[_Timer]:
        timers: list[_Timer] = []
        if self._idle_until is not None:
            timers.append((self._idle_until, _IDLE, _SESSION))
        if self._connect_retry_at is not None:
            timers.append((self._connect_retry_at, _CONNECT_RETRY, _SESSION))
        for c in self._conns.values():
            if c.hold_deadline is not None:
                timers.append((c.hold_deadline, _HOLD, c.conn))
            if c.keepalive_deadline is not None:
                timers.append((c.keepalive_deadline, _KEEPALIVE, c.conn))
        return timers

    def _fire_due(self, now: float) -> list[Action]:
        # Each firing clears its timer or moves it past ``now``, so this loop ends.
        actions: list[Action] = []
        while True:
            due = [t for t in self._timers() if t[0] <= now]
            if not due:
                return actions
            _, kind, conn = min(due)
            actions += self._fire(kind, conn, now)

    def _fire(self, kind: int, conn: int, now: float) -> list[Action]:
        if kind == _IDLE:
            return self._restart(now)
        if kind == _CONNECT_RETRY:
            # §8.2.2: in Connect or Active, connect-retry expiry starts a new connection.
            self._connect_retry_at = None
            return self._connect(now)
        c = self._conns[conn]
        if kind == _HOLD:
            sent = Notification(ErrorCode.HOLD_TIMER_EXPIRED)
            return self._end(c, now, "Hold timer expired", sent=sent)
        keepalive = c.negotiated.keepalive_time if c.negotiated is not None else 0
        c.keepalive_deadline = now + keepalive if keepalive else None
        return [Send(c.conn, Keepalive())]

    def _established(self) -> _Conn | None:
        return next((c for c in self._conns.values() if c.state is State.ESTABLISHED), None)
