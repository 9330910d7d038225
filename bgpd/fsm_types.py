"""The vocabulary of the sans-IO BGP finite state machine: states, configuration, events, actions.

RFC 4271 §8.1 defines the events and §8.2.2 the states; this module holds only the data that
crosses the boundary between the FSM (``bgpd.fsm``) and the asyncio driver that executes it
(``bgpd.session``). Everything is a frozen dataclass so events and actions can be compared in
tests and logged as they are.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from bgpd.codec.errors import BGPError, CeaseSubcode
from bgpd.codec.types import Capability, GracefulRestart, Message, Notification


class State(StrEnum):
    """RFC 4271 §8.2.2 session states; the values are what the REST API shows."""

    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


def _check_router_id(name: str, value: str) -> None:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a dotted-quad IPv4 address") from None


@dataclass(frozen=True, slots=True)
class FsmConfig:
    """One peer's session parameters (times in seconds)."""

    local_asn: int
    local_router_id: str
    peer_asn: int
    hold_time: int = 90  # proposed in our OPEN; 0 means no keepalives and no hold timer
    keepalive_time: int | None = None  # None: a third of the negotiated hold time
    connect_retry_time: float = 5.0
    passive: bool = False  # never initiate a connection; wait for the peer
    capabilities: tuple[Capability, ...] = ()  # what we put in our OPEN
    idle_hold_time: float = 1.0  # first backoff after an error; doubles per consecutive error
    max_idle_hold_time: float = 60.0
    error_forget_time: float = 300.0  # errors older than this no longer count for backoff
    peer_router_id: str | None = None  # known out of band: lets §6.8 resolve collisions earlier

    def __post_init__(self) -> None:
        # Invalid values here would make timers fire in a loop or negotiation produce
        # values the RFC forbids, so they are refused at construction.
        for name, asn in (("local_asn", self.local_asn), ("peer_asn", self.peer_asn)):
            if not 1 <= asn <= 0xFFFFFFFF:
                raise ValueError(f"{name} {asn} is out of range 1..4294967295")
        _check_router_id("local_router_id", self.local_router_id)
        if self.peer_router_id is not None:
            _check_router_id("peer_router_id", self.peer_router_id)
        if self.hold_time != 0 and not 3 <= self.hold_time <= 65535:
            raise ValueError(f"hold_time {self.hold_time} must be 0 or 3..65535 (RFC 4271 §4.2)")
        if self.keepalive_time is not None and self.keepalive_time < 1:
            raise ValueError(f"keepalive_time {self.keepalive_time} must be at least 1")
        if self.connect_retry_time <= 0:
            raise ValueError(f"connect_retry_time {self.connect_retry_time} must be positive")
        if self.idle_hold_time < 0 or self.max_idle_hold_time < self.idle_hold_time:
            raise ValueError("idle_hold_time must be >= 0 and <= max_idle_hold_time")
        if self.error_forget_time < 0:
            raise ValueError(f"error_forget_time {self.error_forget_time} must be >= 0")


@dataclass(frozen=True, slots=True)
class Negotiated:
    """What both OPENs agreed on; fixed for the life of one Established session."""

    peer_asn: int
    peer_router_id: str
    hold_time: int
    keepalive_time: int
    four_octet_as: bool
    extended_message: bool
    route_refresh: bool
    families: tuple[tuple[int, int], ...]  # intersection of MP caps; IPv4 unicast if none sent
    graceful_restart: GracefulRestart | None  # the peer's GR capability, if any
    add_path_receive: frozenset[tuple[int, int]]  # we advertised receive and the peer send
    add_path_send: frozenset[tuple[int, int]]  # we advertised send and the peer receive
    peer_capabilities: tuple[Capability, ...]
    notification_gr: bool = False  # both sides set the N bit (RFC 8538)
    # RFC 9494: (afi, long-lived stale time) for the families both sides advertised LLGR for
    long_lived_stale_families: tuple[tuple[int, int], ...] = ()
    # RFC 8950: (NLRI AFI, SAFI, next hop AFI) both sides advertised Extended Next Hop for
    extended_next_hop: frozenset[tuple[int, int, int]] = frozenset()


# --- events (RFC 4271 §8.1, reduced to what a driver can observe) ----------------------------


@dataclass(frozen=True, slots=True)
class ManualStart:
    pass


@dataclass(frozen=True, slots=True)
class ManualStop:
    subcode: int = CeaseSubcode.ADMINISTRATIVE_SHUTDOWN
    reason: str = ""  # sent as the RFC 9003 shutdown communication for subcodes 2 and 4
    # False: close without a NOTIFICATION, which a graceful-restart peer (RFC 4724) takes for
    # our restart and so keeps our routes.
    notify: bool = True
    data: bytes = b""  # the NOTIFICATION's data for other subcodes (RFC 4486 §4 for subcode 1)


@dataclass(frozen=True, slots=True)
class BfdDown:
    """BFD saw the path to the peer fail (RFC 5882 §4.3): end an Established session at once.

    Our BFD shares fate with the control plane (C bit 0), so the session ends with Cease/BFD
    Down (RFC 9384) and its routes are not kept for graceful restart.
    """

    reason: str = "BFD session down"


@dataclass(frozen=True, slots=True)
class TcpConnected:
    """Our outbound connection succeeded; ``conn`` is the driver's id for it."""

    conn: int


@dataclass(frozen=True, slots=True)
class TcpAccepted:
    """An inbound connection from this peer's address was accepted."""

    conn: int


@dataclass(frozen=True, slots=True)
class TcpFailed:
    """An outbound connect failed (``conn`` then is new to the FSM), or a connection closed."""

    conn: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    conn: int
    message: Message


@dataclass(frozen=True, slots=True)
class DecodeFailed:
    """The codec raised; the FSM answers with the error's NOTIFICATION and resets."""

    conn: int
    error: BGPError


Event = (
    ManualStart
    | ManualStop
    | TcpConnected
    | TcpAccepted
    | TcpFailed
    | MessageReceived
    | DecodeFailed
    | BfdDown
)


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connect:
    """Open an outbound connection, then feed TcpConnected or TcpFailed.

    The FSM may ask again (connect-retry timer) while an earlier attempt is still pending; a
    driver should then let the older attempt go. A late TcpConnected that the FSM no longer
    wants is answered with Close.
    """


@dataclass(frozen=True, slots=True)
class Send:
    conn: int
    message: Message


@dataclass(frozen=True, slots=True)
class Close:
    """Flush pending writes (a NOTIFICATION just sent, typically) and close the connection."""

    conn: int


@dataclass(frozen=True, slots=True)
class SessionUp:
    conn: int
    negotiated: Negotiated


@dataclass(frozen=True, slots=True)
class SessionDown:
    """The Established session ended; emitted exactly once after each SessionUp."""

    reason: str
    sent: Notification | None
    received: Notification | None


@dataclass(frozen=True, slots=True)
class Deliver:
    """An UPDATE or ROUTE-REFRESH received in Established, for the RIB owner."""

    message: Message


Action = Connect | Send | Close | SessionUp | SessionDown | Deliver
