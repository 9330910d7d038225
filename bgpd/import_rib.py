"""The Adj-RIB-In of a peer with an import policy: what it sent, kept beside what we accept.

RFC 4271 §3.2 keeps the routes a peer sent (Adj-RIB-In) apart from what the import policy lets
into the decision process. :class:`FilteredAdjRibIn` is an :class:`~bgpd.rib.AdjRibIn` whose own
tables hold the accepted (possibly changed) paths — what the Loc-RIB reads — and whose
``received`` holds every path as the peer sent it (after loop checks and normalisation). Every
change is applied to both, so a changed filter re-runs over ``received`` (:meth:`reimport`)
without asking the peer again and without resetting the session (BIRD's ``import table``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from bgpd.codec.types import PathAttributes
from bgpd.rib import AdjRibIn

# (afi, prefix without path id, attributes) -> accepted attributes, or None when rejected
ImportDecision = Callable[[int, bytes, PathAttributes], PathAttributes | None]


@dataclass(slots=True)
class FilteredAdjRibIn(AdjRibIn):
    received: AdjRibIn = field(default_factory=AdjRibIn)

    @classmethod
    def wrap(cls, plain: AdjRibIn) -> FilteredAdjRibIn:
        """A filtered RIB whose ``received`` is ``plain`` (everything accepted so far)."""
        rib = cls(received=plain)
        for afi, table in plain.routes.items():
            rib.routes[afi] = dict(table)
        for afi, stale in plain.stale.items():
            rib.stale[afi] = set(stale)
        for afi, rejected in plain.rejected.items():
            rib.rejected[afi] = set(rejected)
        for afi, index in plain.multi.items():
            rib.multi[afi] = {prefix: set(entries) for prefix, entries in index.items()}
        return rib

    def set_add_path(self, afi: int, enabled: bool) -> list[bytes]:
        self.received.set_add_path(afi, enabled)
        return AdjRibIn.set_add_path(self, afi, enabled)

    def withdraw(self, afi: int, entries: Iterable[bytes]) -> list[bytes]:
        entries = list(entries)
        self.received.withdraw(afi, entries)
        return AdjRibIn.withdraw(self, afi, entries)

    def mark_stale(self, families: Iterable[int]) -> None:
        families = list(families)
        self.received.mark_stale(families)
        AdjRibIn.mark_stale(self, families)

    def sweep_stale(self, afi: int) -> list[bytes]:
        # What the peer did not send again goes from both tables; a path the filter now
        # rejects was already removed from ours (and from our stale set) on arrival.
        self.received.sweep_stale(afi)
        return AdjRibIn.sweep_stale(self, afi)

    def clear(self, afi: int) -> list[bytes]:
        self.received.clear(afi)
        return AdjRibIn.clear(self, afi)

    def receive(
        self,
        afi: int,
        entries: Sequence[bytes],
        attrs: PathAttributes | None,
        decide: ImportDecision,
    ) -> list[bytes]:
        """Paths the peer announced (``attrs`` None: ignored by normalisation, a loop): keep
        them as received and store what ``decide`` makes of each; return changed prefixes."""
        self.received.announce(afi, entries, attrs)
        if attrs is None:
            return AdjRibIn.announce(self, afi, entries, None)
        add_path = afi in self.multi
        outcome: dict[int, tuple[PathAttributes | None, list[bytes]]] = {}
        for entry in entries:
            accepted = decide(afi, entry[4:] if add_path else entry, attrs)
            slot = outcome.get(id(accepted))
            if slot is None:
                slot = outcome[id(accepted)] = (accepted, [])
            slot[1].append(entry)
        changed: list[bytes] = []
        for accepted, group in outcome.values():
            changed += AdjRibIn.announce(self, afi, group, accepted)
        return changed

    def reimport(self, decide: ImportDecision) -> dict[int, list[bytes]]:
        """Run ``decide`` again over every received path (the policy changed); the prefixes
        whose accepted path changed, by family."""
        changed: dict[int, list[bytes]] = {}
        for afi, table in self.received.routes.items():
            add_path = afi in self.multi
            ours = self.table(afi)
            redo: dict[int, tuple[PathAttributes | None, list[bytes]]] = {}
            for entry, attrs in table.items():
                accepted = decide(afi, entry[4:] if add_path else entry, attrs)
                current = ours.get(entry)
                if accepted is current or (accepted is not None and accepted == current):
                    continue
                slot = redo.get(id(accepted))
                if slot is None:
                    slot = redo[id(accepted)] = (accepted, [])
                slot[1].append(entry)
            stale = self.received.stale.get(afi)
            out: list[bytes] = []
            for accepted, group in redo.values():
                out += AdjRibIn.announce(self, afi, group, accepted)
                if accepted is not None and stale:
                    # Still stale as received: accepting it anew does not refresh it.
                    self.stale.setdefault(afi, set()).update(e for e in group if e in stale)
            if out:
                changed[afi] = out
        return changed

    def received_count(self) -> int:
        return self.received.received_count()
