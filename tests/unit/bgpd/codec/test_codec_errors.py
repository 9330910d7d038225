"""Error vectors: each malformed message and the code/subcode/data/action the codec reports.

Session-reset errors are raised; treat-as-withdraw and attribute discard come back in
``Update.errors`` with the UPDATE rewritten as RFC 7606 §2 says.
"""

from __future__ import annotations

import pytest

from bgpd.codec.errors import BGPError, ErrorAction
from bgpd.codec.messages import CodecContext, Decoder, Framer, decode_message
from bgpd.codec.types import (
    Aggregator,
    MpUnreach,
    PathAttributes,
    Update,
)

MARKER = "ff" * 16
CTX4 = CodecContext()
CTX2 = CodecContext(four_octet_as=False)
EBGP = CodecContext(ebgp=True)
RESET = ErrorAction.SESSION_RESET
TAW = ErrorAction.TREAT_AS_WITHDRAW
DISCARD = ErrorAction.ATTRIBUTE_DISCARD


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def frame(mtype: str, body: str) -> bytes:
    """A message with a correct length field (errors under test are in the body)."""
    raw = h(body)
    return h(MARKER) + (19 + len(raw)).to_bytes(2, "big") + h(mtype) + raw


def update(section: str, nlri: str = "", withdrawn: str = "") -> bytes:
    w, s = h(withdrawn), h(section)
    body = len(w).to_bytes(2, "big") + w + len(s).to_bytes(2, "big") + s + h(nlri)
    return frame("02", body.hex())


def raised(raw: bytes, ctx: CodecContext = CTX4) -> BGPError:
    with pytest.raises(BGPError) as info:
        Decoder(ctx).decode(raw)
    return info.value


ORIGIN = "40 01 01 00"
AS_PATH = "40 02 06 02 01 0000fde9"
NEXT_HOP = "40 03 04 0a000001"
GOOD = ORIGIN + AS_PATH + NEXT_HOP
P24 = "18 0af401"
P24_BYTES = h(P24)


# --- header (RFC 4271 §6.1) ------------------------------------------------------------------


def test_framer_bad_marker() -> None:
    with pytest.raises(BGPError) as info:
        Framer().feed(h("00" * 16 + "0013 04"))
    assert (info.value.code, info.value.subcode, info.value.action) == (1, 1, RESET)


@pytest.mark.parametrize("length", ["0012", "1001", "0000"])
def test_framer_bad_length_carries_the_length_field(length: str) -> None:
    with pytest.raises(BGPError) as info:
        Framer().feed(h(MARKER + length + "04"))
    assert (info.value.code, info.value.subcode, info.value.data) == (1, 2, h(length))


def test_framer_accepts_extended_length_once_negotiated() -> None:
    big = frame("03", "06 00" + "00" * 5000)
    framer = Framer()
    with pytest.raises(BGPError):
        framer.feed(big)
    framer = Framer()
    framer.max_message_size = 65535
    assert framer.feed(big) == [big]


def test_decoder_rejects_length_field_not_matching_frame() -> None:
    raw = h(MARKER + "0015 04 00")  # says 21 octets, is 20
    err = raised(raw)
    assert (err.code, err.subcode, err.data) == (1, 2, h("0015"))
    assert raised(h(MARKER + "0013 04")[:-1]).subcode == 2


def test_decoder_rejects_bad_marker() -> None:
    err = raised(h("fe" + "ff" * 15 + "0013 04"))
    assert (err.code, err.subcode) == (1, 1)


def test_unknown_message_type_carries_the_type() -> None:
    err = raised(frame("07", ""))
    assert (err.code, err.subcode, err.data) == (1, 3, b"\x07")


@pytest.mark.parametrize(
    ("mtype", "body"),
    [
        ("04", "00"),  # KEEPALIVE must be exactly 19 octets
        ("03", "06"),  # NOTIFICATION needs code and subcode
        ("01", "04 fde8 00b4 0a000001"),  # OPEN shorter than 29
        ("02", "0000"),  # UPDATE shorter than 23
        ("05", "0001 00 01 00"),  # ROUTE-REFRESH subtype 0 of 24 octets
    ],
)
def test_bad_message_length_per_type(mtype: str, body: str) -> None:
    raw = frame(mtype, body)
    err = raised(raw)
    assert (err.code, err.subcode, err.data, err.action) == (1, 2, raw[16:18], RESET)


def test_enhanced_route_refresh_bad_length_is_7_1_with_whole_message() -> None:
    raw = frame("05", "0001 01 01 00")  # BoRR with a trailing octet (RFC 7313 §5)
    err = raised(raw)
    assert (err.code, err.subcode, err.data) == (7, 1, raw)


# --- OPEN (RFC 4271 §6.2) --------------------------------------------------------------------


def test_unsupported_version_reports_version_4() -> None:
    err = raised(frame("01", "03 fde8 00b4 0a000001 00"))
    assert (err.code, err.subcode, err.data) == (2, 1, b"\x00\x04")


def test_unsupported_optional_parameter() -> None:
    err = raised(frame("01", "04 fde8 00b4 0a000001 04 01 02 abcd"))  # type 1: authentication
    assert (err.code, err.subcode) == (2, 4)


@pytest.mark.parametrize(
    "params",
    [
        "05 02 02 02 00",  # length 5 but 4 octets follow
        "04 02 03 02 00",  # parameter overruns
        "04 02 02 41 04",  # capability overruns its parameter
        "06 02 04 01 02 0001",  # Multiprotocol of 2 octets
        "05 02 03 02 01 00",  # Route Refresh with a value
        "07 02 05 40 03 000000",  # Graceful Restart with a partial family
        "ff ff 00",  # RFC 9072 header truncated
    ],
)
def test_malformed_optional_parameters_are_open_error_0(params: str) -> None:
    err = raised(frame("01", "04 fde8 00b4 0a000001 " + params))
    assert (err.code, err.subcode, err.action) == (2, 0, RESET)


# --- UPDATE: session reset -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "subcode"),
    [
        (frame("02", "0005 18 0af4"), 1),  # withdrawn routes length overruns
        (frame("02", "0000 0010 40 01 01 00"), 1),  # attribute length overruns the message
        (update(GOOD, nlri="21 0a000001 00"), 10),  # /33 in the NLRI field
        (update(GOOD, nlri="18 0af4"), 10),  # truncated prefix
        (update(GOOD, withdrawn="21 0a00000100"), 1),  # /33 in Withdrawn Routes
        (update("800e 0d 0001 01 04 0a000001 00 18 0af401" + "800e 03 0002 01"), 1),  # 2 MP_REACH
        (update("800e 09 0002 01 04 0a000001 00"), 9),  # IPv6 next hop of 4 octets
        (update("800e 05 0002 01 20 00"), 9),  # next hop overruns MP_REACH
        (update("800e 03 0002 01"), 9),  # MP_REACH shorter than 5
        (update("800f 02 0002"), 9),  # MP_UNREACH shorter than 3
        (update("800e 16 0002 01 10 20010db8000000000000000000000001 00 81"), 9),  # /129
        (update("800f 06 0002 01 40 2001"), 9),  # truncated IPv6 withdrawal
        (update("c00e 0d 0001 01 04 0a000001 00 18 0af401"), 4),  # MP_REACH flags
        (update(GOOD + "800e 10 0001 01 04 0a000001 00 18 0af401"), 1),  # MP_REACH overruns
    ],
)
def test_update_session_reset(raw: bytes, subcode: int) -> None:
    err = raised(raw)
    assert (err.code, err.subcode, err.action) == (3, subcode, RESET)


def test_unrecognized_well_known_attribute_carries_the_attribute() -> None:
    err = raised(update(GOOD + "40 63 01 00", nlri=P24))
    assert (err.code, err.subcode, err.data, err.action) == (3, 2, h("40 63 01 00"), RESET)


# --- UPDATE: treat-as-withdraw ---------------------------------------------------------------


def _withdrawn(raw: bytes, ctx: CodecContext = CTX4) -> tuple[Update, BGPError]:
    decoded = Decoder(ctx).decode(raw)
    assert isinstance(decoded, Update)
    assert decoded.attributes is None and decoded.nlri == () and decoded.mp_reach is None
    assert decoded.withdrawn == (P24_BYTES,) or decoded.mp_unreach is not None
    errors = [e for e in decoded.errors if isinstance(e, BGPError) and e.action == TAW]
    assert errors, decoded.errors
    return decoded, errors[0]


@pytest.mark.parametrize(
    ("section", "subcode"),
    [
        ("40 01 01 03" + AS_PATH + NEXT_HOP, 6),  # ORIGIN value 3
        ("40 01 02 0000" + AS_PATH + NEXT_HOP, 5),  # ORIGIN length 2
        ("c0 01 01 00" + AS_PATH + NEXT_HOP, 4),  # ORIGIN flagged optional
        (ORIGIN + "c0 02 06 02 01 0000fde9" + NEXT_HOP, 4),  # AS_PATH flagged optional
        (ORIGIN + "40 02 06 05 01 0000fde9" + NEXT_HOP, 11),  # segment type 5
        (ORIGIN + "40 02 02 02 00" + NEXT_HOP, 11),  # empty segment
        (ORIGIN + "40 02 06 02 02 0000fde9" + NEXT_HOP, 11),  # segment overrun
        (ORIGIN + "40 02 07 02 01 0000fde9 02" + NEXT_HOP, 11),  # one octet left over
        (ORIGIN + AS_PATH + "40 03 05 0a00000100", 5),  # NEXT_HOP length 5
        (ORIGIN + AS_PATH + "40 03 04 00000000", 8),  # NEXT_HOP 0.0.0.0
        (ORIGIN + AS_PATH + "40 03 04 e0000001", 8),  # NEXT_HOP multicast
        (GOOD + "80 04 03 000001", 5),  # MED length 3
        (GOOD + "40 05 02 0001", 5),  # LOCAL_PREF length 2
        (GOOD + "c0 08 05 0000000100", 5),  # COMMUNITIES not a multiple of 4
        (GOOD + "c0 08 00", 5),  # COMMUNITIES empty
        (GOOD + "80 09 03 0a0000", 5),  # ORIGINATOR_ID length 3
        (GOOD + "80 0a 00", 5),  # CLUSTER_LIST empty
        (GOOD + "c0 20 0b 0000000100000002000000", 5),  # LARGE_COMMUNITY length 11
        (AS_PATH + NEXT_HOP, 3),  # ORIGIN missing
        (ORIGIN + NEXT_HOP, 3),  # AS_PATH missing
        (ORIGIN + AS_PATH, 3),  # NEXT_HOP missing with NLRI
        (GOOD + "40 05 04 0000", 1),  # RFC 7606 §4: last attribute overruns the section
        (GOOD + "40 05", 1),  # RFC 7606 §4: header fragment at the end
    ],
)
def test_treat_as_withdraw(section: str, subcode: int) -> None:
    decoded, err = _withdrawn(update(section, nlri=P24))
    assert (err.code, err.subcode) == (3, subcode)
    assert decoded.withdrawn == (P24_BYTES,)


def test_missing_attribute_error_names_the_type_code() -> None:
    _, err = _withdrawn(update(ORIGIN + NEXT_HOP, nlri=P24))
    assert err.data == b"\x02"


def test_nlri_without_any_attribute_is_withdrawn() -> None:
    _, err = _withdrawn(update("", nlri=P24))
    assert (err.subcode, err.data) == (3, b"\x01")


def test_withdrawn_routes_are_kept_alongside_treat_as_withdraw() -> None:
    raw = update("40 01 01 07" + AS_PATH + NEXT_HOP, nlri=P24, withdrawn="10 0a01")
    decoded = decode_message(raw)
    assert isinstance(decoded, Update)
    assert decoded.withdrawn == (h("10 0a01"), P24_BYTES)


def test_confederation_segment_from_ebgp_is_treat_as_withdraw() -> None:
    section = ORIGIN + "40 02 06 03 01 0000fde9" + NEXT_HOP
    _, err = _withdrawn(update(section, nlri=P24), EBGP)
    assert (err.subcode, err.action) == (11, TAW)
    # The same path from an iBGP peer (a confederation member) is fine.
    ok = decode_message(update(section, nlri=P24))
    assert isinstance(ok, Update) and ok.errors == () and ok.nlri == (P24_BYTES,)


def test_treat_as_withdraw_moves_mp_reach_prefixes_to_mp_unreach() -> None:
    p6 = "30 20010db80001"
    reach = "800e 1c 0002 01 10 20010db8000000000000000000000001 00" + p6
    decoded = decode_message(update(reach + "40 01 01 09" + AS_PATH))
    assert isinstance(decoded, Update)
    assert decoded.mp_reach is None and decoded.attributes is None
    assert decoded.mp_unreach == MpUnreach(2, 1, (h(p6),))
    assert [(e.subcode, e.action) for e in decoded.errors if isinstance(e, BGPError)] == [(6, TAW)]
    assert decoded.is_end_of_rib() is None


def test_treat_as_withdraw_merges_mp_reach_into_mp_unreach_of_same_family() -> None:
    p6a, p6b = "30 20010db80001", "30 20010db80002"
    reach = "800e 1c 0002 01 10 20010db8000000000000000000000001 00" + p6a
    unreach = "800f 0a 0002 01" + p6b
    decoded = decode_message(update(reach + unreach + "40 01 01 09" + AS_PATH))
    assert isinstance(decoded, Update)
    assert decoded.mp_unreach == MpUnreach(2, 1, (h(p6b), h(p6a)))


def test_mp_reach_needs_no_next_hop_attribute() -> None:
    reach = "800e 1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80001"
    decoded = decode_message(update(reach + ORIGIN + AS_PATH))
    assert isinstance(decoded, Update) and decoded.errors == () and decoded.mp_reach is not None


def test_malformed_attribute_without_nlri_withdraws_nothing() -> None:
    decoded = decode_message(update("40 01 01 07" + AS_PATH))
    assert isinstance(decoded, Update)
    assert decoded.withdrawn == () and decoded.attributes is None
    assert [e.subcode for e in decoded.errors if isinstance(e, BGPError)] == [6]


def test_withdraw_beats_discard_when_both_occur() -> None:
    decoded = decode_message(update("40 01 01 07" + AS_PATH + NEXT_HOP + "40 06 01 00", nlri=P24))
    assert isinstance(decoded, Update)
    actions = sorted(e.action for e in decoded.errors if isinstance(e, BGPError))
    assert actions == [DISCARD, TAW]
    assert decoded.withdrawn == (P24_BYTES,)


# --- UPDATE: attribute discard ---------------------------------------------------------------


def _kept(raw: bytes, ctx: CodecContext = CTX4) -> tuple[Update, list[BGPError]]:
    decoded = Decoder(ctx).decode(raw)
    assert isinstance(decoded, Update)
    assert decoded.nlri == (P24_BYTES,) and decoded.attributes is not None
    return decoded, [e for e in decoded.errors if isinstance(e, BGPError)]


BASE = PathAttributes(as_path=((2, (65001,)),), next_hop="10.0.0.1")


@pytest.mark.parametrize(
    ("extra", "ctx", "subcode"),
    [
        ("40 06 01 00", CTX4, 5),  # ATOMIC_AGGREGATE with a value
        ("c0 07 07 0000fde8 0a0000", CTX4, 5),  # AGGREGATOR of 7 octets (4-octet session)
        ("c0 07 08 0000fde8 0a000001", CTX2, 5),  # AGGREGATOR of 8 octets (2-octet session)
        ("40 05 04 00000064", EBGP, 9),  # LOCAL_PREF from an eBGP peer (RFC 7606 §7.5)
        ("c0 11 06 02 01 00011170", CTX4, 9),  # AS4_PATH between NEW speakers (RFC 6793 §6)
        ("c0 12 08 00011170 0a000001", CTX4, 9),  # AS4_AGGREGATOR between NEW speakers
        ("c0 12 06 0001 0a000001", CTX2, 5),  # AS4_AGGREGATOR of 6 octets
        ("800e 09 0019 46 04 0a000001 00", CTX4, 9),  # MP_REACH of an unsupported family
    ],
)
def test_attribute_discard(extra: str, ctx: CodecContext, subcode: int) -> None:
    as_path = AS_PATH if ctx.four_octet_as else "40 02 04 02 01 fde9"
    decoded, errors = _kept(update(ORIGIN + as_path + NEXT_HOP + extra, nlri=P24), ctx)
    assert decoded.attributes == BASE
    assert [(e.code, e.subcode, e.action) for e in errors] == [(3, subcode, DISCARD)]


def test_repeated_attribute_keeps_the_first_copy() -> None:
    # RFC 7606 §3: only MP_REACH/MP_UNREACH repetition resets the session.
    decoded, errors = _kept(update(GOOD + "80 04 04 00000001 80 04 04 00000002", nlri=P24))
    assert decoded.attributes is not None and decoded.attributes.med == 1
    assert [(e.subcode, e.action, e.data) for e in errors] == [(1, DISCARD, h("800404 00000002"))]


def test_malformed_as4_path_is_discarded_and_as_path_used() -> None:
    section = ORIGIN + "40 02 04 02 01 5ba0" + NEXT_HOP + "c0 11 06 07 01 00011170"
    decoded, errors = _kept(update(section, nlri=P24), CTX2)
    assert decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, (23456,)),)
    assert [(e.subcode, e.action) for e in errors] == [(11, DISCARD)]


def test_confederation_segments_in_as4_path_are_dropped() -> None:
    section = ORIGIN + "40 02 04 02 01 5ba0" + NEXT_HOP + "c0 11 0c 03 01 0000fde8 02 01 00011170"
    decoded, errors = _kept(update(section, nlri=P24), CTX2)
    assert decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, (70000,)),)
    assert errors == []


def test_aggregator_other_than_as_trans_makes_as4_attributes_stale() -> None:
    # RFC 6793 §4.2.3: an OLD speaker aggregated after AS4_* were attached.
    section = (
        ORIGIN
        + "40 02 04 02 01 5ba0"
        + NEXT_HOP
        + "c0 07 06 fde8 0a000001"
        + "c0 11 06 02 01 00011170"
        + "c0 12 08 00011170 0a000002"
    )
    decoded, errors = _kept(update(section, nlri=P24), CTX2)
    assert decoded.attributes is not None
    assert decoded.attributes.as_path == ((2, (23456,)),)
    assert decoded.attributes.aggregator == Aggregator(65000, "10.0.0.1")
    assert errors == []
