"""Import and export rules between a peer and the RIBs (RFC 4271 §5, §9.1.1, §9.1.3).

Pure functions: whether a received path is eligible, how it is normalised on import, whether a
best path may be advertised to a peer, and the attributes it carries there. Route reflection
(RFC 4456) hooks in here too, through ``PeerPolicy.cluster_id`` and ``rr_client``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from bgpd.codec.types import AsPath, Origin, PathAttributes, SegmentType
from bgpd.decision import DEFAULT_LOCAL_PREF, PathSource
from bgpd.nexthop import exportable
from bgpd.policy_filters import NO_FILTERS, SessionFilters


@dataclass(frozen=True, slots=True)
class PeerPolicy:
    """What export needs to know about the receiving session; equal policies share results."""

    local_asn: int
    ebgp: bool
    next_hop_v4: str | None  # our address on the session (next-hop-self), if we have one
    next_hop_v6: str | None
    rr_client: bool = False
    cluster_id: str | None = None  # set when this speaker reflects routes
    keep_next_hop: bool = False  # eBGP: keep a learned path's next hop instead of our own
    filters: SessionFilters = NO_FILTERS  # BGPFilters and defaults (bgpd.policy_filters)
    next_hop_self: bool = False  # also for reflected paths (Calico nextHopMode: Self)
    link_local: str | None = None  # ours on the link of a global IPv6 session (RFC 2545 §3)


def import_path(
    attrs: PathAttributes,
    *,
    local_asn: int,
    router_id: str,
    ebgp: bool,
    cluster_id: str | None = None,
) -> PathAttributes | None:
    """Normalise a received path for the Adj-RIB-In, or None when it must be ignored.

    - eBGP: a path that already holds our AS is a loop (§9.1.2); LOCAL_PREF is ours to set.
    - iBGP: a missing LOCAL_PREF gets the default. RFC 4456 §8: drop our own ORIGINATOR_ID or a
      CLUSTER_LIST holding our cluster ID.
    """
    if ebgp:
        for _seg_type, asns in attrs.as_path:
            if local_asn in asns:
                return None
        if attrs.local_pref != DEFAULT_LOCAL_PREF:
            attrs = dataclasses.replace(attrs, local_pref=DEFAULT_LOCAL_PREF)
        return attrs
    if attrs.originator_id == router_id:
        return None
    if cluster_id is not None and cluster_id in attrs.cluster_list:
        return None
    if attrs.local_pref is None:
        attrs = dataclasses.replace(attrs, local_pref=DEFAULT_LOCAL_PREF)
    return attrs


def may_advertise(source: PathSource, to_peer: str | None, policy: PeerPolicy) -> bool:
    """May a best path from ``source`` go to the peer at ``to_peer`` (None: any peer with
    this policy; the caller then keeps the path from going back to its source)?

    Never back to the peer it came from. Locally originated and eBGP-learned paths go to every
    peer. An iBGP-learned path goes to eBGP peers; to iBGP peers only through reflection
    (RFC 4456 §6): client paths to everyone, non-client paths to clients only.
    """
    if to_peer is not None and source.peer == to_peer:
        return False
    if source.local or source.ebgp or policy.ebgp:
        return True
    if policy.cluster_id is None:
        return False  # iBGP split horizon (RFC 4271 §9.2)
    return source.rr_client or policy.rr_client


def export_attributes(
    attrs: PathAttributes,
    source: PathSource,
    policy: PeerPolicy,
    router_id: str,
    ipv6: bool,
) -> PathAttributes | None:
    """The attributes a path carries to a peer, or None when no usable next hop exists.

    For IPv6 paths (and IPv4 paths with an IPv6 next hop, RFC 8950) ``next_hop`` holds the
    MP_REACH next hop (the encoder puts it there).
    """
    out = _session_attributes(attrs, source, policy, router_id, ipv6)
    if out is None:
        return None
    own = policy.next_hop_v6 if ipv6 else policy.next_hop_v4
    next_hop = exportable(out.next_hop, own, ipv6)
    if next_hop is None:
        return None
    return out if next_hop == out.next_hop else dataclasses.replace(out, next_hop=next_hop)


def _session_attributes(
    attrs: PathAttributes,
    source: PathSource,
    policy: PeerPolicy,
    router_id: str,
    ipv6: bool,
) -> PathAttributes | None:
    own_next_hop = policy.next_hop_v6 if ipv6 else policy.next_hop_v4
    if policy.ebgp:
        if policy.keep_next_hop and not source.local and attrs.next_hop:
            own_next_hop = attrs.next_hop  # the owning node stays the next hop
        if own_next_hop is None:
            return None
        as_path = _prepend(attrs.as_path, policy.local_asn)
        return dataclasses.replace(
            attrs,
            as_path=as_path,
            next_hop=own_next_hop,
            local_pref=None,
            # A MED we received from another AS is not passed on (RFC 4271 §5.1.4).
            med=attrs.med if source.local else None,
            originator_id=None,
            cluster_list=(),
        )
    if source.local or source.ebgp:
        # iBGP: next-hop-self for our own routes and for routes learned over eBGP (unless the
        # peer asked to keep the original next hop, nextHopMode: Keep).
        if policy.keep_next_hop and not source.local and attrs.next_hop:
            own_next_hop = attrs.next_hop
        if own_next_hop is None:
            return None
        return dataclasses.replace(
            attrs,
            next_hop=own_next_hop,
            local_pref=attrs.local_pref if attrs.local_pref is not None else DEFAULT_LOCAL_PREF,
        )
    # Reflection (RFC 4456 §8): next hop unchanged (nextHopMode Self: ours), stamp
    # ORIGINATOR_ID and CLUSTER_LIST.
    assert policy.cluster_id is not None
    originator = attrs.originator_id or _int_to_ip(source.router_id)
    next_hop = attrs.next_hop
    if policy.next_hop_self:
        if own_next_hop is None:
            return None
        next_hop = own_next_hop
    return dataclasses.replace(
        attrs,
        next_hop=next_hop,
        originator_id=originator,
        cluster_list=(policy.cluster_id, *attrs.cluster_list),
    )


def local_path(origin: Origin = Origin.IGP) -> PathAttributes:
    """Attributes of a prefix this speaker originates."""
    return PathAttributes(origin=origin, as_path=(), local_pref=DEFAULT_LOCAL_PREF)


def _prepend(as_path: AsPath, asn: int) -> AsPath:
    if as_path and as_path[0][0] == SegmentType.AS_SEQUENCE and len(as_path[0][1]) < 255:
        return ((SegmentType.AS_SEQUENCE, (asn, *as_path[0][1])), *as_path[1:])
    return ((SegmentType.AS_SEQUENCE, (asn,)), *as_path)


def _int_to_ip(value: int) -> str:
    return ".".join(str((value >> s) & 0xFF) for s in (24, 16, 8, 0))
