"""Notification graceful restart (RFC 8538, the N bit) against a real GoBGP.

podbgp advertises graceful restart with the N bit. GoBGP is frozen (SIGSTOP) so our hold timer
(3 s, GoBGP's) expires and we send Hold Timer Expired:

- GoBGP with ``notification-enabled`` (N bit on both sides): its route stays in our Loc-RIB,
  marked stale, while the session is down; thawed, GoBGP reconnects, re-sends it with End-of-RIB
  and the route is fresh again — never withdrawn.
- GoBGP without it: the NOTIFICATION ends graceful restart (RFC 4724 alone), the route goes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory, frozen
from tests.support.podbgp import PodbgpSpeaker, wait_for

pytestmark = [pytest.mark.netns, pytest.mark.interop]

GOBGP_ROUTE = "10.246.0.0/24"
HOLD = 3


def start(
    factory: NetnsFactory, tmp: Path, *, notification: bool
) -> tuple[GoBgpRouter, PodbgpSpeaker]:
    ns_p, ns_r = two_namespaces(factory)
    neighbor = GoBgpNeighbor(
        PODBGP_V4, 64512, graceful_restart=True, restart_time=60, notification=notification,
        hold_time=HOLD,
    )  # fmt: skip
    config = GoBgpConfig(
        router_id=ROUTER_V4, asn=64512, listen_addresses=(ROUTER_V4,), neighbors=(neighbor,)
    )
    router = GoBgpRouter(factory, ns_r, config, tmp / "gobgp").start()
    speaker = podbgp_in(
        factory, ns_p, tmp, asn=64512, peers=[{"address": ROUTER_V4, "asNumber": 64512}],
        originate=["10.244.1.0/24"],
    )  # fmt: skip
    router.wait_established(PODBGP_V4, 30)
    router.add_route(GOBGP_ROUTE, ROUTER_V4)
    wait_for(lambda: GOBGP_ROUTE in speaker.route_prefixes(), 15, what="GoBGP's route")
    return router, speaker


def session_down(speaker: PodbgpSpeaker) -> bool:
    return speaker.peer_state(ROUTER_V4) not in (None, "Established")


def test_n_bit_hold_timer_expiry_keeps_routes_stale(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker = start(netns_factory, tmp_path, notification=True)
    peer = speaker.get(f"/v1/peers/{ROUTER_V4}")
    assert peer["holdTime"] == HOLD
    assert router.proc is not None
    with frozen(router.proc):
        wait_for(lambda: session_down(speaker), HOLD + 10, 0.2, what="hold timer expiry")
        route = speaker.routes_by_prefix().get(GOBGP_ROUTE)
        assert route is not None, "the route must survive a hold timer expiry under the N bit"
        assert route["stale"] is True
        assert "Hold timer expired" in speaker.get(f"/v1/peers/{ROUTER_V4}")["info"]
        time.sleep(1.0)
        assert GOBGP_ROUTE in speaker.route_prefixes()  # still there, still stale
    # GoBGP returns, re-sends its table and End-of-RIB: the route is fresh, never withdrawn.
    wait_for(lambda: speaker.peer_state(ROUTER_V4) == "Established", 60, what="re-established")
    wait_for(
        lambda: (r := speaker.routes_by_prefix().get(GOBGP_ROUTE)) and r["stale"] is False,
        30,
        what="route refreshed by End-of-RIB",
    )
    log = speaker.log()
    assert "event=down reason=Hold timer expired graceful=True" in log
    assert f"peer={ROUTER_V4} event=stale-expired" not in log


def test_without_n_bit_hold_timer_expiry_drops_routes(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    router, speaker = start(netns_factory, tmp_path, notification=False)
    assert router.proc is not None
    with frozen(router.proc):
        wait_for(lambda: session_down(speaker), HOLD + 10, 0.2, what="hold timer expiry")
        wait_for(lambda: GOBGP_ROUTE not in speaker.route_prefixes(), 5, what="route dropped")
    assert "event=down reason=Hold timer expired graceful=False" in speaker.log()
