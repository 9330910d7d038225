"""podbgp as a route reflector (RFC 4456) for real BIRD and GoBGP clients on one LAN, and podbgp
speakers as clients of BIRD and GoBGP reflectors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bgpd.codec.messages import CodecContext, encode_updates
from bgpd.codec.types import Origin, PathAttributes, prefix_from_str
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.capture import RawPeer, cap_four_octet_as, cap_multiprotocol
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory
from tests.support.podbgp import PodbgpSpeaker, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

ASN = 64512
CLUSTER = "1.1.1.1"
RR = "192.0.2.1"


def start_podbgp(
    factory: NetnsFactory, ns: str, tmp: Path, name: str, address: str, **extra: Any
) -> PodbgpSpeaker:
    config = {
        "asNumber": ASN, "routerId": address, "listen": {"address": address, "port": 179},
        "api": {"listen": "127.0.0.1:9179"}, "logLevel": "debug",
        "gracefulRestart": {"enabled": False}, **extra,
    }  # fmt: skip
    speaker = PodbgpSpeaker(tmp, name, config, netns=ns).start()
    factory.processes.append(speaker.proc)  # type: ignore[arg-type]
    return speaker


def test_podbgp_reflects_between_bird_and_gobgp_clients(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    clients = {f"192.0.2.{10 + i}": f"10.244.{i}.0/24" for i in range(1, 5)}
    addrs = list(clients)
    namespaces = {a: netns_factory.namespace("c") for a in addrs}
    ns_rr = netns_factory.namespace("rr")
    members = {ns_rr: [f"{RR}/24"], **{namespaces[a]: [f"{a}/24"] for a in addrs}}
    netns_factory.lan(members)

    rr = start_podbgp(
        netns_factory, ns_rr, tmp_path, "rr", RR, routeReflector={"clusterId": CLUSTER},
        peers=[{"address": a, "asNumber": ASN, "routeReflectorClient": True} for a in addrs],
    )  # fmt: skip
    birds = []
    for a in addrs[:3]:
        config = BirdConfig(
            router_id=a, asn=ASN, listen_address=a,
            neighbors=(BirdNeighbor(RR, ASN, name="reflector"),), routes=(StaticRoute(clients[a]),),
        )  # fmt: skip
        birds.append(BirdRouter(netns_factory, namespaces[a], config, tmp_path / a).start())
    gob_addr = addrs[3]
    gob = GoBgpRouter(
        netns_factory, namespaces[gob_addr],
        GoBgpConfig(router_id=gob_addr, asn=ASN, listen_addresses=(gob_addr,),
                    neighbors=(GoBgpNeighbor(RR, ASN),)),
        tmp_path / "gobgp",
    ).start()  # fmt: skip
    gob.add_route(clients[gob_addr], gob_addr)

    for bird in birds:
        bird.wait_established("reflector", 30)
    gob.wait_established(RR, 30)
    peers = wait_for(
        lambda: all(p["state"] == "Established" for p in rr.get("/v1/peers"))
        and rr.get("/v1/peers"), 30, what="all clients Established",
    )  # fmt: skip
    assert {p["type"] for p in peers} == {"rr-client"}

    for bird, me in zip(birds, addrs[:3], strict=True):
        for other in addrs:
            if other == me:
                continue
            (route,) = bird.wait_route(clients[other], 20)
            assert route["from"] == RR
            assert route["next_hop"] == other  # next hop unchanged by reflection
            assert route["originator_id"] == other
            assert route["cluster_list"] == [CLUSTER]
        # Nothing reflected back to its sender: our own block is only our static route.
        own = [r for r in bird.routes() if r["prefix"] == clients[me]]
        assert [r["protocol"] for r in own] == ["static4"], own
    rib = gob.rib()
    for other in addrs[:3]:
        (path,) = wait_for(lambda o=other: gob.rib().get(clients[o]), 20, what="GoBGP learns")
        assert path["next_hop"] == other
        assert path["originator_id"] == other
    assert all(p["from"] is None for p in rib.get(clients[gob_addr], []))  # only its own

    # A withdrawal from one client is reflected to the others.
    birds[0].configure(birds[0].with_routes())
    birds[1].wait_route(clients[addrs[0]], 20, present=False)
    gob.wait_route(clients[addrs[0]], 20, present=False)


@pytest.mark.parametrize("reflector", ["bird", "gobgp"])
def test_podbgp_nodes_as_clients_of_a_reflector(
    netns_factory: NetnsFactory, tmp_path: Path, reflector: str
) -> None:
    nodes = {"192.0.2.11": "10.244.1.0/24", "192.0.2.12": "10.244.2.0/24"}
    ns_rr = netns_factory.namespace("rr")
    ns_nodes = {a: netns_factory.namespace("n") for a in nodes}
    netns_factory.lan({ns_rr: [f"{RR}/24"], **{ns_nodes[a]: [f"{a}/24"] for a in nodes}})
    if reflector == "bird":
        config = BirdConfig(
            router_id=RR, asn=ASN, listen_address=RR, rr_cluster_id=CLUSTER,
            neighbors=tuple(BirdNeighbor(a, ASN, rr_client=True) for a in nodes),
        )  # fmt: skip
        BirdRouter(netns_factory, ns_rr, config, tmp_path / "bird").start()
    else:
        GoBgpRouter(
            netns_factory, ns_rr,
            GoBgpConfig(router_id=RR, asn=ASN, listen_addresses=(RR,), neighbors=tuple(
                GoBgpNeighbor(a, ASN, rr_client=True, rr_cluster_id=CLUSTER) for a in nodes)),
            tmp_path / "gobgp",
        ).start()  # fmt: skip
    speakers = {
        a: start_podbgp(netns_factory, ns_nodes[a], tmp_path, f"node{i}", a,
                        peers=[{"address": RR, "asNumber": ASN}], originate=[block])
        for i, (a, block) in enumerate(nodes.items())
    }  # fmt: skip
    for a, sp in speakers.items():
        other = next(o for o in nodes if o != a)
        route = wait_for(
            lambda sp=sp, o=other: sp.routes_by_prefix().get(nodes[o]),
            30,
            what=f"{a} learns {nodes[other]} through the {reflector} reflector",
        )
        assert route["nextHop"] == other
        assert route["fromPeer"] == RR
        assert route["clusterList"] == [CLUSTER]
        assert route["originatorId"] == other


def test_loop_detection_drops_our_originator_id_and_cluster_id(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    """A reflector drops a path carrying its own cluster ID, and any speaker drops a path that
    names it as the originator (RFC 4456 §8). A raw client sends the crafted paths."""
    ns_rr, ns_c = netns_factory.namespace("rr"), netns_factory.namespace("c")
    client = "192.0.2.20"
    netns_factory.veth(ns_rr, ns_c, addrs_a=[f"{RR}/24"], addrs_b=[f"{client}/24"])
    rr = start_podbgp(
        netns_factory, ns_rr, tmp_path, "rr", RR, routeReflector={"clusterId": CLUSTER},
        peers=[{"address": client, "asNumber": ASN, "routeReflectorClient": True,
                "passive": True}],
    )  # fmt: skip
    raw = RawPeer.connect(ns_c, client, RR, timeout=20)
    try:
        raw.establish(ASN, client, (cap_multiprotocol(1), cap_four_octet_as(ASN)))
        base = PathAttributes(origin=Origin.IGP, next_hop=client, local_pref=100)
        crafted = [
            (base, "10.250.1.0/24"),  # control: accepted
            (replace(base, cluster_list=("9.9.9.9", CLUSTER)), "10.250.2.0/24"),
            (replace(base, originator_id=RR), "10.250.3.0/24"),
        ]
        for attrs, prefix in crafted:
            for frame in encode_updates(attrs, [prefix_from_str(prefix)[1]], CodecContext()):
                raw.send(frame)
        peer = wait_for(
            lambda: (p := rr.get(f"/v1/peers/{client}"))["prefixes"]["received"] == 3 and p,
            20, what="all three paths received",
        )  # fmt: skip
        assert peer["prefixes"]["accepted"] == 1
        assert peer["state"] == "Established"  # a loop is dropped, not an error
        prefixes = rr.route_prefixes()
        assert "10.250.1.0/24" in prefixes
        assert not prefixes & {"10.250.2.0/24", "10.250.3.0/24"}
    finally:
        raw.close()


def test_redundant_reflectors_survive_one_loss(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """Two podbgp reflectors, one cluster ID, clients accepted through `peerRanges`; four podbgp
    clients. Kill one reflector: every client keeps every route; restart it: only the
    restarted sessions flap."""
    reflectors = ["192.0.2.1", "192.0.2.2"]
    clients = {f"192.0.2.{10 + i}": f"10.244.{i}.0/24" for i in range(1, 5)}
    ns = {a: netns_factory.namespace("n") for a in [*reflectors, *clients]}
    netns_factory.lan({ns[a]: [f"{a}/24"] for a in ns})

    def start_rr(a: str, name: str) -> PodbgpSpeaker:
        other = next(r for r in reflectors if r != a)
        return start_podbgp(
            netns_factory, ns[a], tmp_path, name, a, routeReflector={"clusterId": CLUSTER},
            peers=[{"address": other, "asNumber": ASN}],  # the other reflector: non-client
            peerRanges=[{"range": "192.0.2.0/24", "asNumber": ASN}],
        )  # fmt: skip

    rrs = {a: start_rr(a, f"rr{i}") for i, a in enumerate(reflectors)}
    nodes = {
        a: start_podbgp(netns_factory, ns[a], tmp_path, f"c{i}", a, originate=[block],
                        peers=[{"address": r, "asNumber": ASN} for r in reflectors])
        for i, (a, block) in enumerate(clients.items())
    }  # fmt: skip
    every = set(clients.values())

    def has_all(sp: PodbgpSpeaker) -> bool:
        return sp.route_prefixes() >= every

    for a, sp in nodes.items():
        for r in reflectors:  # both reflectors deliver the three other blocks
            wait_for(
                lambda sp=sp, r=r: (
                    (sp.try_get(f"/v1/peers/{r}") or {}).get("prefixes", {}).get("accepted") == 3
                ),
                40, what=f"{a} hears every other block from {r}",
            )  # fmt: skip
        wait_for(lambda sp=sp: has_all(sp), 40, what=f"client {a} has every block")
    peers = rrs[reflectors[0]].get("/v1/peers")
    assert sorted(p["type"] for p in peers) == ["global"] + ["rr-client"] * 4

    def since_to(address: str) -> dict[str, str]:
        return {a: sp.get(f"/v1/peers/{address}")["since"] for a, sp in nodes.items()}

    survivor, victim = reflectors[1], reflectors[0]
    before = since_to(survivor)
    rrs[victim].kill()  # kill -9: no NOTIFICATION, no graceful restart announced
    for a, sp in nodes.items():
        wait_for(lambda sp=sp: sp.peer_state(victim) != "Established", 30, what="loss seen")
        assert has_all(sp), f"client {a} lost routes when one reflector died"
        routes = sp.routes_by_prefix()
        for other, block in clients.items():
            if other != a:
                assert routes[block]["fromPeer"] == survivor
                assert routes[block]["nextHop"] == other
    rrs[victim] = start_rr(victim, "rr0-again")
    for sp in nodes.values():
        wait_for(lambda sp=sp: sp.peer_state(victim) == "Established", 40, what="rejoin")
        wait_for(lambda sp=sp: has_all(sp), 20, what="all blocks after rejoin")
    assert since_to(survivor) == before, "sessions to the surviving reflector flapped"


ANYCAST = "10.99.0.0/24"


def test_add_path_send_two_paths_reach_a_bird_client(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    """Two BIRD clients originate one prefix; a third (`add paths on`) gets both paths from
    the podbgp reflector (RFC 7911), one per next hop."""
    clients = ["192.0.2.11", "192.0.2.12", "192.0.2.13"]
    ns = {a: netns_factory.namespace("c") for a in [RR, *clients]}
    netns_factory.lan({ns[a]: [f"{a}/24"] for a in ns})
    start_podbgp(
        netns_factory, ns[RR], tmp_path, "rr", RR, routeReflector={"clusterId": CLUSTER},
        peers=[{"address": a, "asNumber": ASN, "routeReflectorClient": True} for a in clients],
    )  # fmt: skip
    birds = []
    for i, a in enumerate(clients):
        receiver = i == 2
        config = BirdConfig(
            router_id=a, asn=ASN, listen_address=a,
            neighbors=(BirdNeighbor(RR, ASN, name="reflector", add_paths_rx=receiver,
                                    add_paths_tx=receiver),),
            routes=() if receiver else (StaticRoute(ANYCAST),),
        )  # fmt: skip
        birds.append(BirdRouter(netns_factory, ns[a], config, tmp_path / a).start())
    receiver = birds[2]
    receiver.wait_established("reflector", 30)
    paths = wait_for(
        lambda: len(r := [x for x in receiver.routes() if x["prefix"] == ANYCAST]) == 2 and r,
        30, what="two paths for the anycast prefix",
    )  # fmt: skip
    assert sorted(p["next_hop"] for p in paths) == clients[:2]
    assert sorted(p["originator_id"] for p in paths) == clients[:2]
    # A client without ADD-PATH gets only the best path (the reflector prefers .11, lower
    # router ID), and .11, its source, gets nothing back.
    plain = wait_for(
        lambda: [p for p in birds[1].routes() if p["prefix"] == ANYCAST and
                 p["protocol"] == "reflector"], 20, what="best path at .12",
    )  # fmt: skip
    assert [p["next_hop"] for p in plain] == [clients[0]]
    assert not [p for p in birds[0].routes() if p["protocol"] == "reflector"]


def test_add_path_receive_from_a_bird_reflector(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    """A BIRD reflector with `add paths tx` sends podbgp both paths of one prefix."""
    origins = ["192.0.2.11", "192.0.2.12"]
    node = "192.0.2.20"
    ns = {a: netns_factory.namespace("n") for a in [RR, *origins, node]}
    netns_factory.lan({ns[a]: [f"{a}/24"] for a in ns})
    config = BirdConfig(
        router_id=RR, asn=ASN, listen_address=RR, rr_cluster_id=CLUSTER,
        neighbors=(
            *(BirdNeighbor(a, ASN, rr_client=True) for a in origins),
            BirdNeighbor(node, ASN, rr_client=True, add_paths_tx=True, add_paths_rx=True),
        ),
    )  # fmt: skip
    BirdRouter(netns_factory, ns[RR], config, tmp_path / "rr").start()
    for a in origins:
        origin_cfg = BirdConfig(
            router_id=a, asn=ASN, listen_address=a,
            neighbors=(BirdNeighbor(RR, ASN, name="reflector"),), routes=(StaticRoute(ANYCAST),),
        )  # fmt: skip
        BirdRouter(netns_factory, ns[a], origin_cfg, tmp_path / a).start()
    sp = start_podbgp(
        netns_factory, ns[node], tmp_path, "node", node, peers=[{"address": RR, "asNumber": ASN}]
    )
    peer = wait_for(
        lambda: ((p := sp.try_get(f"/v1/peers/{RR}")) or {}).get("prefixes", {}).get("accepted")
        == 2 and p, 30, what="two paths received for one prefix",
    )  # fmt: skip
    assert "add-path" in peer["capabilities"]
    route = sp.routes_by_prefix()[ANYCAST]
    assert route["nextHop"] in origins
    assert route["reason"] == "lower router ID"  # decided between the two received paths
    assert route["originatorId"] == origins[0]
