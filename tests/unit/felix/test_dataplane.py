"""felix.dataplane's pure parts: the VTEP record another node published, back into Vteps;
remote routes given many at once leave felix as the single calls would."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from felix.dataplane import Dataplane, vteps_of
from felix.plan import Vtep

RECORD = {"ip": "10.245.2.0", "mac": "66:00:00:00:04:02", "ipv6": "fd00:10:0:2::",
          "macv6": "6A:00:00:00:06:02"}  # fmt: skip


def test_a_dual_stack_record_gives_one_vtep_per_family_keyed_by_underlay_address() -> None:
    assert vteps_of(RECORD, "192.0.2.2/24", "2001:db8:2::1/64") == [
        Vtep("192.0.2.2", "10.245.2.0", "66:00:00:00:04:02"),
        Vtep("2001:db8:2::1", "fd00:10:0:2::", "6a:00:00:00:06:02"),
    ]


def test_a_family_without_address_or_record_half_is_left_out() -> None:
    assert vteps_of(RECORD, "192.0.2.2/24") == [
        Vtep("192.0.2.2", "10.245.2.0", "66:00:00:00:04:02")
    ]
    assert vteps_of({"ip": "10.245.2.0", "mac": "66:00:00:00:04:02"}, None, "2001:db8::2") == []
    assert vteps_of({}, "192.0.2.2", "2001:db8::2") == []


def test_the_v6_node_address_must_be_ipv6() -> None:
    with pytest.raises(ValueError, match="is not an IPv6 address"):
        Dataplane("n", "192.0.2.1/24", "eth0", node_address_v6="192.0.2.9/24")
    dp = Dataplane("n", "192.0.2.1/24", "eth0", node_address_v6="2001:db8::1/64")
    assert dp.snapshot()["addressV6"] == "2001:db8::1/64"


# (prefix index, next hop index or None to remove), applied in order; a receive time or None
route_changes = st.lists(
    st.tuples(st.integers(0, 5), st.none() | st.integers(0, 2)), min_size=0, max_size=20
)


def counting(dp: Dataplane) -> list[int]:
    """Count the dataplane's wake-ups of its reconciler (the real trigger still runs)."""
    calls = [0]
    trigger = dp.reconciler.trigger

    def counted(*, full: bool = False) -> None:
        calls[0] += 1
        trigger(full=full)

    dp.reconciler.trigger = counted  # type: ignore[method-assign]
    return calls


@settings(max_examples=200, deadline=None)
@given(
    before=route_changes,
    batches=st.lists(st.tuples(route_changes, st.none() | st.floats(0, 100)), max_size=4),
)
def test_set_routes_applies_each_change_in_turn_with_one_wake_up(
    before: list[tuple[int, int | None]],
    batches: list[tuple[list[tuple[int, int | None]], float | None]],
) -> None:
    """Against a model of one change at a time (set_route/remove_route are one-item batches):
    the best next hops in order, the prefixes to re-plan with their first receive times, and
    one wake-up of the reconciler for a batch that changed anything, none otherwise."""
    prefixes = [f"10.244.{i}.0/24" for i in range(6)]
    hops = ["192.0.2.2", "192.0.2.3", "fe80::1%eth0"]
    dp = Dataplane("n", "192.0.2.1/24", "eth0")
    dp.set_routes((prefixes[p], None if h is None else hops[h]) for p, h in before)
    dp._dirty.clear()
    best = dict(dp.best)
    dirty: set[str] = set()
    received_at: dict[str, float] = dict(dp._received)
    calls = counting(dp)
    for changes, received in batches:
        routes = [(prefixes[p], None if h is None else hops[h]) for p, h in changes]
        wakes, changed = calls[0], False
        dp.set_routes(routes, received)
        for prefix, hop in routes:  # the model
            if hop is None and prefix in best:
                del best[prefix]
            elif hop is not None and best.get(prefix) != hop:
                best[prefix] = hop
            else:
                continue
            changed = True
            dirty.add(prefix)
            if received is not None:
                received_at.setdefault(prefix, received)
        assert dp.best == best and list(dp.best) == list(best)
        assert dp._dirty == dirty and dp._received == received_at
        assert calls[0] - wakes == (1 if changed else 0)
