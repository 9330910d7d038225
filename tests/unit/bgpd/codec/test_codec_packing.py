"""Bulk encoding (encode_updates / encode_withdrawals), framing, and the AS4 transition."""

from __future__ import annotations

import contextlib
import math
from dataclasses import replace

import pytest

from bgpd.codec.attributes import encode_path_attributes
from bgpd.codec.errors import BGPError
from bgpd.codec.messages import (
    CodecContext,
    Decoder,
    Framer,
    decode_message,
    encode_end_of_rib,
    encode_message,
    encode_updates,
    encode_withdrawals,
)
from bgpd.codec.types import (
    Aggregator,
    Keepalive,
    MpReach,
    Notification,
    PathAttributes,
    Update,
    prefix_from_str,
)

CTX = CodecContext()
ATTRS = PathAttributes(
    as_path=((2, (65001, 65002)),), next_hop="10.0.0.1", local_pref=100, communities=(1, 2)
)


def slash24s(count: int) -> list[bytes]:
    return [bytes((24, 10, i >> 8, i & 0xFF)) for i in range(count)]


def slash64s(count: int) -> list[bytes]:
    return [prefix_from_str(f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64")[1] for i in range(count)]


def _decode_all(messages: list[bytes], ctx: CodecContext) -> list[Update]:
    decoder = Decoder(ctx)
    out = []
    for raw in messages:
        decoded = decoder.decode(raw)
        assert isinstance(decoded, Update) and decoded.errors == ()
        out.append(decoded)
    return out


def test_ten_thousand_slash24s_pack_into_the_fewest_messages() -> None:
    prefixes = slash24s(10_000)
    messages = encode_updates(ATTRS, prefixes, CTX)
    first = decode_message(messages[0])
    assert isinstance(first, Update)
    section_len = int.from_bytes(messages[0][21:23], "big")
    per_message = (4096 - 19 - 4 - section_len) // 4
    assert len(messages) == math.ceil(10_000 / per_message)
    assert all(len(m) <= 4096 for m in messages)
    decoded = _decode_all(messages, CTX)
    assert all(len(u.nlri) == per_message for u in decoded[:-1])
    assert [p for u in decoded for p in u.nlri] == prefixes
    assert all(u.attributes == ATTRS for u in decoded)
    # Interned: one PathAttributes object for the whole batch.
    assert len({id(u.attributes) for u in decoded}) == 1


def test_ipv6_prefixes_pack_into_mp_reach_with_extended_messages() -> None:
    ctx = CodecContext(max_message_size=65535)
    prefixes = slash64s(20_000)
    hop = ("2001:db8::1", "fe80::1")
    messages = encode_updates(ATTRS, prefixes, ctx, afi=2, next_hop=hop)
    assert all(len(m) <= 65535 for m in messages)
    section = encode_path_attributes(replace(ATTRS, next_hop=None), ctx)
    # Per message: header, two length fields, the attributes, and MP_REACH_NLRI's own header,
    # AFI/SAFI/next hop length, 32-octet next hop and Reserved octet; then 9-octet /64s.
    per_message = (65535 - 19 - 4 - len(section) - 4 - 4 - 32 - 1) // 9
    assert len(messages) == math.ceil(20_000 / per_message)
    decoded = _decode_all(messages, ctx)
    assert [p for u in decoded for p in u.mp_reach.nlri if u.mp_reach] == prefixes
    for u in decoded:
        assert u.mp_reach == MpReach(2, 1, hop, u.mp_reach.nlri if u.mp_reach else ())
        assert u.nlri == ()
        # NEXT_HOP is left out: the next hop travels in MP_REACH_NLRI.
        assert u.attributes is not None and u.attributes.next_hop is None


def test_withdrawals_pack_and_decode_for_both_families() -> None:
    v4 = slash24s(3000)
    messages = encode_withdrawals(v4, CTX)
    assert len(messages) == math.ceil(3000 * 4 / (4096 - 23))
    assert [p for u in _decode_all(messages, CTX) for p in u.withdrawn] == v4
    v6 = slash64s(3000)
    messages = encode_withdrawals(v6, CTX, afi=2)
    assert all(len(m) <= 4096 for m in messages)
    decoded = _decode_all(messages, CTX)
    assert [p for u in decoded for p in (u.mp_unreach.withdrawn if u.mp_unreach else ())] == v6


def test_add_path_entries_pack_with_their_path_ids() -> None:
    ctx = CodecContext(add_path_send=frozenset({(1, 1)}), add_path_receive=frozenset({(1, 1)}))
    entries = [i.to_bytes(4, "big") + p for i, p in enumerate(slash24s(2000))]
    decoded = _decode_all(encode_updates(ATTRS, entries, ctx), ctx)
    assert [p for u in decoded for p in u.nlri] == entries


def test_nothing_to_send_is_no_message() -> None:
    assert encode_updates(ATTRS, [], CTX) == []
    assert encode_withdrawals([], CTX) == []


def test_attributes_too_large_for_any_prefix_is_a_value_error() -> None:
    huge = PathAttributes(next_hop="10.0.0.1", communities=tuple(range(1100)))
    with pytest.raises(ValueError):
        encode_updates(huge, slash24s(1), CTX)


def test_encode_message_refuses_an_oversized_update() -> None:
    with pytest.raises(ValueError):
        encode_message(Update(attributes=ATTRS, nlri=tuple(slash24s(2000))), CTX)


def test_end_of_rib_markers() -> None:
    for family in ((1, 1), (2, 1)):
        decoded = decode_message(encode_end_of_rib(*family))
        assert isinstance(decoded, Update)
        assert decoded.is_end_of_rib() == family


def test_framer_reassembles_messages_split_anywhere() -> None:
    stream = (
        encode_message(Keepalive())
        + b"".join(encode_updates(ATTRS, slash24s(1500), CTX))
        + encode_message(Notification(6, 2))
    )
    framer = Framer()
    frames: list[bytes] = []
    for i in range(0, len(stream), 7):
        frames.extend(framer.feed(stream[i : i + 7]))
    assert b"".join(frames) == stream
    assert framer.buffered == 0
    assert isinstance(decode_message(frames[0]), Keepalive)
    assert decode_message(frames[-1]) == Notification(6, 2)
    one_chunk = Framer().feed(stream)
    assert one_chunk == frames


def test_changing_the_context_changes_how_attributes_decode() -> None:
    # The same bytes mean a different AS_PATH on a 2-octet session: the cache must not leak.
    raw = encode_message(Update(attributes=ATTRS, nlri=tuple(slash24s(1))), CTX)
    decoder = Decoder(CTX)
    assert isinstance(decoder.decode(raw), Update)
    decoder.ctx = CodecContext(four_octet_as=False)
    decoded = decoder.decode(raw)
    assert isinstance(decoded, Update)
    assert decoded.attributes is None or decoded.attributes.as_path != ATTRS.as_path


# --- RFC 6793: 4-octet ASes across a 2-octet session -----------------------------------------

OLD = CodecContext(four_octet_as=False)


def test_four_octet_path_round_trips_through_as4_path() -> None:
    attrs = PathAttributes(
        as_path=((2, (70000, 65001, 4200000000)), (1, (65010, 80000))),
        next_hop="10.0.0.1",
        aggregator=Aggregator(4200000000, "10.9.9.9"),
    )
    raw = encode_message(Update(attributes=attrs, nlri=tuple(slash24s(1))), OLD)
    # What an OLD speaker sees: AS_TRANS in place of every 4-octet AS.
    decoded = decode_message(raw, OLD)
    assert isinstance(decoded, Update)
    assert decoded.attributes == attrs
    assert b"\x02\x03\x5b\xa0\xfd\xe9\x5b\xa0" in raw  # AS_SEQUENCE (AS_TRANS, 65001, AS_TRANS)


def test_as_path_prepended_by_old_speakers_is_merged_in_front_of_as4_path() -> None:
    # An OLD speaker (65010) prepended itself after AS4_PATH was built: RFC 6793 §4.2.3.
    section = bytes.fromhex(
        "40010100"
        "40020802 03 fdf2 5ba0 fde9"  # AS_PATH (65010, AS_TRANS, 65001)
        "4003040a000001"
        "c0110a02 02 00011170 0000fde9"  # AS4_PATH (70000, 65001)
    )
    body = b"\x00\x00" + len(section).to_bytes(2, "big") + section + bytes.fromhex("180af401")
    raw = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body
    decoded = decode_message(raw, OLD)
    assert isinstance(decoded, Update) and decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, (65010,)), (2, (70000, 65001)))


def test_as4_path_longer_than_as_path_is_ignored() -> None:
    section = bytes.fromhex("4001010040020402 01 5ba04003040a000001c0110a02 02 00011170 0000fde9")
    body = b"\x00\x00" + len(section).to_bytes(2, "big") + section
    raw = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body
    decoded = decode_message(raw, OLD)
    assert isinstance(decoded, Update) and decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, (23456,)),)


def test_long_as_sequence_is_split_into_segments_of_255() -> None:
    path = ((2, tuple(range(1, 301))),)
    raw = encode_message(Update(attributes=PathAttributes(as_path=path)), CTX)
    decoded = decode_message(raw)
    assert isinstance(decoded, Update) and decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, tuple(range(1, 256))), (2, tuple(range(256, 301))))


def test_decoder_never_raises_other_errors_on_truncated_golden_update() -> None:
    raw = encode_updates(ATTRS, slash24s(50), CTX)[0]
    for cut in range(len(raw)):
        truncated = raw[:cut]
        with pytest.raises(BGPError):
            decode_message(truncated)
        fixed = truncated[:16] + len(truncated).to_bytes(2, "big") + truncated[18:]
        if len(fixed) >= 19:
            with contextlib.suppress(BGPError):
                decode_message(fixed)
