"""Selection deferral after our restart (RFC 4724 §4.1), with real speakers over loopback in one
event loop: the restarting speaker sets the R bit and sends its table only after End-of-RIB from
every peer (peers restarting too are not waited for) or after the deferral timer."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from bgpd.codec.types import GracefulRestart
from bgpd.deferral import peer_done
from bgpd.fsm import Negotiated, State
from bgpd.gr import NOTIFICATION, RESTART_STATE
from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig

NET = f"127.{100 + os.getpid() % 50}.{os.getpid() % 250}"
A, B, C = f"{NET}.1", f"{NET}.2", f"{NET}.3"


async def settle(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def neg(flags: int | None, families: tuple[tuple[int, int], ...] = ((1, 1),)) -> Negotiated:
    graceful = None if flags is None else GracefulRestart(flags, 120, ())
    return Negotiated(64512, "192.0.2.9", 90, 30, True, False, True, families, graceful,
                      frozenset(), frozenset(), ())  # fmt: skip


def test_which_peers_hold_up_the_selection() -> None:
    assert not peer_done(False, None, set())  # not up yet: wait (the timer bounds it)
    assert not peer_done(True, neg(NOTIFICATION), set())  # up, no End-of-RIB yet
    assert peer_done(True, neg(NOTIFICATION), {(1, 1)})
    assert not peer_done(True, neg(0, ((1, 1), (2, 1))), {(1, 1)})  # every family's EoR
    assert peer_done(True, neg(None), set())  # no graceful restart: no EoR to expect
    assert peer_done(True, neg(RESTART_STATE), set())  # restarting too: would deadlock


def pair(restarting: bool, deferral: float) -> tuple[Speaker, Speaker]:
    a = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"), restarting=restarting,
                selection_deferral_time=deferral)  # fmt: skip
    b = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.2"))
    return a, b


async def test_restarting_speaker_sends_its_table_after_the_peers_end_of_rib() -> None:
    a, b = pair(restarting=True, deferral=30)
    for sp in (a, b):
        await sp.start()
    try:
        port = await b.listen(B, 0)
        a.add_peer(PeerSpec(B, 64512, port=port, source_address=A))
        b.add_peer(PeerSpec(A, 64512, passive=True))
        a.originate("10.244.1.0/24")
        b.originate("10.244.2.0/24")
        await settle(lambda: a.peers[B].session.state == State.ESTABLISHED)
        # Our OPEN carried the R bit; b's End-of-RIB ends the deferral long before the timer.
        b_neg = b.peers[A].negotiated
        assert b_neg is not None and b_neg.graceful_restart is not None
        assert b_neg.graceful_restart.restart_flags & RESTART_STATE
        await settle(lambda: b.loc_rib.count() == 2 and a.loc_rib.count() == 2)
        assert not a.deferral.active and a.deferral.reason == "End-of-RIB from every peer"
        # New OPENs no longer carry the R bit.
        caps = a.peers[B].session.fsm.config.capabilities
        (cap,) = [c for c in caps if isinstance(c, GracefulRestart)]
        assert not cap.restart_flags & RESTART_STATE
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)


async def test_a_missing_peer_holds_the_table_until_the_deferral_timer() -> None:
    a, b = pair(restarting=True, deferral=1.5)
    for sp in (a, b):
        await sp.start()
    try:
        port = await b.listen(B, 0)
        started = time.monotonic()
        a.add_peer(PeerSpec(B, 64512, port=port, source_address=A))
        a.add_peer(PeerSpec(C, 64512, passive=True))  # never comes
        b.add_peer(PeerSpec(A, 64512, passive=True))
        a.originate("10.244.1.0/24")
        await settle(lambda: a.peers[B].session.state == State.ESTABLISHED)
        await asyncio.sleep(0.5)
        assert a.deferral.active
        assert b.loc_rib.count() == 0  # nothing advertised while deferring
        await settle(lambda: b.loc_rib.count() == 1)
        assert time.monotonic() - started >= 1.4
        assert a.deferral.reason == "deferral timer expired"
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)


async def test_not_restarting_sends_at_once() -> None:
    a, b = pair(restarting=False, deferral=30)
    for sp in (a, b):
        await sp.start()
    try:
        port = await b.listen(B, 0)
        a.add_peer(PeerSpec(B, 64512, port=port, source_address=A))
        a.add_peer(PeerSpec(C, 64512, passive=True))
        b.add_peer(PeerSpec(A, 64512, passive=True))
        a.originate("10.244.1.0/24")
        await settle(lambda: b.loc_rib.count() == 1, 5)
        b_neg = b.peers[A].negotiated
        assert b_neg is not None and b_neg.graceful_restart is not None
        assert not b_neg.graceful_restart.restart_flags & RESTART_STATE
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)
