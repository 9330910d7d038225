"""podbgp against a real BIRD 2 in network namespaces: iBGP, eBGP, IPv6, withdrawals, session
reset, graceful restart and TCP MD5. What BIRD's `show route all` reports is what we sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.interop import (
    PODBGP_V4,
    PODBGP_V6,
    ROUTER_V4,
    ROUTER_V6,
    podbgp_in,
    two_namespaces,
)
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

BIRD_ROUTE = StaticRoute(
    "10.245.0.0/24", communities=((65000, 1),), large_communities=((65000, 2, 3),), med=50
)


def bird(factory: NetnsFactory, ns: str, tmp: Path, asn: int, **nbr: object) -> BirdRouter:
    config = BirdConfig(
        router_id=ROUTER_V4,
        asn=asn,
        listen_address=ROUTER_V4,
        neighbors=(BirdNeighbor(PODBGP_V4, 64512, **nbr),),  # type: ignore[arg-type]
        routes=(BIRD_ROUTE,),
    )
    return BirdRouter(factory, ns, config, tmp / "bird").start()


@pytest.mark.parametrize("bird_asn", [64512, 65001], ids=["ibgp", "ebgp"])
def test_routes_both_ways_withdraw_and_reset(
    netns_factory: NetnsFactory, tmp_path: Path, bird_asn: int
) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    router = bird(netns_factory, ns_r, tmp_path, bird_asn)
    sp = podbgp_in(
        netns_factory,
        ns_p,
        tmp_path,
        asn=64512,
        peers=[{"address": ROUTER_V4, "asNumber": bird_asn}],
        originate=["10.244.1.0/24"],
    )
    proto = BirdNeighbor(PODBGP_V4, 64512).protocol
    router.wait_established(proto, 30)

    # BIRD sees our block with the attributes we sent.
    (ours,) = router.wait_route("10.244.1.0/24", 15)
    assert ours["from"] == PODBGP_V4
    assert ours["next_hop"] == PODBGP_V4
    assert ours["origin"] == 0
    if bird_asn == 64512:
        assert ours["as_path"] == [] and ours["local_pref"] == 100
    else:
        assert ours["as_path"] == [64512]

    # We see BIRD's route with its attributes.
    route = wait_for(lambda: sp.routes_by_prefix().get("10.245.0.0/24"), 15, what="BIRD route")
    assert route["nextHop"] == ROUTER_V4
    assert route["communities"] == ["65000:1"]
    assert route["largeCommunities"] == ["65000:2:3"]
    assert route["med"] == 50
    assert route["localPref"] == 100
    assert route["asPath"] == ("" if bird_asn == 64512 else "65001")

    # ROUTE-REFRESH (RFC 2918): BIRD asks for our routes again and gets them.
    before = sp.get(f"/v1/peers/{ROUTER_V4}")["messages"]
    router.birdc("reload", "in", proto)
    after = wait_for(
        lambda: (m := sp.get(f"/v1/peers/{ROUTER_V4}")["messages"])["receivedByType"].get(
            "route-refresh", 0) > before["receivedByType"].get("route-refresh", 0) and
        m["sentByType"].get("update", 0) > before["sentByType"].get("update", 0) and m,
        15, what="route refresh answered",
    )  # fmt: skip
    assert after["sentByType"]["update"] > before["sentByType"]["update"]
    router.wait_route("10.244.1.0/24", 15)

    # Withdrawal: BIRD stops originating; the route leaves our Loc-RIB.
    router.configure(router.with_routes())
    wait_for(lambda: "10.245.0.0/24" not in sp.route_prefixes(), 15, what="withdrawal")

    # Session reset from BIRD's side: the session and our route come back.
    router.configure(router.with_routes(BIRD_ROUTE))
    wait_for(lambda: "10.245.0.0/24" in sp.route_prefixes(), 15, what="re-announcement")
    router.birdc("restart", proto)
    router.wait_established(proto, 30)
    router.wait_route("10.244.1.0/24", 15)
    wait_for(lambda: "10.245.0.0/24" in sp.route_prefixes(), 15, what="routes after reset")
    assert sp.running(), sp.log()[-2000:]


def test_ipv6_session_exchanges_ipv6_blocks(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    config = BirdConfig(
        router_id=ROUTER_V4,
        asn=65001,
        listen_address6=ROUTER_V6,
        neighbors=(BirdNeighbor(PODBGP_V6, 64512, ipv4=False, ipv6=True),),
        routes=(StaticRoute("2001:db8:2::/48"),),
    )
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    sp = podbgp_in(
        netns_factory,
        ns_p,
        tmp_path,
        asn=64512,
        peers=[{"address": ROUTER_V6, "asNumber": 65001}],
        originate=["2001:db8:1::/48"],
    )
    router.wait_established(config.neighbors[0].protocol, 30)
    (ours,) = router.wait_route("2001:db8:1::/48", 15)
    assert ours["next_hop"] == PODBGP_V6
    assert ours["as_path"] == [64512]
    route = wait_for(lambda: sp.routes_by_prefix().get("2001:db8:2::/48"), 15, what="v6 route")
    assert route["nextHop"] == ROUTER_V6
    assert route["asPath"] == "65001"


def test_graceful_restart_bird_keeps_our_routes(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    router = bird(netns_factory, ns_r, tmp_path, 64512, graceful_restart=True, restart_time=60)
    peers = [{"address": ROUTER_V4, "asNumber": 64512}]
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, peers=peers,
                   originate=["10.244.1.0/24"])  # fmt: skip
    proto = BirdNeighbor(PODBGP_V4, 64512).protocol
    router.wait_established(proto, 30)
    router.wait_route("10.244.1.0/24", 15)

    sp.stop()  # SIGTERM: TCP closes without a NOTIFICATION, as in a restart
    wait_for(lambda: router.protocols()[proto].bgp_state != "Established", 15, what="BIRD down")
    kept = [r for r in router.routes() if r["prefix"] == "10.244.1.0/24"]
    assert kept, "BIRD dropped our route although graceful restart was negotiated"

    sp2 = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, peers=peers,
                    originate=["10.244.1.0/24"], name="podbgp2")  # fmt: skip
    router.wait_established(proto, 30)
    router.wait_route("10.244.1.0/24", 15)
    # And the other direction: BIRD restarts gracefully, we keep its route (stale) meanwhile.
    wait_for(lambda: "10.245.0.0/24" in sp2.route_prefixes(), 15, what="BIRD route")
    router.birdc("graceful", "restart", check=False)
    stale = wait_for(
        lambda: (sp2.routes_by_prefix().get("10.245.0.0/24") or {}).get("stale"),
        15,
        what="route kept stale while BIRD restarts",
    )
    assert stale is True


def test_md5_password(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    router = bird(netns_factory, ns_r, tmp_path, 64512, password="s3cret-md5")
    sp = podbgp_in(
        netns_factory,
        ns_p,
        tmp_path,
        asn=64512,
        peers=[{"address": ROUTER_V4, "asNumber": 64512, "password": "s3cret-md5"}],
        originate=["10.244.1.0/24"],
    )
    router.wait_established(BirdNeighbor(PODBGP_V4, 64512).protocol, 30)
    router.wait_route("10.244.1.0/24", 15)
    wait_for(lambda: "10.245.0.0/24" in sp.route_prefixes(), 15, what="route over MD5 session")
    assert "s3cret-md5" not in str(sp.get("/v1/peers"))


def test_ttl_security_with_bird(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """RFC 5082 GTSM on both sides (BIRD `ttl security on`, podbgp `ttlSecurity: 1`): BIRD
    accepts only TTL 255 from us, and we only TTL 255 from it; the session comes up."""
    ns_p, ns_r = two_namespaces(netns_factory)
    config = BirdConfig(
        router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4,
        neighbors=(BirdNeighbor(PODBGP_V4, 64512),), routes=(BIRD_ROUTE,),
    )  # fmt: skip
    gtsm = _WithTtlSecurity(config)
    router = BirdRouter(netns_factory, ns_r, gtsm, tmp_path / "bird")  # type: ignore[arg-type]
    router.start()
    assert "ttl security on" in router.conf_path.read_text()
    sp = podbgp_in(
        netns_factory, ns_p, tmp_path, asn=64512, originate=["10.244.1.0/24"],
        peers=[{"address": ROUTER_V4, "asNumber": 64512, "ttlSecurity": 1}],
    )  # fmt: skip
    router.wait_established(BirdNeighbor(PODBGP_V4, 64512).protocol, 30)
    router.wait_route("10.244.1.0/24", 15)
    wait_for(lambda: "10.245.0.0/24" in sp.route_prefixes(), 15, what="route over GTSM session")


class _WithTtlSecurity:
    """A BirdConfig whose BGP protocols also say `ttl security on`."""

    def __init__(self, config: BirdConfig) -> None:
        self.config = config
        self.neighbors = config.neighbors

    def render(self) -> str:
        return self.config.render().replace("  direct;\n", "  direct;\n  ttl security on;\n")
