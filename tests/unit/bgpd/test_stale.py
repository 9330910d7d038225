"""A gone peer's stale paths (bgpd.stale): which session ends keep them, which families, the
timers armed and cancelled. Pure decisions on one loop; the timers' effects over real sessions
are in test_llgr.py and tests/integration/test_gr_restart_bird.py, test_llgr_bird.py."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

from bgpd.codec.errors import CeaseSubcode, ErrorCode
from bgpd.codec.types import Afi, GracefulRestart, Notification, PathAttributes, prefix_from_str
from bgpd.fsm import Negotiated, SessionDown
from bgpd.gr import NOTIFICATION
from bgpd.llgr import LLGR_STALE
from bgpd.peer import Peer, fsm_config
from bgpd.peerspec import PeerSpec, SpeakerConfig
from bgpd.session import Session
from bgpd.speaker import Speaker
from bgpd.stale import STALE_PATH_TIME, StaleRoutes

CONFIG = SpeakerConfig(asn=64512, router_id="192.0.2.1")
V4 = prefix_from_str("10.0.1.0/24")[1]
V6 = prefix_from_str("2001:db8:1::/48")[1]


class Recorder:
    def __init__(self) -> None:
        self.changed: dict[int, set[bytes]] = {}
        self.flushes = 0
        self.gone: list[Peer] = []

    def mark(self, afi: int, prefixes: Iterable[bytes]) -> None:
        self.changed.setdefault(afi, set()).update(prefixes)

    def flush(self) -> None:
        self.flushes += 1

    def routes(self) -> StaleRoutes:
        return StaleRoutes(self.mark, self.flush, lambda attrs: attrs, self.gone.append)


def gone_peer(gr: GracefulRestart | None, llgr: tuple[tuple[int, int], ...] = ()) -> Peer:
    """A peer with one route per family, whose session negotiated ``gr`` and LLGR ``llgr``."""
    spec = PeerSpec(address="192.0.2.2", asn=64512, passive=True)
    owner = Speaker(CONFIG)  # never started: the session is never driven
    session = Session(spec.address, 179, fsm_config(spec, CONFIG, restarting=False), owner)
    peer = Peer(spec, session)
    peer.negotiated = Negotiated(
        peer_asn=64512, peer_router_id="192.0.2.2", hold_time=90, keepalive_time=30,
        four_octet_as=True, extended_message=False, route_refresh=True,
        families=((1, 1), (2, 1)), graceful_restart=gr, add_path_receive=frozenset(),
        add_path_send=frozenset(), peer_capabilities=(),
        notification_gr=bool(gr and gr.restart_flags & NOTIFICATION),
        long_lived_stale_families=llgr,
    )  # fmt: skip
    peer.adj_in.announce(Afi.IPV4, [V4], PathAttributes(next_hop="192.0.2.2"))
    peer.adj_in.announce(Afi.IPV6, [V6], PathAttributes(next_hop="2001:db8::2"))
    return peer


TCP_CLOSED = SessionDown("connection closed", None, None)
BOTH = ((1, 1, 0x80), (2, 1, 0x80))


async def test_tcp_close_keeps_the_gr_families_stale_and_arms_the_restart_timer() -> None:
    rec = Recorder()
    peer = gone_peer(GracefulRestart(0, 120, ((1, 1, 0x80),)))
    assert rec.routes().session_down(peer, TCP_CLOSED)
    assert peer.adj_in.stale == {Afi.IPV4: {V4}}
    assert V6 not in peer.adj_in.table(Afi.IPV6)  # not preserved: gone now
    assert rec.changed == {Afi.IPV4: {V4}, Afi.IPV6: {V6}}
    assert peer.stale_timer is not None and not peer.llgr_timers
    rec.routes().cancel(peer)
    assert peer.stale_timer.cancelled()


async def test_without_graceful_restart_nothing_is_kept() -> None:
    rec = Recorder()
    peer = gone_peer(None)
    assert not rec.routes().session_down(peer, TCP_CLOSED)
    assert not peer.adj_in.stale and peer.stale_timer is None and rec.changed == {}


async def test_hard_reset_flushes_even_under_the_n_bit() -> None:
    rec = Recorder()
    peer = gone_peer(GracefulRestart(NOTIFICATION, 120, BOTH), llgr=((1, 60),))
    hard = Notification(ErrorCode.CEASE, CeaseSubcode.HARD_RESET, bytes([6, 2]))
    assert not rec.routes().session_down(peer, SessionDown("hard reset", hard, None))
    cease = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
    assert rec.routes().session_down(peer, SessionDown("shutdown", cease, None))  # N bit
    assert peer.stale_timer is not None
    rec.routes().cancel(peer)


async def test_llgr_without_restart_time_is_long_lived_stale_at_once() -> None:
    rec = Recorder()
    peer = gone_peer(GracefulRestart(0, 0, BOTH), llgr=((1, 60),))
    assert rec.routes().session_down(peer, TCP_CLOSED)
    assert peer.stale_timer is None and set(peer.llgr_timers) == {Afi.IPV4}
    assert LLGR_STALE in peer.adj_in.table(Afi.IPV4)[V4].communities
    assert V6 not in peer.adj_in.table(Afi.IPV6)  # no LLGR for IPv6: swept
    assert rec.flushes >= 1
    handles = list(peer.llgr_timers.values())
    rec.routes().cancel(peer)
    assert not peer.llgr_timers and all(h.cancelled() for h in handles)


async def test_return_sweeps_families_no_longer_preserved_and_bounds_the_rest() -> None:
    rec = Recorder()
    stale = rec.routes()
    peer = gone_peer(GracefulRestart(0, 120, BOTH))
    assert stale.session_down(peer, TCP_CLOSED)
    first = peer.stale_timer
    rec.changed.clear()
    assert peer.negotiated is not None
    back = GracefulRestart(0, 120, ((1, 1, 0x80), (2, 1, 0)))  # IPv6 forwarding not kept
    neg = dataclasses.replace(peer.negotiated, graceful_restart=back)
    stale.sweep_unsupported(peer, neg)
    assert peer.adj_in.stale == {Afi.IPV4: {V4}} and rec.changed == {Afi.IPV6: {V6}}
    assert first is not None and first.cancelled()
    assert peer.stale_timer is not None and peer.stale_timer is not first
    delay = peer.stale_timer.when() - asyncio.get_running_loop().time()
    assert 0 < delay <= STALE_PATH_TIME
    stale.cancel(peer)
