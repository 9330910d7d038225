"""The sans-IO BFD session (RFC 5880 §6.2, §6.5, §6.8) driven by a fake clock: no sockets,
no sleeps. Two sessions are wired back to back by :class:`Wire`, a small discrete-event loop
that runs each session's timers at exactly its ``next_deadline()`` and delivers packets
instantly (unless told to drop a direction)."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.bfd.packet import ControlPacket, Diag, State, decode, encode
from bgpd.bfd.session import SLOW_TX_US, BfdSession, Output, SessionConfig, StateChange

FAST = SessionConfig(desired_min_tx_us=100_000, required_min_rx_us=100_000, detect_mult=3)
MAX_STEPS = 100_000


@dataclass
class Side:
    session: BfdSession
    sent: list[tuple[float, ControlPacket]] = field(default_factory=list)
    changes: list[StateChange] = field(default_factory=list)
    deliver: bool = True  # False: this side's packets are lost


class Wire:
    """Two sessions back to back; every packet goes through the real codec."""

    def __init__(self, a: BfdSession, b: BfdSession) -> None:
        self.a, self.b = Side(a), Side(b)
        self.now = 0.0

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def apply(self, side: Side, out: Output, now: float, depth: int = 0) -> None:
        assert depth < 10, "packets bounce back and forth without end"
        side.changes += out.changes
        for packet in out.packets:
            side.sent.append((now, packet))
            if side.deliver:
                peer = self.other(side)
                received = decode(encode(packet))
                self.apply(peer, peer.session.receive(received, now), now, depth + 1)

    def run(self, until: float) -> None:
        for _ in range(MAX_STEPS):
            due = [
                (d, i, s)
                for i, s in enumerate((self.a, self.b))
                if (d := s.session.next_deadline()) is not None
            ]
            if not due:
                break
            deadline, _, side = min(due, key=lambda t: (t[0], t[1]))
            if deadline > until:
                break
            self.now = deadline
            self.apply(side, side.session.handle_timeout(deadline), deadline)
        else:
            raise AssertionError("simulation did not settle")
        self.now = until


def make(discr: int, config: SessionConfig = FAST, seed: int = 1, now: float = 0.0) -> BfdSession:
    return BfdSession(discr, config, now, random.Random(seed))


def up_pair() -> Wire:
    wire = Wire(make(0xA, seed=1), make(0xB, seed=2))
    wire.run(5.0)
    assert wire.a.session.state == State.UP and wire.b.session.state == State.UP
    return wire


def periodic_gaps(side: Side, start: float) -> list[float]:
    times = [t for t, p in side.sent if t >= start and not p.final]
    return [b - a for a, b in itertools.pairwise(times)]


def test_three_way_handshake() -> None:
    a, b = make(0xA, seed=1), make(0xB, seed=2)
    (first,) = a.handle_timeout(0.0).packets  # the first packet goes at once
    assert (first.state, first.your_discriminator) == (State.DOWN, 0)

    out_b = b.receive(first, 0.01)  # B: Down + Down -> Init
    assert [(c.old, c.new) for c in out_b.changes] == [(State.DOWN, State.INIT)]
    assert b.remote_discriminator == 0xA
    (init,) = out_b.packets
    assert (init.state, init.your_discriminator) == (State.INIT, 0xA)

    out_a = a.receive(init, 0.02)  # A: Down + Init -> Up
    assert [(c.old, c.new) for c in out_a.changes] == [(State.DOWN, State.UP)]
    up_packets = [p for p in out_a.packets if p.state == State.UP]
    assert up_packets and up_packets[0].your_discriminator == 0xB

    out_b = b.receive(up_packets[0], 0.03)  # B: Init + Up -> Up
    assert [(c.old, c.new) for c in out_b.changes] == [(State.INIT, State.UP)]
    assert a.up_since == 0.02 and b.up_since == 0.03


def test_slow_transmit_while_not_up() -> None:
    lonely = make(0xA)  # nobody answers
    wire = Wire(lonely, make(0xB))
    wire.b.deliver = False
    wire.a.deliver = False
    wire.run(20.0)
    gaps = periodic_gaps(wire.a, 0.0)
    assert len(gaps) >= 15
    assert all(0.75 * SLOW_TX_US / 1e6 <= g <= SLOW_TX_US / 1e6 for g in gaps)
    assert all(p.desired_min_tx_us == SLOW_TX_US for _, p in wire.a.sent)
    assert lonely.state == State.DOWN


def test_fast_transmit_once_up_after_poll() -> None:
    wire = up_pair()
    a = wire.a.session
    assert not a.polling  # the Up poll (1 s -> 100 ms) completed with a Final
    assert a.tx_interval_us() == 100_000
    start = wire.now
    wire.run(start + 10.0)
    gaps = periodic_gaps(wire.a, start)
    assert len(gaps) > 90
    assert all(0.075 <= g <= 0.100 + 1e-9 for g in gaps)
    assert a.state == State.UP and a.flaps == 0


def test_detection_timeout_takes_session_down_with_diag_1() -> None:
    wire = up_pair()
    wire.run(wire.now + 1.0)
    wire.b.deliver = False  # B falls silent
    last_from_b = max(t for t, _ in wire.b.sent)
    wire.run(wire.now + 2.0)
    a = wire.a.session
    (change,) = [c for c in wire.a.changes if c.new == State.DOWN]
    assert change.old == State.UP
    assert change.diag == Diag.CONTROL_DETECTION_TIME_EXPIRED
    # §6.8.4: remote mult 3 x max(our RX 100 ms, their TX 100 ms), from the last packet.
    assert change.at == pytest.approx(last_from_b + 0.300)
    assert a.state == State.DOWN and a.local_diag == Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert a.remote_discriminator == 0  # §6.8.1: zeroed after a detection time of silence
    assert a.flaps == 1 and a.up_since is None
    # Down again: back to the slow rate, advertising 1 s.
    assert wire.a.sent[-1][1].desired_min_tx_us == SLOW_TX_US


@pytest.mark.parametrize("signalled", [State.DOWN, State.ADMIN_DOWN])
def test_neighbor_signals_down(signalled: State) -> None:
    wire = up_pair()
    a = wire.a.session
    packet = ControlPacket(
        state=signalled,
        my_discriminator=0xB,
        your_discriminator=0xA,
        diag=Diag.ADMINISTRATIVELY_DOWN,
        desired_min_tx_us=SLOW_TX_US,
        required_min_rx_us=100_000,
    )
    out = a.receive(packet, wire.now)
    assert [(c.old, c.new, c.diag) for c in out.changes] == [
        (State.UP, State.DOWN, Diag.NEIGHBOR_SIGNALED_DOWN)
    ]
    assert out.changes[0].remote_diag == Diag.ADMINISTRATIVELY_DOWN
    assert out.packets and out.packets[0].state == State.DOWN  # the peer hears it at once
    assert a.remote_state == signalled


def test_admin_down_and_enable() -> None:
    wire = up_pair()
    a, b = wire.a.session, wire.b.session
    wire.apply(wire.a, a.admin_down(wire.now), wire.now)
    assert a.state == State.ADMIN_DOWN and a.local_diag == Diag.ADMINISTRATIVELY_DOWN
    assert wire.a.changes[-1].new == State.ADMIN_DOWN
    assert wire.a.sent[-1][1].state == State.ADMIN_DOWN
    # The peer goes Down with Neighbor Signaled Down, and stays there.
    assert b.state == State.DOWN and b.local_diag == Diag.NEIGHBOR_SIGNALED_DOWN
    wire.run(wire.now + 5.0)
    assert a.state == State.ADMIN_DOWN and b.state == State.DOWN
    assert all(p.state == State.ADMIN_DOWN for t, p in wire.a.sent if t > wire.now - 4.0)

    seen = len(wire.a.changes)
    wire.apply(wire.a, a.enable(wire.now), wire.now)
    # Enabled: Down, and (packets being instant here) the handshake completes at once.
    assert [(c.old, c.new) for c in wire.a.changes[seen:]] == [
        (State.ADMIN_DOWN, State.DOWN),
        (State.DOWN, State.UP),
    ]
    wire.run(wire.now + 5.0)
    assert a.state == State.UP and b.state == State.UP
    assert a.flaps == 1 and b.flaps == 1


def test_poll_sequence_changes_interval_only_after_final() -> None:
    wire = up_pair()
    a, b = wire.a.session, wire.b.session
    wire.a.deliver = False  # hold A's poll in flight
    out = a.set_intervals(300_000, 300_000, 3, wire.now)
    (poll,) = out.packets
    assert poll.poll and poll.desired_min_tx_us == 300_000 and poll.required_min_rx_us == 300_000
    assert a.polling
    assert a.tx_interval_us() == 100_000  # unchanged while the poll is out (§6.8.3)
    mark, start = len(wire.a.sent), wire.now
    wire.apply(wire.a, out, wire.now)
    wire.run(wire.now + 0.2)  # shorter than B's detection time
    held = wire.a.sent[mark:]
    assert len(held) >= 3 and all(p.poll for _, p in held)  # P repeated until the Final
    times = [t for t, _ in held]
    # Still the old 100 ms interval in use (jittered), not the new 300 ms.
    assert all(0.075 - 1e-9 <= b - a <= 0.1 + 1e-9 for a, b in itertools.pairwise(times[1:]))
    assert times[-1] - start < 0.2

    wire.a.deliver = True
    answer = b.receive(poll, wire.now)
    finals = [p for p in answer.packets if p.final]
    assert finals and not finals[0].poll
    assert b.remote_desired_min_tx_us == 300_000
    a.receive(finals[0], wire.now)
    assert not a.polling
    assert a.tx_interval_us() == 300_000
    start = wire.now
    wire.run(start + 10.0)
    gaps = periodic_gaps(wire.a, start + 0.5)
    assert gaps and all(0.225 - 1e-9 <= g <= 0.300 + 1e-9 for g in gaps)
    assert a.state == b.state == State.UP


def test_final_without_poll_changes_nothing() -> None:
    wire = up_pair()
    a = wire.a.session
    before = (a.tx_interval_us(), a.advertised)
    final = ControlPacket(State.UP, 0xB, 0xA, desired_min_tx_us=100_000,
                          required_min_rx_us=100_000, final=True)  # fmt: skip
    a.receive(final, wire.now)
    assert (a.tx_interval_us(), a.advertised) == before


def test_poll_is_answered_with_final_at_once() -> None:
    wire = up_pair()
    b = wire.b.session
    poll = ControlPacket(State.UP, 0xA, 0xB, desired_min_tx_us=100_000,
                         required_min_rx_us=100_000, poll=True)  # fmt: skip
    out = b.receive(poll, wire.now)
    assert [p.final for p in out.packets] == [True]


def test_remote_min_rx_larger_than_our_tx_wins() -> None:
    wire = up_pair()
    a = wire.a.session
    a.receive(
        ControlPacket(State.UP, 0xB, 0xA, desired_min_tx_us=100_000, required_min_rx_us=700_000),
        wire.now,
    )
    assert a.tx_interval_us() == 700_000


def test_remote_min_rx_zero_stops_periodic_transmission() -> None:
    wire = up_pair()
    a = wire.a.session
    a.receive(
        ControlPacket(State.UP, 0xB, 0xA, desired_min_tx_us=100_000, required_min_rx_us=0),
        wire.now,
    )
    assert a.tx_interval_us() is None
    # Only the detection timer is left.
    assert a.next_deadline() == pytest.approx(wire.now + 0.3)


class Extreme(random.Random):
    """A Random whose uniform() returns one end of the range, to pin the jitter bounds."""

    def __init__(self, top: bool) -> None:
        super().__init__(0)
        self.top = top

    def uniform(self, a: float, b: float) -> float:
        return b if self.top else a


@pytest.mark.parametrize(
    ("mult", "top", "factor"),
    [(3, True, 1.0), (3, False, 0.75), (1, True, 0.9), (1, False, 0.75)],
)
def test_jitter_bounds(mult: int, top: bool, factor: float) -> None:
    """§6.8.7: 75-100 % of the interval, 75-90 % when the detect multiplier is 1."""
    config = SessionConfig(desired_min_tx_us=SLOW_TX_US, required_min_rx_us=SLOW_TX_US,
                           detect_mult=mult)  # fmt: skip
    session = BfdSession(7, config, 0.0, Extreme(top))
    session.handle_timeout(0.0)
    assert session.next_deadline() == pytest.approx(factor)


@pytest.mark.parametrize("mult", [1, 3])
def test_jitter_spread_with_a_real_generator(mult: int) -> None:
    config = SessionConfig(desired_min_tx_us=SLOW_TX_US, required_min_rx_us=SLOW_TX_US,
                           detect_mult=mult)  # fmt: skip
    session = BfdSession(7, config, 0.0, random.Random(42))
    now, gaps = 0.0, []
    for _ in range(500):
        session.handle_timeout(now)
        deadline = session.next_deadline()
        assert deadline is not None
        gaps.append(deadline - now)
        now = deadline
    top = 0.9 if mult == 1 else 1.0
    assert all(0.75 <= g <= top for g in gaps)
    assert max(gaps) - min(gaps) > 0.1  # really jittered, not a constant


def test_detection_time_uses_remote_multiplier_and_slower_side() -> None:
    session = make(0xA)
    assert session.detection_time_us() is None  # nothing heard yet: no detection timer
    session.receive(
        ControlPacket(
            State.DOWN, 0xB, 0, detect_mult=5, desired_min_tx_us=250_000, required_min_rx_us=100_000
        ),
        0.0,
    )
    assert session.detection_time_us() == 5 * 250_000


def test_packets_in_admin_down_are_ignored() -> None:
    session = make(0xA)
    session.admin_down(0.0)
    out = session.receive(ControlPacket(State.INIT, 0xB, 0xA), 0.1)
    assert out.changes == [] and session.state == State.ADMIN_DOWN


def test_packet_for_another_discriminator_is_discarded() -> None:
    session = make(0xA)
    out = session.receive(ControlPacket(State.INIT, 0xB, 0x99), 0.1)
    assert out == Output() and session.discarded == 1 and session.remote_discriminator == 0


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SessionConfig(detect_mult=0)
    with pytest.raises(ValueError):
        SessionConfig(desired_min_tx_us=0)
    with pytest.raises(ValueError):
        BfdSession(0, FAST, 0.0)


def test_faster_transmit_applies_at_once_slower_waits_for_final() -> None:
    """§6.8.3 constrains only an increase; a decrease is used at once, so the peer (which
    shortens its detection time on seeing the new value) is never short of packets."""
    wire = up_pair()
    a = wire.a.session
    wire.a.deliver = False  # no Final can come back while we look
    a.set_intervals(50_000, 100_000, 3, wire.now)
    assert a.polling and a.tx_interval_us() == 100_000  # the peer's Required Min RX still rules
    a.receive(ControlPacket(State.UP, 0xB, 0xA, desired_min_tx_us=100_000,
                            required_min_rx_us=50_000), wire.now)  # fmt: skip
    assert a.polling and a.tx_interval_us() == 50_000  # faster, before any Final


def test_going_up_switches_to_the_fast_rate_without_waiting_for_final() -> None:
    a, b = make(0xA), make(0xB)
    (down,) = a.handle_timeout(0.0).packets
    (init,) = b.receive(down, 0.0).packets
    out = a.receive(init, 0.0)  # A is Up now; its Final-carrying answer is still to come
    assert a.state == State.UP and a.polling
    assert any(p.poll and p.desired_min_tx_us == 100_000 for p in out.packets)
    # B asks for packets every 100 ms (only its own TX is slow while not Up): A sends at
    # that rate from the moment it is Up, its poll still open.
    assert a.tx_interval_us() == 100_000
    deadline = a.next_deadline()
    assert deadline is not None and deadline <= 0.1


# -- property: any sequence of inputs keeps the machine inside RFC 5880 §6.2 -----------------

ALLOWED = {
    (State.DOWN, State.INIT),
    (State.DOWN, State.UP),
    (State.INIT, State.UP),
    (State.INIT, State.DOWN),
    (State.UP, State.DOWN),
    (State.DOWN, State.ADMIN_DOWN),
    (State.INIT, State.ADMIN_DOWN),
    (State.UP, State.ADMIN_DOWN),
    (State.ADMIN_DOWN, State.DOWN),
}

remote_packets = st.builds(
    ControlPacket,
    state=st.sampled_from(State),
    my_discriminator=st.sampled_from([0xB, 0xC]),
    your_discriminator=st.sampled_from([0xA, 0xA, 0x99]),
    detect_mult=st.integers(1, 5),
    desired_min_tx_us=st.sampled_from([50_000, 100_000, 1_000_000]),
    required_min_rx_us=st.sampled_from([0, 100_000, 300_000]),
    poll=st.booleans(),
    final=st.booleans(),
)
steps = st.one_of(
    st.tuples(st.just("receive"), remote_packets),
    st.tuples(st.just("timeout"), st.floats(0.0, 2.0)),
    st.tuples(st.just("admin"), st.booleans()),
    st.tuples(st.just("intervals"), st.sampled_from([50_000, 100_000, 300_000, 2_000_000])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=60), st.integers(0, 2**32))
def test_any_input_sequence_keeps_rfc_invariants(ops: list[tuple[str, object]], seed: int) -> None:
    session = make(0xA, seed=seed)
    now = 0.0
    for kind, arg in ops:
        if kind == "receive":
            assert isinstance(arg, ControlPacket)
            if arg.your_discriminator == 0x99 or (
                arg.state in (State.INIT, State.UP) and arg.your_discriminator == 0
            ):
                continue
            out = session.receive(arg, now)
        elif kind == "timeout":
            assert isinstance(arg, float)
            deadline = session.next_deadline()
            now = max(now, deadline if deadline is not None else now) + arg * 0.01
            out = session.handle_timeout(now)
            after = session.next_deadline()
            assert after is None or after > now  # a due timer never stays due (no busy loop)
        elif kind == "admin":
            out = session.admin_down(now) if arg else session.enable(now)
        else:
            assert isinstance(arg, int)
            out = session.set_intervals(arg, arg, 3, now)
        for change in out.changes:
            assert (change.old, change.new) in ALLOWED
        for packet in out.packets:
            assert decode(encode(packet)) == packet  # every packet we send passes §6.8.6
            assert not (packet.poll and packet.final)
            assert packet.my_discriminator == 0xA and not packet.control_plane_independent
        if session.state != State.UP:
            assert session.advertised.desired_min_tx_us >= SLOW_TX_US
