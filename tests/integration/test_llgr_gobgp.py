"""Long-lived graceful restart (RFC 9494) against a real GoBGP, both ways.

GoBGP with ``long-lived-enabled`` (restart time 1 s, long-lived stale time 4 s) and podbgp with
the same timers: whichever side is killed, the other keeps its route stale for the restart time,
then long-lived stale (LLGR_STALE, 65535:6), then drops it when the stale time ends.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, two_namespaces
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory, wait_until
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OUR_BLOCK, GOBGP_BLOCK = "10.244.1.0/24", "10.246.0.0/24"
RESTART, LLST = 1, 4


def start(factory: NetnsFactory, tmp: Path) -> tuple[GoBgpRouter, PodbgpSpeaker]:
    ns_p, ns_r = two_namespaces(factory)
    neighbor = GoBgpNeighbor(
        PODBGP_V4, 64512, graceful_restart=True, restart_time=RESTART, long_lived_stale_time=LLST
    )
    config = GoBgpConfig(
        router_id=ROUTER_V4, asn=64512, listen_addresses=(ROUTER_V4,), neighbors=(neighbor,)
    )
    router = GoBgpRouter(factory, ns_r, config, tmp / "gobgp").start()
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
    router.wait_established(PODBGP_V4, 30)
    router.add_route(GOBGP_BLOCK, ROUTER_V4)
    router.wait_route(OUR_BLOCK, 15)
    wait_until(lambda: GOBGP_BLOCK in our_routes(speaker), 15)
    return router, speaker


def our_routes(speaker: PodbgpSpeaker) -> dict[str, dict[str, object]]:
    return {r["prefix"]: r for r in speaker.get_fast("/v1/routes")}


def test_gobgp_restarting_podbgp_keeps_its_route_long_lived(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker = start(netns_factory, tmp_path)
    assert router.proc is not None
    router.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    router.proc.wait(5)
    router.proc = None
    wait_until(
        lambda: (r := our_routes(speaker).get(GOBGP_BLOCK)) and "65535:6" in r["communities"],
        RESTART + 5,
        0.05,
    )
    tagged = time.monotonic() - killed
    wait_until(lambda: GOBGP_BLOCK not in our_routes(speaker), LLST + 5, 0.05)
    dropped = time.monotonic() - killed
    print(f"\nGoBGP killed: its route long-lived stale after {tagged:.2f} s, gone after "
          f"{dropped:.2f} s")  # fmt: skip
    assert RESTART - 0.5 < tagged < RESTART + 2
    assert RESTART + LLST - 0.5 < dropped < RESTART + LLST + 3


def test_podbgp_restarting_gobgp_keeps_our_route_long_lived(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker = start(netns_factory, tmp_path)
    assert speaker.proc is not None
    speaker.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    speaker.proc.wait(5)

    def tagged() -> bool:
        paths = router.rib().get(OUR_BLOCK, [])
        return any((65535, 6) in p["communities"] for p in paths)

    wait_until(tagged, RESTART + 5, 0.1)
    at = time.monotonic() - killed
    router.wait_route(OUR_BLOCK, LLST + 5, present=False)
    gone = time.monotonic() - killed
    print(f"\npodbgp killed: GoBGP tags our route LLGR_STALE after {at:.2f} s, drops it after "
          f"{gone:.2f} s")  # fmt: skip
    assert gone > RESTART + LLST - 0.5
