"""Property tests for the sans-IO FSM: random event sequences keep its invariants.

A small model of the driver tracks which connections are open (fed TcpConnected/TcpAccepted,
not yet failed or closed) and whether the session is up, and every action the FSM returns is
checked against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.codec.errors import BGPError
from bgpd.codec.types import (
    AS_TRANS,
    FourOctetAs,
    Keepalive,
    Message,
    Notification,
    Open,
    RouteRefresh,
    Update,
)
from bgpd.fsm import (
    Close,
    Connect,
    DecodeFailed,
    Deliver,
    Event,
    Fsm,
    FsmConfig,
    ManualStart,
    ManualStop,
    MessageReceived,
    Send,
    SessionDown,
    SessionUp,
    State,
    TcpAccepted,
    TcpConnected,
    TcpFailed,
)

LOCAL_ID = "10.0.0.5"

configs = st.builds(
    FsmConfig,
    local_asn=st.just(65001),
    local_router_id=st.just(LOCAL_ID),
    peer_asn=st.sampled_from([65001, 65002]),
    hold_time=st.sampled_from([0, 3, 9, 90]),
    keepalive_time=st.sampled_from([None, 1, 60]),
    connect_retry_time=st.sampled_from([0.5, 5.0]),
    passive=st.booleans(),
    idle_hold_time=st.sampled_from([0.0, 1.0]),
    max_idle_hold_time=st.just(8.0),
    peer_router_id=st.sampled_from([None, "10.0.0.2"]),
)

opens = st.builds(
    Open,
    asn=st.sampled_from([65001, 65002, AS_TRANS]),
    hold_time=st.sampled_from([0, 1, 3, 90]),
    router_id=st.sampled_from(["10.0.0.2", "10.0.0.9", LOCAL_ID, "0.0.0.0"]),
    capabilities=st.sampled_from([(), (FourOctetAs(65002),), (FourOctetAs(65001),)]),
    version=st.sampled_from([4, 4, 4, 3]),
)

messages: st.SearchStrategy[Message] = st.one_of(
    opens,
    st.just(Keepalive()),
    st.just(Update()),
    st.just(RouteRefresh(1, 1)),
    st.builds(Notification, st.integers(1, 7), st.integers(0, 9)),
)

# A step is (kind, index into the connection ids seen so far, message, time to advance).
steps = st.tuples(
    # Weighted so that sequences often get as far as Established and collisions.
    st.sampled_from(
        ["start"] * 2
        + ["stop", "decode"]
        + ["connected", "accepted", "failed", "advance"] * 2
        + ["message", "timeout"] * 3
        + ["good_open", "keepalive"] * 4
    ),
    st.integers(0, 20),
    messages,
    st.sampled_from([0.0, 0.1, 1.0, 3.0, 30.0, 250.0]),
)


@dataclass
class DriverModel:
    """What a correct driver would know, to check the FSM's actions against."""

    config: FsmConfig
    fsm: Fsm
    now: float = 0.0
    open_conns: set[int] = field(default_factory=set)
    seen: list[int] = field(default_factory=list)
    next_id: int = 1
    up: bool = False
    started: bool = False

    def new_id(self) -> int:
        conn = self.next_id
        self.next_id += 1
        self.seen.append(conn)
        return conn

    def pick(self, index: int) -> int:
        # Mostly an open connection, else one the FSM has seen (closed or failed), rarely one
        # it never heard of.
        if self.open_conns and index < 12:
            return sorted(self.open_conns)[index % len(self.open_conns)]
        return self.seen[index % len(self.seen)] if self.seen and index < 19 else 1000 + index

    def good_open(self, index: int) -> Open:
        router_id = ["10.0.0.2", "10.0.0.9", "10.0.0.1"][index % 3]
        return Open(self.config.peer_asn, 90, router_id)

    def event(self, kind: str, index: int, message: Message) -> Event | None:
        if kind == "start":
            self.started = True
            return ManualStart()
        if kind == "stop":
            self.started = False
            return ManualStop()
        if kind in ("connected", "accepted"):
            conn = self.new_id()
            self.open_conns.add(conn)
            return TcpConnected(conn) if kind == "connected" else TcpAccepted(conn)
        conn = self.pick(index)
        # The well-formed steps go mostly where they make progress, so sequences get far.
        if kind in ("good_open", "keepalive") and index < 16:
            wanted = State.OPEN_SENT if kind == "good_open" else State.OPEN_CONFIRM
            ready = sorted(c for c, s in self.fsm.connections.items() if s is wanted)
            conn = ready[index % len(ready)] if ready else conn
        if kind == "failed":
            self.open_conns.discard(conn)
            return TcpFailed(conn, "Connection reset by peer")
        if kind == "message":
            return MessageReceived(conn, message)
        if kind == "good_open":
            return MessageReceived(conn, self.good_open(index))
        if kind == "keepalive":
            return MessageReceived(conn, Keepalive())
        if kind == "decode":
            return DecodeFailed(conn, BGPError(1, 2, b"\x00\x01"))
        return None

    def check(self, actions: Sequence[object]) -> None:
        for action in actions:
            if isinstance(action, Send):
                assert action.conn in self.open_conns, f"Send on closed connection {action}"
            elif isinstance(action, Close):
                assert action.conn in self.open_conns, f"Close of closed connection {action}"
                self.open_conns.discard(action.conn)
            elif isinstance(action, Connect):
                assert not self.config.passive
            elif isinstance(action, SessionUp):
                assert not self.up, "two sessions up at once"
                assert action.conn in self.open_conns
                self.up = True
            elif isinstance(action, SessionDown):
                assert self.up, "SessionDown without SessionUp"
                self.up = False
            elif isinstance(action, Deliver):
                assert self.up
        fsm = self.fsm
        established = [c for c, s in fsm.connections.items() if s is State.ESTABLISHED]
        assert len(established) <= 1
        assert (fsm.state is State.ESTABLISHED) == self.up == (fsm.negotiated is not None)
        assert set(fsm.connections) <= self.open_conns
        deadline = fsm.next_deadline()
        assert deadline is None or deadline >= self.now
        if not self.started:
            assert fsm.state is State.IDLE and deadline is None
        elif fsm.state is State.IDLE or (
            fsm.state in (State.CONNECT, State.ACTIVE) and not self.config.passive
        ):
            assert deadline is not None, f"stuck in {fsm.state} with no timer"


@settings(max_examples=400, deadline=None)
@given(configs, st.lists(steps, min_size=30, max_size=120))
def test_random_event_sequences_keep_the_invariants(
    config: FsmConfig, sequence: list[tuple[str, int, Message, float]]
) -> None:
    model = DriverModel(config, Fsm(config))
    model.check(model.fsm.handle(model.event("start", 0, Keepalive()) or ManualStart(), 0.0))
    for kind, index, message, dt in sequence:
        if kind == "advance":
            model.now += dt
            model.check(model.fsm.handle_timeout(model.now))
            continue
        if kind == "timeout":
            deadline = model.fsm.next_deadline()
            if deadline is not None:
                model.now = max(model.now, deadline)
            model.check(model.fsm.handle_timeout(model.now))
            continue
        event = model.event(kind, index, message)
        assert event is not None
        model.check(model.fsm.handle(event, model.now))


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from([3, 9, 90]),
    st.lists(st.floats(0.0, 0.99), min_size=1, max_size=200),
)
def test_a_peer_that_keeps_talking_within_its_hold_time_stays_up(
    hold: int, gaps: list[float]
) -> None:
    fsm = Fsm(FsmConfig(65001, LOCAL_ID, 65002, hold_time=hold))
    fsm.handle(ManualStart(), 0.0)
    fsm.handle(TcpConnected(1), 0.0)
    fsm.handle(MessageReceived(1, Open(65002, hold, "10.0.0.2")), 0.0)
    assert [type(a) for a in fsm.handle(MessageReceived(1, Keepalive()), 0.0)] == [SessionUp]
    now = 0.0
    for gap in gaps:
        now += gap * hold  # always strictly inside the hold time since the last message
        actions = fsm.handle(MessageReceived(1, Keepalive()), now)
        assert all(a == Send(1, Keepalive()) for a in actions)
        assert fsm.state is State.ESTABLISHED
