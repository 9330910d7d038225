"""Long-lived graceful restart (RFC 9494) against a real BIRD 2, both ways.

- BIRD restarts (killed: its sockets close without a NOTIFICATION) with a 1 s restart time and a
  4 s long-lived stale time: its route stays in our Loc-RIB stale, then long-lived stale (the
  LLGR_STALE community 65535:6 shown by the API), then goes.
- podbgp restarts (killed) with a 1 s restart time and a 4 s long-lived stale time: BIRD keeps
  our route, tags it LLGR_STALE after the restart time, and drops it after the stale time.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory, wait_until
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OUR_BLOCK, BIRD_BLOCK = "10.244.1.0/24", "10.245.0.0/24"
RESTART, LLST = 1, 4


def start(factory: NetnsFactory, tmp: Path) -> tuple[BirdRouter, PodbgpSpeaker, str]:
    ns_p, ns_r = two_namespaces(factory)
    neighbor = BirdNeighbor(
        PODBGP_V4, 64512, graceful_restart=True, restart_time=RESTART, long_lived_stale_time=LLST
    )
    config = BirdConfig(
        router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4, neighbors=(neighbor,),
        routes=(StaticRoute(BIRD_BLOCK),),
    )  # fmt: skip
    router = BirdRouter(factory, ns_r, config, tmp / "bird").start()
    config_p = {
        "asNumber": 64512,
        "routerId": PODBGP_V4,
        "listen": {"address": "::", "port": 179},
        "api": {"listen": "127.0.0.1:9179"},
        "gracefulRestart": {"enabled": True, "restartTime": RESTART, "longLivedStaleTime": LLST},
        "logLevel": "info",
        "peers": [{"address": ROUTER_V4, "asNumber": 64512}],
        "originate": [OUR_BLOCK],
    }
    speaker = PodbgpSpeaker(tmp, "podbgp", config_p, netns=ns_p).start()
    factory.processes.append(speaker.proc)  # type: ignore[arg-type]
    router.wait_established(neighbor.protocol, 30)
    router.wait_route(OUR_BLOCK, 15)
    wait_until(lambda: BIRD_BLOCK in our_routes(speaker), 15)
    return router, speaker, neighbor.protocol


def our_routes(speaker: PodbgpSpeaker) -> dict[str, dict[str, object]]:
    return {r["prefix"]: r for r in speaker.get_fast("/v1/routes")}


def test_bird_restarting_podbgp_keeps_its_route_long_lived(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker, _protocol = start(netns_factory, tmp_path)
    assert router.proc is not None
    router.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    router.proc.wait(5)
    router.proc = None
    route = wait_until(
        lambda: (r := our_routes(speaker).get(BIRD_BLOCK)) and "65535:6" in r["communities"] and r,
        RESTART + 5,
        0.05,
    )
    tagged = time.monotonic() - killed
    assert route["stale"] is True and route["fromPeer"] == ROUTER_V4
    wait_until(lambda: BIRD_BLOCK not in our_routes(speaker), LLST + 5, 0.05)
    dropped = time.monotonic() - killed
    print(f"\nBIRD killed: its route long-lived stale after {tagged:.2f} s, gone after "
          f"{dropped:.2f} s (restart time {RESTART} s, stale time {LLST} s)")  # fmt: skip
    assert RESTART - 0.5 < tagged < RESTART + 2
    assert RESTART + LLST - 0.5 < dropped < RESTART + LLST + 3
    assert "event=long-lived-stale afi=1" in speaker.log()


def test_podbgp_restarting_bird_keeps_our_route_long_lived(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker, _protocol = start(netns_factory, tmp_path)
    assert speaker.proc is not None
    speaker.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    speaker.proc.wait(5)

    def tagged() -> bool:
        routes = router.routes(OUR_BLOCK)
        return bool(routes) and (65535, 6) in routes[0]["communities"]

    wait_until(tagged, RESTART + 5, 0.1)
    at = time.monotonic() - killed
    router.wait_route(OUR_BLOCK, LLST + 5, present=False)
    gone = time.monotonic() - killed
    print(f"\npodbgp killed: BIRD tags our route LLGR_STALE after {at:.2f} s, drops it after "
          f"{gone:.2f} s")  # fmt: skip
    assert gone > RESTART + LLST - 0.5
