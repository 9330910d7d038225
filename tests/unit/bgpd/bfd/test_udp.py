"""The BFD driver's demultiplexing and checks, without the network: a fake socket factory
records what the endpoint binds, sets and sends, and datagrams are handed to the endpoint as
its receive path would (source, destination address, TTL, port). The event loop is never run,
so no timer fires: every effect below comes from the datagram itself."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from bgpd.bfd.packet import ControlPacket, Diag, State, decode, encode
from bgpd.bfd.udp import (
    IP_PKTINFO,
    IPV6_HOPLIMIT,
    IPV6_PKTINFO,
    MULTIHOP_PORT,
    SINGLE_HOP_PORT,
    SOURCE_PORT_MAX,
    SOURCE_PORT_MIN,
    BfdEndpoint,
    _ancillary,
)
from bgpd.bfd.views import BfdStateChange

PEER, LOCAL = "192.0.2.2", "192.0.2.1"


class FakeSocket:
    """Enough of a UDP socket for the endpoint; a real fd so the loop can watch it."""

    def __init__(self, family: int, kind: int) -> None:
        self.family, self.kind = family, kind
        self._pair = socket.socketpair()
        self.options: dict[tuple[int, int], int] = {}
        self.bound: tuple[Any, ...] | None = None
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def setsockopt(self, level: int, name: int, value: int) -> None:
        self.options[(level, name)] = value

    def bind(self, address: tuple[Any, ...]) -> None:
        self.bound = address

    def setblocking(self, flag: bool) -> None:
        pass

    def fileno(self) -> int:
        return self._pair[0].fileno()

    def sendto(self, data: bytes, address: tuple[str, int]) -> int:
        self.sent.append((data, address))
        return len(data)

    def close(self) -> None:
        for s in self._pair:
            s.close()


class Harness:
    def __init__(self, multihop_max_hops: int | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.sockets: list[FakeSocket] = []
        self.changes: list[BfdStateChange] = []
        self.ep = BfdEndpoint(
            socket_factory=self._make,  # type: ignore[arg-type]
            multihop_max_hops=multihop_max_hops,
            loop=self.loop,
        )

    def _make(self, family: int, kind: int) -> FakeSocket:
        sock = FakeSocket(family, kind)
        self.sockets.append(sock)
        return sock

    @property
    def sender(self) -> FakeSocket:
        (sock,) = [s for s in self.sockets if s.bound and s.bound[1] >= SOURCE_PORT_MIN]
        return sock

    def add(self, multihop: bool = False) -> None:
        self.ep.add_session(PEER, LOCAL, multihop=multihop, on_state=self.changes.append)

    def feed(
        self,
        packet: ControlPacket | bytes,
        *,
        src: str = PEER,
        dst: str | None = LOCAL,
        ttl: int | None = 255,
        multihop_port: bool = False,
    ) -> None:
        data = packet if isinstance(packet, bytes) else encode(packet)
        self.ep._on_datagram(data, src, dst, ttl, multihop_port)

    def close(self) -> None:
        self.ep.close()
        self.loop.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


HELLO = ControlPacket(State.DOWN, my_discriminator=0x42)


def test_sockets_ports_and_ttl(h: Harness) -> None:
    h.add()
    listeners = sorted(s.bound[1] for s in h.sockets if s.bound and s.bound[1] < 5000)  # type: ignore[index]
    assert listeners == [SINGLE_HOP_PORT, MULTIHOP_PORT]
    sender = h.sender
    assert sender.bound is not None and sender.bound[0] == LOCAL
    assert SOURCE_PORT_MIN <= sender.bound[1] <= SOURCE_PORT_MAX
    assert sender.options[(socket.IPPROTO_IP, socket.IP_TTL)] == 255
    for listener in (s for s in h.sockets if s is not sender):
        assert listener.options[(socket.IPPROTO_IP, IP_PKTINFO)] == 1


def test_first_packet_found_by_address_and_answered(h: Harness) -> None:
    h.add()
    h.feed(HELLO)
    (view,) = h.ep.snapshot()
    assert view.state == State.INIT and view.remote_discriminator == 0x42
    assert [(c.old, c.new) for c in h.changes] == [(State.DOWN, State.INIT)]
    data, address = h.sender.sent[-1]
    assert address == (PEER, SINGLE_HOP_PORT)
    reply = decode(data)
    assert (reply.state, reply.your_discriminator) == (State.INIT, 0x42)


def test_later_packets_found_by_your_discriminator(h: Harness) -> None:
    h.add()
    h.feed(HELLO)
    (view,) = h.ep.snapshot()
    h.feed(ControlPacket(State.INIT, 0x42, view.local_discriminator), dst=None)
    assert h.ep.snapshot()[0].state == State.UP


def test_discriminator_from_another_source_is_refused(h: Harness) -> None:
    h.add()
    h.feed(HELLO)
    (view,) = h.ep.snapshot()
    h.feed(ControlPacket(State.INIT, 0x42, view.local_discriminator), src="192.0.2.99")
    assert h.ep.snapshot()[0].state == State.INIT
    assert h.ep.dropped_unknown == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"src": "192.0.2.99"},  # nobody configured there
        {"dst": "192.0.2.77"},  # arrived on another local address
    ],
)
def test_packets_for_no_session_are_counted(h: Harness, kwargs: dict[str, Any]) -> None:
    h.add()
    h.feed(HELLO, **kwargs)
    assert h.ep.dropped_unknown == 1
    assert h.ep.snapshot()[0].packets_received == 0


def test_unknown_your_discriminator_and_garbage_are_counted(h: Harness) -> None:
    h.add()
    h.feed(ControlPacket(State.UP, 0x42, 0x1234))
    h.feed(b"\x00" * 24)
    assert h.ep.dropped_unknown == 2


def test_single_hop_requires_ttl_255(h: Harness) -> None:
    h.add()
    h.feed(HELLO, ttl=254)
    h.feed(HELLO, ttl=None)
    (view,) = h.ep.snapshot()
    assert view.packets_dropped == 2 and view.state == State.DOWN


@pytest.mark.parametrize(
    ("max_hops", "ttl", "accepted"),
    [(None, 1, True), (2, 253, True), (2, 252, False), (1, 254, True), (1, 253, False)],
)
def test_multihop_ttl_rule(max_hops: int | None, ttl: int, accepted: bool) -> None:
    h = Harness(max_hops)
    try:
        h.add(multihop=True)
        h.feed(HELLO, ttl=ttl, multihop_port=True)
        (view,) = h.ep.snapshot()
        assert (view.state == State.INIT) is accepted
        assert view.packets_dropped == (0 if accepted else 1)
    finally:
        h.close()


@pytest.mark.parametrize("configured_multihop", [False, True])
def test_peer_on_the_other_port_is_served_there(h: Harness, configured_multihop: bool) -> None:
    h.add(multihop=configured_multihop)
    other = not configured_multihop
    h.feed(HELLO, multihop_port=other)
    (view,) = h.ep.snapshot()
    expected = MULTIHOP_PORT if other else SINGLE_HOP_PORT
    assert view.port == expected and view.multihop == configured_multihop
    assert view.state == State.INIT
    assert h.sender.sent[-1][1] == (PEER, expected)


def test_remove_session_says_admin_down(h: Harness) -> None:
    h.add()
    h.feed(HELLO)
    h.ep.remove_session(PEER, LOCAL, multihop=False)
    last = decode(h.sender.sent[-1][0])
    assert (last.state, last.diag) == (State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)
    assert h.ep.snapshot() == []
    with pytest.raises(KeyError):
        h.ep.remove_session(PEER, LOCAL, multihop=False)


def test_adding_again_changes_intervals_with_a_poll(h: Harness) -> None:
    h.add()
    h.feed(HELLO)
    sent = len(h.sender.sent)
    h.ep.add_session(PEER, LOCAL, multihop=False, min_tx_ms=500, on_state=h.changes.append)
    assert len(h.sender.sent) == sent  # not Up: TX stays at the slow 1 s, nothing to tell
    h.ep.add_session(PEER, LOCAL, multihop=False, min_rx_ms=500, on_state=h.changes.append)
    assert len(h.ep.snapshot()) == 1
    last = decode(h.sender.sent[-1][0])
    assert last.poll and last.required_min_rx_us == 500_000
    assert last.desired_min_tx_us == 1_000_000


def test_address_families_must_match(h: Harness) -> None:
    with pytest.raises(ValueError):
        h.ep.add_session("2001:db8::2", LOCAL, multihop=False, on_state=h.changes.append)


def test_ancillary_data_ipv4_and_ipv6() -> None:
    pktinfo4 = struct.pack("=i4s4s", 3, socket.inet_aton("10.0.0.9"), socket.inet_aton(LOCAL))
    anc4 = [
        (socket.IPPROTO_IP, socket.IP_TTL, struct.pack("=i", 255)),
        (socket.IPPROTO_IP, IP_PKTINFO, pktinfo4),
    ]
    assert _ancillary(anc4, socket.AF_INET) == (255, LOCAL)
    pktinfo6 = socket.inet_pton(socket.AF_INET6, "2001:db8:0::1") + struct.pack("=I", 3)
    anc6 = [
        (socket.IPPROTO_IPV6, IPV6_HOPLIMIT, struct.pack("=i", 64)),
        (socket.IPPROTO_IPV6, IPV6_PKTINFO, pktinfo6),
    ]
    assert _ancillary(anc6, socket.AF_INET6) == (64, "2001:db8::1")
    assert _ancillary([], socket.AF_INET) == (None, None)
