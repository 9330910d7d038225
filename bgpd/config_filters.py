"""The routing-policy keys of the bgpd YAML: ``filters:``, ``peers[].filters``,
``ebgpRequiresPolicy`` and ``peers[].maxPrefixes``.

A top-level ``filters:`` list holds BGPFilters in Calico's field names, flat
(``{name, exportV4, importV4, exportV6, importV6}``, see :mod:`bgpd.bgpfilter`); a peer names
the filters it uses, applied in order. Errors are :class:`~bgpd.configcheck.ConfigError` lines
naming the file, the key path (``filters[0].exportV4[1].cidr``) and the reason.
"""

from __future__ import annotations

from typing import Any

from bgpd.bgpfilter import BGPFilter, FilterError, parse_filter
from bgpd.bgpfilter_support import check_supported
from bgpd.configcheck import ConfigError, FieldError, Section, check_int
from bgpd.prefix_limit import DEFAULT_WARNING_THRESHOLD, MaxPrefixes


def load_filters(root: Section) -> tuple[BGPFilter, ...]:
    """The top-level ``filters:`` list; names are unique."""
    raw = root.data.get("filters")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise root.error("filters", "must be a list of filters")
    out: list[BGPFilter] = []
    for i, item in enumerate(raw):
        where = root.key(f"filters[{i}]")
        try:
            f = parse_filter(item, where)
            check_supported(f, where)
        except FilterError as exc:
            raise ConfigError(root.file, exc.path, exc.reason) from None
        for j, other in enumerate(out):
            if other.name == f.name:
                raise ConfigError(root.file, f"{where}.name", f"duplicate of filters[{j}]")
        out.append(f)
    return tuple(out)


def max_prefixes(peer: Section) -> MaxPrefixes | None:
    """``peers[].maxPrefixes: {limit, warningThreshold, restartAfter}`` (RFC 4486)."""
    sec = peer.section("maxPrefixes", ("limit", "warningThreshold", "restartAfter"))
    if sec is None:
        return None
    return MaxPrefixes(
        limit=sec.required("limit", check_int(1, 0xFFFFFFFF)),
        warning_threshold=sec.optional(
            "warningThreshold", check_int(1, 100), DEFAULT_WARNING_THRESHOLD
        ),
        restart_after=sec.optional("restartAfter", check_int(0, 86400), 0),
    )


def check_filter_names(value: Any) -> tuple[str, ...]:
    """``peers[].filters``: a list of filter names (resolved by :func:`resolve`)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FieldError("must be a list of filter names")
    if len(set(value)) != len(value):
        raise FieldError("names a filter twice")
    return tuple(value)


def resolve(
    sec: Section, names: tuple[str, ...], filters: tuple[BGPFilter, ...]
) -> tuple[BGPFilter, ...]:
    """The peer's filters, in its order; an unknown name is an error on ``peers[i].filters``."""
    by_name = {f.name: f for f in filters}
    for i, name in enumerate(names):
        if name not in by_name:
            known = ", ".join(by_name) or "none defined"
            raise sec.error(f"filters[{i}]", f"no filter named {name!r} (filters: {known})")
    return tuple(by_name[n] for n in names)
