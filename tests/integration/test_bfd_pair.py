"""Two podbgp BFD endpoints in two network namespaces: the asyncio driver on the caller's loop
and on its own thread, callbacks delivered on the caller's loop, the TTL (IPv6: hop limit) 255 check
(RFC 5881 §5), and a busy main loop that does not flap a threaded 100 ms x 3 session."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bgpd.bfd.packet import ControlPacket, State, encode
from bgpd.bfd.thread import ThreadedBfdEndpoint
from bgpd.bfd.udp import IPV6_FREEBIND, IPV6_UNICAST_HOPS, SINGLE_HOP_PORT, BfdEndpoint
from bgpd.bfd.views import BfdSessionView, BfdStateChange
from tests.integration.interop import PODBGP_V4, PODBGP_V6, ROUTER_V4, ROUTER_V6, two_namespaces
from tests.support.netns import NetnsFactory, netns_socket

pytestmark = [pytest.mark.netns]

A, B = PODBGP_V4, ROUTER_V4
FAST = {"min_tx_ms": 100, "min_rx_ms": 100, "multiplier": 3}
UP_TIMEOUT_S = 15.0


@pytest.fixture
def pair(netns_factory: NetnsFactory) -> tuple[str, str]:
    return two_namespaces(netns_factory)


@pytest.fixture
def threaded(pair: tuple[str, str]) -> Iterator[tuple[ThreadedBfdEndpoint, ThreadedBfdEndpoint]]:
    ns_a, ns_b = pair
    eps = [
        ThreadedBfdEndpoint(socket_factory=functools.partial(netns_socket, ns), name=f"bfd-{i}")
        for i, ns in enumerate((ns_a, ns_b))
    ]
    try:
        for ep in eps:
            ep.start()
        yield eps[0], eps[1]
    finally:
        for ep in eps:
            ep.close()


async def wait_state(
    snapshot: Callable[[], list[BfdSessionView]], state: State, timeout: float = UP_TIMEOUT_S
) -> BfdSessionView:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = snapshot()
        if views and views[0].state == state:
            return views[0]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"BFD session not {state.name} within {timeout}s")


async def test_endpoints_on_the_callers_loop(pair: tuple[str, str]) -> None:
    ns_a, ns_b = pair
    ep_a = BfdEndpoint(socket_factory=functools.partial(netns_socket, ns_a))
    ep_b = BfdEndpoint(socket_factory=functools.partial(netns_socket, ns_b))
    changes: list[BfdStateChange] = []
    try:
        ep_a.add_session(B, A, multihop=False, on_state=changes.append, **FAST)
        ep_b.add_session(A, B, multihop=False, on_state=lambda c: None, **FAST)
        view = await wait_state(ep_a.snapshot, State.UP)
        assert view.port == SINGLE_HOP_PORT
        await asyncio.sleep(0.5)  # the Up poll completes: fast intervals negotiated
        (view,) = ep_a.snapshot()
        assert (view.tx_interval_ms, view.detect_time_ms) == (100, 300)
        assert view.remote_discriminator == ep_b.snapshot()[0].local_discriminator
        assert view.packets_received > 0 and view.packets_sent > 0
        assert view.up_since is not None and abs(view.up_since - time.time()) < 60

        ep_b.remove_session(A, B, multihop=False)  # B says AdminDown on its way out
        view = await wait_state(ep_a.snapshot, State.DOWN, 3.0)
        assert changes[-1].new == State.DOWN
        assert changes[-1].diag.name == "NEIGHBOR_SIGNALED_DOWN"
        assert changes[-1].remote_diag.name == "ADMINISTRATIVELY_DOWN"
    finally:
        ep_a.close()
        ep_b.close()


async def test_threaded_callbacks_arrive_on_the_callers_loop(pair: tuple[str, str]) -> None:
    ns_a, ns_b = pair
    loop_thread = threading.get_ident()
    got: list[tuple[int, BfdStateChange]] = []
    # Started inside this coroutine: state changes are handed to this loop.
    a = ThreadedBfdEndpoint(socket_factory=functools.partial(netns_socket, ns_a)).start()
    b = ThreadedBfdEndpoint(socket_factory=functools.partial(netns_socket, ns_b)).start()
    try:
        a.add_session(
            B, A, multihop=False, on_state=lambda c: got.append((threading.get_ident(), c)),
            **FAST,
        )  # fmt: skip
        b.add_session(A, B, multihop=False, on_state=lambda c: None, **FAST)
        await wait_state(a.snapshot, State.UP)
        await asyncio.sleep(0.1)
        assert [c.new for _, c in got][-1] == State.UP
        assert {tid for tid, _ in got} == {loop_thread}
    finally:
        a.close()
        b.close()


def test_busy_main_thread_does_not_flap_a_threaded_session(
    threaded: tuple[ThreadedBfdEndpoint, ThreadedBfdEndpoint],
) -> None:
    ep_a, ep_b = threaded
    changes: list[BfdStateChange] = []
    ep_a.add_session(B, A, multihop=False, on_state=changes.append, **FAST)
    ep_b.add_session(A, B, multihop=False, on_state=changes.append, **FAST)
    deadline = time.monotonic() + UP_TIMEOUT_S
    while not all(ep.snapshot()[0].state == State.UP for ep in (ep_a, ep_b)):
        assert time.monotonic() < deadline, "BFD pair did not come Up"
        time.sleep(0.05)
    time.sleep(0.5)  # Up poll done
    before = len(changes)
    # Pure-Python CPU work on this thread for 3 s (10 detection times): the BFD threads get
    # the GIL at every switch interval, so their 100 ms timers still fire.
    end, spins = time.monotonic() + 3.0, 0
    while time.monotonic() < end:
        sum(i * i for i in range(1000))
        spins += 1
    assert spins > 0
    assert changes[before:] == []
    for ep in (ep_a, ep_b):
        (view,) = ep.snapshot()
        assert view.state == State.UP and view.flaps == 0


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4-ttl", "ipv6-hop-limit"])
async def test_single_hop_packet_with_ttl_below_255_is_dropped(
    pair: tuple[str, str], v6: bool
) -> None:
    ns_a, ns_b = pair
    a, b = (PODBGP_V6, ROUTER_V6) if v6 else (A, B)
    family = socket.AF_INET6 if v6 else socket.AF_INET
    level, ttl_option = (
        (socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS) if v6 else (socket.IPPROTO_IP, socket.IP_TTL)
    )
    ep = BfdEndpoint(socket_factory=functools.partial(netns_socket, ns_a))
    try:
        ep.add_session(b, a, multihop=False, on_state=lambda c: None, **FAST)
        probe = netns_socket(ns_b, family, socket.SOCK_DGRAM)
        with probe:
            if v6:  # the address may still be tentative (duplicate address detection)
                probe.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            probe.bind((b, 0))
            down = encode(ControlPacket(State.DOWN, my_discriminator=0x42))
            probe.setsockopt(level, ttl_option, 254)
            probe.sendto(down, (a, SINGLE_HOP_PORT))
            await asyncio.sleep(0.3)
            (view,) = ep.snapshot()
            assert view.packets_dropped == 1 and view.packets_received == 0
            assert view.state == State.DOWN and view.remote_discriminator == 0

            probe.setsockopt(level, ttl_option, 255)
            probe.sendto(down, (a, SINGLE_HOP_PORT))
            await asyncio.sleep(0.3)
            (view,) = ep.snapshot()
            assert view.packets_received == 1
            assert view.state == State.INIT and view.remote_discriminator == 0x42
    finally:
        ep.close()


async def test_blocked_loop_flaps_an_unthreaded_session(
    pair: tuple[str, str], threaded: tuple[ThreadedBfdEndpoint, ThreadedBfdEndpoint]
) -> None:
    """Why the thread exists: a loop blocked for 1 s starves a same-loop 100 ms x 3 session."""
    ns_a, _ns_b = pair
    _unused, ep_b = threaded
    ep_b_changes: list[BfdStateChange] = []
    ep_a = BfdEndpoint(socket_factory=functools.partial(netns_socket, ns_a))
    try:
        ep_a.add_session(B, A, multihop=False, on_state=lambda c: None, **FAST)
        ep_b.add_session(A, B, multihop=False, on_state=ep_b_changes.append, **FAST)
        await wait_state(ep_b.snapshot, State.UP)
        await asyncio.sleep(0.5)
        time.sleep(1.0)  # the loop is blocked: ep_a neither sends nor answers
        await wait_state(ep_b.snapshot, State.UP)  # it recovers once the loop runs again
        assert [c.new for c in ep_b_changes].count(State.DOWN) >= 1
        assert ep_b.snapshot()[0].flaps >= 1
    finally:
        ep_a.close()
