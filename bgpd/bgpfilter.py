"""Calico's BGPFilter: the rule model, its validation, and how rules decide a route's fate.

Pure: no I/O, no asyncio. A filter (``name`` plus the ordered rule lists ``exportV4``,
``importV4``, ``exportV6``, ``importV6``) is parsed from plain data (YAML/JSON) into frozen
dataclasses by :func:`parse_filter`, written back by :meth:`BGPFilter.to_dict`, and applied to one
route by :func:`evaluate` (one rule list) or :func:`apply_filters` (a peer's ``filters``, in order).
RFC 8212 (``ebgpRequiresPolicy``) lives here too: :func:`rfc8212_block`.

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
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias, TypeVar

from bgpd.codec.types import AsPath, PathAttributes, SegmentType

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_E = TypeVar("_E", bound=Enum)

MAX_OPERATIONS = 10
MAX_ASN = 0xFFFFFFFF
MAX_PRIORITY = 0xFFFFFFFF
_MAX_SEGMENT = 255  # ASNs per AS_PATH segment (one length octet, RFC 4271 §4.3)
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?")
_INTERFACE = re.compile(r"[^\s/\"']{1,64}")
_ASDOT = re.compile(r"(\d+)\.(\d+)")


class FilterError(ValueError):
    """An invalid filter: ``path`` names the field (``exportV4[2].prefixLength.min``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


class Family(Enum):
    V4 = 4
    V6 = 6

    @property
    def max_length(self) -> int:
        return 32 if self is Family.V4 else 128


class Direction(Enum):
    IMPORT = "import"
    EXPORT = "export"


class MatchOperator(Enum):
    EQUAL = "Equal"
    NOT_EQUAL = "NotEqual"
    IN = "In"
    NOT_IN = "NotIn"


class Action(Enum):
    ACCEPT = "Accept"
    REJECT = "Reject"


class PeerType(Enum):
    EBGP = "eBGP"
    IBGP = "iBGP"


class RouteSource(Enum):
    REMOTE_PEERS = "RemotePeers"


def list_key(direction: Direction, family: Family) -> str:
    """The spec field holding the rules for ``direction`` and ``family`` (``"exportV4"``)."""
    return f"{direction.value}V{family.value}"


_LISTS = tuple((list_key(d, f), d, f) for d in Direction for f in Family)
_LIST_ORDER = ("exportV4", "importV4", "exportV6", "importV6")


# --- the model ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Community:
    """A standard (``aa:nn``, RFC 1997) or large (``aa:nn:mm``, RFC 8092) community."""

    parts: tuple[int, ...]  # 2 parts of 16 bits, or 3 of 32 bits

    @property
    def large(self) -> bool:
        return len(self.parts) == 3

    def standard_value(self) -> int:
        """The 32-bit COMMUNITIES value of a standard community."""
        return (self.parts[0] << 16) | self.parts[1]

    def large_value(self) -> tuple[int, int, int]:
        a, b, c = self.parts
        return (a, b, c)

    def __str__(self) -> str:
        return ":".join(str(p) for p in self.parts)


@dataclass(frozen=True, slots=True)
class PrefixLength:
    """Bounds on the matched prefix's length; None takes the default (see module docstring)."""

    min: int | None = None
    max: int | None = None


@dataclass(frozen=True, slots=True)
class AddCommunity:
    value: Community


@dataclass(frozen=True, slots=True)
class PrependASPath:
    prefix: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SetPriority:
    value: int


Operation: TypeAlias = AddCommunity | PrependASPath | SetPriority


@dataclass(frozen=True, slots=True)
class Rule:
    """One BGPFilter rule; unset match fields (None / empty) do not constrain the route."""

    action: Action
    cidr: IPNetwork | None = None
    match_operator: MatchOperator | None = None
    prefix_length: PrefixLength | None = None
    source: RouteSource | None = None
    interface: str | None = None
    peer_type: PeerType | None = None
    communities: tuple[Community, ...] = ()
    as_path_prefix: tuple[int, ...] = ()
    priority: int | None = None
    operations: tuple[Operation, ...] = ()


@dataclass(frozen=True, slots=True)
class BGPFilter:
    name: str
    export_v4: tuple[Rule, ...] = ()
    import_v4: tuple[Rule, ...] = ()
    export_v6: tuple[Rule, ...] = ()
    import_v6: tuple[Rule, ...] = ()

    def rules(self, direction: Direction, family: Family) -> tuple[Rule, ...]:
        if direction is Direction.EXPORT:
            return self.export_v4 if family is Family.V4 else self.export_v6
        return self.import_v4 if family is Family.V4 else self.import_v6

    def to_dict(self) -> dict[str, object]:
        """The flat form :func:`parse_filter` reads: ``name`` plus the non-empty rule lists."""
        out: dict[str, object] = {"name": self.name}
        for key, direction, family in _LISTS:
            rules = self.rules(direction, family)
            if rules:
                out[key] = [rule_to_dict(r) for r in rules]
        return {k: out[k] for k in ("name", *_LIST_ORDER) if k in out}


# --- parsing -----------------------------------------------------------------------------


def parse_filter(data: object, where: str = "") -> BGPFilter:
    """A filter from its flat form ``{name, exportV4, importV4, exportV6, importV6}``.

    ``where`` prefixes every error path (``"filters[1]"`` gives ``filters[1].exportV4[0].cidr``).
    Raises :class:`FilterError` naming the first invalid field.
    """
    m = _mapping(data, where)
    _no_unknown(m, ("name", *_LIST_ORDER), where)
    if "name" not in m:
        raise FilterError(_join(where, "name"), "required")
    name = _name(m["name"], _join(where, "name"))
    return _build(name, m, where)


def parse_filter_spec(name: str, spec: object, where: str = "spec") -> BGPFilter:
    """A filter from a resource's ``metadata.name`` and its ``spec`` (errors under ``where``)."""
    m = _mapping(spec, where)
    _no_unknown(m, _LIST_ORDER, where)
    return _build(_name(name, "metadata.name"), m, where)


def _name(value: object, where: str) -> str:
    name = _str(value, where)
    if not _NAME.fullmatch(name):
        raise FilterError(
            where,
            f"{name!r} is not a valid name (letters, digits, '.', '_', '-'; "
            "starting and ending with a letter or digit; at most 253 characters)",
        )
    return name


def _build(name: str, m: Mapping[str, object], where: str) -> BGPFilter:
    lists: dict[str, tuple[Rule, ...]] = {}
    for key, _direction, family in _LISTS:
        path = _join(where, key)
        raw = m.get(key)
        if raw is None:
            lists[key] = ()
            continue
        lists[key] = tuple(
            parse_rule(item, family, f"{path}[{i}]") for i, item in enumerate(_list(raw, path))
        )
    return BGPFilter(
        name=name,
        export_v4=lists["exportV4"],
        import_v4=lists["importV4"],
        export_v6=lists["exportV6"],
        import_v6=lists["importV6"],
    )


_RULE_KEYS = (
    "action",
    "cidr",
    "matchOperator",
    "prefixLength",
    "source",
    "interface",
    "peerType",
    "communities",
    "asPathPrefix",
    "priority",
    "operations",
)


def parse_rule(data: object, family: Family, where: str) -> Rule:
    """One rule of a ``family`` list; errors name ``where`` + the field."""
    m = _mapping(data, where)
    _no_unknown(m, _RULE_KEYS, where)
    if "action" not in m:
        raise FilterError(_join(where, "action"), "required (Accept or Reject)")
    action = _enum(Action, m["action"], _join(where, "action"))
    cidr = _cidr(m["cidr"], family, _join(where, "cidr")) if "cidr" in m else None
    op = None
    if "matchOperator" in m:
        op = _enum(MatchOperator, m["matchOperator"], _join(where, "matchOperator"))
    if (cidr is None) != (op is None):
        missing, present = ("matchOperator", "cidr") if op is None else ("cidr", "matchOperator")
        raise FilterError(_join(where, missing), f"required when {present} is set")
    plen = None
    if "prefixLength" in m:
        plen = _prefix_length(m["prefixLength"], cidr, op, family, _join(where, "prefixLength"))
    operations: tuple[Operation, ...] = ()
    if "operations" in m:
        operations = _operations(m["operations"], action, _join(where, "operations"))
    return Rule(
        action=action,
        cidr=cidr,
        match_operator=op,
        prefix_length=plen,
        source=_enum(RouteSource, m["source"], _join(where, "source")) if "source" in m else None,
        interface=_interface(m["interface"], _join(where, "interface"))
        if "interface" in m
        else None,
        peer_type=_enum(PeerType, m["peerType"], _join(where, "peerType"))
        if "peerType" in m
        else None,
        communities=_community_match(m["communities"], _join(where, "communities"))
        if "communities" in m
        else (),
        as_path_prefix=_asn_list(m["asPathPrefix"], _join(where, "asPathPrefix"))
        if "asPathPrefix" in m
        else (),
        priority=_priority(m["priority"], _join(where, "priority")) if "priority" in m else None,
        operations=operations,
    )


def _cidr(value: object, family: Family, where: str) -> IPNetwork:
    text = _str(value, where)
    if "/" not in text:
        raise FilterError(where, f"{text!r} has no prefix length (a CIDR like 10.0.0.0/16)")
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise FilterError(where, f"{text!r} is not a CIDR") from None
        raise FilterError(where, f"{text} has host bits set (did you mean {loose}?)") from None
    if net.version != family.value:
        raise FilterError(where, f"{text} is IPv{net.version}; this list takes IPv{family.value}")
    return net


def _prefix_length(
    value: object,
    cidr: IPNetwork | None,
    op: MatchOperator | None,
    family: Family,
    where: str,
) -> PrefixLength:
    if cidr is None:
        raise FilterError(where, "requires cidr")
    if op not in (MatchOperator.IN, MatchOperator.NOT_IN):
        raise FilterError(where, "applies only with matchOperator In or NotIn")
    m = _mapping(value, where)
    _no_unknown(m, ("min", "max"), where)
    bounds: dict[str, int | None] = {}
    for key in ("min", "max"):
        if m.get(key) is None:
            bounds[key] = None
            continue
        n = _int(m[key], _join(where, key))
        if not 0 <= n <= family.max_length:
            raise FilterError(_join(where, key), f"{n} is outside 0..{family.max_length}")
        bounds[key] = n
    lo = bounds["min"] if bounds["min"] is not None else cidr.prefixlen
    hi = bounds["max"] if bounds["max"] is not None else family.max_length
    if lo > hi:
        raise FilterError(_join(where, "min"), f"{lo} is greater than max {hi}")
    return PrefixLength(min=bounds["min"], max=bounds["max"])


def _interface(value: object, where: str) -> str:
    text = _str(value, where)
    if not _INTERFACE.fullmatch(text):
        raise FilterError(
            where, f"{text!r} is not an interface glob (1-64 characters, no spaces, '/' or quotes)"
        )
    return text


def _community(value: object, where: str) -> Community:
    text = _str(value, where)
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and p.isascii() for p in parts):
        raise FilterError(where, f"{text!r} is not a community (aa:nn or aa:nn:mm)")
    numbers = tuple(int(p) for p in parts)
    limit = 0xFFFF if len(numbers) == 2 else 0xFFFFFFFF
    if any(n > limit for n in numbers):
        kind = "standard community parts are 16-bit" if limit == 0xFFFF else "32-bit"
        raise FilterError(where, f"{text!r}: {kind} (at most {limit})")
    return Community(numbers)


def _community_match(value: object, where: str) -> tuple[Community, ...]:
    m = _mapping(value, where)
    _no_unknown(m, ("values",), where)
    path = _join(where, "values")
    if "values" not in m:
        raise FilterError(path, "required")
    items = _list(m["values"], path)
    if not items:
        raise FilterError(path, "must list at least one community")
    return tuple(_community(v, f"{path}[{i}]") for i, v in enumerate(items))


def _asn(value: object, where: str) -> int:
    if isinstance(value, str):
        dotted = _ASDOT.fullmatch(value)
        if dotted:
            high, low = int(dotted[1]), int(dotted[2])
            if high > 0xFFFF or low > 0xFFFF:
                raise FilterError(where, f"{value!r} is not an AS number")
            value = (high << 16) | low
        elif value.isascii() and value.isdigit():
            value = int(value)
        else:
            raise FilterError(where, f"{value!r} is not an AS number")
    n = _int(value, where)
    if n == 0:
        raise FilterError(where, "AS 0 is reserved and may not appear in an AS path (RFC 7607)")
    if not 0 < n <= MAX_ASN:
        raise FilterError(where, f"{n} is outside 1..{MAX_ASN}")
    return n


def _asn_list(value: object, where: str) -> tuple[int, ...]:
    items = _list(value, where)
    if not items:
        raise FilterError(where, "must list at least one AS number")
    return tuple(_asn(v, f"{where}[{i}]") for i, v in enumerate(items))


def _priority(value: object, where: str) -> int:
    n = _int(value, where)
    if not 0 <= n <= MAX_PRIORITY:
        raise FilterError(where, f"{n} is outside 0..{MAX_PRIORITY}")
    return n


def _operations(value: object, action: Action, where: str) -> tuple[Operation, ...]:
    items = _list(value, where)
    if items and action is not Action.ACCEPT:
        raise FilterError(where, "only allowed with action Accept")
    if len(items) > MAX_OPERATIONS:
        raise FilterError(where, f"{len(items)} operations; at most {MAX_OPERATIONS}")
    return tuple(_operation(item, f"{where}[{i}]") for i, item in enumerate(items))


def _operation(value: object, where: str) -> Operation:
    m = _mapping(value, where)
    kinds = ("addCommunity", "prependASPath", "setPriority")
    _no_unknown(m, kinds, where)
    if len(m) != 1:
        raise FilterError(where, f"must set exactly one of {', '.join(kinds)} (got {len(m)})")
    ((kind, body),) = m.items()
    path = _join(where, kind)
    if kind == "addCommunity":
        b = _mapping(body, path)
        _no_unknown(b, ("value",), path)
        if "value" not in b:
            raise FilterError(_join(path, "value"), "required")
        return AddCommunity(_community(b["value"], _join(path, "value")))
    if kind == "prependASPath":
        b = _mapping(body, path)
        _no_unknown(b, ("prefix",), path)
        if "prefix" not in b:
            raise FilterError(_join(path, "prefix"), "required")
        return PrependASPath(_asn_list(b["prefix"], _join(path, "prefix")))
    b = _mapping(body, path)
    _no_unknown(b, ("value",), path)
    if "value" not in b:
        raise FilterError(_join(path, "value"), "required")
    return SetPriority(_priority(b["value"], _join(path, "value")))


# --- small typed readers -----------------------------------------------------------------


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _mapping(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise FilterError(where, f"must be a mapping, not {_kind(value)}")
    return value


def _list(value: object, where: str) -> Sequence[object]:
    if not isinstance(value, list | tuple):
        raise FilterError(where, f"must be a list, not {_kind(value)}")
    return value


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise FilterError(where, f"must be a string, not {_kind(value)}")
    return value


def _int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(where, f"must be an integer, not {_kind(value)}")
    return value


def _enum(cls: type[_E], value: object, where: str) -> _E:
    text = _str(value, where)
    for member in cls:
        if member.value == text:
            return member
    choices = " or ".join(str(m.value) for m in cls)
    raise FilterError(where, f"{text!r} is not one of {choices}")


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _no_unknown(m: Mapping[str, object], allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    for key in m:
        if key not in allowed:
            raise FilterError(_join(where, key), f"unknown key (expected {', '.join(allowed)})")


# --- writing back ------------------------------------------------------------------------


def rule_to_dict(rule: Rule) -> dict[str, object]:
    """A rule in Calico's field names, only the fields that are set."""
    out: dict[str, object] = {"action": rule.action.value}
    if rule.cidr is not None and rule.match_operator is not None:
        out["cidr"] = str(rule.cidr)
        out["matchOperator"] = rule.match_operator.value
    if rule.prefix_length is not None:
        bounds = {"min": rule.prefix_length.min, "max": rule.prefix_length.max}
        out["prefixLength"] = {k: v for k, v in bounds.items() if v is not None}
    if rule.source is not None:
        out["source"] = rule.source.value
    if rule.interface is not None:
        out["interface"] = rule.interface
    if rule.peer_type is not None:
        out["peerType"] = rule.peer_type.value
    if rule.communities:
        out["communities"] = {"values": [str(c) for c in rule.communities]}
    if rule.as_path_prefix:
        out["asPathPrefix"] = list(rule.as_path_prefix)
    if rule.priority is not None:
        out["priority"] = rule.priority
    if rule.operations:
        out["operations"] = [_operation_to_dict(op) for op in rule.operations]
    return out


def _operation_to_dict(op: Operation) -> dict[str, object]:
    if isinstance(op, AddCommunity):
        return {"addCommunity": {"value": str(op.value)}}
    if isinstance(op, PrependASPath):
        return {"prependASPath": {"prefix": list(op.prefix)}}
    return {"setPriority": {"value": op.value}}


# --- evaluation --------------------------------------------------------------------------


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
    if rule.action is Action.REJECT:
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
