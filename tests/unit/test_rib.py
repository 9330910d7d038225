"""Adj-RIB-In bookkeeping (announce, withdraw, reject, graceful-restart stale) and Loc-RIB."""

from __future__ import annotations

from bgpd.codec.types import Afi, PathAttributes, prefix_from_str
from bgpd.decision import LOCAL_SOURCE, PathSource, Reason
from bgpd.rib import AdjRibIn, Best, LocRib

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


def test_loc_rib_change_detection() -> None:
    loc = LocRib()
    src = PathSource(peer="192.0.2.1", router_id=1)
    assert loc.set(Afi.IPV4, P1, Best(A1, src, Reason.ONLY_PATH))
    assert not loc.set(Afi.IPV4, P1, Best(A1, src, Reason.ROUTER_ID))  # same path
    assert loc.table(Afi.IPV4)[P1].reason == Reason.ROUTER_ID
    assert loc.set(Afi.IPV4, P1, Best(A1, LOCAL_SOURCE, Reason.LOCAL_ORIGIN))
    assert loc.set(Afi.IPV4, P1, None)
    assert not loc.set(Afi.IPV4, P1, None)
    assert loc.count() == 0
