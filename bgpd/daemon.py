"""`podbgp bgpd`: a standalone speaker from a YAML config — peers, originated prefixes, REST API.

Wires the pieces together and owns process lifetime: start the speaker task, listen for BGP, add
the configured peers, originate prefixes, serve the API, and stop on SIGTERM/SIGINT. With graceful
restart enabled, stopping closes the TCP connections without a NOTIFICATION, so peers keep our
routes (marked stale) until we come back and send End-of-RIB (RFC 4724).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from bgpd.config import BgpdConfig, PeerConfig
from bgpd.speaker import PeerRange, PeerSpec, Speaker, SpeakerConfig
from bgpd.views import SpeakerViews

log = logging.getLogger("podbgp.daemon")


def peer_spec(peer: PeerConfig, peer_type: str = "global") -> PeerSpec:
    return PeerSpec(
        address=peer.address,
        asn=peer.as_number,
        port=peer.port,
        passive=peer.passive,
        password=peer.password,
        hold_time=peer.hold_time,
        keepalive_time=peer.keepalive_time,
        source_address=peer.source_address,
        description=peer.description,
        peer_type=peer_type,
        rr_client=peer.route_reflector_client,
    )


def speaker_config(config: BgpdConfig) -> SpeakerConfig:
    return SpeakerConfig(
        asn=config.as_number,
        router_id=config.router_id,
        graceful_restart=config.graceful_restart.enabled,
        restart_time=config.graceful_restart.restart_time,
        cluster_id=config.route_reflector.cluster_id if config.route_reflector else None,
    )


async def start_speaker(config: BgpdConfig) -> Speaker:
    """Start a speaker for ``config``: listening, peers added, prefixes originated."""
    speaker = Speaker(speaker_config(config))
    await speaker.start()
    for peer in config.peers:
        speaker.add_peer(peer_spec(peer))
    for rng in config.peer_ranges:
        speaker.add_peer_range(
            PeerRange(
                rng.range, rng.as_number, rng.route_reflector_client, rng.password, rng.hold_time
            )
        )
    await speaker.listen(config.listen.address, config.listen.port)
    for prefix in config.originate:
        speaker.originate(prefix)
    return speaker


async def run(config: BgpdConfig) -> None:
    from bgpd.api import start_api

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    speaker = await start_speaker(config)
    runner = None
    if config.api is not None:
        runner = await start_api(SpeakerViews(speaker), config.api.host, config.api.port)
    log.info(
        "event=started router_id=%s asn=%d peers=%d listen=%s:%d",
        config.router_id,
        config.as_number,
        len(config.peers),
        config.listen.address,
        config.listen.port,
    )
    try:
        await stop.wait()
    finally:
        log.info("event=stopping graceful=%s", config.graceful_restart.enabled)
        await speaker.stop(graceful=config.graceful_restart.enabled)
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
