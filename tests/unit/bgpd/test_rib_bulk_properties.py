"""The RIB's bulk paths agree with the prefix-by-prefix rules.

A table arriving or leaving takes whole-list operations: the Adj-RIB-In stores or drops all the
prefixes of an UPDATE at once, and the Loc-RIB, for a lone peer with nothing stale, stores one
interned entry for every new prefix, or drops every prefix the peer no longer has. Whatever
sequence of UPDATE-like changes comes (many prefixes with one path, repeats, withdrawals, two
peers, our own originations), the Adj-RIB-In reports exactly the entries whose path changed,
every Loc-RIB entry is the winner of ``best_path`` over all candidates, and the decision
reports exactly the prefixes whose best path changed.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.codec.types import Afi, Origin, PathAttributes, prefix_from_str
from bgpd.decision import PathSource, best_path
from bgpd.rib import AdjRibIn, LocRib, PeerTable
from tests.unit.bgpd.test_rib_properties import candidates

AFI = Afi.IPV4
PREFIXES = [prefix_from_str(f"10.244.{i}.0/24")[1] for i in range(8)]
SOURCES = [PathSource(peer="192.0.2.1", router_id=2), PathSource(peer="192.0.2.2", router_id=1)]
POOL = [
    PathAttributes(origin=Origin.IGP, next_hop="192.0.2.9", local_pref=100),
    PathAttributes(origin=Origin.IGP, next_hop="192.0.2.9", local_pref=200),
    PathAttributes(origin=Origin.EGP, next_hop="192.0.2.8", med=5),
]

# (peer index or -1 for our own origination, prefix indices — repeats allowed, as in an UPDATE
# listing a prefix twice —, attributes index or None to withdraw, decide now or batch on)
updates = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 1, -1]),
        st.lists(st.integers(0, 7), min_size=1, max_size=10),
        st.none() | st.integers(0, 2),
        st.booleans(),
    ),
    min_size=1,
    max_size=30,
)


def moved(
    before: dict[bytes, tuple[object, object]], after: dict[bytes, tuple[object, object]]
) -> set[bytes]:
    """The prefixes whose best path (attributes by identity, source) came, went or changed."""
    return {
        q
        for q in before.keys() | after.keys()
        if (q in before) != (q in after)
        or (q in before and (before[q][0] is not after[q][0] or before[q][1] != after[q][1]))
    }


@settings(max_examples=400, deadline=None)
@given(ops=updates)
def test_bulk_paths_agree_with_the_rules(
    ops: list[tuple[int, list[int], int | None, bool]],
) -> None:
    loc = LocRib()
    ribs = [AdjRibIn(), AdjRibIn()]
    model: list[dict[bytes, PathAttributes]] = [{}, {}]
    local: dict[bytes, PathAttributes] = {}
    dirty: set[bytes] = set()
    before: dict[bytes, tuple[object, object]] = {}
    for who, indices, a, decide_now in ops:
        entries = [PREFIXES[i] for i in indices]
        if who < 0:
            for prefix in entries:
                if a is None:
                    local.pop(prefix, None)
                else:
                    local[prefix] = POOL[a]
            dirty.update(entries)
        else:
            rib, held = ribs[who], model[who]
            if a is None:
                expected = {e for e in entries if e in held}
                changed = rib.withdraw(AFI, tuple(entries))
                for e in entries:
                    held.pop(e, None)
            else:
                expected = {e for e in entries if held.get(e) is not POOL[a]}
                changed = rib.announce(AFI, tuple(entries), POOL[a])
                held.update(dict.fromkeys(entries, POOL[a]))
            assert set(changed) == expected
            assert rib.table(AFI) == held
            dirty.update(changed)
        if not decide_now:
            continue
        tables: list[PeerTable] = [
            (SOURCES[i], ribs[i].table(AFI), None, None) for i in range(2) if ribs[i].table(AFI)
        ]
        changed = loc.decide(AFI, dirty, tables, local or None)
        dirty = set()
        best = loc.table(AFI)
        for q in PREFIXES:
            full = candidates(q, tables, local)
            if not full:
                assert q not in best
                continue
            (attrs, source), reason = best_path(full)
            assert best[q].attrs is attrs and best[q].source == source
            assert best[q].reason == reason and not best[q].stale
        after: dict[bytes, tuple[object, object]] = {
            q: (b.attrs, b.source) for q, b in best.items()
        }
        assert set(changed) == moved(before, after)
        assert len(changed) == len(set(changed))
        before = after
