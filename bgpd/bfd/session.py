"""One BFD session: the RFC 5880 §6.2 state machine, sans-IO, with explicit time.

Shaped like an aioquic connection: inputs are :meth:`BfdSession.receive`,
:meth:`BfdSession.handle_timeout`, :meth:`BfdSession.admin_down`, :meth:`BfdSession.enable`
and :meth:`BfdSession.set_intervals`, each taking ``now`` (seconds on any monotonic clock) and
returning an :class:`Output` — the Control packets to send at once and the state changes that
happened. :meth:`BfdSession.next_deadline` says when :meth:`BfdSession.handle_timeout` must be
called next. No sockets, no clock reads, no sleeps: tests drive it with a fake clock.

What the RFC asks, where it lives here:

- §6.2 / §6.8.6 state transitions, the remote variables and the diagnostics we set ourselves:
  ControlDetectionTimeExpired (detection timeout), NeighborSignaledDown (the peer said Down or
  AdminDown while we were not Down), AdministrativelyDown (:meth:`admin_down`).
- §6.8.3 / §6.5 timer changes: a change of our intervals or multiplier starts a Poll Sequence;
  the packets carry the new values with P set, and while the session is Up a longer transmit
  interval is used only once a packet with F arrives (a shorter one at once, as the peer
  shortens its detection time as soon as it sees it). While the session is not Up we
  transmit no faster than once a second (the desired TX is raised to 1 s).
- §6.8.4 detection time: the remote detect multiplier times the larger of our Required Min RX
  and the remote Desired Min TX. While a poll lowering our RX is pending the old, larger value
  still counts, as the RFC requires.
- §6.8.7 transmission: every ``max(our desired TX, remote Required Min RX)``, minus 0-25 %
  jitter (10-25 % when our detect multiplier is 1), drawn from an injectable ``random.Random``;
  no periodic packets while the remote Required Min RX is 0; a packet with F at once to answer P.

Demand mode and the Echo function are not implemented (we never set D, and advertise a Required
Min Echo RX of 0); the C bit is 0 because our BFD shares the control plane.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bgpd.bfd.packet import ControlPacket, Diag, State

SLOW_TX_US = 1_000_000  # §6.8.3: at least one second between packets while not Up
_US = 1_000_000.0


@dataclass(frozen=True)
class SessionConfig:
    """Our timing parameters (RFC 5880 §6.8.1 bfd.DesiredMinTxInterval etc.), microseconds."""

    desired_min_tx_us: int = 300_000
    required_min_rx_us: int = 300_000
    detect_mult: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.desired_min_tx_us <= 0xFFFFFFFF:
            raise ValueError(f"desired min TX {self.desired_min_tx_us} µs outside 1..2^32-1")
        if not 0 <= self.required_min_rx_us <= 0xFFFFFFFF:
            raise ValueError(f"required min RX {self.required_min_rx_us} µs outside 0..2^32-1")
        if not 1 <= self.detect_mult <= 255:
            raise ValueError(f"detect multiplier {self.detect_mult} outside 1..255")


@dataclass(frozen=True)
class StateChange:
    """The session moved from ``old`` to ``new`` at ``at``; ``diag`` is our diagnostic then."""

    old: State
    new: State
    diag: Diag
    remote_diag: Diag
    at: float


@dataclass
class Output:
    """What one input produced: packets to send now, and state changes in order."""

    packets: list[ControlPacket] = field(default_factory=list)
    changes: list[StateChange] = field(default_factory=list)


class BfdSession:
    """The §6.8.1 state variables of one session and the rules that change them."""

    def __init__(
        self,
        local_discriminator: int,
        config: SessionConfig,
        now: float,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= local_discriminator <= 0xFFFFFFFF:
            raise ValueError(f"local discriminator {local_discriminator} outside 1..2^32-1")
        self.local_discriminator = local_discriminator
        self.config = config
        self._rng = rng if rng is not None else random.Random()
        self.state = State.DOWN
        self.local_diag = Diag.NO_DIAGNOSTIC
        self.remote_state = State.DOWN
        self.remote_diag = Diag.NO_DIAGNOSTIC
        self.remote_discriminator = 0
        self.remote_min_rx_us = 1  # §6.8.1: initialised to 1 µs
        self.remote_desired_min_tx_us = 0
        self.remote_detect_mult = 0
        self.flaps = 0
        self.up_since: float | None = None
        self.discarded = 0
        # Values our packets carry (during a poll: the poll's values) and the values in effect.
        self._adv = self._wanted()
        self._active = self._adv
        self._polling = False
        self._next_tx: float | None = now  # first packet at once
        self._scheduled_interval_us: int | None = None  # the interval _next_tx was drawn from
        self._detect_deadline: float | None = None

    # -- views -----------------------------------------------------------------------------

    @property
    def polling(self) -> bool:
        """True while a Poll Sequence waits for its Final."""
        return self._polling

    @property
    def advertised(self) -> SessionConfig:
        """The timing values our packets carry now."""
        return self._adv

    def tx_interval_us(self) -> int | None:
        """The transmit interval before jitter (§6.8.7); None while the peer wants none."""
        if self.remote_min_rx_us == 0:
            return None
        return max(self._active.desired_min_tx_us, self.remote_min_rx_us)

    def detection_time_us(self) -> int | None:
        """§6.8.4 (asynchronous mode); None until a packet from the peer has been received."""
        if self.remote_detect_mult == 0:
            return None
        rx = max(self._active.required_min_rx_us, self._adv.required_min_rx_us)
        return self.remote_detect_mult * max(rx, self.remote_desired_min_tx_us)

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` must run next (None: nothing scheduled)."""
        times = [t for t in (self._next_tx, self._detect_deadline) if t is not None]
        return min(times) if times else None

    # -- inputs ----------------------------------------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> Output:
        """A Control packet that passed :func:`bgpd.bfd.packet.decode` (§6.8.6, second half)."""
        out = Output()
        if packet.your_discriminator not in (0, self.local_discriminator):
            self.discarded += 1  # demultiplexed to the wrong session: the caller's bug
            return out
        self.remote_discriminator = packet.my_discriminator
        self.remote_state = packet.state
        self.remote_diag = packet.diag
        self.remote_min_rx_us = packet.required_min_rx_us
        self.remote_desired_min_tx_us = packet.desired_min_tx_us
        self.remote_detect_mult = packet.detect_mult
        if packet.final and self._polling:
            self._end_poll(now, out)
        detection = self.detection_time_us()
        assert detection is not None  # remote_detect_mult was just set from a valid packet
        self._detect_deadline = now + detection / _US
        if self.state == State.ADMIN_DOWN:
            self._retime_tx(now)
            return out
        self._transition(packet.state, now, out)
        if packet.poll:
            out.packets.append(self._packet(final=True))
        self._retime_tx(now)
        return out

    def handle_timeout(self, now: float) -> Output:
        """Run whatever timers are due at ``now``: detection expiry, then periodic transmit."""
        out = Output()
        if self._detect_deadline is not None and now >= self._detect_deadline:
            self._detection_expired(now, out)
        if self._next_tx is not None and now >= self._next_tx:
            out.packets.append(self._packet())
            self._schedule_tx(now)
        return out

    def admin_down(self, now: float) -> Output:
        """Take the session administratively down (§6.8.16); it keeps sending AdminDown."""
        out = Output()
        if self.state != State.ADMIN_DOWN:
            self._set_state(State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, now, out)
        return out

    def enable(self, now: float) -> Output:
        """Leave AdminDown for Down; the handshake starts again."""
        out = Output()
        if self.state == State.ADMIN_DOWN:
            self._set_state(State.DOWN, self.local_diag, now, out)
            self._schedule_tx(now)
        return out

    def set_intervals(
        self, desired_min_tx_us: int, required_min_rx_us: int, detect_mult: int, now: float
    ) -> Output:
        """New timing parameters; a Poll Sequence carries them to the peer (§6.8.3)."""
        self.config = SessionConfig(desired_min_tx_us, required_min_rx_us, detect_mult)
        out = Output()
        self._apply_wanted(now, out)
        return out

    # -- rules -----------------------------------------------------------------------------

    def _transition(self, remote: State, now: float, out: Output) -> None:
        if remote == State.ADMIN_DOWN:
            if self.state != State.DOWN:
                self._set_state(State.DOWN, Diag.NEIGHBOR_SIGNALED_DOWN, now, out)
        elif self.state == State.DOWN:
            if remote == State.DOWN:
                self._set_state(State.INIT, self.local_diag, now, out)
            elif remote == State.INIT:
                self._set_state(State.UP, self.local_diag, now, out)
        elif self.state == State.INIT:
            if remote in (State.INIT, State.UP):
                self._set_state(State.UP, self.local_diag, now, out)
        elif remote == State.DOWN:  # we are Up
            self._set_state(State.DOWN, Diag.NEIGHBOR_SIGNALED_DOWN, now, out)

    def _detection_expired(self, now: float, out: Output) -> None:
        self._detect_deadline = None
        # §6.8.1: no valid packet for a detection time zeroes bfd.RemoteDiscr.
        self.remote_discriminator = 0
        self.remote_state = State.DOWN
        if self.state in (State.INIT, State.UP):
            self._set_state(State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, now, out)

    def _set_state(self, new: State, diag: Diag, now: float, out: Output) -> None:
        old = self.state
        self.state = new
        self.local_diag = diag
        if old == State.UP:
            self.flaps += 1
            self.up_since = None
        if new == State.UP:
            self.up_since = now
        out.changes.append(StateChange(old, new, diag, self.remote_diag, now))
        if not self._apply_wanted(now, out):
            out.packets.append(self._packet())  # tell the peer at once, not a second later

    def _wanted(self) -> SessionConfig:
        tx = self.config.desired_min_tx_us
        if self.state != State.UP:
            tx = max(tx, SLOW_TX_US)
        return SessionConfig(tx, self.config.required_min_rx_us, self.config.detect_mult)

    def _apply_wanted(self, now: float, out: Output) -> bool:
        """Move the advertised values to what we want now; True if a poll packet went out."""
        wanted = self._wanted()
        if self.state != State.UP:
            # Only an Up session must keep its interval until the Final (§6.8.3); outside Up a
            # pending poll has nothing left to protect and restarts with the new values.
            self._active = wanted
            if self._polling and wanted != self._adv:
                self._polling = False
        elif wanted.desired_min_tx_us < self._active.desired_min_tx_us:
            # Sending faster at once is what the peer expects: it shortens its detection time
            # as soon as it sees the new value, and waiting for our Final would leave a window
            # (one round trip) where it expects packets we do not send yet. Only an increase
            # waits for the Final (§6.8.3).
            self._active = SessionConfig(
                wanted.desired_min_tx_us,
                self._active.required_min_rx_us,
                self._active.detect_mult,
            )
        if wanted == self._adv or self._polling:
            return False  # unchanged, or a poll is out: the next starts when its Final arrives
        self._adv = wanted
        sent = False
        if self.remote_discriminator != 0 and self.state != State.ADMIN_DOWN:
            self._polling = True
            out.packets.append(self._packet())
            sent = True
        self._retime_tx(now)
        return sent

    def _end_poll(self, now: float, out: Output) -> None:
        self._polling = False
        self._active = self._adv
        self._apply_wanted(now, out)  # values changed during the poll: poll again
        self._retime_tx(now)

    def _retime_tx(self, now: float) -> None:
        """Follow a change of the transmit interval: stop, or send sooner if it got shorter.

        An unchanged interval keeps the drawn time, so received packets do not skew the jitter.
        """
        interval = self.tx_interval_us()
        if interval == self._scheduled_interval_us and (
            self._next_tx is not None or interval is None
        ):
            return
        previous = self._next_tx
        self._schedule_tx(now)
        if previous is not None and self._next_tx is not None and previous < self._next_tx:
            self._next_tx = previous  # longer interval: the packet already due still goes

    def _schedule_tx(self, now: float) -> None:
        """Draw the next periodic transmission (§6.8.7 jitter) from ``now``."""
        interval = self.tx_interval_us()
        self._scheduled_interval_us = interval
        if interval is None:
            self._next_tx = None  # the peer asked for no packets (Required Min RX 0)
            return
        top = 0.9 if self._adv.detect_mult == 1 else 1.0
        self._next_tx = now + interval * self._rng.uniform(0.75, top) / _US

    def _packet(self, final: bool = False) -> ControlPacket:
        return ControlPacket(
            state=self.state,
            my_discriminator=self.local_discriminator,
            your_discriminator=self.remote_discriminator,
            diag=self.local_diag,
            detect_mult=self._adv.detect_mult,
            desired_min_tx_us=self._adv.desired_min_tx_us,
            required_min_rx_us=self._adv.required_min_rx_us,
            required_min_echo_rx_us=0,
            poll=self._polling and not final,
            final=final,
        )
