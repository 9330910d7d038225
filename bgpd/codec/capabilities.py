"""The OPEN message body and its capabilities.

Implements RFC 4271 §4.2 (OPEN), RFC 5492 (capabilities as optional parameter type 2), RFC 9072
(extended optional parameters length, decoded always and encoded only when the capabilities do
not fit in 255 octets), and the capabilities podbgp negotiates: Multiprotocol (RFC 4760 §8),
Route Refresh (RFC 2918), Extended Next Hop (RFC 8950 §3), Extended Message (RFC 8654),
Graceful Restart (RFC 4724 §3), 4-octet AS (RFC 6793) and ADD-PATH (RFC 7911 §4).
Any other capability is kept as ``UnknownCapability``.
Validating AS, hold time and BGP identifier is the FSM's job, not the codec's.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from bgpd.codec.errors import BGPError, ErrorCode, OpenSubcode
from bgpd.codec.reader import Reader
from bgpd.codec.types import (
    AS_TRANS,
    AddPath,
    Capability,
    CapabilityCode,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    LongLivedGracefulRestart,
    Multiprotocol,
    Open,
    RouteRefreshCap,
    UnknownCapability,
)

BGP_VERSION = 4
OPT_PARAM_CAPABILITIES = 2
_EXTENDED_PARAMS = 255  # RFC 9072 §2: Non-Ext OP Len and Non-Ext OP Type both 255

_OPEN_FIXED = struct.Struct(">BHH4s")  # version, My AS, Hold Time, BGP Identifier
_MP = struct.Struct(">HBB")
_FAMILY = struct.Struct(">HBB")  # AFI, SAFI, per-family flags / send-receive
_U16 = struct.Struct(">H")
_LLGR_HEAD = struct.Struct(">HBB")
_U32 = struct.Struct(">I")
_ENH_TUPLE = struct.Struct(">HHH")  # NLRI AFI, NLRI SAFI, Nexthop AFI (RFC 8950 §3)

# RFC 4271 §6.2: a malformed recognized optional parameter is OPEN error subcode 0.
_OPEN = ErrorCode.OPEN_MESSAGE
_UNSPECIFIC = 0


def _bad(name: str, value: bytes) -> BGPError:
    return BGPError(_OPEN, _UNSPECIFIC, reason=f"malformed {name} capability: {value.hex()}")


def _families(name: str, value: bytes) -> tuple[tuple[int, int, int], ...]:
    if len(value) % 4:
        raise _bad(name, value)
    return tuple(_FAMILY.iter_unpack(value))


def _dec_multiprotocol(value: bytes) -> Capability:
    if len(value) != 4:
        raise _bad("Multiprotocol", value)
    afi, _reserved, safi = _MP.unpack(value)
    return Multiprotocol(afi, safi)


def _dec_route_refresh(value: bytes) -> Capability:
    if value:
        raise _bad("Route Refresh", value)
    return RouteRefreshCap()


def _dec_extended_message(value: bytes) -> Capability:
    if value:
        raise _bad("Extended Message", value)
    return ExtendedMessage()


def _dec_graceful_restart(value: bytes) -> Capability:
    if len(value) < 2:
        raise _bad("Graceful Restart", value)
    word = _U16.unpack_from(value, 0)[0]
    # RFC 4724 §3: 4 bits of Restart Flags, then a 12-bit Restart Time in seconds.
    return GracefulRestart(word >> 12, word & 0x0FFF, _families("Graceful Restart", value[2:]))


def _dec_long_lived_graceful_restart(value: bytes) -> Capability:
    # RFC 9494 §3: AFI (2), SAFI (1), Flags (1), Long-lived Stale Time (3) per family.
    if len(value) % 7:
        raise _bad("Long-lived Graceful Restart", value)
    families = []
    for i in range(0, len(value), 7):
        afi, safi, flags = _LLGR_HEAD.unpack_from(value, i)
        families.append((afi, safi, flags, int.from_bytes(value[i + 4 : i + 7], "big")))
    return LongLivedGracefulRestart(tuple(families))


def _dec_four_octet_as(value: bytes) -> Capability:
    if len(value) != 4:
        raise _bad("4-octet AS", value)
    return FourOctetAs(_U32.unpack(value)[0])


def _dec_add_path(value: bytes) -> Capability:
    return AddPath(_families("ADD-PATH", value))


def _dec_extended_next_hop(value: bytes) -> Capability:
    if not value or len(value) % _ENH_TUPLE.size:
        raise _bad("Extended Next Hop", value)
    return ExtendedNextHop(tuple(_ENH_TUPLE.iter_unpack(value)))


# The capability table: code -> decoder. Encoders are matched on the dataclass below.
CAPABILITY_DECODERS: dict[int, Callable[[bytes], Capability]] = {
    CapabilityCode.MULTIPROTOCOL: _dec_multiprotocol,
    CapabilityCode.ROUTE_REFRESH: _dec_route_refresh,
    CapabilityCode.EXTENDED_MESSAGE: _dec_extended_message,
    CapabilityCode.GRACEFUL_RESTART: _dec_graceful_restart,
    CapabilityCode.LONG_LIVED_GRACEFUL_RESTART: _dec_long_lived_graceful_restart,
    CapabilityCode.FOUR_OCTET_AS: _dec_four_octet_as,
    CapabilityCode.ADD_PATH: _dec_add_path,
    CapabilityCode.EXTENDED_NEXT_HOP: _dec_extended_next_hop,
}


def decode_capability(code: int, value: bytes) -> Capability:
    decoder = CAPABILITY_DECODERS.get(code)
    if decoder is None:
        return UnknownCapability(code, value)
    return decoder(value)


def decode_capabilities(reader: Reader) -> list[Capability]:
    """The capabilities packed in one optional parameter of type 2 (RFC 5492 §4)."""
    caps: list[Capability] = []
    while not reader.at_end():
        code = reader.u8()
        caps.append(decode_capability(code, reader.take(reader.u8())))
    return caps


def _capability_value(cap: Capability) -> tuple[int, bytes]:
    if isinstance(cap, Multiprotocol):
        return CapabilityCode.MULTIPROTOCOL, _MP.pack(cap.afi, 0, cap.safi)
    if isinstance(cap, RouteRefreshCap):
        return CapabilityCode.ROUTE_REFRESH, b""
    if isinstance(cap, ExtendedMessage):
        return CapabilityCode.EXTENDED_MESSAGE, b""
    if isinstance(cap, GracefulRestart):
        if not 0 <= cap.restart_flags <= 0xF or not 0 <= cap.restart_time <= 0xFFF:
            raise ValueError(f"graceful restart flags/time out of range: {cap}")
        head = _U16.pack((cap.restart_flags << 12) | cap.restart_time)
        return CapabilityCode.GRACEFUL_RESTART, head + _pack_families(cap.families)
    if isinstance(cap, LongLivedGracefulRestart):
        value = b""
        for afi, safi, flags, stale_time in cap.families:
            if not 0 <= stale_time <= 0xFFFFFF:
                raise ValueError(f"long-lived stale time out of range: {cap}")
            value += _LLGR_HEAD.pack(afi, safi, flags) + stale_time.to_bytes(3, "big")
        return CapabilityCode.LONG_LIVED_GRACEFUL_RESTART, value
    if isinstance(cap, FourOctetAs):
        return CapabilityCode.FOUR_OCTET_AS, _U32.pack(cap.asn)
    if isinstance(cap, AddPath):
        return CapabilityCode.ADD_PATH, _pack_families(cap.families)
    if isinstance(cap, ExtendedNextHop):
        value = b"".join(_ENH_TUPLE.pack(*family) for family in cap.families)
        return CapabilityCode.EXTENDED_NEXT_HOP, value
    return cap.code, cap.value


def _pack_families(families: tuple[tuple[int, int, int], ...]) -> bytes:
    return b"".join(_FAMILY.pack(*family) for family in families)


def encode_capability(cap: Capability) -> bytes:
    code, value = _capability_value(cap)
    if len(value) > 255:
        raise ValueError(f"capability {code} value of {len(value)} octets is too long")
    return bytes((code, len(value))) + value


# --- OPEN ------------------------------------------------------------------------------------


def decode_open(frame: bytes) -> Open:
    """Decode a whole OPEN message (header included, at least 29 octets long)."""
    version, my_as, hold_time, router_id = _OPEN_FIXED.unpack_from(frame, 19)
    if version != BGP_VERSION:
        # RFC 4271 §6.2: data is the version we support, as 2 octets.
        raise BGPError(
            _OPEN,
            OpenSubcode.UNSUPPORTED_VERSION,
            _U16.pack(BGP_VERSION),
            reason=f"unsupported BGP version {version}",
        )
    reader = Reader(frame, _OPEN, _UNSPECIFIC, start=28, what="OPEN optional parameters")
    params_len = reader.u8()
    extended = params_len == _EXTENDED_PARAMS and reader.remaining > 0 and frame[29] == 255
    if extended:
        reader.u8()
        params_len = reader.u16()
    if params_len != reader.remaining:
        raise reader.error(
            f"optional parameters length {params_len}, {reader.remaining} octets follow"
        )
    caps: list[Capability] = []
    while not reader.at_end():
        ptype = reader.u8()
        plen = reader.u16() if extended else reader.u8()
        param = reader.sub(plen)
        if ptype != OPT_PARAM_CAPABILITIES:
            raise BGPError(
                _OPEN,
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER,
                reason=f"unsupported optional parameter type {ptype}",
            )
        caps.extend(decode_capabilities(param))
    # The real AS comes from the 4-octet AS capability when present (RFC 6793).
    asn = next((c.asn for c in caps if isinstance(c, FourOctetAs)), my_as)
    return Open(asn, hold_time, socket.inet_ntoa(router_id), tuple(caps), version)


def encode_open_body(msg: Open) -> bytes:
    """The OPEN body; capabilities go in one optional parameter (RFC 9072 form if > 255)."""
    try:
        router_id = socket.inet_pton(socket.AF_INET, msg.router_id)
    except OSError:
        raise ValueError(f"router id is not an IPv4 address: {msg.router_id!r}") from None
    my_as = msg.asn if msg.asn <= 0xFFFF else AS_TRANS  # RFC 6793: AS_TRANS stands in
    fixed = _OPEN_FIXED.pack(msg.version, my_as, msg.hold_time, router_id)
    caps = b"".join(encode_capability(c) for c in msg.capabilities)
    if not caps:
        return fixed + b"\x00"
    if len(caps) + 2 <= 255:
        return fixed + bytes((len(caps) + 2, OPT_PARAM_CAPABILITIES, len(caps))) + caps
    # RFC 9072 §2: the capabilities need more than the 1-octet lengths can say.
    param = bytes((OPT_PARAM_CAPABILITIES,)) + _U16.pack(len(caps)) + caps
    return fixed + bytes((_EXTENDED_PARAMS, _EXTENDED_PARAMS)) + _U16.pack(len(param)) + param
