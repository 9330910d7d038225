"""The Prometheus collector against real ``Speaker`` objects in this process.

Scrapes go through prometheus-client's own exposition and parser
(``text_string_to_metric_families``), so names, types and labels are checked as Prometheus
would read them. Two speakers peer over loopback addresses in one event loop for the
Established case; the rest needs no socket (a passive peer never connects).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig
from podbgp.ops.api import make_app
from podbgp.ops.metrics import (
    METRICS_DOC,
    STATE_VALUES,
    PodbgpCollector,
    exported_names,
    metrics_route,
    register_collector,
)
from podbgp.ops.views import SpeakerViews

NET = f"127.{180 + os.getpid() % 50}.{os.getpid() % 250}"
ALLOWED_LABELS = {"peer", "peer_type", "message_type", "kind", "source", "le"}


def scrape(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    """Sample name -> samples, parsed back from the text exposition."""
    text = generate_latest(registry).decode()
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    matches = [s.value for s in samples[name] if all(s.labels[k] == v for k, v in labels.items())]
    assert len(matches) == 1, (name, labels, samples.get(name))
    return matches[0]


def check_bounded_labels(samples: dict[str, list[Sample]]) -> None:
    for name, group in samples.items():
        assert name in exported_names(), name
        for sample in group:
            assert set(sample.labels) <= ALLOWED_LABELS, (name, sample.labels)
            # Never a prefix in a label value: cardinality must not grow with routes.
            assert not any("/" in v for v in sample.labels.values()), sample


@pytest.fixture
async def lone_speaker() -> AsyncIterator[Speaker]:
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"))
    await speaker.start()
    try:
        yield speaker
    finally:
        await speaker.stop(graceful=False)


async def settle(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_idle_speaker_with_passive_peer(lone_speaker: Speaker) -> None:
    lone_speaker.add_peer(PeerSpec("192.0.2.2", 64512, passive=True, peer_type="mesh"))
    lone_speaker.add_peer(PeerSpec("2001:db8::2", 64513, passive=True))
    lone_speaker.originate("10.244.1.0/24")
    lone_speaker.originate("10.244.7.0/24")
    await settle(lambda: lone_speaker.loc_rib.count() == 2)
    registry = CollectorRegistry()
    register_collector(registry, SpeakerViews(lone_speaker))
    samples = scrape(registry)

    check_bounded_labels(samples)
    v4 = {"peer": "192.0.2.2", "peer_type": "mesh"}
    v6 = {"peer": "2001:db8::2", "peer_type": "global"}
    for labels in (v4, v6):
        assert value(samples, "podbgp_bgp_session_state", **labels) == STATE_VALUES["Active"]
        assert value(samples, "podbgp_bgp_session_up", **labels) == 0
        assert value(samples, "podbgp_bgp_session_uptime_seconds", **labels) == 0
        assert value(samples, "podbgp_bgp_session_flaps_total", **labels) == 0
        assert value(samples, "podbgp_bgp_prefixes_received", **labels) == 0
        assert value(samples, "podbgp_bgp_prefixes_advertised", **labels) == 0
    assert value(samples, "podbgp_bgp_loc_rib_routes") == 2
    assert value(samples, "podbgp_snapshot_ok", source="speaker") == 1
    assert "podbgp_bgp_messages_sent_total" not in samples  # nothing sent yet
    # Sources that were not given export nothing at all.
    assert not any(name.startswith(("podbgp_felix", "podbgp_datastore")) for name in samples)


async def test_max_prefixes_and_update_errors(lone_speaker: Speaker) -> None:
    from bgpd.prefix_limit import MaxPrefixes

    limited = PeerSpec("192.0.2.2", 65001, passive=True, max_prefixes=MaxPrefixes(10, 50, 30))
    peer = lone_speaker.add_peer(limited)
    assert peer.prefix_limit is not None
    peer.prefix_limit.check({1: 6})  # past 50 %: a warning
    peer.prefix_limit.trip(1, 11)
    peer.update_errors.treat_as_withdraw = 3
    peer.update_errors.attributes_discarded = 2
    registry = CollectorRegistry()
    register_collector(registry, SpeakerViews(lone_speaker))
    samples = scrape(registry)
    check_bounded_labels(samples)
    labels = {"peer": "192.0.2.2", "peer_type": "global"}
    assert value(samples, "podbgp_bgp_max_prefixes_reached_total", **labels) == 1
    assert value(samples, "podbgp_bgp_max_prefixes_held_down", **labels) == 1
    assert value(samples, "podbgp_bgp_max_prefixes_warning", **labels) == 0  # reset by the trip
    assert value(samples, "podbgp_bgp_update_treat_as_withdraw_total", **labels) == 3
    assert value(samples, "podbgp_bgp_update_attributes_discarded_total", **labels) == 2
    view = SpeakerViews(lone_speaker).peers()[0]
    assert view["maxPrefixes"] is not None and "limit 10" in view["maxPrefixes"]["reached"]


async def test_established_pair_over_loopback() -> None:
    a_addr, b_addr = f"{NET}.1", f"{NET}.2"
    a = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1", graceful_restart=False))
    b = Speaker(SpeakerConfig(asn=64513, router_id="192.0.2.2", graceful_restart=False))
    for sp in (a, b):
        await sp.start()
    try:
        port = await b.listen(b_addr, 0)
        a.add_peer(PeerSpec(b_addr, 64513, port=port, source_address=a_addr, hold_time=30))
        b.add_peer(PeerSpec(a_addr, 64512, passive=True, hold_time=30))
        for prefix in ("10.244.1.0/24", "10.244.2.0/24", "2001:db8:1::/48"):
            a.originate(prefix)
        b.originate("10.244.9.0/24")
        # The IPv6 block has no IPv6 next hop on an IPv4 session, so b learns the two IPv4 ones.
        await settle(lambda: b.loc_rib.count() == 3 and a.loc_rib.count() == 4)
        registry = CollectorRegistry()
        register_collector(registry, SpeakerViews(a))
        samples = scrape(registry)
    finally:
        await a.stop(graceful=False)
        await b.stop(graceful=False)

    check_bounded_labels(samples)
    peer = {"peer": b_addr, "peer_type": "global"}
    assert value(samples, "podbgp_bgp_session_state", **peer) == 6
    assert value(samples, "podbgp_bgp_session_up", **peer) == 1
    assert value(samples, "podbgp_bgp_session_uptime_seconds", **peer) >= 0
    assert value(samples, "podbgp_bgp_prefixes_received", **peer) == 1
    assert value(samples, "podbgp_bgp_prefixes_accepted", **peer) == 1
    assert value(samples, "podbgp_bgp_prefixes_advertised", **peer) == 2
    assert value(samples, "podbgp_bgp_loc_rib_routes") == 4
    for kind in ("open", "keepalive", "update"):
        assert value(samples, "podbgp_bgp_messages_sent_total", message_type=kind, **peer) >= 1
        assert value(samples, "podbgp_bgp_messages_received_total", message_type=kind, **peer) >= 1
    # One label set per peer and message type, whatever the number of prefixes.
    sent = samples["podbgp_bgp_messages_sent_total"]
    assert len({tuple(sorted(s.labels.items())) for s in sent}) == len(sent)


class FixedView:
    """A snapshot that tests can change between scrapes (the speaker's shape)."""

    def __init__(self, peers: list[dict[str, Any]], routes: int = 0) -> None:
        self.peer_list = peers
        self.route_count = routes

    def status(self) -> dict[str, Any]:
        return {"routerId": "192.0.2.1", "asNumber": 64512, "uptimeSeconds": 42,
                "peers": {}, "routes": self.route_count}  # fmt: skip

    def peers(self) -> list[dict[str, Any]]:
        return self.peer_list

    def routes(self, detail: bool = False) -> list[dict[str, Any]]:
        return []


def test_uptime_from_since_with_injected_clock() -> None:
    peer = {"address": "192.0.2.2", "type": "rr-client", "state": "Established",
            "since": "2024-05-01T12:00:00Z", "flaps": 3}  # fmt: skip
    registry = CollectorRegistry()
    noon = 1714564800.0  # 2024-05-01T12:00:00Z
    registry.register(PodbgpCollector(FixedView([peer], 5), clock=lambda: noon + 90.5))
    samples = scrape(registry)
    labels = {"peer": "192.0.2.2", "peer_type": "rr-client"}
    assert value(samples, "podbgp_bgp_session_uptime_seconds", **labels) == 90.5
    assert value(samples, "podbgp_bgp_session_flaps_total", **labels) == 3
    assert value(samples, "podbgp_bgp_speaker_uptime_seconds") == 42
    assert value(samples, "podbgp_bgp_loc_rib_routes") == 5


def test_unknown_state_is_zero() -> None:
    registry = CollectorRegistry()
    peer = {"address": "192.0.2.2", "type": "global", "state": "Dormant", "since": None}
    registry.register(PodbgpCollector(FixedView([peer])))
    samples = scrape(registry)
    assert value(samples, "podbgp_bgp_session_state", peer="192.0.2.2") == 0


FELIX = {
    "routes_programmed": {"blackhole": 1, "direct": 2, "ipip": 3, "pod": 4},
    "reconcile_runs": 17,
    "reconcile_errors": 2,
    "last_reconcile_timestamp": 1714564800.0,
    "update_to_kernel": ([(0.005, 1), (0.05, 3), (math.inf, 4)], 1.25),
}
DATASTORE = {
    "connected": True,
    "synced": False,
    "errors": 5,
    "blocks_owned": 1,
    "block_allocations": 2,
    "block_allocation_errors": 1,
    "watch_events": 9,
}


def test_felix_and_datastore_snapshots() -> None:
    registry = CollectorRegistry()
    register_collector(registry, FixedView([]), felix=lambda: FELIX, datastore=lambda: DATASTORE)
    samples = scrape(registry)
    check_bounded_labels(samples)
    for kind, count in FELIX["routes_programmed"].items():
        assert value(samples, "podbgp_felix_routes_programmed", kind=kind) == count
    assert value(samples, "podbgp_felix_reconcile_runs_total") == 17
    assert value(samples, "podbgp_felix_reconcile_errors_total") == 2
    assert value(samples, "podbgp_felix_last_reconcile_timestamp_seconds") == 1714564800.0
    latency = "podbgp_felix_update_to_kernel_seconds"
    assert value(samples, latency + "_bucket", le="0.05") == 3
    assert value(samples, latency + "_bucket", le="+Inf") == 4
    assert value(samples, latency + "_count") == 4
    assert value(samples, latency + "_sum") == 1.25
    assert value(samples, "podbgp_datastore_connected") == 1
    assert value(samples, "podbgp_datastore_synced") == 0
    assert value(samples, "podbgp_datastore_errors_total") == 5
    assert value(samples, "podbgp_ipam_blocks_owned") == 1
    assert value(samples, "podbgp_ipam_block_allocations_total") == 2
    assert value(samples, "podbgp_ipam_block_allocation_errors_total") == 1
    assert value(samples, "podbgp_datastore_watch_events_total") == 9
    for source in ("speaker", "felix", "datastore"):
        assert value(samples, "podbgp_snapshot_ok", source=source) == 1
    # Every name the collector can export appears when every source reports every key.
    assert {n for n in samples if n != "podbgp_bgp_messages_sent_total"} >= {
        n
        for n in exported_names()
        if not n.startswith(("podbgp_bgp_", "podbgp_bfd_", "podbgp_snapshot"))
    }


def test_bfd_series_from_the_peer_view() -> None:
    bfd = {"state": "Up", "flaps": 2, "detectTime": 300.0, "packets": {"sent": 40, "received": 38}}
    peers = [
        {"address": "192.0.2.2", "type": "mesh", "state": "Established", "bfd": bfd},
        {"address": "192.0.2.3", "type": "mesh", "state": "Idle",
         "bfd": {"state": "Down", "flaps": 0, "detectTime": None, "packets": {}}},
        {"address": "192.0.2.4", "type": "mesh", "state": "Idle"},  # no BFD: no BFD series
    ]  # fmt: skip
    registry = CollectorRegistry()
    registry.register(PodbgpCollector(FixedView(peers)))
    samples = scrape(registry)
    check_bounded_labels(samples)
    up = {"peer": "192.0.2.2", "peer_type": "mesh"}
    down = {"peer": "192.0.2.3", "peer_type": "mesh"}
    assert value(samples, "podbgp_bfd_session_state", **up) == 3
    assert value(samples, "podbgp_bfd_session_up", **up) == 1
    assert value(samples, "podbgp_bfd_session_flaps_total", **up) == 2
    assert value(samples, "podbgp_bfd_detect_time_seconds", **up) == 0.3
    assert value(samples, "podbgp_bfd_packets_sent_total", **up) == 40
    assert value(samples, "podbgp_bfd_packets_received_total", **up) == 38
    assert value(samples, "podbgp_bfd_session_state", **down) == 1
    assert value(samples, "podbgp_bfd_session_up", **down) == 0
    assert [s.labels["peer"] for s in samples["podbgp_bfd_session_state"]] == [
        "192.0.2.2",
        "192.0.2.3",
    ]
    assert [s.labels["peer"] for s in samples["podbgp_bfd_detect_time_seconds"]] == ["192.0.2.2"]


def test_partial_snapshots_and_non_numbers_are_skipped() -> None:
    registry = CollectorRegistry()
    felix: Mapping[str, Any] = {"reconcile_runs": "many", "routes_programmed": {"ipip": None}}
    register_collector(registry, FixedView([]), felix=lambda: felix, datastore=lambda: {})
    samples = scrape(registry)
    assert not any(name.startswith(("podbgp_felix", "podbgp_datastore")) for name in samples)
    assert value(samples, "podbgp_snapshot_ok", source="felix") == 1


def test_failing_source_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> Mapping[str, Any]:
        raise RuntimeError("datastore client gone")

    registry = CollectorRegistry()
    register_collector(registry, FixedView([], routes=3), felix=lambda: FELIX, datastore=broken)
    samples = scrape(registry)
    assert value(samples, "podbgp_snapshot_ok", source="datastore") == 0
    assert value(samples, "podbgp_snapshot_ok", source="felix") == 1
    assert value(samples, "podbgp_felix_reconcile_runs_total") == 17
    assert value(samples, "podbgp_bgp_loc_rib_routes") == 3
    assert "event=snapshot-failed source=datastore" in caplog.text


def test_registries_are_isolated() -> None:
    one, two = CollectorRegistry(), CollectorRegistry()
    register_collector(one, FixedView([], routes=1))
    register_collector(two, FixedView([], routes=2))
    assert value(scrape(one), "podbgp_bgp_loc_rib_routes") == 1
    assert value(scrape(two), "podbgp_bgp_loc_rib_routes") == 2


def test_double_registration_is_refused() -> None:
    registry = CollectorRegistry()
    register_collector(registry, FixedView([]))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        register_collector(registry, FixedView([]))


async def test_metrics_endpoint_negotiates_format() -> None:
    registry = CollectorRegistry()
    register_collector(registry, FixedView([], routes=7))
    app = make_app(FixedView([]), [metrics_route(registry)], docs={"/metrics": METRICS_DOC})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
        families = {f.name for f in text_string_to_metric_families(text)}
        assert "podbgp_bgp_loc_rib_routes" in families
        resp = await client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert (await resp.text()).rstrip().endswith("# EOF")
