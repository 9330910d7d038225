"""Path attributes: one table row per attribute (type code, name, flags, decoder, encoder).

Implements RFC 4271 §4.3/§5 (ORIGIN, AS_PATH, NEXT_HOP, MULTI_EXIT_DISC, LOCAL_PREF,
ATOMIC_AGGREGATE, AGGREGATOR), RFC 1997 (COMMUNITIES), RFC 4456 (ORIGINATOR_ID, CLUSTER_LIST),
RFC 4760 (MP_REACH_NLRI/MP_UNREACH_NLRI, bodies in ``nlri``), RFC 4360 (EXTENDED_COMMUNITIES),
RFC 6793 (AS4_PATH, AS4_AGGREGATOR, 2-octet sessions), RFC 8092 (LARGE_COMMUNITY), RFC 7607
(AS 0 is malformed wherever an AS number travels) and the revised error handling of
RFC 7606: a malformed attribute yields a ``BGPError`` whose action is attribute discard,
treat-as-withdraw or session reset. Discard and withdraw are collected in ``AttrState.errors``;
only a session reset is raised. The message layer (``messages``) decides what treat-as-withdraw
does to the UPDATE's prefixes.

``ATTRIBUTES`` is built explicitly from the literal table at the bottom of this module; nothing
registers itself at import time.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bgpd.codec import nlri
from bgpd.codec.aspath import (
    AS2,
    AS4,
    CONFED,
    SEGMENT_TYPES,
    encode_as_path_value,
    has_as0,
    merge_as_paths,
    needs_as4,
)
from bgpd.codec.errors import BGPError, ErrorAction, ErrorCode, UpdateSubcode
from bgpd.codec.types import (
    AS_TRANS,
    Aggregator,
    AsPath,
    AttrType,
    MpReach,
    MpUnreach,
    Origin,
    PathAttributes,
    UnknownAttribute,
)

if TYPE_CHECKING:
    from bgpd.codec.context import CodecContext

OPTIONAL = 0x80
TRANSITIVE = 0x40
PARTIAL = 0x20
EXTENDED_LENGTH = 0x10
OPT_TRANS = OPTIONAL | TRANSITIVE

MP_CODES = frozenset((AttrType.MP_REACH_NLRI, AttrType.MP_UNREACH_NLRI))
_ORIGINS = tuple(Origin)

_U32 = struct.Struct(">I")
_AGG2 = struct.Struct(">H4s")
_AGG4 = struct.Struct(">I4s")
_LARGE = struct.Struct(">III")

# (flags, type code, header start, value start, value end) within the attribute section.
RawAttr = tuple[int, int, int, int, int]

_TAW = ErrorAction.TREAT_AS_WITHDRAW
_DISCARD = ErrorAction.ATTRIBUTE_DISCARD
_RESET = ErrorAction.SESSION_RESET
_UPDATE = ErrorCode.UPDATE_MESSAGE


class _Malformed(Exception):
    """Raised by a row's decoder; the table loop turns it into a ``BGPError`` with the raw
    attribute as NOTIFICATION data (RFC 4271 §6.3). Never escapes this module."""

    def __init__(self, subcode: int, action: ErrorAction, reason: str) -> None:
        super().__init__(reason)
        self.subcode = subcode
        self.action = action
        self.reason = reason


class AttrState:
    """Scratch space for one UPDATE's attributes while the table's decoders run."""

    __slots__ = ("as4_aggregator", "as4_path", "ctx", "errors", "fields", "mp_reach", "mp_unreach")

    def __init__(self, ctx: CodecContext) -> None:
        self.ctx = ctx
        self.fields: dict[str, Any] = {}
        self.errors: list[BGPError] = []
        self.mp_reach: MpReach | None = None
        self.mp_unreach: MpUnreach | None = None
        self.as4_path: AsPath | None = None
        self.as4_aggregator: Aggregator | None = None


Decode = Callable[[bytes, AttrState], None]
Encode = Callable[[PathAttributes, "CodecContext"], bytes]


@dataclass(frozen=True, slots=True)
class AttrSpec:
    """One attribute: what its flags must be and how to decode and encode it."""

    code: int
    name: str
    flags: int  # the Optional and Transitive bits it must carry (RFC 7606 §3)
    decode: Decode
    encode: Encode | None  # None: encoded by the message layer (MP_REACH/MP_UNREACH)
    # RFC 7606 §3 / §7.11: if the attribute cannot be parsed the NLRI cannot be located,
    # so no error in it can be contained.
    session_reset: bool = False


# --- framing ---------------------------------------------------------------------------------


def scan_attributes(section: bytes) -> tuple[list[RawAttr], list[BGPError]]:
    """Split the path attribute section into attributes.

    RFC 7606 §4: an attribute overrunning the section (or a header fragment at its end) is
    treat-as-withdraw and parsing stops there; the Total Path Attribute Length still locates
    the NLRI. An overrunning MP_REACH/MP_UNREACH resets the session instead, since its
    prefixes cannot be withdrawn without parsing it. RFC 7606 §3: a repeated MP_REACH or
    MP_UNREACH resets the session, any other repeated attribute is discarded after its first
    occurrence.
    """
    entries: list[RawAttr] = []
    errors: list[BGPError] = []
    seen = 0
    pos = 0
    end = len(section)
    while pos < end:
        flags = section[pos]
        if end - pos < (4 if flags & EXTENDED_LENGTH else 3):
            errors.append(_framing_error(pos, "attribute header truncated"))
            break
        code = section[pos + 1]
        if flags & EXTENDED_LENGTH:
            vstart = pos + 4
            vend = vstart + ((section[pos + 2] << 8) | section[pos + 3])
        else:
            vstart = pos + 3
            vend = vstart + section[pos + 2]
        if vend > end:
            if code in MP_CODES:
                # RFC 7606 §3: treat-as-withdraw needs the MP attributes parsed; they are not.
                raise BGPError(
                    _UPDATE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason=f"{code} overruns"
                )
            errors.append(_framing_error(pos, f"attribute {code} overruns the attribute section"))
            break
        bit = 1 << code
        if not seen & bit:
            seen |= bit
            entries.append((flags, code, pos, vstart, vend))
        elif code in MP_CODES:
            raise BGPError(
                _UPDATE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason=f"attribute {code} repeated"
            )
        else:
            errors.append(
                BGPError(
                    _UPDATE,
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                    section[pos:vend],
                    _DISCARD,
                    f"attribute {code} repeated; later copy discarded",
                )
            )
        pos = vend
    return entries, errors


def _framing_error(pos: int, reason: str) -> BGPError:
    return BGPError(
        _UPDATE, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, b"", _TAW, f"offset {pos}: {reason}"
    )


def decode_entries(section: bytes, entries: Iterable[RawAttr], st: AttrState) -> int:
    """Run each attribute through its table row; returns a bit set of the type codes seen."""
    table = ATTRIBUTES
    seen = 0
    for flags, code, hstart, vstart, vend in entries:
        seen |= 1 << code
        spec = table.get(code)
        if spec is None:
            _keep_unknown(section, flags, code, hstart, vstart, vend, st)
            continue
        if flags & OPT_TRANS != spec.flags:
            # RFC 7606 §3: conflicting Optional/Transitive bits make the attribute malformed.
            error = BGPError(
                _UPDATE,
                UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
                section[hstart:vend],
                _RESET if spec.session_reset else _TAW,
                f"{spec.name}: flags {flags:#04x}",
            )
            if spec.session_reset:
                raise error
            st.errors.append(error)
            continue
        try:
            spec.decode(section[vstart:vend], st)
        except _Malformed as bad:
            data = b"" if bad.subcode == UpdateSubcode.MALFORMED_AS_PATH else section[hstart:vend]
            st.errors.append(
                BGPError(_UPDATE, bad.subcode, data, bad.action, f"{spec.name}: {bad.reason}")
            )
    return seen


def _keep_unknown(
    section: bytes, flags: int, code: int, hstart: int, vstart: int, vend: int, st: AttrState
) -> None:
    if not flags & OPTIONAL:
        # RFC 4271 §6.3: an unrecognized well-known attribute cannot be ignored.
        raise BGPError(
            _UPDATE,
            UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            section[hstart:vend],
            reason=f"unrecognized well-known attribute {code}",
        )
    if flags & TRANSITIVE:
        # RFC 4271 §5: passed on; the PARTIAL bit is set when re-encoded.
        unknown = st.fields.setdefault("unknown", [])
        unknown.append(UnknownAttribute(flags & (OPT_TRANS | PARTIAL), code, section[vstart:vend]))
    # Unrecognized optional non-transitive attributes are quietly ignored (RFC 4271 §5).


def finish(st: AttrState) -> PathAttributes:
    """Build the PathAttributes from the decoded fields, merging AS4_* (RFC 6793 §4.2.3)."""
    fields = st.fields
    if "unknown" in fields:
        fields["unknown"] = tuple(fields["unknown"])
    if st.as4_path is not None or st.as4_aggregator is not None:
        _merge_as4(st)
    return PathAttributes(**fields)


def _merge_as4(st: AttrState) -> None:
    fields = st.fields
    aggregator: Aggregator | None = fields.get("aggregator")
    if aggregator is not None and aggregator.asn != AS_TRANS:
        # RFC 6793 §4.2.3: an OLD speaker aggregated the route after AS4_* were attached, so
        # both AS4_AGGREGATOR and AS4_PATH are stale and ignored.
        return
    if aggregator is not None and st.as4_aggregator is not None:
        fields["aggregator"] = st.as4_aggregator
    if st.as4_path is not None:
        fields["as_path"] = merge_as_paths(fields.get("as_path", ()), st.as4_path)


# --- decoders (one per row) ------------------------------------------------------------------


def _length(value: bytes, expected: int, action: ErrorAction) -> None:
    if len(value) != expected:
        raise _Malformed(
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
            action,
            f"length {len(value)}, expected {expected}",
        )


def _dec_origin(value: bytes, st: AttrState) -> None:
    _length(value, 1, _TAW)  # RFC 7606 §7.1
    if value[0] > 2:
        raise _Malformed(UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE, _TAW, f"value {value[0]}")
    st.fields["origin"] = _ORIGINS[value[0]]


def parse_as_path(value: bytes, four_octet: bool) -> AsPath:
    """Segments of an AS_PATH/AS4_PATH; raises ``_Malformed`` per RFC 7606 §7.2."""
    size = 4 if four_octet else 2
    structs = AS4 if four_octet else AS2
    segments: list[tuple[int, tuple[int, ...]]] = []
    pos = 0
    end = len(value)
    while pos < end:
        if end - pos < 2:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, "segment header underrun")
        stype = value[pos]
        count = value[pos + 1]
        if stype not in SEGMENT_TYPES:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, f"segment type {stype}")
        if count == 0:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, "empty segment")
        nxt = pos + 2 + count * size
        if nxt > end:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, "segment overrun")
        segments.append((stype, structs[count].unpack_from(value, pos + 2)))
        pos = nxt
    return tuple(segments)


def _dec_as_path(value: bytes, st: AttrState) -> None:
    path = parse_as_path(value, st.ctx.four_octet_as)
    if st.ctx.ebgp and any(stype in CONFED for stype, _ in path):
        # RFC 7606 §7.2 / RFC 5065 §5: confederation segments from outside the confederation.
        raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, "confederation segment from eBGP")
    if has_as0(path):
        raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _TAW, "AS 0 in the path (RFC 7607)")
    st.fields["as_path"] = path


def _dec_next_hop(value: bytes, st: AttrState) -> None:
    _length(value, 4, _TAW)  # RFC 7606 §7.3
    first = value[0]
    if first == 0 or first >= 224:
        # RFC 4271 §6.3: not a valid host address (this network, multicast, reserved).
        raise _Malformed(UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE, _TAW, "not a host address")
    st.fields["next_hop"] = socket.inet_ntoa(value)


def _dec_med(value: bytes, st: AttrState) -> None:
    _length(value, 4, _TAW)  # RFC 7606 §7.4
    st.fields["med"] = _U32.unpack(value)[0]


def _dec_local_pref(value: bytes, st: AttrState) -> None:
    if st.ctx.ebgp:
        # RFC 7606 §7.5: LOCAL_PREF from an external peer is discarded.
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "received from eBGP")
    _length(value, 4, _TAW)
    st.fields["local_pref"] = _U32.unpack(value)[0]


def _dec_atomic_aggregate(value: bytes, st: AttrState) -> None:
    _length(value, 0, _DISCARD)  # RFC 7606 §7.6
    st.fields["atomic_aggregate"] = True


def _dec_aggregator(value: bytes, st: AttrState) -> None:
    four = st.ctx.four_octet_as
    _length(value, 8 if four else 6, _DISCARD)  # RFC 7606 §7.7
    asn, address = (_AGG4 if four else _AGG2).unpack(value)
    if asn == 0:  # RFC 7607 §2
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "AS 0 (RFC 7607)")
    st.fields["aggregator"] = Aggregator(asn, socket.inet_ntoa(address))


def _multiple_of(value: bytes, size: int) -> int:
    """Element count of a list attribute that must be a non-zero multiple of ``size`` octets."""
    if not value or len(value) % size:
        raise _Malformed(
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
            _TAW,
            f"length {len(value)} is not a non-zero multiple of {size}",
        )
    return len(value) // size


def _dec_communities(value: bytes, st: AttrState) -> None:
    count = _multiple_of(value, 4)  # RFC 7606 §7.8
    st.fields["communities"] = struct.unpack(f">{count}I", value)


def _internal_only(st: AttrState) -> None:
    """RFC 4456 §8: ORIGINATOR_ID and CLUSTER_LIST live inside one AS; from an external peer
    they are discarded (as BIRD does), so they cannot steer our reflection loop checks."""
    if st.ctx.ebgp:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "received from eBGP")


def _dec_originator_id(value: bytes, st: AttrState) -> None:
    _internal_only(st)
    _length(value, 4, _TAW)  # RFC 7606 §7.9
    st.fields["originator_id"] = socket.inet_ntoa(value)


def _dec_cluster_list(value: bytes, st: AttrState) -> None:
    _internal_only(st)
    count = _multiple_of(value, 4)  # RFC 7606 §7.10
    st.fields["cluster_list"] = tuple(
        socket.inet_ntoa(value[i * 4 : i * 4 + 4]) for i in range(count)
    )


def _dec_mp_reach(value: bytes, st: AttrState) -> None:
    reach = nlri.decode_mp_reach(value, st.ctx.add_path_receive)
    if reach is None:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "unsupported family")
    st.mp_reach = reach


def _dec_mp_unreach(value: bytes, st: AttrState) -> None:
    unreach = nlri.decode_mp_unreach(value, st.ctx.add_path_receive)
    if unreach is None:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "unsupported family")
    st.mp_unreach = unreach


def _dec_as4_path(value: bytes, st: AttrState) -> None:
    # RFC 6793 §6: AS4_PATH between NEW speakers, or malformed, is discarded.
    if st.ctx.four_octet_as:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "from a NEW speaker")
    if len(value) < 6:
        raise _Malformed(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, _DISCARD, "too short")
    try:
        path = parse_as_path(value, True)
    except _Malformed as bad:
        raise _Malformed(bad.subcode, _DISCARD, bad.reason) from None
    if has_as0(path):  # RFC 7607 §2: the attribute is discarded
        raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, _DISCARD, "AS 0 (RFC 7607)")
    # RFC 6793 §6: confederation segments must not appear in AS4_PATH; drop just them.
    st.as4_path = tuple(seg for seg in path if seg[0] not in CONFED)


def _dec_as4_aggregator(value: bytes, st: AttrState) -> None:
    if st.ctx.four_octet_as:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "from a NEW speaker")
    _length(value, 8, _DISCARD)  # RFC 6793 §6
    asn, address = _AGG4.unpack(value)
    if asn == 0:  # RFC 7607 §2
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, _DISCARD, "AS 0 (RFC 7607)")
    st.as4_aggregator = Aggregator(asn, socket.inet_ntoa(address))


def _dec_extended_communities(value: bytes, st: AttrState) -> None:
    count = _multiple_of(value, 8)  # RFC 7606 §7.14
    st.fields["extended_communities"] = struct.unpack(f">{count}Q", value)


def _dec_large_communities(value: bytes, st: AttrState) -> None:
    _multiple_of(value, 12)  # RFC 8092 §6: else treat-as-withdraw
    st.fields["large_communities"] = tuple(_LARGE.iter_unpack(value))


# --- encoders --------------------------------------------------------------------------------


def encode_attribute(flags: int, code: int, value: bytes) -> bytes:
    """Header + value; the Extended Length bit is set exactly when the value needs it."""
    size = len(value)
    if size > 255:
        if size > 0xFFFF:
            raise ValueError(f"attribute {code} value of {size} octets is too long")
        return bytes((flags | EXTENDED_LENGTH, code, size >> 8, size & 0xFF)) + value
    return bytes((flags & ~EXTENDED_LENGTH, code, size)) + value


def _enc_origin(a: PathAttributes, ctx: CodecContext) -> bytes:
    return encode_attribute(TRANSITIVE, AttrType.ORIGIN, bytes((a.origin,)))


def _enc_as_path(a: PathAttributes, ctx: CodecContext) -> bytes:
    value = encode_as_path_value(a.as_path, ctx.four_octet_as)
    return encode_attribute(TRANSITIVE, AttrType.AS_PATH, value)


def _enc_next_hop(a: PathAttributes, ctx: CodecContext) -> bytes:
    if a.next_hop is None:
        return b""
    return encode_attribute(TRANSITIVE, AttrType.NEXT_HOP, _inet_aton(a.next_hop))


def _enc_med(a: PathAttributes, ctx: CodecContext) -> bytes:
    if a.med is None:
        return b""
    return encode_attribute(OPTIONAL, AttrType.MULTI_EXIT_DISC, _U32.pack(a.med))


def _enc_local_pref(a: PathAttributes, ctx: CodecContext) -> bytes:
    if a.local_pref is None:
        return b""
    return encode_attribute(TRANSITIVE, AttrType.LOCAL_PREF, _U32.pack(a.local_pref))


def _enc_atomic_aggregate(a: PathAttributes, ctx: CodecContext) -> bytes:
    if not a.atomic_aggregate:
        return b""
    return encode_attribute(TRANSITIVE, AttrType.ATOMIC_AGGREGATE, b"")


def _enc_aggregator(a: PathAttributes, ctx: CodecContext) -> bytes:
    agg = a.aggregator
    if agg is None:
        return b""
    address = _inet_aton(agg.address)
    if ctx.four_octet_as:
        value = _AGG4.pack(agg.asn, address)
    else:
        value = _AGG2.pack(agg.asn if agg.asn <= 0xFFFF else AS_TRANS, address)
    return encode_attribute(OPT_TRANS, AttrType.AGGREGATOR, value)


def _enc_communities(a: PathAttributes, ctx: CodecContext) -> bytes:
    if not a.communities:
        return b""
    value = struct.pack(f">{len(a.communities)}I", *a.communities)
    return encode_attribute(OPT_TRANS, AttrType.COMMUNITIES, value)


def _enc_originator_id(a: PathAttributes, ctx: CodecContext) -> bytes:
    if a.originator_id is None:
        return b""
    return encode_attribute(OPTIONAL, AttrType.ORIGINATOR_ID, _inet_aton(a.originator_id))


def _enc_cluster_list(a: PathAttributes, ctx: CodecContext) -> bytes:
    if not a.cluster_list:
        return b""
    value = b"".join(_inet_aton(c) for c in a.cluster_list)
    return encode_attribute(OPTIONAL, AttrType.CLUSTER_LIST, value)


def _enc_as4_path(a: PathAttributes, ctx: CodecContext) -> bytes:
    # RFC 6793 §4.2.2: only towards OLD speakers, only when AS_PATH lost information, and
    # without confederation segments (§6).
    if ctx.four_octet_as or not needs_as4(a.as_path):
        return b""
    path = tuple(seg for seg in a.as_path if seg[0] not in CONFED)
    return encode_attribute(OPT_TRANS, AttrType.AS4_PATH, encode_as_path_value(path, True))


def _enc_as4_aggregator(a: PathAttributes, ctx: CodecContext) -> bytes:
    agg = a.aggregator
    if ctx.four_octet_as or agg is None or agg.asn <= 0xFFFF:
        return b""
    value = _AGG4.pack(agg.asn, _inet_aton(agg.address))
    return encode_attribute(OPT_TRANS, AttrType.AS4_AGGREGATOR, value)


def _enc_extended_communities(a: PathAttributes, ctx: CodecContext) -> bytes:
    if not a.extended_communities:
        return b""
    value = struct.pack(f">{len(a.extended_communities)}Q", *a.extended_communities)
    return encode_attribute(OPT_TRANS, AttrType.EXTENDED_COMMUNITIES, value)


def _enc_large_communities(a: PathAttributes, ctx: CodecContext) -> bytes:
    if not a.large_communities:
        return b""
    value = b"".join(_LARGE.pack(*lc) for lc in a.large_communities)
    return encode_attribute(OPT_TRANS, AttrType.LARGE_COMMUNITY, value)


def _enc_unknown(u: UnknownAttribute) -> bytes:
    flags = u.flags & (OPT_TRANS | PARTIAL)
    if flags & OPT_TRANS == OPT_TRANS:
        flags |= PARTIAL  # RFC 4271 §5: we did not recognize it, so we mark it partial
    return encode_attribute(flags, u.type_code, u.value)


def _inet_aton(address: str) -> bytes:
    try:
        return socket.inet_pton(socket.AF_INET, address)
    except OSError:
        raise ValueError(f"not an IPv4 address: {address!r}") from None


def encode_path_attributes(a: PathAttributes, ctx: CodecContext) -> bytes:
    """All attributes of ``a`` (not MP_*), in ascending type code order (RFC 4271 §5)."""
    pieces: list[tuple[int, bytes]] = [
        (spec.code, spec.encode(a, ctx)) for spec in _ENCODE_ORDER if spec.encode is not None
    ]
    pieces.extend((u.type_code, _enc_unknown(u)) for u in a.unknown)
    pieces.sort(key=lambda piece: piece[0])
    return b"".join(piece for _, piece in pieces)


# --- the table -------------------------------------------------------------------------------


def build_attribute_table() -> dict[int, AttrSpec]:
    """The attribute table, keyed by type code (flags from each attribute's defining RFC)."""
    rows: tuple[tuple[AttrType, int, Decode, Encode | None], ...] = (
        # (type code, required Optional/Transitive bits, decoder, encoder or None)
        (AttrType.ORIGIN, TRANSITIVE, _dec_origin, _enc_origin),
        (AttrType.AS_PATH, TRANSITIVE, _dec_as_path, _enc_as_path),
        (AttrType.NEXT_HOP, TRANSITIVE, _dec_next_hop, _enc_next_hop),
        (AttrType.MULTI_EXIT_DISC, OPTIONAL, _dec_med, _enc_med),
        (AttrType.LOCAL_PREF, TRANSITIVE, _dec_local_pref, _enc_local_pref),
        (AttrType.ATOMIC_AGGREGATE, TRANSITIVE, _dec_atomic_aggregate, _enc_atomic_aggregate),
        (AttrType.AGGREGATOR, OPT_TRANS, _dec_aggregator, _enc_aggregator),
        (AttrType.COMMUNITIES, OPT_TRANS, _dec_communities, _enc_communities),
        (AttrType.ORIGINATOR_ID, OPTIONAL, _dec_originator_id, _enc_originator_id),
        (AttrType.CLUSTER_LIST, OPTIONAL, _dec_cluster_list, _enc_cluster_list),
        (AttrType.MP_REACH_NLRI, OPTIONAL, _dec_mp_reach, None),
        (AttrType.MP_UNREACH_NLRI, OPTIONAL, _dec_mp_unreach, None),
        (
            AttrType.EXTENDED_COMMUNITIES,
            OPT_TRANS,
            _dec_extended_communities,
            _enc_extended_communities,
        ),
        (AttrType.AS4_PATH, OPT_TRANS, _dec_as4_path, _enc_as4_path),
        (AttrType.AS4_AGGREGATOR, OPT_TRANS, _dec_as4_aggregator, _enc_as4_aggregator),
        (AttrType.LARGE_COMMUNITY, OPT_TRANS, _dec_large_communities, _enc_large_communities),
    )
    return {
        int(code): AttrSpec(code, code.name, flags, decode, encode, code in MP_CODES)
        for code, flags, decode, encode in rows
    }


ATTRIBUTES: dict[int, AttrSpec] = build_attribute_table()
_ENCODE_ORDER = tuple(sorted(ATTRIBUTES.values(), key=lambda spec: spec.code))
