"""Routing policy against real BIRD 2 routers in network namespaces: no transit between two
external peers by default, BGPFilter export/import rules and their operations as BIRD's `show
route all` sees them, a live filter change (SIGHUP) without a session reset, and RFC 8212."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import PodbgpSpeaker, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

P1, R1 = "192.0.2.1", "192.0.2.2"  # podbgp ↔ BIRD 1 (AS 65001)
P2, R2 = "198.51.100.1", "198.51.100.2"  # podbgp ↔ BIRD 2 (AS 65002)
OURS = "10.244.1.0/24"
FROM_R1 = ("10.245.1.0/24", "10.245.9.0/24")
FROM_R2 = ("10.246.0.0/24", "10.246.5.0/24")
SETTLE = 2.0  # seconds after the positives arrived before a route's absence counts

TAG_OURS: dict[str, Any] = {
    "name": "tag-ours",
    "exportV4": [
        {
            "cidr": "10.244.0.0/16",
            "matchOperator": "In",
            "action": "Accept",
            "operations": [
                {"addCommunity": {"value": "64512:100"}},
                {"addCommunity": {"value": "64512:1:2"}},
                {"prependASPath": {"prefix": [64999]}},
            ],
        }
    ],
}
TRANSIT_ONE: dict[str, Any] = {
    "name": "transit-one",
    "exportV4": [{"cidr": "10.245.9.0/24", "matchOperator": "Equal", "action": "Accept"}],
}
IN_R2: dict[str, Any] = {
    "name": "in-r2",
    "importV4": [
        {"cidr": "10.246.5.0/24", "matchOperator": "Equal", "action": "Reject"},
        {
            "cidr": "10.246.0.0/16",
            "matchOperator": "In",
            "prefixLength": {"max": 24},
            "action": "Accept",
            "operations": [
                {"addCommunity": {"value": "64512:7"}},
                {"prependASPath": {"prefix": [64999]}},
            ],
        },
    ],
}


def _topology(factory: NetnsFactory, tmp: Path) -> tuple[str, BirdRouter, BirdRouter]:
    ns_p, ns_1, ns_2 = factory.namespace("p"), factory.namespace("r1"), factory.namespace("r2")
    factory.veth(ns_p, ns_1, addrs_a=[f"{P1}/24"], addrs_b=[f"{R1}/24"])
    factory.veth(ns_p, ns_2, addrs_a=[f"{P2}/24"], addrs_b=[f"{R2}/24"])
    routers = []
    for ns, me, peer, asn, prefixes in ((ns_1, R1, P1, 65001, FROM_R1),
                                        (ns_2, R2, P2, 65002, FROM_R2)):  # fmt: skip
        config = BirdConfig(
            router_id=me,
            asn=asn,
            listen_address=me,
            neighbors=(BirdNeighbor(peer, 64512),),
            routes=tuple(StaticRoute(p) for p in prefixes),
        )
        routers.append(BirdRouter(factory, ns, config, tmp / f"bird{asn}").start())
    return ns_p, routers[0], routers[1]


def _podbgp(
    factory: NetnsFactory, ns: str, tmp: Path, peers: list[dict[str, Any]], **extra: Any
) -> PodbgpSpeaker:
    config = {
        "asNumber": 64512,
        "routerId": P1,
        "listen": {"address": "0.0.0.0", "port": 179},
        "api": {"listen": "127.0.0.1:9179"},
        "logLevel": "debug",
        "peers": peers,
        "originate": [OURS],
        **extra,
    }
    sp = PodbgpSpeaker(tmp, "podbgp", config, netns=ns).start()
    factory.processes.append(sp.proc)  # type: ignore[arg-type]  # stopped on teardown too
    return sp


def _prefixes(router: BirdRouter) -> set[str]:
    return {r["prefix"] for r in router.routes() if r["protocol"] != "static4"}


def _proto(addr: str) -> str:
    return BirdNeighbor(addr, 64512).protocol


def test_no_transit_and_filters_at_bird(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, bird1, bird2 = _topology(netns_factory, tmp_path)
    peers = [
        {"address": R1, "asNumber": 65001, "filters": ["tag-ours"]},
        {"address": R2, "asNumber": 65002, "filters": ["tag-ours", "transit-one", "in-r2"]},
    ]
    sp = _podbgp(netns_factory, ns_p, tmp_path, peers, filters=[TAG_OURS, TRANSIT_ONE, IN_R2])
    bird1.wait_established(_proto(P1), 30)
    bird2.wait_established(_proto(P2), 30)

    # Our /24 reaches both, with the filter's communities and prepend before our own AS.
    for router in (bird1, bird2):
        (ours,) = router.wait_route(OURS, 15)
        assert ours["communities"] == [(64512, 100)]
        assert ours["large_communities"] == [(64512, 1, 2)]
        assert ours["as_path"] == [64512, 64999]

    # podbgp learned both routers' routes; import: 10.246.5.0/24 rejected, the other tagged.
    wait_for(lambda: set(FROM_R1) <= sp.route_prefixes(), 15, what="BIRD 1 routes at podbgp")
    tagged = wait_for(lambda: sp.routes_by_prefix().get("10.246.0.0/24"), 15, what="R2 route")
    assert tagged["communities"] == ["64512:7"] and tagged["asPath"] == "64999 65002"
    # The filter accepted exactly one transit prefix towards BIRD 2.
    bird2.wait_route("10.245.9.0/24", 15)
    time.sleep(SETTLE)
    assert "10.246.5.0/24" not in sp.route_prefixes()
    peer2 = sp.get(f"/v1/peers/{R2}")
    assert peer2["prefixes"]["received"] == 2 and peer2["prefixes"]["accepted"] == 1
    # No transit: nothing learned from one external peer went to the other, but the accepted.
    assert _prefixes(bird1) == {OURS}, bird1.routes()
    assert _prefixes(bird2) == {OURS, "10.245.9.0/24"}, bird2.routes()

    # ?detail=1: every path with its fate under the import filter, the rejected one included.
    detail = {(r["prefix"], r["fromPeer"]): r for r in sp.get("/v1/routes?detail=1")}
    rejected = detail[("10.246.5.0/24", R2)]
    assert rejected["policy"] == "rejected by in-r2 importV4[0]" and rejected["best"] is False
    accepted = detail[("10.246.0.0/24", R2)]
    assert accepted["policy"] == "accepted by in-r2 importV4[1]" and accepted["best"] is True
    assert accepted["communities"] == ["64512:7"]
    assert detail[("10.245.1.0/24", R1)]["policy"] == "accepted: no import filter"
    assert detail[(OURS, "local")]["best"] is True

    # Live change (SIGHUP): drop transit-one and the import reject; no session reset.
    flaps = {a: sp.get(f"/v1/peers/{a}")["flaps"] for a in (R1, R2)}
    since = {a: sp.get(f"/v1/peers/{a}")["since"] for a in (R1, R2)}
    config = dict(sp.config)
    config["peers"] = [peers[0], {**peers[1], "filters": ["tag-ours"]}]
    sp.config_path.write_text(yaml.safe_dump(config))
    assert sp.proc is not None
    sp.proc.send_signal(signal.SIGHUP)
    bird2.wait_route("10.245.9.0/24", 15, present=False)
    wait_for(lambda: "10.246.5.0/24" in sp.route_prefixes(), 15, what="re-imported route")
    untagged = sp.routes_by_prefix()["10.246.0.0/24"]
    assert untagged["communities"] == [] and untagged["asPath"] == "65002"
    for a in (R1, R2):
        now = sp.get(f"/v1/peers/{a}")
        assert now["state"] == "Established" and now["flaps"] == flaps[a]
        assert now["since"] == since[a]
    assert _prefixes(bird2) == {OURS}
    assert sp.running(), sp.log()[-2000:]


def test_ebgp_requires_policy(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """RFC 8212: BIRD 1's session has no filter — nothing in or out, and the peer says why;
    BIRD 2's has an export rule for our pool only — our /24 goes out, nothing comes in."""
    ns_p, bird1, bird2 = _topology(netns_factory, tmp_path)
    export_ours = {"name": "export-ours", "exportV4": TAG_OURS["exportV4"]}
    peers = [
        {"address": R1, "asNumber": 65001},
        {"address": R2, "asNumber": 65002, "filters": ["export-ours"]},
    ]
    sp = _podbgp(netns_factory, ns_p, tmp_path, peers, filters=[export_ours],
                 ebgpRequiresPolicy=True)  # fmt: skip
    bird1.wait_established(_proto(P1), 30)
    bird2.wait_established(_proto(P2), 30)
    bird2.wait_route(OURS, 15)
    wait_for(lambda: sp.get(f"/v1/peers/{R2}")["prefixes"]["received"] == 2, 15,
             what="BIRD 2 routes received")  # fmt: skip
    wait_for(lambda: sp.get(f"/v1/peers/{R1}")["prefixes"]["received"] == 2, 15,
             what="BIRD 1 routes received")  # fmt: skip
    time.sleep(SETTLE)
    assert _prefixes(bird1) == set()
    assert sp.route_prefixes() == {OURS}
    info1 = sp.get(f"/v1/peers/{R1}")["policy"]
    assert any("no import policy for IPv4" in line for line in info1), info1
    assert any("no export policy for IPv4" in line for line in info1), info1
    info2 = sp.get(f"/v1/peers/{R2}")["policy"]
    assert any("no import policy for IPv4" in line for line in info2), info2
    assert not any("no export policy for IPv4" in line for line in info2), info2


def test_max_prefixes_cease_and_restart(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """BIRD sends limit+1 prefixes: we send Cease / Maximum Number of Prefixes Reached
    (RFC 4486), say so in the peer's info, and come back after restartAfter."""
    from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces

    ns_p, ns_r = two_namespaces(netns_factory)
    three = tuple(StaticRoute(f"10.245.{i}.0/24") for i in range(3))
    config = BirdConfig(router_id=ROUTER_V4, asn=65001, listen_address=ROUTER_V4,
                        neighbors=(BirdNeighbor(PODBGP_V4, 64512),), routes=three)  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    limit = {"limit": 3, "warningThreshold": 60, "restartAfter": 4}
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, originate=["10.244.1.0/24"],
                   peers=[{"address": ROUTER_V4, "asNumber": 65001, "maxPrefixes": limit}],
                   graceful=False)  # fmt: skip
    proto = BirdNeighbor(PODBGP_V4, 64512).protocol
    router.wait_established(proto, 30)
    wait_for(lambda: len(sp.route_prefixes()) == 4, 15, what="3 BIRD routes + ours")
    assert "event=max-prefixes-warning" in sp.log()  # 3 >= 60% of 3
    flaps = sp.get(f"/v1/peers/{ROUTER_V4}")["flaps"]

    router.configure(router.with_routes(*three, StaticRoute("10.245.3.0/24")))
    info = wait_for(
        lambda: "maximum prefixes reached" in (i := sp.get(f"/v1/peers/{ROUTER_V4}")["info"]) and i,
        15, what="peer info names the limit",
    )  # fmt: skip
    assert "4 IPv4 unicast prefixes > limit 3" in info and "restarting in 4s" in info
    bird_info = wait_for(
        lambda: (p := router.protocols()[proto]).details.get("Last error", "") and p, 15,
        what="BIRD's last error",
    )  # fmt: skip
    assert "Maximum number of prefixes reached" in bird_info.details["Last error"], bird_info
    assert sp.route_prefixes() == {"10.244.1.0/24"}  # the peer's routes went with the session
    # Back under the limit at BIRD; our restart timer brings the session up again.
    router.configure(router.with_routes(*three))
    router.wait_established(proto, 30)
    wait_for(lambda: len(sp.route_prefixes()) == 4, 15, what="routes after the restart")
    assert sp.get(f"/v1/peers/{ROUTER_V4}")["flaps"] == flaps + 1


def test_max_prefixes_held_until_the_operator_acts(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    """Without restartAfter a session stopped by its limit stays down, however long; SIGHUP is
    the operator acting: it starts again at once, and comes up once BIRD is under the limit."""
    from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces

    ns_p, ns_r = two_namespaces(netns_factory)
    four = tuple(StaticRoute(f"10.245.{i}.0/24") for i in range(4))
    config = BirdConfig(router_id=ROUTER_V4, asn=65001, listen_address=ROUTER_V4,
                        neighbors=(BirdNeighbor(PODBGP_V4, 64512),), routes=four)  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, originate=["10.244.1.0/24"],
                   peers=[{"address": ROUTER_V4, "asNumber": 65001, "maxPrefixes": {"limit": 3}}],
                   graceful=False)  # fmt: skip
    proto = BirdNeighbor(PODBGP_V4, 64512).protocol
    info = wait_for(
        lambda: "maximum prefixes reached" in (i := (sp.try_get(f"/v1/peers/{ROUTER_V4}") or {})
                                                   .get("info", "")) and i,
        30, what="peer info names the limit",
    )  # fmt: skip
    assert "staying down until an operator acts" in info, info
    router.configure(router.with_routes(*four[:3]))  # BIRD is under the limit now
    time.sleep(6)  # longer than BIRD's and our connect retries: still held down by us
    assert sp.get(f"/v1/peers/{ROUTER_V4}")["state"] != "Established"
    assert sp.route_prefixes() == {"10.244.1.0/24"}
    sp.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "event=max-prefixes-released" in sp.log(), 10, what="released in the log")
    router.wait_established(proto, 30)
    wait_for(lambda: len(sp.route_prefixes()) == 4, 15, what="BIRD's 3 routes + ours")
    assert "maximum prefixes reached" not in sp.get(f"/v1/peers/{ROUTER_V4}")["info"]


def test_local_as_number_per_peer(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """Calico's localASNumber: the session presents another AS (BIRD expects 65100 there);
    our AS path to BIRD starts with it, and a path holding our real AS is still a loop."""
    from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces

    ns_p, ns_r = two_namespaces(netns_factory)
    loop = StaticRoute("10.245.7.0/24", as_path=(64512,))  # our real AS in the path
    config = BirdConfig(router_id=ROUTER_V4, asn=65001, listen_address=ROUTER_V4,
                        neighbors=(BirdNeighbor(PODBGP_V4, 65100),),
                        routes=(StaticRoute("10.245.1.0/24"), loop))  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    peer = {"address": ROUTER_V4, "asNumber": 65001, "localASNumber": 65100}
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, originate=["10.244.1.0/24"],
                   peers=[peer])  # fmt: skip
    router.wait_established(BirdNeighbor(PODBGP_V4, 65100).protocol, 30)
    (ours,) = router.wait_route("10.244.1.0/24", 15)
    assert ours["as_path"] == [65100]
    route = wait_for(lambda: sp.routes_by_prefix().get("10.245.1.0/24"), 15, what="BIRD route")
    assert route["asPath"] == "65001"
    time.sleep(SETTLE)
    assert "10.245.7.0/24" not in sp.route_prefixes()


def test_every_match_field_at_bird(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """Export rules towards BIRD 2 over transit from BIRD 1, one per match field: NotIn +
    source + communities, asPathPrefix, Equal + peerType (iBGP: no match; then Reject),
    NotEqual + peerType eBGP + source. BIRD 2 sees exactly what the rules let through."""
    ns_p, bird1, bird2 = _topology(netns_factory, tmp_path)
    routes = (
        StaticRoute("10.245.1.0/24", communities=((65001, 5),)),
        StaticRoute("10.245.2.0/24", as_path=(65009,)),
        StaticRoute("10.245.3.0/24"),
        StaticRoute("10.245.4.0/24"),
    )
    bird1.configure(bird1.with_routes(*routes))
    match_all: dict[str, Any] = {
        "name": "match-all",
        "exportV4": [
            {"cidr": "10.244.0.0/16", "matchOperator": "NotIn", "source": "RemotePeers",
             "communities": {"values": ["65001:5"]}, "action": "Accept",
             "operations": [{"addCommunity": {"value": "64512:55"}}]},
            {"asPathPrefix": [65001, 65009], "action": "Accept"},
            {"cidr": "10.245.3.0/24", "matchOperator": "Equal", "peerType": "iBGP",
             "action": "Accept"},
            {"cidr": "10.245.3.0/24", "matchOperator": "Equal", "action": "Reject"},
            {"cidr": "10.245.3.0/24", "matchOperator": "NotEqual", "peerType": "eBGP",
             "source": "RemotePeers", "action": "Accept"},
        ],
    }  # fmt: skip
    peers = [
        {"address": R1, "asNumber": 65001},
        {"address": R2, "asNumber": 65002, "filters": ["match-all"]},
    ]
    sp = _podbgp(netns_factory, ns_p, tmp_path, peers, filters=[match_all])
    bird1.wait_established(_proto(P1), 30)
    bird2.wait_established(_proto(P2), 30)
    wait_for(lambda: {r.prefix for r in routes} <= sp.route_prefixes(), 15, what="BIRD 1 routes")
    tagged = bird2.wait_route("10.245.1.0/24", 15)[0]
    assert tagged["communities"] == [(65001, 5), (64512, 55)]
    assert bird2.wait_route("10.245.2.0/24", 15)[0]["as_path"] == [64512, 65001, 65009]
    bird2.wait_route("10.245.4.0/24", 15)
    (ours,) = bird2.wait_route(OURS, 15)
    assert ours["communities"] == []  # local: rule 0 wants RemotePeers, the rest do not match
    time.sleep(SETTLE)
    assert _prefixes(bird2) == {OURS, "10.245.1.0/24", "10.245.2.0/24", "10.245.4.0/24"}
    # BIRD 1 gets nothing of its own back and nothing else but ours.
    assert _prefixes(bird1) == {OURS}
