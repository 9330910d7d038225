"""BFD on BGP sessions (RFC 5882) against a real BIRD 2: a frozen peer's routes go within ~1 s.

podbgp (``podbgp bgpd``, ``peers[].bfd`` at 100 ms x 3) and BIRD (``bfd on`` in its BGP protocol
and a ``protocol bfd``) in two namespaces. Both keep graceful restart on, so without BFD a frozen
peer's routes would stay for the hold time and then the restart time; with BFD the session goes
down with Cease/BFD Down and the routes are withdrawn at once (C bit 0).

- BIRD frozen (SIGSTOP): BIRD's route leaves our Loc-RIB (``/v1/routes``, polled every 20 ms over
  a socket in the namespace) within the bound; measured over several rounds, distribution printed.
- podbgp frozen: BIRD's BFD takes its session down and our route leaves BIRD's table.
- BIRD single hop (``direct``) and multihop: we answer on either port.

Bounds are generous (3 s); the measured times are printed (``pytest -s``).
"""

from __future__ import annotations

import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory, wait_until
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

INTERVAL_MS = 100
MULTIPLIER = 3
BOUND_S = 3.0  # detection is ~0.3 s; the bound leaves room for a loaded 2-core machine
ROUNDS = 4
OUR_BLOCK = "10.244.1.0/24"
BIRD_BLOCK = "10.245.0.0/24"


def bird_bfd_state(router: BirdRouter, address: str) -> str | None:
    """``birdc show bfd sessions``: the state column of ``address``'s row."""
    for line in router.birdc("show", "bfd", "sessions", check=False).splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == address:
            return fields[2]
    return None


def start_pair(
    factory: NetnsFactory, tmp: Path, *, bird_multihop: bool
) -> tuple[str, BirdRouter, PodbgpSpeaker, str]:
    ns_p, ns_r = two_namespaces(factory)
    neighbor = BirdNeighbor(
        PODBGP_V4, 64512, graceful_restart=True, hold_time=30, bfd=True, multihop=bird_multihop
    )
    config = BirdConfig(
        router_id=ROUTER_V4,
        asn=64512,
        listen_address=ROUTER_V4,
        neighbors=(neighbor,),
        routes=(StaticRoute(BIRD_BLOCK),),
        bfd=(INTERVAL_MS, INTERVAL_MS, MULTIPLIER),
    )
    router = BirdRouter(factory, ns_r, config, tmp / "bird").start()
    bfd = {"minRx": INTERVAL_MS, "minTx": INTERVAL_MS, "multiplier": MULTIPLIER}
    speaker = podbgp_in(
        factory,
        ns_p,
        tmp,
        asn=64512,
        peers=[{"address": ROUTER_V4, "asNumber": 64512, "holdTime": 30, "bfd": bfd}],
        originate=[OUR_BLOCK],
    )
    return ns_p, router, speaker, neighbor.protocol


def our_routes(speaker: PodbgpSpeaker) -> set[str]:
    return {r["prefix"] for r in speaker.get_fast("/v1/routes")}


def our_bfd(speaker: PodbgpSpeaker) -> dict[str, Any]:
    """The peer's ``bfd`` object in ``/v1/peers/{address}`` ({} while there is none)."""
    return dict(speaker.get_fast(f"/v1/peers/{ROUTER_V4}").get("bfd") or {})


def wait_converged(router: BirdRouter, speaker: PodbgpSpeaker, protocol: str) -> None:
    """BGP Established, BFD Up on both sides at 100 ms, routes both ways."""
    router.wait_established(protocol, 30)
    wait_until(lambda: bird_bfd_state(router, PODBGP_V4) == "Up", 20)
    wait_until(
        lambda: (
            (b := our_bfd(speaker)).get("state") == "Up"
            and b.get("detectTime") == INTERVAL_MS * MULTIPLIER
        ),
        20,
    )
    wait_until(lambda: BIRD_BLOCK in our_routes(speaker), 20)
    router.wait_route(OUR_BLOCK, 20)
    time.sleep(0.5)  # the poll sequence to the fast intervals is over


def freeze_bird_and_time_withdrawal(router: BirdRouter, speaker: PodbgpSpeaker) -> float:
    assert router.proc is not None
    router.proc.send_signal(signal.SIGSTOP)
    frozen = time.monotonic()
    try:
        wait_until(lambda: BIRD_BLOCK not in our_routes(speaker), BOUND_S + 2, 0.02)
        return time.monotonic() - frozen
    finally:
        router.proc.send_signal(signal.SIGCONT)


@pytest.mark.parametrize("bird_multihop", [False, True], ids=["bird-direct", "bird-multihop"])
def test_frozen_bird_routes_withdrawn_within_a_second(
    netns_factory: NetnsFactory, tmp_path: Path, bird_multihop: bool
) -> None:
    _ns_p, router, speaker, protocol = start_pair(
        netns_factory, tmp_path, bird_multihop=bird_multihop
    )
    times: list[float] = []
    for _ in range(ROUNDS):
        wait_converged(router, speaker, protocol)
        times.append(freeze_bird_and_time_withdrawal(router, speaker))
    times.sort()
    print(
        f"\nBIRD ({'multihop' if bird_multihop else 'direct'}) frozen -> its route out of our "
        f"Loc-RIB, {ROUNDS} rounds (s): "
        + " ".join(f"{t:.3f}" for t in times)
        + f"; median {statistics.median(times):.3f}"
    )
    assert all(t < BOUND_S for t in times)
    bfd = our_bfd(speaker)
    assert bfd["mode"] == "single-hop"  # BIRD is on our link
    assert bfd["port"] == (4784 if bird_multihop else 3784)  # we answer where BIRD speaks
    assert bfd["flaps"] >= ROUNDS
    assert (bfd["minRx"], bfd["minTx"], bfd["multiplier"]) == (INTERVAL_MS, INTERVAL_MS, 3)
    peer = speaker.get_fast(f"/v1/peers/{ROUTER_V4}")
    assert peer["flaps"] >= ROUNDS  # each freeze took the BGP session down
    log = speaker.log()
    assert "Cease/BFD down" in log or "BFD session down" in log
    # Graceful restart did not keep the routes: none was ever marked stale.
    assert "event=down reason=BFD session down" in log and "graceful=True" not in log


def test_status_and_metrics_show_bfd(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    ns_p, router, speaker, protocol = start_pair(netns_factory, tmp_path, bird_multihop=False)
    wait_converged(router, speaker, protocol)
    status = netns_factory.run(
        ns_p, sys.executable, "-m", "podbgp", "status", "--api", speaker.api_url
    ).stdout
    print("\n" + status)
    section = status.split("BFD sessions\n", 1)[1]
    row = next(line for line in section.splitlines() if ROUTER_V4 in line)
    assert "Up" in row and "single-hop :3784" in row and "100/100" in row and "300" in row
    metrics = netns_factory.run(
        ns_p, sys.executable, "-c", "import urllib.request,sys;"
        "sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())",
        speaker.api_url + "/metrics",
    ).stdout  # fmt: skip
    labels = f'{{peer="{ROUTER_V4}",peer_type="global"}}'
    assert f"podbgp_bfd_session_state{labels} 3.0" in metrics
    assert f"podbgp_bfd_detect_time_seconds{labels} 0.3" in metrics


def test_frozen_podbgp_is_detected_by_bird(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    _ns_p, router, speaker, protocol = start_pair(netns_factory, tmp_path, bird_multihop=False)
    times: list[float] = []
    for _ in range(ROUNDS):
        wait_converged(router, speaker, protocol)
        assert speaker.proc is not None
        speaker.proc.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            router.wait_route(OUR_BLOCK, BOUND_S + 2, present=False)
            times.append(time.monotonic() - frozen)
        finally:
            speaker.proc.send_signal(signal.SIGCONT)
    times.sort()
    print(
        f"\npodbgp frozen -> its route out of BIRD's table, {ROUNDS} rounds (s, includes birdc "
        "polling): " + " ".join(f"{t:.3f}" for t in times)
    )
    assert all(t < BOUND_S for t in times)
