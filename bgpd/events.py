"""What the speaker tells the outside world: typed events, one stream, one subscriber type.

The speaker publishes the prefixes whose Loc-RIB best path changed (RFC 4271 §9.1.2, Phase 2 —
what a router would hand its forwarding table) and an :class:`EndOfRib` when a peer finishes its
initial table for a family (RFC 4724 §2). These are the only way out of the speaker towards a
dataplane: OpenBGPD's ``rde_send_kroute`` as data. A batched subscriber receives one
:class:`BestRouteChanges` per decision step and family (a 100k-prefix table is a few dozen
events, not 100k); any other subscriber a :class:`BestRouteChange` per prefix, in the same order
(:func:`one_by_one` splits the batches). Subscribers are called synchronously on the speaker's
task and must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from socket import inet_ntoa

from bgpd.codec.types import Afi, Safi, prefix_to_str
from bgpd.rib import Best

log = logging.getLogger("podbgp.bgpd.events")


@dataclass(frozen=True, slots=True)
class BestRouteChange:
    """The best path for ``prefix`` changed.

    ``next_hop`` is the winning path's next hop, or None when the prefix has no best path any
    more (withdrawn). ``local`` is true when the winner is a route this speaker originates (its
    own block), which a dataplane programs from its own state, not from BGP. ``received`` is the
    ``time.monotonic()`` at which the oldest UPDATE decided in the same run reached the speaker
    (None when no UPDATE caused the change: a session down, a policy or origin change), so a
    dataplane can measure UPDATE → forwarding-table latency without knowing the speaker.
    """

    afi: Afi
    prefix: str
    next_hop: str | None
    local: bool = False
    received: float | None = None

    @property
    def withdrawn(self) -> bool:
        return self.next_hop is None and not self.local


@dataclass(frozen=True, slots=True)
class BestRouteChanges:
    """The best paths of ``afi`` that changed in one decision step, each prefix once (its state
    after the step), in the order the per-prefix events would come.

    Parallel tuples, one place per prefix, as in :class:`BestRouteChange`: ``next_hops`` is None
    where the prefix has no best path any more or the winner is ``local`` (so a dataplane may
    read (prefix, next hop) pairs alone); ``received`` is shared by all of them.
    """

    afi: Afi
    prefixes: tuple[str, ...]
    next_hops: tuple[str | None, ...]
    local: tuple[bool, ...]
    received: float | None = None

    def __len__(self) -> int:
        return len(self.prefixes)

    def events(self) -> Iterator[BestRouteChange]:
        """The same changes as one :class:`BestRouteChange` each."""
        afi, received = self.afi, self.received
        for prefix, next_hop, local in zip(self.prefixes, self.next_hops, self.local, strict=True):
            yield BestRouteChange(afi, prefix, next_hop, local, received)


@dataclass(frozen=True, slots=True)
class EndOfRib:
    """``peer`` has sent its whole table for (afi, safi) after the session came up."""

    peer: str
    afi: Afi
    safi: Safi


SpeakerEvent = BestRouteChange | BestRouteChanges | EndOfRib
EventSink = Callable[[SpeakerEvent], None]


def one_by_one(sink: EventSink) -> EventSink:
    """``sink`` fed a :class:`BestRouteChange` per prefix of each batch (other events as they
    are); a change it fails on is logged and the rest of the batch still reaches it."""

    def split(event: SpeakerEvent) -> None:
        if not isinstance(event, BestRouteChanges):
            sink(event)
            return
        for change in event.events():
            try:
                sink(change)
            except Exception:
                log.exception("event=subscriber-failed type=BestRouteChange")

    return split


def best_route_changes(
    afi: Afi, prefixes: Iterable[bytes], best: Mapping[bytes, Best], received: float | None
) -> BestRouteChanges:
    """The batch for the Loc-RIB entries ``prefixes`` of ``best`` (absent: no best path).

    Loc-RIB entries are interned, so a next hop's text is made once per entry, not per prefix.
    """
    v4 = afi == Afi.IPV4
    hops: dict[int, tuple[str | None, bool]] = {}  # id(Best) -> (next hop, local)
    texts: list[str] = []
    next_hops: list[str | None] = []
    local: list[bool] = []
    for prefix in prefixes:
        texts.append(_v4_text(prefix) if v4 else prefix_to_str(afi, prefix))
        entry = best.get(prefix)
        if entry is None:
            next_hops.append(None)
            local.append(False)
            continue
        hop = hops.get(id(entry))
        if hop is None:
            next_hop = entry.attrs.next_hop
            if entry.source.local:
                hop = (None, True)
            else:
                hop = (str(next_hop) if next_hop is not None else None, False)
            hops[id(entry)] = hop
        next_hops.append(hop[0])
        local.append(hop[1])
    return BestRouteChanges(afi, tuple(texts), tuple(next_hops), tuple(local), received)


def _v4_text(wire: bytes) -> str:
    """:func:`prefix_to_str` for IPv4 at two thirds of its cost."""
    return inet_ntoa(wire[1:] + _PAD[len(wire)]) + _LENGTHS[wire[0]]


_PAD = [b"\0" * (5 - n) for n in range(6)]  # by wire length: zeros to a whole address
_LENGTHS = [f"/{n}" for n in range(33)]
