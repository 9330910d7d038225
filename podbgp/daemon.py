"""`podbgp bgpd`: a standalone speaker from a YAML config — peers, originated prefixes, REST API.

Wires the pieces together and owns process lifetime: start the speaker task, listen for BGP, add
the configured peers, originate prefixes, serve the API and ``/metrics`` (a collector on a
registry of this run's own), tell systemd we are ready (``READY=1``, then watchdog pings when
``WatchdogSec=`` is set), and stop on SIGTERM/SIGINT. With graceful restart enabled, stopping
closes the TCP connections without a NOTIFICATION, so peers keep our routes (marked stale) until
we come back and send End-of-RIB (RFC 4724). A start that fails (a port in use, an unreadable
token file) logs one line and exits with status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from bgpd.bfd.peering import bfd_settings
from bgpd.config import ApiConfig, BgpdConfig, ConfigError, PeerConfig, load_bgpd_config
from bgpd.deferral import forget_run, run_file_found
from bgpd.speaker import PeerRange, PeerSpec, Speaker, SpeakerConfig
from bgpd.unnumbered import UnnumberedPeers
from podbgp.ops import sdnotify
from podbgp.ops.drain import DRAIN_DOC, DRAIN_PATH, drain_route
from podbgp.ops.metrics import METRICS_DOC, Snapshot, metrics_route, register_collector
from podbgp.ops.views import SpeakerViews

if TYPE_CHECKING:
    from podbgp.ops.api import ReadyCheck, SpeakerView

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
        ttl_security=peer.ttl_security,
        filters=peer.filters,
        max_prefixes=peer.max_prefixes,
        local_asn=peer.local_as_number,
        keep_next_hop=peer.next_hop_mode == "Keep",
        next_hop_self=peer.next_hop_mode == "Self",
        bfd=bfd_settings(peer.bfd),
        long_lived_stale_time=peer.long_lived_stale_time,
        extended_next_hop=peer.extended_next_hop,
        interface=peer.interface,
    )


def speaker_config(config: BgpdConfig) -> SpeakerConfig:
    return SpeakerConfig(
        asn=config.as_number,
        router_id=config.router_id,
        graceful_restart=config.graceful_restart.enabled,
        restart_time=config.graceful_restart.restart_time,
        cluster_id=config.route_reflector.cluster_id if config.route_reflector else None,
        ebgp_requires_policy=config.ebgp_requires_policy,
        long_lived_stale_time=(
            config.graceful_restart.long_lived_stale_time if config.graceful_restart.enabled else 0
        ),
    )


async def start_speaker(config: BgpdConfig) -> Speaker:
    """Start a speaker for ``config``: listening, peers added, prefixes originated."""
    gr = config.graceful_restart
    restarting = gr.enabled and run_file_found(gr.run_file)
    if restarting:
        log.info("event=restarted run_file=%s", config.graceful_restart.run_file)
    speaker = Speaker(
        speaker_config(config),
        restarting=restarting,
        selection_deferral_time=config.graceful_restart.selection_deferral_time,
    )
    await speaker.start()
    for peer in config.peers:
        if peer.interface is None:  # unnumbered peers come once found (start_unnumbered)
            speaker.add_peer(peer_spec(peer))
    for rng in config.peer_ranges:
        speaker.add_peer_range(
            PeerRange(
                rng.range,
                rng.as_number,
                rng.route_reflector_client,
                rng.password,
                rng.hold_time,
                bfd_settings(rng.bfd),
            )
        )
    await speaker.listen(config.listen.address, config.listen.port)
    for prefix in config.originate:
        speaker.originate(prefix)
    return speaker


def start_unnumbered(speaker: Speaker, config: BgpdConfig) -> UnnumberedPeers:
    """Watchers that find each unnumbered peer's link-local address and add it then."""
    unnumbered = UnnumberedPeers(speaker)
    for peer in config.peers:
        if peer.interface is not None:
            unnumbered.add(peer_spec(peer))
    return unnumbered


async def start_operations(
    views: SpeakerView,
    api: ApiConfig | None,
    registry: CollectorRegistry,
    *,
    felix: Snapshot | None = None,
    datastore: Snapshot | None = None,
    routes: Iterable[web.AbstractRouteDef] = (),
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    ready_checks: Iterable[ReadyCheck] = (),
) -> web.AppRunner | None:
    """The metrics collector on ``registry`` and the REST API with ``/metrics`` as ``api``
    says (None: no API). The node and rr daemons pass their snapshots, endpoints and ready
    checks; raises OSError / ValueError when the API cannot start."""
    from podbgp.ops.api import serve_api

    register_collector(registry, views, felix=felix, datastore=datastore)
    if api is None:
        return None
    return await serve_api(
        views,
        api,
        [metrics_route(registry), *routes],
        docs={"/metrics": METRICS_DOC, **(docs or {})},
        ready_checks=ready_checks,
    )


def reload_policy(speaker: Speaker, old: BgpdConfig, new: BgpdConfig) -> BgpdConfig:
    """SIGHUP: apply a changed routing policy (filters, peers' filters, ebgpRequiresPolicy)
    live, without resetting sessions. Returns the config now in force: other changes need a
    restart and are logged, not applied."""
    speaker.set_ebgp_requires_policy(new.ebgp_requires_policy)
    for address in speaker.release_prefix_limits():  # SIGHUP is the operator acting
        log.info("event=max-prefixes-released peer=%s", address)
    # Unnumbered peers (no address) take changed filters at the next start.
    by_address = {p.address: p for p in new.peers if p.address}
    for peer in old.peers:
        changed = by_address.get(peer.address)
        if changed is not None and changed.filters != peer.filters:
            speaker.set_peer_filters(peer.address, changed.filters)
    kept_peers = tuple(
        dataclasses.replace(p, filters=by_address[p.address].filters)
        if p.address in by_address
        else p
        for p in old.peers
    )
    applied = dataclasses.replace(
        old,
        filters=new.filters,
        ebgp_requires_policy=new.ebgp_requires_policy,
        peers=kept_peers,
    )
    if applied != new:
        log.warning("event=reload-partial reason=only routing policy applies live; restart for "
                    "the other changes")  # fmt: skip
    log.info("event=reloaded filters=%d", len(new.filters))
    return applied


async def run(config: BgpdConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    notifier = sdnotify.Notifier()
    speaker: Speaker | None = None
    unnumbered: UnnumberedPeers | None = None
    runner: web.AppRunner | None = None
    watchdog: asyncio.Task[None] | None = None
    drained = False
    try:
        try:
            speaker = await start_speaker(config)
            unnumbered = start_unnumbered(speaker, config)
            views = SpeakerViews(speaker)
            drain = drain_route(
                lambda: speaker,
                drain_time=config.shutdown.drain_time,
                message=config.shutdown.message,
            )
            runner = await start_operations(
                views,
                config.api,
                CollectorRegistry(),
                routes=[drain],
                docs={DRAIN_PATH: DRAIN_DOC},
            )
        except (OSError, ValueError) as exc:
            # One line, no traceback: the cause is in the config or on the host, not in podbgp.
            log.error("event=start-failed error=%s", exc)
            raise SystemExit(1) from None
        log.info(
            "event=started router_id=%s asn=%d peers=%d listen=%s:%d api=%s",
            config.router_id,
            config.as_number,
            len(config.peers),
            config.listen.address,
            config.listen.port,
            config.api.listen if config.api is not None else "disabled",
        )
        running = speaker

        def reload() -> None:
            nonlocal config
            try:
                config = reload_policy(running, config, load_bgpd_config(config.path))
            except ConfigError as exc:
                log.error("event=reload-failed error=%s", exc)

        if config.path:
            loop.add_signal_handler(signal.SIGHUP, reload)
        notifier.ready(f"{len(config.peers)} peers configured")
        watchdog = sdnotify.start_watchdog(notifier)
        await stop.wait()
        if config.shutdown.mode == "drain" and speaker is not None:
            await speaker.drain(config.shutdown.drain_time, config.shutdown.message)
            drained = True
    finally:
        notifier.stopping()
        await sdnotify.stop_watchdog(watchdog)
        if unnumbered is not None:
            await unnumbered.close()
        if speaker is not None:
            log.info("event=stopping graceful=%s", config.graceful_restart.enabled)
            await speaker.stop(graceful=config.graceful_restart.enabled and not drained)
            if not config.graceful_restart.enabled:
                forget_run(config.graceful_restart.run_file)
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
