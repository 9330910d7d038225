"""The BFD Control packet (RFC 5880 §4.1): bytes in, a typed :class:`ControlPacket` out, and back.

Pure: no I/O, no asyncio. :func:`decode` applies the reception checks of RFC 5880 §6.8.6 that
need no session (version, length, detect multiplier, multipoint, discriminators) and raises
:class:`PacketError` naming the rule broken, so the caller discards the packet. Authentication
(the A bit, §4.2-4.4) is not supported: a packet carrying it is refused with
``Rule.AUTHENTICATION_UNSUPPORTED`` — §6.8.6 says to discard it when no authentication is in use.

Intervals are in microseconds, as on the wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum

VERSION = 1
HEADER_SIZE = 24  # mandatory section, no authentication
AUTH_MIN_SIZE = 2  # Auth Type + Auth Len
MAX_U32 = 0xFFFFFFFF

_HEADER = struct.Struct("!BBBBIIIII")

_POLL = 0x20
_FINAL = 0x10
_CONTROL_PLANE_INDEPENDENT = 0x08
_AUTH_PRESENT = 0x04
_DEMAND = 0x02
_MULTIPOINT = 0x01


class Diag(IntEnum):
    """Diagnostic codes (RFC 5880 §4.1); 9-31 are reserved and decode as ``RESERVED_<n>``."""

    NO_DIAGNOSTIC = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8

    @classmethod
    def _missing_(cls, value: object) -> Diag | None:
        # A reserved code is not an error (the field is 5 bits, the sender may be newer than
        # us); keep it typed as a pseudo-member instead of failing the whole packet.
        if isinstance(value, int) and 0 <= value <= 31:
            member = int.__new__(cls, value)
            member._name_ = f"RESERVED_{value}"
            member._value_ = value
            return member
        return None


class State(IntEnum):
    """Session states (RFC 5880 §4.1, §6.2)."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Rule(Enum):
    """The RFC 5880 §6.8.6 reception rule (or encoding limit) a packet breaks."""

    TRUNCATED = "shorter than the mandatory section"
    VERSION = "version is not 1"
    LENGTH_TOO_SHORT = "length field below the minimum"
    LENGTH_EXCEEDS_PAYLOAD = "length field exceeds the payload"
    DETECT_MULT_ZERO = "detect multiplier is zero"
    MULTIPOINT = "multipoint bit is set"
    MY_DISCRIMINATOR_ZERO = "my discriminator is zero"
    YOUR_DISCRIMINATOR_ZERO = "your discriminator is zero outside Down/AdminDown"
    AUTHENTICATION_UNSUPPORTED = "authentication present, not supported"


class PacketError(ValueError):
    """A BFD Control packet that must be discarded; ``rule`` says why."""

    def __init__(self, rule: Rule, detail: str = "") -> None:
        self.rule = rule
        self.detail = detail
        super().__init__(f"{rule.value}{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class ControlPacket:
    """One BFD Control packet, mandatory section only (RFC 5880 §4.1)."""

    state: State
    my_discriminator: int
    your_discriminator: int = 0
    diag: Diag = Diag.NO_DIAGNOSTIC
    detect_mult: int = 3
    desired_min_tx_us: int = 1_000_000
    required_min_rx_us: int = 1_000_000
    required_min_echo_rx_us: int = 0
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False
    multipoint: bool = False
    version: int = VERSION


def encode(packet: ControlPacket) -> bytes:
    """The wire form of ``packet`` (24 bytes); ValueError when a field does not fit its width."""
    if not 0 <= packet.version <= 7:
        raise ValueError(f"version {packet.version} does not fit 3 bits")
    if not 1 <= packet.detect_mult <= 255:
        raise ValueError(f"detect multiplier {packet.detect_mult} outside 1..255")
    for name in (
        "my_discriminator",
        "your_discriminator",
        "desired_min_tx_us",
        "required_min_rx_us",
        "required_min_echo_rx_us",
    ):
        value = getattr(packet, name)
        if not 0 <= value <= MAX_U32:
            raise ValueError(f"{name} {value} does not fit 32 bits")
    flags = (
        (_POLL if packet.poll else 0)
        | (_FINAL if packet.final else 0)
        | (_CONTROL_PLANE_INDEPENDENT if packet.control_plane_independent else 0)
        | (_DEMAND if packet.demand else 0)
        | (_MULTIPOINT if packet.multipoint else 0)
    )
    return _HEADER.pack(
        (packet.version << 5) | int(packet.diag),
        (int(packet.state) << 6) | flags,
        packet.detect_mult,
        HEADER_SIZE,
        packet.my_discriminator,
        packet.your_discriminator,
        packet.desired_min_tx_us,
        packet.required_min_rx_us,
        packet.required_min_echo_rx_us,
    )


def decode(data: bytes) -> ControlPacket:
    """Decode and check one UDP payload; raises :class:`PacketError` if it must be discarded."""
    if len(data) < HEADER_SIZE:
        raise PacketError(Rule.TRUNCATED, f"{len(data)} bytes")
    (vers_diag, sta_flags, detect_mult, length, my_disc, your_disc, min_tx, min_rx, min_echo) = (
        _HEADER.unpack_from(data)
    )
    version = vers_diag >> 5
    if version != VERSION:
        raise PacketError(Rule.VERSION, f"version {version}")
    auth = bool(sta_flags & _AUTH_PRESENT)
    minimum = HEADER_SIZE + (AUTH_MIN_SIZE if auth else 0)
    if length < minimum:
        raise PacketError(Rule.LENGTH_TOO_SHORT, f"length {length} < {minimum}")
    if length > len(data):
        raise PacketError(Rule.LENGTH_EXCEEDS_PAYLOAD, f"length {length} > {len(data)} bytes")
    if detect_mult == 0:
        raise PacketError(Rule.DETECT_MULT_ZERO)
    if sta_flags & _MULTIPOINT:
        raise PacketError(Rule.MULTIPOINT)
    if my_disc == 0:
        raise PacketError(Rule.MY_DISCRIMINATOR_ZERO)
    state = State(sta_flags >> 6)
    if your_disc == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise PacketError(Rule.YOUR_DISCRIMINATOR_ZERO, f"state {state.name}")
    if auth:
        raise PacketError(Rule.AUTHENTICATION_UNSUPPORTED)
    return ControlPacket(
        state=state,
        my_discriminator=my_disc,
        your_discriminator=your_disc,
        diag=Diag(vers_diag & 0x1F),
        detect_mult=detect_mult,
        desired_min_tx_us=min_tx,
        required_min_rx_us=min_rx,
        required_min_echo_rx_us=min_echo,
        poll=bool(sta_flags & _POLL),
        final=bool(sta_flags & _FINAL),
        control_plane_independent=bool(sta_flags & _CONTROL_PLANE_INDEPENDENT),
        demand=bool(sta_flags & _DEMAND),
        multipoint=False,
        version=version,
    )
