"""What of a BGPFilter podbgp can act on: the fields it refuses, with the reason.

A setting that does nothing is a bug, so a filter that sets a field podbgp cannot honour is
refused where it is written (bgpd YAML, ``podbgp apply``), not silently ignored: ``interface``
(podbgp's BGP routes carry no interface) and ``priority`` / ``setPriority`` (no route priority
is carried to the dataplane yet). Pure; shared by the speaker's config and the cluster's
resources.
"""

from __future__ import annotations

from bgpd.bgpfilter import BGPFilter, Direction, Family, FilterError, SetPriority, list_key


def check_supported(f: BGPFilter, where: str = "") -> None:
    """Refuse the BGPFilter fields podbgp cannot act on (a setting that does nothing is a
    bug): ``interface`` (podbgp's BGP routes carry no interface) and ``priority`` /
    ``setPriority`` (no route priority is carried to the dataplane). Raises FilterError."""
    prefix = f"{where}." if where else ""
    for direction in (Direction.EXPORT, Direction.IMPORT):
        for family in (Family.V4, Family.V6):
            key = list_key(direction, family)
            for i, rule in enumerate(f.rules(direction, family)):
                at = f"{prefix}{key}[{i}]"
                if rule.interface is not None:
                    raise FilterError(
                        f"{at}.interface", "not supported: podbgp's BGP routes carry no interface"
                    )
                if rule.priority is not None:
                    raise FilterError(f"{at}.priority", _NO_PRIORITY)
                for j, op in enumerate(rule.operations):
                    if isinstance(op, SetPriority):
                        raise FilterError(f"{at}.operations[{j}].setPriority", _NO_PRIORITY)


_NO_PRIORITY = "not supported: podbgp carries no route priority (kernel metric) yet"
