"""felix.nat.ruleset: the desired NAT table, pure (the kernel side is in
tests/integration/test_felix_nat.py)."""

from __future__ import annotations

from felix.nat import TABLE, ruleset
from felix.plan import Pool

V4 = Pool("10.244.0.0/16", nat_outgoing=True)
V4_NO_NAT = Pool("10.250.0.0/16")
V6 = Pool("fd00:10:244::/48", nat_outgoing=True)


def test_no_table_without_a_natoutgoing_pool() -> None:
    assert ruleset([]) is None
    assert ruleset([V4_NO_NAT]) is None
    assert ruleset([Pool("10.244.0.0/16", nat_outgoing=True, disabled=True)]) is None


def test_masquerade_from_nat_pools_to_outside_every_pool() -> None:
    text = ruleset([V4_NO_NAT, V4])
    assert text is not None
    assert text.startswith(f"table inet {TABLE} {{")
    # Every pool is a pool destination (never NATed to); only the natOutgoing pool is a source.
    assert "set pools4 {" in text and "elements = { 10.244.0.0/16, 10.250.0.0/16 }" in text
    assert "set nat4 {" in text and "elements = { 10.244.0.0/16 }" in text
    assert "ip saddr @nat4 ip daddr != @pools4 masquerade" in text
    assert "type nat hook postrouting priority srcnat" in text
    assert "ip6" not in text  # no IPv6 pool asks for NAT


def test_both_families() -> None:
    text = ruleset([V4, V6])
    assert text is not None
    assert "ip saddr @nat4 ip daddr != @pools4 masquerade" in text
    assert "ip6 saddr @nat6 ip6 daddr != @pools6 masquerade" in text
    assert "type ipv6_addr" in text and "fd00:10:244::/48" in text


def test_a_disabled_pool_stays_a_destination_but_stops_asking_for_nat() -> None:
    disabled = Pool("10.251.0.0/16", nat_outgoing=True, disabled=True)
    text = ruleset([V4, disabled])
    assert text is not None
    assert "elements = { 10.244.0.0/16, 10.251.0.0/16 }" in text  # pools4
    assert "elements = { 10.244.0.0/16 }" in text  # nat4


def test_same_pools_same_text_in_any_order() -> None:
    assert ruleset([V4, V4_NO_NAT, V6]) == ruleset([V6, V4_NO_NAT, V4])
