"""A neighbour as the speaker runs it: its record (``Peer``: session, Adj-RIB-In, what the
session negotiated, its timers) and the OPEN it sends (``fsm_config``: the capabilities we
advertise, RFC 5492, from the ``SpeakerConfig`` and the peer's ``PeerSpec``).

The speaker owns every ``Peer`` (``Speaker.peers``) and changes them on its loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bgpd.codec.types import (
    AddPath,
    Afi,
    Capability,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    LongLivedGracefulRestart,
    Multiprotocol,
    RouteRefreshCap,
    Safi,
)
from bgpd.decision import PathSource
from bgpd.fsm import FsmConfig, Negotiated
from bgpd.gr import FORWARDING, NOTIFICATION, RESTART_STATE
from bgpd.nexthop import IPV4_OVER_IPV6
from bgpd.peerspec import PeerSpec, SpeakerConfig
from bgpd.policy import PeerPolicy
from bgpd.prefix_limit import PrefixLimitState
from bgpd.rib import AdjRibIn
from bgpd.session import Session
from bgpd.update_errors import UpdateErrorStats


@dataclass(slots=True)
class Peer:
    spec: PeerSpec
    session: Session
    adj_in: AdjRibIn = field(default_factory=AdjRibIn)
    source: PathSource | None = None
    policy: PeerPolicy | None = None
    generation: int = 0  # the session generation whose UPDATEs we accept; 0 = none
    negotiated: Negotiated | None = None
    stale_timer: asyncio.TimerHandle | None = None
    llgr_times: dict[int, int] = field(default_factory=dict)  # afi -> LLST, after GR time
    llgr_timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    eor_received: set[tuple[int, int]] = field(default_factory=set)
    dynamic: bool = False  # created from a peer range; removed once its session is gone
    prefix_limit: PrefixLimitState | None = None  # with spec.max_prefixes (bgpd.prefix_limit)
    limit_timer: asyncio.TimerHandle | None = None  # restarts a session stopped by the limit
    update_errors: UpdateErrorStats = field(default_factory=UpdateErrorStats)


def fsm_config(spec: PeerSpec, config: SpeakerConfig, *, restarting: bool) -> FsmConfig:
    """The session's FSM settings and the capabilities its OPEN carries. ``restarting``: our
    selection is deferred after a restart, so the OPEN sets the R bit (RFC 4724 §4.1)."""
    caps: list[Capability] = [
        Multiprotocol(Afi.IPV4, Safi.UNICAST),
        Multiprotocol(Afi.IPV6, Safi.UNICAST),
        RouteRefreshCap(),
        FourOctetAs(spec.local_asn or config.asn),
        ExtendedMessage(),
        # RFC 7911: receive and send several paths per prefix, where the peer agrees.
        AddPath(((Afi.IPV4, Safi.UNICAST, 3), (Afi.IPV6, Safi.UNICAST, 3))),
    ]
    if spec.extended_next_hop:
        caps.append(ExtendedNextHop((IPV4_OVER_IPV6,)))  # RFC 8950
    if config.graceful_restart:
        # F bit set: a restarting podbgp keeps forwarding (felix never flushes routes).
        families = ((Afi.IPV4, Safi.UNICAST, FORWARDING), (Afi.IPV6, Safi.UNICAST, FORWARDING))
        restart = spec.restart_time or config.restart_time
        # N bit: a NOTIFICATION other than Hard Reset keeps routes too (RFC 8538); R bit
        # while our selection is deferred after a restart (RFC 4724 §4.1).
        flags = NOTIFICATION | (RESTART_STATE if restarting else 0)
        caps.append(GracefulRestart(flags, min(restart, 4095), families))
        llst = spec.long_lived_stale_time
        if llst is None:
            llst = config.long_lived_stale_time
        if llst > 0:  # RFC 9494: keep our routes, least preferred, for this long
            caps.append(
                LongLivedGracefulRestart(
                    ((Afi.IPV4, Safi.UNICAST, FORWARDING, llst),
                     (Afi.IPV6, Safi.UNICAST, FORWARDING, llst))
                )
            )  # fmt: skip
    return FsmConfig(
        local_asn=spec.local_asn or config.asn,
        local_router_id=config.router_id,
        peer_asn=spec.asn,
        hold_time=spec.hold_time,
        keepalive_time=spec.keepalive_time,
        passive=spec.passive,
        capabilities=tuple(caps),
        connect_retry_time=config.connect_retry_time,
    )
