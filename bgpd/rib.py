"""Routing information bases (RFC 4271 §3.2): Adj-RIB-In per peer and the Loc-RIB.

Pure data structures, owned and mutated only by the speaker task. Prefixes are wire-form bytes
(see ``bgpd.codec.types``), kept per address family; a path is its interned ``PathAttributes``.
Graceful restart (RFC 4724 §4.2) marks a peer's paths stale instead of removing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_, is_not

from bgpd.codec.types import PathAttributes
from bgpd.decision import LOCAL_SOURCE, Candidate, PathSource, Reason, best_path

_ONLY = Reason.ONLY_PATH

# Prefixes new to a peer's Adj-RIB-In with one path: (source, attributes, prefixes).
Run = tuple[PathSource, PathAttributes, Sequence[bytes]]

# A peer's view for one family: where its paths come from, its table, its stale entries, and
# for ADD-PATH families the prefix → entries index (see AdjRibIn).
PeerTable = tuple[
    PathSource, dict[bytes, PathAttributes], set[bytes] | None, dict[bytes, set[bytes]] | None
]


@dataclass(slots=True)
class AdjRibIn:
    """Paths one peer announced, after import normalisation, by family then prefix.

    For a family received with ADD-PATH (RFC 7911) the table is keyed by *entry* — the 4-octet
    path identifier followed by the prefix — and ``multi`` indexes prefix → its entries. The
    lists returned as "changed" always hold plain prefixes, the Loc-RIB's keys.
    """

    routes: dict[int, dict[bytes, PathAttributes]] = field(default_factory=dict)
    stale: dict[int, set[bytes]] = field(default_factory=dict)
    rejected: dict[int, set[bytes]] = field(default_factory=dict)
    multi: dict[int, dict[bytes, set[bytes]]] = field(default_factory=dict)

    def table(self, afi: int) -> dict[bytes, PathAttributes]:
        table = self.routes.get(afi)
        if table is None:
            table = self.routes[afi] = {}
        return table

    def set_add_path(self, afi: int, enabled: bool) -> list[bytes]:
        """Switch a family to/from ADD-PATH keys; the old paths go (returned as changed)."""
        if enabled == (afi in self.multi):
            return []
        changed = self.clear(afi)
        if enabled:
            self.multi[afi] = {}
        return changed

    def announce(
        self, afi: int, entries: Iterable[bytes], attrs: PathAttributes | None
    ) -> list[bytes]:
        """Store ``attrs`` for each entry (None: rejected by import policy); return changed."""
        table = self.table(afi)
        index = self.multi.get(afi)
        stale = self.stale.get(afi)
        changed: list[bytes] = []
        if attrs is None:
            rejected = self.rejected.setdefault(afi, set())
            for entry in entries:
                rejected.add(entry)
                if stale:
                    stale.discard(entry)  # gone now: End-of-RIB must not sweep it again
                if table.pop(entry, None) is not None:
                    changed.append(self._unindex(index, entry))
            return changed
        was_rejected = self.rejected.get(afi)
        if index is None and not stale and not was_rejected:
            # The bulk case: no ADD-PATH index, nothing stale or rejected.
            entries = entries if isinstance(entries, (list, tuple)) else list(entries)
            new = self.announce_new(afi, entries, attrs)
            if new is not None:
                return list(new)
            olds = map(table.get, entries)
            changed = list(compress(entries, map(is_not, olds, repeat(attrs))))
            table.update(zip(entries, repeat(attrs)))
            return changed
        for entry in entries:
            old = table.get(entry)
            table[entry] = attrs
            if index is not None:
                index.setdefault(entry[4:], set()).add(entry)
            if stale and entry in stale:
                stale.discard(entry)
                old = None  # refreshed after a restart: no longer stale, a change
            if was_rejected:
                was_rejected.discard(entry)
            if old is not attrs:
                changed.append(entry if index is None else entry[4:])
        return changed

    def announce_new(
        self, afi: int, entries: Sequence[bytes], attrs: PathAttributes
    ) -> Sequence[bytes] | None:
        """Store ``attrs`` for entries the table holds none of (a table arriving) in bulk, and
        return them (each once); None, storing nothing, if it holds some, or the family has
        ADD-PATH keys or stale or rejected entries (``announce`` handles those)."""
        table = self.table(afi)
        if afi in self.multi or self.stale.get(afi) or self.rejected.get(afi):
            return None
        if not table.keys().isdisjoint(entries):
            return None
        size = len(table)
        table.update(zip(entries, repeat(attrs)))
        if len(table) - size != len(entries):
            return list(dict.fromkeys(entries))  # an entry listed twice
        return entries

    def withdraw(self, afi: int, entries: Iterable[bytes]) -> list[bytes]:
        table = self.table(afi)
        index = self.multi.get(afi)
        stale = self.stale.get(afi)
        rejected = self.rejected.get(afi)
        if index is None and not stale and not rejected:
            # The bulk case (a table withdrawn): plain keys, nothing stale or rejected to drop.
            return list(compress(entries, map(table.pop, entries, repeat(None))))
        changed: list[bytes] = []
        for entry in entries:
            if table.pop(entry, None) is not None:
                changed.append(self._unindex(index, entry))
            if stale:
                stale.discard(entry)
            if rejected:
                rejected.discard(entry)
        return changed

    @staticmethod
    def _unindex(index: dict[bytes, set[bytes]] | None, entry: bytes) -> bytes:
        if index is None:
            return entry
        prefix = entry[4:]
        entries = index.get(prefix)
        if entries is not None:
            entries.discard(entry)
            if not entries:
                del index[prefix]
        return prefix

    def mark_stale(self, families: Iterable[int]) -> None:
        """RFC 4724 §4.2: keep the paths of these families, marked stale."""
        for afi in families:
            self.stale[afi] = set(self.table(afi))

    def sweep_stale(self, afi: int) -> list[bytes]:
        """Remove the paths of ``afi`` still stale (End-of-RIB received, or timer ended)."""
        stale = self.stale.pop(afi, set())
        table = self.table(afi)
        index = self.multi.get(afi)
        changed = []
        for entry in stale:
            del table[entry]
            changed.append(self._unindex(index, entry))
        return changed

    def prefixes(self, afi: int) -> list[bytes]:
        """The plain prefixes this peer has paths for."""
        index = self.multi.get(afi)
        return list(index) if index is not None else list(self.routes.get(afi, ()))

    def clear(self, afi: int) -> list[bytes]:
        table = self.routes.pop(afi, {})
        self.stale.pop(afi, None)
        self.rejected.pop(afi, None)
        index = self.multi.get(afi)
        if index is not None:
            self.multi[afi] = {}
            return list(index)
        return list(table)

    def count(self) -> int:
        return sum(len(t) for t in self.routes.values())

    def stale_count(self) -> int:
        return sum(len(s) for s in self.stale.values())

    def rejected_count(self) -> int:
        return sum(len(s) for s in self.rejected.values())

    def received_count(self) -> int:
        """Paths the peer announced, accepted or not."""
        return self.count() + self.rejected_count()


@dataclass(frozen=True, slots=True)
class Best:
    """A Loc-RIB entry: the winning path, where it came from, and why it won."""

    attrs: PathAttributes
    source: PathSource
    reason: Reason
    stale: bool = False


@dataclass(slots=True)
class LocRib:
    """Best path per prefix. ``Best`` entries are interned: many prefixes share one object."""

    best: dict[int, dict[bytes, Best]] = field(default_factory=dict)
    # The only peer with paths for the family in the last ``decide`` (so every best path it
    # set is that peer's), None if there were others or our own: export uses it to skip work.
    sole_source: str | None = None
    _interned: dict[tuple[int, int, Reason, bool], Best] = field(default_factory=dict)

    def decide(
        self,
        afi: int,
        prefixes: Iterable[bytes],
        peers: list[PeerTable],
        local: dict[bytes, PathAttributes] | None,
    ) -> list[bytes]:
        """Run the decision process for ``prefixes``; return those whose best path changed."""
        table = self.table(afi)
        if len(peers) == 1 and not local and peers[0][3] is None:
            self.sole_source = peers[0][0].peer
            return self._decide_single(table, prefixes, peers[0])
        self.sole_source = None
        changed: list[bytes] = []
        for prefix in prefixes:
            candidates: list[Candidate] = []
            stale_of: dict[int, bool] = {}
            if local:
                attrs = local.get(prefix)
                if attrs is not None:
                    candidates.append((attrs, LOCAL_SOURCE))
            for source, paths, stale, index in peers:
                if index is not None:
                    for entry in index.get(prefix, ()):
                        candidates.append((paths[entry], source))
                        if stale and entry in stale:
                            stale_of[id(source)] = True
                    continue
                attrs = paths.get(prefix)
                if attrs is not None:
                    candidates.append((attrs, source))
                    if stale and prefix in stale:
                        stale_of[id(source)] = True
            old = table.get(prefix)
            if not candidates:
                if old is not None:
                    del table[prefix]
                    changed.append(prefix)
                continue
            if len(candidates) == 1:
                (attrs, source), reason = candidates[0], Reason.ONLY_PATH
            else:
                (attrs, source), reason = best_path(candidates)
            best = self._intern(attrs, source, reason, stale_of.get(id(source), False))
            if old is best:
                continue
            table[prefix] = best
            if old is None or old.attrs is not attrs or old.source != source:
                changed.append(prefix)
        return changed

    def store_runs(
        self, afi: int, runs: list[Run], peers: list[PeerTable],
        local: dict[bytes, PathAttributes] | None,
    ) -> list[bytes] | None:  # fmt: skip
        """Runs of prefixes new to a peer's Adj-RIB-In, one path each run (UPDATEs as they
        came, see ``AdjRibIn.announce_new``), when that peer is the only source and has nothing
        stale: its paths are the best, stored run by run with no lookup in its Adj-RIB-In.
        Returns the prefixes; None if the case does not hold (the caller decides them instead).

        No lookup in the Loc-RIB either: it holds none of them (the peer's Adj-RIB-In did not,
        and any other source's removal is pending as decided work, which rules this case out).
        Were it to hold one, the peer's path replaces it: the decision's answer for a prefix
        with a single path."""
        if len(peers) != 1 or local or peers[0][2] or peers[0][3] is not None:
            return None
        source, table = peers[0][0], self.table(afi)
        if any(src is not source for src, _attrs, _entries in runs):
            return None
        self.sole_source = source.peer
        changed: list[bytes] = []
        for _src, attrs, entries in runs:
            table.update(zip(entries, repeat(self._intern(attrs, source, _ONLY, False))))
            changed += entries
        return changed

    def _decide_single(
        self, table: dict[bytes, Best], prefixes: Iterable[bytes], peer: PeerTable
    ) -> list[bytes]:
        """The common case, one source of paths: its path is the best (the hot path in bulk).
        No comparison at all; consecutive prefixes with the same path share one lookup."""
        source, paths, stale, _index = peer
        bests: dict[tuple[int, bool], Best] = {}
        changed: list[bytes] = []
        if not stale:
            return self._decide_fresh(table, prefixes, source, paths)
        for prefix in prefixes:
            attrs = paths.get(prefix)
            old = table.get(prefix)
            if attrs is None:
                if old is not None:
                    del table[prefix]
                    changed.append(prefix)
                continue
            is_stale = prefix in stale
            best = bests.get((id(attrs), is_stale))
            if best is None:
                best = bests[id(attrs), is_stale] = self._intern(
                    attrs, source, Reason.ONLY_PATH, is_stale
                )
            if old is best:
                continue
            table[prefix] = best
            if old is None or old.attrs is not attrs or old.source != source:
                changed.append(prefix)
        return changed

    def _decide_fresh(
        self, table: dict[bytes, Best], prefixes: Iterable[bytes], source: PathSource,
        paths: dict[bytes, PathAttributes],
    ) -> list[bytes]:  # fmt: skip
        """``_decide_single`` with nothing stale: the Best depends on the attributes alone.
        Two bulk cases take whole-list operations, not a step per prefix: every prefix new to
        the Loc-RIB and held by the peer (a table arriving), and every prefix gone from the
        peer (a table withdrawn)."""
        prefixes = list(prefixes)
        offered = list(map(paths.get, prefixes))
        if all(offered) and table.keys().isdisjoint(prefixes):
            first = offered[0] if offered else None
            if first is not None and all(map(is_, offered, repeat(first))):
                table.update(zip(prefixes, repeat(self._intern(first, source, _ONLY, False))))
            else:
                distinct = dict(zip(map(id, offered), offered, strict=True))
                bests = {k: self._intern(a, source, _ONLY, False) for k, a in distinct.items() if a}
                table.update(zip(prefixes, map(bests.__getitem__, map(id, offered)), strict=True))
            return prefixes
        if not any(offered):
            return list(compress(prefixes, map(table.pop, prefixes, repeat(None))))
        return self._decide_each(table, prefixes, offered, source)

    def _decide_each(
        self, table: dict[bytes, Best], prefixes: list[bytes],
        offered: list[PathAttributes | None], source: PathSource,
    ) -> list[bytes]:  # fmt: skip
        """``_decide_fresh`` prefix by prefix (``offered``: the peer's path for each)."""
        changed: list[bytes] = []
        bests: dict[int, Best] = {}
        last: PathAttributes | None = None
        best: Best | None = None
        for prefix, attrs, old in zip(prefixes, offered, map(table.get, prefixes), strict=True):
            if attrs is None:
                if old is not None:
                    del table[prefix]
                    changed.append(prefix)
                continue
            if attrs is not last:
                last, best = attrs, bests.get(id(attrs))
                if best is None:
                    best = bests[id(attrs)] = self._intern(attrs, source, _ONLY, False)
            if old is best:
                continue
            table[prefix] = best  # type: ignore[assignment]
            if old is None or old.attrs is not attrs or old.source != source:
                changed.append(prefix)
        return changed

    def _intern(
        self, attrs: PathAttributes, source: PathSource, reason: Reason, stale: bool
    ) -> Best:
        # Keyed by identity: the cache holds each Best, and so its attrs and source, alive.
        key = (id(attrs), id(source), reason, stale)
        best = self._interned.get(key)
        if best is None or best.attrs is not attrs or best.source is not source:
            if len(self._interned) > 100_000:
                self._interned.clear()
            best = self._interned[key] = Best(attrs, source, reason, stale)
        return best

    def table(self, afi: int) -> dict[bytes, Best]:
        table = self.best.get(afi)
        if table is None:
            table = self.best[afi] = {}
        return table

    def count(self) -> int:
        return sum(len(t) for t in self.best.values())


def take_chunk(prefixes: set[bytes], size: int) -> set[bytes]:
    """All of ``prefixes`` (the set itself, no copy) if they are at most ``size``; else
    ``size`` of them, removed from the set."""
    if len(prefixes) <= size:
        return prefixes
    return {prefixes.pop() for _ in range(size)}


def take_runs(runs: list[Run], size: int) -> tuple[list[Run], list[Run]]:
    """The first runs, holding at most ``size`` prefixes (the last one split if need be), and
    the rest, in order."""
    taken = 0
    for i, (source, attrs, entries) in enumerate(runs):
        if taken + len(entries) > size:
            cut = size - taken
            now = [*runs[:i], (source, attrs, entries[:cut])] if cut else runs[:i]
            return now, [(source, attrs, entries[cut:]), *runs[i + 1 :]]
        taken += len(entries)
    return runs, []


def eligible_paths(
    local: PathAttributes | None,
    peers: Iterable[tuple[AdjRibIn, PathSource | None]],
    afi: int,
    prefix: bytes,
) -> list[tuple[PathAttributes, PathSource, bytes]]:
    """Every path for a prefix: our own (``local``), then each Established peer's (Adj-RIB-In,
    source) — as (attributes, source, received path id or b"")."""
    paths: list[tuple[PathAttributes, PathSource, bytes]] = []
    if local is not None:
        paths.append((local, LOCAL_SOURCE, b""))
    for adj_in, source in peers:
        table = adj_in.routes.get(afi)
        if not table or source is None:
            continue
        index = adj_in.multi.get(afi)
        if index is None:
            attrs = table.get(prefix)
            if attrs is not None:
                paths.append((attrs, source, b""))
        else:
            paths.extend((table[e], source, e[:4]) for e in index.get(prefix, ()))
    return paths
