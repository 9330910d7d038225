"""felix.latency: a pass's observations at once count as they would one by one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from felix.latency import LatencyRecorder


@given(st.lists(st.floats(min_value=0.0, max_value=20.0), max_size=50))
def test_observing_a_pass_at_once_equals_observing_each_change(starts: list[float]) -> None:
    now = 10.0  # some changes "received" after now (clock skew) count as zero
    one, many = LatencyRecorder(max_samples=8), LatencyRecorder(max_samples=8)
    for start in starts:
        one.observe(now - start, now)
    many.observe_since(starts, now)
    assert one.counts == many.counts and one.count == many.count == len(starts)
    assert abs(one.sum - many.sum) < 1e-9
    assert one.summary(now) == many.summary(now)
