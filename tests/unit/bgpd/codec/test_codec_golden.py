"""Golden vectors: raw bytes written by hand from the RFC layouts, and their decoded form.

Each vector is checked both ways: the bytes decode to the dataclass, and the dataclass encodes
to exactly the bytes (except where noted: decode-only vectors for forms we accept but never
produce, such as an Extended Length flag on a short attribute).
"""

from __future__ import annotations

import pytest

from bgpd.codec.attributes import encode_path_attributes
from bgpd.codec.capabilities import decode_capability, encode_capability
from bgpd.codec.messages import CodecContext, decode_message, encode_message
from bgpd.codec.types import (
    AddPath,
    Aggregator,
    Capability,
    ExtendedMessage,
    ExtendedNextHop,
    FourOctetAs,
    GracefulRestart,
    Keepalive,
    Message,
    MpReach,
    MpUnreach,
    Multiprotocol,
    Notification,
    Open,
    Origin,
    PathAttributes,
    RouteRefresh,
    RouteRefreshCap,
    UnknownAttribute,
    UnknownCapability,
    Update,
)

MARKER = "ff" * 16
CTX4 = CodecContext()
CTX2 = CodecContext(four_octet_as=False)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


def msg(length: str, mtype: str, body: str) -> bytes:
    """Header (marker, the hand-counted 2-octet length, type) + body."""
    return h(MARKER + length + mtype + body)


# --- messages --------------------------------------------------------------------------------

P24 = h("18 0a f4 01")  # 10.244.1.0/24
P16 = h("10 0a 01")  # 10.1.0.0/16
P32 = h("20 c0 00 02 01")  # 192.0.2.1/32
P6 = h("30 2001 0db8 0001")  # 2001:db8:1::/48

BASE_ATTRS = PathAttributes(
    origin=Origin.IGP,
    as_path=((2, (65001,)),),
    next_hop="10.0.0.1",
    med=100,
    local_pref=100,
)

MESSAGE_VECTORS: list[tuple[str, bytes, Message]] = [
    ("keepalive", msg("0013", "04", ""), Keepalive()),
    ("notification", msg("0015", "03", "06 02"), Notification(6, 2)),
    (
        "notification with data (RFC 8203 shutdown message)",
        msg("0019", "03", "06 02 03 627965"),
        Notification(6, 2, b"\x03bye"),
    ),
    ("route-refresh", msg("0017", "05", "0001 00 01"), RouteRefresh(1, 1)),
    ("route-refresh EoRR (RFC 7313)", msg("0017", "05", "0002 02 01"), RouteRefresh(2, 1, 2)),
    (
        "open without optional parameters",
        msg("001d", "01", "04 fde8 00b4 0a000001 00"),
        Open(65000, 180, "10.0.0.1"),
    ),
    (
        "open with every capability",
        msg(
            "004c",
            "01",
            "04 fde8 00b4 0a000001 2f"
            "02 2d"
            "01 04 0001 00 01"  # Multiprotocol IPv4 unicast
            "01 04 0002 00 01"  # Multiprotocol IPv6 unicast
            "02 00"  # Route Refresh
            "41 04 0000fde8"  # 4-octet AS 65000
            "40 06 8078 0001 01 80"  # Graceful Restart: R bit, 120 s, IPv4 forwarding kept
            "45 04 0001 01 03"  # ADD-PATH IPv4 unicast send+receive
            "06 00"  # Extended Message
            "46 00"  # Enhanced Route Refresh: kept as unknown
            "49 05 04 686f7374",  # FQDN: kept as unknown
        ),
        Open(
            65000,
            180,
            "10.0.0.1",
            (
                Multiprotocol(1, 1),
                Multiprotocol(2, 1),
                RouteRefreshCap(),
                FourOctetAs(65000),
                GracefulRestart(8, 120, ((1, 1, 0x80),)),
                AddPath(((1, 1, 3),)),
                ExtendedMessage(),
                UnknownCapability(70, b""),
                UnknownCapability(73, b"\x04host"),
            ),
        ),
    ),
    (
        "open from a 4-octet AS: My AS is AS_TRANS",
        msg("0025", "01", "04 5ba0 005a 01010101 08 02 06 41 04 00011170"),
        Open(70000, 90, "1.1.1.1", (FourOctetAs(70000),)),
    ),
    (
        "update announcing three IPv4 prefixes",
        msg(
            "0045",
            "02",
            "0000 0022"
            "40 01 01 00"  # ORIGIN IGP
            "40 02 06 02 01 0000fde9"  # AS_PATH: AS_SEQUENCE (65001)
            "40 03 04 0a000001"  # NEXT_HOP 10.0.0.1
            "80 04 04 00000064"  # MULTI_EXIT_DISC 100
            "40 05 04 00000064"  # LOCAL_PREF 100
            "18 0af401  10 0a01  20 c0000201",
        ),
        Update(attributes=BASE_ATTRS, nlri=(P24, P16, P32)),
    ),
    (
        "update withdrawing two IPv4 prefixes",
        msg("0020", "02", "0009 180af401 20c0000201 0000"),
        Update(withdrawn=(P24, P32)),
    ),
    ("End-of-RIB IPv4 unicast", msg("0017", "02", "0000 0000"), Update()),
    (
        "update announcing IPv6 via MP_REACH_NLRI, global + link-local next hop",
        msg(
            "004d",
            "02",
            "0000 0036"
            "80 0e 2c 0002 01 20"
            "20010db8000000000000000000000001 fe800000000000000000000000000001"
            "00"  # Reserved
            "30 20010db80001"
            "40 01 01 00"
            "40 02 00",  # empty AS_PATH (iBGP-originated)
        ),
        Update(
            attributes=PathAttributes(),
            mp_reach=MpReach(2, 1, ("2001:db8::1", "fe80::1"), (P6,)),
        ),
    ),
    (
        "update withdrawing IPv6 via MP_UNREACH_NLRI",
        msg("0024", "02", "0000 000d 80 0f 0a 0002 01 30 20010db80001"),
        Update(mp_unreach=MpUnreach(2, 1, (P6,))),
    ),
    (
        "End-of-RIB IPv6 unicast",
        msg("001d", "02", "0000 0006 80 0f 03 0002 01"),
        Update(mp_unreach=MpUnreach(2, 1, ())),
    ),
    (
        "IPv4 unicast via MP_REACH_NLRI (RFC 4760)",
        msg(
            "0034",
            "02",
            "0000 001d 80 0e 0d 0001 01 04 0a000001 00 18 0af401"
            "40 01 01 00 40 02 06 02 01 0000fde9",
        ),
        Update(
            attributes=PathAttributes(as_path=((2, (65001,)),)),
            mp_reach=MpReach(1, 1, ("10.0.0.1",), (P24,)),
        ),
    ),
    (
        "IPv4 unicast with a zero global + link-local IPv6 next hop (RFC 8950, unnumbered)",
        msg(
            "0050",
            "02",
            "0000 0039 80 0e 29 0001 01 20"
            "00000000000000000000000000000000 fe800000000000000000000000000001"
            "00 18 0af401"
            "40 01 01 00 40 02 06 02 01 0000fde9",
        ),
        Update(
            attributes=PathAttributes(as_path=((2, (65001,)),)),
            mp_reach=MpReach(1, 1, ("::", "fe80::1"), (P24,)),
        ),
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "decoded"), MESSAGE_VECTORS, ids=[v[0] for v in MESSAGE_VECTORS]
)
def test_message_vectors(name: str, raw: bytes, decoded: Message) -> None:
    assert decode_message(raw, CTX4) == decoded
    assert encode_message(decoded, CTX4) == raw


def test_end_of_rib_vectors_are_recognised() -> None:
    assert decode_message(msg("0017", "02", "0000 0000")).is_end_of_rib() == (1, 1)
    eor6 = decode_message(msg("001d", "02", "0000 0006 80 0f 03 0002 01"))
    assert isinstance(eor6, Update)
    assert eor6.is_end_of_rib() == (2, 1)


# --- decode-only message forms ---------------------------------------------------------------


def test_open_with_one_parameter_per_capability() -> None:
    # Some speakers put each capability in its own optional parameter (RFC 5492 §4 allows it).
    raw = msg("0029", "01", "04 fde8 00b4 0a000001 0c 02 06 01 04 0001 00 01 02 02 02 00")
    assert decode_message(raw) == Open(
        65000, 180, "10.0.0.1", (Multiprotocol(1, 1), RouteRefreshCap())
    )


def test_open_with_rfc9072_extended_optional_parameters() -> None:
    # Non-Ext OP Len 255, Non-Ext OP Type 255, 2-octet length 11, parameter with 2-octet length.
    raw = msg("002b", "01", "04 fde8 00b4 0a000001 ff ff 000b 02 0008 01 04 0001 00 01 02 00")
    assert decode_message(raw) == Open(
        65000, 180, "10.0.0.1", (Multiprotocol(1, 1), RouteRefreshCap())
    )


def test_open_encodes_rfc9072_form_only_when_capabilities_exceed_255_octets() -> None:
    big = Open(65000, 180, "10.0.0.1", (UnknownCapability(200, b"x" * 255),))
    raw = encode_message(big)
    assert raw[28:30] == b"\xff\xff"
    assert raw[30:32] == (3 + 257).to_bytes(2, "big")
    assert decode_message(raw) == big
    small = encode_message(Open(65000, 180, "10.0.0.1", (UnknownCapability(200, b"x" * 251),)))
    assert small[28] == 255 and small[29] == 2  # 253 + 2 octets of parameter header


def test_extended_length_flag_on_short_attribute_is_accepted() -> None:
    raw = msg("0025", "02", "0000 000e 40 01 01 00 50 02 0006 02 01 0000fde8")
    assert decode_message(raw) == Update(attributes=PathAttributes(as_path=((2, (65000,)),)))


def test_prefix_with_host_bits_set_is_canonicalised() -> None:
    # 10.244.1.7/24 sent with trailing bits: /20 with 0x0f in its last octet.
    raw = msg("0029", "02", "0000 000e 40 01 01 00 40 02 00 40 03 04 0a000001 14 0af41f")
    decoded = decode_message(raw)
    assert isinstance(decoded, Update)
    assert decoded.nlri == (h("14 0af410"),)


# --- attributes (section = ORIGIN + AS_PATH + the attribute under test) ----------------------

ORIGIN_IGP = "40 01 01 00"
EMPTY_AS_PATH = "40 02 00"

ATTRIBUTE_VECTORS: list[tuple[str, CodecContext, str, PathAttributes]] = [
    ("ORIGIN EGP", CTX4, "40 01 01 01" + EMPTY_AS_PATH, PathAttributes(origin=Origin.EGP)),
    (
        "ORIGIN INCOMPLETE",
        CTX4,
        "40 01 01 02" + EMPTY_AS_PATH,
        PathAttributes(origin=Origin.INCOMPLETE),
    ),
    (
        "AS_PATH 4-octet: AS_SEQUENCE + AS_SET",
        CTX4,
        ORIGIN_IGP + "40 02 10 02 02 0000fde8 00011170 01 01 0000fdea",
        PathAttributes(as_path=((2, (65000, 70000)), (1, (65002,)))),
    ),
    (
        "AS_PATH 2-octet",
        CTX2,
        ORIGIN_IGP + "40 02 06 02 02 fde8 fde9",
        PathAttributes(as_path=((2, (65000, 65001)),)),
    ),
    (
        "AS_PATH confederation segments (iBGP)",
        CTX4,
        ORIGIN_IGP + "40 02 0c 03 01 0000fde8 04 01 0000fde9",
        PathAttributes(as_path=((3, (65000,)), (4, (65001,)))),
    ),
    (
        "NEXT_HOP",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "40 03 04 c0000201",
        PathAttributes(next_hop="192.0.2.1"),
    ),
    (
        "MULTI_EXIT_DISC",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "80 04 04 00000100",
        PathAttributes(med=256),
    ),
    (
        "LOCAL_PREF",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "40 05 04 000000c8",
        PathAttributes(local_pref=200),
    ),
    (
        "ATOMIC_AGGREGATE",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "40 06 00",
        PathAttributes(atomic_aggregate=True),
    ),
    (
        "AGGREGATOR 4-octet",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "c0 07 08 00011170 c0000201",
        PathAttributes(aggregator=Aggregator(70000, "192.0.2.1")),
    ),
    (
        "AGGREGATOR 2-octet",
        CTX2,
        ORIGIN_IGP + EMPTY_AS_PATH + "c0 07 06 fde8 c0000201",
        PathAttributes(aggregator=Aggregator(65000, "192.0.2.1")),
    ),
    (
        "COMMUNITIES incl. NO_EXPORT",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "c0 08 08 fde80064 ffffff01",
        PathAttributes(communities=((65000 << 16) | 100, 0xFFFFFF01)),
    ),
    (
        "ORIGINATOR_ID",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "80 09 04 0a000002",
        PathAttributes(originator_id="10.0.0.2"),
    ),
    (
        "CLUSTER_LIST",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "80 0a 08 0a000003 0a000004",
        PathAttributes(cluster_list=("10.0.0.3", "10.0.0.4")),
    ),
    (
        "LARGE_COMMUNITY",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "c0 20 0c 0000fde8 00000001 00000002",
        PathAttributes(large_communities=((65000, 1, 2),)),
    ),
    (
        "unknown optional transitive, already PARTIAL",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "e0 63 02 abcd",
        PathAttributes(unknown=(UnknownAttribute(0xE0, 99, b"\xab\xcd"),)),
    ),
    (
        "AS4_PATH and AS4_AGGREGATOR on a 2-octet session (RFC 6793)",
        CTX2,
        ORIGIN_IGP
        + "40 02 06 02 02 fde8 5ba0"  # AS_PATH (65000, AS_TRANS)
        + "c0 07 06 5ba0 c0000201"  # AGGREGATOR AS_TRANS
        + "c0 11 0a 02 02 0000fde8 00011170"  # AS4_PATH (65000, 70000)
        + "c0 12 08 00011170 c0000201",  # AS4_AGGREGATOR 70000
        PathAttributes(as_path=((2, (65000, 70000)),), aggregator=Aggregator(70000, "192.0.2.1")),
    ),
    (
        "long unknown attribute uses Extended Length",
        CTX4,
        ORIGIN_IGP + EMPTY_AS_PATH + "f0 63 0100" + "5a" * 256,
        PathAttributes(unknown=(UnknownAttribute(0xE0, 99, b"\x5a" * 256),)),
    ),
]


def _update_with_section(section: bytes) -> bytes:
    body = b"\x00\x00" + len(section).to_bytes(2, "big") + section
    return h(MARKER) + (19 + len(body)).to_bytes(2, "big") + b"\x02" + body


@pytest.mark.parametrize(
    ("name", "ctx", "section", "expected"), ATTRIBUTE_VECTORS, ids=[v[0] for v in ATTRIBUTE_VECTORS]
)
def test_attribute_vectors(
    name: str, ctx: CodecContext, section: str, expected: PathAttributes
) -> None:
    decoded = decode_message(_update_with_section(h(section)), ctx)
    assert isinstance(decoded, Update)
    assert decoded.errors == ()
    assert decoded.attributes == expected
    assert encode_path_attributes(expected, ctx) == h(section)


def test_unknown_transitive_attribute_is_passed_on_with_partial_bit() -> None:
    section = ORIGIN_IGP + EMPTY_AS_PATH + "c0 63 02 abcd"
    decoded = decode_message(_update_with_section(h(section)))
    assert isinstance(decoded, Update) and decoded.attributes is not None
    assert decoded.attributes.unknown == (UnknownAttribute(0xC0, 99, b"\xab\xcd"),)
    assert encode_path_attributes(decoded.attributes, CTX4) == h(
        ORIGIN_IGP + EMPTY_AS_PATH + "e0 63 02 abcd"
    )


def test_unknown_optional_non_transitive_attribute_is_dropped() -> None:
    decoded = decode_message(_update_with_section(h(ORIGIN_IGP + EMPTY_AS_PATH + "80 64 01 00")))
    assert isinstance(decoded, Update)
    assert decoded.attributes == PathAttributes()
    assert decoded.errors == ()


def test_attributes_are_encoded_in_type_code_order_mp_first() -> None:
    update = Update(
        attributes=PathAttributes(
            next_hop="10.0.0.1", unknown=(UnknownAttribute(0xE0, 11, b""),), med=1
        ),
        nlri=(P24,),
        mp_unreach=MpUnreach(2, 1, ()),
    )
    raw = encode_message(update)
    section = raw[23 : 23 + int.from_bytes(raw[21:23], "big")]
    codes = []
    pos = 0
    while pos < len(section):
        codes.append(section[pos + 1])
        pos += 3 + section[pos + 2]
    assert codes == [15, 1, 2, 3, 4, 11]


# --- capabilities ----------------------------------------------------------------------------

CAPABILITY_VECTORS: list[tuple[str, Capability]] = [
    ("01 04 0002 00 01", Multiprotocol(2, 1)),
    ("02 00", RouteRefreshCap()),
    ("06 00", ExtendedMessage()),
    ("40 02 0078", GracefulRestart(0, 120)),
    ("40 0a c0b4 0001 01 80 0002 01 00", GracefulRestart(0xC, 180, ((1, 1, 0x80), (2, 1, 0)))),
    ("41 04 fffffffe", FourOctetAs(4294967294)),
    ("45 08 0001 01 01 0002 01 02", AddPath(((1, 1, 1), (2, 1, 2)))),
    # RFC 8950 §3: IPv4 unicast (AFI 1, SAFI 1) may carry an IPv6 (AFI 2) next hop.
    ("05 06 0001 0001 0002", ExtendedNextHop(((1, 1, 2),))),
    ("05 0c 0001 0001 0002 0001 0080 0002", ExtendedNextHop(((1, 1, 2), (1, 128, 2)))),
    ("80 00", UnknownCapability(128, b"")),
    ("46 00", UnknownCapability(70, b"")),
]


@pytest.mark.parametrize(("raw", "cap"), CAPABILITY_VECTORS, ids=[v[0] for v in CAPABILITY_VECTORS])
def test_capability_vectors(raw: str, cap: Capability) -> None:
    data = h(raw)
    assert decode_capability(data[0], data[2:]) == cap
    assert len(data) == 2 + data[1]
    assert encode_capability(cap) == data
