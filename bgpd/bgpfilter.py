"""Calico's BGPFilter resource: the rule model, its validation, and its written form.

Pure: no I/O, no asyncio. A filter (``name`` plus the ordered rule lists ``exportV4``,
``importV4``, ``exportV6``, ``importV6``) is parsed from plain data (YAML/JSON) into frozen
dataclasses by :func:`parse_filter` (flat form, as in the bgpd YAML ``filters:`` list) or
:func:`parse_filter_spec` (a resource's name and ``spec``), and written back by
:meth:`BGPFilter.to_dict`. Invalid input raises :class:`FilterError`, which names the field
(``exportV4[2].prefixLength.min``) and the reason; unknown keys are refused, and a V4 list takes
IPv4 CIDRs only (V6 likewise).

Validation beyond Calico's schema, where Calico's own rendering would be ambiguous:
``prefixLength`` is refused with ``Equal``/``NotEqual`` (the cidr already fixes the length), a
cidr with host bits set is refused (naming the network meant), and AS 0 is refused in AS
lists (RFC 7607). What each field matches, and what the operations do, is
:mod:`bgpd.bgpfilter_eval`'s business.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias, TypeVar

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
_E = TypeVar("_E", bound=Enum)
_T = TypeVar("_T")

MAX_OPERATIONS = 10
MAX_ASN = 0xFFFFFFFF
MAX_PRIORITY = 0xFFFFFFFF
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


class RuleAction(Enum):
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
_LIST_BY_KEY = {key: (d, f) for key, d, f in _LISTS}


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
    """Bounds on a matched prefix's length; None: the cidr's length (min), 32/128 (max)."""

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

    action: RuleAction
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
        return {"name": self.name, **self.spec_dict()}

    def spec_dict(self) -> dict[str, object]:
        """The resource's ``spec`` (what :func:`parse_filter_spec` reads), in Calico's order."""
        out: dict[str, object] = {}
        for key in _LIST_ORDER:
            direction, family = _LIST_BY_KEY[key]
            rules = self.rules(direction, family)
            if rules:
                out[key] = [rule_to_dict(r) for r in rules]
        return out


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
    action = _enum(RuleAction, m["action"], _join(where, "action"))
    cidr = _optional(m, "cidr", where, lambda v, at: _cidr(v, family, at))
    op = _optional(m, "matchOperator", where, lambda v, at: _enum(MatchOperator, v, at))
    if (cidr is None) != (op is None):
        missing, present = ("matchOperator", "cidr") if op is None else ("cidr", "matchOperator")
        raise FilterError(_join(where, missing), f"required when {present} is set")
    return Rule(
        action=action,
        cidr=cidr,
        match_operator=op,
        prefix_length=_optional(
            m, "prefixLength", where, lambda v, at: _prefix_length(v, cidr, op, family, at)
        ),
        source=_optional(m, "source", where, lambda v, at: _enum(RouteSource, v, at)),
        interface=_optional(m, "interface", where, _interface),
        peer_type=_optional(m, "peerType", where, lambda v, at: _enum(PeerType, v, at)),
        communities=_optional(m, "communities", where, _community_match) or (),
        as_path_prefix=_optional(m, "asPathPrefix", where, _asn_list) or (),
        priority=_optional(m, "priority", where, _priority),
        operations=_optional(m, "operations", where, lambda v, at: _operations(v, action, at))
        or (),
    )


def _optional(
    m: Mapping[str, object], key: str, where: str, read: Callable[[object, str], _T]
) -> _T | None:
    """``read`` the value at ``key`` (errors under ``where.key``), or None when it is absent."""
    return read(m[key], _join(where, key)) if key in m else None


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
        kind, bits = ("standard", 16) if limit == 0xFFFF else ("large", 32)
        raise FilterError(
            where, f"{text!r}: {kind} community parts are {bits}-bit (at most {limit})"
        )
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


def _operations(value: object, action: RuleAction, where: str) -> tuple[Operation, ...]:
    items = _list(value, where)
    if items and action is not RuleAction.ACCEPT:
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
