"""What the speaker tells the outside world: typed events, one stream, one subscriber type.

The speaker publishes a :class:`BestRouteChange` for every prefix whose Loc-RIB best path
changed (RFC 4271 §9.1.2, Phase 2 — what a router would hand its forwarding table), and an
:class:`EndOfRib` when a peer finishes its initial table for a family (RFC 4724 §2). These are
the only way out of the speaker towards a dataplane: OpenBGPD's ``rde_send_kroute`` as data.
Subscribers are called synchronously on the speaker's task and must not block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bgpd.codec.types import Afi, Safi, prefix_to_str
from bgpd.rib import Best


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
class EndOfRib:
    """``peer`` has sent its whole table for (afi, safi) after the session came up."""

    peer: str
    afi: Afi
    safi: Safi


SpeakerEvent = BestRouteChange | EndOfRib
EventSink = Callable[[SpeakerEvent], None]


def best_route_change(
    afi: Afi, prefix: bytes, best: Best | None, received: float | None = None
) -> BestRouteChange:
    """The event for one Loc-RIB entry (``best`` None: no best path any more)."""
    text = prefix_to_str(afi, prefix)
    if best is None:
        return BestRouteChange(afi, text, None, received=received)
    if best.source.local:
        return BestRouteChange(afi, text, None, local=True, received=received)
    next_hop = best.attrs.next_hop
    hop = str(next_hop) if next_hop is not None else None
    return BestRouteChange(afi, text, hop, received=received)
