"""podbgp against BIRD 2 for next hops across families: IPv4 routes over an IPv6 session with
Extended Next Hop (RFC 8950), and an unnumbered session over link-local addresses carrying both
families. What BIRD's `show route all` reports is what we sent; what our API shows is what
BIRD sent, with link-local next hops carrying their interface (``fe80::1%eth0``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, PODBGP_V6, ROUTER_V4, ROUTER_V6, podbgp_in
from tests.integration.interop import two_namespaces as _two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OURS_V4, OURS_V6 = "10.244.1.0/24", "2001:db8:1::/48"
BIRDS_V4, BIRDS_V6 = "10.245.0.0/24", "2001:db8:2::/48"
BIRD_ROUTES = (StaticRoute(BIRDS_V4), StaticRoute(BIRDS_V6))


def _link_local(factory: NetnsFactory, ns: str, ifname: str) -> str:
    out = factory.run(ns, "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
    (address,) = [f.split("/")[0] for line in out.stdout.splitlines() for f in line.split()[3:4]]
    return address


def _ifname(factory: NetnsFactory, ns: str) -> str:
    out = factory.run(ns, "ip", "-6", "-o", "addr", "show", "to", PODBGP_V6)
    return out.stdout.split()[1]


@pytest.mark.parametrize("ours", [True, False], ids=["negotiated", "not-offered"])
def test_ipv4_routes_over_ipv6_session(
    netns_factory: NetnsFactory, tmp_path: Path, ours: bool
) -> None:
    ns_p, ns_r = _two_namespaces(netns_factory)
    nbr = BirdNeighbor(PODBGP_V6, 64512, ipv4=True, ipv6=True, extended_next_hop=True)
    config = BirdConfig(router_id=ROUTER_V4, asn=65001, listen_address6=ROUTER_V6,
                        neighbors=(nbr,), routes=BIRD_ROUTES)  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    sp = podbgp_in(
        netns_factory, ns_p, tmp_path, asn=64512,
        peers=[{"address": ROUTER_V6, "asNumber": 65001, "extendedNextHop": ours}],
        originate=[OURS_V4, OURS_V6],
    )  # fmt: skip
    router.wait_established(nbr.protocol, 30)
    peer = wait_for(lambda: (p := sp.get(f"/v1/peers/{ROUTER_V6}"))["state"] == "Established"
                    and p, 15, what="podbgp Established")  # fmt: skip
    ours_ll = _link_local(netns_factory, ns_p, _ifname(netns_factory, ns_p))
    (v6,) = router.wait_route(OURS_V6, 15)
    assert v6["next_hops"] == [PODBGP_V6, ours_ll]  # global + link-local (RFC 2545 §3)
    route = wait_for(lambda: sp.routes_by_prefix().get(BIRDS_V6), 15, what="BIRD's v6 route")
    assert route["nextHop"] == ROUTER_V6
    if ours:
        assert "extended-next-hop" in peer["capabilities"]
        assert peer["families"] == {"ipv4": PODBGP_V6, "ipv6": PODBGP_V6}
        # Our IPv4 block, in MP_REACH_NLRI with our IPv6 address as next hop.
        (v4,) = router.wait_route(OURS_V4, 15)
        assert v4["next_hops"] == [PODBGP_V6, ours_ll] and v4["as_path"] == [64512]
        # BIRD's IPv4 route reaches our Loc-RIB with BIRD's IPv6 address as next hop.
        route = wait_for(lambda: sp.routes_by_prefix().get(BIRDS_V4), 15, what="v4 over v6")
        assert route["nextHop"] == ROUTER_V6 and route["asPath"] == "65001"
    else:
        # Not negotiated: BIRD falls back to its IPv4 address on the link (a classic
        # NEXT_HOP); we have no IPv4 next hop on this session, so ours stay home.
        assert "extended-next-hop" in peer["capabilities"]  # offered by BIRD only
        assert peer["families"] == {"ipv4": None, "ipv6": PODBGP_V6}
        route = wait_for(lambda: sp.routes_by_prefix().get(BIRDS_V4), 15, what="BIRD's v4")
        assert route["nextHop"] == ROUTER_V4
        assert not [r for r in router.routes() if r["prefix"] == OURS_V4]
    assert sp.running(), sp.log()[-2000:]


def test_unnumbered_link_local_session_both_families(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns_p = netns_factory.namespace("p")
    ns_r = netns_factory.namespace("r")
    # No addresses of our own on the link: only the kernel's link-local ones.
    link = netns_factory.veth(ns_p, ns_r, ifname_a="uplink0", ifname_b="down0")
    ours_ll = _link_local(netns_factory, ns_p, link.ifname_a)
    birds_ll = _link_local(netns_factory, ns_r, link.ifname_b)
    nbr = BirdNeighbor(ours_ll, 64512, name="unnumbered", interface=link.ifname_b, ipv4=True,
                       ipv6=True, extended_next_hop=True)  # fmt: skip
    config = BirdConfig(router_id=ROUTER_V4, asn=65001, neighbors=(nbr,), routes=BIRD_ROUTES)
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    started = time.monotonic()
    sp = podbgp_in(
        netns_factory, ns_p, tmp_path, asn=64512,
        peers=[{"interface": link.ifname_a, "asNumber": 65001}],  # extendedNextHop: default on
        originate=[OURS_V4, OURS_V6],
    )  # fmt: skip
    router.wait_established(nbr.protocol, 30)
    scoped = f"{birds_ll}%{link.ifname_a}"
    peers = wait_for(lambda: [p for p in sp.get("/v1/peers") if p["state"] == "Established"],
                     30, what="unnumbered peer Established")  # fmt: skip
    (peer,) = peers
    print(f"unnumbered: podbgp start to Established {time.monotonic() - started:.2f} s")
    assert peer["address"] == scoped and peer["interface"] == link.ifname_a
    assert "extended-next-hop" in peer["capabilities"]
    one = sp.get("/v1/peers/" + scoped.replace("%", "%25"))  # the scope, URL-encoded
    assert one["address"] == scoped and one["interface"] == link.ifname_a
    own = f"{ours_ll}%{link.ifname_a}"
    assert peer["families"] == {"ipv4": own, "ipv6": own}

    # BIRD's routes of both families, next hop its link-local address on our link.
    for prefix in (BIRDS_V4, BIRDS_V6):
        route = wait_for(lambda p=prefix: sp.routes_by_prefix().get(p), 15, what=prefix)
        assert route["nextHop"] == scoped, route
        assert route["asPath"] == "65001"
    # Ours in BIRD: `::` + our link-local address, which BIRD resolves on its interface.
    for prefix in (OURS_V4, OURS_V6):
        (route,) = router.wait_route(prefix, 15)
        assert route["next_hops"] == ["::", ours_ll], route
        assert route["gateway"] == ours_ll and route["interface"] == link.ifname_b, route
        assert route["as_path"] == [64512]
    assert sp.running(), sp.log()[-2000:]


def test_listen_any_accepts_both_families(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """``listen.address: "::"``: BIRD connects to us (we stay passive) over IPv4 and IPv6."""
    ns_p, ns_r = _two_namespaces(netns_factory)
    v4 = BirdNeighbor(PODBGP_V4, 64512, ipv4=True)
    v6 = BirdNeighbor(PODBGP_V6, 64512, ipv4=False, ipv6=True)
    config = BirdConfig(
        router_id=ROUTER_V4,
        asn=65001,
        listen_address=ROUTER_V4,
        listen_address6=ROUTER_V6,
        neighbors=(v4, v6),
        routes=BIRD_ROUTES,
    )
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    sp = podbgp_in(
        netns_factory, ns_p, tmp_path, asn=64512,
        peers=[{"address": ROUTER_V4, "asNumber": 65001, "passive": True},
               {"address": ROUTER_V6, "asNumber": 65001, "passive": True}],
        originate=[OURS_V4, OURS_V6],
    )  # fmt: skip
    router.wait_established(v4.protocol, 30)
    router.wait_established(v6.protocol, 30)
    routes = wait_for(lambda: (r := sp.routes_by_prefix()).keys() >= {BIRDS_V4, BIRDS_V6} and r,
                      15, what="both families")  # fmt: skip
    assert routes[BIRDS_V4]["nextHop"] == ROUTER_V4
    assert routes[BIRDS_V6]["nextHop"] == ROUTER_V6
    assert router.wait_route(OURS_V4, 15)[0]["next_hop"] == PODBGP_V4
    assert router.wait_route(OURS_V6, 15)[0]["next_hop"] == PODBGP_V6
