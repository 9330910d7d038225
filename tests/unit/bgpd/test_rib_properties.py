"""The Loc-RIB's shortcuts choose what the full decision process chooses.

``LocRib.decide`` skips the comparison where there is no contest (one peer with paths, a
prefix with one path) and reuses entries between prefixes; whatever sequence of announcements,
withdrawals, restarts (stale paths) and originations comes, every entry must be the winner of
``best_path`` over all candidates, with its reason and stale flag, and the changes it reports
must be exactly the prefixes whose best path changed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.codec.types import Afi, Origin, PathAttributes, SegmentType, prefix_from_str
from bgpd.decision import LOCAL_SOURCE, Candidate, PathSource, best_path
from bgpd.rib import LocRib, PeerTable

PREFIXES = [prefix_from_str(f"10.244.{i}.0/24")[1] for i in range(4)]
SOURCES = [
    PathSource(peer="192.0.2.1", router_id=3),
    PathSource(peer="192.0.2.2", router_id=2, rr_client=True),
    PathSource(peer="192.0.2.3", router_id=1, ebgp=True),
]
LLGR_STALE = 0xFFFF0006

# Few values per attribute, so that paths tie often and every step of the decision is reached.
attributes = st.builds(
    PathAttributes,
    origin=st.sampled_from(Origin),
    as_path=st.lists(st.sampled_from([65001, 65002]), max_size=2).map(
        lambda asns: ((SegmentType.AS_SEQUENCE, tuple(asns)),) if asns else ()
    ),
    next_hop=st.just("192.0.2.9"),
    med=st.sampled_from([None, 0, 5]),
    local_pref=st.sampled_from([None, 100, 200]),
    communities=st.sampled_from([(), (LLGR_STALE,)]),
)

# (peer index or -1 for our own origination, prefix index, attributes index or None to
# withdraw, whether the peer's paths are marked stale now — a restart —, or swept)
operations = st.lists(
    st.tuples(
        st.integers(-1, 2), st.integers(0, 3), st.none() | st.integers(0, 3), st.integers(0, 4)
    ),
    min_size=1,
    max_size=40,
)


def candidates(
    prefix: bytes, tables: list[PeerTable], local: dict[bytes, PathAttributes]
) -> list[Candidate]:
    """Every path for ``prefix``, from scratch: ours first, then each peer's."""
    out: list[Candidate] = [(local[prefix], LOCAL_SOURCE)] if prefix in local else []
    return out + [(paths[prefix], source) for source, paths, _s, _i in tables if prefix in paths]


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(attributes, min_size=4, max_size=4), ops=operations)
def test_decide_agrees_with_the_full_decision(
    pool: list[PathAttributes], ops: list[tuple[int, int, int | None, int]]
) -> None:
    loc = LocRib()
    paths: list[dict[bytes, PathAttributes]] = [{}, {}, {}]
    stale: list[set[bytes] | None] = [None, None, None]
    local: dict[bytes, PathAttributes] = {}
    for who, p, a, restart in ops:
        prefix = PREFIXES[p]
        if who >= 0 and restart == 0:
            stale[who] = set(paths[who])  # the peer restarted: its paths are kept, stale
        elif who >= 0 and restart == 1:
            stale[who] = None  # End-of-RIB: swept (no path was refreshed, all were stale)
        table = local if who < 0 else paths[who]
        if a is None:
            table.pop(prefix, None)
        else:
            table[prefix] = pool[a]
            if who >= 0 and stale[who]:
                stale[who].discard(prefix)  # type: ignore[union-attr]
        before = {q: (b.attrs, b.source) for q, b in loc.table(Afi.IPV4).items()}
        tables: list[PeerTable] = [
            (SOURCES[i], paths[i], stale[i], None) for i in range(3) if paths[i]
        ]
        changed = loc.decide(Afi.IPV4, PREFIXES, tables, local or None)
        best = loc.table(Afi.IPV4)
        for q in PREFIXES:
            full = candidates(q, tables, local)
            if not full:
                assert q not in best
                continue
            (attrs, source), reason = best_path(full)
            got = best[q]
            assert got.attrs is attrs and got.source == source and got.reason == reason
            winner = next(t for t in tables if t[0] == source) if source.peer else None
            assert got.stale == bool(winner and winner[2] and q in winner[2])
        after = {q: (b.attrs, b.source) for q, b in best.items()}
        moved = {
            q
            for q in PREFIXES
            if (before.get(q) is None) != (after.get(q) is None)
            or (
                q in before
                and q in after
                and (before[q][0] is not after[q][0] or before[q][1] != after[q][1])
            )
        }
        assert set(changed) == moved
        assert len(changed) == len(set(changed))
