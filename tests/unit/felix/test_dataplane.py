"""felix.dataplane's pure parts: the VTEP record another node published, back into Vteps."""

from __future__ import annotations

import pytest

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
