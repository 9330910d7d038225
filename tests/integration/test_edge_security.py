"""Peer safety at the TCP layer against real BIRD 2 in namespaces: a GTSM peer too many hops
away (RFC 5082) and a peer with the wrong TCP MD5 key (RFC 2385) never get an OPEN from us."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory
from tests.support.podbgp import PodbgpSpeaker, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

P, MID_P, MID_R, R = "198.18.1.1", "198.18.1.2", "198.18.2.2", "198.18.2.1"
QUIET = 8.0  # seconds in which BIRD retries (connect retry 2 s) several times


class _Multihop:
    """A BirdConfig whose sessions are multihop (TTL ``hops``) instead of directly connected."""

    def __init__(self, config: BirdConfig, hops: int) -> None:
        self.config, self.neighbors, self.hops = config, config.neighbors, hops

    def render(self) -> str:
        text = self.config.render().replace("  direct;\n", f"  multihop {self.hops};\n")
        return text.replace("gateway direct;", "gateway recursive;")


def _opens_sent(sp: PodbgpSpeaker, address: str) -> int:
    peer = sp.get(f"/v1/peers/{address}")
    return int(peer["messages"]["sentByType"].get("open", 0))


def test_gtsm_peer_too_far_never_reaches_open_sent(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns_p, ns_m, ns_r = (netns_factory.namespace(t) for t in ("p", "m", "r"))
    netns_factory.veth(ns_p, ns_m, addrs_a=[f"{P}/24"], addrs_b=[f"{MID_P}/24"])
    netns_factory.veth(ns_m, ns_r, addrs_a=[f"{MID_R}/24"], addrs_b=[f"{R}/24"])
    netns_factory.run(ns_m, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    netns_factory.run(ns_p, "ip", "route", "add", "198.18.2.0/24", "via", MID_P)
    netns_factory.run(ns_r, "ip", "route", "add", "198.18.1.0/24", "via", MID_R)
    config = BirdConfig(router_id=R, asn=65001, listen_address=R,
                        neighbors=(BirdNeighbor(P, 64512),),
                        routes=(StaticRoute("10.245.0.0/24"),))  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, _Multihop(config, 2), tmp_path / "bird")  # type: ignore[arg-type]
    router.start()
    proto = BirdNeighbor(P, 64512).protocol

    def speaker(name: str, ttl_security: int) -> PodbgpSpeaker:
        cfg: dict[str, Any] = {
            "asNumber": 64512, "routerId": P, "listen": {"address": "0.0.0.0", "port": 179},
            "api": {"listen": "127.0.0.1:9179"}, "gracefulRestart": {"enabled": False},
            "peers": [{"address": R, "asNumber": 65001, "passive": True,
                       "ttlSecurity": ttl_security}],
        }  # fmt: skip
        sp = PodbgpSpeaker(tmp_path, name, cfg, netns=ns_p).start()
        netns_factory.processes.append(sp.proc)  # type: ignore[arg-type]
        return sp

    # Control: without GTSM the two-hop session comes up, so the path works.
    sp = speaker("open", 0)
    router.wait_established(proto, 30)
    sp.stop()
    # GTSM, one hop allowed: BIRD is two away; its SYNs die at our listening socket.
    sp = speaker("gtsm", 1)
    wait_for(lambda: sp.try_get(f"/v1/peers/{R}"), 15, what="API up")
    time.sleep(QUIET)
    assert _opens_sent(sp, R) == 0
    assert sp.get(f"/v1/peers/{R}")["state"] == "Active"
    assert router.protocols()[proto].bgp_state != "Established"
    assert sp.running(), sp.log()[-2000:]


def test_wrong_md5_key_never_reaches_open_sent(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    bird_peer = BirdNeighbor(PODBGP_V4, 64512, password="right-key")
    config = BirdConfig(
        router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4, neighbors=(bird_peer,)
    )
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    peer = {"address": ROUTER_V4, "asNumber": 64512, "password": "wrong-key"}
    sp = podbgp_in(netns_factory, ns_p, tmp_path, asn=64512, originate=[], peers=[peer])
    wait_for(lambda: sp.try_get(f"/v1/peers/{ROUTER_V4}"), 15, what="API up")
    time.sleep(QUIET)
    assert _opens_sent(sp, ROUTER_V4) == 0
    assert router.protocols()[BirdNeighbor(PODBGP_V4, 64512).protocol].bgp_state != "Established"
