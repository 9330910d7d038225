"""Desired kernel state for one node, computed from routing state: pure, no I/O.

felix owns one table of routes (all with its own route protocol number) plus, for VXLAN, the
permanent neighbour and FDB entries of its ``vxlan.podbgp`` device. This module decides what that
state should be, from:

* the speaker's best routes for remote blocks (prefix → BGP next hop, RFC 4271 §5.1.3),
* the blocks this node owns (each gets a ``blackhole``, so traffic to an unallocated address of
  our own block is dropped here instead of bouncing to the default route),
* the IP pools (``ipipMode`` / ``vxlanMode``: ``Always``, ``CrossSubnet``, ``Never``),
* this node's IPv4 address and, on a dual-stack node, its IPv6 address, each with its prefix
  length ("same subnet" = next hop inside that CIDR, per family),
* the remote VTEPs (VXLAN tunnel IP and MAC published by each node, keyed by the node's underlay
  address: an IPv4 key for ``vxlan.podbgp``, an IPv6 key for ``vxlan-v6.podbgp``),
* the local pods (pod IP → host-side veth, from the CNI plugin).

It implements the route table of DESIGN.md: blackhole per own block; direct
``via <node> dev <uplink>`` on the same subnet or with no encapsulation; ``via <node> dev tunl0
onlink`` (MTU - 20) for IPIP; ``via <VTEP> dev vxlan.podbgp onlink`` (MTU - 50) plus neighbour
and FDB entries for VXLAN; ``<pod>/32 dev <veth> scope link`` per pod. Anything that cannot be
programmed (unknown VTEP, missing tunnel device, unreachable next hop) is reported in ``skipped``
with the reason, never silently dropped.

IPv6 follows the same table with the node's IPv6 address: direct on its subnet,
``via <VTEP> dev vxlan-v6.podbgp onlink`` (MTU - 70) when a v6 pool's ``vxlan_mode`` says so
(never IPIP), a blackhole per own v6 block, ``<pod>/128 dev <veth>`` per pod (the kernel keeps
IPv6 routes at scope universe). Next hops as the speaker hands them over (RFC 8950):

* ``fe80::1%eth0`` — a link-local next hop, the interface after ``%``: direct,
  ``via fe80::1 dev eth0`` (``via inet6 fe80::1 dev eth0`` for an IPv4 prefix), as a neighbour on
  the same subnet; no VTEP is keyed by a link-local address, so a pool that would encapsulate it
  (``Always``) has the route skipped with the reason;
* a global IPv6 next hop for an IPv4 prefix: ``via inet6 <addr> dev <uplink>`` when it lies on
  the node's IPv6 subnet; IPv4 over an IPv6 next hop is direct only, so a pool that would
  encapsulate that route has it skipped with the reason;
* an IPv4 next hop for an IPv6 prefix is refused (the kernel has no such gateway).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.podbgp"
VXLAN_V6_DEVICE = "vxlan-v6.podbgp"
VXLAN_DEVICES = (VXLAN_DEVICE, VXLAN_V6_DEVICE)
IPIP_OVERHEAD = 20  # outer IPv4 header
VXLAN_OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet headers
VXLAN_V6_OVERHEAD = 70  # outer IPv6 (40) + UDP + VXLAN + inner Ethernet headers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RouteType(IntEnum):
    """rtm_type values felix uses (linux/rtnetlink.h)."""

    UNICAST = 1
    BLACKHOLE = 6
    UNREACHABLE = 7
    PROHIBIT = 8


class Scope(IntEnum):
    """rtm_scope values (linux/rtnetlink.h)."""

    UNIVERSE = 0
    SITE = 200
    LINK = 253
    HOST = 254
    NOWHERE = 255


class EncapMode(StrEnum):
    """An IP pool's ``ipipMode`` / ``vxlanMode``."""

    ALWAYS = "Always"
    CROSS_SUBNET = "CrossSubnet"
    NEVER = "Never"


@dataclass(frozen=True, slots=True)
class Route:
    """One kernel route of felix's protocol in the main table; ``dst`` is its identity."""

    dst: str  # canonical CIDR, e.g. "10.244.1.0/24"
    type: RouteType = RouteType.UNICAST
    gateway: str | None = None
    dev: str | None = None
    onlink: bool = False
    scope: Scope = Scope.UNIVERSE
    mtu: int = 0  # 0: no route MTU metric

    @property
    def gateway_family_differs(self) -> bool:
        """An IPv4 route through an IPv6 gateway (RTA_VIA, ``via inet6``; RFC 8950 next hops)."""
        return self.gateway is not None and (":" in self.gateway) != (":" in self.dst)

    def describe(self) -> str:
        """The route as ``ip route`` would print it."""
        words = [self.dst] if self.type == RouteType.UNICAST else [self.type.name.lower(), self.dst]
        if self.gateway:
            words += ["via", "inet6", self.gateway] if self.gateway_family_differs else [
                "via", self.gateway
            ]  # fmt: skip
        if self.dev:
            words += ["dev", self.dev]
        if self.scope == Scope.LINK:
            words += ["scope", "link"]
        if self.onlink:
            words.append("onlink")
        if self.mtu:
            words += ["mtu", str(self.mtu)]
        return " ".join(words)


@dataclass(frozen=True, slots=True)
class Neighbour:
    """A permanent ARP/ND entry: ``ip`` is at ``mac`` on ``dev``."""

    dev: str
    ip: str
    mac: str


@dataclass(frozen=True, slots=True)
class FdbEntry:
    """A permanent VXLAN FDB entry: frames for ``mac`` on ``dev`` go to underlay ``dst``."""

    dev: str
    mac: str
    dst: str


@dataclass(frozen=True, slots=True)
class Pool:
    """The parts of an IPPool that shape routes (and outgoing NAT, felix.nat)."""

    cidr: str
    ipip_mode: EncapMode = EncapMode.NEVER
    vxlan_mode: EncapMode = EncapMode.NEVER
    disabled: bool = False
    nat_outgoing: bool = False  # masquerade traffic from the pool to outside every pool

    @property
    def network(self) -> IPNetwork:
        return _network(self.cidr)


@functools.lru_cache(maxsize=1024)
def _network(cidr: str) -> IPNetwork:
    return ipaddress.ip_network(cidr, strict=False)


@dataclass(frozen=True, slots=True)
class Vtep:
    """A node's VXLAN tunnel endpoint: reached at ``node_ip`` on the underlay."""

    node_ip: str
    ip: str
    mac: str


@dataclass(frozen=True)
class PlanInput:
    """Everything the plan depends on; built by the dataplane from speaker, datastore, kernel."""

    node_address: str  # this node's address with prefix length, e.g. "192.0.2.1/24"
    uplink: str
    uplink_mtu: int = 1500
    blocks: frozenset[str] = frozenset()
    pools: tuple[Pool, ...] = ()
    best: Mapping[str, str] = field(default_factory=dict)  # remote prefix -> BGP next hop
    vteps: Mapping[str, Vtep] = field(default_factory=dict)  # node IP -> VTEP
    pods: Mapping[str, str] = field(default_factory=dict)  # pod IP -> host-side ifname
    ipip_ready: bool = True  # tunl0 exists and is up
    vxlan_ready: bool = True  # vxlan.podbgp exists and is up
    node_address_v6: str | None = None  # e.g. "2001:db8::1/64"; None: the node has no IPv6
    vxlan_v6_ready: bool = True  # vxlan-v6.podbgp exists and is up

    def node_interfaces(self) -> dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """This node's address per IP version (4 always; 6 on a dual-stack node)."""
        first = ipaddress.ip_interface(self.node_address)
        out: dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface] = {first.version: first}
        if self.node_address_v6:
            v6 = ipaddress.ip_interface(self.node_address_v6)
            out[v6.version] = v6
        return out


@dataclass(frozen=True)
class Plan:
    """The desired state, plus what could not be programmed and why.

    ``touched`` is None for a whole plan; a plan made by :func:`replan` names the destinations
    that may differ from the plan it was made from, so the reconciler diffs only those.
    ``vtep_users`` counts the routes through each VTEP (by node IP), which is what the VXLAN
    neighbour and FDB entries follow.
    """

    routes: dict[str, Route]
    neighbours: frozenset[Neighbour]
    fdb: frozenset[FdbEntry]
    skipped: dict[str, str]
    touched: frozenset[str] | None = None
    vtep_users: Mapping[str, int] = field(default_factory=dict)


WORKLOAD_ALIAS_PREFIX = "podbgp:"


def workload_alias(ips: Iterable[str], ref: str = "") -> str:
    """The host-side veth's alias that marks it as a pod interface: ``podbgp:<ip>[,<ip>] <ref>``.

    ``podbgp-cni`` writes it; felix reads it back to know the local pods, so pod routes survive
    felix restarts and are repaired without any datastore round trip.
    """
    text = WORKLOAD_ALIAS_PREFIX + ",".join(str(ipaddress.ip_address(ip)) for ip in ips)
    return f"{text} {ref}".strip()[:255]


def workload_ips(alias: str | None) -> list[str]:
    """The pod addresses in a veth alias written by :func:`workload_alias` (else none)."""
    if not alias or not alias.startswith(WORKLOAD_ALIAS_PREFIX):
        return []
    out = []
    for text in alias[len(WORKLOAD_ALIAS_PREFIX) :].split(" ", 1)[0].split(","):
        try:
            out.append(str(ipaddress.ip_address(text)))
        except ValueError:
            continue
    return out


def canonical(prefix: str) -> str:
    """``10.244.1.7/24`` → ``10.244.1.0/24``; a bare address becomes a host prefix."""
    return _parse_prefix(prefix)[3]


_V4_LENGTHS = {str(n): n for n in range(33)}  # prefix lengths as written canonically


def _parse_prefix(prefix: str) -> tuple[int, int, int, str]:
    """(IP version, network address as an integer, prefix length, canonical text) of a CIDR.

    An IPv4 prefix already written canonically (what the speaker hands over) is recognised
    with ``inet_pton`` alone, ~10x cheaper than ``ipaddress``; anything else goes through it.
    """
    address, _, length = prefix.partition("/")
    plen = _V4_LENGTHS.get(length)
    if plen is not None and ":" not in address:
        try:
            packed = socket.inet_pton(socket.AF_INET, address)
        except OSError:
            packed = b""
        if packed:
            value = int.from_bytes(packed, "big")
            if (
                not value & ((1 << (32 - plen)) - 1)
                and socket.inet_ntop(socket.AF_INET, packed) == address
            ):
                return 4, value, plen, prefix
    net = ipaddress.ip_network(prefix, strict=False)
    return net.version, int(net.network_address), net.prefixlen, str(net)


def host_prefix(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"{addr}/{addr.max_prefixlen}"


def tunnels_needed(pools: Iterable[Pool]) -> tuple[bool, bool]:
    """Whether any IPv4 pool asks for IPIP, and whether any asks for VXLAN (``vxlan.podbgp``)."""
    pools = [p for p in pools if p.network.version == 4]
    ipip = any(p.ipip_mode != EncapMode.NEVER for p in pools)
    vxlan = any(p.vxlan_mode != EncapMode.NEVER for p in pools)
    return ipip, vxlan


def vxlan_v6_needed(pools: Iterable[Pool]) -> bool:
    """Whether any IPv6 pool asks for VXLAN (``vxlan-v6.podbgp``)."""
    return any(p.vxlan_mode != EncapMode.NEVER for p in pools if p.network.version == 6)


def vxlan_device_for(ip: str) -> str:
    """The VXLAN device whose underlay (or VTEP) family ``ip`` is: v4 or v6."""
    return VXLAN_V6_DEVICE if ":" in ip else VXLAN_DEVICE


def pod_route(pod_ip: str, ifname: str) -> Route:
    """``<pod>/32 dev <veth> scope link``; IPv6 (``/128``) has no route scopes in the kernel."""
    dst = host_prefix(pod_ip)
    scope = Scope.UNIVERSE if ":" in dst else Scope.LINK
    return Route(dst, dev=ifname, scope=scope)


class PoolIndex:
    """The most specific pool containing a prefix (pools should not overlap, but be exact),
    found with integer arithmetic: the placer asks once per remote prefix."""

    def __init__(self, pools: Iterable[Pool]) -> None:
        # Most specific first; equal lengths keep the input order (the first one wins).
        table = sorted(((p.network, p) for p in pools), key=lambda item: -item[0].prefixlen)
        self._table = [
            (net.version, int(net.network_address), net.prefixlen, net.max_prefixlen, pool)
            for net, pool in table
        ]

    def find(self, version: int, value: int, plen: int) -> Pool | None:
        """The pool of the prefix ``value``/``plen`` (network address as an integer)."""
        for pversion, pvalue, pplen, bits, pool in self._table:
            if pversion == version and pplen <= plen and (value ^ pvalue) >> (bits - pplen) == 0:
                return pool
        return None


def pool_for(prefix: IPNetwork, pools: Iterable[Pool]) -> Pool | None:
    """The most specific pool containing ``prefix`` (see :class:`PoolIndex`)."""
    return PoolIndex(pools).find(prefix.version, int(prefix.network_address), prefix.prefixlen)


def plan(inp: PlanInput) -> Plan:
    """Compute the desired routes, neighbours and FDB entries for ``inp``."""
    placer = _Placer(inp)
    routes: dict[str, Route] = {}
    skipped: dict[str, str] = {}
    users: dict[str, int] = {}
    own_blocks = {canonical(b) for b in inp.blocks}
    pod_dsts = {host_prefix(ip) for ip in inp.pods}
    for block in sorted(own_blocks):
        routes[block] = Route(block, RouteType.BLACKHOLE)
    for prefix, next_hop in sorted(inp.best.items()):
        parsed = _parse_prefix(prefix)
        dst = parsed[3]
        reason = _local_reason(dst, own_blocks, pod_dsts)
        if reason is not None:
            skipped[dst] = reason
            continue
        placer.place(parsed, next_hop, routes, skipped, users)
    for pod_ip, ifname in sorted(inp.pods.items()):
        route = pod_route(pod_ip, ifname)
        routes[route.dst] = route
    neighbours, fdb = _vxlan_entries(users, inp.vteps)
    return Plan(routes, neighbours, fdb, skipped, None, users)


def replan(previous: Plan, inp: PlanInput, prefixes: Iterable[str], *, reuse: bool = False) -> Plan:
    """``previous`` with only the remote ``prefixes`` planned again (their best route changed).

    Everything else in ``inp`` must be what ``previous`` was planned from: a change of pools,
    blocks, VTEPs, pods or devices calls for :func:`plan`. The result is what :func:`plan`
    would give for ``inp``, at a cost that grows with ``prefixes``, not with the table.
    ``reuse``: the caller is done with ``previous``, whose route and skip tables are then
    updated in place instead of copied (a copy of a 100,000-route table per pass would make a
    burst of small passes cost O(table) each).
    """
    placer = _Placer(inp)
    routes = previous.routes if reuse else dict(previous.routes)
    skipped = previous.skipped if reuse else dict(previous.skipped)
    users = dict(previous.vtep_users)
    own_blocks = {canonical(b) for b in inp.blocks}
    pod_dsts = {host_prefix(ip) for ip in inp.pods}
    touched: set[str] = set()
    best = inp.best
    for prefix in prefixes:
        next_hop = best.get(prefix)
        if (
            next_hop is None
            and (prefix in routes or prefix in skipped)
            and prefix not in own_blocks
            and prefix not in pod_dsts
        ):
            # Withdrawn, and a key of the plan so already canonical: nothing to parse.
            touched.add(prefix)
            old = routes.pop(prefix, None)
            skipped.pop(prefix, None)
            if old is not None and old.dev in VXLAN_DEVICES:
                _release_vtep(users, old, inp.vteps)
            continue
        parsed = _parse_prefix(prefix)
        dst = parsed[3]
        if next_hop is None and dst != prefix:
            next_hop = best.get(dst)
        reason = _local_reason(dst, own_blocks, pod_dsts)
        if reason is not None:  # the blackhole or the pod route stands, whatever BGP says
            if next_hop is None:
                skipped.pop(dst, None)
            else:
                skipped[dst] = reason
            continue
        touched.add(dst)
        old = routes.pop(dst, None)
        skipped.pop(dst, None)
        if old is not None and old.dev in VXLAN_DEVICES:
            _release_vtep(users, old, inp.vteps)
        if next_hop is not None:
            placer.place(parsed, next_hop, routes, skipped, users)
    neighbours, fdb = _vxlan_entries(users, inp.vteps)
    return Plan(routes, neighbours, fdb, skipped, frozenset(touched), users)


# The route a next hop gives within one pool and family, without its destination: gateway,
# device, onlink, MTU and the VTEP it uses; or the reason such a route cannot be programmed.
_Placement = tuple[str, str, bool, int, "Vtep | None"] | str


class _Placer:
    """Places remote prefixes for one :class:`PlanInput`.

    A route depends on its destination only through the pool holding it and its family, so
    the decision is made once per (next hop, pool, family) and every prefix sharing them
    reuses it: 100,000 blocks behind a few nodes cost a pool lookup and a Route each.
    """

    def __init__(self, inp: PlanInput) -> None:
        self.inp = inp
        self.node = inp.node_interfaces()
        self.pools = PoolIndex(inp.pools)
        self.decided: dict[tuple[str, Pool | None, int], _Placement] = {}

    def place(
        self,
        parsed: tuple[int, int, int, str],
        next_hop: str,
        routes: dict[str, Route],
        skipped: dict[str, str],
        users: dict[str, int],
    ) -> None:
        """Plan one remote prefix into ``routes`` (counting its VTEP) or ``skipped`` (why)."""
        version, value, plen, dst = parsed
        pool = self.pools.find(version, value, plen)
        key = (next_hop, pool, version)
        placement = self.decided.get(key)
        if placement is None:
            placement = self.decided[key] = _placement(version, next_hop, pool, self.node, self.inp)
        if isinstance(placement, str):
            skipped[dst] = placement
            return
        gateway, dev, onlink, mtu, vtep = placement
        routes[dst] = Route(dst, RouteType.UNICAST, gateway, dev, onlink, Scope.UNIVERSE, mtu)
        if vtep is not None:
            users[vtep.node_ip] = users.get(vtep.node_ip, 0) + 1


def _local_reason(dst: str, own_blocks: set[str], pod_dsts: set[str]) -> str | None:
    if dst in own_blocks:
        return "this node owns the block (blackholed here)"
    if dst in pod_dsts:
        return "a local pod has this address"
    return None


def _release_vtep(users: dict[str, int], old: Route, vteps: Mapping[str, Vtep]) -> None:
    for node_ip, vtep in vteps.items():
        if vtep.ip == old.gateway and node_ip in users:
            users[node_ip] -= 1
            if users[node_ip] <= 0:
                del users[node_ip]
            return


def _vxlan_entries(
    users: Mapping[str, int], vteps: Mapping[str, Vtep]
) -> tuple[frozenset[Neighbour], frozenset[FdbEntry]]:
    used = [vteps[ip] for ip in users if ip in vteps]
    return (
        frozenset(Neighbour(vxlan_device_for(v.node_ip), v.ip, v.mac) for v in used),
        frozenset(FdbEntry(vxlan_device_for(v.node_ip), v.mac, v.node_ip) for v in used),
    )


def _placement(
    version: int, next_hop: str, pool: Pool | None,
    node: Mapping[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface], inp: PlanInput,
) -> _Placement:  # fmt: skip
    """The route (less its destination) for a remote block of IP ``version`` inside ``pool``
    through ``next_hop``, or the reason it cannot be programmed."""
    parsed = parse_next_hop(next_hop)
    if isinstance(parsed, str):
        return parsed
    hop, scope_dev = parsed
    if pool is None:
        # Only pod routes are felix's business; anything else the speaker learns (a default
        # route from a top-of-rack router, say) belongs to whoever configured that peering.
        return "not inside any IP pool"
    own = node.get(hop.version)
    if own is not None and hop == own.ip:
        return "next hop is this node"
    if hop.version != version and version == 6:
        return f"next hop {hop} is not IPv6"
    if scope_dev is not None:
        # A link-local neighbour (unnumbered peering): that link is the path, in either family.
        if _encapsulate(pool.vxlan_mode, True) or _encapsulate(pool.ipip_mode, True):
            return f"next hop {next_hop} is link-local (direct only) and the pool encapsulates"
        return str(hop), scope_dev, False, 0, None
    if own is None:
        return f"next hop {hop} is IPv{hop.version} and this node has no IPv{hop.version} address"
    same_subnet = hop in own.network
    if hop.version != version:  # IPv4 through an IPv6 gateway (RFC 8950): direct only
        if _encapsulate(pool.vxlan_mode, same_subnet) or _encapsulate(pool.ipip_mode, same_subnet):
            return f"next hop {hop} is IPv6 (direct only) and the pool encapsulates this route"
        if not same_subnet:
            return f"next hop {hop} is outside {own.network} (IPv4 over IPv6 is direct only)"
        return str(hop), inp.uplink, False, 0, None
    if _encapsulate(pool.vxlan_mode, same_subnet):
        return _vxlan_route(hop, inp)
    if _encapsulate(pool.ipip_mode, same_subnet):
        if hop.version != 4:
            return "IPIP carries IPv4 only"
        if not inp.ipip_ready:
            return f"{IPIP_DEVICE} is not available"
        return str(hop), IPIP_DEVICE, True, inp.uplink_mtu - IPIP_OVERHEAD, None
    if not same_subnet:
        # Without encapsulation the kernel can only use a next hop it reaches directly; an
        # underlay that routes pod blocks would advertise them with an on-subnet next hop.
        return f"next hop {hop} is outside {own.network} and the pool does not encapsulate"
    return str(hop), inp.uplink, False, 0, None


def _vxlan_route(hop: ipaddress.IPv4Address | ipaddress.IPv6Address, inp: PlanInput) -> _Placement:
    """``via <VTEP> dev vxlan.podbgp`` (IPv4) or ``dev vxlan-v6.podbgp`` (IPv6) onlink."""
    if hop.version == 4:
        device, ready, overhead = VXLAN_DEVICE, inp.vxlan_ready, VXLAN_OVERHEAD
    else:
        device, ready, overhead = VXLAN_V6_DEVICE, inp.vxlan_v6_ready, VXLAN_V6_OVERHEAD
    if not ready:
        return f"{device} is not available"
    vtep = inp.vteps.get(str(hop))
    if vtep is None:
        return f"no VTEP known for node {hop}"
    return vtep.ip, device, True, inp.uplink_mtu - overhead, vtep


def parse_next_hop(
    text: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, str | None] | str:
    """``(address, interface)`` of a next hop as the speaker hands it over, or why not.

    ``fe80::1%eth0`` is a link-local next hop on ``eth0``; an interface is required for a
    link-local address and refused for any other (a global next hop is found by its subnet).
    """
    address, sep, scope = text.partition("%")
    try:
        hop = ipaddress.ip_address(address)
    except ValueError:
        return f"next hop {text!r} is not an address"
    link_local = hop.version == 6 and hop.is_link_local
    if sep and not (link_local and scope):
        return f"next hop {text!r}: an interface after '%' is for a link-local address only"
    if link_local and not sep:
        return f"link-local next hop {hop} names no interface (write {hop}%<interface>)"
    return hop, scope or None


def _encapsulate(mode: EncapMode, same_subnet: bool) -> bool:
    return mode == EncapMode.ALWAYS or (mode == EncapMode.CROSS_SUBNET and not same_subnet)
