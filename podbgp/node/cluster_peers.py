"""`GET /v1/cluster/peers`: every registered node's BGP peers in one answer.

The node asks each registered node's REST API (the ``apiAddress`` in its registration) for
``/v1/peers`` concurrently, with one deadline for the whole gathering, and answers its own part
from memory. A node that does not answer in time, refuses, or has no API is listed with
``reachable: false`` and why. A node whose API listens on loopback only cannot be asked from
another node, and is not: asking ``127.0.0.1`` would reach the asking node itself and show its
peers under the other node's name. Nodes off loopback need the API token: the cluster shares
one token, so this node's own token file is sent along.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import aiohttp

from bgpd.config import is_loopback_host
from podbgp.cluster.datastore.records import NodeInfo
from podbgp.ops.schema import ClusterNodeView, ClusterPeersView, PeerView

DEADLINE = 3.0  # seconds for the whole gathering


def api_host(api_address: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    host, _, _port = api_address.rpartition(":")
    return host.strip("[]")


def loopback_only(api_address: str) -> str | None:
    """Why a node's API cannot be asked from another node, or None when it can."""
    if is_loopback_host(api_host(api_address)):
        return (
            f"its API listens on loopback only ({api_address}); set api.listen on that node to "
            "an address other nodes can reach"
        )
    return None


Askable = Callable[[str], str | None]


async def _ask(
    session: aiohttp.ClientSession, node: NodeInfo, headers: dict[str, str], askable: Askable
) -> ClusterNodeView:
    entry: ClusterNodeView = {
        "name": node.name, "apiAddress": node.api_address, "reachable": False, "error": None,
        "peers": [],
    }  # fmt: skip
    if not node.api_address:
        entry["error"] = "no API address registered"
        return entry
    why_not = askable(node.api_address)
    if why_not is not None:
        entry["error"] = why_not
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
    own_peers: Callable[[], list[PeerView]],
    token: str | None,
    deadline: float = DEADLINE,
    askable: Askable = loopback_only,
) -> ClusterPeersView:
    """Every node's peers; ``askable`` says which registered API addresses may be asked."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    others = sorted((n for n in nodes if n.name != own_name), key=lambda n: n.name)
    timeout = aiohttp.ClientTimeout(total=deadline)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(_ask(session, n, headers, askable) for n in others))
    own_address = next((n.api_address for n in nodes if n.name == own_name), None)
    mine: ClusterNodeView = {
        "name": own_name, "apiAddress": own_address, "reachable": True, "error": None,
        "peers": own_peers(),
    }  # fmt: skip
    return {"nodes": sorted([mine, *answers], key=lambda e: e["name"])}
