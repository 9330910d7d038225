"""felix inside ``podbgp node``: the glue between the node agent and :class:`Dataplane`.

The node agent (podbgp.node.agent) accepts a ``dataplane_factory``; :func:`node_dataplane_factory`
returns a :class:`NodeDataplane` that

* listens to every speaker the agent runs (``agent.route_listeners``) and, when the agent
  replaces its speaker, forgets the old speaker's routes without touching the kernel (the new
  speaker re-learns them; adopted routes stay until it has converged);
* after each agent reconcile, hands felix the pools, own blocks and nodes (remote VTEPs);
* assigns tunnel addresses through IPAM (handles ``tunl0:<node>``, ``vxlan.podbgp:<node>``)
  and publishes this node's VTEP in its registration;
* declares convergence when every peer is Established and has sent End-of-RIB for IPv4 unicast
  (RFC 4724 §2), or after a timeout;
* adds ``felix`` to ``GET /v1/node`` and felix's Prometheus metrics.

``python -m podbgp.node.wiring -c node.yaml`` runs the node agent with felix (what ``podbgp
node`` runs once the CLI passes this factory).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
from typing import Any

from bgpd.fsm import State
from felix.dataplane import Dataplane
from felix.kernel.netlink import Netlink
from felix.plan import RouteType, Scope

log = logging.getLogger("podbgp.felix.node")

IPV4_UNICAST = (1, 1)
CONVERGE_POLL = 0.5  # seconds between End-of-RIB checks
DEFAULT_CONVERGE_TIMEOUT = 60.0


class NodeDataplane:
    """The object ``NodeAgent`` starts and stops; owns one :class:`Dataplane`."""

    def __init__(self, agent: Any, converge_timeout: float = DEFAULT_CONVERGE_TIMEOUT) -> None:
        self.agent = agent
        self.converge_timeout = converge_timeout
        self.dataplane: Dataplane | None = None
        self._early: dict[tuple[int, bytes], Any] = {}  # routes seen before start()
        self._tasks: list[asyncio.Task[None]] = []
        agent.route_listeners.append(self.on_route)
        agent.on_speaker.append(self.on_speaker)
        agent.on_topology.append(self.on_topology)
        agent.status_extra["felix"] = self.snapshot

    # -- agent hooks -----------------------------------------------------------------------

    def on_route(self, afi: int, prefix_wire: bytes, best: Any) -> None:
        if self.dataplane is None:
            self._early[(afi, prefix_wire)] = best
            return
        self.dataplane.on_route(afi, prefix_wire, best)

    def on_speaker(self, speaker: Any) -> None:
        if self.dataplane is not None and self._tasks:
            self.dataplane.forget_routes()
            self._tasks[1].cancel()
            self._tasks[1] = asyncio.create_task(self._watch_convergence(), name="felix-eor")

    def on_topology(self, agent: Any) -> None:
        if self.dataplane is None:
            return
        self.dataplane.set_pools(agent.pools)
        self.dataplane.set_blocks(agent.blocks)
        self.dataplane.set_nodes(n for name, n in agent.nodes.items() if name != agent.name)

    def snapshot(self) -> dict[str, Any]:
        if self.dataplane is None:
            return {"running": False}
        return {"running": True, **self.dataplane.snapshot()}

    def metrics(self) -> dict[str, Any]:
        """felix's part of ``/metrics`` (see podbgp.ops.metrics for the keys)."""
        if self.dataplane is None:
            return {}
        stats = self.dataplane.reconciler.stats
        plan = self.dataplane.reconciler.last_plan
        kinds: dict[str, int] = {}
        for route in plan.routes.values() if plan else ():
            kind = route_kind(route.type, route.dev, route.scope, self.dataplane.uplink)
            kinds[kind] = kinds.get(kind, 0) + 1
        return {
            "routes_programmed": kinds,
            "reconcile_runs": stats.syncs,
            "reconcile_errors": stats.errors,
            "last_reconcile_timestamp": stats.last_sync or None,
        }

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.agent.config
        address = self.agent.address
        if not address:
            raise ValueError("felix needs the node's address with its prefix length")
        uplink = config.interface or await find_interface(address)
        self.dataplane = Dataplane(
            self.agent.name,
            address,
            uplink,
            config.route_protocol,
            config.mtu,
            resync_interval=float(config.felix.resync_interval),
            converge_timeout=self.converge_timeout,
            address_source=self._assign_tunnel_address,
            vtep_publisher=self._publish_vtep,
        )
        for (afi, wire), best in self._early.items():
            self.dataplane.on_route(afi, wire, best)
        self._early.clear()
        self.on_topology(self.agent)
        self._tasks = [
            asyncio.create_task(self.dataplane.run(), name="felix"),
            asyncio.create_task(self._watch_convergence(), name="felix-eor"),
        ]

    async def stop(self) -> None:
        """Stop felix; kernel routes stay installed (the next start adopts them)."""
        if self.dataplane is not None:
            await self.dataplane.stop()
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)

    async def _assign_tunnel_address(self, handle: str) -> str:
        ip, _block = await self.agent.store.assign_address(self.agent.name, handle)
        return str(ip)

    async def _publish_vtep(self, vtep: dict[str, str]) -> None:
        await self.agent.store.update_node_status(self.agent.name, vtep=dict(vtep))

    async def _watch_convergence(self) -> None:
        """Mark converged once every peer has sent End-of-RIB (the timeout is felix's own)."""
        assert self.dataplane is not None
        while not self.dataplane.reconciler.converged:
            if speaker_converged(self.agent):
                log.info("event=end-of-rib-from-all-peers")
                self.dataplane.mark_converged()
                return
            await asyncio.sleep(CONVERGE_POLL)


def speaker_converged(agent: Any) -> bool:
    """The agent has synced, and every peer is Established with End-of-RIB for IPv4."""
    speaker = agent.speaker
    if speaker is None or not agent.health.synced:
        return False
    return all(
        peer.session.state == State.ESTABLISHED and IPV4_UNICAST in peer.eor_received
        for peer in speaker.peers.values()
    )


def route_kind(rtype: RouteType, dev: str | None, scope: Scope, uplink: str) -> str:
    """Metric label for a route: blackhole, pod, ipip, vxlan, direct."""
    if rtype == RouteType.BLACKHOLE:
        return "blackhole"
    if scope == Scope.LINK:
        return "pod"
    if dev == "tunl0":
        return "ipip"
    if dev == "vxlan.podbgp":
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


def node_dataplane_factory(agent: Any) -> NodeDataplane:
    """The ``dataplane_factory`` for ``podbgp.node.agent.NodeAgent``."""
    return NodeDataplane(agent)


def main(argv: list[str] | None = None) -> int:
    """Run ``podbgp node`` with felix: ``python -m podbgp.node.wiring -c node.yaml``."""
    from bgpd.configcheck import ConfigError
    from podbgp.cli import setup_logging
    from podbgp.node.agent import run_node
    from podbgp.node.config import load_node_config

    parser = argparse.ArgumentParser(prog="podbgp.node.wiring", description=main.__doc__)
    parser.add_argument("-c", "--config", required=True)
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    try:
        config = load_node_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.log_level)
    factory = node_dataplane_factory if config.felix.enabled else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_node(config, factory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
