"""Handover bookkeeping over a real speaker with passive peers (no session ever comes up).

The make-before-break path itself — sessions that come up, End-of-RIB, routes that move from one
session to another — runs in tests/integration/test_cluster_make_before_break.py.
"""

from __future__ import annotations

import asyncio

from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig
from podbgp.node.handover import Handover, waiting_for


def speaker_with(*addresses: str) -> Speaker:
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"))
    for address in addresses:
        speaker.add_peer(PeerSpec(address=address, asn=64512, passive=True))
    return speaker


async def test_a_joining_peer_that_never_comes_up_holds_the_old_one_until_the_timeout() -> None:
    speaker = speaker_with("192.0.2.2", "192.0.2.3")
    handover = Handover(lambda address: True, timeout=0.3, poll=0.01)
    assert (
        waiting_for(speaker, ["192.0.2.2"], ["192.0.2.3"]) == "new peer 192.0.2.3 not Established"
    )
    handover.change(speaker, {"192.0.2.2": True}, ["192.0.2.3"], keep=["192.0.2.3"])
    await asyncio.sleep(0.1)
    assert "192.0.2.2" in speaker.peers
    assert handover.status()["waitingFor"] == "new peer 192.0.2.3 not Established"
    await asyncio.sleep(0.4)
    assert "192.0.2.2" not in speaker.peers
    assert handover.timeouts == 1 and handover.completed == 0
    await speaker.stop(graceful=False)


async def test_nothing_to_wait_for_retires_at_once_and_a_wanted_peer_stays() -> None:
    speaker = speaker_with("192.0.2.2", "192.0.2.4")
    wanted = {"192.0.2.4"}
    handover = Handover(lambda address: address not in wanted, poll=0.01)
    assert waiting_for(speaker, ["192.0.2.2", "192.0.2.4"], []) is None  # no routes held
    handover.change(speaker, {"192.0.2.2": True, "192.0.2.4": True}, [], keep=[])
    await asyncio.sleep(0.05)
    assert set(speaker.peers) == {"192.0.2.4"}  # asked again right before closing: stays
    assert handover.completed == 1 and handover.status()["retiring"] == []
    await speaker.stop(graceful=False)


async def test_keep_cancels_a_pending_retirement() -> None:
    speaker = speaker_with("192.0.2.2", "192.0.2.3")
    handover = Handover(lambda address: True, timeout=5, poll=0.01)
    handover.change(speaker, {"192.0.2.2": True}, ["192.0.2.3"], keep=[])
    handover.change(speaker, {}, [], keep=["192.0.2.2"])
    await asyncio.sleep(0.05)
    assert "192.0.2.2" in speaker.peers and handover.status()["retiring"] == []
    await handover.close()
    await speaker.stop(graceful=False)
