"""Selection deferral after our own restart (RFC 4724 §4.1) against a real GoBGP, seen on the wire.

podbgp (``podbgp bgpd`` with ``gracefulRestart.runFile``) peers with GoBGP, which has graceful
restart on and originates a route. podbgp starts cold, is stopped with SIGTERM (graceful: no
NOTIFICATION, GoBGP keeps our route stale) and starts again while ``tcpdump`` captures the
session in GoBGP's namespace. The capture, read by tests/support/pcap.py (not by podbgp's codec),
gives the order and time of every message:

- GoBGP sends its table and End-of-RIB: our OPEN carries the Restart State (R) bit, and our
  first UPDATE with a route leaves only after GoBGP's End-of-RIB has arrived; GoBGP's copy of
  our route is never withdrawn.
- An End-of-RIB that never comes: GoBGP 3.10 cannot be made to withhold its own (it sends one
  even when its graceful-restart capability lists no family), so a second configured
  graceful-restart peer that never comes up (an unused address on the link) holds the
  deferral: our table leaves for GoBGP when the deferral timer (``selectionDeferralTime``)
  expires, not at GoBGP's End-of-RIB.

The timelines are printed (``pytest -s``).
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import pytest

from tests.integration.interop import PODBGP_V4, ROUTER_V4, podbgp_in, two_namespaces
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory, wait_until
from tests.support.pcap import BgpCapture, BgpMessage
from tests.support.podbgp import PodbgpSpeaker

pytestmark = [pytest.mark.netns, pytest.mark.interop]

OUR_BLOCK = "10.244.1.0/24"
GOBGP_ROUTE = "10.246.0.0/24"
OPEN, UPDATE = 1, 2
GR_CAPABILITY = 64
DEFERRAL_S = 30  # longer than GoBGP takes to reconnect (3-7 s: it refuses, then dials itself)
SHORT_DEFERRAL_S = 15  # with a peer that never comes up


SILENT_PEER = "192.0.2.99"  # on the link, nobody there


def speaker(
    factory: NetnsFactory,
    ns: str,
    tmp: Path,
    name: str,
    silent_peer: bool = False,
    deferral: int = DEFERRAL_S,
) -> PodbgpSpeaker:
    peers = [{"address": ROUTER_V4, "asNumber": 64512}]
    if silent_peer:
        peers.append({"address": SILENT_PEER, "asNumber": 64512})
    return podbgp_in(
        factory, ns, tmp, asn=64512, peers=peers, originate=[OUR_BLOCK], name=name,
        deferral=deferral,
    )  # fmt: skip


def restart_state_bit(open_body: bytes) -> bool | None:
    """The R bit of the graceful-restart capability in an OPEN body (None: no capability)."""
    params, pos = open_body[10 : 10 + open_body[9]], 0
    while pos + 2 <= len(params):
        kind, length = params[pos], params[pos + 1]
        if kind == 2:  # capabilities (RFC 5492)
            caps, cpos = params[pos + 2 : pos + 2 + length], 0
            while cpos + 2 <= len(caps):
                code, clen = caps[cpos], caps[cpos + 1]
                if code == GR_CAPABILITY:
                    return bool(struct.unpack("!H", caps[cpos + 2 : cpos + 4])[0] & 0x8000)
                cpos += 2 + clen
        pos += 2 + length
    return None


def restart_and_capture(
    factory: NetnsFactory,
    tmp: Path,
    neighbor: GoBgpNeighbor,
    silent_peer: bool = False,
    deferral: int = DEFERRAL_S,
) -> tuple[list[BgpMessage], GoBgpRouter, PodbgpSpeaker, list[str]]:
    """Cold start, graceful stop, restart under capture; the messages of the new session, and
    every moment GoBGP lacked our route."""
    ns_p, ns_r = two_namespaces(factory)
    config = GoBgpConfig(
        router_id=ROUTER_V4, asn=64512, listen_addresses=(ROUTER_V4,), neighbors=(neighbor,)
    )
    router = GoBgpRouter(factory, ns_r, config, tmp / "gobgp").start()
    router.add_route(GOBGP_ROUTE, ROUTER_V4)
    first = speaker(factory, ns_p, tmp, "first")
    router.wait_established(PODBGP_V4, 30)
    router.wait_route(OUR_BLOCK, 15)
    first.stop()  # SIGTERM: graceful, the run file stays
    wait_until(lambda: router.neighbor_state(PODBGP_V4) != "established", 15)
    router.wait_route(OUR_BLOCK, 5)  # GoBGP keeps it, stale, while we restart
    missing: list[str] = []
    with BgpCapture(factory, ns_r, tmp / "restart.pcap") as capture:
        second = speaker(factory, ns_p, tmp, "second", silent_peer, deferral)
        deadline = time.monotonic() + 30 + deferral
        while "event=selection-deferral-over" not in second.log():
            assert time.monotonic() < deadline, "selection deferral never ended"
            if not router.rib().get(OUR_BLOCK):
                missing.append(f"{time.monotonic():.2f}")
            time.sleep(0.1)
        router.wait_established(PODBGP_V4, 30)
        wait_until(lambda: router.rib().get(OUR_BLOCK), 10)
        time.sleep(1.0)  # our table and End-of-RIB on the wire
    return capture.messages(), router, second, missing


def timeline(messages: list[BgpMessage]) -> tuple[dict[str, float], list[str]]:
    """Moments of the restarted session (capture clock) and a printable list of them."""
    who = {PODBGP_V4: "podbgp", ROUTER_V4: "GoBGP"}
    opens = [m for m in messages if m.type == OPEN]
    assert opens, "no OPEN captured"
    start = opens[0].at
    moments: dict[str, float] = {}
    lines = []
    for m in messages:
        name = {1: "OPEN", 2: "UPDATE", 3: "NOTIFICATION", 4: "KEEPALIVE"}.get(m.type, "?")
        if m.type == UPDATE:
            name = "End-of-RIB" if m.ipv4_end_of_rib else "UPDATE (routes)"
        key = f"{who[m.src]} {name}"
        if m.type == OPEN and m.src == PODBGP_V4:
            key += f" (R bit {restart_state_bit(m.body)})"
        if key not in moments:
            moments[key] = m.at - start
            lines.append(f"  {m.at - start:7.3f}  {key}")
    return moments, lines


def test_restarted_podbgp_sends_its_table_after_gobgp_end_of_rib(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    neighbor = GoBgpNeighbor(PODBGP_V4, 64512, graceful_restart=True, restart_time=60)
    messages, _router, second, missing = restart_and_capture(netns_factory, tmp_path, neighbor)
    moments, lines = timeline(messages)
    print("\nrestart with GoBGP's End-of-RIB (s after the first OPEN):\n" + "\n".join(lines))
    assert "podbgp OPEN (R bit True)" in moments
    gobgp_eor = moments["GoBGP End-of-RIB"]
    ours = moments["podbgp UPDATE (routes)"]
    assert gobgp_eor < ours, f"our routes left at {ours:.3f}, GoBGP's End-of-RIB at {gobgp_eor:.3f}"
    assert moments["podbgp End-of-RIB"] >= ours
    assert ours - gobgp_eor < DEFERRAL_S, "our table waited for the timer, not for End-of-RIB"
    assert "reason=End-of-RIB from every peer" in second.log()
    assert missing == [], f"GoBGP lacked our route at {missing}"


def test_restarted_podbgp_waits_for_the_deferral_timer_without_every_end_of_rib(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    neighbor = GoBgpNeighbor(PODBGP_V4, 64512, graceful_restart=True, restart_time=60)
    messages, _router, second, missing = restart_and_capture(
        netns_factory, tmp_path, neighbor, silent_peer=True, deferral=SHORT_DEFERRAL_S
    )
    moments, lines = timeline(messages)
    print(
        f"\nrestart, a second peer never up, deferral timer {SHORT_DEFERRAL_S} s "
        "(s after the first OPEN):\n" + "\n".join(lines)
    )
    assert "podbgp OPEN (R bit True)" in moments
    gobgp_eor = moments["GoBGP End-of-RIB"]
    ours = moments["podbgp UPDATE (routes)"]
    # The timer started with the speaker, just before the first OPEN.
    assert gobgp_eor + 1.0 < ours and SHORT_DEFERRAL_S - 2 < ours < SHORT_DEFERRAL_S + 5, (
        gobgp_eor,
        ours,
    )
    assert "reason=deferral timer expired" in second.log()
    assert missing == [], f"GoBGP lacked our route at {missing}"
