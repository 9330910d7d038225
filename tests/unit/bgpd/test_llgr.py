"""Long-lived graceful restart (RFC 9494): the capability on the wire, the decision step, the
path conversion, and two real speakers over loopback in one event loop (short timers)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

from bgpd.codec.capabilities import decode_capability, encode_capability
from bgpd.codec.types import LongLivedGracefulRestart, PathAttributes, prefix_from_str
from bgpd.decision import LOCAL_SOURCE, PathSource, Reason, best_path
from bgpd.fsm import State
from bgpd.gr import stale_times
from bgpd.llgr import LLGR_STALE, NO_LLGR, to_long_lived
from bgpd.rib import AdjRibIn
from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig

NET = f"127.{150 + os.getpid() % 50}.{os.getpid() % 250}"
A, B = f"{NET}.1", f"{NET}.2"


def test_capability_golden_and_round_trip() -> None:
    cap = LongLivedGracefulRestart(((1, 1, 0x80, 3600), (2, 1, 0, 1)))
    wire = encode_capability(cap)
    # code 71, length 14; AFI 1 SAFI 1 flags 0x80 time 0x000e10; AFI 2 SAFI 1 flags 0 time 1
    assert wire.hex() == "470e" + "00010180000e10" + "00020100000001"
    assert decode_capability(wire[0], wire[2:]) == cap
    assert decode_capability(71, b"") == LongLivedGracefulRestart(())  # BIRD's "aware" mode


def test_stale_times_take_the_smaller_and_skip_zero() -> None:
    ours = LongLivedGracefulRestart(((1, 1, 0x80, 3600), (2, 1, 0x80, 3600)))
    theirs = LongLivedGracefulRestart(((1, 1, 0x80, 60), (2, 1, 0x80, 0)))
    assert stale_times(ours, theirs) == {1: 60}
    assert stale_times(ours, None) == {}
    assert stale_times(None, theirs) == {}


def test_long_lived_stale_loses_to_anything_else() -> None:
    peer = PathSource("192.0.2.2", 2)
    fresh = (PathAttributes(next_hop="192.0.2.3", local_pref=50), PathSource("192.0.2.3", 3))
    stale = (PathAttributes(next_hop="192.0.2.2", local_pref=200, communities=(LLGR_STALE,)), peer)
    winner, reason = best_path([stale, fresh])
    assert winner is fresh and reason == Reason.NOT_LONG_LIVED_STALE
    local = (PathAttributes(communities=(LLGR_STALE,)), LOCAL_SOURCE)
    assert best_path([local, stale])[1] == Reason.LOCAL_ORIGIN  # both stale: the usual steps


def test_conversion_tags_and_drops_no_llgr() -> None:
    adj = AdjRibIn()
    keep, drop = prefix_from_str("10.0.1.0/24")[1], prefix_from_str("10.0.2.0/24")[1]
    adj.announce(1, [keep], PathAttributes(next_hop="192.0.2.2"))
    adj.announce(1, [drop], PathAttributes(next_hop="192.0.2.2", communities=(NO_LLGR,)))
    adj.mark_stale([1])
    changed = to_long_lived(adj, 1, lambda a: a)
    assert sorted(changed) == sorted([keep, drop])
    assert adj.table(1)[keep].communities == (LLGR_STALE,)
    assert drop not in adj.table(1)
    assert adj.stale[1] == {keep}
    assert to_long_lived(adj, 1, lambda a: a) == [keep]  # tagged once
    assert adj.table(1)[keep].communities == (LLGR_STALE,)


async def settle(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_helper_keeps_a_gone_peers_routes_long_lived_then_drops_them() -> None:
    # b restarts with a 1 s restart time and a 2 s long-lived stale time: a keeps b's route
    # stale for 1 s, long-lived stale (LLGR_STALE, still the best path) for 2 s more, then not.
    a = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1", long_lived_stale_time=2))
    b = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.2", restart_time=1,
                              long_lived_stale_time=2))  # fmt: skip
    for sp in (a, b):
        await sp.start()
    block = prefix_from_str("10.244.2.0/24")[1]
    try:
        port = await b.listen(B, 0)
        a.add_peer(PeerSpec(B, 64512, port=port, source_address=A))
        b.add_peer(PeerSpec(A, 64512, passive=True))
        b.originate("10.244.2.0/24")
        await settle(lambda: block in a.loc_rib.table(1))
        neg = a.peers[B].negotiated
        assert neg is not None and neg.long_lived_stale_families == ((1, 2), (2, 2))
        await b.stop(graceful=True)  # TCP closed, no NOTIFICATION: graceful restart
        gone = time.monotonic()
        await settle(lambda: a.peers[B].session.state != State.ESTABLISHED)
        await settle(lambda: LLGR_STALE in a.loc_rib.table(1)[block].attrs.communities, 5)
        tagged = time.monotonic() - gone
        best = a.loc_rib.table(1)[block]
        assert best.stale and best.source.peer == B
        await settle(lambda: block not in a.loc_rib.table(1), 10)
        dropped = time.monotonic() - gone
        assert 0.8 < tagged < 2.0, tagged  # the 1 s restart time
        assert 2.6 < dropped < 5.0, dropped  # then the 2 s long-lived stale time
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)


async def test_reflector_sends_long_lived_stale_paths_only_to_llgr_peers() -> None:
    # r reflects for three clients: d originates a block and goes away (1 s restart time, long
    # stale time); b advertised LLGR and keeps getting the path, tagged LLGR_STALE; c did not
    # (long-lived stale time 0: no capability) and gets it withdrawn (RFC 9494 §4.3).
    r_addr, b_addr, c_addr, d_addr = (f"{NET}.{i}" for i in (11, 12, 13, 14))
    r = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.11", cluster_id="1.0.0.1"))
    b = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.12"))
    c = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.13", long_lived_stale_time=0))
    d = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.14", restart_time=1))
    speakers = (r, b, c, d)
    for sp in speakers:
        await sp.start()
    block = prefix_from_str("10.244.4.0/24")[1]
    try:
        port = await r.listen(r_addr, 0)
        for client, addr in ((b, b_addr), (c, c_addr), (d, d_addr)):
            r.add_peer(PeerSpec(addr, 64512, passive=True, rr_client=True))
            client.add_peer(PeerSpec(r_addr, 64512, port=port, source_address=addr))
        d.originate("10.244.4.0/24")
        await settle(lambda: block in b.loc_rib.table(1) and block in c.loc_rib.table(1))
        await d.stop(graceful=True)
        await settle(lambda: LLGR_STALE in r.loc_rib.table(1)[block].attrs.communities, 5)
        await settle(lambda: block not in c.loc_rib.table(1), 5)
        await settle(lambda: LLGR_STALE in b.loc_rib.table(1)[block].attrs.communities, 5)
        assert b.loc_rib.table(1)[block].attrs.next_hop == d_addr
    finally:
        for sp in speakers:
            await sp.stop(graceful=False)
