"""``podbgp node`` as a running service: the agent (:mod:`podbgp.node.agent`) with its REST API
and the process around it (signals, systemd notification).

The API adds ``GET /v1/node``, ``GET /v1/cluster/peers`` and ``POST /v1/drain`` to the shared
operations endpoints (``/v1/status``, ``/v1/peers``, ``/v1/routes``, ``/metrics``, health), which
read the node through :class:`NodeViews`: the current speaker's views plus the datastore's health.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from typing import Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from bgpd.config import read_token_file
from podbgp.cluster.datastore import NodeInfo
from podbgp.daemon import start_operations
from podbgp.node.agent import DataplaneFactory, NodeAgent
from podbgp.node.cluster_peers import gather_cluster_peers
from podbgp.node.config import NodeConfig
from podbgp.node.peering import Topology
from podbgp.ops import sdnotify
from podbgp.ops.drain import DRAIN_DOC, DRAIN_PATH, drain_route
from podbgp.ops.openapi import CLUSTER_PEERS_DOC
from podbgp.ops.schema import DatastoreView, PeerView, RouteView, StatusView
from podbgp.ops.views import SpeakerViews

DRAIN_TIME = 30  # seconds of POST /v1/drain when the request names none (RFC 8326)
log = logging.getLogger("podbgp.node")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def datastore_view(agent: NodeAgent) -> DatastoreView:
    """How the agent's datastore connection is doing, as ``/v1/status`` and ``/v1/node`` say."""
    h = agent.health
    return {
        "type": agent.store.type,
        "description": agent.store.description,
        "connected": h.connected,
        "synced": h.synced,
        "lastError": h.last_error,
        "lastErrorAt": _iso(h.last_error_at),
        "lastSyncAt": _iso(h.last_sync_at),
    }


class NodeViews:
    """The REST API's view of the node: the current speaker's, plus datastore state."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def _views(self) -> SpeakerViews | None:
        speaker = self.agent.speaker
        return SpeakerViews(speaker, self.agent.name) if speaker is not None else None

    def status(self) -> StatusView:
        views = self._views()
        out: StatusView
        if views is not None:
            out = views.status()
        else:
            out = {
                "nodeName": self.agent.name,
                "routerId": self.agent.router_id,
                "asNumber": None,
                "uptimeSeconds": int(time.time() - self.agent.started),
                "peers": {},
                "routes": 0,
            }
        out["addresses"] = list(self.agent.addresses)
        out["datastore"] = datastore_view(self.agent)
        if self.agent.topology is not None:
            out["reflection"] = reflection(self.agent.topology)
        return out

    def peers(self) -> list[PeerView]:
        views = self._views()
        return views.peers() if views is not None else []

    def routes(self, detail: bool = False) -> list[RouteView]:
        views = self._views()
        return views.routes(detail) if views is not None else []

    def node(self) -> dict[str, Any]:
        """``GET /v1/node``: this node as registered, plus datastore, IPAM and topology."""
        agent = self.agent
        node = agent.node or NodeInfo(name=agent.name, addresses=agent.addresses)
        out = node.to_json()
        out["labels"] = node.label_map
        out["pools"] = [
            {
                "name": p.name,
                "cidr": p.cidr,
                "blockSize": p.block_size,
                "ipipMode": p.ipip_mode,
                "vxlanMode": p.vxlan_mode,
                "natOutgoing": p.nat_outgoing,
                "disabled": p.disabled,
            }
            for p in agent.pools
        ]
        out["datastore"] = datastore_view(agent)
        out["ipam"] = {"blocks": list(agent.blocks), "error": agent.ipam_error}
        topo = agent.topology
        out["topology"] = {
            "mesh": topo.mesh if topo else None,
            # explicit (routeReflectorClusterID) or elected (routeReflectors: auto)
            "routeReflector": bool(node.route_reflector_cluster_id)
            or bool(topo and topo.elected_reflector),
            "clusterID": topo.speaker.cluster_id if topo else None,
            "electedReflector": bool(topo and topo.elected_reflector),
            "steppingDown": agent.role.stepping_down,  # still reflecting, restarting soon
            "routeReflectors": topo.election.to_json() if topo else None,
            "peers": dict(topo.reasons) if topo else {},
            "handover": agent.handover.status(),
        }
        if agent.dataplane is not None:
            out["felix"] = agent.dataplane.status()
        return out


def reflection(topo: Topology) -> str:
    """One line for ``podbgp status``: what part this node plays in route reflection."""
    election = topo.election
    if election.active:
        share = f"({len(election.reflectors)} of {election.nodes} nodes)"
        if topo.elected_reflector:
            return f"elected route reflector, cluster ID {election.cluster_id} {share}"
        return f"client of elected reflectors {', '.join(election.reflectors)} {share}"
    if topo.speaker.cluster_id is not None:
        return f"route reflector, cluster ID {topo.speaker.cluster_id}"
    if election.mode == "mesh":
        return f"node-to-node mesh (automatic reflectors: {election.reason})"
    return "node-to-node mesh" if topo.mesh else "no mesh"


async def start_node_api(agent: NodeAgent) -> web.AppRunner | None:
    """Serve the node's API as its config says (None without an ``api`` section). Raises
    OSError/ValueError when it cannot listen."""
    views = NodeViews(agent)

    async def node_handler(request: web.Request) -> web.Response:
        return web.json_response(text=json.dumps(views.node(), default=str))

    async def cluster_handler(request: web.Request) -> web.Response:
        api = agent.config.api
        token = read_token_file(api.token_file) if api and api.token_file else None
        answer = await gather_cluster_peers(agent.nodes.values(), agent.name, views.peers, token)
        return web.json_response(answer)

    def ready() -> str | None:
        if not agent.health.synced:
            return f"datastore not synced: {agent.health.last_error or 'connecting'}"
        return None

    return await start_operations(
        views,
        agent.config.api,
        CollectorRegistry(),
        felix=agent.dataplane.metrics if agent.dataplane is not None else None,
        datastore=agent.datastore_metrics,
        routes=[
            web.get("/v1/node", node_handler),
            web.get("/v1/cluster/peers", cluster_handler),
            drain_route(
                lambda: agent.speaker,
                drain_time=DRAIN_TIME,
                message=f"podbgp node {agent.name} is draining",
            ),
        ],
        docs={"/v1/cluster/peers": CLUSTER_PEERS_DOC, DRAIN_PATH: DRAIN_DOC},
        ready_checks=[ready],
    )


async def run_node(config: NodeConfig, dataplane_factory: DataplaneFactory | None = None) -> None:
    """Run the node agent until SIGTERM/SIGINT; a start failure exits with status 1."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    agent = NodeAgent(config, dataplane_factory)
    notifier = sdnotify.Notifier()
    watchdog: asyncio.Task[None] | None = None
    runner: web.AppRunner | None = None
    try:
        try:
            runner = await start_node_api(agent)
            await agent.start()
        except (OSError, ValueError) as exc:
            log.error("event=start-failed error=%s", exc)
            raise SystemExit(1) from None
        watchdog = sdnotify.start_watchdog(notifier)
        # systemd hears READY=1 once the datastore is synced, not merely when we started; until
        # then `systemctl status` says what the start waits for.
        notifier.status(f"node {config.node_name}: waiting for the datastore to sync")
        ready = asyncio.create_task(agent.wait_synced(), name="node-ready")
        ready.add_done_callback(
            lambda t: t.cancelled() or notifier.ready(f"node {config.node_name} synced")
        )
        await stop.wait()
        ready.cancel()
    finally:
        notifier.stopping()
        await sdnotify.stop_watchdog(watchdog)
        log.info("event=stopping node=%s graceful=true", config.node_name)
        await agent.stop()
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
