"""The NLRI parser's bulk path (a run of prefixes of one length sliced in one call) gives what
the prefix-by-prefix loop gives: the same prefixes in the same order, or the same error, for
runs of one length, runs with host bits set, mixed lengths, ADD-PATH entries and garbage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd.codec.errors import BGPError
from bgpd.codec.nlri import _parse_each, parse_prefixes

SUBCODE = 10  # Invalid Network Field


def outcome(parse: object, data: bytes, max_bits: int, add_path: bool) -> object:
    """The parsed prefixes, or the error's subcode and reason."""
    try:
        return parse(data, 3, len(data) - 2, max_bits, add_path, SUBCODE)  # type: ignore[operator]
    except BGPError as err:
        return (err.subcode, err.reason)


@st.composite
def fields(draw: st.DrawFn) -> tuple[bytes, int, bool]:
    """An NLRI field between 3 octets of header and 2 of trailer: mostly well-formed runs of
    one length (what a table arriving looks like), sometimes with a foreign entry or junk."""
    max_bits = draw(st.sampled_from([32, 128]))
    add_path = draw(st.booleans())
    plen = draw(st.integers(0, max_bits))
    size = (plen + 7) >> 3
    count = draw(st.integers(1, 40))
    host_bits = draw(st.booleans())
    entries = []
    for _ in range(count):
        body = bytearray(draw(st.binary(min_size=size, max_size=size)))
        if size and not host_bits and plen & 7:
            body[-1] &= (0xFF << (8 - (plen & 7))) & 0xFF  # clean: no host bits
        path_id = draw(st.binary(min_size=4, max_size=4)) if add_path else b""
        entries.append(path_id + bytes((plen,)) + bytes(body))
    if draw(st.booleans()):  # a different entry somewhere: another length, or junk
        odd = draw(st.binary(min_size=1, max_size=6))
        entries.insert(draw(st.integers(0, len(entries))), odd)
    return b"\xaa\xbb\xcc" + b"".join(entries) + b"\xdd\xee", max_bits, add_path


@settings(max_examples=500, deadline=None)
@given(field=fields())
def test_the_bulk_path_parses_what_the_loop_parses(field: tuple[bytes, int, bool]) -> None:
    data, max_bits, add_path = field
    assert outcome(parse_prefixes, data, max_bits, add_path) == outcome(
        _parse_each, data, max_bits, add_path
    )


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=5, max_size=60), add_path=st.booleans())
def test_any_bytes_parse_alike(data: bytes, add_path: bool) -> None:
    assert outcome(parse_prefixes, data, 32, add_path) == outcome(_parse_each, data, 32, add_path)


def test_a_run_of_24s_and_a_run_with_host_bits() -> None:
    run = bytes((24, 10, 0, 1, 24, 10, 0, 2))
    assert parse_prefixes(run, 0, len(run), 32, False, SUBCODE) == (run[:4], run[4:])
    # /26 blocks: 10.0.0.64/26 is clean, 10.0.0.65/26 has a host bit and is cleared.
    blocks = bytes((26, 10, 0, 0, 64, 26, 10, 0, 0, 65))
    assert parse_prefixes(blocks, 0, len(blocks), 32, False, SUBCODE) == (
        bytes((26, 10, 0, 0, 64)),
        bytes((26, 10, 0, 0, 64)),
    )
