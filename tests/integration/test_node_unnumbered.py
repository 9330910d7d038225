"""`podbgp node` with a `BGPPeer` naming only an interface: the node finds the router on that
link (a real BIRD 2 in its own namespace, both ends with nothing but link-local addresses),
peers over link-local addresses with Extended Next Hop (RFC 8950), sends its IPv4 block with
its link-local next hop and learns BIRD's IPv4 and IPv6 routes with BIRD's (``fe80::…%if``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import wait_for
from tests.support.podbgp_node import file_node_in, run_podbgp

pytestmark = [pytest.mark.netns, pytest.mark.interop]

NODE, ROUTER_ID = "192.0.2.1", "192.0.2.254"
BLOCK = "10.244.1.0/24"
BIRD_ROUTES = ("10.245.0.0/24", "2001:db8:2::/48")


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "podbgp/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def _link_local(factory: NetnsFactory, ns: str, ifname: str) -> str:
    out = factory.run(ns, "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
    return out.stdout.split()[3].split("/")[0]


def test_node_peers_unnumbered_with_bird(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_r = netns_factory.namespace("p"), netns_factory.namespace("r")
    netns_factory.veth(ns_p, ns_r, ifname_a="uplink0", ifname_b="down0")
    # The node's own address lives on loopback (no dummy module here), not on the link.
    netns_factory.add_address(ns_p, "lo", f"{NODE}/32")
    ours_ll = _link_local(netns_factory, ns_p, "uplink0")
    birds_ll = _link_local(netns_factory, ns_r, "down0")

    nbr = BirdNeighbor(ours_ll, 64512, name="node", interface="down0", ipv4=True, ipv6=True,
                       extended_next_hop=True)  # fmt: skip
    bird = BirdConfig(router_id=ROUTER_ID, asn=65001, neighbors=(nbr,),
                      routes=tuple(StaticRoute(p) for p in BIRD_ROUTES))  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, bird, tmp_path / "bird").start()

    cluster = tmp_path / "cluster"
    cluster.mkdir()
    docs = [
        _doc("BGPConfiguration", "default", {"asNumber": 64512}),
        _doc("IPPool", "pool", {"cidr": "10.244.0.0/16", "blockSize": 24}),
        _doc("Node", "node-1", {"addresses": [f"{NODE}/32"], "blocks": [BLOCK]}),
        _doc("BGPPeer", "tor", {"interface": "uplink0", "asNumber": 65001, "node": "node-1"}),
    ]
    change = tmp_path / "change.yaml"
    change.write_text(yaml.safe_dump_all(docs))
    applied = run_podbgp("apply", "-f", str(change), "--datastore-path", str(cluster))
    assert applied.returncode == 0, applied.stderr
    node = file_node_in(netns_factory, ns_p, tmp_path, cluster, f"{NODE}/32")

    router.wait_established(nbr.protocol, 40)
    scoped = f"{birds_ll}%uplink0"
    peer = wait_for(lambda: node.established().get(scoped), 20, what="node's unnumbered peer")
    assert peer["interface"] == "uplink0" and "extended-next-hop" in peer["capabilities"]
    (route,) = router.wait_route(BLOCK, 20)
    assert route["next_hops"] == ["::", ours_ll] and route["interface"] == "down0"
    for prefix in BIRD_ROUTES:
        got = wait_for(lambda p=prefix: node.routes_by_prefix().get(p), 20, what=prefix)
        assert got["nextHop"] == scoped, got
    assert node.running(), node.log()[-2000:]
