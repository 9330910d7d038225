"""OPEN handling for the FSM: build ours, validate the peer's, negotiate, resolve collisions.

Implements RFC 4271 §6.2 (OPEN message error handling) and §4.2 (hold time), RFC 6793 (four-octet
AS numbers, AS_TRANS), RFC 6286 (BGP identifier rules, and the AS number tie-break in collision
resolution), RFC 4760/5492 (multiprotocol and capability negotiation), RFC 7911 (ADD-PATH
directions), RFC 4271 §6.8 (which connection of a collision survives), plus the words used for
NOTIFICATIONs in ``last_error`` and the RFC 9003 shutdown communication.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgpd import gr
from bgpd.codec.errors import CeaseSubcode, ErrorCode, OpenSubcode
from bgpd.codec.types import (
    AS_TRANS,
    IPV4_UNICAST,
    AddPath,
    Capability,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    LongLivedGracefulRestart,
    Multiprotocol,
    Notification,
    Open,
    RouteRefreshCap,
)
from bgpd.fsm_types import FsmConfig, Negotiated

BGP_VERSION = 4

# RFC 7911 §4 "Send/Receive" field.
_ADD_PATH_RECEIVE = 1
_ADD_PATH_SEND = 2

# RFC 9003 §2: the shutdown communication is at most 255 octets of UTF-8.
_MAX_SHUTDOWN_COMMUNICATION = 255


@dataclass(frozen=True, slots=True)
class OpenRejected:
    """Why a received OPEN is refused: the NOTIFICATION to send and the words for ``last_error``."""

    notification: Notification
    reason: str


def local_open(config: FsmConfig) -> Open:
    return Open(
        asn=config.local_asn,
        hold_time=config.hold_time,
        router_id=config.local_router_id,
        capabilities=config.capabilities,
    )


def peer_asn(peer_open: Open) -> int:
    """The peer's real AS: the FourOctetAs capability wins over the 2-octet field (RFC 6793 §3)."""
    for cap in peer_open.capabilities:
        if isinstance(cap, FourOctetAs):
            return cap.asn
    return peer_open.asn


def _router_id_value(text: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(text))
    except ValueError:
        return None


def check_open(config: FsmConfig, peer_open: Open) -> OpenRejected | None:
    """RFC 4271 §6.2 checks, in the RFC's order; None when the OPEN is acceptable."""
    if peer_open.version != BGP_VERSION:
        # The data is the largest version we support, as two octets.
        return OpenRejected(
            Notification(
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.UNSUPPORTED_VERSION,
                BGP_VERSION.to_bytes(2, "big"),
            ),
            f"Unsupported BGP version {peer_open.version}",
        )
    asn = peer_asn(peer_open)
    if asn != config.peer_asn:
        shown = f"{asn} (AS_TRANS)" if asn == AS_TRANS else str(asn)
        return OpenRejected(
            Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_PEER_AS),
            f"Bad peer AS {shown} (expected {config.peer_asn})",
        )
    if peer_open.hold_time in (1, 2):
        return OpenRejected(
            Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.UNACCEPTABLE_HOLD_TIME),
            f"Unacceptable hold time {peer_open.hold_time}",
        )
    router_id = _router_id_value(peer_open.router_id)
    # RFC 6286 §2.2: identical identifiers are only an error inside one AS.
    same_as_ours = asn == config.local_asn and peer_open.router_id == config.local_router_id
    if not router_id or same_as_ours:
        return OpenRejected(
            Notification(ErrorCode.OPEN_MESSAGE, OpenSubcode.BAD_BGP_IDENTIFIER),
            f"Bad BGP identifier {peer_open.router_id}",
        )
    return None


def _families(caps: tuple[Capability, ...]) -> set[tuple[int, int]]:
    found = {(int(c.afi), int(c.safi)) for c in caps if isinstance(c, Multiprotocol)}
    # RFC 4760 §8: a speaker that sends no MP capability does IPv4 unicast only.
    return found or {IPV4_UNICAST}


def _add_path(caps: tuple[Capability, ...], direction: int) -> set[tuple[int, int]]:
    return {
        (int(afi), int(safi))
        for cap in caps
        if isinstance(cap, AddPath)
        for afi, safi, mode in cap.families
        if mode & direction
    }


def _next_hop_families(caps: tuple[Capability, ...]) -> set[tuple[int, int, int]]:
    return {
        (int(afi), int(safi), int(nh_afi))
        for cap in caps
        if isinstance(cap, ExtendedNextHop)
        for afi, safi, nh_afi in cap.families
    }


def _has(caps: tuple[Capability, ...], kind: type) -> bool:
    return any(isinstance(c, kind) for c in caps)


def negotiate(config: FsmConfig, peer_open: Open) -> Negotiated:
    """Combine our configuration with an accepted OPEN (RFC 4271 §4.2, RFC 5492)."""
    ours, theirs = config.capabilities, peer_open.capabilities
    hold = min(config.hold_time, peer_open.hold_time)
    if hold == 0:
        keepalive = 0
    else:
        # A configured keepalive may be shorter than a third of the hold time, never longer.
        wanted = config.keepalive_time if config.keepalive_time is not None else hold // 3
        keepalive = max(1, min(wanted, hold // 3))
    families = _families(ours) & _families(theirs)
    receive = _add_path(ours, _ADD_PATH_RECEIVE) & _add_path(theirs, _ADD_PATH_SEND) & families
    send = _add_path(ours, _ADD_PATH_SEND) & _add_path(theirs, _ADD_PATH_RECEIVE) & families
    graceful = next((c for c in theirs if isinstance(c, GracefulRestart)), None)
    our_graceful = next((c for c in ours if isinstance(c, GracefulRestart)), None)
    llgr = gr.stale_times(
        next((c for c in ours if isinstance(c, LongLivedGracefulRestart)), None),
        next((c for c in theirs if isinstance(c, LongLivedGracefulRestart)), None),
    )
    return Negotiated(
        peer_asn=peer_asn(peer_open),
        peer_router_id=peer_open.router_id,
        hold_time=hold,
        keepalive_time=keepalive,
        four_octet_as=_has(ours, FourOctetAs) and _has(theirs, FourOctetAs),
        extended_message=_has(ours, ExtendedMessage) and _has(theirs, ExtendedMessage),
        route_refresh=_has(ours, RouteRefreshCap) and _has(theirs, RouteRefreshCap),
        families=tuple(sorted(families)),
        graceful_restart=graceful,
        add_path_receive=frozenset(receive),
        add_path_send=frozenset(send),
        peer_capabilities=theirs,
        notification_gr=gr.notification_gr(our_graceful, graceful),
        long_lived_stale_families=tuple(sorted(llgr.items())),
        # RFC 8950 §3: only what both sides advertised may be sent.
        extended_next_hop=frozenset(_next_hop_families(ours) & _next_hop_families(theirs)),
    )


def local_side_wins(config: FsmConfig, peer_open: Open) -> bool:
    """RFC 4271 §6.8: True when the connection we initiated survives a collision.

    Identifiers compare as 32-bit unsigned integers; when they are equal (legal between ASes,
    RFC 6286 §2.3) the side with the larger AS number keeps the connection it initiated.
    """
    local = _router_id_value(config.local_router_id) or 0
    remote = _router_id_value(peer_open.router_id) or 0
    if local != remote:
        return local > remote
    return config.local_asn > peer_asn(peer_open)


# --- words for NOTIFICATIONs ---------------------------------------------------------------

_CODE_NAMES: dict[int, str] = {
    ErrorCode.MESSAGE_HEADER: "Message header error",
    ErrorCode.OPEN_MESSAGE: "OPEN message error",
    ErrorCode.UPDATE_MESSAGE: "UPDATE message error",
    ErrorCode.HOLD_TIMER_EXPIRED: "Hold timer expired",
    ErrorCode.FSM: "FSM error",
    ErrorCode.CEASE: "Cease",
    ErrorCode.ROUTE_REFRESH: "ROUTE-REFRESH message error",
}

_SUBCODE_NAMES: dict[int, dict[int, str]] = {
    ErrorCode.MESSAGE_HEADER: {
        1: "Connection not synchronized",
        2: "Bad message length",
        3: "Bad message type",
    },
    ErrorCode.OPEN_MESSAGE: {
        1: "Unsupported version number",
        2: "Bad peer AS",
        3: "Bad BGP identifier",
        4: "Unsupported optional parameter",
        6: "Unacceptable hold time",
        7: "Unsupported capability",
        11: "Role mismatch",
    },
    ErrorCode.UPDATE_MESSAGE: {
        1: "Malformed attribute list",
        2: "Unrecognized well-known attribute",
        3: "Missing well-known attribute",
        4: "Attribute flags error",
        5: "Attribute length error",
        6: "Invalid ORIGIN attribute",
        8: "Invalid NEXT_HOP attribute",
        9: "Optional attribute error",
        10: "Invalid network field",
        11: "Malformed AS_PATH",
    },
    ErrorCode.FSM: {
        1: "Unexpected message in OpenSent",
        2: "Unexpected message in OpenConfirm",
        3: "Unexpected message in Established",
    },
    ErrorCode.CEASE: {
        1: "Maximum number of prefixes reached",
        2: "Administrative shutdown",
        3: "Peer de-configured",
        4: "Administrative reset",
        5: "Connection rejected",
        6: "Other configuration change",
        7: "Connection collision resolution",
        8: "Out of resources",
        9: "Hard reset",
        10: "BFD down",
    },
    ErrorCode.ROUTE_REFRESH: {1: "Invalid message length"},
}

# RFC 9003: the Cease subcodes that may carry a shutdown communication.
SHUTDOWN_SUBCODES = (CeaseSubcode.ADMINISTRATIVE_SHUTDOWN, CeaseSubcode.ADMINISTRATIVE_RESET)


def describe_notification(notification: Notification) -> str:
    """``Notification(6, 2)`` → ``"Cease/Administrative shutdown"``; unknown numbers stay."""
    code = _CODE_NAMES.get(notification.code, str(notification.code))
    if notification.subcode == 0:
        text = code
    else:
        names = _SUBCODE_NAMES.get(notification.code, {})
        text = f"{code}/{names.get(notification.subcode, str(notification.subcode))}"
    message = shutdown_message(notification)
    return f'{text}: "{message}"' if message else text


def shutdown_data(reason: str) -> bytes:
    """RFC 9003 §2: a length octet and UTF-8 text, cut at 255 octets on a character boundary."""
    raw = reason.encode("utf-8")[:_MAX_SHUTDOWN_COMMUNICATION]
    text = raw.decode("utf-8", errors="ignore").encode("utf-8")
    return bytes([len(text)]) + text if text else b""


def shutdown_message(notification: Notification) -> str:
    """The RFC 9003 shutdown communication carried by a Cease/2 or Cease/4, else ``""``."""
    if notification.code != ErrorCode.CEASE or notification.subcode not in SHUTDOWN_SUBCODES:
        return ""
    data = notification.data
    if not data or data[0] == 0 or data[0] > len(data) - 1:
        return ""
    text = data[1 : 1 + data[0]].decode("utf-8", errors="replace")
    # Printable only: this text ends up in logs and the API.
    return "".join(ch for ch in text if ch.isprintable())
