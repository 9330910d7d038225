"""Read-only snapshots of the speaker in the REST API's JSON shape (shared/DESIGN.md §1).

Built on request from the speaker's state; nothing here runs on the UPDATE path. Passwords are
never copied into a view.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from bgpd.bfd.packet import Diag
from bgpd.bfd.packet import State as BfdStateCode
from bgpd.codec.types import (
    AddPath,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    Multiprotocol,
    RouteRefreshCap,
    prefix_to_str,
)
from bgpd.fsm import State
from podbgp.ops.route_detail import attributes_view, detail_routes
from podbgp.ops.schema import (
    BfdState,
    BfdView,
    PeerType,
    PeerView,
    PrefixLimitView,
    RouteView,
    SessionState,
    StatusView,
)

if TYPE_CHECKING:
    from bgpd.bfd.peering import BfdSettings
    from bgpd.bfd.views import BfdSessionView
    from bgpd.rib import Best
    from bgpd.speaker import Peer, Speaker

_AFI_NAMES = {1: "ipv4", 2: "ipv6"}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _capability_names(caps: tuple[object, ...]) -> list[str]:
    names: list[str] = []
    for cap in caps:
        if isinstance(cap, Multiprotocol):
            names.append(f"mp-{_AFI_NAMES.get(cap.afi, cap.afi)}-unicast")
        elif isinstance(cap, RouteRefreshCap):
            names.append("route-refresh")
        elif isinstance(cap, FourOctetAs):
            names.append("4-octet-as")
        elif isinstance(cap, GracefulRestart):
            names.append(f"graceful-restart({cap.restart_time}s)")
        elif isinstance(cap, ExtendedMessage):
            names.append("extended-message")
        elif isinstance(cap, AddPath):
            names.append("add-path")
        elif isinstance(cap, ExtendedNextHop):
            names.append("extended-next-hop")
    return sorted(set(names))


_BFD_STATES: dict[BfdStateCode, BfdState] = {
    BfdStateCode.ADMIN_DOWN: "AdminDown",
    BfdStateCode.DOWN: "Down",
    BfdStateCode.INIT: "Init",
    BfdStateCode.UP: "Up",
}


def _diag_name(diag: Diag) -> str:
    """``CONTROL_DETECTION_TIME_EXPIRED`` -> ``ControlDetectionTimeExpired``."""
    return "".join(word.capitalize() for word in diag.name.split("_"))


def bfd_view(settings: BfdSettings, s: BfdSessionView) -> BfdView:
    return {
        "state": _BFD_STATES[s.state],
        "remoteState": _BFD_STATES[s.remote_state],
        "mode": "multihop" if s.multihop else "single-hop",
        "port": s.port,
        "localAddress": s.local,
        "minRx": settings.min_rx_ms,
        "minTx": settings.min_tx_ms,
        "multiplier": settings.multiplier,
        "txInterval": s.tx_interval_ms,
        "rxInterval": s.rx_interval_ms,
        "detectTime": s.detect_time_ms,
        "diagnostic": _diag_name(s.local_diag),
        "remoteDiagnostic": _diag_name(s.remote_diag),
        "flaps": s.flaps,
        "upSince": _iso(s.up_since) if s.up_since is not None else None,
        "packets": {
            "sent": s.packets_sent,
            "received": s.packets_received,
            "dropped": s.packets_dropped,
            "sendErrors": s.send_errors,
        },
    }


def peer_view(speaker: Speaker, peer: Peer, bfd: BfdSessionView | None = None) -> PeerView:
    session = peer.session
    neg = peer.negotiated if session.state == State.ESTABLISHED else None
    accepted = peer.adj_in.count()
    received = peer.adj_in.received_count()
    peer_type = (
        "rr-client"
        if peer.spec.rr_client and peer.spec.peer_type == "global"
        else peer.spec.peer_type
    )
    view: PeerView = {
        "address": session.address,
        "asNumber": peer.spec.asn,
        "type": cast(PeerType, peer_type),
        "description": peer.spec.description,
        "state": cast(SessionState, str(session.state)),
        "since": _iso(session.stats.since),
        # The last error explains a session that is down; once up again it is history.
        "info": "" if neg is not None else session.fsm.last_error,
        "holdTime": neg.hold_time if neg else peer.spec.hold_time,
        "keepaliveTime": neg.keepalive_time if neg else None,
        "routerId": neg.peer_router_id if neg else None,
        "capabilities": _capability_names(neg.peer_capabilities) if neg else [],
        "prefixes": {
            "received": received,
            "accepted": accepted,
            "stale": peer.adj_in.stale_count(),
            "advertised": speaker.exporter.advertised_count(peer),
        },
        "messages": {
            "sent": sum(session.stats.sent.values()),
            "received": sum(session.stats.received.values()),
            "sentByType": dict(session.stats.sent),
            "receivedByType": dict(session.stats.received),
        },
        "flaps": session.stats.flaps,
        "policy": speaker.policy_info(peer),
        "maxPrefixes": _prefix_limit_view(peer),
        "updateErrors": {
            "treatAsWithdraw": peer.update_errors.treat_as_withdraw,
            "attributesDiscarded": peer.update_errors.attributes_discarded,
            "ownNextHop": peer.update_errors.own_next_hop,
            "lastReason": peer.update_errors.last_reason,
        },
    }
    if peer.spec.interface is not None:
        view["interface"] = peer.spec.interface
    policy = peer.policy
    if neg is not None and policy is not None:
        hops = {1: policy.next_hop_v4, 2: policy.next_hop_v6}
        view["families"] = {_AFI_NAMES[a]: hops[a] for a, _s in neg.families if a in hops}
    if peer.spec.bfd is not None and bfd is not None:
        view["bfd"] = bfd_view(peer.spec.bfd, bfd)
    return view


def _prefix_limit_view(peer: Peer) -> PrefixLimitView | None:
    state = peer.prefix_limit
    if state is None:
        return None
    setting = state.setting
    return {
        "limit": setting.limit,
        "warningThreshold": setting.warning_threshold,
        "restartAfter": setting.restart_after,
        "warning": bool(state.warned),
        "timesReached": state.times_reached,
        "reached": state.reached,
    }


def route_view(afi: int, prefix: bytes, best: Best) -> RouteView:
    view = cast(RouteView, {"prefix": prefix_to_str(afi, prefix), **attributes_view(best.attrs)})
    view["fromPeer"] = best.source.peer or "local"
    view["reason"] = str(best.reason)
    view["stale"] = best.stale
    return view


class SpeakerViews:
    """The ``SpeakerView`` the REST API reads (status, peers, routes)."""

    def __init__(self, speaker: Speaker, node_name: str | None = None) -> None:
        self.speaker = speaker
        self.node_name = node_name

    def status(self) -> StatusView:
        speaker = self.speaker
        counts: dict[str, int] = {}
        for peer in speaker.peers.values():
            state = str(peer.session.state)
            counts[state] = counts.get(state, 0) + 1
        return {
            "nodeName": self.node_name,
            "routerId": speaker.config.router_id,
            "asNumber": speaker.config.asn,
            "uptimeSeconds": int(time.time() - speaker.started),
            "peers": counts,
            "routes": speaker.loc_rib.count(),
        }

    def peers(self) -> list[PeerView]:
        bfd = self.speaker.bfd.snapshot()
        return [
            peer_view(self.speaker, p, bfd.get(address))
            for address, p in self.speaker.peers.items()
        ]

    def routes(self, detail: bool = False) -> list[RouteView]:
        if detail:
            return detail_routes(self.speaker)
        out: list[RouteView] = []
        for afi, table in self.speaker.loc_rib.best.items():
            for prefix, best in table.items():
                out.append(route_view(afi, prefix, best))
        return out
