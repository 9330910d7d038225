"""The decision process, one row per RFC 4271 §9.1.2.2 / RFC 4456 §9 step."""

from __future__ import annotations

import pytest

from bgpd.codec.aspath import path_length
from bgpd.codec.types import Origin, PathAttributes, SegmentType
from bgpd.decision import LOCAL_SOURCE, PathSource, Reason, best_path

SEQ = SegmentType.AS_SEQUENCE


def attrs(**kw: object) -> PathAttributes:
    base: dict[str, object] = {"next_hop": "192.0.2.1", "local_pref": 100}
    base.update(kw)
    return PathAttributes(**base)  # type: ignore[arg-type]


def src(peer: str, rid: int, ebgp: bool = False) -> PathSource:
    return PathSource(peer=peer, router_id=rid, ebgp=ebgp)


A = src("192.0.2.1", 1)
B = src("192.0.2.2", 2)

# (name, winner candidate, loser candidate, expected reason)
ROWS = [
    (
        "local origin beats a better-looking learned path",
        (attrs(local_pref=100), LOCAL_SOURCE),
        (attrs(local_pref=500), A),
        Reason.LOCAL_ORIGIN,
    ),
    (
        "higher local-pref",
        (attrs(local_pref=200), B),
        (attrs(local_pref=100), A),
        Reason.LOCAL_PREF,
    ),
    (
        "shorter AS path",
        (attrs(as_path=((SEQ, (1,)),)), B),
        (attrs(as_path=((SEQ, (1, 2)),)), A),
        Reason.AS_PATH,
    ),
    (
        "AS_SET counts as one",
        (attrs(as_path=((SegmentType.AS_SET, (1, 2, 3)),)), B),
        (attrs(as_path=((SEQ, (1, 2)),)), A),
        Reason.AS_PATH,
    ),
    (
        "lower origin",
        (attrs(origin=Origin.IGP), B),
        (attrs(origin=Origin.INCOMPLETE), A),
        Reason.ORIGIN,
    ),
    (
        "lower MED from the same neighbour AS",
        (attrs(as_path=((SEQ, (7,)),), med=5), B),
        (attrs(as_path=((SEQ, (7,)),), med=10), A),
        Reason.MED,
    ),
    ("eBGP over iBGP", (attrs(), src("192.0.2.9", 9, ebgp=True)), (attrs(), A), Reason.EBGP),
    (
        "shorter cluster list",
        (attrs(cluster_list=("1.1.1.1",)), B),
        (attrs(cluster_list=("1.1.1.1", "2.2.2.2")), A),
        Reason.CLUSTER_LIST,
    ),
    ("lower router ID", (attrs(), A), (attrs(), B), Reason.ROUTER_ID),
    (
        "ORIGINATOR_ID stands in for the router ID",
        (attrs(originator_id="10.0.0.1"), B),
        (attrs(originator_id="10.0.0.2"), A),
        Reason.ROUTER_ID,
    ),
    (
        "lower peer address",
        (attrs(), src("192.0.2.1", 5)),
        (attrs(), src("192.0.2.7", 5)),
        Reason.PEER_ADDRESS,
    ),
]


@pytest.mark.parametrize(("name", "winner", "loser", "reason"), ROWS, ids=[r[0] for r in ROWS])
def test_step(name: str, winner: tuple, loser: tuple, reason: Reason) -> None:
    for order in ([winner, loser], [loser, winner]):
        best, why = best_path(order)
        assert best is winner, name
        assert why == reason


def test_med_is_not_compared_across_neighbour_ases() -> None:
    # Different neighbour ASes: MED is skipped, the router ID decides.
    low_med = (attrs(as_path=((SEQ, (7,)),), med=1), B)
    high_med = (attrs(as_path=((SEQ, (8,)),), med=50), A)
    best, why = best_path([low_med, high_med])
    assert best is high_med
    assert why == Reason.ROUTER_ID


def test_missing_med_counts_as_zero() -> None:
    none = (attrs(as_path=((SEQ, (7,)),)), B)
    some = (attrs(as_path=((SEQ, (7,)),), med=3), A)
    assert best_path([some, none]) == (none, Reason.MED)


def test_single_candidate_and_empty() -> None:
    only = (attrs(), A)
    assert best_path([only]) == (only, Reason.ONLY_PATH)
    with pytest.raises(ValueError):
        best_path([])


def test_three_way_elimination_keeps_ties_to_the_next_step() -> None:
    c1 = (attrs(local_pref=200, as_path=((SEQ, (1, 2)),)), A)
    c2 = (attrs(local_pref=200, as_path=((SEQ, (1,)),)), B)
    c3 = (attrs(local_pref=100), src("192.0.2.3", 0))
    assert best_path([c1, c2, c3]) == (c2, Reason.AS_PATH)


def test_as_path_length_ignores_confederation_segments() -> None:
    a = attrs(as_path=((SegmentType.AS_CONFED_SEQUENCE, (1, 2)), (SEQ, (3,))))
    assert path_length(a.as_path) == 1
