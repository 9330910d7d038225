"""Automatic route reflectors: which nodes reflect, a pure function of the datastore view.

Owns :func:`elect`. Every node runs it over the same nodes and the same
``BGPConfiguration.spec.routeReflectors`` (:mod:`podbgp.cluster.reflectors`) and so reaches the
same answer, whatever order the datastore listed them in.

**When.** The cluster counts its nodes (those with an address). At ``nodeThreshold`` or more it
uses reflectors; below ``nodeThreshold - hysteresis`` the mesh. In the band between, it keeps
what it has: reflectors while some node still registers itself as an elected reflector
(``NodeInfo.elected_reflector``, which each agent publishes from its own last election), the
mesh otherwise. The datastore is the memory, so a node that starts in the band agrees with the
others. Nodes with ``routeReflectorClusterID`` (reflectors chosen by hand) switch the automatic
choice off: the two ways do not mix (``podbgp apply`` refuses the combination too).

**Who.** ``count`` seats, filled in four rounds until none is left: nodes that match
``candidateSelector`` and are reflectors now, other nodes that match it, then reflectors now that
do not match, then every other node. An elected reflector therefore stays elected while it is
eligible, and a node that joins does not reshuffle the reflectors, but a node labelled as a
candidate takes the seat of an unlabelled one. Within a round, each seat goes to the node whose
subnet (its IPv4 address's network, else its IPv6's) holds the fewest seats so far, ties broken by
subnet and then by name: the reflectors spread over the subnets, round robin. Eligible: a
registered node (an agent runs there) with an address, in the cluster's AS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import BGPConfiguration

__all__ = ["Election", "elect", "election_change"]

# Modes, as the status shows them.
OFF = "off"  # no routeReflectors setting, or mode off
EXPLICIT = "explicit"  # nodes with routeReflectorClusterID: the automatic choice stands aside
MESH = "mesh"  # automatic, below the threshold
REFLECTORS = "reflectors"  # automatic, the elected nodes reflect


@dataclass(frozen=True)
class Election:
    mode: str
    nodes: int = 0  # nodes counted
    reflectors: tuple[str, ...] = ()  # elected node names, sorted
    cluster_id: str | None = None
    reason: str = ""

    @property
    def active(self) -> bool:
        return self.mode == REFLECTORS

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "nodes": self.nodes,
            "reflectors": list(self.reflectors),
            "clusterID": self.cluster_id,
            "reason": self.reason,
        }


def elect(config: BGPConfiguration, nodes: Mapping[str, NodeInfo]) -> Election:
    """The cluster's reflector mode and elected reflectors (see the module docstring)."""
    rr = config.route_reflectors
    if rr is None or not rr.auto:
        return Election(OFF, reason="routeReflectors not set to auto")
    counted = [n for n in nodes.values() if n.addresses]
    explicit = sorted(n.name for n in counted if n.route_reflector_cluster_id)
    if explicit:
        return Election(
            EXPLICIT, len(counted), reason=f"Node/{explicit[0]} has routeReflectorClusterID"
        )
    n = len(counted)
    incumbents = {node.name for node in counted if node.elected_reflector}
    if n >= rr.node_threshold:
        why = f"{n} nodes >= nodeThreshold {rr.node_threshold}"
    elif n < rr.mesh_below:
        return Election(MESH, n, reason=f"{n} nodes < {rr.mesh_below} (nodeThreshold - hysteresis)")
    elif incumbents:
        why = f"{n} nodes, inside the hysteresis band: reflectors stay"
    else:
        return Election(MESH, n, reason=f"{n} nodes, inside the hysteresis band: the mesh stays")
    eligible = [
        node for node in counted if node.registered and node.as_number in (None, config.as_number)
    ]
    chosen = _seats(rr, eligible, incumbents)
    if not chosen:
        return Election(MESH, n, reason="no eligible node to elect")
    return Election(REFLECTORS, n, tuple(sorted(chosen)), rr.cluster_id, why)


def election_change(was: Election | None, now: Election, elected: bool) -> str | None:
    """The log line (``key=value`` pairs) for a switch of mode or of the elected set, or None
    when nothing changed (or, at start, automatic reflectors are not configured)."""
    if was is not None and (was.mode, was.reflectors) == (now.mode, now.reflectors):
        return None
    if was is None and now.mode == OFF:
        return None
    role = "reflector" if elected else "client" if now.active else "mesh"
    return (
        f"mode={now.mode} nodes={now.nodes} reflectors={','.join(now.reflectors) or '-'} "
        f"cluster_id={now.cluster_id or '-'} self={role} reason={now.reason!r}"
    )


def _seats(rr: RouteReflectors, eligible: list[NodeInfo], incumbents: set[str]) -> list[str]:
    def preferred(node: NodeInfo) -> bool:
        return rr.candidate_selector is None or rr.candidate_selector.matches(node.label_map)

    rounds = [
        [n for n in eligible if preferred(n) and n.name in incumbents],
        [n for n in eligible if preferred(n) and n.name not in incumbents],
        [n for n in eligible if not preferred(n) and n.name in incumbents],
        [n for n in eligible if not preferred(n) and n.name not in incumbents],
    ]
    chosen: list[str] = []
    per_subnet: dict[tuple[int, int, int], int] = {}
    for pool in rounds:
        _fill(pool, rr.count - len(chosen), chosen, per_subnet)
    return chosen


def _fill(
    pool: Iterable[NodeInfo],
    seats: int,
    chosen: list[str],
    per_subnet: dict[tuple[int, int, int], int],
) -> None:
    """Give up to ``seats`` seats to ``pool``, each to the least represented subnet."""
    left = {node.name: _subnet(node) for node in pool}
    for _ in range(max(seats, 0)):
        if not left:
            return
        name = min(left, key=lambda m: (per_subnet.get(left[m], 0), left[m], m))
        per_subnet[left[name]] = per_subnet.get(left[name], 0) + 1
        chosen.append(name)
        del left[name]


def _subnet(node: NodeInfo) -> tuple[int, int, int]:
    """The node's subnet as a sortable key (version, network, prefix length)."""
    ifaces = sorted((ipaddress.ip_interface(a) for a in node.addresses), key=lambda i: i.version)
    net = ifaces[0].network
    return (net.version, int(net.network_address), net.prefixlen)
