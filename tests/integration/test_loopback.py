"""Two and three real `podbgp bgpd` processes peering over loopback addresses.

Each speaker listens on its own 127.0.x.y address (all on `lo`, no namespace needed) and talks to
the others from that address, so the sessions are real TCP between real processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.podbgp import PodbgpSpeaker, wait_for

BGP_PORT = 20000 + os.getpid() % 20000
NET = f"127.{100 + os.getpid() % 100}.{os.getpid() % 200}"


def addr(host: int) -> str:
    return f"{NET}.{host}"


def speaker_config(
    host: int,
    asn: int,
    peers: list[tuple[int, int]],
    originate: list[str],
    *,
    hold: int = 9,
    graceful: bool = False,
) -> dict[str, object]:
    return {
        "asNumber": asn,
        "routerId": f"192.0.2.{host}",
        "listen": {"address": addr(host), "port": BGP_PORT},
        "api": {"listen": f"{addr(host)}:9179"},
        "gracefulRestart": {"enabled": graceful, "restartTime": 30},
        "logLevel": "debug",
        "peers": [
            {
                "address": addr(p),
                "asNumber": pasn,
                "port": BGP_PORT,
                "holdTime": hold,
                "sourceAddress": addr(host),
            }
            for p, pasn in peers
        ],
        "originate": originate,
    }


@pytest.fixture
def speakers(tmp_path: Path) -> Iterator[dict[str, PodbgpSpeaker]]:
    started: dict[str, PodbgpSpeaker] = {}
    yield started
    for sp in started.values():
        sp.stop()


def start(
    started: dict[str, PodbgpSpeaker], tmp: Path, name: str, cfg: dict[str, object]
) -> PodbgpSpeaker:
    sp = PodbgpSpeaker(tmp, name, cfg).start()
    started[name] = sp
    return sp


def established(a: PodbgpSpeaker, peer: str) -> bool:
    return a.peer_state(peer) == "Established"


def test_two_speakers_exchange_blocks(speakers: dict[str, PodbgpSpeaker], tmp_path: Path) -> None:
    a = start(speakers, tmp_path, "a", speaker_config(1, 64512, [(2, 64512)], ["10.244.1.0/24"]))
    b = start(speakers, tmp_path, "b", speaker_config(2, 64512, [(1, 64512)], ["10.244.2.0/24"]))
    wait_for(lambda: established(a, addr(2)) and established(b, addr(1)), 20, what="sessions")
    routes = wait_for(lambda: "10.244.2.0/24" in a.route_prefixes() and a.routes_by_prefix(), 10)
    learned = routes["10.244.2.0/24"]
    assert learned["nextHop"] == addr(2)
    assert learned["asPath"] == ""
    assert learned["localPref"] == 100
    assert learned["fromPeer"] == addr(2)
    assert learned["reason"] == "only path"
    own = routes["10.244.1.0/24"]
    assert own["fromPeer"] == "local"
    b_routes = wait_for(lambda: "10.244.1.0/24" in b.route_prefixes() and b.routes_by_prefix(), 10)
    assert b_routes["10.244.1.0/24"]["nextHop"] == addr(1)

    peer = a.get(f"/v1/peers/{addr(2)}")
    assert peer["prefixes"]["accepted"] == 1
    assert peer["prefixes"]["advertised"] == 1
    assert peer["holdTime"] == 9 and peer["keepaliveTime"] == 3
    assert "4-octet-as" in peer["capabilities"]

    # A stopped peer's routes are removed (no graceful restart here: Cease, then flush).
    b.stop()
    wait_for(lambda: "10.244.2.0/24" not in a.route_prefixes(), 10, what="flush of b's routes")
    assert a.peer_state(addr(2)) != "Established"


def test_three_speakers_propagate_and_withdraw(
    speakers: dict[str, PodbgpSpeaker], tmp_path: Path
) -> None:
    # a —iBGP— b —eBGP— c
    a = start(speakers, tmp_path, "a", speaker_config(1, 64512, [(2, 64512)], ["10.244.1.0/24"]))
    b = start(
        speakers,
        tmp_path,
        "b",
        speaker_config(2, 64512, [(1, 64512), (3, 64513)], ["10.244.2.0/24"]),
    )
    c = start(speakers, tmp_path, "c", speaker_config(3, 64513, [(2, 64512)], ["10.244.3.0/24"]))
    want = {"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}
    for sp in (a, b, c):
        wait_for(lambda sp=sp: sp.route_prefixes() >= want, 20, what=f"{sp.name} has all blocks")

    c_routes = c.routes_by_prefix()
    assert c_routes["10.244.1.0/24"]["asPath"] == "64512"
    assert c_routes["10.244.1.0/24"]["nextHop"] == addr(2)  # eBGP: next hop self
    assert c_routes["10.244.1.0/24"]["localPref"] == 100  # ours on import, not theirs
    a_routes = a.routes_by_prefix()
    assert a_routes["10.244.3.0/24"]["asPath"] == "64513"
    assert a_routes["10.244.3.0/24"]["nextHop"] == addr(2)  # eBGP-learned: next hop self on iBGP

    # A withdrawal travels two hops: a stops, b drops a's block, c hears the withdrawal.
    a.stop()
    wait_for(lambda: "10.244.1.0/24" not in c.route_prefixes(), 10, what="withdraw at c")
    assert "10.244.1.0/24" not in b.route_prefixes()
    assert {"10.244.2.0/24", "10.244.3.0/24"} <= c.route_prefixes()


def test_hold_timer_expiry_detected(speakers: dict[str, PodbgpSpeaker], tmp_path: Path) -> None:
    a = start(
        speakers, tmp_path, "a", speaker_config(1, 64512, [(2, 64512)], ["10.244.1.0/24"], hold=3)
    )
    b = start(
        speakers, tmp_path, "b", speaker_config(2, 64512, [(1, 64512)], ["10.244.2.0/24"], hold=3)
    )
    wait_for(lambda: "10.244.2.0/24" in a.route_prefixes(), 20, what="route from b")
    b.signal(signal.SIGSTOP)  # frozen: no keepalives, TCP stays open
    try:
        wait_for(lambda: a.peer_state(addr(2)) != "Established", 10, what="hold timer expiry")
        peer = a.get(f"/v1/peers/{addr(2)}")
        assert "hold timer" in peer["info"].lower()
        assert "10.244.2.0/24" not in a.route_prefixes()
    finally:
        b.signal(signal.SIGCONT)
    # b thaws, finds its session gone, and both come back.
    wait_for(lambda: "10.244.2.0/24" in a.route_prefixes(), 30, what="re-establish")


def test_graceful_restart_keeps_routes_until_end_of_rib(
    speakers: dict[str, PodbgpSpeaker], tmp_path: Path
) -> None:
    cfg_a = speaker_config(1, 64512, [(2, 64512)], ["10.244.1.0/24"], graceful=True)
    cfg_b = speaker_config(2, 64512, [(1, 64512)], ["10.244.2.0/24"], graceful=True)
    a = start(speakers, tmp_path, "a", cfg_a)
    b = start(speakers, tmp_path, "b", cfg_b)
    wait_for(lambda: "10.244.2.0/24" in a.route_prefixes(), 20, what="route from b")
    b.stop()  # SIGTERM with graceful restart: TCP closed without NOTIFICATION
    route = wait_for(
        lambda: (
            (a.routes_by_prefix().get("10.244.2.0/24") or {}).get("stale")
            and a.routes_by_prefix()["10.244.2.0/24"]
        ),
        10,
        what="stale route",
    )
    assert route["nextHop"] == addr(2)
    b = start(speakers, tmp_path, "b2", cfg_b)
    wait_for(lambda: established(a, addr(2)), 20, what="session back")
    wait_for(
        lambda: (a.routes_by_prefix().get("10.244.2.0/24") or {}).get("stale") is False,
        10,
        what="route refreshed after End-of-RIB",
    )
