"""Rules that involve several cluster resources, checked before anything is stored.

Owns :func:`check_consistency`: no two pools overlap, every filter a BGPPeer names exists, no two
nodes pin one block and every pinned block is a block of a pool, and automatic route reflectors
(``BGPConfiguration.spec.routeReflectors``) are not mixed with nodes that carry
``routeReflectorClusterID``. Raises :class:`~podbgp.cluster.resources.ResourceError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from podbgp.cluster.reflectors import explicit_conflict
from podbgp.cluster.resources import (
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    IPPool,
    Node,
    Resource,
    ResourceError,
)

__all__ = ["check_consistency"]


def check_consistency(resources: Iterable[Resource]) -> None:
    """The rules of the module docstring, over every resource about to be stored. Raises
    ResourceError naming the resource and field."""
    pools = sorted((r for r in resources if isinstance(r, IPPool)), key=lambda p: p.name)
    for i, a in enumerate(pools):
        for b in pools[i + 1 :]:
            if a.network.version == b.network.version and a.network.overlaps(b.network):
                raise ResourceError(
                    f"IPPool/{b.name}", "spec.cidr", f"{b.cidr} overlaps IPPool/{a.name} ({a.cidr})"
                )
    filters = {r.name for r in resources if isinstance(r, BGPFilter)}
    for peer in (r for r in resources if isinstance(r, BGPPeer)):
        for i, name in enumerate(peer.filters):
            if name not in filters:
                raise ResourceError(
                    f"BGPPeer/{peer.name}", f"spec.filters[{i}]", f"no BGPFilter named {name!r}"
                )
    _check_reflectors(resources)
    owners: dict[str, str] = {}
    for node in (r for r in resources if isinstance(r, Node)):
        for block in node.blocks:
            if block in owners and owners[block] != node.name:
                raise ResourceError(
                    f"Node/{node.name}", "spec.blocks", f"{block} is pinned to Node/{owners[block]}"
                )
            owners[block] = node.name
            _check_pinned(node, block, pools)


def _check_reflectors(resources: Iterable[Resource]) -> None:
    config = next(
        (r for r in resources if isinstance(r, BGPConfiguration) and r.name == "default"), None
    )
    explicit = sorted(
        r.name for r in resources if isinstance(r, Node) and r.route_reflector_cluster_id
    )
    problem = explicit_conflict(config.route_reflectors if config else None, explicit)
    if problem is not None:
        raise ResourceError("BGPConfiguration/default", "spec.routeReflectors", problem)


def _check_pinned(node: Node, block: str, pools: Sequence[IPPool]) -> None:
    net = ipaddress.ip_network(block)
    for pool in pools:
        if net.version == pool.network.version and net.subnet_of(pool.network):  # type: ignore[arg-type]
            if net.prefixlen != pool.block_size:
                raise ResourceError(
                    f"Node/{node.name}",
                    "spec.blocks",
                    f"{block} must be a /{pool.block_size} block of IPPool/{pool.name}",
                )
            return
    raise ResourceError(f"Node/{node.name}", "spec.blocks", f"{block} is not inside any IPPool")
