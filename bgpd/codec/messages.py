"""BGP messages: framing, decoding and encoding of whole messages.

Implements the message header and the five message types of RFC 4271 §4 (OPEN body in
``capabilities``), ROUTE-REFRESH (RFC 2918, subtypes of RFC 7313), extended messages (RFC 8654),
End-of-RIB (RFC 4724 §2), and the UPDATE-level rules of RFC 7606: which length errors reset the
session (§3, §5.3), what treat-as-withdraw does to the announced prefixes (§2), and that
missing well-known attributes are treat-as-withdraw (§3). Attribute rows live in
``attributes``, prefixes and MP bodies in ``nlri``.

The codec is pure: bytes in, dataclasses out and back. Decoding raises only ``BGPError``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import replace

from bgpd.codec.attributes import (
    MP_CODES,
    OPTIONAL,
    AttrState,
    decode_entries,
    encode_attribute,
    encode_path_attributes,
    finish,
    scan_attributes,
)
from bgpd.codec.capabilities import decode_open, encode_open_body
from bgpd.codec.context import (
    DEFAULT_CONTEXT,
    MAX_MESSAGE_SIZE,
    CodecContext,
)
from bgpd.codec.errors import (
    BGPError,
    ErrorAction,
    ErrorCode,
    HeaderSubcode,
    UpdateSubcode,
)
from bgpd.codec.nlri import (
    encode_mp_reach_value,
    encode_mp_unreach_value,
    encode_next_hop,
    pack_prefixes,
    parse_prefixes,
)
from bgpd.codec.types import (
    IPV4_UNICAST,
    Afi,
    AttrType,
    Keepalive,
    Message,
    MessageType,
    MpReach,
    MpUnreach,
    Notification,
    Open,
    PathAttributes,
    RouteRefresh,
    Safi,
    Update,
)

HEADER_SIZE = 19
MARKER = b"\xff" * 16
_MIN_OPEN = 29
_MIN_UPDATE = 23
_MIN_NOTIFICATION = 21
_ROUTE_REFRESH_SIZE = 23
_CACHE_LIMIT = 50_000

_HEADER = struct.Struct(">16sHB")
_U16 = struct.Struct(">H")
_ROUTE_REFRESH = struct.Struct(">HBB")

_ORIGIN_BIT = 1 << AttrType.ORIGIN
_AS_PATH_BIT = 1 << AttrType.AS_PATH
_NEXT_HOP_BIT = 1 << AttrType.NEXT_HOP
_MANDATORY = _ORIGIN_BIT | _AS_PATH_BIT
_TAW = ErrorAction.TREAT_AS_WITHDRAW


def _length_error(frame: bytes, reason: str) -> BGPError:
    # RFC 4271 §6.1: the data of Bad Message Length is the erroneous Length field.
    return BGPError(
        ErrorCode.MESSAGE_HEADER, HeaderSubcode.BAD_MESSAGE_LENGTH, frame[16:18], reason=reason
    )


class Framer:
    """Accumulates TCP bytes; yields complete messages as bytes (header included)."""

    __slots__ = ("_buffer", "max_message_size")

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buffer = bytearray()
        self.max_message_size = max_message_size  # raised after OPEN negotiates RFC 8654

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return every complete message. Header errors raise (RFC 4271 §6.1)."""
        buf = self._buffer
        buf += data
        frames: list[bytes] = []
        pos = 0
        size = len(buf)
        while size - pos >= HEADER_SIZE:
            if buf[pos : pos + 16] != MARKER:
                raise BGPError(
                    ErrorCode.MESSAGE_HEADER,
                    HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
                    reason="bad marker",
                )
            length = (buf[pos + 16] << 8) | buf[pos + 17]
            if length < HEADER_SIZE or length > self.max_message_size:
                raise BGPError(
                    ErrorCode.MESSAGE_HEADER,
                    HeaderSubcode.BAD_MESSAGE_LENGTH,
                    bytes(buf[pos + 16 : pos + 18]),
                    reason=f"message length {length}",
                )
            if size - pos < length:
                break
            frames.append(bytes(buf[pos : pos + length]))
            pos += length
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        """Octets held back waiting for the rest of a message."""
        return len(self._buffer)


class Decoder:
    """Stateful only for speed: interns PathAttributes keyed by the raw attribute bytes."""

    __slots__ = ("_cache", "_ctx", "_ipv4_add_path")

    def __init__(self, ctx: CodecContext = DEFAULT_CONTEXT) -> None:
        self._cache: dict[bytes, PathAttributes] = {}
        self._ctx = ctx
        self._ipv4_add_path = IPV4_UNICAST in ctx.add_path_receive

    @property
    def ctx(self) -> CodecContext:
        return self._ctx

    @ctx.setter
    def ctx(self, ctx: CodecContext) -> None:
        # AS number width and eBGP-ness change how the same bytes decode.
        self._ctx = ctx
        self._ipv4_add_path = IPV4_UNICAST in ctx.add_path_receive
        self._cache.clear()

    def decode(self, frame: bytes) -> Message:
        """Decode one whole message (header included); raises only ``BGPError``."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        size = len(frame)
        if size < HEADER_SIZE:
            raise _length_error(frame, f"message of {size} octets is shorter than a header")
        if frame[:16] != MARKER:
            raise BGPError(
                ErrorCode.MESSAGE_HEADER,
                HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED,
                reason="bad marker",
            )
        length = (frame[16] << 8) | frame[17]
        if length != size or length > self._ctx.max_message_size:
            raise _length_error(frame, f"length field {length} for a {size}-octet message")
        mtype = frame[18]
        if mtype == MessageType.UPDATE:
            return self._decode_update(frame)
        if mtype == MessageType.KEEPALIVE:
            if size != HEADER_SIZE:
                raise _length_error(frame, "KEEPALIVE longer than a header")
            return Keepalive()
        if mtype == MessageType.OPEN:
            # RFC 8654: OPEN (like KEEPALIVE) stays within 4096 octets even with extended messages.
            if size < _MIN_OPEN or size > MAX_MESSAGE_SIZE:
                raise _length_error(frame, f"OPEN of {size} octets")
            return decode_open(frame)
        if mtype == MessageType.NOTIFICATION:
            if size < _MIN_NOTIFICATION:
                raise _length_error(frame, f"NOTIFICATION of {size} octets")
            return Notification(frame[19], frame[20], frame[21:])
        if mtype == MessageType.ROUTE_REFRESH:
            return _decode_route_refresh(frame)
        raise BGPError(
            ErrorCode.MESSAGE_HEADER,
            HeaderSubcode.BAD_MESSAGE_TYPE,
            bytes((mtype,)),
            reason=f"unknown message type {mtype}",
        )

    def _decode_update(self, frame: bytes) -> Update:
        size = len(frame)
        if size < _MIN_UPDATE:
            raise _length_error(frame, f"UPDATE of {size} octets")
        w_end = 21 + ((frame[19] << 8) | frame[20])
        # RFC 4271 §6.3 / RFC 7606 §3: lengths that do not add up cannot be contained.
        if w_end + 2 > size:
            raise _update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, "withdrawn routes overrun")
        a_start = w_end + 2
        a_end = a_start + ((frame[w_end] << 8) | frame[w_end + 1])
        if a_end > size:
            raise _update_error(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, "attributes overrun")
        add_path = self._ipv4_add_path
        # RFC 7606 §3 / §5.3: both prefix fields must parse, or the session is reset.
        withdrawn = (
            parse_prefixes(frame, 21, w_end, 32, add_path, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST)
            if w_end > 21
            else ()
        )
        announced = (
            parse_prefixes(frame, a_end, size, 32, add_path, UpdateSubcode.INVALID_NETWORK_FIELD)
            if a_end < size
            else ()
        )
        if a_end == a_start:
            if announced:
                return _withdraw_all(withdrawn, announced, None, None, [_missing(AttrType.ORIGIN)])
            return Update(withdrawn=withdrawn)
        section = frame[a_start:a_end]
        cached = self._cache.get(section)
        if cached is not None:
            if announced and cached.next_hop is None:
                missing = [_missing(AttrType.NEXT_HOP)]
                return _withdraw_all(withdrawn, announced, None, None, missing)
            return Update(withdrawn, cached, announced)
        return self._decode_attributes(section, withdrawn, announced)

    def _decode_attributes(
        self, section: bytes, withdrawn: tuple[bytes, ...], announced: tuple[bytes, ...]
    ) -> Update:
        entries, errors = scan_attributes(section)
        st = AttrState(self._ctx)
        rest = entries
        key = section
        if any(entry[1] in MP_CODES for entry in entries):
            rest = [entry for entry in entries if entry[1] not in MP_CODES]
            decode_entries(section, [e for e in entries if e[1] in MP_CODES], st)
            # Intern the non-MP part: UPDATEs for one path differ only in MP_REACH_NLRI.
            key = b"".join([section[e[2] : e[4]] for e in rest])
        attributes = self._cache.get(key) if rest else None
        if attributes is not None:
            seen = _MANDATORY | (_NEXT_HOP_BIT if attributes.next_hop is not None else 0)
        elif rest:
            before = len(st.errors)
            seen = decode_entries(section, rest, st)
            attributes = finish(st)
            clean = not errors and len(st.errors) == before
            if clean and seen & _MANDATORY == _MANDATORY:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                self._cache[key] = attributes
        else:
            seen = 0
        errors.extend(st.errors)
        reach = st.mp_reach
        if announced or (reach is not None and reach.nlri):
            # RFC 7606 §3; NEXT_HOP is mandatory only for the NLRI field (RFC 4760 §3).
            for code, bit in ((AttrType.ORIGIN, _ORIGIN_BIT), (AttrType.AS_PATH, _AS_PATH_BIT)):
                if not seen & bit:
                    errors.append(_missing(code))
            if announced and not seen & _NEXT_HOP_BIT:
                errors.append(_missing(AttrType.NEXT_HOP))
        if any(e.action == _TAW for e in errors):
            return _withdraw_all(withdrawn, announced, reach, st.mp_unreach, errors)
        return Update(withdrawn, attributes, announced, reach, st.mp_unreach, tuple(errors))


def _update_error(subcode: int, reason: str) -> BGPError:
    return BGPError(ErrorCode.UPDATE_MESSAGE, subcode, reason=reason)


def _missing(code: AttrType) -> BGPError:
    # RFC 4271 §6.3: the data is the type code of the missing attribute.
    return BGPError(
        ErrorCode.UPDATE_MESSAGE,
        UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
        bytes((code,)),
        _TAW,
        f"missing well-known attribute {code.name}",
    )


def _withdraw_all(
    withdrawn: tuple[bytes, ...],
    announced: tuple[bytes, ...],
    reach: MpReach | None,
    unreach: MpUnreach | None,
    errors: list[BGPError],
) -> Update:
    """RFC 7606 §2 treat-as-withdraw: every announced prefix becomes a withdrawal."""
    ipv4 = [*withdrawn, *announced]
    mp_unreach = unreach
    if reach is not None and reach.nlri:
        family = (reach.afi, reach.safi)
        if mp_unreach is not None and (mp_unreach.afi, mp_unreach.safi) == family:
            mp_unreach = MpUnreach(reach.afi, reach.safi, mp_unreach.withdrawn + reach.nlri)
        elif family == IPV4_UNICAST:
            ipv4.extend(reach.nlri)
        else:
            if mp_unreach is not None:
                if (mp_unreach.afi, mp_unreach.safi) != IPV4_UNICAST:
                    raise _update_error(
                        UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, "MP families do not match"
                    )
                ipv4.extend(mp_unreach.withdrawn)
            mp_unreach = MpUnreach(reach.afi, reach.safi, reach.nlri)
    return Update(tuple(ipv4), None, (), None, mp_unreach, tuple(errors))


def _decode_route_refresh(frame: bytes) -> RouteRefresh:
    size = len(frame)
    if size != _ROUTE_REFRESH_SIZE:
        if size > 21 and frame[21] in (1, 2):
            # RFC 7313 §5: BoRR/EoRR of the wrong length; the data is the whole message.
            raise BGPError(ErrorCode.ROUTE_REFRESH, 1, frame, reason="ROUTE-REFRESH length")
        raise _length_error(frame, f"ROUTE-REFRESH of {size} octets")
    afi, subtype, safi = _ROUTE_REFRESH.unpack_from(frame, HEADER_SIZE)
    # An unknown subtype is decoded; RFC 7313 §5 says the session ignores it.
    return RouteRefresh(afi, safi, subtype)


def decode_message(frame: bytes, ctx: CodecContext = DEFAULT_CONTEXT) -> Message:
    """Decode one message without interning (tests, tools, one-off messages)."""
    return Decoder(ctx).decode(frame)


# --- encoding --------------------------------------------------------------------------------


def _frame(mtype: int, body: bytes, limit: int) -> bytes:
    length = HEADER_SIZE + len(body)
    if length > limit:
        raise ValueError(f"message of {length} octets exceeds the {limit}-octet limit")
    return _HEADER.pack(MARKER, length, mtype) + body


def _mp_reach_attribute(reach: MpReach) -> bytes:
    value = encode_mp_reach_value(
        reach.afi, reach.safi, encode_next_hop(reach.afi, reach.next_hop), b"".join(reach.nlri)
    )
    return encode_attribute(OPTIONAL, AttrType.MP_REACH_NLRI, value)


def _mp_unreach_attribute(afi: int, safi: int, withdrawn: bytes) -> bytes:
    value = encode_mp_unreach_value(afi, safi, withdrawn)
    return encode_attribute(OPTIONAL, AttrType.MP_UNREACH_NLRI, value)


def _update_body(withdrawn: bytes, section: bytes, announced: bytes) -> bytes:
    return b"".join(
        (_U16.pack(len(withdrawn)), withdrawn, _U16.pack(len(section)), section, announced)
    )


def _encode_update(msg: Update, ctx: CodecContext) -> bytes:
    parts: list[bytes] = []
    # RFC 7606 §5.1: MP_REACH_NLRI / MP_UNREACH_NLRI go first.
    if msg.mp_reach is not None:
        parts.append(_mp_reach_attribute(msg.mp_reach))
    if msg.mp_unreach is not None:
        unreach = msg.mp_unreach
        parts.append(_mp_unreach_attribute(unreach.afi, unreach.safi, b"".join(unreach.withdrawn)))
    if msg.attributes is not None:
        parts.append(encode_path_attributes(msg.attributes, ctx))
    body = _update_body(b"".join(msg.withdrawn), b"".join(parts), b"".join(msg.nlri))
    return _frame(MessageType.UPDATE, body, ctx.max_message_size)


def encode_message(msg: Message, ctx: CodecContext = DEFAULT_CONTEXT) -> bytes:
    """Encode any message; raises ValueError if it does not fit ``ctx.max_message_size``."""
    if isinstance(msg, Update):
        return _encode_update(msg, ctx)
    if isinstance(msg, Keepalive):
        return _frame(MessageType.KEEPALIVE, b"", MAX_MESSAGE_SIZE)
    if isinstance(msg, Open):
        return _frame(MessageType.OPEN, encode_open_body(msg), MAX_MESSAGE_SIZE)
    if isinstance(msg, Notification):
        body = bytes((msg.code, msg.subcode)) + msg.data
        return _frame(MessageType.NOTIFICATION, body, ctx.max_message_size)
    body = _ROUTE_REFRESH.pack(msg.afi, msg.subtype, msg.safi)
    return _frame(MessageType.ROUTE_REFRESH, body, MAX_MESSAGE_SIZE)


def encode_updates(
    attributes: PathAttributes,
    nlri: Sequence[bytes],
    ctx: CodecContext,
    afi: int = Afi.IPV4,
    next_hop: tuple[str, ...] = (),
) -> list[bytes]:
    """UPDATEs announcing ``nlri`` with one attribute set, as few messages as fit.

    IPv4 uses the NLRI field and the NEXT_HOP attribute from ``attributes.next_hop``; IPv6, and
    IPv4 given an IPv6 ``next_hop`` (RFC 8950 §4), use MP_REACH_NLRI with ``next_hop``
    (global[, link-local]) and leave out NEXT_HOP. Prefixes are
    in the session's wire form: with ADD-PATH send negotiated for the family, each one already
    starts with its path identifier (RFC 7911 §3).
    """
    if not nlri:
        return []
    limit = ctx.max_message_size
    if afi == Afi.IPV4 and not next_hop:
        section = encode_path_attributes(attributes, ctx)
        head = _U16.pack(0) + _U16.pack(len(section)) + section
        room = limit - HEADER_SIZE - len(head)
        return [
            _HEADER.pack(MARKER, HEADER_SIZE + len(head) + len(chunk), MessageType.UPDATE)
            + head
            + chunk
            for chunk in pack_prefixes(nlri, room)
        ]
    if attributes.next_hop is not None:
        attributes = replace(attributes, next_hop=None)
    section = encode_path_attributes(attributes, ctx)
    hop = encode_next_hop(afi, next_hop)
    # MP_REACH_NLRI overhead: 4-octet header (extended length), AFI/SAFI/NH length, Reserved.
    room = limit - HEADER_SIZE - 4 - len(section) - 4 - 4 - len(hop) - 1
    messages = []
    for chunk in pack_prefixes(nlri, room):
        reach = encode_attribute(
            OPTIONAL, AttrType.MP_REACH_NLRI, encode_mp_reach_value(afi, Safi.UNICAST, hop, chunk)
        )
        messages.append(_frame(MessageType.UPDATE, _update_body(b"", reach + section, b""), limit))
    return messages


def encode_withdrawals(
    prefixes: Sequence[bytes], ctx: CodecContext, afi: int = Afi.IPV4
) -> list[bytes]:
    """UPDATEs withdrawing ``prefixes`` (Withdrawn Routes for IPv4, MP_UNREACH_NLRI else)."""
    if not prefixes:
        return []
    limit = ctx.max_message_size
    if afi == Afi.IPV4:
        room = limit - HEADER_SIZE - 4
        return [
            _frame(MessageType.UPDATE, _update_body(chunk, b"", b""), limit)
            for chunk in pack_prefixes(prefixes, room)
        ]
    room = limit - HEADER_SIZE - 4 - 4 - 3
    return [
        _frame(
            MessageType.UPDATE,
            _update_body(b"", _mp_unreach_attribute(afi, Safi.UNICAST, chunk), b""),
            limit,
        )
        for chunk in pack_prefixes(prefixes, room)
    ]


def encode_end_of_rib(afi: int, safi: int) -> bytes:
    """RFC 4724 §2: an empty UPDATE for IPv4 unicast, an empty MP_UNREACH_NLRI otherwise."""
    if (afi, safi) == IPV4_UNICAST:
        body = _update_body(b"", b"", b"")
    else:
        body = _update_body(b"", _mp_unreach_attribute(afi, safi, b""), b"")
    return _frame(MessageType.UPDATE, body, MAX_MESSAGE_SIZE)


__all__ = [
    "DEFAULT_CONTEXT",
    "HEADER_SIZE",
    "MARKER",
    "CodecContext",
    "Decoder",
    "Framer",
    "decode_message",
    "encode_end_of_rib",
    "encode_message",
    "encode_updates",
    "encode_withdrawals",
]
