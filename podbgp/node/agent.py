"""``podbgp node``: the per-node agent's control plane (Calico's calico-node, BGP half).

Owns :class:`NodeAgent`, which keeps this node in step with the datastore: it reads a snapshot, then
follows the watch; after every change it reconciles — compute the topology (pure,
:mod:`podbgp.node.peering`), add/remove only the speaker peers that differ (other sessions are never
touched), claim a block if the node owns none (:mod:`podbgp.cluster.ipam`), originate the owned
blocks, and keep the node's registration current. When the datastore is unreachable the speaker, its
sessions and routes stay as they are; the agent says so in its status and reconnects with
exponential backoff, resyncing from a fresh snapshot. Stopping is a graceful restart (RFC 4724): TCP
closes without a NOTIFICATION so peers keep our routes while we are away.

The dataplane (felix's kernel routes) plugs in through ``NodeAgent(config, dataplane_factory)``:
one object with the :class:`Dataplane` interface, built in :mod:`podbgp.node.wiring`. The running
service around the agent — its REST API and the process (signals, systemd) — is
:mod:`podbgp.node.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from bgpd import tcp
from bgpd.codec.types import PathAttributes
from bgpd.deferral import run_file_found
from bgpd.peerspec import PeerSpec
from bgpd.speaker import Speaker
from bgpd.unnumbered import UnnumberedPeers
from podbgp.cluster import ipam
from podbgp.cluster.datastore import (
    ChangeKind,
    Datastore,
    DatastoreError,
    NodeInfo,
    Snapshot,
    open_datastore,
)
from podbgp.cluster.datastore.records import merge_node, network_order
from podbgp.cluster.datastore.store import Change
from podbgp.cluster.resources import BGPConfiguration, BGPFilter, IPPool, Node
from podbgp.node.advertise import Advertisement, block_attributes
from podbgp.node.config import NodeConfig, resolve_addresses
from podbgp.node.handover import Handover
from podbgp.node.peering import Topology, compute_topology, node_asn
from podbgp.node.reflector_role import ReflectorRole
from podbgp.ops.schema import (
    DatastoreMetrics,
    FelixMetrics,
)

log = logging.getLogger("podbgp.node")

BACKOFF_MIN = 0.5  # seconds before the first reconnect to an unreachable datastore
BACKOFF_MAX = 5.0  # reconnect at least this often: a returning etcd is noticed quickly
RETRY_INTERVAL = 10.0  # re-run a reconcile whose datastore writes failed (pool full, ...)
DEBOUNCE = 0.05  # let a burst of watch events settle before reconciling once


class Dataplane(Protocol):
    """What the node agent drives: started after the agent, stopped before it.

    ``speaker_started`` is called with every new speaker (the first, and each replacement when
    the AS, router ID, cluster ID or listen port change); ``cluster_changed`` after every
    reconcile (pools, owned blocks and nodes may have changed). ``status`` is added to
    ``GET /v1/node`` under ``felix``; ``metrics`` feeds the dataplane part of ``/metrics``.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def speaker_started(self, speaker: Speaker) -> None: ...

    def cluster_changed(self) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def metrics(self) -> FelixMetrics: ...


DataplaneFactory = Callable[["NodeAgent"], Dataplane]


@dataclass
class DatastoreHealth:
    """How the datastore connection is doing (REST status and metrics)."""

    connected: bool = False
    synced: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    last_sync_at: float | None = None
    errors: int = 0
    block_allocations: int = 0
    block_allocation_errors: int = 0
    watch_events: int = 0  # changes delivered by the datastore watch (resources, nodes, affinities)


class NodeAgent:
    """One node's control plane: datastore sync, reconcile, the speaker, the dataplane.

    State the dataplane reads after ``cluster_changed``: ``pools`` (IPPool list), ``blocks``
    (owned block CIDRs), ``node`` (own NodeInfo), ``nodes`` (every NodeInfo by name),
    ``topology`` (the last computed Topology), ``speaker`` (None until the first sync).
    """

    def __init__(self, config: NodeConfig, dataplane_factory: DataplaneFactory | None = None):
        self.config = config
        self.store: Datastore = open_datastore(config.datastore)
        # At most one IPv4 and one IPv6 address with prefix length, IPv4 first; ``address`` is
        # the first (the primary: router ID, API address).
        self.addresses: tuple[str, ...] = tuple(
            a for a in (config.address, config.address_v6) if a is not None
        )
        self.address: str | None = self.addresses[0] if self.addresses else None
        self.speaker: Speaker | None = None
        self.unnumbered: UnnumberedPeers | None = None  # the speaker's peers found on links
        self.topology: Topology | None = None
        self.snapshot = Snapshot()
        self.pools: list[IPPool] = []
        self.blocks: list[str] = []
        self.node: NodeInfo | None = None
        self.nodes: dict[str, NodeInfo] = {}
        self.health = DatastoreHealth()
        self.ipam_error: str | None = None
        self.started = time.time()
        self._listen_port: int | None = None
        self._originated: dict[str, PathAttributes] = {}  # block -> attributes advertised
        self.advertisements: tuple[Advertisement, ...] = ()  # prefixAdvertisements
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._retry = False
        self._tasks: list[asyncio.Task[None]] = []
        self.dataplane = dataplane_factory(self) if dataplane_factory is not None else None
        self.handover = Handover(self._unwanted)  # peers the topology dropped, closing
        self.role = ReflectorRole(self._wake.set)  # elected or not, stepping down

    @property
    def name(self) -> str:
        return self.config.node_name

    @property
    def ip(self) -> str | None:
        return str(ipaddress.ip_interface(self.address).ip) if self.address else None

    def ip_of(self, version: int) -> str | None:
        """The node's bare address of that family, or None."""
        for text in self.addresses:
            iface = ipaddress.ip_interface(text)
            if iface.version == version:
                return str(iface.ip)
        return None

    @property
    def router_id(self) -> str | None:
        if self.config.router_id:
            return self.config.router_id
        ip = self.ip
        return ip if ip is not None and ":" not in ip else None

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve the address, start syncing (returns without waiting for the datastore).
        Raises OSError/ValueError when the address cannot be resolved."""
        self.addresses = resolve_addresses(self.config)
        self.address = self.addresses[0]
        self._tasks = [
            asyncio.create_task(self._sync_loop(), name="node-sync"),
            asyncio.create_task(self._reconcile_loop(), name="node-reconcile"),
        ]
        if self.dataplane is not None:
            await self.dataplane.start()
        log.info(
            "event=started node=%s addresses=%s datastore=%s",
            self.name,
            ",".join(self.addresses),
            self.store.description,
        )

    async def wait_synced(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._synced.wait(), timeout)

    async def stop(self) -> None:
        """Stop syncing, the dataplane and the speaker (gracefully)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.handover.close()
        if self.dataplane is not None:
            try:
                await self.dataplane.stop()
            except Exception:
                log.exception("event=dataplane-stop-failed")
        if self.unnumbered is not None:
            await self.unnumbered.close()
        if self.speaker is not None:
            await self.speaker.stop(graceful=self.speaker.config.graceful_restart)
        await self.store.close()

    # --- datastore sync ------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                snapshot = await self.store.snapshot()
                self.snapshot = snapshot
                self._mark_connected()
                await self.reconcile()
                self._synced.set()
                delay = BACKOFF_MIN
                async for change in self.store.watch(snapshot.revision):
                    self.health.watch_events += 1
                    if _relevant(self.snapshot, change, self.name):
                        self._wake.set()
                    self.snapshot.apply(change)
                    if change.error is not None:
                        log.warning("event=invalid-value key=%s error=%s", change.key, change.error)
            except DatastoreError as exc:
                self._mark_disconnected(exc)
            except Exception as exc:  # a bug must not end syncing for good: log, retry
                log.exception("event=sync-failed")
                self._mark_disconnected(exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _mark_connected(self) -> None:
        if not self.health.connected and self.health.last_error is not None:
            log.info("event=datastore-reconnected datastore=%s", self.store.description)
        self.health.connected = True
        self.health.synced = True
        self.health.last_sync_at = time.time()

    def _mark_disconnected(self, exc: Exception) -> None:
        self.health.errors += 1
        self.health.last_error = str(exc)
        self.health.last_error_at = time.time()
        if self.health.connected or self.health.errors == 1:
            # Once per outage at WARNING; the retries are DEBUG.
            log.warning("event=datastore-error error=%s keeping=sessions,routes", exc)
        else:
            log.debug("event=datastore-retry error=%s", exc)
        self.health.connected = False
        self.health.synced = False

    async def _reconcile_loop(self) -> None:
        while True:
            timeout = RETRY_INTERVAL if self._retry else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            await asyncio.sleep(DEBOUNCE)
            self._wake.clear()
            if self.health.synced:
                await self.reconcile()

    # --- reconcile -----------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Bring the speaker, IPAM and registration in line with :attr:`snapshot`."""
        async with self._lock:
            self._retry = False
            snap = self.snapshot
            config = snap.bgp_configuration()
            resource = snap.resources.get(f"Node/{self.name}")
            resource = resource if isinstance(resource, Node) else None
            self.pools = snap.pools()
            self.advertisements = config.prefix_advertisements
            self.blocks = [b.cidr for b in snap.blocks_of(self.name)]
            if self.topology is None:  # (re)started: resume what our registration says
                self.role.resume(snap.registrations.get(self.name))
            own = merge_node(self.name, resource, self._registration(snap, config, resource))
            self.node = own
            self.nodes = {**snap.nodes(), self.name: own}
            filters = {f.name: f.rules for f in snap.of_kind(BGPFilter)}
            topology = compute_topology(self.name, self.nodes, config, snap.bgp_peers(), filters)
            self.role.update(self.topology, topology)
            await self._apply_topology(topology)
            if self.speaker is not None:
                self.speaker.set_owned_prefixes(p.cidr for p in self.pools)
            try:
                if self.name not in snap.registrations:
                    # Registered before the first claim, so no block is ever owned by a node
                    # that does not exist yet (`podbgp ipam check --fix` releases those).
                    await self._register(snap, config, resource)
                await self._ensure_blocks(own)
                own = merge_node(self.name, resource, self._registration(snap, config, resource))
                self.node = own
                self.nodes[self.name] = own
                self._originate()
                await self._register(snap, config, resource)
            except DatastoreError as exc:
                log.warning("event=datastore-write-failed error=%s", exc)
                self.health.errors += 1
                self._retry = True
                self._originate()  # whatever we know we own (a new speaker starts empty)
            self._cluster_changed()

    def _registration(
        self, snap: Snapshot, config: BGPConfiguration, resource: Node | None
    ) -> NodeInfo:
        """What this node publishes about itself."""
        previous = snap.registrations.get(self.name)
        partial = NodeInfo(
            name=self.name,
            addresses=self.addresses,
            as_number=resource.as_number if resource else None,
            router_id=self.router_id,
            route_reflector_cluster_id=resource.route_reflector_cluster_id if resource else None,
            labels=resource.labels if resource else (),
            api_address=self._api_address(),
            blocks=tuple(self.blocks),
            vtep=previous.vtep if previous else {},
            updated=previous.updated if previous else None,
            registered=True,
            elected_reflector=self.role.elected,
        )
        return replace(partial, as_number=node_asn(partial, config))

    def _api_address(self) -> str | None:
        """host:port where others reach our API: the node's IP when it listens on all."""
        api = self.config.api
        if api is None:
            return None
        host = api.host
        if host in ("0.0.0.0", "::") and self.ip is not None:
            host = self.ip
        return f"[{host}]:{api.port}" if ":" in host else f"{host}:{api.port}"

    async def _register(
        self, snap: Snapshot, config: BGPConfiguration, resource: Node | None
    ) -> None:
        want = self._registration(snap, config, resource)
        have = snap.registrations.get(self.name)
        if have is not None and replace(have, updated=None) == replace(want, updated=None):
            return
        await self.store.register_node(want)
        log.info(
            "event=registered node=%s addresses=%s blocks=%s",
            self.name,
            ",".join(want.addresses),
            ",".join(want.blocks) or "-",
        )

    def _block_families(self, own: NodeInfo) -> list[int]:
        """The address families this node owns blocks of: each it has an address of and an
        enabled pool of selecting it (a v4-only cluster leaves a dual-stack node's IPv6 alone).
        With no such pool at all, its primary family, so the missing pool is reported."""
        mine: list[int] = sorted({ipaddress.ip_interface(a).version for a in self.addresses}) or [4]
        labels = own.label_map
        served = [
            v
            for v in mine
            if any(
                p.network.version == v and not p.disabled and p.node_selector.matches(labels)
                for p in self.pools
            )
        ]
        return served or mine[:1]

    async def _ensure_blocks(self, own: NodeInfo) -> None:
        """Own a block of a live pool per address family (and every pinned block); give back our
        empty blocks of deleted or disabled pools."""
        resource = self.snapshot.resources.get(f"Node/{self.name}")
        pinned = resource.blocks if isinstance(resource, Node) else ()
        mine = self.snapshot.blocks_of(self.name)
        dead = [a.cidr for a in mine if ipam.live_pool(a.cidr, a.pool, self.pools) is None]
        if any(cidr not in pinned for cidr in dead):
            released = await ipam.release_unused_blocks(self.store, self.name)
            self.blocks = [b for b in self.blocks if b not in released]
        # Each family on its own: a full IPv4 pool does not keep a node from its IPv6 block.
        errors = [
            error
            for version in self._block_families(own)
            if (error := await self._ensure_block(own, version, dead, pinned)) is not None
        ]
        error = "; ".join(errors) or None
        if error is not None and error != self.ipam_error:
            log.error("event=ipam-error node=%s error=%s", self.name, error)
        self.ipam_error = error

    async def _ensure_block(
        self, own: NodeInfo, version: int, dead: list[str], pinned: tuple[str, ...]
    ) -> str | None:
        """A live block of family ``version`` (and every pinned one); the IPAM error if not."""
        for _ in range(len(pinned) + 1):
            live = [
                b
                for b in self.blocks
                if b not in dead and ipaddress.ip_network(b).version == version
            ]
            if live and all(p in self.blocks for p in pinned):
                break
            try:
                block = await ipam.claim_block(
                    self.store, self.name, own.label_map, version=version
                )
            except ipam.IpamError as exc:
                self.health.block_allocation_errors += 1
                self._retry = True
                return str(exc)
            if block.cidr not in self.blocks:
                self.health.block_allocations += 1
                self.blocks = sorted({*self.blocks, block.cidr}, key=network_order)
        return None

    def _originate(self) -> None:
        if self.speaker is None:
            return
        want = {b: block_attributes(b, self.advertisements) for b in self.blocks}
        for prefix in sorted(set(self._originated) - set(want)):
            self.speaker.withdraw_origin(prefix)
            log.info("event=withdraw-block block=%s", prefix)
        for prefix, attrs in sorted(want.items()):
            if self._originated.get(prefix) != attrs:
                self.speaker.originate(prefix, attrs)
                log.info("event=originate-block block=%s communities=%d", prefix,
                         len(attrs.communities) + len(attrs.large_communities))  # fmt: skip
        self._originated = want

    async def _apply_topology(self, topology: Topology) -> None:
        self.topology = topology
        if self.router_id is None:
            log.error("event=no-router-id node=%s: set routerId in the node config", self.name)
            return
        if self.speaker is not None:  # applies live, re-running every eBGP session's policy
            self.speaker.set_ebgp_requires_policy(topology.speaker.ebgp_requires_policy)
        stale = (
            self.speaker is None
            or self.speaker.config != topology.speaker
            or self._listen_port != topology.listen_port
        )
        if stale and self.speaker is not None and self.role.holding(self.speaker.config, topology):
            return  # the old speaker goes on reflecting for now (ReflectorRole.holding)
        if stale and not await self._restart_speaker(topology):
            return
        speaker = self.speaker
        assert speaker is not None
        # Unnumbered peers (keyed %interface) are added by their watcher once found.
        if self.unnumbered is not None:
            self.unnumbered.apply(s for s in topology.peers.values() if s.interface is not None)
        current = {
            addr: peer.spec
            for addr, peer in speaker.peers.items()
            if not getattr(peer, "dynamic", False) and peer.spec.interface is None
        }
        desired = {
            tcp.normalise_address(a): spec
            for a, spec in topology.peers.items()
            if spec.interface is None
        }
        # Make before break: dropped peers retire once the new sessions carry their routes.
        retire = {a: not current[a].owned_only for a in sorted(set(current) - set(desired))}
        joining: list[str] = []
        for addr, spec in sorted(desired.items()):
            old = current.get(addr)
            if old != spec and self._apply_peer(speaker, addr, old, spec):
                joining.append(addr)
        for addr in retire:
            log.info("event=peer-retiring peer=%s", addr)
        self.handover.change(speaker, retire, joining, keep=desired)

    def _apply_peer(
        self, speaker: Speaker, addr: str, old: PeerSpec | None, spec: PeerSpec
    ) -> bool:
        """One desired peer whose settings are new (``old``: as it runs now, if it does).
        Whether it joins: a session whose End-of-RIB the handover waits for."""
        if old is not None and replace(old, peer_type=spec.peer_type) == spec:
            # Mesh <-> route-reflector seen from a client: the same BGP session, renamed.
            # It stays up (the reflector end restarts with its new cluster ID, gracefully).
            speaker.set_peer_type(addr, spec.peer_type)
            log.info("event=peer-type-changed peer=%s type=%s", addr, spec.peer_type)
            return True  # the handover waits for its End-of-RIB like a new one
        if old is not None and replace(old, filters=spec.filters, bfd=spec.bfd) == spec:
            if old.filters != spec.filters:
                speaker.set_peer_filters(addr, spec.filters)  # live, the session stays up
                log.info("event=peer-filters-changed peer=%s", addr)
            if old.bfd != spec.bfd:
                speaker.set_bfd(addr, spec.bfd)  # nor does a BFD change reset it
                log.info("event=peer-bfd-changed peer=%s bfd=%s", addr, spec.bfd)
            return False
        if old is None:
            speaker.add_peer(spec)
        elif old.owned_only or spec.owned_only:  # a router outside the cluster: a Cease
            speaker.remove_peer(addr)
            speaker.add_peer(spec)
        else:  # another node: a new session, its routes kept stale until End-of-RIB
            speaker.replace_peer(spec)
        reason = self.topology.reasons.get(spec.address, "") if self.topology else ""
        log.info("event=peer-added peer=%s type=%s asn=%d passive=%s reason=%s",
                 addr, spec.peer_type, spec.asn, spec.passive, reason)  # fmt: skip
        return True

    def _unwanted(self, address: str) -> bool:
        topology = self.topology
        return topology is None or all(tcp.normalise_address(a) != address for a in topology.peers)

    async def _restart_speaker(self, topology: Topology) -> bool:
        """(Re)create the speaker; a running one stops gracefully first. False on failure."""
        old = self.speaker
        # Only the cluster ID changes: this node was elected a reflector or steps down.
        reflection = old is not None and topology.speaker == replace(
            old.config, cluster_id=topology.speaker.cluster_id
        )
        if self.unnumbered is not None:
            await self.unnumbered.close()  # its peers belong to the old speaker
        if old is not None:
            why = (
                f"cluster ID {old.config.cluster_id or '-'} -> {topology.speaker.cluster_id or '-'}"
            )
            log.info("event=speaker-restart reason=%s", why if reflection else "settings changed")
            self.handover.cancel()
            await old.stop(graceful=True)
            self.speaker = None
            self._originated = {}
        # A restart on a running host (gracefulRestart.runFile): peers kept our routes and
        # felix the kernel's, so our table waits for theirs (RFC 4724 §4.1). Not when only the
        # cluster ID changed: the peers' handovers wait for our End-of-RIB anyway, and a
        # deferral would hold every route back while any configured peer stays down.
        restarting = run_file_found(self.config.run_file) and not reflection
        speaker = Speaker(
            topology.speaker,
            restarting=restarting,
            selection_deferral_time=self.config.selection_deferral_time,
        )
        await speaker.start()
        # One listener per node address (a dual-stack node takes sessions on both).
        ips = [ip for v in (4, 6) if (ip := self.ip_of(v)) is not None]
        addresses = [self.config.listen_address] if self.config.listen_address else ips
        listen = ",".join(addresses or ["0.0.0.0"])
        try:
            for address in addresses or ["0.0.0.0"]:
                await speaker.listen(address, topology.listen_port)
        except OSError as exc:
            log.error(
                "event=listen-failed address=%s port=%d error=%s", listen, topology.listen_port, exc
            )
            await speaker.stop(graceful=True)
            self._retry = True
            return False
        self.speaker = speaker
        self.unnumbered = UnnumberedPeers(speaker)
        self._listen_port = topology.listen_port
        log.info(
            "event=speaker-started asn=%d router_id=%s cluster_id=%s listen=%s:%d",
            topology.speaker.asn,
            topology.speaker.router_id,
            topology.speaker.cluster_id or "-",
            listen,
            topology.listen_port,
        )
        if self.dataplane is not None:
            self.dataplane.speaker_started(speaker)
        return True

    def _cluster_changed(self) -> None:
        if self.dataplane is None:
            return
        try:
            self.dataplane.cluster_changed()
        except Exception:
            log.exception("event=dataplane-update-failed")

    def datastore_metrics(self) -> DatastoreMetrics:
        """The datastore snapshot for ``podbgp.ops.metrics`` (see its docstring for the keys)."""
        h = self.health
        return {
            "connected": h.connected,
            "synced": h.synced,
            "errors": h.errors,
            "blocks_owned": len(self.blocks),
            "block_allocations": h.block_allocations,
            "block_allocation_errors": h.block_allocation_errors,
            "watch_events": h.watch_events,
        }


def _relevant(snap: Snapshot, change: Change, me: str) -> bool:
    """Does ``change`` call for a reconcile? Every resource and registration may change the
    topology; of the block affinities only our own matter (another node's block reaches us
    over BGP)."""
    if change.kind == ChangeKind.AFFINITY:
        old = snap.affinities.get(change.name)
        return me in ((old.node if old else None), getattr(change.value, "node", None))
    return change.kind in (ChangeKind.RESOURCE, ChangeKind.NODE)
