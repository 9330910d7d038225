"""How BGPFilter rules (:mod:`bgpd.bgpfilter`) decide a route's fate, and RFC 8212.

Pure: no I/O, no asyncio. :func:`evaluate` applies one rule list to one route,
:func:`apply_filters` a peer's ``filters`` (``BGPPeer.spec.filters``, in order), and
:func:`rfc8212_block` says why an eBGP session with ``ebgpRequiresPolicy`` and no rules for a
direction and family passes nothing (RFC 8212). A :class:`Verdict` names what decided.

Match semantics (each rule field that is set must hold; a rule with no match field matches
every route; the first matching rule decides):

- ``cidr`` + ``matchOperator`` (as Calico renders them for BIRD): ``Equal`` — the route's prefix
  is exactly ``cidr``; ``NotEqual`` — it is not; ``In`` — the prefix lies within ``cidr`` (``cidr``
  itself included); ``NotIn`` — it does not. With ``prefixLength {min, max}`` (In/NotIn only),
  ``In`` is BIRD's prefix pattern ``cidr{min,max}``: the prefix length is within ``[min, max]``
  and the first ``min(len(cidr), len(prefix))`` bits agree; ``min`` defaults to the length of
  ``cidr``, ``max`` to the family's maximum (32 or 128). ``NotIn`` is its negation.
- ``source: RemotePeers`` — the route was learned from a BGP peer (BIRD's ``RTS_BGP``), not
  originated by this speaker (its blocks, pools, static prefixes).
- ``interface`` — a glob (``*`` any run of characters, ``?`` one character, as in BIRD) matched
  against the interface the route points at; a route with no interface never matches.
- ``peerType`` — the session the rule is evaluated for is eBGP / iBGP.
- ``communities.values`` — the route carries every listed value: ``aa:nn`` in COMMUNITIES
  (RFC 1997), ``aa:nn:mm`` in LARGE_COMMUNITY (RFC 8092).
- ``asPathPrefix`` — the AS path starts with these ASNs, read across the leading AS_SEQUENCE
  segments (an AS_SET or confederation segment ends the ordered part; BIRD's ``[= a b * =]``).
- ``priority`` — the route's priority equals this value. For podbgp, priority is a property of
  a route carried beside its path attributes (Calico: the kernel route metric, ``krt_metric``);
  an unset priority matches no ``priority`` rule. ``setPriority`` changes it.

Operations run in order on Accept: ``addCommunity`` appends to COMMUNITIES or LARGE_COMMUNITY
unless already present; ``prependASPath`` puts the ASNs, in the order written, in front of the
path (into the leading AS_SEQUENCE, or a new one); ``setPriority`` sets the priority. On export
the operations run before the session's own eBGP prepend of the local AS (as in BIRD).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from bgpd.bgpfilter import (
    AddCommunity,
    BGPFilter,
    Community,
    Direction,
    Family,
    IPNetwork,
    MatchOperator,
    Operation,
    PeerType,
    PrefixLength,
    PrependASPath,
    RouteSource,
    Rule,
    RuleAction,
    list_key,
)
from bgpd.codec.types import AsPath, PathAttributes, SegmentType

_MAX_SEGMENT = 255  # ASNs per AS_PATH segment (one length octet, RFC 4271 §4.3)


@dataclass(frozen=True, slots=True)
class RouteView:
    """What a rule can see of one route.

    ``from_peer`` is True for a route learned from a BGP peer (``source: RemotePeers``) and False
    for one this speaker originates. ``interface`` is the device the route points at, if any.
    Communities, large communities and the AS path are read from ``attributes``.
    """

    prefix: IPNetwork
    attributes: PathAttributes
    from_peer: bool
    interface: str | None = None
    priority: int | None = None

    @property
    def family(self) -> Family:
        return Family.V4 if self.prefix.version == 4 else Family.V6


@dataclass(frozen=True, slots=True)
class SessionContext:
    """The session a route is being imported from or exported to."""

    peer_type: PeerType
    ebgp_requires_policy: bool = False

    @property
    def ebgp(self) -> bool:
        return self.peer_type is PeerType.EBGP


class Outcome(Enum):
    RULE = "rule"  # a rule matched and its action decided
    NO_MATCH = "no rule matched"  # accepted: Calico's default
    DEFAULT_DENY = "default deny (RFC 8212)"  # eBGP + ebgpRequiresPolicy, no rule matched
    NO_POLICY = "no policy (RFC 8212)"  # eBGP + ebgpRequiresPolicy, no rules for the list
    # Defaults of bgpd.policy_filters when no rule matched on export:
    NO_TRANSIT = "no transit between external peers"  # eBGP-learned path to an eBGP peer
    NOT_OWNED = "not a cluster prefix"  # a node exports only what the cluster owns


@dataclass(frozen=True, slots=True)
class Verdict:
    """The fate of one route: accepted or not, who decided, and (if accepted) its new path.

    ``attributes``/``priority`` are the route's after the matching rule's operations when
    accepted (unchanged when no rule matched) and None when rejected.
    """

    accepted: bool
    outcome: Outcome
    attributes: PathAttributes | None
    priority: int | None = None
    filter_name: str | None = None
    list_name: str | None = None
    rule_index: int | None = None

    @property
    def reason(self) -> str:
        """A short explanation for logs and ``/v1/routes?detail=1``."""
        verb = "accepted" if self.accepted else "rejected"
        if self.outcome is Outcome.RULE:
            where = self.filter_name or "filter"
            if self.list_name is not None:
                where = f"{where} {self.list_name}"
            return f"{verb} by {where}[{self.rule_index}]"
        return f"{verb}: {self.outcome.value}"


def rule_matches(rule: Rule, route: RouteView, ctx: SessionContext) -> bool:
    """Whether every match field the rule sets holds for ``route`` on this session."""
    if rule.cidr is not None and rule.match_operator is not None:
        if rule.cidr.version != route.prefix.version:
            raise ValueError(f"rule cidr {rule.cidr} and route {route.prefix} differ in family")
        if not _cidr_matches(rule.cidr, rule.match_operator, rule.prefix_length, route.prefix):
            return False
    if rule.source is RouteSource.REMOTE_PEERS and not route.from_peer:
        return False
    if rule.interface is not None and (
        route.interface is None or not _glob(rule.interface).fullmatch(route.interface)
    ):
        return False
    if rule.peer_type is not None and rule.peer_type is not ctx.peer_type:
        return False
    if rule.communities and not _has_communities(route.attributes, rule.communities):
        return False
    if rule.as_path_prefix and not _path_starts_with(route.attributes.as_path, rule.as_path_prefix):
        return False
    return rule.priority is None or route.priority == rule.priority


def _cidr_matches(
    cidr: IPNetwork, op: MatchOperator, bounds: PrefixLength | None, prefix: IPNetwork
) -> bool:
    if op is MatchOperator.EQUAL:
        return prefix == cidr
    if op is MatchOperator.NOT_EQUAL:
        return prefix != cidr
    inside = _in_pattern(cidr, bounds, prefix)
    return inside if op is MatchOperator.IN else not inside


def _in_pattern(cidr: IPNetwork, bounds: PrefixLength | None, prefix: IPNetwork) -> bool:
    """BIRD's ``prefix ~ cidr{min,max}``: length in range, first min(len, len') bits agree."""
    lo: int = cidr.prefixlen
    hi: int = cidr.max_prefixlen
    if bounds is not None:
        lo = bounds.min if bounds.min is not None else lo
        hi = bounds.max if bounds.max is not None else hi
    if not lo <= prefix.prefixlen <= hi:
        return False
    common = min(cidr.prefixlen, prefix.prefixlen)
    shift = cidr.max_prefixlen - common
    return int(cidr.network_address) >> shift == int(prefix.network_address) >> shift


@functools.lru_cache(maxsize=256)  # a pure cache: a rule's glob is compiled once
def _glob(pattern: str) -> re.Pattern[str]:
    """BIRD's string pattern: ``*`` any run of characters, ``?`` exactly one."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _has_communities(attrs: PathAttributes, wanted: Iterable[Community]) -> bool:
    for c in wanted:
        if c.large:
            if c.large_value() not in attrs.large_communities:
                return False
        elif c.standard_value() not in attrs.communities:
            return False
    return True


def _path_starts_with(as_path: AsPath, prefix: tuple[int, ...]) -> bool:
    leading: list[int] = []
    for seg_type, asns in as_path:
        if seg_type != SegmentType.AS_SEQUENCE:
            break
        leading.extend(asns)
        if len(leading) >= len(prefix):
            break
    return tuple(leading[: len(prefix)]) == prefix


def apply_operations(
    ops: Iterable[Operation], attrs: PathAttributes, priority: int | None
) -> tuple[PathAttributes, int | None]:
    """The path attributes and priority after an accepting rule's operations, in order."""
    for op in ops:
        if isinstance(op, AddCommunity):
            attrs = _add_community(attrs, op.value)
        elif isinstance(op, PrependASPath):
            attrs = dataclasses.replace(attrs, as_path=prepend_as_path(attrs.as_path, op.prefix))
        else:
            priority = op.value
    return attrs, priority


def _add_community(attrs: PathAttributes, c: Community) -> PathAttributes:
    if c.large:
        value = c.large_value()
        if value in attrs.large_communities:
            return attrs
        return dataclasses.replace(attrs, large_communities=(*attrs.large_communities, value))
    std = c.standard_value()
    if std in attrs.communities:
        return attrs
    return dataclasses.replace(attrs, communities=(*attrs.communities, std))


def prepend_as_path(as_path: AsPath, asns: Sequence[int]) -> AsPath:
    """``asns`` (in the order given) in front of ``as_path``: merged into a leading AS_SEQUENCE,
    or in a new one; segments longer than 255 ASNs are split (RFC 4271 §4.3)."""
    if not asns:
        return as_path
    rest = as_path
    head: tuple[int, ...] = tuple(asns)
    if as_path and as_path[0][0] == SegmentType.AS_SEQUENCE:
        head = (*head, *as_path[0][1])
        rest = as_path[1:]
    chunks = tuple(
        (int(SegmentType.AS_SEQUENCE), head[i : i + _MAX_SEGMENT])
        for i in range(0, len(head), _MAX_SEGMENT)
    )
    return (*chunks, *rest)


def evaluate(
    rules: Sequence[Rule],
    route: RouteView,
    ctx: SessionContext,
    *,
    filter_name: str | None = None,
    list_name: str | None = None,
) -> Verdict:
    """One rule list, first match wins. No match: accepted unchanged (Calico), or rejected
    when ``ctx`` is an eBGP session with ``ebgpRequiresPolicy`` on (RFC 8212 default deny)."""
    found = _first_match(rules, route, ctx)
    if found is not None:
        return _decide(found[0], found[1], route, filter_name, list_name)
    return _no_match(route, ctx)


def apply_filters(
    filters: Sequence[BGPFilter],
    direction: Direction,
    route: RouteView,
    ctx: SessionContext,
) -> Verdict:
    """A peer's ``filters`` in order for ``direction`` and the route's family.

    The first filter with a matching rule decides. When none matches: accepted unchanged, or,
    on an eBGP session with ``ebgpRequiresPolicy``, rejected — ``NO_POLICY`` when no filter has
    rules for this direction and family (:func:`rfc8212_block`), ``DEFAULT_DENY`` otherwise.
    """
    family = route.family
    if rfc8212_block(filters, direction, family, ctx) is not None:
        return Verdict(accepted=False, outcome=Outcome.NO_POLICY, attributes=None)
    key = list_key(direction, family)
    for f in filters:
        found = _first_match(f.rules(direction, family), route, ctx)
        if found is not None:
            return _decide(found[0], found[1], route, f.name, key)
    return _no_match(route, ctx)


def rfc8212_block(
    filters: Sequence[BGPFilter], direction: Direction, family: Family, ctx: SessionContext
) -> str | None:
    """Why nothing passes in ``direction`` for ``family`` on this session, or None.

    RFC 8212: with ``ebgpRequiresPolicy`` on, an eBGP session whose filters hold no rule for
    this direction and family imports (exports) nothing. The text is for the peer's ``info``.
    """
    if not (ctx.ebgp_requires_policy and ctx.ebgp):
        return None
    if any(f.rules(direction, family) for f in filters):
        return None
    what = "import" if direction is Direction.IMPORT else "export"
    return (
        f"no {what} policy for IPv{family.value} on this eBGP session: nothing is "
        f"{what}ed (ebgpRequiresPolicy, RFC 8212); add a BGPFilter with "
        f"{list_key(direction, family)} rules to the peer's filters"
    )


def _first_match(
    rules: Sequence[Rule], route: RouteView, ctx: SessionContext
) -> tuple[int, Rule] | None:
    for index, rule in enumerate(rules):
        if rule_matches(rule, route, ctx):
            return index, rule
    return None


def _decide(
    index: int, rule: Rule, route: RouteView, filter_name: str | None, list_name: str | None
) -> Verdict:
    if rule.action is RuleAction.REJECT:
        return Verdict(
            accepted=False,
            outcome=Outcome.RULE,
            attributes=None,
            filter_name=filter_name,
            list_name=list_name,
            rule_index=index,
        )
    attrs, priority = apply_operations(rule.operations, route.attributes, route.priority)
    return Verdict(
        accepted=True,
        outcome=Outcome.RULE,
        attributes=attrs,
        priority=priority,
        filter_name=filter_name,
        list_name=list_name,
        rule_index=index,
    )


def _no_match(route: RouteView, ctx: SessionContext) -> Verdict:
    if ctx.ebgp_requires_policy and ctx.ebgp:
        return Verdict(accepted=False, outcome=Outcome.DEFAULT_DENY, attributes=None)
    return Verdict(
        accepted=True,
        outcome=Outcome.NO_MATCH,
        attributes=route.attributes,
        priority=route.priority,
    )
