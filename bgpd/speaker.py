"""The speaker: the one task that owns every RIB, and the peers it exchanges routes with.

Data flow: sessions put (peer, generation, UPDATE) into a bounded inbox → ``_apply_update`` changes
the peer's Adj-RIB-In → ``LocRib.decide`` runs the decision process for the touched prefixes →
changed Loc-RIB entries go to every update group (``bgpd.export``) → subscribers receive typed
events (``bgpd.events``: best-route changes, End-of-RIB). Session up/down events are applied on the
loop directly; each UPDATE carries the session generation so a late UPDATE from a session that has
since gone down is dropped.

The speaker owns the peers (add, remove, dynamic peers from ranges) and the RIBs; what acts on
one peer alone is :mod:`bgpd.peer`, what the policy settings make of each session and of a
received path :mod:`bgpd.session_policy`, a gone peer's stale paths and their timers
:mod:`bgpd.stale`, the listening sockets :mod:`bgpd.listener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from collections.abc import Iterable, Sequence

from bgpd import shutdown, tcp
from bgpd.bfd.peering import BfdPeering, BfdSettings, ManagerFactory
from bgpd.bfd.thread import ThreadedBfdEndpoint
from bgpd.bfd.views import BfdStateChange
from bgpd.bgpfilter import BGPFilter
from bgpd.bgpfilter_eval import Verdict
from bgpd.codec.types import (
    Afi,
    Message,
    PathAttributes,
    RouteRefresh,
    Safi,
    Update,
    prefix_from_str,
)
from bgpd.decision import PathSource
from bgpd.deferral import SelectionDeferral
from bgpd.events import EndOfRib, EventSink, SpeakerEvent, best_route_changes, one_by_one
from bgpd.export import Exporter
from bgpd.fsm import FsmConfig, Negotiated, SessionDown, State
from bgpd.import_rib import FilteredAdjRibIn
from bgpd.listener import Listener
from bgpd.nexthop import received_next_hop
from bgpd.peer import Peer as Peer  # re-exported: callers read peers here
from bgpd.peer import (
    cancel_limit_timer,
    check_prefix_limit,
    end_limit_hold,
    establish,
    fsm_config,
    own_next_hop,
    release_limit_hold,
)
from bgpd.peerspec import PeerRange as PeerRange  # re-exported: callers build peers here
from bgpd.peerspec import PeerSpec as PeerSpec
from bgpd.peerspec import SpeakerConfig as SpeakerConfig
from bgpd.policy import local_path
from bgpd.policy_filters import SessionFilters
from bgpd.prefix_limit import PrefixLimitState
from bgpd.rib import LocRib, Run, eligible_paths, take_chunk, take_runs
from bgpd.session import Session
from bgpd.session_policy import SessionPolicies
from bgpd.stale import StaleRoutes

log = logging.getLogger("podbgp.speaker")

SELECTION_DEFERRAL_TIME = 60.0  # RFC 4724 §4.1 leaves it to configuration
INBOX_SIZE = 512
FLUSH_CHUNK = 4096  # prefixes per family decided and exported in one step
RIB_SLICE = 0.002  # seconds one apply-decide-export run may hold the loop (see _run)


def threaded_bfd() -> ThreadedBfdEndpoint:
    """The default BFD endpoint: its own thread, so a busy speaker loop cannot flap it."""
    return ThreadedBfdEndpoint().start()


class Speaker:
    def __init__(
        self,
        config: SpeakerConfig,
        *,
        bfd: ManagerFactory = threaded_bfd,
        restarting: bool = False,
        selection_deferral_time: float = SELECTION_DEFERRAL_TIME,
    ) -> None:
        """``restarting``: we restarted with forwarding state kept (RFC 4724 §4.1): OPENs carry
        the Restart State bit and our table goes out only after End-of-RIB from every peer, or
        after ``selection_deferral_time`` seconds (see :mod:`bgpd.deferral`)."""
        self.config = config
        self.bfd = BfdPeering(bfd, self._bfd_down)
        self.deferral = SelectionDeferral(restarting, selection_deferral_time, self._deferral_over)
        self.peers: dict[str, Peer] = {}
        self.loc_rib = LocRib()
        self.originated: dict[int, dict[bytes, PathAttributes]] = {}
        self.exporter = Exporter(self.loc_rib, self.paths_for, config.router_id)
        self.stale = StaleRoutes(
            self._mark_dirty, self._schedule_flush, self.exporter.intern, self._drop_dynamic
        )
        self._subscribers: list[EventSink] = []
        self.started = time.time()
        self._inbox: asyncio.Queue[tuple[Peer, int, Message, float]] = asyncio.Queue(INBOX_SIZE)
        self._received: float | None = None  # when the oldest UPDATE not yet flushed arrived
        self._dirty: dict[int, set[bytes]] = {}
        self._runs: dict[int, list[Run]] = {}  # new to an Adj-RIB-In since the last flush
        self.listener = Listener(self._session_for)
        self.peer_ranges: list[PeerRange] = []
        self._task: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self.policies = SessionPolicies(lambda: self.config, self.exporter.intern)
        self.draining = False  # RFC 8326: our routes carry GRACEFUL_SHUTDOWN

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="speaker")
        self.deferral.start()

    async def listen(self, address: str, port: int) -> int:
        """Accept connections on ``address``:``port`` (0: any free port); returns the port."""
        keys = [(p.spec.address, p.spec.password) for p in self.peers.values() if p.spec.password]
        port = await self.listener.listen(address, port, keys, self.peer_ranges)
        self._listener_gtsm()
        return port

    def _listener_gtsm(self) -> None:
        hops = [p.spec.ttl_security for p in self.peers.values() if not p.dynamic]
        self.listener.gtsm(hops, bool(self.peer_ranges))

    async def stop(self, *, graceful: bool) -> None:
        """Stop every session. ``graceful``: close TCP without NOTIFICATION (we will restart)."""
        for peer in self.peers.values():
            peer.session.stop(notify=not graceful)
            cancel_limit_timer(peer)
            self.stale.cancel(peer)
        self.listener.close()
        self.bfd.close()
        self.deferral.cancel()
        await asyncio.sleep(0)  # let closing transports flush
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def drain(self, drain_time: float, message: str) -> None:
        """Graceful shutdown (RFC 8326): re-advertise our routes with GRACEFUL_SHUTDOWN and
        LOCAL_PREF 0, wait ``drain_time`` seconds for traffic to move, then close every session
        with Cease/Administrative Shutdown carrying ``message`` (RFC 9003)."""
        self.draining = True
        log.info("event=drain-start drain_time=%.0fs message=%r", drain_time, message)
        for afi, table in self.originated.items():
            for wire, attrs in table.items():
                table[wire] = shutdown.drained(attrs)
            self._mark_dirty(afi, list(table))
        self._schedule_flush()
        await asyncio.sleep(drain_time)
        for peer in self.peers.values():
            peer.session.stop(notify=True, reason=message)
        log.info("event=drain-done peers=%d", len(self.peers))

    # --- configuration ---------------------------------------------------------------------

    def add_peer(self, spec: PeerSpec) -> Peer:
        address = tcp.normalise_address(spec.address)
        if address in self.peers:
            raise ValueError(f"peer {address} already configured")
        peer = Peer(spec, self._session(address, spec))
        if spec.max_prefixes is not None:
            peer.prefix_limit = PrefixLimitState(spec.max_prefixes)
        if self.policies.filters_import(spec):
            peer.adj_in = FilteredAdjRibIn()
        self.peers[address] = peer
        self._start(peer)
        return peer

    def replace_peer(self, spec: PeerSpec) -> Peer:
        """New settings for a configured peer (its AS, type, password, timers): a new session
        under them, and the peer's paths kept as if the old session had dropped. Our end closes
        the TCP connection without a NOTIFICATION, so a graceful-restart peer keeps our routes
        (RFC 4724), and when the old session negotiated graceful restart we keep its paths
        too, stale, until the new session's End-of-RIB or the restart time: a best path never
        leaves the Loc-RIB while the session is replaced. Without graceful restart the paths
        go at once, as with ``remove_peer`` + ``add_peer``."""
        address = tcp.normalise_address(spec.address)
        peer = self.peers[address]
        if self.policies.filters_import(spec) != isinstance(peer.adj_in, FilteredAdjRibIn):
            # the Adj-RIB-In's kind changes with the filters: it cannot carry over
            self.remove_peer(address, graceful=True)
            return self.add_peer(spec)
        self.bfd.detach(address)
        peer.session.stop(notify=False)  # session_down keeps its paths stale, or clears them
        cancel_limit_timer(peer)
        if peer.spec.password and not spec.password:
            self.listener.set_key(address, None)
        generation = peer.session.generation
        peer.spec = spec
        peer.session = self._session(address, spec)
        peer.session.generation = generation  # UPDATEs still queued from the old one stay old
        peer.prefix_limit = PrefixLimitState(spec.max_prefixes) if spec.max_prefixes else None
        log.info("peer=%s event=replaced stale=%s", address, bool(peer.adj_in.stale))
        self._start(peer)
        self._schedule_flush()
        return peer

    def _session(self, address: str, spec: PeerSpec) -> Session:
        return Session(
            address,
            spec.port,
            self._fsm_config(spec),
            self,
            password=spec.password,
            source_address=spec.source_address,
            ttl_security=spec.ttl_security,
        )

    def _start(self, peer: Peer) -> None:
        spec, address = peer.spec, peer.session.address
        if spec.password:
            self.listener.set_key(address, spec.password)
        self._listener_gtsm()
        peer.session.start()
        if spec.bfd is not None and spec.source_address is not None:
            self.bfd.attach(address, tcp.normalise_address(spec.source_address), spec.bfd)

    def set_bfd(self, address: str, settings: BfdSettings | None) -> None:
        """Turn BFD on, off or re-time it for a peer without resetting its BGP session."""
        peer = self.peers[tcp.normalise_address(address)]
        peer.spec = dataclasses.replace(peer.spec, bfd=settings)
        local = peer.spec.source_address or peer.session.local_address()
        if settings is None:
            self.bfd.detach(peer.session.address)
        elif local is not None:
            self.bfd.attach(peer.session.address, tcp.normalise_address(local), settings)

    def set_peer_type(self, address: str, peer_type: str) -> None:
        """Rename a peer's type (``mesh``, ``route-reflector``, ...): a label for people and
        metrics only, so the session stays up."""
        peer = self.peers[tcp.normalise_address(address)]
        peer.spec = dataclasses.replace(peer.spec, peer_type=peer_type)

    def add_peer_range(self, rng: PeerRange) -> None:
        self.peer_ranges.append(rng)
        self._listener_gtsm()
        self.listener.add_range(rng)

    def _dynamic_peer(self, address: str) -> Peer | None:
        """A peer for a connection from ``address`` if a peer range covers it."""
        for rng in self.peer_ranges:
            if rng.contains(address):
                peer = self.add_peer(rng.spec_for(address))
                peer.dynamic = True
                log.info("peer=%s event=dynamic-peer range=%s", address, rng.prefix)
                return peer
        return None

    def _drop_dynamic(self, peer: Peer) -> None:
        """A dynamic peer goes away with its session (and its stale paths, if any)."""
        if not peer.dynamic or peer.generation or peer.adj_in.stale:
            return
        if self.peers.get(peer.session.address) is peer:
            log.info("peer=%s event=dynamic-peer-removed", peer.session.address)
            self.remove_peer(peer.session.address)

    def remove_peer(self, address: str, *, graceful: bool = False) -> None:
        peer = self.peers.pop(tcp.normalise_address(address))  # graceful: no NOTIFICATION, the
        self.bfd.detach(peer.session.address)  # peer keeps our routes stale (RFC 4724)
        peer.session.stop(notify=not graceful)
        cancel_limit_timer(peer)
        self._listener_gtsm()
        self.exporter.forget(peer)
        self.stale.cancel(peer)
        if peer.spec.password and not peer.dynamic:
            self.listener.set_key(peer.session.address, None)
        for afi in list(peer.adj_in.routes):
            self._mark_dirty(afi, peer.adj_in.clear(afi))
        self._schedule_flush()

    def originate(self, prefix: str, attrs: PathAttributes | None = None) -> None:
        afi, wire = prefix_from_str(prefix)
        path = attrs or local_path()
        self.originated.setdefault(afi, {})[wire] = (
            shutdown.drained(path) if self.draining else path
        )
        self._mark_dirty(afi, [wire])
        self._schedule_flush()

    def withdraw_origin(self, prefix: str) -> None:
        afi, wire = prefix_from_str(prefix)
        if self.originated.get(afi, {}).pop(wire, None) is not None:
            self._mark_dirty(afi, [wire])
            self._schedule_flush()

    def _fsm_config(self, spec: PeerSpec) -> FsmConfig:
        return fsm_config(spec, self.config, restarting=self.deferral.active)

    # --- session events (SessionOwner) -----------------------------------------------------

    def session_up(self, session: Session, negotiated: Negotiated, local_address: str) -> None:
        peer = self.peers.get(session.address)
        if peer is None:
            return
        self.stale.cancel_llgr(peer)  # back: what is still stale waits for End-of-RIB
        establish(peer, session, negotiated, local_address, self.config, self.session_filters(peer))
        for afi in (Afi.IPV4, Afi.IPV6):
            add_path = (afi, Safi.UNICAST) in negotiated.add_path_receive
            self._mark_dirty(afi, peer.adj_in.set_add_path(afi, add_path))
        log.info("peer=%s event=established asn=%d", session.address, negotiated.peer_asn)
        if peer.spec.bfd is not None:
            # Without a configured source address the local end is known only now.
            self.bfd.attach(session.address, local_address, peer.spec.bfd)
        self.stale.sweep_unsupported(peer, negotiated)
        if self.deferral.active:
            self._check_deferral()  # our table waits; this peer may be the last one awaited
        else:
            self.exporter.send_full_table(peer)

    def session_down(self, session: Session, event: SessionDown) -> None:
        peer = self.peers.get(session.address)
        if peer is None:
            return
        peer.generation = 0
        self.exporter.forget(peer)
        if not self.stale.session_down(peer, event):
            for afi in list(peer.adj_in.routes):
                self._mark_dirty(afi, peer.adj_in.clear(afi))
        self._schedule_flush()
        if peer.dynamic:
            asyncio.get_running_loop().call_soon(self._drop_dynamic, peer)

    def _bfd_down(self, address: str, change: BfdStateChange) -> None:
        """BFD Down (RFC 5882): the BGP session goes down now, and with C bit 0 the peer's
        routes go with it (Cease/BFD Down is a NOTIFICATION, so ``session_down`` keeps none)."""
        peer = self.peers.get(address)
        if peer is not None and peer.session.state == State.ESTABLISHED:
            peer.session.bfd_down(f"BFD session down ({change.diag.name.lower()})")

    async def deliver(self, session: Session, message: Message) -> None:
        peer = self.peers.get(session.address)
        if peer is not None:
            await self._inbox.put((peer, session.generation, message, time.monotonic()))

    # --- selection deferral after our restart (RFC 4724 §4.1) -------------------------------

    def _check_deferral(self) -> None:
        self.deferral.check(
            (p.session.state == State.ESTABLISHED, p.negotiated, p.eor_received)
            for p in self.peers.values()
        )

    def _deferral_over(self, why: str) -> None:
        """Selection done: every peer gets our table now, and new OPENs lose the R bit."""
        log.info("event=selection-deferral-over reason=%s", why)
        for peer in self.peers.values():
            peer.session.fsm.config = self._fsm_config(peer.spec)
            if peer.session.state == State.ESTABLISHED and peer.source is not None:
                self.exporter.send_full_table(peer)

    # --- the RIB task ----------------------------------------------------------------------

    async def _run(self) -> None:
        """Apply queued UPDATEs, then decide and export them, in slices of about RIB_SLICE
        seconds: the API, the timers and the sessions run between slices. How much of a slice
        goes to applying adapts to what deciding and exporting that much cost last time."""
        inbox, loop = self._inbox, asyncio.get_running_loop()
        share = RIB_SLICE / 2
        while True:
            message = await inbox.get()
            start = loop.time()
            self._handle(*message)
            while not inbox.empty() and loop.time() - start < share:
                self._handle(*inbox.get_nowait())
            self._flush()
            spent = loop.time() - start
            share = max(RIB_SLICE / 50, min(RIB_SLICE, share * RIB_SLICE / max(spent, 1e-6)))
            await asyncio.sleep(0)

    def _handle(self, peer: Peer, generation: int, message: Message, received: float) -> None:
        if generation != peer.generation or peer.source is None:
            return  # from a session that has gone down since
        if isinstance(message, Update):
            self._received = min(received, self._received or received)
            self._apply_update(peer, message)
            if peer.prefix_limit is not None:
                check_prefix_limit(peer, peer.prefix_limit, self._restart_after_limit)
        elif isinstance(message, RouteRefresh):
            self.exporter.send_full_table(peer, refresh=True)

    def _apply_update(self, peer: Peer, update: Update) -> None:
        for err in update.errors:
            log.warning("peer=%s event=update-error %s", peer.spec.address, err)
        if update.errors:
            peer.update_errors.record(update.errors)
        eor = update.is_end_of_rib()
        if eor is not None:
            peer.eor_received.add(eor)
            self._publish(EndOfRib(peer.spec.address, Afi(eor[0]), Safi(eor[1])))
            if self.deferral.active:
                self._check_deferral()
            if eor[0] in peer.adj_in.stale:
                self._mark_dirty(eor[0], peer.adj_in.sweep_stale(eor[0]))
            return
        adj = peer.adj_in
        if update.withdrawn:
            self._mark_dirty(Afi.IPV4, adj.withdraw(Afi.IPV4, update.withdrawn))
        unreach = update.mp_unreach
        if unreach is not None and unreach.withdrawn:
            self._mark_dirty(unreach.afi, adj.withdraw(unreach.afi, unreach.withdrawn))
        attrs = update.attributes
        if attrs is None:
            return
        if update.nlri:
            if own_next_hop(peer, attrs.next_hop, len(update.nlri)):
                self._mark_dirty(Afi.IPV4, adj.withdraw(Afi.IPV4, update.nlri))
            else:
                imported = self.policies.received(peer, attrs)
                self._mark_dirty(Afi.IPV4, self._store(peer, Afi.IPV4, update.nlri, imported))
        if update.mp_reach is not None and update.mp_reach.nlri:
            mp = update.mp_reach
            hop = received_next_hop(mp.next_hop, peer.link)
            if own_next_hop(peer, hop, len(mp.nlri)):
                self._mark_dirty(mp.afi, adj.withdraw(mp.afi, mp.nlri))
                return
            mp_attrs = dataclasses.replace(attrs, next_hop=hop)
            imported = self.policies.received(peer, mp_attrs)
            self._mark_dirty(mp.afi, self._store(peer, mp.afi, mp.nlri, imported))

    def _store(
        self, peer: Peer, afi: int, entries: Sequence[bytes], attrs: PathAttributes | None
    ) -> Sequence[bytes]:
        """Into the Adj-RIB-In, through the peer's import filters if it has any; the changed
        prefixes (to decide). Prefixes all new to the peer are kept as a run with their path
        instead (``LocRib.store_runs`` stores them with no lookup if the peer is the only
        source at the flush)."""
        adj = peer.adj_in
        if isinstance(adj, FilteredAdjRibIn):
            return adj.receive(afi, entries, attrs, self.policies.import_decision(peer))
        if attrs is not None and peer.source is not None:
            new = adj.announce_new(afi, entries, attrs)
            if new is not None:
                self._runs.setdefault(afi, []).append((peer.source, attrs, new))
                return ()
        return adj.announce(afi, entries, attrs)

    # --- routing policy (bgpd.session_policy) -------------------------------------------------

    def session_filters(self, peer: Peer) -> SessionFilters:
        """The peer's policy now: its filters, RFC 8212, and the owned prefixes if it has
        ``owned_only``."""
        return self.policies.of(peer.spec)

    def policy_info(self, peer: Peer) -> list[str]:
        """Why this peer's session passes nothing in some direction (RFC 8212), in words."""
        return self.policies.blocked(peer)

    def explain_import(self, peer: Peer, afi: int, prefix: bytes, attrs: PathAttributes) -> Verdict:
        """What the peer's import policy makes of a received path (for the API's detail)."""
        return self.policies.explain_import(peer, afi, prefix, attrs)

    def set_peer_filters(self, address: str, filters: tuple[BGPFilter, ...]) -> None:
        """Change a peer's filters live: import re-runs over the kept Adj-RIB-In, export is
        recomputed and only the difference is sent; the session stays up."""
        peer = self.peers[tcp.normalise_address(address)]
        if peer.spec.filters != filters:
            peer.spec = dataclasses.replace(peer.spec, filters=filters)
            self._reapply_policy(peer)

    def set_ebgp_requires_policy(self, enabled: bool) -> None:
        if enabled != self.config.ebgp_requires_policy:
            self.config = dataclasses.replace(self.config, ebgp_requires_policy=enabled)
            for peer in list(self.peers.values()):
                self._reapply_policy(peer)

    def set_owned_prefixes(self, cidrs: Iterable[str]) -> None:
        """What the cluster owns (IP pool CIDRs): all ``owned_only`` peers may receive."""
        owned = tuple(sorted({ipaddress.ip_network(c) for c in cidrs}, key=str))
        if owned != self.policies.owned:
            self.policies.owned = owned
            for peer in list(self.peers.values()):
                if peer.spec.owned_only:
                    self._reapply_policy(peer)

    def _reapply_policy(self, peer: Peer) -> None:
        changed = self.policies.reimport(peer)
        for afi, prefixes in changed.items():
            self._mark_dirty(afi, prefixes)
        policy = self.policies.of(peer.spec)
        if peer.policy is not None and peer.policy.filters != policy:
            peer.policy = dataclasses.replace(peer.policy, filters=policy)
            self.exporter.regroup(peer)
        log.info("peer=%s event=policy-applied reimported=%d", peer.spec.address,
                 sum(len(p) for p in changed.values()))  # fmt: skip
        self._schedule_flush()

    # --- maximum prefixes (RFC 4486, bgpd.prefix_limit) ------------------------------------

    def _restart_after_limit(self, peer: Peer) -> None:
        peer.limit_timer = None
        if self.peers.get(peer.session.address) is peer:
            end_limit_hold(peer)

    def release_prefix_limits(self) -> list[str]:
        """An operator acts: start again every session held down by its prefix limit."""
        return [peer.spec.address for peer in self.peers.values() if release_limit_hold(peer)]

    def _mark_dirty(self, afi: int, prefixes: Iterable[bytes]) -> None:
        dirty = self._dirty.get(afi)
        if dirty is None:
            dirty = self._dirty[afi] = set()
        dirty.update(prefixes)

    def _schedule_flush(self) -> None:
        """Decide and export soon, from the loop (used outside the inbox path)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Decide and export what is dirty, FLUSH_CHUNK prefixes per family at a time: a larger
        change (a peer's whole table gone) continues on the next loop iteration."""
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, {}
        runs, self._runs = self._runs, {}
        received = self._received
        for afi in dirty.keys() | runs.keys():
            peers = [
                (p.source, table, p.adj_in.stale.get(afi), p.adj_in.multi.get(afi))
                for p in self.peers.values()
                if p.source is not None and (table := p.adj_in.routes.get(afi))
            ]
            rest, fresh, changed = dirty.get(afi, set()), runs.get(afi, []), None
            if fresh and not rest:  # nothing else changed: the runs are what the peer holds
                now, later = take_runs(fresh, FLUSH_CHUNK)
                changed = self.loc_rib.store_runs(afi, now, peers, self.originated.get(afi))
                if changed is not None and later:  # the rest waits its turn
                    self._runs[afi] = later
                    self._schedule_flush()
            if changed is not None:
                prefixes: Iterable[bytes] = changed
            else:
                for _source, _attrs, entries in fresh:
                    rest.update(entries)
                prefixes = take_chunk(rest, FLUSH_CHUNK)
                if prefixes is not rest:  # a chunk; the rest stays, the same set (no copy)
                    self._dirty[afi] = rest
                    self._schedule_flush()
                if not prefixes:
                    continue
                changed = self.loc_rib.decide(afi, prefixes, peers, self.originated.get(afi))
            # ADD-PATH groups advertise every path, so they see every touched prefix.
            self.exporter.export(afi, changed, prefixes, self.loc_rib.sole_source)
            if changed and self._subscribers:  # one batch per step and family
                best = self.loc_rib.table(afi)
                self._publish(best_route_changes(Afi(afi), changed, best, received))
        if not self._dirty and not self._runs:
            self._received = None

    # --- events ----------------------------------------------------------------------------

    def subscribe(self, sink: EventSink, *, batched: bool = False) -> None:
        """Call ``sink`` with every later event (see :mod:`bgpd.events`): best-route changes as
        one ``BestRouteChanges`` per decision step if ``batched``, else one per prefix."""
        self._subscribers.append(sink if batched else one_by_one(sink))

    def _publish(self, event: SpeakerEvent) -> None:
        for sink in self._subscribers:
            try:
                sink(event)
            except Exception:
                log.exception("event=subscriber-failed type=%s", type(event).__name__)

    def end_of_rib_from_all(self, afi: Afi, safi: Safi = Safi.UNICAST) -> bool:
        """Every peer is Established and has sent End-of-RIB for (afi, safi)."""
        return all(
            peer.session.state == State.ESTABLISHED and (afi, safi) in peer.eor_received
            for peer in self.peers.values()
        )

    def paths_for(self, afi: int, prefix: bytes) -> list[tuple[PathAttributes, PathSource, bytes]]:
        """Every eligible path for a prefix: (attributes, source, received path id or b"")."""
        local = self.originated.get(afi, {}).get(prefix)
        return eligible_paths(
            local, ((p.adj_in, p.source) for p in self.peers.values()), afi, prefix
        )

    # --- inbound connections (bgpd.listener) -----------------------------------------------

    def _session_for(self, address: str) -> Session | None:
        """The session an incoming connection from ``address`` belongs to, if any."""
        peer = self.peers.get(address) or self._dynamic_peer(address)
        return None if peer is None else peer.session
