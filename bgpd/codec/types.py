"""Typed, immutable BGP messages, path attributes and capabilities (the codec's data model).

Pure data: no parsing here (see ``bgpd.codec.attributes``/``messages``). Addresses are text
(``"192.0.2.1"``); a prefix (NLRI entry) is kept in its wire form, ``bytes([length]) + the
significant address octets`` (RFC 4271 §4.3), because that is the cheapest hashable key to
build from a received UPDATE and to encode again. ``prefix_to_str``/``prefix_from_str`` convert.
When ADD-PATH receive (RFC 7911) is negotiated for a family, each entry is the 4-octet path
identifier followed by the wire prefix.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from enum import IntEnum


class Afi(IntEnum):
    IPV4 = 1
    IPV6 = 2


class Safi(IntEnum):
    UNICAST = 1


IPV4_UNICAST = (Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST = (Afi.IPV6, Safi.UNICAST)


class MessageType(IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5

    @property
    def label(self) -> str:
        """The name in logs, statistics and metrics: ``open`` ... ``route-refresh``."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def label_of(cls, code: int) -> str:
        """The label of a header's type code; ``other`` for a code RFC 4271 does not define."""
        try:
            return cls(code).label
        except ValueError:
            return "other"


class Origin(IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


class AttrType(IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    EXTENDED_COMMUNITIES = 16
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITY = 32


AS_TRANS = 23456

# An AS path: a tuple of segments, each (SegmentType value, tuple of AS numbers).
AsPathSegment = tuple[int, tuple[int, ...]]
AsPath = tuple[AsPathSegment, ...]


@dataclass(frozen=True, slots=True)
class Aggregator:
    asn: int
    address: str


@dataclass(frozen=True, slots=True)
class UnknownAttribute:
    """An attribute we do not implement; optional transitive ones are passed on with PARTIAL set."""

    flags: int
    type_code: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PathAttributes:
    """The attributes of a path, without MP_REACH/MP_UNREACH (those travel in ``Update``).

    Instances are interned by the decoder, so equal attribute sets are usually the same object.
    AS numbers are always the real (4-octet) values: AS4_PATH/AS4_AGGREGATOR from 2-octet peers
    are merged on decode (RFC 6793 §4.2.3) and produced again on encode.
    """

    origin: Origin = Origin.IGP
    as_path: AsPath = ()
    next_hop: str | None = None
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: Aggregator | None = None
    communities: tuple[int, ...] = ()
    originator_id: str | None = None
    cluster_list: tuple[str, ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    extended_communities: tuple[int, ...] = ()  # 8-octet values (RFC 4360)
    unknown: tuple[UnknownAttribute, ...] = ()


@dataclass(frozen=True, slots=True)
class MpReach:
    afi: int
    safi: int
    next_hop: tuple[str, ...]  # one address, or (global, link-local) for IPv6
    nlri: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MpUnreach:
    afi: int
    safi: int
    withdrawn: tuple[bytes, ...]


# --- capabilities (RFC 5492) -------------------------------------------------------------


class CapabilityCode(IntEnum):
    MULTIPROTOCOL = 1
    ROUTE_REFRESH = 2
    EXTENDED_NEXT_HOP = 5  # RFC 8950
    EXTENDED_MESSAGE = 6
    GRACEFUL_RESTART = 64
    FOUR_OCTET_AS = 65
    ADD_PATH = 69
    ENHANCED_ROUTE_REFRESH = 70
    LONG_LIVED_GRACEFUL_RESTART = 71  # RFC 9494


@dataclass(frozen=True, slots=True)
class Multiprotocol:
    afi: int
    safi: int


@dataclass(frozen=True, slots=True)
class RouteRefreshCap:
    pass


@dataclass(frozen=True, slots=True)
class ExtendedMessage:
    pass


@dataclass(frozen=True, slots=True)
class FourOctetAs:
    asn: int


@dataclass(frozen=True, slots=True)
class GracefulRestart:
    """RFC 4724 §3: restart flags (R bit = 0x8, N bit = 0x4), time, and per-family F bit."""

    restart_flags: int
    restart_time: int
    families: tuple[tuple[int, int, int], ...] = ()  # (afi, safi, flags; 0x80 = forwarding kept)


@dataclass(frozen=True, slots=True)
class LongLivedGracefulRestart:
    """RFC 9494 §3: per family (afi, safi, flags; 0x80 = forwarding kept, stale time in s)."""

    families: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class AddPath:
    """RFC 7911 §4: per family, 1 = receive, 2 = send, 3 = both."""

    families: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True)
class ExtendedNextHop:
    """RFC 8950 §3: NLRI of (afi, safi) may carry a next hop of ``next_hop_afi``."""

    families: tuple[tuple[int, int, int], ...]  # (NLRI AFI, NLRI SAFI, next hop AFI)


@dataclass(frozen=True, slots=True)
class UnknownCapability:
    code: int
    value: bytes


Capability = (
    Multiprotocol
    | RouteRefreshCap
    | ExtendedMessage
    | FourOctetAs
    | GracefulRestart
    | LongLivedGracefulRestart
    | AddPath
    | ExtendedNextHop
    | UnknownCapability
)


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    asn: int  # the real AS; the 2-octet "My AS" field carries AS_TRANS when asn > 65535
    hold_time: int
    router_id: str
    capabilities: tuple[Capability, ...] = ()
    version: int = 4


@dataclass(frozen=True, slots=True)
class Update:
    """One UPDATE. IPv4 unicast rides in ``withdrawn``/``nlri``; other families in MP attributes.

    ``errors`` holds the RFC 7606 problems found on decode that did not reset the session: after
    treat-as-withdraw, every announced prefix has been moved into ``withdrawn`` (or the MP
    withdrawn list) and ``attributes`` is None; after attribute discard, the attribute is gone.
    """

    withdrawn: tuple[bytes, ...] = ()
    attributes: PathAttributes | None = None
    nlri: tuple[bytes, ...] = ()
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    errors: tuple[object, ...] = field(default=(), compare=False)

    def is_end_of_rib(self) -> tuple[int, int] | None:
        """The family this UPDATE marks End-of-RIB for (RFC 4724 §2), else None."""
        if self.withdrawn or self.nlri or self.mp_reach is not None:
            return None
        if self.mp_unreach is not None:
            if self.mp_unreach.withdrawn or self.attributes not in (None, PathAttributes()):
                return None
            return (self.mp_unreach.afi, self.mp_unreach.safi)
        if self.attributes is None and not self.errors:
            # An empty UPDATE; one left empty by RFC 7606 treat-as-withdraw is not a marker.
            return IPV4_UNICAST
        return None


@dataclass(frozen=True, slots=True)
class Notification:
    code: int
    subcode: int = 0
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class Keepalive:
    pass


@dataclass(frozen=True, slots=True)
class RouteRefresh:
    afi: int
    safi: int
    subtype: int = 0  # RFC 7313: 0 normal, 1 BoRR, 2 EoRR


Message = Open | Update | Notification | Keepalive | RouteRefresh

_MESSAGE_TYPES: dict[type, MessageType] = {
    Open: MessageType.OPEN,
    Update: MessageType.UPDATE,
    Notification: MessageType.NOTIFICATION,
    Keepalive: MessageType.KEEPALIVE,
    RouteRefresh: MessageType.ROUTE_REFRESH,
}


def message_type(message: Message) -> MessageType:
    """The header type code of a decoded message."""
    return _MESSAGE_TYPES[type(message)]


# --- prefixes ----------------------------------------------------------------------------


def prefix_from_str(text: str) -> tuple[int, bytes]:
    """``"10.244.1.0/24"`` → ``(Afi.IPV4, b"\\x18\\x0a\\xf4\\x01")``. Host bits must be zero."""
    net = ipaddress.ip_network(text, strict=True)
    octets = (net.prefixlen + 7) // 8
    afi = Afi.IPV4 if net.version == 4 else Afi.IPV6
    return afi, bytes([net.prefixlen]) + net.network_address.packed[:octets]


def prefix_to_str(afi: int, wire: bytes) -> str:
    """Inverse of :func:`prefix_from_str` (without a path identifier)."""
    length = wire[0]
    size = 4 if afi == Afi.IPV4 else 16
    raw = wire[1:].ljust(size, b"\0")
    family = socket.AF_INET if afi == Afi.IPV4 else socket.AF_INET6
    return f"{socket.inet_ntop(family, raw)}/{length}"
