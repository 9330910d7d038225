"""The cluster-wide peer view: real HTTP on loopback, one answering node, one refusing, one
without an API, one too slow for the deadline — the answer names each, and why.

The "other nodes" here listen on loopback, which a real node never asks (it would reach
itself); these tests lift that rule with ``askable`` and test the rule on its own. The lab's
end-to-end test asks real nodes at their registered namespace addresses."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.node.cluster_peers import gather_cluster_peers, loopback_only
from podbgp.ops.schema import PeerView


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def own_peers() -> list[PeerView]:
    return [IDLE_PEER]


IDLE_PEER: PeerView = {
    "address": "192.0.2.9", "asNumber": 64512, "type": "mesh", "state": "Idle",
    "since": "2026-01-01T00:00:00Z", "info": "", "prefixes": {"received": 0, "accepted": 0,
    "advertised": 0}, "messages": {"sent": 0, "received": 0},
}  # fmt: skip


async def test_a_loopback_api_is_never_asked_and_says_why() -> None:
    """With every node's API on the default 127.0.0.1:9179, asking "node-2" would reach this
    node itself and show its peers under node-2's name: the view must refuse, and say so."""
    hits: list[str] = []

    async def peers(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response([IDLE_PEER])

    app = web.Application()
    app.router.add_get("/v1/peers", peers)
    runner = web.AppRunner(app)
    port = free_port()
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        nodes = [
            NodeInfo("node-1", api_address=f"127.0.0.1:{port}"),
            NodeInfo("node-2", api_address=f"127.0.0.1:{port}"),
            NodeInfo("node-3", api_address=f"[::1]:{port}"),
        ]
        answer = await gather_cluster_peers(nodes, "node-1", own_peers, None, deadline=1.0)
    finally:
        await runner.cleanup()
    assert hits == []  # nobody was asked over HTTP
    by_name = {e["name"]: e for e in answer["nodes"]}
    assert by_name["node-1"]["reachable"] and by_name["node-1"]["peers"] == [IDLE_PEER]
    for name in ("node-2", "node-3"):
        entry = by_name[name]
        assert not entry["reachable"] and entry["peers"] == []
        assert "loopback only" in (entry["error"] or "")


def test_loopback_rule() -> None:
    assert loopback_only("127.0.0.1:9179") is not None
    assert loopback_only("[::1]:9179") is not None
    assert loopback_only("localhost:9179") is not None
    assert loopback_only("192.0.2.12:9179") is None
    assert loopback_only("[2001:db8::12]:9179") is None


async def test_gathers_reachable_and_reports_unreachable_nodes() -> None:
    seen_auth: list[str | None] = []

    async def peers(request: web.Request) -> web.Response:
        seen_auth.append(request.headers.get("Authorization"))
        return web.json_response([{"address": "172.31.1.3", "state": "Established"}])

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2.5)
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/v1/peers", peers)
    slow_app = web.Application()
    slow_app.router.add_get("/v1/peers", slow)
    runners = [web.AppRunner(app), web.AppRunner(slow_app)]
    ports = [free_port(), free_port()]
    for runner, port in zip(runners, ports, strict=True):
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        nodes = [
            NodeInfo("node-1"),
            NodeInfo("node-2", api_address=f"127.0.0.1:{ports[0]}"),
            NodeInfo("node-3", api_address=f"127.0.0.1:{free_port()}"),  # nobody listens
            NodeInfo("node-4"),  # never registered an API
            NodeInfo("node-5", api_address=f"127.0.0.1:{ports[1]}"),  # too slow
        ]
        answer = await gather_cluster_peers(
            nodes, "node-1", own_peers, "t0ken", deadline=1.0, askable=lambda _address: None
        )
    finally:
        for runner in runners:
            await runner.cleanup()
    by_name = {e["name"]: e for e in answer["nodes"]}
    assert [e["name"] for e in answer["nodes"]] == [f"node-{i}" for i in range(1, 6)]
    assert by_name["node-1"]["reachable"] and by_name["node-1"]["peers"][0]["state"] == "Idle"
    assert by_name["node-1"]["apiAddress"] is None  # node-1 registered no API address
    assert by_name["node-2"]["reachable"]
    assert by_name["node-2"]["peers"] == [{"address": "172.31.1.3", "state": "Established"}]
    assert seen_auth == ["Bearer t0ken"]
    for name in ("node-3", "node-4", "node-5"):
        assert not by_name[name]["reachable"] and by_name[name]["error"], by_name[name]
    # The slow node would have answered after 2.5 s: its "no answer" is the 1 s deadline.
    assert "no answer" in by_name["node-5"]["error"]
