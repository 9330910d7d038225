"""Cluster resources: the five kinds, their validation, and their canonical dict form.

Owns ``BGPConfiguration``, ``BGPPeer``, ``BGPFilter``, ``IPPool`` and ``Node`` as frozen
dataclasses (a BGPFilter's rules are :mod:`bgpd.bgpfilter`'s pure model), written
as ``apiVersion: podbgp/v1``, ``kind``, ``metadata`` (``name``, ``labels``) and ``spec`` with
Calico's field names. :func:`parse_resource` validates one document and fails with a one-line
:class:`ResourceError` naming the source, the key and the problem; :func:`to_dict` gives the
canonical form stored in the datastore. Checks that need other resources (overlapping pools,
duplicate names) live in :mod:`podbgp.cluster.consistency`. AS numbers are 4-octet (RFC 6793),
TCP MD5 keys at most 80 octets (RFC 2385), cluster IDs dotted quads (RFC 4456 §7).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bgpd import bgpfilter
from bgpd.bgpfilter_support import check_supported
from bgpd.configcheck import (
    BfdOptions,
    ConfigError,
    FieldError,
    Section,
    bfd_section,
    check_asn,
    check_bool,
    check_enum,
    check_int,
    check_interface_name,
    check_prefix,
    check_router_id,
    check_str,
)
from podbgp.cluster.fields import (
    Labels,
    check_address_with_prefix,
    check_community,
    check_duration,
    check_labels,
    check_long_lived_stale_time,
    check_name,
    check_peer_ip,
    check_restart_after,
    check_selector,
)
from podbgp.cluster.reflectors import RouteReflectors, check_mesh, parse_route_reflectors, to_spec
from podbgp.cluster.selector import ALL, Selector

__all__ = [
    "API_VERSION",
    "KINDS",
    "BGPConfiguration",
    "BGPFilter",
    "BGPPeer",
    "IPPool",
    "Node",
    "Resource",
    "ResourceError",
    "kind_of",
    "parse_resource",
    "to_dict",
]

API_VERSION = "podbgp/v1"
ENCAP_MODES = ("Never", "Always", "CrossSubnet")
DEFAULT_AS = 64512  # the first private 2-octet AS (RFC 6996), Calico's default too
DEFAULT_BLOCK_SIZE_V4 = 24
DEFAULT_BLOCK_SIZE_V6 = 122
# IPv4 blocks lose their network and broadcast addresses to IPAM, so a block must hold at least
# two addresses; very large blocks would starve small pools. IPv6 blocks follow Calico: /116 to
# /128 (a /127 or /128 block hands out every address it has).
BLOCK_SIZE_V4 = (16, 30)
BLOCK_SIZE_V6 = (116, 128)


class ResourceError(ConfigError):
    """An invalid resource: ``SOURCE: KEY: PROBLEM`` on one line (SOURCE names file/document)."""


@dataclass(frozen=True)
class BGPConfiguration:
    """Cluster-wide BGP settings; the one named ``default`` is the one that counts."""

    KIND: ClassVar[str] = "BGPConfiguration"
    name: str
    as_number: int = DEFAULT_AS
    node_to_node_mesh_enabled: bool = True
    listen_port: int = 179
    node_mesh_password: str | None = field(default=None, repr=False)
    node_mesh_max_restart_time: int = 120  # seconds; the Restart Time we advertise (RFC 4724)
    ebgp_requires_policy: bool = False  # RFC 8212 on every node's eBGP sessions
    communities: tuple[tuple[str, str], ...] = ()  # (name, "aa:nn" or "aa:nn:mm")
    # (cidr, community values): routes we advertise inside cidr carry these communities
    prefix_advertisements: tuple[tuple[str, tuple[str, ...]], ...] = ()
    node_mesh_bfd: BfdOptions | None = None  # BFD on mesh and node-to-node (reflector) sessions
    node_mesh_long_lived_stale_time: int = 3600  # RFC 9494, mesh and reflector sessions; 0: off
    route_reflectors: RouteReflectors | None = None  # automatic reflectors (podbgp.node.election)
    labels: Labels = ()


@dataclass(frozen=True)
class PrefixLimit:
    """``BGPPeer.spec.maxPrefixes``: Cease past ``limit`` prefixes per family (RFC 4486)."""

    limit: int
    warning_threshold: int = 75  # percent of the limit: log and metric
    restart_after: int = 0  # seconds until the session starts again; 0 = stay down


@dataclass(frozen=True)
class BGPPeer:
    """Extra peerings. Local side: ``node`` or ``nodeSelector`` (neither: every node).
    Remote side: ``peerIP`` + ``asNumber``, or ``peerSelector`` (those nodes)."""

    KIND: ClassVar[str] = "BGPPeer"
    name: str
    peer_ip: str | None = None
    peer_port: int | None = None  # from "peerIP: 192.0.2.1:1179"
    as_number: int | None = None
    node: str | None = None
    node_selector: Selector | None = None
    peer_selector: Selector | None = None
    password: str | None = field(default=None, repr=False)
    max_restart_time: int | None = None
    keep_original_next_hop: bool = False  # nextHopMode Keep (the field is its older alias)
    next_hop_self: bool = False  # nextHopMode Self
    local_as_number: int | None = None  # the AS the node presents on this session
    ttl_security: int = 0
    filters: tuple[str, ...] = ()  # BGPFilter names, applied in order
    max_prefixes: PrefixLimit | None = None
    bfd: BfdOptions | None = None  # RFC 5882; for node peers it wins over nodeMeshBFD
    long_lived_stale_time: int | None = None  # RFC 9494; None: nodeMeshLongLivedStaleTime
    labels: Labels = ()
    # Unnumbered: the neighbour on this link, over its IPv6 link-local address (no peerIP)
    interface: str | None = None
    extended_next_hop: bool | None = None  # RFC 8950; None: on for unnumbered peers only

    @property
    def is_global(self) -> bool:
        return self.node is None and self.node_selector is None


@dataclass(frozen=True)
class BGPFilter:
    """Calico's BGPFilter: import/export rules per family, named from ``BGPPeer.spec.filters``."""

    KIND: ClassVar[str] = "BGPFilter"
    name: str
    rules: bgpfilter.BGPFilter
    labels: Labels = ()


@dataclass(frozen=True)
class IPPool:
    """A pod address pool, cut into blocks of ``block_size`` that nodes claim."""

    KIND: ClassVar[str] = "IPPool"
    name: str
    cidr: str
    block_size: int = 0  # 0: the family's default (24 for IPv4, 122 for IPv6)
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    node_selector: Selector = ALL
    labels: Labels = ()

    def __post_init__(self) -> None:
        if not self.block_size:
            v4 = self.network.version == 4
            default = DEFAULT_BLOCK_SIZE_V4 if v4 else DEFAULT_BLOCK_SIZE_V6
            object.__setattr__(self, "block_size", default)

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.cidr)


@dataclass(frozen=True)
class Node:
    """A node as the administrator declares it. The running agent's own view (router ID, API
    address, blocks, VTEP) is its registration record, merged in
    ``podbgp.cluster.datastore.records``."""

    KIND: ClassVar[str] = "Node"
    name: str
    addresses: tuple[str, ...] = ()  # with prefix length: "192.0.2.11/24"
    as_number: int | None = None
    route_reflector_cluster_id: str | None = None
    blocks: tuple[str, ...] = ()  # pinned blocks (the file datastore's way of assigning them)
    labels: Labels = ()

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


Resource = BGPConfiguration | BGPPeer | BGPFilter | IPPool | Node
KINDS: dict[str, type[Resource]] = {
    "BGPConfiguration": BGPConfiguration,
    "BGPPeer": BGPPeer,
    "BGPFilter": BGPFilter,
    "IPPool": IPPool,
    "Node": Node,
}
# What users may type for a kind on the command line (lower case), as calicoctl accepts.
_KIND_ALIASES = {
    "bgpconfiguration": "BGPConfiguration",
    "bgpconfigurations": "BGPConfiguration",
    "bgpconfig": "BGPConfiguration",
    "bgpconfigs": "BGPConfiguration",
    "bgppeer": "BGPPeer",
    "bgppeers": "BGPPeer",
    "bgpfilter": "BGPFilter",
    "bgpfilters": "BGPFilter",
    "ippool": "IPPool",
    "ippools": "IPPool",
    "pool": "IPPool",
    "pools": "IPPool",
    "node": "Node",
    "nodes": "Node",
}


def kind_of(text: str) -> str | None:
    """The canonical kind for ``text`` (``ippools`` -> ``IPPool``), or None."""
    return _KIND_ALIASES.get(text.lower())


# --- parsing ----------------------------------------------------------------------------------


def parse_resource(doc: Any, source: str) -> Resource:
    """Validate one YAML/JSON document; ``source`` names it in errors (``FILE (document 2)``)."""
    if not isinstance(doc, Mapping):
        raise ResourceError(source, "", "must be a mapping with apiVersion, kind, metadata, spec")
    root = Section(source, "", doc)
    try:
        root.check_keys(("apiVersion", "kind", "metadata", "spec", "status"))
        api = root.required("apiVersion", check_str(1))
        if api != API_VERSION:
            raise root.error("apiVersion", f"must be {API_VERSION}")
        kind = root.required("kind", check_enum(tuple(KINDS)))
        meta = root.section("metadata", ("name", "labels", "annotations"))
        if meta is None:
            raise root.error("metadata", "required key is missing")
        name = meta.required("name", check_name)
        labels = meta.optional("labels", check_labels, ())
        raw_spec = doc.get("spec") or {}
        if not isinstance(raw_spec, Mapping):
            raise root.error("spec", "must be a mapping")
        spec = Section(f"{source} {kind}/{name}", "spec", raw_spec)
        return _PARSERS[kind](spec, name, labels)
    except ConfigError as exc:
        raise ResourceError(exc.file, exc.key, exc.problem) from None


def _parse_bgp_configuration(spec: Section, name: str, labels: Labels) -> BGPConfiguration:
    spec.check_keys(
        (
            "asNumber",
            "nodeToNodeMeshEnabled",
            "listenPort",
            "nodeMeshPassword",
            "nodeMeshMaxRestartTime",
            "nodeMeshBFD",
            "nodeMeshLongLivedStaleTime",
            "logSeverityScreen",
            "ebgpRequiresPolicy",
            "communities",
            "prefixAdvertisements",
            "routeReflectors",
        )
    )
    communities = _communities(spec)
    mesh = spec.optional("nodeToNodeMeshEnabled", check_bool, True)
    route_reflectors = parse_route_reflectors(spec)
    check_mesh(spec, route_reflectors, mesh)
    return BGPConfiguration(
        name=name,
        as_number=spec.optional("asNumber", check_asn, DEFAULT_AS),
        node_to_node_mesh_enabled=mesh,
        listen_port=spec.optional("listenPort", check_int(1, 65535), 179),
        node_mesh_password=spec.optional("nodeMeshPassword", check_str(1, 80), None),
        node_mesh_max_restart_time=spec.optional("nodeMeshMaxRestartTime", check_duration, 120),
        ebgp_requires_policy=spec.optional("ebgpRequiresPolicy", check_bool, False),
        communities=communities,
        prefix_advertisements=_prefix_advertisements(spec, dict(communities)),
        node_mesh_bfd=bfd_section(spec, "nodeMeshBFD"),
        node_mesh_long_lived_stale_time=spec.optional(
            "nodeMeshLongLivedStaleTime", check_long_lived_stale_time, 3600
        ),
        route_reflectors=route_reflectors,
        labels=labels,
    )


def _communities(spec: Section) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for sec in spec.sections("communities", ("name", "value")):
        name = sec.required("name", check_name)
        if name in dict(out):
            raise sec.error("name", f"community {name!r} is defined twice")
        out.append((name, sec.required("value", check_community)))
    return tuple(out)


def _prefix_advertisements(
    spec: Section, named: dict[str, str]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, tuple[str, ...]]] = []
    for sec in spec.sections("prefixAdvertisements", ("cidr", "communities")):
        cidr = sec.required("cidr", check_prefix)

        def community(item: Any) -> str:
            if isinstance(item, str) and item in named:
                return named[item]
            try:
                return check_community(item)
            except FieldError:
                raise FieldError(
                    f"{item!r} is neither a community named in spec.communities nor a value "
                    "aa:nn / aa:nn:mm"
                ) from None

        values = sec.items("communities", community)
        if not values:
            raise sec.error("communities", "must list at least one community")
        out.append((cidr, tuple(values)))
    return tuple(out)


def _parse_bgp_peer(spec: Section, name: str, labels: Labels) -> BGPPeer:
    spec.check_keys(
        (
            "peerIP",
            "asNumber",
            "node",
            "nodeSelector",
            "peerSelector",
            "password",
            "maxRestartTime",
            "keepOriginalNextHop",
            "nextHopMode",
            "localASNumber",
            "ttlSecurity",
            "filters",
            "maxPrefixes",
            "bfd",
            "longLivedStaleTime",
            "interface",
            "extendedNextHop",
        )
    )
    peer_ip, peer_port = spec.optional("peerIP", check_peer_ip, (None, None))
    peer = BGPPeer(
        name=name,
        peer_ip=peer_ip,
        peer_port=peer_port,
        as_number=spec.optional("asNumber", check_asn, None),
        node=spec.optional("node", check_name, None),
        node_selector=spec.optional("nodeSelector", check_selector, None),
        peer_selector=spec.optional("peerSelector", check_selector, None),
        password=spec.optional("password", check_str(1, 80), None),
        max_restart_time=spec.optional("maxRestartTime", check_duration, None),
        keep_original_next_hop=(mode := _next_hop_mode(spec)) == "Keep",
        next_hop_self=mode == "Self",
        local_as_number=spec.optional("localASNumber", check_asn, None),
        ttl_security=spec.optional("ttlSecurity", check_int(0, 255), 0),
        filters=tuple(spec.items("filters", check_name, unique=True)),
        max_prefixes=_prefix_limit(spec),
        bfd=bfd_section(spec, "bfd"),
        long_lived_stale_time=spec.optional(
            "longLivedStaleTime", check_long_lived_stale_time, None
        ),
        labels=labels,
        interface=spec.optional("interface", check_interface_name, None),
        extended_next_hop=spec.optional("extendedNextHop", check_bool, None),
    )
    if peer.node is not None and peer.node_selector is not None:
        raise spec.error("nodeSelector", "must not be set together with node")
    if peer.interface is not None:
        _check_unnumbered(spec, peer)
    elif (peer.peer_ip is None) == (peer.peer_selector is None):
        raise spec.error("peerIP", "exactly one of peerIP and peerSelector must be set")
    if peer.peer_ip is not None and peer.as_number is None:
        raise spec.error("asNumber", "required with peerIP")
    return peer


def _check_unnumbered(spec: Section, peer: BGPPeer) -> None:
    """``interface`` names the remote side by itself: no peerIP or peerSelector with it."""
    if peer.peer_ip is not None or peer.peer_selector is not None:
        raise spec.error("interface", "not with peerIP or peerSelector")
    if peer.as_number is None:
        raise spec.error("asNumber", "required with interface")
    if peer.bfd is not None:
        raise spec.error("bfd", "not supported on unnumbered (interface) peers yet")


def _next_hop_mode(spec: Section) -> str:
    """Calico 3.31 ``nextHopMode`` (Auto, Self, Keep); ``keepOriginalNextHop: true`` is Keep."""
    keep = spec.optional("keepOriginalNextHop", check_bool, False)
    mode = spec.optional("nextHopMode", check_enum(("Auto", "Self", "Keep")), None)
    if keep and mode not in (None, "Keep"):
        raise spec.error("nextHopMode", f"{mode} contradicts keepOriginalNextHop: true")
    return mode or ("Keep" if keep else "Auto")


def _prefix_limit(spec: Section) -> PrefixLimit | None:
    sec = spec.section("maxPrefixes", ("limit", "warningThreshold", "restartAfter"))
    if sec is None:
        return None
    return PrefixLimit(
        limit=sec.required("limit", check_int(1, 0xFFFFFFFF)),
        warning_threshold=sec.optional("warningThreshold", check_int(1, 100), 75),
        restart_after=sec.optional("restartAfter", check_restart_after, 0),
    )


def _parse_bgp_filter(spec: Section, name: str, labels: Labels) -> BGPFilter:
    """The rules, validated by :mod:`bgpd.bgpfilter` (field path and reason), and refused
    where podbgp cannot act on a field (:func:`bgpd.policy_filters.check_supported`)."""
    try:
        rules = bgpfilter.parse_filter_spec(name, dict(spec.data), "spec")
        check_supported(rules, "spec")
    except bgpfilter.FilterError as exc:
        raise ConfigError(spec.file, exc.path, exc.reason) from None
    return BGPFilter(name=name, rules=rules, labels=labels)


def _parse_ip_pool(spec: Section, name: str, labels: Labels) -> IPPool:
    spec.check_keys(
        (
            "cidr",
            "blockSize",
            "ipipMode",
            "vxlanMode",
            "vxlanModeV6",
            "natOutgoing",
            "disabled",
            "nodeSelector",
        )
    )
    cidr = spec.required("cidr", check_prefix)
    net = ipaddress.ip_network(cidr)
    lo, hi = BLOCK_SIZE_V4 if net.version == 4 else BLOCK_SIZE_V6
    default_size = DEFAULT_BLOCK_SIZE_V4 if net.version == 4 else DEFAULT_BLOCK_SIZE_V6
    block_size = spec.optional("blockSize", check_int(lo, hi), default_size)
    link_local = ipaddress.ip_network("169.254.0.0/16" if net.version == 4 else "fe80::/10")
    if net.overlaps(link_local):
        # The pods' gateways live there (169.254.1.1, fe80::ecee:eeff:feee:eeee).
        raise spec.error("cidr", f"must not overlap the link-local range {link_local}")
    if block_size < net.prefixlen:
        raise spec.error("blockSize", f"must be at least the pool's prefix length /{net.prefixlen}")
    pool = IPPool(
        name=name,
        cidr=cidr,
        block_size=block_size,
        ipip_mode=spec.optional("ipipMode", check_enum(ENCAP_MODES), "Never"),
        vxlan_mode=_vxlan_mode(spec, net.version),
        nat_outgoing=spec.optional("natOutgoing", check_bool, False),
        disabled=spec.optional("disabled", check_bool, False),
        node_selector=spec.optional("nodeSelector", check_selector, ALL),
        labels=labels,
    )
    if pool.ipip_mode != "Never" and pool.vxlan_mode != "Never":
        raise spec.error("vxlanMode", "ipipMode and vxlanMode cannot both be enabled")
    if pool.ipip_mode != "Never" and net.version == 6:
        raise spec.error("ipipMode", "IPIP carries IPv4 only; use Never for an IPv6 pool")
    return pool


def _vxlan_mode(spec: Section, version: int) -> str:
    """``vxlanMode`` — on an IPv6 pool the VXLAN-over-IPv6 setting, as Calico has it;
    ``vxlanModeV6`` is accepted as its alias on IPv6 pools only."""
    mode = spec.optional("vxlanMode", check_enum(ENCAP_MODES), None)
    mode_v6 = spec.optional("vxlanModeV6", check_enum(ENCAP_MODES), None)
    if mode_v6 is not None and version == 4:
        raise spec.error(
            "vxlanModeV6", "applies to IPv6 pools only; an IPv4 pool's setting is vxlanMode"
        )
    if mode is not None and mode_v6 is not None and mode != mode_v6:
        raise spec.error("vxlanModeV6", f"{mode_v6} contradicts vxlanMode: {mode}")
    return mode or mode_v6 or "Never"


def _parse_node(spec: Section, name: str, labels: Labels) -> Node:
    spec.check_keys(("addresses", "asNumber", "routeReflectorClusterID", "blocks"))
    node = Node(
        name=name,
        addresses=tuple(spec.items("addresses", check_address_with_prefix, unique=True)),
        as_number=spec.optional("asNumber", check_asn, None),
        route_reflector_cluster_id=spec.optional("routeReflectorClusterID", check_router_id, None),
        blocks=tuple(spec.items("blocks", check_prefix, unique=True)),
        labels=labels,
    )
    families = [ipaddress.ip_interface(a).version for a in node.addresses]
    if len(families) != len(set(families)):
        raise spec.error("addresses", "at most one IPv4 and one IPv6 address")
    return node


_PARSERS: dict[str, Callable[[Section, str, Labels], Resource]] = {
    "BGPConfiguration": _parse_bgp_configuration,
    "BGPPeer": _parse_bgp_peer,
    "BGPFilter": _parse_bgp_filter,
    "IPPool": _parse_ip_pool,
    "Node": _parse_node,
}


# --- canonical form ---------------------------------------------------------------------------


def _spec_dict(res: Resource) -> dict[str, Any]:
    if isinstance(res, BGPConfiguration):
        spec: dict[str, Any] = {
            "asNumber": res.as_number,
            "nodeToNodeMeshEnabled": res.node_to_node_mesh_enabled,
            "listenPort": res.listen_port,
            "nodeMeshPassword": res.node_mesh_password,
            "nodeMeshMaxRestartTime": f"{res.node_mesh_max_restart_time}s",
            "ebgpRequiresPolicy": res.ebgp_requires_policy or None,
            "communities": [{"name": n, "value": v} for n, v in res.communities] or None,
            "prefixAdvertisements": [
                {"cidr": c, "communities": list(values)} for c, values in res.prefix_advertisements
            ]
            or None,
            "nodeMeshBFD": res.node_mesh_bfd.to_dict() if res.node_mesh_bfd else None,
            "nodeMeshLongLivedStaleTime": f"{res.node_mesh_long_lived_stale_time}s",
            "routeReflectors": to_spec(res.route_reflectors) if res.route_reflectors else None,
        }
    elif isinstance(res, BGPPeer):
        peer_ip = res.peer_ip
        if peer_ip is not None and res.peer_port is not None:
            peer_ip = (
                f"[{peer_ip}]:{res.peer_port}" if ":" in peer_ip else f"{peer_ip}:{res.peer_port}"
            )
        spec = {
            "peerIP": peer_ip,
            "asNumber": res.as_number,
            "node": res.node,
            "nodeSelector": str(res.node_selector) if res.node_selector else None,
            "peerSelector": str(res.peer_selector) if res.peer_selector else None,
            "password": res.password,
            "maxRestartTime": f"{res.max_restart_time}s" if res.max_restart_time else None,
            "keepOriginalNextHop": res.keep_original_next_hop or None,
            "nextHopMode": "Self" if res.next_hop_self else None,
            "localASNumber": res.local_as_number,
            "ttlSecurity": res.ttl_security or None,
            "filters": list(res.filters) or None,
            "maxPrefixes": {
                "limit": res.max_prefixes.limit,
                "warningThreshold": res.max_prefixes.warning_threshold,
                "restartAfter": f"{res.max_prefixes.restart_after}s",
            }
            if res.max_prefixes is not None
            else None,
            "bfd": res.bfd.to_dict() if res.bfd else None,
            "longLivedStaleTime": (
                f"{res.long_lived_stale_time}s" if res.long_lived_stale_time is not None else None
            ),
            "interface": res.interface,
            "extendedNextHop": res.extended_next_hop,
        }
    elif isinstance(res, BGPFilter):
        spec = res.rules.spec_dict()
    elif isinstance(res, IPPool):
        spec = {
            "cidr": res.cidr,
            "blockSize": res.block_size,
            "ipipMode": res.ipip_mode,
            "vxlanMode": res.vxlan_mode,
            "natOutgoing": res.nat_outgoing,
            "disabled": res.disabled,
            "nodeSelector": str(res.node_selector),
        }
    else:
        spec = {
            "addresses": list(res.addresses) or None,
            "asNumber": res.as_number,
            "routeReflectorClusterID": res.route_reflector_cluster_id,
            "blocks": list(res.blocks) or None,
        }
    return {k: v for k, v in spec.items() if v is not None}


def to_dict(res: Resource) -> dict[str, Any]:
    """The canonical document: what the datastore stores and ``podbgp get -o yaml`` prints."""
    meta: dict[str, Any] = {"name": res.name}
    if res.labels:
        meta["labels"] = dict(res.labels)
    return {"apiVersion": API_VERSION, "kind": res.KIND, "metadata": meta, "spec": _spec_dict(res)}
