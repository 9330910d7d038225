"""Hypothesis strategies for codec messages, shared by the codec property tests.

Each strategy generates values in the codec's canonical form (host bits clear, addresses as
``inet_ntop`` prints them), so ``decode(encode(m)) == m`` is the exact property to test.
"""

from __future__ import annotations

import socket

from hypothesis import strategies as st

from bgpd.codec.capabilities import CAPABILITY_DECODERS
from bgpd.codec.messages import CodecContext
from bgpd.codec.types import (
    AddPath,
    Aggregator,
    AsPath,
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

U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
U8 = st.integers(0, 255)
KNOWN_ATTRIBUTE_CODES = frozenset((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 32))
ASN = st.integers(1, 2**32 - 1)  # AS 0 is malformed wherever it appears (RFC 7607)
KNOWN_CAPABILITY_CODES = frozenset(CAPABILITY_DECODERS)

IPV4 = (1, 1)
IPV6 = (2, 1)


def _prefix(bits: int) -> st.SearchStrategy[bytes]:
    def build(length: int, value: int) -> bytes:
        octets = (length + 7) // 8
        masked = value & (((1 << length) - 1) << (bits - length)) if length else 0
        return bytes((length,)) + masked.to_bytes(bits // 8, "big")[:octets]

    return st.builds(build, st.integers(0, bits), st.integers(0, 2**bits - 1))


ipv4_prefix = _prefix(32)
ipv6_prefix = _prefix(128)


def entries(prefix: st.SearchStrategy[bytes], add_path: bool) -> st.SearchStrategy[bytes]:
    """NLRI entries; with ADD-PATH each starts with a 4-octet path identifier (RFC 7911)."""
    if not add_path:
        return prefix
    return st.builds(lambda pid, p: pid.to_bytes(4, "big") + p, U32, prefix)


any_ipv4 = U32.map(lambda n: socket.inet_ntoa(n.to_bytes(4, "big")))
# A valid NEXT_HOP: first octet 1..223 (RFC 4271 §6.3 syntactic check).
host_ipv4 = st.integers(1 << 24, (224 << 24) - 1).map(
    lambda n: socket.inet_ntoa(n.to_bytes(4, "big"))
)
ipv6_address = st.integers(0, 2**128 - 1).map(
    lambda n: socket.inet_ntop(socket.AF_INET6, n.to_bytes(16, "big"))
)


def as_paths(four_octet: bool, confed: bool) -> st.SearchStrategy[AsPath]:
    """AS paths a session of this kind carries losslessly.

    On a 2-octet session confederation segments are only at the front and hold 2-octet ASes,
    because AS4_PATH never carries them (RFC 6793 §6).
    """
    seq_or_set = st.tuples(st.sampled_from((1, 2)), st.lists(ASN, min_size=1, max_size=12))
    body = st.lists(seq_or_set.map(lambda s: (s[0], tuple(s[1]))), max_size=4)
    if not confed:
        return body.map(tuple)
    confed_asn = st.integers(1, 0xFFFF) if not four_octet else ASN
    confed_seg = st.tuples(st.sampled_from((3, 4)), st.lists(confed_asn, min_size=1, max_size=5))
    front = st.lists(confed_seg.map(lambda s: (s[0], tuple(s[1]))), max_size=2)
    return st.builds(lambda f, b: tuple(f) + tuple(b), front, body)


def unknown_attributes() -> st.SearchStrategy[tuple[UnknownAttribute, ...]]:
    codes = st.lists(
        st.integers(0, 255).filter(lambda c: c not in KNOWN_ATTRIBUTE_CODES),
        unique=True,
        max_size=3,
    )

    def build(codes: list[int], values: list[bytes]) -> tuple[UnknownAttribute, ...]:
        # Passed-on optional transitive attributes carry PARTIAL (RFC 4271 §5).
        pairs = zip(sorted(codes), values[: len(codes)], strict=True)
        return tuple(UnknownAttribute(0xE0, code, value) for code, value in pairs)

    return st.builds(build, codes, st.lists(st.binary(max_size=300), min_size=3, max_size=3))


def path_attributes(
    ctx: CodecContext, need_next_hop: bool = False
) -> st.SearchStrategy[PathAttributes]:
    four = ctx.four_octet_as
    # RFC 6793 §4.2.3: an AGGREGATOR other than AS_TRANS makes AS4_PATH stale, so a 2-octet
    # session only round-trips aggregators that needed AS4_AGGREGATOR.
    aggregator_asn = ASN if four else st.integers(0x10000, 2**32 - 1)
    return st.builds(
        PathAttributes,
        origin=st.sampled_from(Origin),
        as_path=as_paths(four, confed=not ctx.ebgp),
        next_hop=host_ipv4 if need_next_hop else st.none() | host_ipv4,
        med=st.none() | U32,
        local_pref=st.none() if ctx.ebgp else st.none() | U32,
        atomic_aggregate=st.booleans(),
        aggregator=st.none() | st.builds(Aggregator, aggregator_asn, any_ipv4),
        communities=st.lists(U32, max_size=8).map(tuple),
        # RFC 4456 §8: internal to an AS; discarded when they come over eBGP.
        originator_id=st.none() if ctx.ebgp else st.none() | any_ipv4,
        cluster_list=st.just(()) if ctx.ebgp else st.lists(any_ipv4, max_size=4).map(tuple),
        large_communities=st.lists(st.tuples(U32, U32, U32), max_size=4).map(tuple),
        extended_communities=st.lists(st.integers(0, 2**64 - 1), max_size=4).map(tuple),
        unknown=unknown_attributes(),
    )


def _mp_reach(ctx: CodecContext) -> st.SearchStrategy[MpReach]:
    v6 = st.builds(
        MpReach,
        afi=st.just(2),
        safi=st.just(1),
        next_hop=st.lists(ipv6_address, min_size=1, max_size=2).map(tuple),
        nlri=st.lists(entries(ipv6_prefix, IPV6 in ctx.add_path_send), max_size=20).map(tuple),
    )
    v4 = st.builds(
        MpReach,
        afi=st.just(1),
        safi=st.just(1),
        # RFC 8950: an IPv6 next hop (global[, link-local]) for IPv4 NLRI too
        next_hop=any_ipv4.map(lambda a: (a,))
        | st.lists(ipv6_address, min_size=1, max_size=2).map(tuple),
        nlri=st.lists(entries(ipv4_prefix, IPV4 in ctx.add_path_send), max_size=20).map(tuple),
    )
    return v6 | v4


def _mp_unreach(ctx: CodecContext) -> st.SearchStrategy[MpUnreach]:
    def family(afi: int, prefix: st.SearchStrategy[bytes]) -> st.SearchStrategy[MpUnreach]:
        ap = (afi, 1) in ctx.add_path_send
        withdrawn = st.lists(entries(prefix, ap), max_size=20).map(tuple)
        return st.builds(MpUnreach, st.just(afi), st.just(1), withdrawn)

    return family(2, ipv6_prefix) | family(1, ipv4_prefix)


@st.composite
def updates(draw: st.DrawFn, ctx: CodecContext) -> Update:
    ap = IPV4 in ctx.add_path_send
    withdrawn = tuple(draw(st.lists(entries(ipv4_prefix, ap), max_size=20)))
    nlri = tuple(draw(st.lists(entries(ipv4_prefix, ap), max_size=20)))
    mp_reach = draw(st.none() | _mp_reach(ctx))
    mp_unreach = draw(st.none() | _mp_unreach(ctx))
    announces = bool(nlri) or (mp_reach is not None and bool(mp_reach.nlri))
    attrs = path_attributes(ctx, need_next_hop=bool(nlri))
    attributes = draw(attrs if announces else st.none() | attrs)
    return Update(withdrawn, attributes, nlri, mp_reach, mp_unreach)


def capabilities(asn: int) -> st.SearchStrategy[list[Capability]]:
    families = st.lists(st.tuples(U16, U8, U8), max_size=4).map(tuple)
    cap: st.SearchStrategy[Capability] = st.one_of(
        st.builds(Multiprotocol, U16, U8),
        st.just(RouteRefreshCap()),
        st.just(ExtendedMessage()),
        st.builds(GracefulRestart, st.integers(0, 15), st.integers(0, 4095), families),
        st.builds(AddPath, families),
        st.builds(
            ExtendedNextHop, st.lists(st.tuples(U16, U16, U16), min_size=1, max_size=4).map(tuple)
        ),
        st.builds(
            UnknownCapability,
            U8.filter(lambda c: c not in KNOWN_CAPABILITY_CODES),
            st.binary(max_size=120),
        ),
    )
    return st.lists(cap, max_size=12)


@st.composite
def opens(draw: st.DrawFn) -> Open:
    asn = draw(U32)
    caps = draw(capabilities(asn))
    # The real AS of a 4-octet speaker is in its capability (RFC 6793).
    if asn > 0xFFFF or draw(st.booleans()):
        caps.insert(draw(st.integers(0, len(caps))), FourOctetAs(asn))
    return Open(asn, draw(U16), draw(any_ipv4), tuple(caps))


notifications = st.builds(Notification, U8, U8, st.binary(max_size=200))
route_refreshes = st.builds(RouteRefresh, U16, U8, U8)


def contexts() -> st.SearchStrategy[CodecContext]:
    families = st.frozensets(st.sampled_from((IPV4, IPV6)))

    def build(four: bool, ebgp: bool, add_path: frozenset[tuple[int, int]]) -> CodecContext:
        return CodecContext(
            four_octet_as=four,
            max_message_size=65535,
            ebgp=ebgp,
            add_path_receive=add_path,
            add_path_send=add_path,
        )

    return st.builds(build, st.booleans(), st.booleans(), families)


@st.composite
def messages_in_context(draw: st.DrawFn) -> tuple[CodecContext, Message]:
    ctx = draw(contexts())
    msg: Message = draw(
        st.one_of(updates(ctx), opens(), notifications, route_refreshes, st.just(Keepalive()))
    )
    return ctx, msg
