"""Where a best route becomes a kernel route: the one module that knows both bgpd and felix.

:class:`NodeDataplane` is the node agent's :class:`~podbgp.node.agent.Dataplane`. It

* subscribes to every speaker the agent runs and hands each batch of its typed best-route
  changes (:class:`bgpd.events.BestRouteChanges`, one per decision step) to felix in one call
  (``set_routes``);
  when the agent replaces its speaker, felix forgets the old speaker's routes without touching
  the kernel (the new speaker re-learns them; adopted routes stay until it has converged);
* after each agent reconcile, hands felix the pools (:class:`felix.plan.Pool`), own blocks of
  both families and the other nodes' VTEPs (:class:`felix.plan.Vtep`, an IPv4 and an IPv6 one
  per dual-stack node);
* gives felix the node's IPv6 address beside its IPv4 one (a dual-stack node);
* assigns tunnel addresses through IPAM (handles ``tunl0:<node>``, ``vxlan.podbgp:<node>``,
  ``vxlan-v6.podbgp:<node>`` — the last from the node's IPv6 block) and publishes this node's
  VTEPs in its registration; a tunnel address in a block of a deleted
  or disabled pool moves to a live block of the node (as Calico's does), so the old block can
  empty and go back to IPAM;
* declares convergence when the datastore has synced and every peer is Established and has
  sent End-of-RIB for IPv4 unicast, and IPv6 unicast on a dual-stack node (RFC 4724 §2) — on
  the event, never by polling — or after felix's timeout;
* gives ``GET /v1/node`` its ``felix`` part and felix's Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any

from bgpd.codec.types import Afi, Safi
from bgpd.events import BestRouteChanges, EndOfRib, SpeakerEvent
from bgpd.speaker import Speaker
from felix.dataplane import Dataplane, ipip_handle, vteps_of, vxlan_handle, vxlan_v6_handle
from felix.kernel.netlink import Netlink
from felix.plan import (
    IPIP_DEVICE,
    VXLAN_DEVICE,
    VXLAN_V6_DEVICE,
    EncapMode,
    Pool,
    RouteType,
    Scope,
)
from podbgp.cluster import ipam
from podbgp.cluster.datastore import DatastoreError
from podbgp.cluster.resources import IPPool
from podbgp.node.agent import NodeAgent
from podbgp.ops.schema import FelixMetrics

log = logging.getLogger("podbgp.node.wiring")

DEFAULT_CONVERGE_TIMEOUT = 60.0


def to_pool(pool: IPPool) -> Pool:
    """The parts of an IPPool that shape kernel routes and outgoing NAT."""
    return Pool(
        cidr=pool.cidr,
        ipip_mode=EncapMode(pool.ipip_mode or "Never"),
        vxlan_mode=EncapMode(pool.vxlan_mode or "Never"),
        disabled=pool.disabled,
        nat_outgoing=pool.nat_outgoing,
    )


class NodeDataplane:
    """felix driven by the node agent; see the module docstring."""

    def __init__(self, agent: NodeAgent, converge_timeout: float = DEFAULT_CONVERGE_TIMEOUT):
        self.agent = agent
        self.converge_timeout = converge_timeout
        self.dataplane: Dataplane | None = None
        self._speaker: Speaker | None = None
        self._early: dict[str, str | None] = {}  # routes seen before start(): prefix -> next hop
        self._task: asyncio.Task[None] | None = None
        self._moving: asyncio.Task[None] | None = None  # tunnel addresses leaving dead pools

    # -- the agent's Dataplane interface ---------------------------------------------------

    def speaker_started(self, speaker: Speaker) -> None:
        if self._speaker is not None and self.dataplane is not None:
            self.dataplane.forget_routes()
        self._early.clear()
        self._speaker = speaker
        speaker.subscribe(lambda event: self._on_event(speaker, event), batched=True)

    def cluster_changed(self) -> None:
        if self.dataplane is None:
            return
        agent = self.agent
        self.dataplane.set_pools(to_pool(p) for p in agent.pools)
        self.dataplane.set_blocks(agent.blocks)
        self.dataplane.set_nodes(  # each other node's VTEPs as its felix published them
            v
            for name, n in agent.nodes.items()
            if name != agent.name
            for v in vteps_of(n.vtep or {}, n.address(4), n.address(6))
        )
        self._move_tunnel_addresses()
        self._check_converged()

    def status(self) -> dict[str, Any]:
        if self.dataplane is None:
            return {"running": False}
        return {"running": True, **self.dataplane.snapshot()}

    def metrics(self) -> FelixMetrics:
        """felix's part of ``/metrics`` (see podbgp.ops.metrics for the keys)."""
        if self.dataplane is None:
            return {}
        stats = self.dataplane.reconciler.stats
        plan = self.dataplane.reconciler.last_plan
        latency = self.dataplane.latency
        kinds: dict[str, int] = {}
        for route in plan.routes.values() if plan else ():
            kind = route_kind(route.type, route.dev, route.scope, self.dataplane.uplink)
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "routes_programmed": kinds,
            "reconcile_runs": stats.syncs,
            "reconcile_errors": stats.errors,
            "last_reconcile_timestamp": stats.last_sync or None,
            "update_to_kernel": (latency.cumulative(), latency.sum),
        }

    async def start(self) -> None:
        agent = self.agent
        config = agent.config
        if not agent.address:
            raise ValueError("felix needs the node's address with its prefix length")
        uplink = config.interface or await find_interface(agent.address)
        v6 = next((a for a in agent.addresses[1:] if ipaddress.ip_interface(a).version == 6), None)
        self.dataplane = Dataplane(
            agent.name,
            agent.address,
            uplink,
            config.route_protocol,
            config.mtu,
            resync_interval=float(config.felix.resync_interval),
            converge_timeout=self.converge_timeout,
            address_source=self._assign_tunnel_address,
            vtep_publisher=self._publish_vtep,
            node_address_v6=v6,
            address_source_v6=self._assign_tunnel_address_v6,
        )
        self.dataplane.set_routes(self._early.items())
        self._early.clear()
        self.cluster_changed()
        self._task = asyncio.create_task(self.dataplane.run(), name="felix")

    async def stop(self) -> None:
        """Stop felix; kernel routes stay installed (the next start adopts them)."""
        if self._moving is not None:
            self._moving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._moving
        if self.dataplane is not None:
            await self.dataplane.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)

    # -- speaker events -> felix inputs ----------------------------------------------------

    def _on_event(self, speaker: Speaker, event: SpeakerEvent) -> None:
        if speaker is not self._speaker:
            return  # a replaced speaker winding down
        if isinstance(event, BestRouteChanges):  # a decision step's changes: one felix call
            # No next hop: withdrawn, or a route this speaker originates (felix's own block).
            routes = zip(event.prefixes, event.next_hops, strict=True)
            if self.dataplane is None:
                self._early.update(routes)
            else:
                self.dataplane.set_routes(routes, event.received)
        elif isinstance(event, EndOfRib):
            self._check_converged()

    def _check_converged(self) -> None:
        dataplane, speaker = self.dataplane, self._speaker
        if dataplane is None or speaker is None or dataplane.reconciler.converged:
            return
        families = [Afi.IPV4] + ([Afi.IPV6] if dataplane.node_address_v6 else [])
        if self.agent.health.synced and all(
            speaker.end_of_rib_from_all(afi, Safi.UNICAST) for afi in families
        ):
            log.info("event=end-of-rib-from-all-peers")
            dataplane.mark_converged()

    # -- IPAM and registration for felix's tunnels -----------------------------------------

    async def _assign_tunnel_address(self, handle: str) -> str:
        ip, _block = await ipam.assign_address(self.agent.store, self.agent.name, handle)
        return str(ip)

    async def _assign_tunnel_address_v6(self, handle: str) -> str:
        ip, _block = await ipam.assign_address(self.agent.store, self.agent.name, handle, 6)
        return str(ip)

    def _move_tunnel_addresses(self) -> None:
        dataplane, agent = self.dataplane, self.agent
        if dataplane is None or (self._moving is not None and not self._moving.done()):
            return
        live = [ipaddress.ip_network(b) for b in agent.blocks if ipam.live_pool(b, "", agent.pools)]
        stale = {
            device: ip
            for device, ip in dataplane.tunnel_addresses.items()
            if not any(ipaddress.ip_address(ip) in net for net in live)
        }
        if live and stale:
            self._moving = asyncio.create_task(self._move(stale), name="tunnel-address-move")

    async def _move(self, stale: dict[str, str]) -> None:
        """Release each stale tunnel address (its block, if now empty and its pool gone, goes
        with it) and take one from a live block; felix re-addresses the device."""
        assert self.dataplane is not None
        handles = {IPIP_DEVICE: ipip_handle, VXLAN_DEVICE: vxlan_handle,
                   VXLAN_V6_DEVICE: vxlan_v6_handle}  # fmt: skip
        for device, old in stale.items():
            handle = handles[device](self.agent.name)
            version = ipaddress.ip_address(old).version
            try:
                await ipam.release_address(self.agent.store, handle)
                new, _block = await ipam.assign_address(
                    self.agent.store, self.agent.name, handle, version
                )
            except (DatastoreError, ipam.IpamError) as exc:  # retried after the next reconcile
                log.warning("event=tunnel-address-move-failed device=%s error=%s", device, exc)
                continue
            self.dataplane.set_tunnel_address(device, new)
            log.info("event=tunnel-address-moved device=%s from=%s to=%s", device, old, new)

    async def _publish_vtep(self, vtep: dict[str, str]) -> None:
        await self.agent.store.update_node_status(self.agent.name, vtep=dict(vtep))


def route_kind(rtype: RouteType, dev: str | None, scope: Scope, uplink: str) -> str:
    """Metric label for a route: blackhole, pod, ipip, vxlan, direct."""
    if rtype == RouteType.BLACKHOLE:
        return "blackhole"
    if scope == Scope.LINK:
        return "pod"
    if dev == IPIP_DEVICE:
        return "ipip"
    if dev in (VXLAN_DEVICE, VXLAN_V6_DEVICE):
        return "vxlan"
    return "direct" if dev == uplink else "other"


async def find_interface(address: str) -> str:
    """The interface holding ``address`` (the uplink), looked up in this namespace."""
    ip = str(ipaddress.ip_interface(address).ip)
    async with Netlink(0) as nl:
        for link in await nl.links():
            for cidr in await nl.addresses(link.name):
                if str(ipaddress.ip_interface(cidr).ip) == ip:
                    return link.name
    raise ValueError(f"no interface holds the node address {ip}")


def node_dataplane_factory(agent: NodeAgent) -> NodeDataplane:
    """The ``dataplane_factory`` for :class:`~podbgp.node.agent.NodeAgent`."""
    return NodeDataplane(agent)
