"""Routing information bases (RFC 4271 §3.2): Adj-RIB-In per peer and the Loc-RIB.

Pure data structures, owned and mutated only by the speaker task. Prefixes are wire-form bytes
(see ``bgpd.codec.types``), kept per address family; a path is its interned ``PathAttributes``.
Graceful restart (RFC 4724 §4.2) marks a peer's paths stale instead of removing them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bgpd.codec.types import PathAttributes
from bgpd.decision import PathSource, Reason


@dataclass(slots=True)
class AdjRibIn:
    """Paths one peer announced, after import normalisation, by family then prefix."""

    routes: dict[int, dict[bytes, PathAttributes]] = field(default_factory=dict)
    stale: dict[int, set[bytes]] = field(default_factory=dict)
    rejected: dict[int, set[bytes]] = field(default_factory=dict)

    def table(self, afi: int) -> dict[bytes, PathAttributes]:
        table = self.routes.get(afi)
        if table is None:
            table = self.routes[afi] = {}
        return table

    def announce(
        self, afi: int, prefixes: Iterable[bytes], attrs: PathAttributes | None
    ) -> list[bytes]:
        """Store ``attrs`` for each prefix (None: rejected by import policy); return changed."""
        table = self.table(afi)
        stale = self.stale.get(afi)
        rejected = self.rejected.get(afi)
        changed: list[bytes] = []
        if attrs is None:
            rejected = self.rejected.setdefault(afi, set())
            for prefix in prefixes:
                rejected.add(prefix)
                if table.pop(prefix, None) is not None:
                    changed.append(prefix)
            return changed
        for prefix in prefixes:
            old = table.get(prefix)
            table[prefix] = attrs
            if stale and prefix in stale:
                stale.discard(prefix)
                changed.append(prefix)  # refreshed after a restart: no longer stale
                continue
            if rejected:
                rejected.discard(prefix)
            if old is not attrs:
                changed.append(prefix)
        return changed

    def withdraw(self, afi: int, prefixes: Iterable[bytes]) -> list[bytes]:
        table = self.table(afi)
        stale = self.stale.get(afi)
        rejected = self.rejected.get(afi)
        changed: list[bytes] = []
        for prefix in prefixes:
            if table.pop(prefix, None) is not None:
                changed.append(prefix)
            if stale:
                stale.discard(prefix)
            if rejected:
                rejected.discard(prefix)
        return changed

    def mark_stale(self, families: Iterable[int]) -> None:
        """RFC 4724 §4.2: keep the paths of these families, marked stale."""
        for afi in families:
            self.stale[afi] = set(self.table(afi))

    def sweep_stale(self, afi: int) -> list[bytes]:
        """Remove the paths of ``afi`` still stale (End-of-RIB received, or timer ended)."""
        stale = self.stale.pop(afi, set())
        table = self.table(afi)
        for prefix in stale:
            del table[prefix]
        return list(stale)

    def clear(self, afi: int) -> list[bytes]:
        table = self.routes.pop(afi, {})
        self.stale.pop(afi, None)
        self.rejected.pop(afi, None)
        return list(table)

    def count(self) -> int:
        return sum(len(t) for t in self.routes.values())

    def stale_count(self) -> int:
        return sum(len(s) for s in self.stale.values())

    def rejected_count(self) -> int:
        return sum(len(s) for s in self.rejected.values())


@dataclass(frozen=True, slots=True)
class Best:
    """A Loc-RIB entry: the winning path, where it came from, and why it won."""

    attrs: PathAttributes
    source: PathSource
    reason: Reason
    stale: bool = False


@dataclass(slots=True)
class LocRib:
    best: dict[int, dict[bytes, Best]] = field(default_factory=dict)

    def table(self, afi: int) -> dict[bytes, Best]:
        table = self.best.get(afi)
        if table is None:
            table = self.best[afi] = {}
        return table

    def set(self, afi: int, prefix: bytes, best: Best | None) -> bool:
        """Install or remove the best path; True when the Loc-RIB changed."""
        table = self.table(afi)
        old = table.get(prefix)
        if best is None:
            if old is None:
                return False
            del table[prefix]
            return True
        if old is not None and old.attrs is best.attrs and old.source == best.source:
            if old.reason != best.reason or old.stale != best.stale:
                table[prefix] = best  # same path; only the explanation changed
            return False
        table[prefix] = best
        return True

    def count(self) -> int:
        return sum(len(t) for t in self.best.values())
