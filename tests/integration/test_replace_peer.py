"""A peer whose settings change gets a new session without its routes leaving the Loc-RIB.

Two real speakers in one process, real TCP on loopback. ``b`` originates a block; ``a`` learns
it. Then ``a`` replaces its peer ``b`` with new settings (another hold time, as the node agent
does when a node's AS, type or timers change): with graceful restart negotiated, ``a`` keeps
``b``'s path stale until the new session's End-of-RIB, and ``b`` — seeing only the TCP
connection close — keeps ``a``'s, so neither side ever reports the other's block withdrawn.
Without graceful restart the path goes with the old session (the control: the test can see a
withdrawal when there is one).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Callable

from bgpd.events import BestRouteChange, SpeakerEvent
from bgpd.fsm_types import State
from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig

NET = f"127.{100 + os.getpid() % 100}.{(os.getpid() + 57) % 200}"
A, B = f"{NET}.1", f"{NET}.2"
ASN = 64512
BLOCK_A, BLOCK_B = "10.244.1.0/24", "10.244.2.0/24"


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def history(speaker: Speaker) -> list[tuple[str, str | None]]:
    """Every best-route change the speaker publishes: (prefix, next hop or None)."""
    seen: list[tuple[str, str | None]] = []

    def sink(event: SpeakerEvent) -> None:
        if isinstance(event, BestRouteChange):
            seen.append((event.prefix, event.next_hop))

    speaker.subscribe(sink)
    return seen


async def replace_once(graceful: bool) -> tuple[list[tuple[str, str | None]], ...]:
    """Bring a and b up, replace a's peer b, wait until the new session carries b's block
    again; every best-route change of a and of b."""
    config = {"asn": ASN, "graceful_restart": graceful, "restart_time": 30}
    a = Speaker(SpeakerConfig(router_id=A, **config))  # type: ignore[arg-type]
    b = Speaker(SpeakerConfig(router_id=B, **config))  # type: ignore[arg-type]
    seen_a, seen_b = history(a), history(b)
    await a.start()
    await b.start()
    try:
        port = await b.listen(B, 0)
        await a.listen(A, port)
        spec = PeerSpec(address=B, asn=ASN, port=port, source_address=A, hold_time=9)
        a.add_peer(spec)
        b.add_peer(PeerSpec(address=A, asn=ASN, port=port, source_address=B, passive=True))
        a.originate(BLOCK_A)
        b.originate(BLOCK_B)
        await until(lambda: (BLOCK_B, B) in seen_a and (BLOCK_A, A) in seen_b, 20, "routes")
        old_session = a.peers[B].session
        a.replace_peer(dataclasses.replace(spec, hold_time=12))
        stale = sum(len(s) for s in a.peers[B].adj_in.stale.values())
        assert a.peers[B].session is not old_session
        assert a.peers[B].session.fsm.config.hold_time == 12

        def refreshed() -> bool:
            peer = a.peers[B]
            return (
                peer.session.state == State.ESTABLISHED
                and (bool(peer.eor_received) or not graceful)  # End-of-RIB comes with GR
                and not peer.adj_in.stale
                and seen_a[-1] == (BLOCK_B, B)
            )

        await until(refreshed, 20, "the new session with b's block")
        await asyncio.sleep(0.3)  # a late withdrawal would show here
        assert stale == (1 if graceful else 0), "with graceful restart b's one path is kept stale"
        return list(seen_a), list(seen_b)  # before the stop below withdraws everything
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)


async def test_replaced_peer_keeps_routes_with_graceful_restart() -> None:
    seen_a, seen_b = await replace_once(graceful=True)
    print(f"\na's changes: {seen_a}\nb's changes: {seen_b}")
    assert (BLOCK_B, None) not in seen_a, "a withdrew b's block while replacing the session"
    assert (BLOCK_A, None) not in seen_b, "b withdrew a's block when a replaced its session"


async def test_replaced_peer_without_graceful_restart_loses_routes() -> None:
    seen_a, _seen_b = await replace_once(graceful=False)
    assert (BLOCK_B, None) in seen_a, "without graceful restart the old session's paths go"
    assert seen_a[-1] == (BLOCK_B, B), "and come back with the new session"
