"""felix.plan for dual-stack nodes: IPv6 routes, ``vxlan-v6.podbgp``, and RFC 8950 next hops."""

from __future__ import annotations

from felix.plan import (
    VXLAN_DEVICE,
    VXLAN_V6_DEVICE,
    EncapMode,
    FdbEntry,
    Neighbour,
    PlanInput,
    Pool,
    Route,
    RouteType,
    Scope,
    Vtep,
    parse_next_hop,
    plan,
    replan,
    tunnels_needed,
    vxlan_v6_needed,
)

NODE4 = "192.0.2.1/24"
NODE6 = "2001:db8:1::1/64"  # 2001:db8:1::/64 is this node's IPv6 subnet
SAME6 = "2001:db8:1::2"
OTHER6 = "2001:db8:2::1"
V6_NEVER = Pool("fd00:10::/48")
V6_CROSS = Pool("fd00:10::/48", vxlan_mode=EncapMode.CROSS_SUBNET)
V6_ALWAYS = Pool("fd00:10::/48", vxlan_mode=EncapMode.ALWAYS)
V4_NEVER = Pool("10.244.0.0/16")
V4_CROSS_VXLAN = Pool("10.244.0.0/16", vxlan_mode=EncapMode.CROSS_SUBNET)
VTEP6 = Vtep(OTHER6, "fd00:10:0:2::", "66:00:00:00:06:02")
VTEP4 = Vtep("198.51.100.7", "10.244.9.0", "66:00:00:00:04:09")


def inp(**kw: object) -> PlanInput:
    base: dict[str, object] = {
        "node_address": NODE4,
        "node_address_v6": NODE6,
        "uplink": "eth0",
        "uplink_mtu": 1500,
    }
    base.update(kw)
    return PlanInput(**base)  # type: ignore[arg-type]


def test_v6_block_on_the_nodes_v6_subnet_goes_direct() -> None:
    p = plan(inp(pools=(V6_CROSS,), best={"fd00:10:0:2::/64": SAME6}))
    assert p.routes == {"fd00:10:0:2::/64": Route("fd00:10:0:2::/64", gateway=SAME6, dev="eth0")}
    assert p.neighbours == frozenset() and p.fdb == frozenset()


def test_v6_block_across_subnets_goes_through_vxlan_v6_with_mtu_minus_70() -> None:
    p = plan(inp(pools=(V6_CROSS,), best={"fd00:10:0:2::/64": OTHER6}, vteps={OTHER6: VTEP6}))
    assert p.routes["fd00:10:0:2::/64"] == Route(
        "fd00:10:0:2::/64", gateway="fd00:10:0:2::", dev=VXLAN_V6_DEVICE, onlink=True, mtu=1430
    )
    assert p.neighbours == {Neighbour(VXLAN_V6_DEVICE, "fd00:10:0:2::", "66:00:00:00:06:02")}
    assert p.fdb == {FdbEntry(VXLAN_V6_DEVICE, "66:00:00:00:06:02", OTHER6)}
    assert p.vtep_users == {OTHER6: 1}


def test_v4_and_v6_vteps_of_one_node_land_on_their_own_devices() -> None:
    p = plan(
        inp(
            pools=(V6_ALWAYS, Pool("10.244.0.0/16", vxlan_mode=EncapMode.ALWAYS)),
            best={"fd00:10:0:2::/64": OTHER6, "10.244.9.0/24": "198.51.100.7"},
            vteps={OTHER6: VTEP6, "198.51.100.7": VTEP4},
        )
    )
    assert p.routes["10.244.9.0/24"].dev == VXLAN_DEVICE
    assert p.routes["10.244.9.0/24"].mtu == 1450
    assert p.routes["fd00:10:0:2::/64"].dev == VXLAN_V6_DEVICE
    assert {n.dev for n in p.neighbours} == {VXLAN_DEVICE, VXLAN_V6_DEVICE}
    assert FdbEntry(VXLAN_DEVICE, VTEP4.mac, "198.51.100.7") in p.fdb


def test_v6_vxlan_needs_the_device_and_a_vtep() -> None:
    best = {"fd00:10:0:2::/64": OTHER6}
    p = plan(inp(pools=(V6_ALWAYS,), best=best, vxlan_v6_ready=False, vteps={OTHER6: VTEP6}))
    assert p.skipped["fd00:10:0:2::/64"] == f"{VXLAN_V6_DEVICE} is not available"
    p = plan(inp(pools=(V6_ALWAYS,), best=best))
    assert p.skipped["fd00:10:0:2::/64"] == f"no VTEP known for node {OTHER6}"
    # Without encapsulation an off-subnet v6 next hop cannot be used.
    p = plan(inp(pools=(V6_NEVER,), best=best))
    assert "outside 2001:db8:1::/64" in p.skipped["fd00:10:0:2::/64"]


def test_own_v6_blocks_are_blackholed_and_v6_pods_get_a_128() -> None:
    p = plan(
        inp(
            pools=(V6_NEVER,),
            blocks=frozenset({"fd00:10:0:1::/122"}),
            pods={"fd00:10:0:1::5": "pbgaaa", "10.244.1.5": "pbgaaa"},
            best={"fd00:10:0:1::/122": SAME6},
        )
    )
    assert p.routes == {
        "fd00:10:0:1::/122": Route("fd00:10:0:1::/122", RouteType.BLACKHOLE),
        "fd00:10:0:1::5/128": Route("fd00:10:0:1::5/128", dev="pbgaaa"),
        "10.244.1.5/32": Route("10.244.1.5/32", dev="pbgaaa", scope=Scope.LINK),
    }
    assert "owns the block" in p.skipped["fd00:10:0:1::/122"]


def test_v6_prefix_on_a_node_without_ipv6_is_explained() -> None:
    p = plan(inp(node_address_v6=None, pools=(V6_NEVER,), best={"fd00:10:0:2::/64": SAME6}))
    assert p.skipped["fd00:10:0:2::/64"] == (
        f"next hop {SAME6} is IPv6 and this node has no IPv6 address"
    )
    p = plan(inp(pools=(V6_NEVER,), best={"fd00:10:0:2::/64": "192.0.2.2"}))
    assert p.skipped["fd00:10:0:2::/64"] == "next hop 192.0.2.2 is not IPv6"
    p = plan(inp(pools=(V6_NEVER,), best={"fd00:10:0:2::/64": "2001:db8:1::1"}))
    assert p.skipped["fd00:10:0:2::/64"] == "next hop is this node"


def test_v4_prefix_via_a_global_v6_next_hop_on_the_v6_subnet() -> None:
    p = plan(inp(pools=(V4_NEVER,), best={"10.244.2.0/24": SAME6}))
    route = p.routes["10.244.2.0/24"]
    assert route == Route("10.244.2.0/24", gateway=SAME6, dev="eth0")
    assert route.gateway_family_differs
    assert route.describe() == f"10.244.2.0/24 via inet6 {SAME6} dev eth0"


def test_v4_prefix_via_v6_is_direct_only() -> None:
    p = plan(inp(pools=(V4_NEVER,), best={"10.244.2.0/24": OTHER6}))
    assert p.skipped["10.244.2.0/24"] == (
        f"next hop {OTHER6} is outside 2001:db8:1::/64 (IPv4 over IPv6 is direct only)"
    )
    p = plan(inp(pools=(V4_CROSS_VXLAN,), best={"10.244.2.0/24": OTHER6}))
    assert "direct only" in p.skipped["10.244.2.0/24"]
    assert "encapsulates" in p.skipped["10.244.2.0/24"]
    # CrossSubnet on the same v6 subnet does not encapsulate: direct.
    p = plan(inp(pools=(V4_CROSS_VXLAN,), best={"10.244.2.0/24": SAME6}))
    assert p.routes["10.244.2.0/24"].gateway == SAME6


def test_link_local_next_hops_go_direct_on_the_named_interface() -> None:
    p = plan(
        inp(
            node_address_v6=None,  # unnumbered: no global IPv6 address needed
            pools=(V4_NEVER, V6_NEVER),
            best={"10.244.2.0/24": "fe80::2%swp1", "fd00:10:0:2::/64": "fe80::2%swp1"},
        )
    )
    v4 = p.routes["10.244.2.0/24"]
    assert v4 == Route("10.244.2.0/24", gateway="fe80::2", dev="swp1")
    assert v4.describe() == "10.244.2.0/24 via inet6 fe80::2 dev swp1"
    v6 = p.routes["fd00:10:0:2::/64"]
    assert v6 == Route("fd00:10:0:2::/64", gateway="fe80::2", dev="swp1")
    assert v6.describe() == "fd00:10:0:2::/64 via fe80::2 dev swp1"
    p = plan(inp(pools=(V6_ALWAYS,), best={"fd00:10:0:2::/64": "fe80::2%swp1"}))
    assert "link-local (direct only)" in p.skipped["fd00:10:0:2::/64"]


def test_next_hop_text_is_parsed_with_its_scope() -> None:
    hop = parse_next_hop("fe80::1%eth0")
    assert not isinstance(hop, str)
    assert (str(hop[0]), hop[1]) == ("fe80::1", "eth0")
    assert parse_next_hop("fe80::1") == (
        "link-local next hop fe80::1 names no interface (write fe80::1%<interface>)"
    )
    assert "link-local address only" in str(parse_next_hop("2001:db8::1%eth0"))
    assert "link-local address only" in str(parse_next_hop("fe80::1%"))
    assert parse_next_hop("bogus") == "next hop 'bogus' is not an address"
    p = plan(inp(pools=(V4_NEVER,), best={"10.244.2.0/24": "fe80::1"}))
    assert "names no interface" in p.skipped["10.244.2.0/24"]


def test_replan_releases_a_v6_vtep() -> None:
    first = inp(pools=(V6_ALWAYS,), best={"fd00:10:0:2::/64": OTHER6}, vteps={OTHER6: VTEP6})
    before = plan(first)
    assert before.vtep_users == {OTHER6: 1}
    after = replan(before, inp(pools=(V6_ALWAYS,), best={}, vteps={OTHER6: VTEP6}),
                   ["fd00:10:0:2::/64"])  # fmt: skip
    assert after.routes == {} and after.vtep_users == {}
    assert after.neighbours == frozenset() and after.fdb == frozenset()


def test_pool_family_decides_which_vxlan_device_is_needed() -> None:
    assert tunnels_needed([V6_ALWAYS]) == (False, False)
    assert vxlan_v6_needed([V6_ALWAYS]) is True
    assert vxlan_v6_needed([V6_NEVER, Pool("10.0.0.0/8", vxlan_mode=EncapMode.ALWAYS)]) is False
    assert tunnels_needed([Pool("10.0.0.0/8", vxlan_mode=EncapMode.ALWAYS)]) == (False, True)
