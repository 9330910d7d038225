"""Records the daemons write (not users): node registrations, IPAM blocks and handles.

Owns their JSON form and the key layout under the datastore prefix, split by who reads it::

    watched by every node agent (small; changes only when the cluster's shape changes)
    resources/<Kind>/<name>          a cluster resource (podbgp.cluster.resources, canonical JSON)
    nodes/<name>                     a node's registration, written by its agent
    ipam/affinity/<node>/<cidr>      block -> node: the node's claim on a block ({node, cidr, pool})

    read only by IPAM on the owning node and by ``podbgp ipam`` (change with every pod)
    ipam/blocks/<cidr>               a block: owning node, pool, allocations {ip: handle}
    ipam/handles/<handle>            a handle's addresses (one per family) and their blocks

A claim writes the block and its affinity in one transaction, so the two always agree; pod
churn rewrites only ``ipam/blocks/`` and ``ipam/handles/``, which no agent watches, so a pod
added on one node wakes no other node. :data:`WATCHED` names the watched prefixes.

:func:`merge_node` gives the effective view of a node (the administrator's ``Node`` resource
wins for labels, AS and cluster ID; the agent's registration for addresses, router ID, API
address, blocks and VTEP). Implements no RFC.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from podbgp.cluster.resources import Node

RESOURCES = "resources/"
NODES = "nodes/"
BLOCKS = "ipam/blocks/"
AFFINITY = "ipam/affinity/"
HANDLES = "ipam/handles/"
WATCHED = (RESOURCES, NODES, AFFINITY)  # what a node agent snapshots and watches


def resource_key(kind: str, name: str) -> str:
    return f"{RESOURCES}{kind}/{name}"


def node_key(name: str) -> str:
    return f"{NODES}{name}"


def _cidr_part(cidr: str) -> str:
    return cidr.replace("/", "-")


def block_key(cidr: str) -> str:
    return f"{BLOCKS}{_cidr_part(cidr)}"


def affinity_key(node: str, cidr: str) -> str:
    return f"{AFFINITY}{node}/{_cidr_part(cidr)}"


def handle_key(handle: str) -> str:
    return f"{HANDLES}{urllib.parse.quote(handle, safe='')}"


def cidr_of_key(key: str) -> str:
    """The CIDR named by the last part of a block or affinity key (``10.0.1.0-24``)."""
    net, _, length = key.rpartition("/")[2].rpartition("-")
    if not net or not length.isdigit():
        raise ValueError(f"{key}: the key does not end in a block (like 10.0.1.0-24)")
    return f"{net}/{length}"


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def decode(value: bytes) -> dict[str, Any]:
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    return data


def network_order(cidr: str) -> tuple[int, int, int]:
    """A sort key for CIDRs of both families: IPv4 first, then by address and length."""
    net = ipaddress.ip_network(cidr)
    return net.version, int(net.network_address), net.prefixlen


@dataclass(frozen=True)
class NodeInfo:
    """A node as topology, IPAM and felix see it (registration merged with the resource)."""

    name: str
    addresses: tuple[str, ...] = ()  # "192.0.2.11/24"
    as_number: int | None = None  # None: the cluster's BGPConfiguration asNumber
    router_id: str | None = None
    route_reflector_cluster_id: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    api_address: str | None = None  # host:port of the node's REST API
    blocks: tuple[str, ...] = ()
    vtep: dict[str, Any] = field(default_factory=dict, hash=False, compare=True)
    updated: str | None = None  # ISO 8601, when the agent last wrote its registration
    registered: bool = False  # an agent has written a registration for this node
    elected_reflector: bool = False  # the agent acts as an automatically elected reflector

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def address(self, version: int = 4) -> str | None:
        """The bare IP of the given family (``192.0.2.11``), or None."""
        for text in self.addresses:
            iface = ipaddress.ip_interface(text)
            if iface.version == version:
                return str(iface.ip)
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "asNumber": self.as_number,
            "routerId": self.router_id,
            "routeReflectorClusterID": self.route_reflector_cluster_id,
            "labels": dict(self.labels),
            "apiAddress": self.api_address,
            "blocks": list(self.blocks),
            "vtep": dict(self.vtep),
            "updated": self.updated,
            "electedReflector": self.elected_reflector,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInfo:
        return cls(
            name=str(data["name"]),
            addresses=tuple(data.get("addresses") or ()),
            as_number=data.get("asNumber"),
            router_id=data.get("routerId"),
            route_reflector_cluster_id=data.get("routeReflectorClusterID"),
            labels=tuple(sorted((data.get("labels") or {}).items())),
            api_address=data.get("apiAddress"),
            blocks=tuple(data.get("blocks") or ()),
            vtep=dict(data.get("vtep") or {}),
            updated=data.get("updated"),
            registered=True,
            elected_reflector=bool(data.get("electedReflector")),
        )


def merge_node(name: str, resource: Node | None, registration: NodeInfo | None) -> NodeInfo:
    """The effective node: administrator's settings over the agent's, see the module doc."""
    reg = registration or NodeInfo(name=name)
    if resource is None:
        return reg
    return NodeInfo(
        name=name,
        addresses=reg.addresses or resource.addresses,
        as_number=resource.as_number if resource.as_number is not None else reg.as_number,
        router_id=reg.router_id,
        route_reflector_cluster_id=resource.route_reflector_cluster_id,
        labels=resource.labels,
        api_address=reg.api_address,
        blocks=reg.blocks or resource.blocks,
        vtep=reg.vtep,
        updated=reg.updated,
        registered=reg.registered,
        elected_reflector=reg.elected_reflector,
    )


@dataclass(frozen=True)
class Block:
    """An IPAM block: a fixed-size piece of a pool owned (affine to) one node."""

    cidr: str
    pool: str
    node: str
    allocations: tuple[tuple[str, str], ...] = ()  # (ip, handle), sorted by address

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    def to_json(self) -> dict[str, Any]:
        return {
            "cidr": self.cidr,
            "pool": self.pool,
            "node": self.node,
            "allocations": dict(self.allocations),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Block:
        allocs = data.get("allocations") or {}
        ordered = sorted(allocs.items(), key=lambda item: ipaddress.ip_address(item[0]))
        return cls(
            cidr=str(data["cidr"]),
            pool=str(data.get("pool", "")),
            node=str(data["node"]),
            allocations=tuple(ordered),
        )


@dataclass(frozen=True)
class Handle:
    """The addresses one handle holds (``<container id>.<ifname>``, ``tunl0:...``): at most one
    per address family, each with its block, so a dual-stack pod is one handle."""

    handle: str
    addresses: tuple[tuple[str, str], ...]  # (ip, block), IPv4 first
    node: str

    def address(self, version: int) -> tuple[str, str] | None:
        """The (ip, block) of the given family, or None."""
        for ip, block in self.addresses:
            if ipaddress.ip_address(ip).version == version:
                return ip, block
        return None

    def with_address(self, ip: str, block: str) -> Handle:
        """This handle holding ``ip`` (replacing its address of that family, if any)."""
        version = ipaddress.ip_address(ip).version
        kept = [a for a in self.addresses if ipaddress.ip_address(a[0]).version != version]
        ordered = sorted([*kept, (ip, block)], key=lambda a: ipaddress.ip_address(a[0]).version)
        return Handle(self.handle, tuple(ordered), self.node)

    def to_json(self) -> dict[str, Any]:
        return {"handle": self.handle, "addresses": dict(self.addresses), "node": self.node}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Handle:
        raw = data.get("addresses")
        if raw is None:  # written before handles held one address per family
            raw = {data["ip"]: data["block"]}
        if not isinstance(raw, dict) or not raw:
            raise ValueError("handle holds no addresses")
        pairs = sorted(
            ((str(ip), str(block)) for ip, block in raw.items()),
            key=lambda a: ipaddress.ip_address(a[0]).version,
        )
        return cls(str(data["handle"]), tuple(pairs), str(data["node"]))


@dataclass(frozen=True)
class Affinity:
    """Which node owns a block (Calico's block affinity): all routing needs to know of IPAM."""

    cidr: str
    node: str
    pool: str = ""  # empty in records written before podbgp stored it

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)

    def to_json(self) -> dict[str, Any]:
        return {"cidr": self.cidr, "node": self.node, "pool": self.pool}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Affinity:
        return cls(str(data["cidr"]), str(data["node"]), str(data.get("pool") or ""))
