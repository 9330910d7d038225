"""`GET /v1/cluster/peers`: every registered node's BGP peers in one answer.

The node asks each registered node's REST API (the ``apiAddress`` in its registration) for
``/v1/peers`` concurrently, with one deadline for the whole gathering, and answers its own part
from memory. A node that does not answer in time, refuses, or has no API is listed with
``reachable: false`` and why. Nodes off loopback need the API token: the cluster shares one
token, so this node's own token file is sent along.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from podbgp.cluster.datastore.records import NodeInfo

DEADLINE = 3.0  # seconds for the whole gathering


async def _ask(
    session: aiohttp.ClientSession, node: NodeInfo, headers: dict[str, str]
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": node.name, "apiAddress": node.api_address, "reachable": False, "error": None,
        "peers": [],
    }  # fmt: skip
    if not node.api_address:
        entry["error"] = "no API address registered"
        return entry
    try:
        url = f"http://{node.api_address}/v1/peers"
        async with session.get(url, headers=headers) as resp:
            if resp.status != 200:
                entry["error"] = f"HTTP {resp.status}"
                return entry
            entry["peers"] = await resp.json()
            entry["reachable"] = True
    except TimeoutError:
        entry["error"] = f"no answer within {DEADLINE:.0f}s"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        entry["error"] = str(exc) or type(exc).__name__
    return entry


async def gather_cluster_peers(
    nodes: Iterable[NodeInfo],
    own_name: str,
    own_peers: Callable[[], list[dict[str, Any]]],
    token: str | None,
    deadline: float = DEADLINE,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    others = sorted((n for n in nodes if n.name != own_name), key=lambda n: n.name)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(_ask(session, n, headers) for n in others))
    mine = {"name": own_name, "apiAddress": None, "reachable": True, "error": None,
            "peers": own_peers()}  # fmt: skip
    return {"nodes": sorted([mine, *answers], key=lambda e: e["name"])}
