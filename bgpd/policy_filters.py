"""A session's routing policy: its BGPFilters on import and export, and the safe defaults.

Pure: no I/O, no asyncio. :class:`SessionFilters` is what one peer is configured with (its
filters in order, ``ebgpRequiresPolicy``, and for a node's external peers the prefixes the
cluster owns). :func:`import_verdict` runs after the Adj-RIB-In and before the decision process;
:func:`export_verdict` runs on a best path before the session's own attribute changes, so a
filter's ``prependASPath`` comes before our AS is prepended on eBGP (as in BIRD).

Defaults when no rule matched a route on export (evaluated in this order):

- RFC 8212 (``ebgpRequiresPolicy`` on an eBGP session): nothing without a matching rule.
- No transit: a path learned over eBGP never goes to another eBGP peer unless a rule accepts
  it. A speaker with two upstream routers must not become a path between them (a route leak).
- Cluster-owned only (``owned`` set, a node's non-mesh peers, Calico's
  ``calico_export_to_bgp_peers``): only prefixes inside an IP pool CIDR go out.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from bgpd.bgpfilter import BGPFilter, Direction, Family, IPNetwork, PeerType
from bgpd.bgpfilter_eval import (
    Outcome,
    RouteView,
    SessionContext,
    Verdict,
    apply_filters,
    rfc8212_block,
)
from bgpd.codec.types import Afi, PathAttributes
from bgpd.decision import PathSource


@dataclass(frozen=True, slots=True)
class SessionFilters:
    """One session's policy. Hashable: peers with equal policies share an update group.

    ``owned`` None: no cluster restriction (the standalone speaker); a tuple: on export, a
    route no rule matched goes out only when its prefix lies inside one of these CIDRs.
    """

    filters: tuple[BGPFilter, ...] = ()
    ebgp_requires_policy: bool = False
    owned: tuple[IPNetwork, ...] | None = None

    def context(self, ebgp: bool) -> SessionContext:
        return SessionContext(PeerType.EBGP if ebgp else PeerType.IBGP, self.ebgp_requires_policy)

    def filters_import(self, ebgp: bool) -> bool:
        """Whether import may reject or change a route (else the Adj-RIB-In is the result)."""
        if self.ebgp_requires_policy and ebgp:
            return True
        return any(f.import_v4 or f.import_v6 for f in self.filters)

    @property
    def prefix_dependent(self) -> bool:
        """Whether the export result depends on the prefix (else one result per path)."""
        return self.owned is not None or any(f.export_v4 or f.export_v6 for f in self.filters)

    def blocked(self, ebgp: bool) -> list[str]:
        """RFC 8212: why this session passes nothing in a direction/family (for ``info``)."""
        ctx = self.context(ebgp)
        return [
            reason
            for direction in (Direction.IMPORT, Direction.EXPORT)
            for family in (Family.V4, Family.V6)
            if (reason := rfc8212_block(self.filters, direction, family, ctx)) is not None
        ]


NO_FILTERS = SessionFilters()


@functools.lru_cache(maxsize=1 << 17)  # a pure cache: wire prefix → network, per family
def network(afi: int, prefix: bytes) -> IPNetwork:
    """A wire-form prefix (without path identifier) as an ``ipaddress`` network."""
    length, size = prefix[0], (4 if afi == Afi.IPV4 else 16)
    value = int.from_bytes(prefix[1:].ljust(size, b"\0"), "big")
    if afi == Afi.IPV4:
        return ipaddress.IPv4Network((value, length))
    return ipaddress.IPv6Network((value, length))


def import_verdict(
    policy: SessionFilters, ebgp: bool, afi: int, prefix: bytes, attrs: PathAttributes
) -> Verdict:
    """The fate of a received path (already normalised for the Adj-RIB-In) on import."""
    route = RouteView(network(afi, prefix), attrs, from_peer=True)
    return apply_filters(policy.filters, Direction.IMPORT, route, policy.context(ebgp))


def export_verdict(
    policy: SessionFilters,
    ebgp: bool,
    afi: int,
    prefix: bytes,
    attrs: PathAttributes,
    source: PathSource,
) -> Verdict:
    """The fate of a best path towards a session, before the session's own changes."""
    net = network(afi, prefix)
    route = RouteView(net, attrs, from_peer=not source.local)
    verdict = apply_filters(policy.filters, Direction.EXPORT, route, policy.context(ebgp))
    if verdict.outcome is not Outcome.NO_MATCH:
        return verdict
    if ebgp and source.ebgp and not source.local:
        return Verdict(accepted=False, outcome=Outcome.NO_TRANSIT, attributes=None)
    if policy.owned is not None and not _inside(net, policy.owned):
        return Verdict(accepted=False, outcome=Outcome.NOT_OWNED, attributes=None)
    return verdict


def transit_blocked(policy: SessionFilters, ebgp: bool, source: PathSource) -> bool:
    """The prefix-independent part of :func:`export_verdict` for a policy without export
    rules or ``owned``: True when the path may not go out at all."""
    if ebgp and policy.ebgp_requires_policy:
        return True  # no export rules at all: RFC 8212 blocks everything
    return ebgp and source.ebgp and not source.local


def _inside(net: IPNetwork, owned: Iterable[IPNetwork]) -> bool:
    return any(
        cidr.version == net.version and net.subnet_of(cidr)  # type: ignore[arg-type]
        for cidr in owned
    )


def family_of(afi: int) -> Family:
    return Family.V4 if afi == Afi.IPV4 else Family.V6
