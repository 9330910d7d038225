"""The BGP decision process: RFC 4271 §9.1.2.2 plus RFC 4456 §9's reflector tie-breaks.

``best_path`` is one linear function with the RFC's steps as numbered comments. It is pure: it
takes candidate paths (attributes + where they came from) and returns the winner and the reason
it won, which the REST API shows next to every Loc-RIB entry.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bgpd.codec.aspath import path_length
from bgpd.codec.types import PathAttributes, SegmentType

DEFAULT_LOCAL_PREF = 100
_LLGR_STALE = 0xFFFF0006  # RFC 9494 (bgpd.llgr.LLGR_STALE; decision imports no RIB module)


@dataclass(frozen=True, slots=True)
class PathSource:
    """Where a path came from. ``local`` paths are originated by this speaker."""

    peer: str  # peer address; "" for locally originated
    router_id: int  # the peer's BGP identifier as an integer (0 for local)
    ebgp: bool = False
    local: bool = False
    rr_client: bool = False


LOCAL_SOURCE = PathSource(peer="", router_id=0, local=True)

Candidate = tuple[PathAttributes, PathSource]


class Reason(StrEnum):
    ONLY_PATH = "only path"
    NOT_LONG_LIVED_STALE = "not long-lived stale"
    LOCAL_ORIGIN = "locally originated"
    LOCAL_PREF = "higher local-pref"
    AS_PATH = "shorter AS path"
    ORIGIN = "lower origin"
    MED = "lower MED"
    EBGP = "eBGP over iBGP"
    CLUSTER_LIST = "shorter cluster list"
    ROUTER_ID = "lower router ID"
    PEER_ADDRESS = "lower peer address"


def neighbor_as(attrs: PathAttributes) -> int | None:
    """The AS a path was learned from: the first AS of the leading AS_SEQUENCE (§9.1.2.2 c)."""
    for seg_type, asns in attrs.as_path:
        if seg_type == SegmentType.AS_SEQUENCE and asns:
            return asns[0]
        if seg_type in (SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET):
            continue
        return None
    return None


def _ip_key(address: str) -> tuple[int, bytes]:
    if ":" in address:  # a link-local peer's scope (fe80::1%eth0) is no part of the order
        return 6, socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    return 4, socket.inet_aton(address) if address else b""


def _router_id(candidate: Candidate) -> int:
    attrs, source = candidate
    # RFC 4456 §9: a reflected route's ORIGINATOR_ID stands in for the advertiser's identifier.
    if attrs.originator_id is not None:
        return int.from_bytes(socket.inet_aton(attrs.originator_id), "big")
    return source.router_id


def _keep(cands: list[Candidate], key: object) -> list[Candidate]:
    """Keep the candidates with the smallest ``key`` value."""
    values = [key(c) for c in cands]  # type: ignore[operator]
    best = min(values)
    return [c for c, v in zip(cands, values, strict=True) if v == best]


def best_path(candidates: Sequence[Candidate]) -> tuple[Candidate, Reason]:
    """Select the best of ``candidates`` (non-empty): (winner, why it beat the runner-up)."""
    if not candidates:
        raise ValueError("best_path needs at least one candidate")
    cands = list(candidates)
    if len(cands) == 1:
        return cands[0], Reason.ONLY_PATH

    steps: list[tuple[Reason, object]] = [
        # RFC 9494 §4.2: a long-lived stale path (LLGR_STALE) loses to any other, first of all.
        (Reason.NOT_LONG_LIVED_STALE, lambda c: 1 if _LLGR_STALE in c[0].communities else 0),
        # 0. Locally originated routes win (BIRD's protocol preference, Cisco's weight).
        (Reason.LOCAL_ORIGIN, lambda c: 0 if c[1].local else 1),
        # a) Highest degree of preference: LOCAL_PREF (eBGP paths get the default on import).
        (
            Reason.LOCAL_PREF,
            lambda c: -(c[0].local_pref if c[0].local_pref is not None else DEFAULT_LOCAL_PREF),
        ),
        # a') Shortest AS_PATH (§9.1.2.2 a, tie-breaking part).
        (Reason.AS_PATH, lambda c: path_length(c[0].as_path)),  # §9.1.2.2 a)
        # b) Lowest ORIGIN.
        (Reason.ORIGIN, lambda c: int(c[0].origin)),
    ]
    for reason, key in steps:
        kept = _keep(cands, key)
        if len(kept) == 1:
            return kept[0], reason
        cands = kept

    # c) Lowest MED, compared only between paths from the same neighbouring AS; a missing MED is 0.
    by_as: dict[int | None, list[Candidate]] = {}
    for c in cands:
        by_as.setdefault(neighbor_as(c[0]), []).append(c)
    survivors: list[Candidate] = []
    for group in by_as.values():
        survivors.extend(_keep(group, lambda c: c[0].med or 0))
    if len(survivors) == 1:
        return survivors[0], Reason.MED
    cands = survivors

    more_steps: list[tuple[Reason, object]] = [
        # d) Paths from eBGP peers over paths from iBGP peers.
        (Reason.EBGP, lambda c: 0 if c[1].ebgp else 1),
        # e) Lowest interior cost to the NEXT_HOP: podbgp has no IGP; every next hop costs the same.
        # RFC 4456 §9, between f) and g): the shorter CLUSTER_LIST.
        (Reason.CLUSTER_LIST, lambda c: len(c[0].cluster_list)),
        # f) Lowest BGP Identifier (ORIGINATOR_ID when present).
        (Reason.ROUTER_ID, _router_id),
        # g) Lowest peer address.
        (Reason.PEER_ADDRESS, lambda c: _ip_key(c[1].peer)),
    ]
    for reason, key in more_steps:
        kept = _keep(cands, key)
        if len(kept) == 1:
            return kept[0], reason
        cands = kept
    # Identical in every respect (the same peer cannot hold two paths without ADD-PATH).
    return cands[0], Reason.PEER_ADDRESS
