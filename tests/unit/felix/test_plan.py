"""felix.plan: one test per row of the route table in DESIGN.md, plus what gets skipped and why."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from felix.plan import (
    IPIP_DEVICE,
    VXLAN_DEVICE,
    EncapMode,
    FdbEntry,
    Neighbour,
    PlanInput,
    Pool,
    Route,
    RouteType,
    Scope,
    Vtep,
    canonical,
    plan,
    pool_for,
    tunnels_needed,
    workload_alias,
    workload_ips,
)

NODE = "192.0.2.1/24"  # this node; 192.0.2.0/24 is "same subnet"
SAME = "192.0.2.2"
OTHER = "198.51.100.7"
CROSS_IPIP = Pool("10.244.0.0/16", ipip_mode=EncapMode.CROSS_SUBNET)


def inp(**kw: object) -> PlanInput:
    base: dict[str, object] = {"node_address": NODE, "uplink": "eth0", "uplink_mtu": 1500}
    base.update(kw)
    return PlanInput(**base)  # type: ignore[arg-type]


def test_every_own_block_is_blackholed() -> None:
    p = plan(inp(blocks=frozenset({"10.244.1.0/24", "10.244.9.0/24"})))
    assert p.routes == {
        "10.244.1.0/24": Route("10.244.1.0/24", RouteType.BLACKHOLE),
        "10.244.9.0/24": Route("10.244.9.0/24", RouteType.BLACKHOLE),
    }


def test_same_subnet_next_hop_goes_direct_via_uplink() -> None:
    p = plan(inp(pools=(CROSS_IPIP,), best={"10.244.2.0/24": SAME}))
    assert p.routes["10.244.2.0/24"] == Route("10.244.2.0/24", gateway=SAME, dev="eth0")


def test_cross_subnet_next_hop_goes_through_tunl0_onlink_with_mtu_minus_20() -> None:
    p = plan(inp(pools=(CROSS_IPIP,), best={"10.244.3.0/24": OTHER}))
    assert p.routes["10.244.3.0/24"] == Route(
        "10.244.3.0/24", gateway=OTHER, dev=IPIP_DEVICE, onlink=True, mtu=1480
    )


def test_ipip_always_tunnels_even_on_the_same_subnet() -> None:
    pool = Pool("10.244.0.0/16", ipip_mode=EncapMode.ALWAYS)
    p = plan(inp(pools=(pool,), best={"10.244.2.0/24": SAME}, uplink_mtu=9000))
    assert p.routes["10.244.2.0/24"] == Route(
        "10.244.2.0/24", gateway=SAME, dev=IPIP_DEVICE, onlink=True, mtu=8980
    )


def test_never_mode_is_direct_on_the_subnet_and_skipped_off_it() -> None:
    pool = Pool("10.244.0.0/16")
    p = plan(inp(pools=(pool,), best={"10.244.2.0/24": SAME, "10.244.3.0/24": OTHER}))
    assert p.routes["10.244.2.0/24"] == Route("10.244.2.0/24", gateway=SAME, dev="eth0")
    assert "10.244.3.0/24" not in p.routes
    assert "does not encapsulate" in p.skipped["10.244.3.0/24"]


def test_vxlan_cross_subnet_routes_via_the_vtep_with_neighbour_and_fdb() -> None:
    pool = Pool("10.245.0.0/16", vxlan_mode=EncapMode.CROSS_SUBNET)
    vtep = Vtep(node_ip=OTHER, ip="10.245.3.0", mac="66:00:00:00:00:03")
    p = plan(
        inp(
            pools=(pool,),
            best={"10.245.3.0/24": OTHER, "10.245.2.0/24": SAME},
            vteps={OTHER: vtep},
        )
    )
    assert p.routes["10.245.3.0/24"] == Route(
        "10.245.3.0/24", gateway="10.245.3.0", dev=VXLAN_DEVICE, onlink=True, mtu=1450
    )
    assert p.routes["10.245.2.0/24"] == Route("10.245.2.0/24", gateway=SAME, dev="eth0")
    assert p.neighbours == {Neighbour(VXLAN_DEVICE, "10.245.3.0", "66:00:00:00:00:03")}
    assert p.fdb == {FdbEntry(VXLAN_DEVICE, "66:00:00:00:00:03", OTHER)}


def test_vxlan_without_a_known_vtep_is_skipped_with_the_reason() -> None:
    pool = Pool("10.245.0.0/16", vxlan_mode=EncapMode.ALWAYS)
    p = plan(inp(pools=(pool,), best={"10.245.3.0/24": OTHER}))
    assert p.routes == {}
    assert p.skipped["10.245.3.0/24"] == f"no VTEP known for node {OTHER}"
    assert not p.neighbours and not p.fdb


def test_missing_tunnel_device_is_reported_not_papered_over() -> None:
    p = plan(inp(pools=(CROSS_IPIP,), best={"10.244.3.0/24": OTHER}, ipip_ready=False))
    assert p.skipped["10.244.3.0/24"] == f"{IPIP_DEVICE} is not available"
    pool = Pool("10.245.0.0/16", vxlan_mode=EncapMode.ALWAYS)
    p = plan(inp(pools=(pool,), best={"10.245.3.0/24": OTHER}, vxlan_ready=False))
    assert p.skipped["10.245.3.0/24"] == f"{VXLAN_DEVICE} is not available"


def test_prefixes_outside_every_pool_are_left_alone() -> None:
    p = plan(inp(pools=(CROSS_IPIP,), best={"0.0.0.0/0": SAME, "172.16.0.0/12": SAME}))
    assert p.routes == {}
    assert p.skipped == {
        "0.0.0.0/0": "not inside any IP pool",
        "172.16.0.0/12": "not inside any IP pool",
    }


def test_next_hop_of_this_node_and_own_block_from_a_peer_are_skipped() -> None:
    p = plan(
        inp(
            pools=(CROSS_IPIP,),
            blocks=frozenset({"10.244.1.0/24"}),
            best={"10.244.1.0/24": SAME, "10.244.4.0/24": "192.0.2.1"},
        )
    )
    assert p.routes == {"10.244.1.0/24": Route("10.244.1.0/24", RouteType.BLACKHOLE)}
    assert "owns the block" in p.skipped["10.244.1.0/24"]
    assert p.skipped["10.244.4.0/24"] == "next hop is this node"


def test_local_pods_get_host_routes_scope_link() -> None:
    p = plan(inp(pods={"10.244.1.5": "pbgaaa", "fd00:10::5": "pbgbbb"}))
    assert p.routes["10.244.1.5/32"] == Route("10.244.1.5/32", dev="pbgaaa", scope=Scope.LINK)
    # The kernel keeps every IPv6 route at scope universe: planning "scope link" would churn.
    assert p.routes["fd00:10::5/128"] == Route("fd00:10::5/128", dev="pbgbbb")


def test_ipv6_blocks_route_direct_and_never_through_ipip() -> None:
    pool = Pool("fd00:10::/48", ipip_mode=EncapMode.ALWAYS)
    p = plan(
        inp(node_address="2001:db8::1/64", pools=(pool,), best={"fd00:10:0:2::/64": "2001:db8::2"})
    )
    assert p.routes == {}
    assert p.skipped["fd00:10:0:2::/64"] == "IPIP carries IPv4 only"
    p = plan(
        inp(
            node_address="2001:db8::1/64",
            pools=(Pool("fd00:10::/48"),),
            best={"fd00:10:0:2::/64": "2001:db8::2"},
        )
    )
    assert p.routes["fd00:10:0:2::/64"] == Route(
        "fd00:10:0:2::/64", gateway="2001:db8::2", dev="eth0"
    )


def test_most_specific_pool_decides_the_mode() -> None:
    wide = Pool("10.0.0.0/8", ipip_mode=EncapMode.ALWAYS)
    narrow = Pool("10.244.0.0/16")
    assert pool_for(ipaddress.ip_network("10.244.2.0/24"), [wide, narrow]) == narrow
    assert pool_for(ipaddress.ip_network("10.1.0.0/24"), [wide, narrow]) == wide
    assert pool_for(ipaddress.ip_network("fd00::/64"), [wide, narrow]) is None


def test_tunnels_needed_reads_the_pool_modes() -> None:
    assert tunnels_needed([Pool("10.0.0.0/8")]) == (False, False)
    assert tunnels_needed([CROSS_IPIP]) == (True, False)
    assert tunnels_needed([Pool("10.0.0.0/8", vxlan_mode=EncapMode.ALWAYS), CROSS_IPIP]) == (
        True,
        True,
    )


def test_workload_alias_round_trips_and_ignores_foreign_aliases() -> None:
    alias = workload_alias(["10.244.1.5", "fd00::5"], "default/web-0")
    assert alias == "podbgp:10.244.1.5,fd00::5 default/web-0"
    assert workload_ips(alias) == ["10.244.1.5", "fd00::5"]
    assert workload_ips("uplink to rack 3") == []
    assert workload_ips(None) == []
    assert workload_ips("podbgp:not-an-ip,10.0.0.1") == ["10.0.0.1"]


def test_describe_prints_like_ip_route() -> None:
    tunl = Route("10.244.3.0/24", gateway=OTHER, dev=IPIP_DEVICE, onlink=True, mtu=1480)
    assert tunl.describe() == f"10.244.3.0/24 via {OTHER} dev tunl0 onlink mtu 1480"
    assert Route("10.244.1.0/24", RouteType.BLACKHOLE).describe() == "blackhole 10.244.1.0/24"
    pod = Route("10.244.1.5/32", dev="pbgaaa", scope=Scope.LINK)
    assert pod.describe() == "10.244.1.5/32 dev pbgaaa scope link"


_blocks = st.integers(0, 255).map(lambda i: f"10.244.{i}.0/24")
_hops = st.sampled_from([SAME, OTHER, "192.0.2.1", "203.0.113.9"])


@given(
    own=st.frozensets(_blocks, max_size=4),
    best=st.dictionaries(_blocks, _hops, max_size=12),
    mode=st.sampled_from(list(EncapMode)),
)
def test_every_prefix_is_either_programmed_or_explained(
    own: frozenset[str], best: dict[str, str], mode: EncapMode
) -> None:
    p = plan(inp(pools=(Pool("10.244.0.0/16", ipip_mode=mode),), blocks=own, best=best))
    for prefix in best:
        assert (canonical(prefix) in p.routes) != (canonical(prefix) in p.skipped) or prefix in own
    assert set(p.routes) <= own | set(best)
    for block in own:
        assert p.routes[block].type == RouteType.BLACKHOLE
    for route in p.routes.values():
        if route.dev == IPIP_DEVICE:
            assert route.onlink and route.mtu == 1480
            hop = ipaddress.ip_address(route.gateway or "")
            assert mode == EncapMode.ALWAYS or hop not in ipaddress.ip_network("192.0.2.0/24")


# --- replan: the incremental path gives what a whole plan gives -------------------------------

VX_POOL = Pool("10.245.0.0/16", vxlan_mode=EncapMode.CROSS_SUBNET)
VTEPS = {
    OTHER: Vtep(OTHER, "10.245.9.0", "66:00:00:00:00:09"),
    "198.51.100.8": Vtep("198.51.100.8", "10.245.8.0", "66:00:00:00:00:08"),
}
NEXT_HOPS = [SAME, OTHER, "198.51.100.8", "198.51.100.99", "not-an-address", "192.0.2.1"]
PREFIXES = [f"10.244.{i}.0/24" for i in range(6)] + [f"10.245.{i}.0/24" for i in range(6)]


def mixed_input(best: dict[str, str]) -> PlanInput:
    return inp(
        pools=(CROSS_IPIP, VX_POOL),
        blocks=frozenset({"10.244.0.0/24"}),
        best=best,
        vteps=VTEPS,
        pods={"10.244.0.7": "cali7"},
    )


best_maps = st.dictionaries(st.sampled_from(PREFIXES), st.sampled_from(NEXT_HOPS), max_size=12)


@given(best_maps, st.lists(st.tuples(st.sampled_from(PREFIXES), st.sampled_from(
    [*NEXT_HOPS, None])), max_size=20))  # fmt: skip
def test_replan_equals_a_whole_plan(
    start: dict[str, str], changes: list[tuple[str, str | None]]
) -> None:
    from felix.plan import replan

    best = dict(start)
    current = plan(mixed_input(best))
    for prefix, next_hop in changes:
        if next_hop is None:
            best.pop(prefix, None)
        else:
            best[prefix] = next_hop
        # In place or copied (the dataplane's way, then a caller that keeps the old plan).
        current = replan(current, mixed_input(best), [prefix], reuse=len(best) % 2 == 0)
        whole = plan(mixed_input(best))
        assert current.routes == whole.routes
        assert current.skipped == whole.skipped
        assert current.neighbours == whole.neighbours and current.fdb == whole.fdb
        assert dict(current.vtep_users) == dict(whole.vtep_users)
        assert current.touched is not None and current.touched <= {prefix}


def test_replan_leaves_own_blocks_and_pods_alone() -> None:
    from felix.plan import replan

    base = plan(mixed_input({}))
    again = replan(base, mixed_input({"10.244.0.0/24": SAME}), ["10.244.0.0/24"])
    assert again.routes["10.244.0.0/24"].type == RouteType.BLACKHOLE
    assert again.touched == frozenset()


@given(st.lists(st.tuples(st.sampled_from(PREFIXES), st.sampled_from([*NEXT_HOPS, None])),
                max_size=30), st.integers(min_value=1, max_value=6))  # fmt: skip
def test_replan_of_many_prefixes_at_once_equals_a_whole_plan(
    changes: list[tuple[str, str | None]], per_pass: int
) -> None:
    """A burst replanned in passes of several prefixes, the old plan updated in place."""
    from felix.plan import replan

    best: dict[str, str] = {}
    current = plan(mixed_input(best))
    for start in range(0, len(changes), per_pass):
        burst = changes[start : start + per_pass]
        for prefix, next_hop in burst:
            if next_hop is None:
                best.pop(prefix, None)
            else:
                best[prefix] = next_hop
        current = replan(current, mixed_input(best), [p for p, _ in burst], reuse=True)
    whole = plan(mixed_input(best))
    assert current.routes == whole.routes and current.skipped == whole.skipped
    assert dict(current.vtep_users) == dict(whole.vtep_users)


@given(
    st.one_of(
        st.ip_addresses(v=4).map(lambda a: (a, 32)), st.ip_addresses(v=6).map(lambda a: (a, 128))
    ).flatmap(lambda x: st.tuples(st.just(x[0]), st.integers(0, x[1])))
)
def test_canonical_is_what_ipaddress_writes(address_and_length: tuple[object, int]) -> None:
    """The fast path for canonical IPv4 text and the ipaddress path agree on every prefix,
    written with or without host bits."""
    address, length = address_and_length
    written = f"{address}/{length}"
    expected = str(ipaddress.ip_network(written, strict=False))
    assert canonical(written) == expected
    assert canonical(expected) == expected
