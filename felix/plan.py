"""Desired kernel state for one node, computed from routing state: pure, no I/O.

felix owns one table of routes (all with its own route protocol number) plus, for VXLAN, the
permanent neighbour and FDB entries of its ``vxlan.podbgp`` device. This module decides what that
state should be, from:

* the speaker's best routes for remote blocks (prefix → BGP next hop, RFC 4271 §5.1.3),
* the blocks this node owns (each gets a ``blackhole``, so traffic to an unallocated address of
  our own block is dropped here instead of bouncing to the default route),
* the IP pools (``ipipMode`` / ``vxlanMode``: ``Always``, ``CrossSubnet``, ``Never``),
* this node's address with its prefix length ("same subnet" = next hop inside that CIDR),
* the remote VTEPs (VXLAN tunnel IP and MAC published by each node),
* the local pods (pod IP → host-side veth, from the CNI plugin).

It implements the route table of DESIGN.md: blackhole per own block; direct
``via <node> dev <uplink>`` on the same subnet or with no encapsulation; ``via <node> dev tunl0
onlink`` (MTU - 20) for IPIP; ``via <VTEP> dev vxlan.podbgp onlink`` (MTU - 50) plus neighbour
and FDB entries for VXLAN; ``<pod>/32 dev <veth> scope link`` per pod. Anything that cannot be
programmed (unknown VTEP, missing tunnel device, unreachable next hop) is reported in ``skipped``
with the reason, never silently dropped.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

IPIP_DEVICE = "tunl0"
VXLAN_DEVICE = "vxlan.podbgp"
IPIP_OVERHEAD = 20  # outer IPv4 header
VXLAN_OVERHEAD = 50  # outer IPv4 + UDP + VXLAN + inner Ethernet headers

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

    def describe(self) -> str:
        """The route as ``ip route`` would print it."""
        words = [self.dst] if self.type == RouteType.UNICAST else [self.type.name.lower(), self.dst]
        if self.gateway:
            words += ["via", self.gateway]
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
        return ipaddress.ip_network(self.cidr, strict=False)


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
    return str(ipaddress.ip_network(prefix, strict=False))


def host_prefix(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    return f"{addr}/{addr.max_prefixlen}"


def tunnels_needed(pools: Iterable[Pool]) -> tuple[bool, bool]:
    """Whether any pool asks for IPIP, and whether any asks for VXLAN."""
    pools = list(pools)
    ipip = any(p.ipip_mode != EncapMode.NEVER for p in pools)
    vxlan = any(p.vxlan_mode != EncapMode.NEVER for p in pools)
    return ipip, vxlan


def pool_for(prefix: IPNetwork, pools: Iterable[Pool]) -> Pool | None:
    """The most specific pool containing ``prefix`` (pools should not overlap, but be exact)."""
    best: Pool | None = None
    for pool in pools:
        net = pool.network
        if net.version != prefix.version or not prefix.subnet_of(net):  # type: ignore[arg-type]
            continue
        if best is None or net.prefixlen > best.network.prefixlen:
            best = pool
    return best


def plan(inp: PlanInput) -> Plan:
    """Compute the desired routes, neighbours and FDB entries for ``inp``."""
    node = ipaddress.ip_interface(inp.node_address)
    routes: dict[str, Route] = {}
    skipped: dict[str, str] = {}
    users: dict[str, int] = {}
    own_blocks = {canonical(b) for b in inp.blocks}
    pod_dsts = {host_prefix(ip) for ip in inp.pods}
    for block in sorted(own_blocks):
        routes[block] = Route(block, RouteType.BLACKHOLE)
    for prefix, next_hop in sorted(inp.best.items()):
        dst = canonical(prefix)
        reason = _local_reason(dst, own_blocks, pod_dsts)
        if reason is not None:
            skipped[dst] = reason
            continue
        _place_remote(dst, next_hop, node, inp, routes, skipped, users)
    for pod_ip, ifname in sorted(inp.pods.items()):
        dst = host_prefix(pod_ip)
        routes[dst] = Route(dst, dev=ifname, scope=Scope.LINK)
    neighbours, fdb = _vxlan_entries(users, inp.vteps)
    return Plan(routes, neighbours, fdb, skipped, None, users)


def replan(previous: Plan, inp: PlanInput, prefixes: Iterable[str]) -> Plan:
    """``previous`` with only the remote ``prefixes`` planned again (their best route changed).

    Everything else in ``inp`` must be what ``previous`` was planned from: a change of pools,
    blocks, VTEPs, pods or devices calls for :func:`plan`. The result is what :func:`plan`
    would give for ``inp``, at a cost that grows with ``prefixes``, not with the table.
    """
    node = ipaddress.ip_interface(inp.node_address)
    routes = dict(previous.routes)
    skipped = dict(previous.skipped)
    users = dict(previous.vtep_users)
    own_blocks = {canonical(b) for b in inp.blocks}
    pod_dsts = {host_prefix(ip) for ip in inp.pods}
    touched: set[str] = set()
    for prefix in prefixes:
        dst = canonical(prefix)
        next_hop = inp.best.get(prefix, inp.best.get(dst))
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
        if old is not None and old.dev == VXLAN_DEVICE:
            _release_vtep(users, old, inp.vteps)
        if next_hop is not None:
            _place_remote(dst, next_hop, node, inp, routes, skipped, users)
    neighbours, fdb = _vxlan_entries(users, inp.vteps)
    return Plan(routes, neighbours, fdb, skipped, frozenset(touched), users)


def _place_remote(
    dst: str,
    next_hop: str,
    node: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
    inp: PlanInput,
    routes: dict[str, Route],
    skipped: dict[str, str],
    users: dict[str, int],
) -> None:
    """Plan one remote prefix into ``routes`` (counting its VTEP) or ``skipped`` (with why)."""
    outcome = _remote_route(dst, next_hop, node, inp)
    if isinstance(outcome, str):
        skipped[dst] = outcome
        return
    route, vtep = outcome
    routes[dst] = route
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
        frozenset(Neighbour(VXLAN_DEVICE, v.ip, v.mac) for v in used),
        frozenset(FdbEntry(VXLAN_DEVICE, v.mac, v.node_ip) for v in used),
    )


def _remote_route(
    dst: str, next_hop: str, node: ipaddress.IPv4Interface | ipaddress.IPv6Interface,
    inp: PlanInput,
) -> tuple[Route, Vtep | None] | str:  # fmt: skip
    """The route for a remote block, or the reason it cannot be programmed."""
    net = ipaddress.ip_network(dst)
    try:
        hop = ipaddress.ip_address(next_hop)
    except ValueError:
        return f"next hop {next_hop!r} is not an address"
    pool = pool_for(net, inp.pools)
    if pool is None:
        # Only pod routes are felix's business; anything else the speaker learns (a default
        # route from a top-of-rack router, say) belongs to whoever configured that peering.
        return "not inside any IP pool"
    if hop == node.ip:
        return "next hop is this node"
    if hop.version != net.version:
        return f"next hop {hop} is not IPv{net.version}"
    same_subnet = hop in node.network
    if _encapsulate(pool.vxlan_mode, same_subnet):
        if not inp.vxlan_ready:
            return f"{VXLAN_DEVICE} is not available"
        vtep = inp.vteps.get(str(hop))
        if vtep is None:
            return f"no VTEP known for node {hop}"
        mtu = inp.uplink_mtu - VXLAN_OVERHEAD
        return Route(dst, gateway=vtep.ip, dev=VXLAN_DEVICE, onlink=True, mtu=mtu), vtep
    if _encapsulate(pool.ipip_mode, same_subnet):
        if hop.version != 4:
            return "IPIP carries IPv4 only"
        if not inp.ipip_ready:
            return f"{IPIP_DEVICE} is not available"
        mtu = inp.uplink_mtu - IPIP_OVERHEAD
        return Route(dst, gateway=str(hop), dev=IPIP_DEVICE, onlink=True, mtu=mtu), None
    if not same_subnet:
        # Without encapsulation the kernel can only use a next hop it reaches directly; an
        # underlay that routes pod blocks would advertise them with an on-subnet next hop.
        return f"next hop {hop} is outside {node.network} and the pool does not encapsulate"
    return Route(dst, gateway=str(hop), dev=inp.uplink), None


def _encapsulate(mode: EncapMode, same_subnet: bool) -> bool:
    return mode == EncapMode.ALWAYS or (mode == EncapMode.CROSS_SUBNET and not same_subnet)
