"""felix's dataplane: remote routes, the node's blocks and pods, into kernel routes.

:class:`Dataplane` is what ``podbgp node`` runs next to its BGP speaker. It takes typed inputs only
— remote routes as (prefix, next hop) through :meth:`Dataplane.set_route` /
:meth:`Dataplane.remove_route` (many at once: :meth:`Dataplane.set_routes`),
:class:`~felix.plan.Pool` s, own block CIDRs and remote :class:`~felix.plan.Vtep` s, and local
pods from the kernel, where ``podbgp-cni`` tags each pod's host-side veth — and knows nothing of
BGP (podbgp.node.wiring translates the speaker's events), keeps the tunnel devices converged
(felix.tunnels), and runs the reconciler (felix.reconcile) that makes felix's routes in the
kernel match felix.plan's output. Nothing is flushed on start or stop: routes left by a previous
run are adopted and removed only once the speaker has converged (:meth:`mark_converged`, or the
convergence timeout).

The route inputs are synchronous and cheap (they only record the next hop and wake the
reconciler), so the speaker task is never held up by kernel writes.

Dual stack: ``node_address`` is the node's IPv4 address with its prefix length (as before);
``node_address_v6="2001:db8::1/64"`` (keyword) adds its IPv6 address, which IPv6 routes, the
``vxlan-v6.podbgp`` underlay and RFC 8950 next hops (IPv4 prefixes via an IPv6 gateway) are
planned against (felix.plan). Next hops are strings: an address, or a link-local address with
its interface, ``fe80::1%eth0``. :class:`~felix.plan.Vtep` s are keyed by the remote node's
underlay address, so one node may contribute an IPv4 and an IPv6 VTEP. The VTEP address of
``vxlan-v6.podbgp`` comes from ``address_source_v6`` (handle ``vxlan-v6.podbgp:<node>``, an
address from the node's IPv6 block) or :meth:`Dataplane.set_tunnel_address`. ``vtep_publisher``
receives the node's whole VTEP record each time either device changes::

    {"ip": "10.244.1.0", "mac": "66:..",            # vxlan.podbgp (when its pools ask for it)
     "ipv6": "fd00:10:0:1::", "macv6": "6a:.."}     # vxlan-v6.podbgp (likewise)

and :func:`vteps_of` turns another node's record back into its :class:`~felix.plan.Vtep` s.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from felix.forward import ForwardRules
from felix.kernel.netlink import (
    KernelError,
    LinkInfo,
    LinkMonitor,
    Netlink,
    ensure_protocol_name,
)
from felix.latency import LatencyRecorder
from felix.nat import NatTable
from felix.plan import (
    IPIP_DEVICE,
    IPIP_OVERHEAD,
    VXLAN_DEVICE,
    VXLAN_OVERHEAD,
    VXLAN_V6_DEVICE,
    VXLAN_V6_OVERHEAD,
    Plan,
    PlanInput,
    Pool,
    Vtep,
    plan,
    replan,
    tunnels_needed,
    vxlan_v6_needed,
    workload_ips,
)
from felix.reconcile import Reconciler
from felix.tunnels import TunnelState, ensure_ipip, ensure_vxlan, vtep_mac

log = logging.getLogger("podbgp.felix.dataplane")

DEFAULT_ROUTE_PROTOCOL = 80
# A pass may reuse the previous pass's link dump this long while the link monitor, subscribed,
# reports no link event (passes of a burst of route changes come every 10 ms).
LINK_DUMP_REUSE = 1.0
AddressSource = Callable[[str], Awaitable[str]]  # IPAM handle -> address from our block
VtepPublisher = Callable[[dict[str, str]], Awaitable[None]]


VTEP_KEYS = {4: ("ip", "mac"), 6: ("ipv6", "macv6")}  # the published record, per family


def vteps_of(
    record: Mapping[str, object], address_v4: str | None, address_v6: str | None = None
) -> list[Vtep]:
    """Another node's VTEPs from its published record and its underlay addresses (an address
    may carry its prefix length); a family whose address or record half is missing is left out."""
    out = []
    for version, address in ((4, address_v4), (6, address_v6)):
        ip_key, mac_key = VTEP_KEYS[version]
        ip, mac = record.get(ip_key), record.get(mac_key)
        if address and ip and mac:
            node_ip = str(ipaddress.ip_interface(address).ip)
            out.append(Vtep(node_ip=node_ip, ip=str(ip), mac=str(mac).lower()))
    return out


def ipip_handle(node: str) -> str:
    return f"{IPIP_DEVICE}:{node}"


def vxlan_handle(node: str) -> str:
    return f"{VXLAN_DEVICE}:{node}"


def vxlan_v6_handle(node: str) -> str:
    return f"{VXLAN_V6_DEVICE}:{node}"


class Dataplane:
    """Programs one node's kernel routes; see the module docstring."""

    def __init__(
        self,
        node_name: str,
        node_address: str,
        uplink: str,
        route_protocol: int = DEFAULT_ROUTE_PROTOCOL,
        mtu: int | None = None,
        *,
        resync_interval: float = 10.0,
        converge_timeout: float = 60.0,
        netns: str | None = None,
        address_source: AddressSource | None = None,
        vtep_publisher: VtepPublisher | None = None,
        register_protocol_name: bool = True,
        enable_forwarding: bool = True,
        node_address_v6: str | None = None,
        address_source_v6: AddressSource | None = None,
    ) -> None:
        self.node_name = node_name
        self.node_address = str(ipaddress.ip_interface(node_address))
        self.node_address_v6: str | None = None
        if node_address_v6 is not None:
            v6 = ipaddress.ip_interface(node_address_v6)
            if v6.version != 6:
                raise ValueError(f"node_address_v6 {node_address_v6!r} is not an IPv6 address")
            self.node_address_v6 = str(v6)
        self.address_source_v6 = address_source_v6
        self.uplink = uplink
        self.route_protocol = route_protocol
        self.mtu_override = mtu
        self.converge_timeout = converge_timeout
        self.netns = netns
        self.address_source = address_source
        self.vtep_publisher = vtep_publisher
        self.register_protocol_name = register_protocol_name
        self.enable_forwarding = enable_forwarding
        self.nl = Netlink(route_protocol, netns)
        self.nat = NatTable(netns)
        self.forward = ForwardRules(netns)  # accept pool traffic where FORWARD drops
        self.reconciler = Reconciler(
            self.nl, self._plan, resync_interval=resync_interval, on_applied=self._applied
        )
        self.latency = LatencyRecorder()  # route change received -> kernel acknowledged
        self._received: dict[str, float] = {}  # dirty prefix -> when its change was received
        # Receive times of the changes of each planned pass not yet acknowledged, oldest first
        # (the reconciler writes passes in order and reports each once).
        self._in_flight: deque[list[float]] = deque()
        self.best: dict[str, str] = {}  # remote prefix -> next hop
        self._dirty: set[str] = set()  # remote prefixes changed since the last plan
        self._last_input: PlanInput | None = None
        self._last_plan: Plan | None = None
        self.pools: tuple[Pool, ...] = ()
        self.blocks: frozenset[str] = frozenset()
        self.vteps: dict[str, Vtep] = {}
        self.tunnel_addresses: dict[str, str] = {}
        self.tunnels: dict[str, TunnelState] = {}
        self.uplink_mtu = mtu or 1500
        self.pods: dict[str, str] = {}
        self.protocol_file: str | None = None
        self.started = 0.0
        self._published_vtep: dict[str, str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._monitor: LinkMonitor | None = None
        self._tunnel_errors: dict[str, str] = {}
        self._tunnels_dirty = False  # a tunnel device or the uplink changed: converge them
        self._links_watched = False  # the link monitor is subscribed and running
        self._link_dump: tuple[float, list[LinkInfo]] | None = None  # (when, links)
        self._link_events = 0  # link events seen by the monitor so far

    # -- inputs (called from the speaker and the agent; never block) ---------------------------

    def set_route(self, prefix: str, next_hop: str, received: float | None = None) -> None:
        """A remote prefix is best reached through ``next_hop`` (another node's address).
        ``received``: the ``time.monotonic()`` the change arrived, for the latency histogram."""
        self.set_routes(((prefix, next_hop),), received)

    def remove_route(self, prefix: str, received: float | None = None) -> None:
        """No remote route for ``prefix`` any more (withdrawn, or now originated here)."""
        self.set_routes(((prefix, None),), received)

    def set_routes(
        self, routes: Iterable[tuple[str, str | None]], received: float | None = None
    ) -> None:
        """Many :meth:`set_route` (next hop given) / :meth:`remove_route` (None) calls in order,
        with one wake-up of the reconciler: a batch of best-route changes from one decision."""
        best, dirty, times = self.best, self._dirty, self._received
        changed = False
        for prefix, next_hop in routes:
            if next_hop is None:
                if best.pop(prefix, None) is None:
                    continue
            elif best.get(prefix) != next_hop:
                best[prefix] = next_hop
            else:
                continue
            dirty.add(prefix)
            if received is not None:
                times.setdefault(prefix, received)
            changed = True
        if changed:
            self.reconciler.trigger()

    def _applied(self, ok: bool) -> None:
        """The reconciler's writes were acknowledged (``ok``) or failed: a change planned in
        this pass counts in the histogram once the kernel has it."""
        if not self._in_flight:
            return  # the failed pass had not been planned
        received = self._in_flight.popleft()
        if ok and received:
            self.latency.observe_since(received, time.monotonic())

    def set_pools(self, pools: Iterable[Pool]) -> None:
        new = tuple(sorted(pools, key=lambda p: p.cidr))
        if new != self.pools:
            self.pools = new
            self.reconciler.trigger(full=True)

    def set_blocks(self, blocks: Iterable[str]) -> None:
        new = frozenset(blocks)
        if new != self.blocks:
            self.blocks = new
            self.reconciler.trigger(full=True)

    def set_nodes(self, vteps: Iterable[Vtep]) -> None:
        """The other nodes' VXLAN tunnel endpoints, keyed by their underlay address: a node with
        both devices gives two (see :func:`vteps_of`)."""
        new = {v.node_ip: v for v in vteps}
        if new != self.vteps:
            self.vteps = new
            self.reconciler.trigger()

    def set_tunnel_address(self, device: str, ip: str) -> None:
        """Use ``ip`` for ``device`` (instead of asking ``address_source``)."""
        if self.tunnel_addresses.get(device) != ip:
            self.tunnel_addresses[device] = ip
            self.reconciler.trigger(full=True)

    def mark_converged(self) -> None:
        self.reconciler.mark_converged()

    def forget_routes(self) -> None:
        """The speaker was replaced: drop its routes from the plan, not from the kernel.

        Until the new speaker converges again, kernel routes the plan no longer lists are kept
        (adopted), so traffic keeps flowing while the sessions come back.
        """
        self.best.clear()
        self._last_plan = None  # the next plan is whole
        self.reconciler.unconverge()
        if self._tasks:
            self._tasks[0].cancel()
            self._tasks[0] = asyncio.create_task(
                self._converge_after_timeout(), name="felix-converge"
            )

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Open the kernel socket and run until :meth:`stop`; routes stay installed on exit."""
        self.started = time.time()
        if self.register_protocol_name:
            try:
                written = ensure_protocol_name(self.route_protocol)
                self.protocol_file = str(written) if written else None
            except OSError as exc:
                log.warning("event=protocol-name-failed error=%s", exc)
        if self.enable_forwarding and self.netns is None:
            self._enable_forwarding()
        await self.nl.open()
        self._tasks = [
            asyncio.create_task(self._converge_after_timeout(), name="felix-converge"),
            asyncio.create_task(self._watch_links(), name="felix-monitor"),
        ]
        log.info(
            "event=started node=%s address=%s uplink=%s protocol=%d",
            self.node_name, self.node_address, self.uplink, self.route_protocol,
        )  # fmt: skip
        try:
            await self.reconciler.run()
        finally:
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._monitor is not None:
                self._monitor.close()
            await self.nl.close()

    def _enable_forwarding(self) -> None:
        """A node routes for its pods: IPv4 forwarding on (and IPv6 when the node has IPv6)."""
        keys = ["net/ipv4/ip_forward"]
        if self.node_address_v6 or ipaddress.ip_interface(self.node_address).version == 6:
            keys.append("net/ipv6/conf/all/forwarding")
        for key in keys:
            path = Path("/proc/sys", key)
            try:
                if path.read_text().strip() != "1":
                    path.write_text("1")
                    log.info("event=forwarding-enabled sysctl=%s", key.replace("/", "."))
            except OSError as exc:
                log.warning("event=forwarding-failed sysctl=%s error=%s", key, exc)

    async def stop(self) -> None:
        """Stop the loop. Kernel routes stay (a restart adopts them)."""
        self.reconciler.stop()

    async def wait_synced(self, timeout: float = 10.0) -> None:
        """Wait for the next completed pass (tests and start-up)."""
        self.reconciler.synced.clear()
        await asyncio.wait_for(self.reconciler.synced.wait(), timeout)

    async def _converge_after_timeout(self) -> None:
        await asyncio.sleep(self.converge_timeout)
        if not self.reconciler.converged:
            log.info("event=converge-timeout after=%.0fs", self.converge_timeout)
            self.reconciler.mark_converged()

    async def _watch_links(self) -> None:
        """Heal at once what depends on a link that changed (down/up, deleted, re-created).

        Only that link's dependants: the routes through it (re-installed once it is up again;
        the kernel drops them when it goes down) and, for the uplink or a tunnel device, the
        tunnel devices (converged again: brought up, re-created). A new pod veth is picked up by
        the pass it triggers. Nothing else is re-planned or re-read: no full resync.
        """
        self._monitor = LinkMonitor(self.netns)
        # Links last seen administratively up. A link coming up announces itself more than once
        # (IFF_UP, then carrier): only the first announcement after it was down, deleted or not
        # yet seen heals its routes; the kernel drops them only when it goes down.
        seen_up: set[str] = set()
        try:
            await self._monitor.open()
            self._links_watched, self._link_dump = True, None
            while True:
                events = await self._monitor.events()
                up: set[str] = set()
                changed = False
                for event, fields in events:
                    if not event.endswith("LINK"):
                        continue
                    self._link_events += 1
                    self._link_dump = None  # the next pass dumps the links again
                    if not fields.get("ifname"):
                        continue
                    name, changed = str(fields["ifname"]), True
                    if name in self._tunnel_links():
                        self._tunnels_dirty = True
                    if event != "RTM_NEWLINK" or not fields.get("up"):
                        seen_up.discard(name)
                    elif name not in seen_up:
                        seen_up.add(name)
                        up.add(name)
                if up:
                    self.reconciler.heal(up)
                elif changed:
                    self.reconciler.trigger()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the periodic resync still heals, only later
            log.warning("event=monitor-failed error=%s", exc)
        finally:
            self._links_watched, self._link_dump = False, None

    def _tunnel_links(self) -> set[str]:
        """Links whose change calls for converging the tunnel devices again."""
        return {self.uplink, IPIP_DEVICE, VXLAN_DEVICE, VXLAN_V6_DEVICE}

    # -- planning ------------------------------------------------------------------------------

    async def _plan(self, full: bool) -> Plan:
        links = await self._links(full)
        by_name = {link.name: link for link in links}
        uplink = by_name.get(self.uplink)
        if self.mtu_override is None and uplink is not None and uplink.mtu:
            self.uplink_mtu = uplink.mtu
        self.pods = {
            ip: link.name
            for link in links
            for ip in workload_ips(link.alias)
            if link.kind == "veth"
        }
        want_ipip, want_vxlan = tunnels_needed(self.pools)
        want_vxlan_v6 = self.node_address_v6 is not None and vxlan_v6_needed(self.pools)
        if full:
            await self.nat.sync(self.pools)
            await self.forward.sync(self.pools)
        if full or self._tunnels_dirty or (want_ipip and IPIP_DEVICE not in self.tunnels):
            self._tunnels_dirty = False
            await self._ensure_tunnels(want_ipip, want_vxlan, want_vxlan_v6)
        ipip = self.tunnels.get(IPIP_DEVICE)
        vxlan = self.tunnels.get(VXLAN_DEVICE)
        vxlan6 = self.tunnels.get(VXLAN_V6_DEVICE)
        self.reconciler.vxlan_devices = tuple(
            name for name in (VXLAN_DEVICE, VXLAN_V6_DEVICE)
            if (state := self.tunnels.get(name)) is not None and state.ready
        )  # fmt: skip
        inp = PlanInput(
            node_address=self.node_address,
            uplink=self.uplink,
            uplink_mtu=self.uplink_mtu,
            blocks=self.blocks,
            pools=self.pools,
            best=self.best,
            vteps=dict(self.vteps),
            pods=self.pods,
            ipip_ready=ipip is not None and ipip.ready,
            vxlan_ready=vxlan is not None and vxlan.ready,
            node_address_v6=self.node_address_v6,
            vxlan_v6_ready=vxlan6 is not None and vxlan6.ready,
        )
        dirty, self._dirty = self._dirty, set()
        # Every prefix with a receive time is dirty (set_routes records both): all are planned now.
        received, self._received = list(self._received.values()), {}
        last, last_input = self._last_plan, self._last_input
        if (
            not full
            and last is not None
            and last_input is not None
            and _same_but_best(inp, last_input)
        ):
            # Only best routes changed: plan just those prefixes (O(changes), not O(table)),
            # updating the last plan's tables in place (nothing else keeps them).
            result = replan(last, inp, dirty, reuse=True)
        else:
            result = plan(replace(inp, best=dict(self.best)))
        self._last_plan, self._last_input = result, replace(inp, best={})
        self._in_flight.append(received)
        return result

    async def _links(self, full: bool) -> list[LinkInfo]:
        """This namespace's links: a fresh dump, or within a burst of route changes the last
        one, when the link monitor has reported no link event since (a dump costs ~17 ms
        with 100 pods, and a burst brings a pass every 10 ms)."""
        now = time.monotonic()
        cached = self._link_dump
        if not full and self._links_watched and cached and now - cached[0] < LINK_DUMP_REUSE:
            self.nl.reuse_links()
            return cached[1]
        seen = self._link_events
        links = await self.nl.links()
        # Kept only if no link event arrived while it was read (it may predate that change).
        keep = self._links_watched and seen == self._link_events
        self._link_dump = (now, links) if keep else None
        return links

    async def _ensure_tunnels(self, want_ipip: bool, want_vxlan: bool, want_v6: bool) -> None:
        if want_ipip:
            address = await self._tunnel_address(IPIP_DEVICE, ipip_handle(self.node_name))
            self.tunnels[IPIP_DEVICE] = await ensure_ipip(
                self.nl, mtu=self.uplink_mtu - IPIP_OVERHEAD, address=address
            )
        else:
            self.tunnels.pop(IPIP_DEVICE, None)
        vtep: dict[str, str] = {}
        if want_vxlan:
            vtep |= await self._ensure_vxlan(VXLAN_DEVICE, 4, self.node_address)
        else:
            self.tunnels.pop(VXLAN_DEVICE, None)
        if want_v6 and self.node_address_v6 is not None:
            vtep |= await self._ensure_vxlan(VXLAN_V6_DEVICE, 6, self.node_address_v6)
        else:
            self.tunnels.pop(VXLAN_V6_DEVICE, None)
        if vtep:
            await self._publish_vtep(vtep)
        for name, state in self.tunnels.items():
            if state.error and state.error != self._tunnel_errors.get(name):
                log.warning("event=tunnel-not-ready device=%s error=%s", name, state.error)
        self._tunnel_errors = {name: s.error for name, s in self.tunnels.items() if s.error}

    async def _ensure_vxlan(self, device: str, version: int, local: str) -> dict[str, str]:
        """Converge one VXLAN device; its part of the VTEP record once it is ready."""
        handle = vxlan_handle if version == 4 else vxlan_v6_handle
        address = await self._tunnel_address(device, handle(self.node_name), version)
        mac = vtep_mac(self.node_name, version)
        overhead = VXLAN_OVERHEAD if version == 4 else VXLAN_V6_OVERHEAD
        state = await ensure_vxlan(
            self.nl,
            local=str(ipaddress.ip_interface(local).ip),
            uplink=self.uplink,
            mac=mac,
            mtu=self.uplink_mtu - overhead,
            address=address,
            device=device,
        )
        self.tunnels[device] = state
        if state.ready and address is not None:
            ip_key, mac_key = VTEP_KEYS[version]
            return {ip_key: address, mac_key: mac}
        return {}

    async def _tunnel_address(self, device: str, handle: str, version: int = 4) -> str | None:
        """The tunnel's /32 (/128) from our block: given, or assigned by IPAM once, remembered."""
        address = self.tunnel_addresses.get(device)
        source = self.address_source if version == 4 else self.address_source_v6
        has_block = any(":" in block if version == 6 else ":" not in block for block in self.blocks)
        if address is None and source is not None and has_block:
            try:
                address = await source(handle)
            except Exception as exc:  # the datastore may be down; try again next resync
                log.warning("event=tunnel-address-failed device=%s error=%s", device, exc)
                return None
            self.tunnel_addresses[device] = address
        return address

    async def _publish_vtep(self, vtep: dict[str, str]) -> None:
        if self.vtep_publisher is None or vtep == self._published_vtep:
            return
        try:
            await self.vtep_publisher(vtep)
            self._published_vtep = vtep
        except Exception as exc:  # retried on the next resync
            log.warning("event=vtep-publish-failed error=%s", exc)

    # -- views ---------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Read-only state for ``/v1/node`` and metrics."""
        stats = self.reconciler.stats
        last = self.reconciler.last_plan
        return {
            "node": self.node_name,
            "address": self.node_address,
            "addressV6": self.node_address_v6,
            "uplink": self.uplink,
            "uplinkMtu": self.uplink_mtu,
            "routeProtocol": self.route_protocol,
            "converged": self.reconciler.converged,
            "blocks": sorted(self.blocks),
            "pools": [
                {
                    "cidr": p.cidr,
                    "ipipMode": str(p.ipip_mode),
                    "vxlanMode": str(p.vxlan_mode),
                    "natOutgoing": p.nat_outgoing,
                }
                for p in self.pools
            ],
            "tunnels": {name: state.to_json() for name, state in sorted(self.tunnels.items())},
            "nat": self.nat.snapshot(),
            "forward": self.forward.snapshot(),
            "updateToKernel": self.latency.summary(time.monotonic()),
            "pods": dict(sorted(self.pods.items())),
            "routes": {
                "desired": len(last.routes) if last else 0,
                "installed": stats.installed,
                "adoptedPendingConvergence": stats.kept,
                "skipped": dict(last.skipped) if last else {},
                "conflicts": list(stats.conflicts),
                "table": _table(last),
            },
            "sync": {
                "passes": stats.syncs,
                "fullResyncs": stats.full_syncs,
                "linkHeals": stats.link_heals,
                "replaced": stats.replaced,
                "deleted": stats.deleted,
                "errors": stats.errors,
                "lastSync": stats.last_sync,
                "lastDurationSeconds": round(stats.last_duration, 4),
                "lastErrors": [{"what": e.what, "error": e.error} for e in stats.last_errors],
            },
        }


def _same_but_best(a: PlanInput, b: PlanInput) -> bool:
    """Two plan inputs that differ at most in their best routes."""
    return replace(a, best={}) == replace(b, best={})


def _table(last: Plan | None, limit: int = 500) -> list[str]:
    """The desired routes as ``ip route`` lines (the first ``limit``: views stay small)."""
    if last is None:
        return []
    return [last.routes[dst].describe() for dst in sorted(last.routes)[:limit]]


__all__ = ["DEFAULT_ROUTE_PROTOCOL", "VTEP_KEYS", "Dataplane", "KernelError", "vteps_of"]
