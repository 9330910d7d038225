"""A neighbour as the speaker runs it: its record (``Peer``: session, Adj-RIB-In, what the
session negotiated, its timers), the OPEN it sends (``fsm_config``: the capabilities we
advertise, RFC 5492, from the ``SpeakerConfig`` and the peer's ``PeerSpec``), and the rules that
act on its session alone: its maximum prefixes (RFC 4486, counted by :mod:`bgpd.prefix_limit`)
and a NEXT_HOP that is our own address (RFC 4271 §6.3); and what its session's establishment
makes of it (``establish``: its path source and export policy).

The speaker owns every ``Peer`` (``Speaker.peers``) and changes them on its loop."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from bgpd.codec.errors import CeaseSubcode
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
from bgpd.nexthop import IPV4_OVER_IPV6, own_link_local, own_next_hops, session_link
from bgpd.peerspec import PeerSpec, SpeakerConfig
from bgpd.policy import PeerPolicy
from bgpd.policy_filters import SessionFilters
from bgpd.prefix_limit import PrefixLimitState, cease_data
from bgpd.rib import AdjRibIn
from bgpd.session import Session
from bgpd.update_errors import UpdateErrorStats

log = logging.getLogger("podbgp.speaker")


@dataclass(slots=True)
class Peer:
    spec: PeerSpec
    session: Session
    adj_in: AdjRibIn = field(default_factory=AdjRibIn)
    source: PathSource | None = None
    policy: PeerPolicy | None = None
    generation: int = 0  # the session generation whose UPDATEs we accept; 0 = none
    negotiated: Negotiated | None = None
    link: str | None = None  # the session's interface, for link-local next hops (nexthop.py)
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


def own_next_hop(peer: Peer, next_hop: str | None, count: int) -> bool:
    """RFC 4271 §6.3: a NEXT_HOP that is our own address on the session is semantically
    incorrect; the routes are ignored (withdrawn if held), the session stays up."""
    policy = peer.policy
    if next_hop is None or policy is None:
        return False
    if next_hop not in (policy.next_hop_v4, policy.next_hop_v6):
        return False
    log.warning("peer=%s event=own-next-hop next_hop=%s routes=%d", peer.spec.address,
                next_hop, count)  # fmt: skip
    peer.update_errors.ignored_next_hop(next_hop, count)
    return True


# --- maximum prefixes (RFC 4486, bgpd.prefix_limit) ----------------------------------------


def check_prefix_limit(
    peer: Peer, state: PrefixLimitState, restart: Callable[[Peer], None]
) -> None:
    """Warn past the threshold; past the limit stop the session with Cease/Maximum Number of
    Prefixes Reached, and call ``restart(peer)`` after the setting's ``restart_after``."""
    adj = peer.adj_in
    counts = {afi: len(adj.multi.get(afi) or table) for afi, table in adj.routes.items()}
    warnings, over = state.check(counts)
    for text in warnings:
        log.warning("peer=%s event=max-prefixes-warning %s", peer.spec.address, text)
    if over is None:
        return
    info = state.trip(over, counts[over])
    log.warning("peer=%s event=max-prefixes-reached %s", peer.spec.address, info)
    peer.session.stop(
        subcode=CeaseSubcode.MAX_PREFIXES_REACHED,
        data=cease_data(over, state.setting.limit),
        info=info,
    )
    if state.setting.restart_after:
        loop = asyncio.get_running_loop()
        peer.limit_timer = loop.call_later(state.setting.restart_after, restart, peer)


def establish(
    peer: Peer,
    session: Session,
    negotiated: Negotiated,
    local_address: str,
    config: SpeakerConfig,
    filters: SessionFilters,
) -> None:
    """The peer's session is Established: what it negotiated becomes the peer's path source
    (the decision process reads it) and its export policy; UPDATEs of this session generation
    count from now, End-of-RIB marks and UPDATE error counts start again."""
    local_asn = peer.spec.local_asn or config.asn
    ebgp = negotiated.peer_asn != local_asn
    peer.negotiated = negotiated
    peer.generation = session.generation
    peer.eor_received = set()
    peer.update_errors = UpdateErrorStats()
    peer.source = PathSource(
        peer=session.address,
        router_id=int.from_bytes(socket.inet_aton(negotiated.peer_router_id), "big"),
        ebgp=ebgp,
        rr_client=peer.spec.rr_client,
    )
    peer.link = session_link(session.address, local_address)
    next_hop_v4, next_hop_v6 = own_next_hops(local_address, negotiated)
    peer.policy = PeerPolicy(
        local_asn=local_asn,
        ebgp=ebgp,
        next_hop_v4=next_hop_v4,
        next_hop_v6=next_hop_v6,
        rr_client=peer.spec.rr_client,
        cluster_id=config.cluster_id,
        keep_next_hop=peer.spec.keep_next_hop,
        filters=filters,
        next_hop_self=peer.spec.next_hop_self,
        link_local=own_link_local(local_address),
    )


def end_limit_hold(peer: Peer) -> None:
    """The session held down by its prefix limit starts again."""
    if peer.prefix_limit is None:
        return
    log.info("peer=%s event=max-prefixes-restart", peer.spec.address)
    peer.prefix_limit.reached = ""
    peer.session.start()


def cancel_limit_timer(peer: Peer) -> None:
    """No restart of a session held down by its prefix limit (the session goes or restarts)."""
    if peer.limit_timer is not None:
        peer.limit_timer.cancel()
        peer.limit_timer = None


def release_limit_hold(peer: Peer) -> bool:
    """An operator acts: a session held down by its prefix limit starts again now, not after
    ``restart_after``. Whether it was held."""
    if peer.prefix_limit is None or not peer.prefix_limit.reached:
        return False
    cancel_limit_timer(peer)
    end_limit_hold(peer)
    return True
