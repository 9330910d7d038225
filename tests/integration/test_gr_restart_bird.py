"""Our own restart against a real BIRD 2 (RFC 4724 §4.1): R bit and selection deferral.

podbgp runs with ``gracefulRestart.runFile``. The first start finds no run file: a cold start,
no R bit. Stopped with SIGTERM (graceful: no NOTIFICATION) BIRD keeps our route, stale. Started
again, podbgp finds the run file: its OPEN carries the R bit (BIRD shows "Restart recovery"),
it defers its table until BIRD's End-of-RIB, then sends it with its own End-of-RIB; BIRD's
copy of our route is never withdrawn.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory, wait_until
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OUR_BLOCK = "10.244.1.0/24"


def speaker(factory: NetnsFactory, ns: str, tmp: Path, name: str) -> PodbgpSpeaker:
    peers = [{"address": ROUTER_V4, "asNumber": 64512}]
    return podbgp_in(
        factory, ns, tmp, asn=64512, peers=peers, originate=[OUR_BLOCK], name=name, deferral=30
    )


def restart_recovery(router: BirdRouter, protocol: str) -> bool:
    return "Restart recovery" in router.protocols()[protocol].neighbor_capabilities


def test_restart_sets_r_bit_and_defers_until_end_of_rib(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns_p, ns_r = two_namespaces(netns_factory)
    neighbor = BirdNeighbor(PODBGP_V4, 64512, graceful_restart=True, restart_time=60)
    config = BirdConfig(
        router_id=ROUTER_V4, asn=64512, listen_address=ROUTER_V4, neighbors=(neighbor,),
        routes=(StaticRoute("10.245.0.0/24"),),
    )  # fmt: skip
    router = BirdRouter(netns_factory, ns_r, config, tmp_path / "bird").start()
    first = speaker(netns_factory, ns_p, tmp_path, "first")
    router.wait_established(neighbor.protocol, 30)
    router.wait_route(OUR_BLOCK, 15)
    print("\nBIRD sees, cold start:", router.protocols()[neighbor.protocol].neighbor_capabilities)
    assert not restart_recovery(router, neighbor.protocol)
    assert "event=restarted" not in first.log()

    first.stop()  # SIGTERM: graceful, the run file stays
    wait_until(lambda: router.protocols()[neighbor.protocol].bgp_state != "Established", 15)
    router.wait_route(OUR_BLOCK, 5)  # BIRD keeps it (stale) while we restart
    second = speaker(netns_factory, ns_p, tmp_path, "second")
    router.wait_established(neighbor.protocol, 30)
    print("BIRD sees, restarted:", router.protocols()[neighbor.protocol].neighbor_capabilities)
    assert restart_recovery(router, neighbor.protocol)
    wait_until(lambda: "event=selection-deferral-over" in second.log(), 15)
    log = second.log()
    assert "event=restarted" in log
    assert "reason=End-of-RIB from every peer" in log
    # Our route at BIRD: never withdrawn across the restart and the deferral.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert router.routes(OUR_BLOCK), "our route was withdrawn after the restart"
        time.sleep(0.1)
    (route,) = router.routes(OUR_BLOCK)
    assert route["from"] == PODBGP_V4
