"""NLRI fields and the MP_REACH_NLRI / MP_UNREACH_NLRI attribute values.

Owns the tight loops that slice wire-form prefixes out of an UPDATE (RFC 4271 §4.3), with
ADD-PATH path identifiers (RFC 7911 §3), and the multiprotocol attribute bodies for IPv4 and
IPv6 unicast (RFC 4760 §3-§4, RFC 2545 §3or the 16/32-octet IPv6 next hop, RFC 8950 for an
IPv6 next hop on IPv4 unicast). A prefix stays one ``bytes`` object — length octet plus the
significant address octets — so the RIB can use it as a key with no further parsing; host bits
set beyond the prefix length are cleared so equal prefixes have equal keys.

Syntax errors in an NLRI field cannot be contained (RFC 7606 §5.3): they raise a session-reset
``BGPError`` whose subcode the caller picks (Invalid Network Field for the NLRI field, Malformed
Attribute List for Withdrawn Routes, Optional Attribute Error inside MP attributes, RFC 4760 §7).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence

from bgpd.codec.errors import BGPError, ErrorCode, UpdateSubcode
from bgpd.codec.types import Afi, MpReach, MpUnreach, Safi

# Families whose NLRI this codec can parse, with the longest legal prefix in bits.
MAX_PREFIX_BITS: dict[tuple[int, int], int] = {
    (Afi.IPV4, Safi.UNICAST): 32,
    (Afi.IPV6, Safi.UNICAST): 128,
}

# Host bits of the last octet for a prefix length whose remainder mod 8 is the index.
_HOST_BITS = (0x00, 0x7F, 0x3F, 0x1F, 0x0F, 0x07, 0x03, 0x01)

_MP_HEADER = struct.Struct(">HBB")  # AFI, SAFI, next hop length
_MP_UNREACH_HEADER = struct.Struct(">HB")

# RFC 4760 §7: any problem inside MP_REACH/MP_UNREACH is an Optional Attribute Error, and
# RFC 7606 §7.11: since the NLRI cannot then be located reliably, the session is reset.
_MP_CODE = ErrorCode.UPDATE_MESSAGE
_MP_SUBCODE = UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR


def _canonical(data: bytes, pos: int, nxt: int, host: int) -> bytes:
    """The prefix at ``data[pos:nxt]`` with its host bits (mask ``host``) cleared."""
    return data[pos : nxt - 1] + bytes((data[nxt - 1] & ~host & 0xFF,))


# Octet values with no host bits for a prefix length whose remainder mod 8 is the index: what
# ``bytes.translate`` deletes to find a last octet with host bits set.
_CLEAN_OCTETS = tuple(bytes(v for v in range(256) if not v & host) for host in _HOST_BITS)

# Struct formats slicing n prefixes of one size at once, by (entry size, n); bounded.
_RUNS: dict[tuple[int, int], struct.Struct] = {}


def _uniform(
    data: bytes, start: int, end: int, max_bits: int, id_len: int
) -> tuple[bytes, ...] | None:
    """The entries of ``data[start:end]`` if all have the prefix length of the first and no
    host bits set (a table of /24s, of /26 blocks: the common case), sliced in one C call;
    else None (the general loop decides, errors included). ``id_len``: 4 with ADD-PATH."""
    plen = data[start + id_len]
    size = id_len + 1 + ((plen + 7) >> 3)
    count, rest = divmod(end - start, size)
    if rest or plen > max_bits:
        return None
    if data[start + id_len : end : size] != bytes((plen,)) * count:
        return None  # the length octets, every ``size`` octets, must all be ``plen``
    host = plen & 7
    if host and data[start + size - 1 : end : size].translate(None, _CLEAN_OCTETS[host]):
        return None  # some last octet has host bits set: those are cleared one by one
    run = _RUNS.get((size, count))
    if run is None:
        if len(_RUNS) >= 256:
            _RUNS.clear()
        run = _RUNS[size, count] = struct.Struct(f"{size}s" * count)
    return run.unpack_from(data, start)


def parse_prefixes(
    data: bytes,
    start: int,
    end: int,
    max_bits: int,
    add_path: bool,
    subcode: int,
) -> tuple[bytes, ...]:
    """Slice the prefixes in ``data[start:end]``; a bad length or overrun resets the session."""
    if end - start > (5 if add_path else 1):
        same = _uniform(data, start, end, max_bits, 4 if add_path else 0)
        if same is not None:
            return same
    return _parse_each(data, start, end, max_bits, add_path, subcode)


def _parse_each(
    data: bytes, start: int, end: int, max_bits: int, add_path: bool, subcode: int
) -> tuple[bytes, ...]:
    """``parse_prefixes`` one prefix at a time: any mix of lengths, host bits, errors."""
    out: list[bytes] = []
    append = out.append
    pos = start
    if add_path:
        while pos < end:
            # RFC 7911 §3: a 4-octet path identifier precedes each prefix.
            if pos + 5 > end:
                raise _nlri_error(subcode, "truncated path identifier", pos)
            plen = data[pos + 4]
            nxt = pos + 5 + ((plen + 7) >> 3)
            if plen > max_bits or nxt > end:
                raise _nlri_error(subcode, f"bad prefix length {plen}", pos)
            host = _HOST_BITS[plen & 7]
            if host and data[nxt - 1] & host:
                append(_canonical(data, pos, nxt, host))
            else:
                append(data[pos:nxt])
            pos = nxt
        return tuple(out)
    while pos < end:
        plen = data[pos]
        nxt = pos + 1 + ((plen + 7) >> 3)
        if plen > max_bits or nxt > end:
            raise _nlri_error(subcode, f"bad prefix length {plen}", pos)
        host = _HOST_BITS[plen & 7]
        if host and data[nxt - 1] & host:
            append(_canonical(data, pos, nxt, host))
        else:
            append(data[pos:nxt])
        pos = nxt
    return tuple(out)


def _nlri_error(subcode: int, reason: str, pos: int) -> BGPError:
    return BGPError(ErrorCode.UPDATE_MESSAGE, subcode, reason=f"NLRI at offset {pos}: {reason}")


def pack_prefixes(prefixes: Sequence[bytes], room: int) -> list[bytes]:
    """Concatenate prefixes into chunks of at most ``room`` octets each, keeping their order."""
    chunks: list[bytes] = []
    current: list[bytes] = []
    used = 0
    for prefix in prefixes:
        size = len(prefix)
        if size > room:
            raise ValueError(f"no room for a {size}-octet prefix in {room} octets")
        if used + size > room:
            chunks.append(b"".join(current))
            current = []
            used = 0
        current.append(prefix)
        used += size
    if current:
        chunks.append(b"".join(current))
    return chunks


# --- next hops -------------------------------------------------------------------------------


def _decode_next_hop(afi: int, raw: bytes) -> tuple[str, ...]:
    size = len(raw)
    if size == 4 and afi == Afi.IPV4:
        return (socket.inet_ntop(socket.AF_INET, raw),)
    if size == 16:
        return (socket.inet_ntop(socket.AF_INET6, raw),)
    if size == 32:
        # RFC 2545 §3: global address followed by the link-local one.
        return (
            socket.inet_ntop(socket.AF_INET6, raw[:16]),
            socket.inet_ntop(socket.AF_INET6, raw[16:]),
        )
    raise BGPError(
        _MP_CODE, _MP_SUBCODE, reason=f"MP_REACH_NLRI: next hop length {size} for AFI {afi}"
    )


def encode_next_hop(afi: int, next_hop: Sequence[str]) -> bytes:
    """Wire form of an MP_REACH_NLRI next hop: one IPv4 address, or IPv6 global[, link-local]."""
    try:
        if afi == Afi.IPV4 and len(next_hop) == 1 and ":" not in next_hop[0]:
            return socket.inet_pton(socket.AF_INET, next_hop[0])
        if len(next_hop) in (1, 2):
            return b"".join(socket.inet_pton(socket.AF_INET6, a) for a in next_hop)
    except OSError as exc:
        raise ValueError(f"bad next hop {next_hop!r}: {exc}") from None
    raise ValueError(f"bad next hop {next_hop!r} for AFI {afi}")


# --- MP_REACH_NLRI / MP_UNREACH_NLRI values (RFC 4760 §3, §4) ---------------------------------


def decode_mp_reach(value: bytes, add_path: frozenset[tuple[int, int]]) -> MpReach | None:
    """Decode an MP_REACH_NLRI value; None for a family this codec does not carry."""
    if len(value) < 5:
        raise BGPError(_MP_CODE, _MP_SUBCODE, reason="MP_REACH_NLRI shorter than 5 octets")
    afi, safi, nh_len = _MP_HEADER.unpack_from(value, 0)
    max_bits = MAX_PREFIX_BITS.get((afi, safi))
    if max_bits is None:
        return None
    nlri_start = 4 + nh_len + 1  # the octet after the next hop is Reserved (ex-SNPA count)
    if nlri_start > len(value):
        raise BGPError(_MP_CODE, _MP_SUBCODE, reason="MP_REACH_NLRI next hop overruns attribute")
    next_hop = _decode_next_hop(afi, value[4 : 4 + nh_len])
    nlri = parse_prefixes(
        value, nlri_start, len(value), max_bits, (afi, safi) in add_path, _MP_SUBCODE
    )
    return MpReach(afi, safi, next_hop, nlri)


def decode_mp_unreach(value: bytes, add_path: frozenset[tuple[int, int]]) -> MpUnreach | None:
    """Decode an MP_UNREACH_NLRI value; None for a family this codec does not carry."""
    if len(value) < 3:
        raise BGPError(_MP_CODE, _MP_SUBCODE, reason="MP_UNREACH_NLRI shorter than 3 octets")
    afi, safi = _MP_UNREACH_HEADER.unpack_from(value, 0)
    max_bits = MAX_PREFIX_BITS.get((afi, safi))
    if max_bits is None:
        return None
    withdrawn = parse_prefixes(value, 3, len(value), max_bits, (afi, safi) in add_path, _MP_SUBCODE)
    return MpUnreach(afi, safi, withdrawn)


def encode_mp_reach_value(afi: int, safi: int, next_hop: bytes, nlri: bytes) -> bytes:
    """MP_REACH_NLRI value from an encoded next hop and concatenated prefixes."""
    return _MP_HEADER.pack(afi, safi, len(next_hop)) + next_hop + b"\x00" + nlri


def encode_mp_unreach_value(afi: int, safi: int, withdrawn: bytes) -> bytes:
    return _MP_UNREACH_HEADER.pack(afi, safi) + withdrawn
