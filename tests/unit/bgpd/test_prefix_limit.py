"""Maximum prefixes (bgpd.prefix_limit): warning threshold, the limit, the words in ``info``."""

from __future__ import annotations

from bgpd.codec.types import Afi
from bgpd.prefix_limit import MaxPrefixes, PrefixLimitState


def test_warns_once_past_the_threshold_then_trips_over_the_limit() -> None:
    state = PrefixLimitState(MaxPrefixes(limit=10, warning_threshold=80, restart_after=30))
    assert state.setting.warn_at == 8
    assert state.check({Afi.IPV4: 7}) == ([], None)
    warnings, over = state.check({Afi.IPV4: 8})
    assert over is None and warnings == ["8 IPv4 unicast prefixes, 80% of the limit 10"]
    assert state.check({Afi.IPV4: 9}) == ([], None)  # warned already
    assert state.check({Afi.IPV4: 10}) == ([], None)  # at the limit is allowed
    assert state.check({Afi.IPV4: 3, Afi.IPV6: 11}) == ([], Afi.IPV6)
    info = state.trip(Afi.IPV6, 11)
    assert info.startswith("maximum prefixes reached: 11 IPv6 unicast prefixes > limit 10")
    assert "restarting in 30s" in info and state.times_reached == 1


def test_warning_rearms_below_the_threshold_and_restart_zero_stays_down() -> None:
    state = PrefixLimitState(MaxPrefixes(limit=4, warning_threshold=50))
    assert state.check({Afi.IPV4: 2})[0]
    assert state.check({Afi.IPV4: 1}) == ([], None)
    assert state.check({Afi.IPV4: 2})[0]  # warned again after dropping below
    assert "staying down until an operator acts" in state.trip(Afi.IPV4, 5)
