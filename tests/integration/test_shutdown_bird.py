"""Graceful shutdown (RFC 8326) and the shutdown communication (RFC 9003) against BIRD 2.

podbgp runs with ``shutdown: {mode: drain, drainTime: 3, message: ...}``. On SIGTERM it
re-advertises its route with GRACEFUL_SHUTDOWN (65535:0) and LOCAL_PREF 0, keeps the session up
for the drain time, then closes it with Cease/Administrative Shutdown carrying the message,
which BIRD shows. A route BIRD sends with GRACEFUL_SHUTDOWN gets LOCAL_PREF 0 at our side.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory, wait_until
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OUR_BLOCK = "10.244.1.0/24"
DRAIN_S = 3
MESSAGE = "node maintenance, back at 16:00"


def test_drain_then_shutdown_message(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    neighbor = BirdNeighbor(PODBGP_V4, 64512)
    config = BirdConfig(
        router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4, neighbors=(neighbor,),
        routes=(StaticRoute("10.245.0.0/24", communities=((65535, 0),)),
                StaticRoute("10.245.1.0/24")),
    )  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    config_p = {
        "asNumber": 64512,
        "routerId": PODBGP_V4,
        "listen": {"address": "::", "port": 179},
        "api": {"listen": "127.0.0.1:9179"},
        "logLevel": "info",
        "peers": [{"address": ROUTER_V4, "asNumber": 64512}],
        "originate": [OUR_BLOCK],
        "shutdown": {"mode": "drain", "drainTime": DRAIN_S, "message": MESSAGE},
    }
    speaker = PodbgpSpeaker(tmp_path, "podbgp", config_p, netns=ns_p).start()
    netns_factory.processes.append(speaker.proc)  # type: ignore[arg-type]
    router.wait_established(neighbor.protocol, 30)
    (ours,) = router.wait_route(OUR_BLOCK, 15)
    assert ours["local_pref"] == 100 and (65535, 0) not in ours["communities"]

    # Received with GRACEFUL_SHUTDOWN: LOCAL_PREF 0 here; the other route keeps 100.
    routes = wait_until(
        lambda: (
            (r := {x["prefix"]: x for x in speaker.get_fast("/v1/routes")})
            and "10.245.1.0/24" in r
            and r
        ),
        15,
    )
    assert routes["10.245.0.0/24"]["localPref"] == 0
    assert routes["10.245.0.0/24"]["communities"] == ["65535:0"]
    assert routes["10.245.1.0/24"]["localPref"] == 100

    assert speaker.proc is not None
    speaker.proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()

    def drained() -> dict[str, object] | None:
        found = router.routes(OUR_BLOCK)
        ok = found and (65535, 0) in found[0]["communities"] and found[0]["local_pref"] == 0
        return found[0] if ok else None

    wait_until(drained, DRAIN_S, 0.05)
    seen = time.monotonic() - sent
    assert router.protocols()[neighbor.protocol].bgp_state == "Established"  # still up
    router.wait_route(OUR_BLOCK, DRAIN_S + 5, present=False)
    closed = time.monotonic() - sent
    proto = router.protocols()[neighbor.protocol]
    info = f"{proto.info} {proto.details.get('Last error', '')}"
    print(f"\ndrain: BIRD saw GRACEFUL_SHUTDOWN/LOCAL_PREF 0 after {seen:.2f} s, session closed "
          f"after {closed:.2f} s (drain time {DRAIN_S} s); BIRD: {info}")  # fmt: skip
    assert closed > DRAIN_S - 0.5
    assert "Administrative shutdown" in info
    assert MESSAGE in router.birdc("show", "protocols", "all", neighbor.protocol)
    assert speaker.proc.wait(10) == 0


def test_podbgp_drain_verb(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    """``podbgp drain`` through the API: the same drain, and the daemon keeps running."""
    ns_p, ns_r = two_namespaces(netns_factory)
    neighbor = BirdNeighbor(PODBGP_V4, 64512)
    config = BirdConfig(router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4,
                        neighbors=(neighbor,))  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    config_p = {
        "asNumber": 64512,
        "routerId": PODBGP_V4,
        "listen": {"address": "::", "port": 179},
        "api": {"listen": "127.0.0.1:9179"},
        "logLevel": "info",
        "peers": [{"address": ROUTER_V4, "asNumber": 64512}],
        "originate": [OUR_BLOCK],
    }
    speaker = PodbgpSpeaker(tmp_path, "podbgp", config_p, netns=ns_p).start()
    netns_factory.processes.append(speaker.proc)  # type: ignore[arg-type]
    router.wait_established(neighbor.protocol, 30)
    router.wait_route(OUR_BLOCK, 15)
    out = netns_factory.run(
        ns_p, sys.executable, "-m", "podbgp", "drain", "--api", speaker.api_url,
        "--drain-time", "2", "--message", "rolling upgrade",
    ).stdout  # fmt: skip
    print("\n" + out)
    assert "draining 1 sessions" in out
    wait_until(
        lambda: (r := router.routes(OUR_BLOCK)) and (65535, 0) in r[0]["communities"], 2, 0.05
    )
    router.wait_route(OUR_BLOCK, 8, present=False)
    assert "rolling upgrade" in router.birdc("show", "protocols", "all", neighbor.protocol)
    assert speaker.running()
    assert speaker.get_fast(f"/v1/peers/{ROUTER_V4}")["state"] == "Idle"
