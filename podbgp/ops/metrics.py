"""Prometheus metrics, computed from snapshots at scrape time (nothing is updated on a hot path).

Owns :class:`PodbgpCollector`, a prometheus-client custom collector registered into a registry
the caller passes in (no module-level state, so tests and several daemons in one process never
share series), and the ``/metrics`` endpoint serving that registry. Implements no RFC; session
states follow RFC 4271 §8.2.2 and are numbered as the BGP4-MIB's ``bgpPeerState`` (RFC 4273).

Sources, all read when Prometheus scrapes, in the views of :mod:`podbgp.ops.schema` (the same
TypedDicts the REST API answers with and the OpenAPI document is built from):

* the speaker, through the REST API's ``SpeakerView``: :class:`~podbgp.ops.schema.StatusView`
  (``routes``, ``uptimeSeconds``) and per peer :class:`~podbgp.ops.schema.PeerView`
  (``address``, ``type``, ``state``, ``since``, ``prefixes``, ``messages``, ``flaps``, and
  ``bfd`` when the peer has a BFD session);
* optionally felix: a callable returning :class:`~podbgp.ops.schema.FelixMetrics`;
* optionally the datastore: a callable returning :class:`~podbgp.ops.schema.DatastoreMetrics`.

The key → metric mapping of the optional sources is :data:`_FELIX_SCALARS` (plus
``routes_programmed`` by kind) and :data:`_DATASTORE_SCALARS` below.

Counts handed in as ``*_total`` counters must only grow while the process lives. A snapshot
callable that raises is logged and sets ``podbgp_snapshot_ok{source}`` to 0 for that scrape;
the other sources are still exported.

Labels are bounded: per-peer series carry ``peer`` (address) and ``peer_type`` only, plus
``message_type`` (the five BGP message types) on the message counters, ``kind`` on felix's route
gauge and ``source`` on ``podbgp_snapshot_ok``. No series is ever labelled by prefix, so
cardinality grows with peers, never with routes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

if TYPE_CHECKING:
    from podbgp.ops.api import SpeakerView

log = logging.getLogger("podbgp.metrics")

Snapshot = Callable[[], Mapping[str, Any]]
Family = GaugeMetricFamily | CounterMetricFamily

# BGP4-MIB bgpPeerState (RFC 4273): idle(1) .. established(6); 0 means a state we do not know.
STATE_VALUES = {
    "Idle": 1,
    "Connect": 2,
    "Active": 3,
    "OpenSent": 4,
    "OpenConfirm": 5,
    "Established": 6,
}
# RFC 5880 §4.1 session states.
BFD_STATE_VALUES = {"AdminDown": 0, "Down": 1, "Init": 2, "Up": 3}
PEER_LABELS = ("peer", "peer_type")
MESSAGE_LABELS = (*PEER_LABELS, "message_type")


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _families() -> dict[str, Family]:
    """Every family the collector can export, empty; keyed by the name without ``_total``."""
    f: list[Family] = [
        _gauge("podbgp_bgp_session_state", "BGP session state: 1 Idle, 2 Connect, 3 Active, "
               "4 OpenSent, 5 OpenConfirm, 6 Established (BGP4-MIB bgpPeerState)", PEER_LABELS),
        _gauge("podbgp_bgp_session_up", "1 when the BGP session is Established", PEER_LABELS),
        _gauge("podbgp_bgp_session_uptime_seconds",
               "Seconds since the session became Established; 0 when it is not", PEER_LABELS),
        _counter("podbgp_bgp_session_flaps", "Times the session left Established", PEER_LABELS),
        _gauge("podbgp_bgp_prefixes_received",
               "Prefixes in the peer's Adj-RIB-In, accepted or not", PEER_LABELS),
        _gauge("podbgp_bgp_prefixes_accepted", "Prefixes from the peer that import accepted",
               PEER_LABELS),
        _gauge("podbgp_bgp_prefixes_advertised", "Prefixes advertised to the peer", PEER_LABELS),
        _gauge("podbgp_bgp_max_prefixes_warning",
               "1 when the peer is past its maxPrefixes warning threshold", PEER_LABELS),
        _counter("podbgp_bgp_max_prefixes_reached",
                 "Sessions ended by the peer's maxPrefixes limit (Cease 6/1)", PEER_LABELS),
        _gauge("podbgp_bgp_max_prefixes_held_down",
               "1 while the session is held down by its maxPrefixes limit", PEER_LABELS),
        _counter("podbgp_bgp_update_treat_as_withdraw",
                 "UPDATEs from the peer treated as withdraw (RFC 7606)", PEER_LABELS),
        _counter("podbgp_bgp_update_attributes_discarded",
                 "Malformed attributes from the peer discarded (RFC 7606)", PEER_LABELS),
        _counter("podbgp_bgp_messages_sent", "BGP messages sent, by message type",
                 MESSAGE_LABELS),
        _counter("podbgp_bgp_messages_received", "BGP messages received, by message type",
                 MESSAGE_LABELS),
        _gauge("podbgp_bfd_session_state", "BFD session state: 0 AdminDown, 1 Down, 2 Init, "
               "3 Up (RFC 5880)", PEER_LABELS),
        _gauge("podbgp_bfd_session_up", "1 when the peer's BFD session is Up", PEER_LABELS),
        _counter("podbgp_bfd_session_flaps", "Times the BFD session left Up", PEER_LABELS),
        _gauge("podbgp_bfd_detect_time_seconds",
               "Negotiated BFD detection time; absent until the peer has been heard",
               PEER_LABELS),
        _counter("podbgp_bfd_packets_sent", "BFD Control packets sent", PEER_LABELS),
        _counter("podbgp_bfd_packets_received", "BFD Control packets received", PEER_LABELS),
        _gauge("podbgp_bgp_loc_rib_routes", "Best routes in the Loc-RIB (all families)"),
        _gauge("podbgp_bgp_speaker_uptime_seconds", "Seconds since the speaker started"),
        _gauge("podbgp_felix_routes_programmed", "Kernel routes felix has programmed, by kind",
               ("kind",)),
        _counter("podbgp_felix_reconcile_runs", "felix reconciliations run"),
        _counter("podbgp_felix_reconcile_errors", "felix reconciliations that failed"),
        _gauge("podbgp_felix_last_reconcile_timestamp_seconds",
               "Unix time at which the last felix reconciliation finished"),
        _gauge("podbgp_datastore_connected", "1 when the datastore answers"),
        _gauge("podbgp_datastore_synced", "1 once the datastore's initial sync is done"),
        _counter("podbgp_datastore_errors", "Datastore operations that failed"),
        _gauge("podbgp_ipam_blocks_owned", "IPAM blocks this node holds"),
        _counter("podbgp_ipam_block_allocations", "IPAM blocks claimed by this node"),
        _counter("podbgp_ipam_block_allocation_errors", "IPAM block claims that failed"),
        _counter("podbgp_datastore_watch_events",
                 "Datastore changes delivered to this node (resources, nodes, block affinities)"),
        _gauge("podbgp_snapshot_ok", "1 when the source's snapshot was read at this scrape",
               ("source",)),
    ]  # fmt: skip
    return {m.name: m for m in f}


def _latency() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "podbgp_felix_update_to_kernel_seconds",
        "Seconds from a BGP UPDATE reaching the speaker to the kernel acknowledging the route "
        "change it caused, per prefix change",
    )


def _le(bound: float) -> str:
    return "+Inf" if bound == math.inf else repr(float(bound))


def exported_names() -> list[str]:
    """Every sample name a scrape can contain (counters with their ``_total`` suffix)."""
    names = []
    for family in _families().values():
        names.append(family.name + "_total" if family.type == "counter" else family.name)
    names += [_latency().name + suffix for suffix in ("_bucket", "_sum", "_count")]
    return sorted(names)


# Snapshot key (podbgp.ops.schema.FelixMetrics / DatastoreMetrics) -> metric family.
_FELIX_SCALARS = {
    "reconcile_runs": "podbgp_felix_reconcile_runs",
    "reconcile_errors": "podbgp_felix_reconcile_errors",
    "last_reconcile_timestamp": "podbgp_felix_last_reconcile_timestamp_seconds",
}
_DATASTORE_SCALARS = {
    "connected": "podbgp_datastore_connected",
    "synced": "podbgp_datastore_synced",
    "errors": "podbgp_datastore_errors",
    "blocks_owned": "podbgp_ipam_blocks_owned",
    "block_allocations": "podbgp_ipam_block_allocations",
    "block_allocation_errors": "podbgp_ipam_block_allocation_errors",
    "watch_events": "podbgp_datastore_watch_events",
}


def _number(value: Any) -> float | None:
    """A sample value from a snapshot field; None for anything that is not a number."""
    if isinstance(value, bool | int | float):
        return float(value)
    return None


def _epoch(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


class PodbgpCollector:
    """A prometheus-client collector reading ``view`` (and optional felix and datastore
    snapshot callables, see the module docstring) each time the registry is collected."""

    def __init__(
        self,
        view: SpeakerView,
        *,
        felix: Snapshot | None = None,
        datastore: Snapshot | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.felix = felix
        self.datastore = datastore
        self._histogram = _latency()  # filled by each collect()
        self.clock = clock

    def describe(self) -> list[Metric]:
        # Lets the registry check for name clashes without taking a snapshot.
        return [*_families().values(), _latency()]

    def collect(self) -> Iterator[Metric]:
        families = _families()
        self._histogram = _latency()
        ok = families["podbgp_snapshot_ok"]
        sources: list[tuple[str, Callable[[dict[str, Family]], None]]] = [
            ("speaker", self._speaker)
        ]
        if self.felix is not None:
            sources.append(("felix", self._felix))
        if self.datastore is not None:
            sources.append(("datastore", self._datastore))
        for name, read in sources:
            try:
                read(families)
            except Exception:
                # A broken source must not take the whole scrape (and the other sources) down.
                log.exception("event=snapshot-failed source=%s", name)
                ok.add_metric([name], 0.0)
            else:
                ok.add_metric([name], 1.0)
        for family in [*families.values(), self._histogram]:
            if family.samples:
                yield family

    def _speaker(self, f: dict[str, Family]) -> None:
        status = self.view.status()
        for key, name in (
            ("routes", "podbgp_bgp_loc_rib_routes"),
            ("uptimeSeconds", "podbgp_bgp_speaker_uptime_seconds"),
        ):
            value = _number(status.get(key))
            if value is not None:
                f[name].add_metric([], value)
        now = self.clock()
        for peer in self.view.peers():
            self._peer(f, peer, now)

    def _peer(self, f: dict[str, Family], peer: Mapping[str, Any], now: float) -> None:
        labels = [str(peer.get("address")), str(peer.get("type") or "")]
        state = str(peer.get("state"))
        up = state == "Established"
        since = _epoch(peer.get("since")) if up else None
        f["podbgp_bgp_session_state"].add_metric(labels, float(STATE_VALUES.get(state, 0)))
        f["podbgp_bgp_session_up"].add_metric(labels, 1.0 if up else 0.0)
        uptime = max(0.0, now - since) if since is not None else 0.0
        f["podbgp_bgp_session_uptime_seconds"].add_metric(labels, uptime)
        flaps = _number(peer.get("flaps"))
        if flaps is not None:
            f["podbgp_bgp_session_flaps"].add_metric(labels, flaps)
        prefixes = peer.get("prefixes") or {}
        for key in ("received", "accepted", "advertised"):
            value = _number(prefixes.get(key))
            if value is not None:
                f[f"podbgp_bgp_prefixes_{key}"].add_metric(labels, value)
        limit = peer.get("maxPrefixes")
        if isinstance(limit, Mapping):
            f["podbgp_bgp_max_prefixes_warning"].add_metric(labels, float(bool(limit["warning"])))
            f["podbgp_bgp_max_prefixes_reached"].add_metric(labels, float(limit["timesReached"]))
            f["podbgp_bgp_max_prefixes_held_down"].add_metric(labels, float(bool(limit["reached"])))
        errors = peer.get("updateErrors")
        if isinstance(errors, Mapping):
            for key, name in (
                ("treatAsWithdraw", "podbgp_bgp_update_treat_as_withdraw"),
                ("attributesDiscarded", "podbgp_bgp_update_attributes_discarded"),
            ):
                value = _number(errors.get(key))
                if value is not None:
                    f[name].add_metric(labels, value)
        messages = peer.get("messages") or {}
        for key, name in (
            ("sentByType", "podbgp_bgp_messages_sent"),
            ("receivedByType", "podbgp_bgp_messages_received"),
        ):
            for kind, count in sorted((messages.get(key) or {}).items()):
                value = _number(count)
                if value is not None:
                    f[name].add_metric([*labels, str(kind)], value)
        bfd = peer.get("bfd")
        if isinstance(bfd, Mapping):
            _bfd(f, labels, bfd)

    def _felix(self, f: dict[str, Family]) -> None:
        assert self.felix is not None
        snap = self.felix()
        for kind, count in sorted((snap.get("routes_programmed") or {}).items()):
            value = _number(count)
            if value is not None:
                f["podbgp_felix_routes_programmed"].add_metric([str(kind)], value)
        _scalars(f, snap, _FELIX_SCALARS)
        latency = snap.get("update_to_kernel")
        if latency is not None:
            buckets, total = latency
            le = [
                ("+Inf" if bound == math.inf else repr(float(bound)), float(n))
                for bound, n in buckets
            ]
            self._histogram.add_metric([], le, sum_value=total)

    def _datastore(self, f: dict[str, Family]) -> None:
        assert self.datastore is not None
        _scalars(f, self.datastore(), _DATASTORE_SCALARS)


def _bfd(f: dict[str, Family], labels: list[str], bfd: Mapping[str, Any]) -> None:
    """A peer's BFD series, from :class:`~podbgp.ops.schema.BfdView`."""
    state = str(bfd.get("state"))
    if state in BFD_STATE_VALUES:
        f["podbgp_bfd_session_state"].add_metric(labels, float(BFD_STATE_VALUES[state]))
    f["podbgp_bfd_session_up"].add_metric(labels, 1.0 if state == "Up" else 0.0)
    flaps = _number(bfd.get("flaps"))
    if flaps is not None:
        f["podbgp_bfd_session_flaps"].add_metric(labels, flaps)
    detect = _number(bfd.get("detectTime"))
    if detect is not None:
        f["podbgp_bfd_detect_time_seconds"].add_metric(labels, detect / 1000)
    packets = bfd.get("packets") or {}
    for key in ("sent", "received"):
        value = _number(packets.get(key))
        if value is not None:
            f[f"podbgp_bfd_packets_{key}"].add_metric(labels, value)


def _scalars(f: dict[str, Family], snap: Mapping[str, Any], keys: Mapping[str, str]) -> None:
    for key, name in keys.items():
        value = _number(snap.get(key))
        if value is not None:
            f[name].add_metric([], value)


def register_collector(
    registry: CollectorRegistry,
    view: SpeakerView,
    *,
    felix: Snapshot | None = None,
    datastore: Snapshot | None = None,
) -> PodbgpCollector:
    """Create a :class:`PodbgpCollector` and register it into ``registry``."""
    collector = PodbgpCollector(view, felix=felix, datastore=datastore)
    registry.register(collector)
    return collector


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> web.RouteDef:
    """The aiohttp route serving ``registry`` in the Prometheus text format (or OpenMetrics
    when the scraper asks for it), for ``podbgp.ops.api.start_api(..., routes=[...])``."""

    async def handler(request: web.Request) -> web.Response:
        # Collected on the event loop on purpose: the snapshots read the speaker's live state,
        # which only the loop's thread may touch.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    return web.get(path, handler)


# The OpenAPI path item of /metrics, for ``podbgp.ops.api`` (see ``podbgp.ops.openapi``).
METRICS_DOC: dict[str, Any] = {
    "get": {
        "summary": "Prometheus metrics (text exposition format; OpenMetrics on request)",
        "operationId": "getMetrics",
        "responses": {
            "200": {
                "description": "Metrics computed from the speaker at scrape time",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }
}
