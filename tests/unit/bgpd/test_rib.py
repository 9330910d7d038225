"""Adj-RIB-In bookkeeping (announce, withdraw, reject, graceful-restart stale) and Loc-RIB."""

from __future__ import annotations

from bgpd.codec.types import Afi, PathAttributes, prefix_from_str
from bgpd.decision import LOCAL_SOURCE, PathSource, Reason
from bgpd.rib import AdjRibIn, LocRib

P1 = prefix_from_str("10.244.1.0/24")[1]
P2 = prefix_from_str("10.244.2.0/24")[1]
A1 = PathAttributes(next_hop="192.0.2.1", local_pref=100)
A2 = PathAttributes(next_hop="192.0.2.2", local_pref=100)


def test_announce_reports_only_real_changes() -> None:
    rib = AdjRibIn()
    assert rib.announce(Afi.IPV4, [P1, P2], A1) == [P1, P2]
    assert rib.announce(Afi.IPV4, [P1], A1) == []  # same interned attributes
    assert rib.announce(Afi.IPV4, [P1], A2) == [P1]
    assert rib.withdraw(Afi.IPV4, [P1, P1]) == [P1]
    assert rib.count() == 1


def test_rejected_prefixes_are_counted_and_replace_accepted_ones() -> None:
    rib = AdjRibIn()
    rib.announce(Afi.IPV4, [P1], A1)
    assert rib.announce(Afi.IPV4, [P1], None) == [P1]  # now rejected: gone from the table
    assert rib.count() == 0 and rib.rejected_count() == 1
    rib.announce(Afi.IPV4, [P1], A1)
    assert rib.rejected_count() == 0


def test_stale_paths_survive_until_swept_and_refresh_clears_the_mark() -> None:
    rib = AdjRibIn()
    rib.announce(Afi.IPV4, [P1, P2], A1)
    rib.mark_stale([Afi.IPV4])
    assert rib.stale_count() == 2
    # Re-announced after the restart with the same attributes: a change (no longer stale).
    assert rib.announce(Afi.IPV4, [P1], A1) == [P1]
    assert rib.sweep_stale(Afi.IPV4) == [P2]
    assert set(rib.table(Afi.IPV4)) == {P1}
    assert rib.stale_count() == 0


def test_loc_rib_decide_reports_changes_and_interns_entries() -> None:
    loc = LocRib()
    src = PathSource(peer="192.0.2.1", router_id=1)
    paths = {P1: A1, P2: A1}
    table = [(src, paths, None, None)]
    assert sorted(loc.decide(Afi.IPV4, [P1, P2], table, None)) == [P1, P2]
    best = loc.table(Afi.IPV4)
    assert best[P1] is best[P2]  # one shared entry for one path
    assert best[P1].reason == Reason.ONLY_PATH
    assert loc.decide(Afi.IPV4, [P1, P2], table, None) == []  # nothing changed
    # A local origination wins, and says why.
    assert loc.decide(Afi.IPV4, [P1], table, {P1: A2}) == [P1]
    assert best[P1].source == LOCAL_SOURCE and best[P1].reason == Reason.LOCAL_ORIGIN
    # Withdrawn everywhere: the entry goes, once.
    del paths[P2]
    assert loc.decide(Afi.IPV4, [P2], table, None) == [P2]
    assert loc.decide(Afi.IPV4, [P2], table, None) == []
    assert loc.count() == 1


def test_loc_rib_stale_flag_changes_the_entry_but_not_the_route() -> None:
    loc = LocRib()
    src = PathSource(peer="192.0.2.1", router_id=1)
    assert loc.decide(Afi.IPV4, [P1], [(src, {P1: A1}, {P1}, None)], None) == [P1]
    assert loc.table(Afi.IPV4)[P1].stale
    # Refreshed after the restart: same path, so no export, but no longer marked stale.
    assert loc.decide(Afi.IPV4, [P1], [(src, {P1: A1}, set(), None)], None) == []
    assert not loc.table(Afi.IPV4)[P1].stale


def test_loc_rib_decides_between_add_path_entries_of_one_peer() -> None:
    loc = LocRib()
    src = PathSource(peer="192.0.2.1", router_id=1)
    low = PathAttributes(next_hop="192.0.2.7", local_pref=100)
    high = PathAttributes(next_hop="192.0.2.8", local_pref=200)
    e1, e2 = b"\0\0\0\1" + P1, b"\0\0\0\2" + P1
    table = [(src, {e1: low, e2: high}, None, {P1: {e1, e2}})]
    assert loc.decide(Afi.IPV4, [P1], table, None) == [P1]
    best = loc.table(Afi.IPV4)[P1]
    assert best.attrs is high and best.reason == Reason.LOCAL_PREF
