"""podbgp against a real GoBGP (gobgpd) in network namespaces: iBGP and eBGP routes both ways,
withdrawals, a session reset from GoBGP's side, and graceful restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory
from tests.support.podbgp import wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]


def gobgp(factory: NetnsFactory, ns: str, tmp: Path, asn: int, **nbr: object) -> GoBgpRouter:
    config = GoBgpConfig(
        router_id=ROUTER_V4,
        asn=asn,
        listen_addresses=(ROUTER_V4,),
        neighbors=(GoBgpNeighbor(PODBGP_V4, 64512, **nbr),),  # type: ignore[arg-type]
    )
    return GoBgpRouter(factory, ns, config, tmp / "gobgp").start()


@pytest.mark.parametrize("gobgp_asn", [64512, 65002], ids=["ibgp", "ebgp"])
def test_routes_both_ways_withdraw_and_reset(
    netns_factory: NetnsFactory, tmp_path: Path, gobgp_asn: int
) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    router = gobgp(netns_factory, ns_r, tmp_path, gobgp_asn)
    sp = podbgp_in(
        netns_factory,
        ns_p,
        tmp_path,
        asn=64512,
        peers=[{"address": ROUTER_V4, "asNumber": gobgp_asn}],
        originate=["10.244.1.0/24"],
    )
    router.wait_established(PODBGP_V4, 30)
    (ours,) = router.wait_route("10.244.1.0/24", 15)
    assert ours["from"] == PODBGP_V4
    assert ours["next_hop"] == PODBGP_V4
    assert ours["origin"] == 0
    assert ours["as_path"] == ([] if gobgp_asn == 64512 else [64512])
    if gobgp_asn == 64512:
        assert ours["local_pref"] == 100

    router.add_route(
        "10.246.0.0/24",
        ROUTER_V4,
        med=20,
        communities=((65000, 7),),
        large_communities=((65000, 8, 9),),
    )
    route = wait_for(lambda: sp.routes_by_prefix().get("10.246.0.0/24"), 15, what="GoBGP route")
    assert route["nextHop"] == ROUTER_V4
    assert route["med"] == 20
    assert route["communities"] == ["65000:7"]
    assert route["largeCommunities"] == ["65000:8:9"]
    assert route["asPath"] == ("" if gobgp_asn == 64512 else str(gobgp_asn))

    router.del_route("10.246.0.0/24")
    wait_for(lambda: "10.246.0.0/24" not in sp.route_prefixes(), 15, what="withdrawal")

    router.add_route("10.246.0.0/24", ROUTER_V4)
    wait_for(lambda: "10.246.0.0/24" in sp.route_prefixes(), 15, what="re-announcement")
    if gobgp_asn != 64512:
        return  # the session reset below is the same for eBGP; it costs GoBGP's 30 s idle hold
    router.gobgp("neighbor", PODBGP_V4, "reset")
    # After `neighbor reset` gobgpd holds the neighbour Idle for 30 s before it accepts again.
    router.wait_established(PODBGP_V4, 75)
    router.wait_route("10.244.1.0/24", 15)
    wait_for(lambda: "10.246.0.0/24" in sp.route_prefixes(), 15, what="routes after reset")
    assert sp.running(), sp.log()[-2000:]


def test_graceful_restart_gobgp_keeps_our_routes(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    router = gobgp(netns_factory, ns_r, tmp_path, 64512, graceful_restart=True, restart_time=60)
    peers = [{"address": ROUTER_V4, "asNumber": 64512}]
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, peers=peers,
                   originate=["10.244.1.0/24"])  # fmt: skip
    router.wait_established(PODBGP_V4, 30)
    router.wait_route("10.244.1.0/24", 15)
    sp.stop()
    wait_for(lambda: router.neighbor_state(PODBGP_V4) != "established", 15, what="GoBGP down")
    (kept,) = router.wait_route("10.244.1.0/24", 5)
    assert kept["stale"], "GoBGP should hold our route as stale during our restart"
    podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, peers=peers,
              originate=["10.244.1.0/24"], name="podbgp2")  # fmt: skip
    router.wait_established(PODBGP_V4, 30)
    fresh = wait_for(
        lambda: [r for r in router.rib().get("10.244.1.0/24", []) if not r["stale"]],
        15,
        what="route refreshed (End-of-RIB)",
    )
    assert fresh[0]["next_hop"] == PODBGP_V4
