"""What the speaker is configured with: itself (``SpeakerConfig``), a configured peer
(``PeerSpec``) and a range of dynamic neighbours (``PeerRange``), built from the bgpd YAML or
from the cluster topology."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgpd.bfd.peering import BfdSettings
from bgpd.bgpfilter import BGPFilter
from bgpd.prefix_limit import MaxPrefixes


@dataclass(frozen=True, slots=True)
class SpeakerConfig:
    asn: int
    router_id: str
    graceful_restart: bool = True
    restart_time: int = 120
    cluster_id: str | None = None
    connect_retry_time: float = 5.0
    ebgp_requires_policy: bool = False  # RFC 8212 on every eBGP session
    long_lived_stale_time: int = 3600  # RFC 9494 (Calico Enterprise's default); 0: no LLGR


@dataclass(frozen=True, slots=True)
class PeerSpec:
    """A configured peer, as the speaker needs it (built from YAML or from the topology)."""

    address: str
    asn: int
    port: int = 179
    passive: bool = False
    password: str | None = None
    hold_time: int = 90
    keepalive_time: int | None = None
    source_address: str | None = None
    description: str = ""
    peer_type: str = "global"
    rr_client: bool = False
    keep_next_hop: bool = False  # pass the original next hop on (Calico nextHopMode: Keep)
    next_hop_self: bool = False  # our address as next hop, reflected paths too (nextHopMode: Self)
    local_asn: int | None = None  # the AS we present on this session (Calico localASNumber)
    restart_time: int | None = None  # the Restart Time we advertise to this peer (RFC 4724)
    ttl_security: int = 0  # RFC 5082 GTSM: the peer is at most this many hops away; 0 = off
    filters: tuple[BGPFilter, ...] = ()  # BGPFilters in order (bgpd.policy_filters)
    owned_only: bool = False  # export only the speaker's owned prefixes unless a filter accepts
    max_prefixes: MaxPrefixes | None = None  # RFC 4486: Cease past this many per family
    bfd: BfdSettings | None = None  # RFC 5882: a BFD session brings this session down at once
    long_lived_stale_time: int | None = None  # RFC 9494 LLST we advertise; None: the speaker's
    # RFC 8950: offer IPv4 routes with an IPv6 next hop (used over IPv6 sessions)
    extended_next_hop: bool = False
    # Unnumbered: the link the peer is on; ``address`` is its link-local address there
    # (``fe80::1%eth0``), learned by :mod:`bgpd.unnumbered`
    interface: str | None = None


@dataclass(frozen=True, slots=True)
class PeerRange:
    """Dynamic neighbours: accept any peer connecting from ``prefix`` (we stay passive)."""

    prefix: str
    asn: int
    rr_client: bool = False
    password: str | None = None
    hold_time: int = 90
    bfd: BfdSettings | None = None

    def contains(self, address: str) -> bool:
        return ipaddress.ip_address(address) in ipaddress.ip_network(self.prefix)

    def spec_for(self, address: str) -> PeerSpec:
        """The peer for a connection from ``address`` (inside the range): passive, like all
        dynamic neighbours."""
        return PeerSpec(
            address=address, asn=self.asn, passive=True, password=self.password,
            hold_time=self.hold_time, rr_client=self.rr_client, bfd=self.bfd,
            peer_type="rr-client" if self.rr_client else "dynamic",
            description=f"from peer range {self.prefix}",
        )  # fmt: skip
