"""Who peers with whom: a pure function from cluster resources to one node's desired peers.

Owns the peering rules (Calico's, made explicit):

* **Mesh.** With ``nodeToNodeMeshEnabled``, every node peers over iBGP with every other node of
  the same address family, except route reflectors (nodes with ``routeReflectorClusterID``),
  which leave the mesh. Each mesh session is one-directional: the node with the lower address
  is passive and waits for the higher one to connect, so two restarting nodes never race two
  connections (graceful restart, RFC 4724, stays clean).
* **BGPPeer.** Applies to the nodes named by ``node`` or ``nodeSelector`` (neither: all nodes,
  a *global* peer). ``peerIP`` adds that router (port 179 unless written ``ip:port``).
  ``peerSelector`` peers the node with every selected node, and — so both ends agree — every
  selected node with the nodes the BGPPeer applies to. Between two podbgp nodes the lower
  address is passive, as in the mesh.
* **Reflection** (RFC 4456). Seen from a reflector, a non-reflector iBGP peer is a client
  (``rr_client``, type ``rr-client``); seen from a client, the reflector's type is
  ``route-reflector``. Two reflectors peer as ordinary (non-client) iBGP peers.
* **Automatic reflectors** (``BGPConfiguration.spec.routeReflectors: auto``,
  :mod:`podbgp.node.election`). While the election is active, the elected nodes are reflectors
  with the configured cluster ID, the mesh is off, every other node peers with every elected
  reflector (each family both have) and the reflectors peer with each other as non-clients.
* Explicit BGPPeers win over the mesh and the automatic reflector sessions for the same address;
  among BGPPeers the first by name.
* **Policy.** A BGPPeer's ``filters`` name BGPFilters, applied in order; a name with no
  BGPFilter behind it rejects everything (fail closed at the network edge). A router that is
  not a cluster node (``peerIP`` of no node) is *external*: it receives only what the cluster
  owns (``owned_only``: prefixes inside an IP pool) unless a filter accepts more.
* **BFD** (RFC 5882). A BGPPeer's ``bfd`` applies to its sessions; sessions between two nodes
  without one (the mesh, reflector peerings) take ``BGPConfiguration.nodeMeshBFD``. A node on
  this node's subnet gets a single-hop BFD session, any other a multihop one (both answered).

No I/O here: the node agent diffs the result against its speaker's peers.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bgpd import bgpfilter
from bgpd.bfd.peering import bfd_settings
from bgpd.prefix_limit import MaxPrefixes
from bgpd.speaker import PeerSpec, SpeakerConfig
from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.resources import BGPConfiguration, BGPPeer
from podbgp.node.election import Election, elect

__all__ = ["Topology", "compute_topology", "node_asn"]

EXTERNAL_BGP_PORT = 179


@dataclass(frozen=True)
class Topology:
    """A node's desired BGP setup."""

    node: str
    speaker: SpeakerConfig
    listen_port: int
    mesh: bool  # this node takes part in the node-to-node mesh
    peers: Mapping[str, PeerSpec] = field(default_factory=dict)  # by peer address
    reasons: Mapping[str, str] = field(default_factory=dict)  # address -> why ("mesh", ...)
    election: Election = field(default_factory=lambda: Election("off"))  # automatic reflectors

    @property
    def elected_reflector(self) -> bool:
        return self.node in self.election.reflectors


def node_asn(node: NodeInfo, config: BGPConfiguration) -> int:
    return node.as_number if node.as_number is not None else config.as_number


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def _applies_to(peer: BGPPeer, node: NodeInfo) -> bool:
    """Does ``peer`` (a BGPPeer resource) configure sessions on ``node``?"""
    if peer.node is not None:
        return peer.node == node.name
    if peer.node_selector is not None:
        return peer.node_selector.matches(node.label_map)
    return True


class _Builder:
    def __init__(
        self, me: NodeInfo, config: BGPConfiguration, filters: Mapping[str, bgpfilter.BGPFilter]
    ) -> None:
        self.me = me
        self.config = config
        self.filters = filters
        self.asn = node_asn(me, config)
        self.reflector = me.route_reflector_cluster_id is not None
        self.peers: dict[str, PeerSpec] = {}
        self.reasons: dict[str, str] = {}

    def filters_of(self, peer: BGPPeer | None) -> tuple[bgpfilter.BGPFilter, ...]:
        if peer is None:
            return ()
        return tuple(self.filters.get(name) or deny_all(name) for name in peer.filters)

    def my_address(self, version: int) -> str | None:
        return self.me.address(version)

    def same_subnet(self, address: str) -> bool:
        """``address`` lies inside the network of one of this node's addresses."""
        ip = _ip(address)
        return any(
            ip in ipaddress.ip_interface(text).network
            for text in self.me.addresses
            if "/" in text and ipaddress.ip_interface(text).version == ip.version
        )

    def add(self, spec: PeerSpec, reason: str, *, override: bool) -> None:
        if spec.address in self.peers and not override:
            return
        if spec.address in self.peers and self.reasons[spec.address] != "mesh":
            return  # an earlier BGPPeer already claimed this address
        self.peers[spec.address] = spec
        self.reasons[spec.address] = reason

    def node_peer(
        self,
        other: NodeInfo,
        version: int,
        peer_type: str,
        password: str | None,
        reason: str,
        bgp_peer: BGPPeer | None = None,
    ) -> None:
        mine, theirs = self.my_address(version), other.address(version)
        if mine is None or theirs is None or mine == theirs:
            return
        other_asn = node_asn(other, self.config)
        other_reflector = other.route_reflector_cluster_id is not None
        rr_client = False
        if other_asn == self.asn and peer_type != "mesh":
            if self.reflector and not other_reflector:
                peer_type, rr_client = "rr-client", True
            elif other_reflector:
                peer_type = "route-reflector"
        bfd = bgp_peer.bfd if bgp_peer is not None else None  # {enabled: false} wins too
        spec = PeerSpec(
            address=theirs,
            asn=other_asn,
            port=self.config.listen_port,
            passive=int(_ip(mine)) < int(_ip(theirs)),  # same family: numeric order
            password=password,
            source_address=mine,
            description=f"node {other.name}",
            peer_type=peer_type,
            rr_client=rr_client,
            keep_next_hop=bgp_peer.keep_original_next_hop if bgp_peer else False,
            next_hop_self=bgp_peer.next_hop_self if bgp_peer else False,
            local_asn=bgp_peer.local_as_number if bgp_peer else None,
            restart_time=bgp_peer.max_restart_time if bgp_peer else None,
            ttl_security=bgp_peer.ttl_security if bgp_peer else 0,
            filters=self.filters_of(bgp_peer),
            max_prefixes=_max_prefixes(bgp_peer),
            bfd=bfd_settings(bfd or self.config.node_mesh_bfd, not self.same_subnet(theirs)),
            long_lived_stale_time=bgp_peer.long_lived_stale_time if bgp_peer else None,
        )
        self.add(spec, reason, override=peer_type != "mesh")


def compute_topology(
    node_name: str,
    nodes: Mapping[str, NodeInfo],
    config: BGPConfiguration,
    bgp_peers: Sequence[BGPPeer],
    filters: Mapping[str, bgpfilter.BGPFilter] | None = None,
) -> Topology:
    """The peers ``node_name`` should have. ``nodes`` must contain the node itself, with its
    addresses and router ID (the agent supplies its own view before registration lands)."""
    election = elect(config, nodes)
    if election.active:  # the elected nodes act as reflectors with the configured cluster ID
        nodes = {
            name: replace(n, route_reflector_cluster_id=election.cluster_id)
            if name in election.reflectors
            else n
            for name, n in nodes.items()
        }
    me = nodes[node_name]
    b = _Builder(me, config, filters or {})
    others = [n for name, n in sorted(nodes.items()) if name != node_name]
    mesh = config.node_to_node_mesh_enabled and not b.reflector and not election.active
    if mesh:
        for other in others:
            if other.route_reflector_cluster_id is None:
                for version in (4, 6):
                    b.node_peer(other, version, "mesh", config.node_mesh_password, "mesh")
    by_address = {addr: n for n in others for v in (4, 6) if (addr := n.address(v))}
    for peer in sorted(bgp_peers, key=lambda p: p.name):
        reason = f"BGPPeer/{peer.name}"
        local_type = "global" if peer.is_global else "node"
        if peer.peer_ip is not None:
            if not _applies_to(peer, me):
                continue
            known = by_address.get(peer.peer_ip)
            if known is not None and peer.peer_port is None:
                version = _ip(peer.peer_ip).version
                b.node_peer(known, version, local_type, peer.password, reason, peer)
            else:
                _external_peer(b, peer, local_type, reason)
        elif peer.interface is not None:
            if _applies_to(peer, me):
                _unnumbered_peer(b, peer, local_type, reason)
        elif peer.peer_selector is not None:
            forward = _applies_to(peer, me)
            reverse = peer.peer_selector.matches(me.label_map)
            for other in others:
                if (forward and peer.peer_selector.matches(other.label_map)) or (
                    reverse and _applies_to(peer, other)
                ):
                    for version in (4, 6):
                        b.node_peer(other, version, local_type, peer.password, reason, peer)
    if election.active:  # after the BGPPeers: an explicit one for the same address wins
        for other in others:
            if b.reflector or other.name in election.reflectors:
                for version in (4, 6):
                    b.node_peer(
                        other,
                        version,
                        "route-reflector",
                        config.node_mesh_password,
                        "auto-reflector",
                    )
    speaker = SpeakerConfig(
        asn=b.asn,
        router_id=me.router_id or me.address(4) or "0.0.0.0",
        graceful_restart=True,
        restart_time=config.node_mesh_max_restart_time,
        cluster_id=me.route_reflector_cluster_id,
        ebgp_requires_policy=config.ebgp_requires_policy,
        long_lived_stale_time=config.node_mesh_long_lived_stale_time,
    )
    return Topology(node_name, speaker, config.listen_port, mesh, b.peers, b.reasons, election)


def _external_peer(b: _Builder, peer: BGPPeer, peer_type: str, reason: str) -> None:
    assert peer.peer_ip is not None and peer.as_number is not None
    version = _ip(peer.peer_ip).version
    mine = b.my_address(version)
    if mine is None or mine == peer.peer_ip:
        return
    spec = _router_spec(
        b, peer, peer_type, reason,
        address=peer.peer_ip,
        port=peer.peer_port or EXTERNAL_BGP_PORT,
        source_address=mine,
        extended_next_hop=bool(peer.extended_next_hop),
    )  # fmt: skip
    b.add(spec, reason, override=True)


def _unnumbered_peer(b: _Builder, peer: BGPPeer, peer_type: str, reason: str) -> None:
    """A router on the link ``interface``: keyed ``%interface`` until bgpd.unnumbered finds
    its link-local address; Extended Next Hop on unless the BGPPeer turns it off."""
    spec = _router_spec(
        b, peer, peer_type, reason,
        address=f"%{peer.interface}",
        interface=peer.interface,
        extended_next_hop=peer.extended_next_hop is not False,
    )  # fmt: skip
    b.add(spec, reason, override=True)


def _router_spec(b: _Builder, peer: BGPPeer, peer_type: str, reason: str, **where: Any) -> PeerSpec:
    """A session to a router that is not a cluster node; ``where``: how to reach it."""
    assert peer.as_number is not None
    return PeerSpec(
        asn=peer.as_number,
        password=peer.password,
        description=reason,
        peer_type=peer_type,
        keep_next_hop=peer.keep_original_next_hop,
        next_hop_self=peer.next_hop_self,
        local_asn=peer.local_as_number,
        restart_time=peer.max_restart_time,
        ttl_security=peer.ttl_security,
        filters=b.filters_of(peer),
        owned_only=True,
        max_prefixes=_max_prefixes(peer),
        bfd=bfd_settings(peer.bfd),  # hop mode from the kernel's routes when the session starts
        long_lived_stale_time=peer.long_lived_stale_time,
        **where,
    )


def _max_prefixes(peer: BGPPeer | None) -> MaxPrefixes | None:
    limit = peer.max_prefixes if peer is not None else None
    if limit is None:
        return None
    return MaxPrefixes(limit.limit, limit.warning_threshold, limit.restart_after)


def deny_all(name: str) -> bgpfilter.BGPFilter:
    """What a BGPPeer gets for a filter name with no BGPFilter: every route rejected."""
    reject = (bgpfilter.Rule(bgpfilter.RuleAction.REJECT),)
    return bgpfilter.BGPFilter(name, reject, reject, reject, reject)
