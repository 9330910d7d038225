"""Property tests: round trips, and that no input makes the decoder raise anything but BGPError."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgpd.codec.errors import BGPError
from bgpd.codec.messages import (
    CodecContext,
    Decoder,
    Framer,
    decode_message,
    encode_message,
)
from bgpd.codec.types import Message, Open, PathAttributes, Update
from tests.unit.bgpd.codec.codec_strategies import (
    contexts,
    messages_in_context,
    notifications,
    opens,
    path_attributes,
    route_refreshes,
    updates,
)

CTX = CodecContext(max_message_size=65535)
FUZZ = settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@given(opens())
def test_open_round_trip(msg: Open) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(notifications)
def test_notification_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(route_refreshes)
def test_route_refresh_round_trip(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg


@given(st.data())
@settings(max_examples=300, deadline=None)
def test_update_round_trip(data: st.DataObject) -> None:
    ctx = data.draw(contexts())
    msg = data.draw(updates(ctx))
    raw = encode_message(msg, ctx)
    decoded = Decoder(ctx).decode(raw)
    assert decoded == msg
    assert isinstance(decoded, Update) and decoded.errors == ()
    # Re-encoding reproduces the bytes: one canonical wire form per message.
    assert encode_message(decoded, ctx) == raw


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_path_attributes_survive_a_two_octet_session(data: st.DataObject) -> None:
    """4-octet ↔ 2-octet: AS4_PATH/AS4_AGGREGATOR carry what AS_TRANS hides (RFC 6793)."""
    old = CodecContext(four_octet_as=False, max_message_size=65535)
    attrs = data.draw(path_attributes(old, need_next_hop=True))
    prefix = b"\x18\x0a\xf4\x01"
    raw = encode_message(Update(attributes=attrs, nlri=(prefix,)), old)
    decoded = Decoder(old).decode(raw)
    assert isinstance(decoded, Update)
    assert decoded.attributes == attrs
    if any(a > 0xFFFF for _, asns in attrs.as_path for a in asns):
        assert b"\xc0\x11" in raw  # AS4_PATH present


def _decode_only_bgp_errors(decoder: Decoder, raw: bytes) -> None:
    with contextlib.suppress(BGPError):
        decoder.decode(raw)


def _decoders() -> list[Decoder]:
    return [
        Decoder(CTX),
        Decoder(CodecContext(four_octet_as=False, ebgp=True, max_message_size=65535)),
        Decoder(replace(CTX, add_path_receive=frozenset({(1, 1), (2, 1)}))),
    ]


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_bgp_error(raw: bytes) -> None:
    for decoder in _decoders():
        _decode_only_bgp_errors(decoder, raw)
    with contextlib.suppress(BGPError):
        Framer().feed(raw)


@FUZZ
@given(st.sampled_from([1, 2, 3, 4, 5, 6]), st.binary(max_size=600))
def test_arbitrary_bodies_behind_a_valid_header_raise_only_bgp_error(
    mtype: int, body: bytes
) -> None:
    raw = b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + bytes((mtype,)) + body
    for decoder in _decoders():
        _decode_only_bgp_errors(decoder, raw)


@st.composite
def _mutated(draw: st.DrawFn) -> tuple[CodecContext, bytes]:
    ctx, msg = draw(messages_in_context())
    raw = bytearray(encode_message(msg, ctx))
    # Mostly mutate the body (after the 19-octet header), where the interesting parsers are.
    low = 0 if draw(st.integers(0, 9)) == 7 else 19
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(("flip", "set", "insert", "delete", "truncate")))
        high = max(len(raw) - 1, 0)
        pos = draw(st.integers(min(low, high), high))
        if op == "flip" and pos < len(raw):
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and pos < len(raw):
            raw[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del raw[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del raw[pos:]
    if draw(st.integers(0, 4)) != 3 and len(raw) >= 19:
        # Keep the header consistent so the mutation reaches the body parsers.
        raw[16:18] = len(raw).to_bytes(2, "big")
    return ctx, bytes(raw)


@st.composite
def _mutated_attribute_section(draw: st.DrawFn) -> tuple[CodecContext, bytes]:
    """A valid UPDATE whose path attribute section is mutated, every length kept consistent."""
    ctx = draw(contexts())
    msg = draw(updates(ctx))
    raw = encode_message(msg, ctx)
    w_end = 21 + int.from_bytes(raw[19:21], "big")
    a_end = w_end + 2 + int.from_bytes(raw[w_end : w_end + 2], "big")
    section = bytearray(raw[w_end + 2 : a_end])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(section)))
        op = draw(st.sampled_from(("flip", "set", "insert", "delete")))
        if op == "insert":
            section[pos:pos] = draw(st.binary(min_size=1, max_size=6))
        elif pos == len(section):
            continue
        elif op == "flip":
            section[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            section[pos] = draw(st.integers(0, 255))
        else:
            del section[pos : pos + draw(st.integers(1, 6))]
    body = raw[19:w_end] + len(section).to_bytes(2, "big") + bytes(section) + raw[a_end:]
    return ctx, b"\xff" * 16 + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


@FUZZ
@given(_mutated_attribute_section())
def test_mutated_attribute_sections_raise_only_bgp_error(case: tuple[CodecContext, bytes]) -> None:
    ctx, raw = case
    for decoder in (Decoder(ctx), *_decoders()):
        try:
            decoded = decoder.decode(raw)
        except BGPError:
            continue
        assert isinstance(decoded, Update)
        if decoded.attributes is None:
            # Nothing is ever announced without attributes (RFC 7606 §3).
            assert decoded.nlri == ()
            assert decoded.mp_reach is None or decoded.mp_reach.nlri == ()


@FUZZ
@given(_mutated())
def test_mutated_messages_raise_only_bgp_error(case: tuple[CodecContext, bytes]) -> None:
    ctx, raw = case
    for decoder in (Decoder(ctx), *_decoders()):
        _decode_only_bgp_errors(decoder, raw)


@FUZZ
@given(_mutated() | _mutated_attribute_section())
def test_interning_never_changes_the_result(case: tuple[CodecContext, bytes]) -> None:
    """A warm decoder (cache filled by a first decode) agrees with a fresh one."""
    ctx, raw = case
    warm = Decoder(ctx)
    try:
        first = warm.decode(raw)
    except BGPError as err:
        try:
            Decoder(ctx).decode(raw)
        except BGPError as again:
            assert again == err
            return
        raise AssertionError("a warm decoder raised where a fresh one did not") from None
    second = warm.decode(raw)
    assert second == first
    assert isinstance(second, Update) == isinstance(first, Update)
    if isinstance(first, Update) and isinstance(second, Update):
        assert [repr(e) for e in second.errors] == [repr(e) for e in first.errors]


@given(st.data())
@settings(max_examples=50, deadline=None)
def test_equal_attribute_sets_decode_to_one_object(data: st.DataObject) -> None:
    attrs: PathAttributes = data.draw(path_attributes(CTX, need_next_hop=True))
    decoder = Decoder(CTX)
    one = decoder.decode(encode_message(Update(attributes=attrs, nlri=(b"\x08\x0a",)), CTX))
    two = decoder.decode(encode_message(Update(attributes=attrs, nlri=(b"\x08\x0b",)), CTX))
    assert isinstance(one, Update) and isinstance(two, Update)
    assert one.attributes is two.attributes
