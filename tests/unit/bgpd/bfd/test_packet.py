"""The BFD Control packet codec: golden vectors (hex written from RFC 5880 §4.1 by hand), every
§6.8.6 reception rule, and properties: decode never raises anything but PacketError, and
decode(encode(p)) == p."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bgpd.bfd.packet import ControlPacket, Diag, PacketError, Rule, State, decode, encode

# (hex, decoded form). Byte 0 = version(3 bits) | diag(5); byte 1 = state(2) | P F C A D M.
GOLDEN = [
    (
        # Up, no diag, mult 3, discriminators 0x11223344 / 0x55667788, 100 ms both ways.
        "20c003181122334455667788000186a0000186a000000000",
        ControlPacket(
            state=State.UP,
            my_discriminator=0x11223344,
            your_discriminator=0x55667788,
            detect_mult=3,
            desired_min_tx_us=100_000,
            required_min_rx_us=100_000,
        ),
    ),
    (
        # Down, diag 1 (Control Detection Time Expired), Poll, mult 5, your discr 0, 1 s / 300 ms.
        "216005180000000100000000000f4240000493e000000000",
        ControlPacket(
            state=State.DOWN,
            my_discriminator=1,
            diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
            detect_mult=5,
            desired_min_tx_us=1_000_000,
            required_min_rx_us=300_000,
            poll=True,
        ),
    ),
    (
        # Init, diag 3 (Neighbor Signaled Down), Final, mult 1, echo RX 50 ms.
        "23900118deadbeef000000020007a1200007a1200000c350",
        ControlPacket(
            state=State.INIT,
            my_discriminator=0xDEADBEEF,
            your_discriminator=2,
            diag=Diag.NEIGHBOR_SIGNALED_DOWN,
            detect_mult=1,
            desired_min_tx_us=500_000,
            required_min_rx_us=500_000,
            required_min_echo_rx_us=50_000,
            final=True,
        ),
    ),
    (
        # AdminDown, diag 7, C and D bits, your discr 0 (allowed in AdminDown).
        "27 0a 03 18ffffffff00000000000f42400000000000000000",
        ControlPacket(
            state=State.ADMIN_DOWN,
            my_discriminator=0xFFFFFFFF,
            diag=Diag.ADMINISTRATIVELY_DOWN,
            desired_min_tx_us=1_000_000,
            required_min_rx_us=0,
            control_plane_independent=True,
            demand=True,
        ),
    ),
]


def raw(hexstr: str) -> bytes:
    return bytes.fromhex(hexstr.replace(" ", ""))


@pytest.mark.parametrize(("hexstr", "packet"), GOLDEN)
def test_golden_decode(hexstr: str, packet: ControlPacket) -> None:
    assert decode(raw(hexstr)) == packet


@pytest.mark.parametrize(("hexstr", "packet"), GOLDEN)
def test_golden_encode(hexstr: str, packet: ControlPacket) -> None:
    assert encode(packet) == raw(hexstr)


UP = raw(GOLDEN[0][0])


def patched(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (UP[:23], Rule.TRUNCATED),
        (b"", Rule.TRUNCATED),
        (patched(UP, 0, b"\x40"), Rule.VERSION),  # version 2
        (patched(UP, 0, b"\x00"), Rule.VERSION),  # version 0
        (patched(UP, 3, b"\x17"), Rule.LENGTH_TOO_SHORT),  # 23
        (patched(UP, 3, b"\x00"), Rule.LENGTH_TOO_SHORT),
        (patched(UP, 3, b"\x19"), Rule.LENGTH_EXCEEDS_PAYLOAD),  # 25 > 24 bytes
        (patched(UP, 2, b"\x00"), Rule.DETECT_MULT_ZERO),
        (patched(UP, 1, b"\xc1"), Rule.MULTIPOINT),
        (patched(UP, 4, b"\x00\x00\x00\x00"), Rule.MY_DISCRIMINATOR_ZERO),
        (patched(UP, 8, b"\x00\x00\x00\x00"), Rule.YOUR_DISCRIMINATOR_ZERO),  # Up
        (patched(patched(UP, 1, b"\x80"), 8, b"\x00" * 4), Rule.YOUR_DISCRIMINATOR_ZERO),  # Init
        # A bit with room for an authentication section: refused, we run without one.
        (
            patched(patched(UP, 1, b"\xc4"), 3, b"\x1a") + b"\x01\x02",
            Rule.AUTHENTICATION_UNSUPPORTED,
        ),
        # A bit without room for the Auth Type and Len bytes.
        (patched(UP, 1, b"\xc4"), Rule.LENGTH_TOO_SHORT),
    ],
)
def test_reception_rules(data: bytes, rule: Rule) -> None:
    with pytest.raises(PacketError) as info:
        decode(data)
    assert info.value.rule is rule


@pytest.mark.parametrize("state_byte", [b"\x40", b"\x00"], ids=["Down", "AdminDown"])
def test_your_discriminator_zero_allowed_in_down_states(state_byte: bytes) -> None:
    packet = decode(patched(patched(UP, 1, state_byte), 8, b"\x00" * 4))
    assert packet.your_discriminator == 0


def test_length_longer_than_24_and_trailing_bytes_accepted() -> None:
    assert decode(patched(UP, 3, b"\x1c") + b"\x00" * 4).my_discriminator == 0x11223344
    assert decode(UP + b"trailing").state is State.UP


def test_reserved_diagnostic_decodes_as_pseudo_member() -> None:
    packet = decode(patched(UP, 0, b"\x29"))  # version 1, diag 9
    assert int(packet.diag) == 9
    assert packet.diag.name == "RESERVED_9"


@pytest.mark.parametrize(
    "packet",
    [
        ControlPacket(State.UP, 1, detect_mult=0),
        ControlPacket(State.UP, 1, detect_mult=256),
        ControlPacket(State.UP, 2**32),
        ControlPacket(State.UP, 1, desired_min_tx_us=-1),
    ],
)
def test_encode_refuses_fields_out_of_range(packet: ControlPacket) -> None:
    with pytest.raises(ValueError):
        encode(packet)


@given(st.binary(max_size=64))
def test_decode_raises_only_packet_error(data: bytes) -> None:
    try:
        packet = decode(data)
    except PacketError:
        return
    # Whatever is accepted is re-encoded bit for bit (apart from the length, always 24 out).
    assert encode(packet) == data[:3] + bytes([24]) + data[4:24]


@given(st.binary(min_size=24, max_size=40))
def test_decode_of_version_1_bytes_raises_only_packet_error(data: bytes) -> None:
    # Force version 1 so the later rules are reached more often than in the test above.
    data = bytes([(data[0] & 0x1F) | 0x20]) + data[1:]
    try:
        packet = decode(data)
    except PacketError:
        return
    assert packet.version == 1


u32 = st.integers(min_value=0, max_value=2**32 - 1)
packets = st.builds(
    ControlPacket,
    state=st.sampled_from(State),
    my_discriminator=st.integers(min_value=1, max_value=2**32 - 1),
    your_discriminator=st.integers(min_value=1, max_value=2**32 - 1),
    diag=st.integers(min_value=0, max_value=31).map(Diag),
    detect_mult=st.integers(min_value=1, max_value=255),
    desired_min_tx_us=u32,
    required_min_rx_us=u32,
    required_min_echo_rx_us=u32,
    poll=st.booleans(),
    final=st.booleans(),
    control_plane_independent=st.booleans(),
    demand=st.booleans(),
)


@given(packets)
def test_roundtrip(packet: ControlPacket) -> None:
    assert decode(encode(packet)) == packet
