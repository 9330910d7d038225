"""A gone peer's stale paths and the timers that end them (RFC 4724 §4.2, RFC 9494 §4.2).

When a session ends in a way graceful restart covers (:func:`bgpd.gr.keeps_routes`,
:func:`bgpd.gr.ends_gracefully`), the peer's paths stay in its Adj-RIB-In marked stale:

- for the peer's GR Restart Time; then, for the families both sides advertised LLGR for, they
  become long-lived stale (:func:`bgpd.llgr.to_long_lived`) for the Long-lived Stale Time, and
  the others go;
- with no Restart Time (LLGR alone), long-lived stale at once;
- when the peer comes back, what is still stale waits for its End-of-RIB (swept by the
  speaker), at most ``STALE_PATH_TIME``; families the peer no longer preserves go at once.

:class:`StaleRoutes` is the only code that arms or cancels a peer's ``stale_timer`` and
``llgr_timers``; the speaker owns the RIBs and is told which prefixes to decide again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from bgpd.codec.types import Afi
from bgpd.fsm import Negotiated, SessionDown
from bgpd.gr import ends_gracefully, keeps_routes
from bgpd.llgr import Intern, to_long_lived
from bgpd.peer import Peer

log = logging.getLogger("podbgp.speaker")

STALE_PATH_TIME = 360.0  # how long stale paths may wait for End-of-RIB after the peer returns

Changed = Callable[[int, Iterable[bytes]], None]


class StaleRoutes:
    """``changed(afi, prefixes)``: these prefixes need deciding again; ``flush()``: decide soon;
    ``gone(peer)``: the peer holds no stale paths any more (a dynamic peer may go)."""

    def __init__(
        self,
        changed: Changed,
        flush: Callable[[], None],
        intern: Intern,
        gone: Callable[[Peer], None],
    ) -> None:
        self._changed = changed
        self._flush = flush
        self._intern = intern
        self._gone = gone

    def session_down(self, peer: Peer, event: SessionDown) -> bool:
        """Keep the peer's paths stale if the session's end allows it; False: none are kept
        (the caller clears the Adj-RIB-In)."""
        neg = peer.negotiated
        gr = neg.graceful_restart if neg is not None else None
        n_bit = neg is not None and neg.notification_gr
        graceful = keeps_routes(gr, n_bit, event.sent, event.received)
        covered = ends_gracefully(n_bit, event.sent, event.received)
        llgr = dict(neg.long_lived_stale_families) if neg is not None and covered else {}
        log.info(
            "peer=%s event=down reason=%s graceful=%s llgr=%s",
            peer.session.address, event.reason, graceful, bool(llgr),
        )  # fmt: skip
        self.cancel_llgr(peer)
        if not (graceful or llgr):
            return False
        families = set(llgr)
        if graceful and gr is not None:
            families |= {afi for afi, _safi, _flags in gr.families} or {Afi.IPV4}
        peer.adj_in.mark_stale(families)
        for afi in list(peer.adj_in.routes):
            if afi not in families:
                self._changed(afi, peer.adj_in.clear(afi))
        for afi in families:
            self._changed(afi, peer.adj_in.prefixes(afi))  # re-decide: now stale
        peer.llgr_times = llgr
        if graceful and gr is not None:
            self._arm_stale_timer(peer, gr.restart_time)
        else:
            self._enter_llgr(peer)  # no GR Restart Time: long-lived stale at once
        return True

    def sweep_unsupported(self, peer: Peer, neg: Negotiated) -> None:
        """On re-establishment, drop stale paths of families the peer no longer preserves."""
        if not peer.adj_in.stale:
            return
        gr = neg.graceful_restart
        kept = {afi for afi, _s, flags in gr.families if flags & 0x80} if gr else set()
        kept |= {afi for afi, _time in neg.long_lived_stale_families}
        for afi in list(peer.adj_in.stale):
            if afi not in kept:
                self._changed(afi, peer.adj_in.sweep_stale(afi))
        if peer.adj_in.stale:
            self._arm_stale_timer(peer, STALE_PATH_TIME)
        self._flush()

    def cancel(self, peer: Peer) -> None:
        """The peer is stopped or removed: no timer of its may fire."""
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
        self.cancel_llgr(peer)

    @staticmethod
    def cancel_llgr(peer: Peer) -> None:
        peer.llgr_times = {}
        for handle in peer.llgr_timers.values():
            handle.cancel()
        peer.llgr_timers.clear()

    # --- graceful restart (RFC 4724 §4.2) ---------------------------------------------------

    def _arm_stale_timer(self, peer: Peer, delay: float) -> None:
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
        loop = asyncio.get_running_loop()
        peer.stale_timer = loop.call_later(delay, self._stale_timer_fired, peer)

    def _stale_timer_fired(self, peer: Peer) -> None:
        peer.stale_timer = None
        if peer.llgr_times:
            self._enter_llgr(peer)  # RFC 9494 §4.2: the restart time is over, LLST begins
            return
        for afi in list(peer.adj_in.stale):
            log.info("peer=%s event=stale-expired afi=%d", peer.spec.address, afi)
            self._changed(afi, peer.adj_in.sweep_stale(afi))
        self._flush()
        self._gone(peer)

    # --- long-lived graceful restart (RFC 9494) ---------------------------------------------

    def _enter_llgr(self, peer: Peer) -> None:
        """Stale paths of LLGR families become long-lived stale; the others go."""
        times, peer.llgr_times = peer.llgr_times, {}
        loop = asyncio.get_running_loop()
        for afi in list(peer.adj_in.stale):
            if afi in times:
                log.info(
                    "peer=%s event=long-lived-stale afi=%d time=%ds",
                    peer.spec.address, afi, times[afi],
                )  # fmt: skip
                self._changed(afi, to_long_lived(peer.adj_in, afi, self._intern))
                peer.llgr_timers[afi] = loop.call_later(times[afi], self._llgr_expired, peer, afi)
            else:
                self._changed(afi, peer.adj_in.sweep_stale(afi))
        self._flush()

    def _llgr_expired(self, peer: Peer, afi: int) -> None:
        peer.llgr_timers.pop(afi, None)
        log.info("peer=%s event=long-lived-stale-expired afi=%d", peer.spec.address, afi)
        self._changed(afi, peer.adj_in.sweep_stale(afi))
        self._flush()
        self._gone(peer)
