"""Long-lived graceful restart (RFC 9494): keep a gone peer's routes for hours, least preferred.

When a session ends in a way graceful restart covers (no NOTIFICATION, or under the N bit one
that is not Hard Reset: :func:`bgpd.gr.keeps_routes`), and both sides advertised the LLGR
capability for a family, the peer's paths outlive its GR Restart Time: they become *long-lived
stale* for the Long-lived Stale Time (the peer's advertised value, capped by ours):

- tagged with the LLGR_STALE community and least preferred of all paths (before every decision
  step, :func:`bgpd.decision.best_path`), but still used — so still installed in the kernel;
- advertised on only to peers that advertised LLGR themselves (``bgpd.export``), withdrawn from
  the others;
- paths carrying NO_LLGR are dropped instead.

The peer's return (End-of-RIB) or the stale timer ends it, as for graceful restart. This module
holds the pure parts; the speaker owns the timers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bgpd.codec.types import PathAttributes
from bgpd.gr import stale_times
from bgpd.rib import AdjRibIn

__all__ = ["LLGR_STALE", "MAX_STALE_TIME", "NO_LLGR", "stale_times", "to_long_lived"]

LLGR_STALE = 0xFFFF0006  # RFC 9494 §4.1 well-known community
NO_LLGR = 0xFFFF0007
MAX_STALE_TIME = 0xFFFFFF  # 24-bit field (RFC 9494 §3)

Intern = Callable[[PathAttributes | None], PathAttributes | None]


def is_long_lived_stale(attrs: PathAttributes) -> bool:
    return LLGR_STALE in attrs.communities


def to_long_lived(adj_in: AdjRibIn, afi: int, intern: Intern) -> list[bytes]:
    """Turn the family's stale paths long-lived stale (RFC 9494 §4.2); return changed prefixes.

    Paths with NO_LLGR go; the others get LLGR_STALE (once).
    """
    stale = adj_in.stale.get(afi)
    if not stale:
        return []
    table = adj_in.table(afi)
    dropped = [e for e in stale if NO_LLGR in table[e].communities]
    changed = adj_in.withdraw(afi, dropped)
    index = adj_in.multi.get(afi)
    for entry in stale:
        attrs = table[entry]
        if LLGR_STALE not in attrs.communities:
            tagged = intern(
                dataclasses.replace(attrs, communities=(*attrs.communities, LLGR_STALE))
            )
            assert tagged is not None
            table[entry] = tagged
        changed.append(entry if index is None else entry[4:])
    return changed
