"""`podbgp node` at the network edge, with two real BIRD routers (eBGP) on its LAN: it sends
them only what the cluster owns, never routes from one to the other, and applies BGPFilter /
BGPPeer.filters / ebgpRequiresPolicy changes from the datastore live, sessions staying up."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import wait_for
from tests.support.podbgp_node import file_node_in, run_podbgp

pytestmark = [pytest.mark.netns, pytest.mark.interop]

NODE, TOR1, TOR2 = "192.0.2.1", "192.0.2.2", "192.0.2.3"
BLOCK = "10.244.1.0/24"
TOR1_ROUTES = ("10.245.1.0/24", "10.244.200.0/24")  # the second lies inside our pool
SETTLE = 2.0


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "podbgp/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _cluster(
    ebgp_requires_policy: bool = False, tor2_filters: tuple[str, ...] = (), advertise: bool = True
) -> list[Any]:
    tag = [{"addCommunity": {"value": "64512:100"}}]
    config: dict[str, Any] = {"asNumber": 64512, "ebgpRequiresPolicy": ebgp_requires_policy}
    if advertise:  # Calico's communities + prefixAdvertisements
        config["communities"] = [{"name": "pods", "value": "64512:300"}]
        config["prefixAdvertisements"] = [
            {"cidr": "10.244.0.0/16", "communities": ["pods", "64512:3:1"]},
            {"cidr": "10.99.0.0/16", "communities": ["64512:999"]},  # not ours: not attached
        ]
    return [
        _doc("BGPConfiguration", "default", config),
        _doc("IPPool", "pool", {"cidr": "10.244.0.0/16", "blockSize": 24}),
        _doc("Node", "node-1", {"addresses": [f"{NODE}/24"], "blocks": [BLOCK]}),
        _doc("BGPFilter", "tag", {"exportV4": [
            {"cidr": "10.244.0.0/16", "matchOperator": "In", "action": "Accept",
             "operations": tag}]}),
        _doc("BGPFilter", "transit", {"exportV4": [
            {"cidr": "10.245.1.0/24", "matchOperator": "Equal", "action": "Accept"}]}),
        _doc("BGPPeer", "tor1", {"peerIP": TOR1, "asNumber": 65001, "filters": ["tag"]}),
        _doc("BGPPeer", "tor2", {"peerIP": TOR2, "asNumber": 65002,
                                 "filters": list(tor2_filters)}),
    ]  # fmt: skip


def _apply(directory: Path, docs: list[Any]) -> None:
    path = directory.parent / "change.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    proc = run_podbgp("apply", "-f", str(path), "--datastore-path", str(directory))
    assert proc.returncode == 0, proc.stderr


def _prefixes(router: BirdRouter) -> set[str]:
    return {r["prefix"] for r in router.routes() if r["protocol"] != "static4"}


def test_node_edge_policy_live(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_1, ns_2 = (netns_factory.namespace(t) for t in ("p", "r1", "r2"))
    netns_factory.lan({ns_p: [f"{NODE}/24"], ns_1: [f"{TOR1}/24"], ns_2: [f"{TOR2}/24"]})
    routers = []
    for ns, me, asn, routes in ((ns_1, TOR1, 65001, TOR1_ROUTES), (ns_2, TOR2, 65002, ())):
        config = BirdConfig(router_id=me, asn=asn, listen_address=me,
                            neighbors=(BirdNeighbor(NODE, 64512),),
                            routes=tuple(StaticRoute(p) for p in routes))  # fmt: skip
        routers.append(BirdRouter(netns_factory, ns, config, tmp_path / f"bird{asn}").start())
    tor1, tor2 = routers
    proto = BirdNeighbor(NODE, 64512).protocol

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    _apply(cluster, _cluster())
    node = file_node_in(netns_factory, ns_p, tmp_path, cluster, f"{NODE}/24")
    tor1.wait_established(proto, 40)
    tor2.wait_established(proto, 40)

    # Our block reaches both routers with the prefixAdvertisements communities; tor1's filter
    # added its own after them.
    (at1,) = tor1.wait_route(BLOCK, 20)
    assert at1["communities"] == [(64512, 300), (64512, 100)]
    assert at1["large_communities"] == [(64512, 3, 1)]
    (at2,) = tor2.wait_route(BLOCK, 20)
    assert at2["communities"] == [(64512, 300)] and at2["as_path"] == [64512]
    assert at2["large_communities"] == [(64512, 3, 1)]
    wait_for(lambda: set(TOR1_ROUTES) <= node.route_prefixes(), 20, what="tor1 routes at node")
    time.sleep(SETTLE)
    # No transit: neither tor1's route outside the pool nor the one inside it reaches tor2.
    assert _prefixes(tor2) == {BLOCK}, tor2.routes()

    # Live: tor2 gets the transit filter — exactly that prefix now passes; no session reset.
    before = node.peers()
    _apply(cluster, _cluster(tor2_filters=("transit",)))
    tor2.wait_route("10.245.1.0/24", 20)
    time.sleep(SETTLE)
    assert _prefixes(tor2) == {BLOCK, "10.245.1.0/24"}, tor2.routes()
    for addr in (TOR1, TOR2):
        assert node.peers()[addr]["flaps"] == before[addr]["flaps"]
        assert node.peers()[addr]["since"] == before[addr]["since"]

    # Live RFC 8212: tor1 has no import rule → its routes leave our RIB; tor2's only export
    # rule is for 10.245.1.0/24, which is gone with tor1's routes → tor2 gets nothing.
    _apply(cluster, _cluster(ebgp_requires_policy=True, tor2_filters=("transit",)))
    wait_for(lambda: not set(TOR1_ROUTES) & node.route_prefixes(), 20, what="import blocked")
    tor2.wait_route(BLOCK, 20, present=False)
    tor2.wait_route("10.245.1.0/24", 20, present=False)
    tor1.wait_route(BLOCK, 20)  # tor1's tag filter accepts our pool on export
    policy = node.peers()[TOR1]["policy"]
    assert any("no import policy for IPv4" in line for line in policy), policy
    for addr in (TOR1, TOR2):
        assert node.peers()[addr]["state"] == "Established"
        assert node.peers()[addr]["flaps"] == before[addr]["flaps"]
    # Live: the prefixAdvertisements go; tor1 sees our block with only its filter's community.
    _apply(cluster, _cluster(ebgp_requires_policy=True, tor2_filters=("transit",),
                             advertise=False))  # fmt: skip
    wait_for(lambda: [r["communities"] for r in tor1.routes() if r["prefix"] == BLOCK]
             == [[(64512, 100)]], 20, what="communities withdrawn")  # fmt: skip
    assert node.running(), node.log()[-3000:]
