"""felix.kernel.batch's route-dump decoder against messages its own encoder builds (the kernel
side, a real dump of real routes, is covered by tests/integration/test_felix_routes.py)."""

from __future__ import annotations

import ipaddress
import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from felix.kernel.batch import (
    NLMSG_DONE,
    NLMSGHDR,
    RTM_NEWROUTE,
    RTMSG,
    DumpResult,
    _read_dump,
    encode_route,
)
from felix.plan import Route, RouteType, Scope

NAMES = {2: "up0", 3: "tunl0", 7: "cali1"}
INDEX = {name: index for index, name in NAMES.items()}
PRIORITY = {4: 0, 6: 1024}


def as_dump(messages: list[bytes], seq: int) -> bytes:
    """Turn replace requests into the kernel's dump answer: RTM_NEWROUTE with ``seq``."""
    out = bytearray()
    for msg in messages:
        length, _type, _flags, _seq, pid = NLMSGHDR.unpack_from(msg)
        out += NLMSGHDR.pack(length, RTM_NEWROUTE, 2, seq, pid) + msg[NLMSGHDR.size :]
        out += b"\0" * (-len(out) % 4)
    out += NLMSGHDR.pack(NLMSGHDR.size + 4, NLMSG_DONE, 2, seq, 0) + b"\0\0\0\0"
    return bytes(out)


def decode(data: bytes, family: int, protocol: int = 80) -> DumpResult:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b:
        a.send(data)
        result = DumpResult([], set())
        _read_dump(b, family, family, protocol, NAMES, PRIORITY, result)
        return result


ROUTES = [
    Route("10.244.2.0/24", gateway="192.0.2.2", dev="up0"),
    Route("10.244.3.0/24", gateway="198.51.100.3", dev="tunl0", onlink=True, mtu=1480),
    Route("10.244.1.7/32", dev="cali1", scope=Scope.LINK),
    Route("10.244.1.0/24", RouteType.BLACKHOLE),
    Route("0.0.0.0/0", gateway="192.0.2.254", dev="up0"),
    Route("10.244.4.0/24", gateway="2001:db8::4", dev="up0"),  # RFC 8950: RTA_VIA
    Route("10.244.5.0/24", gateway="fe80::5", dev="up0"),
]


def test_every_route_shape_felix_plans_decodes_back() -> None:
    data = as_dump([encode_route(r, i, 80, INDEX.__getitem__, delete=False)
                    for i, r in enumerate(ROUTES)], socket.AF_INET)  # fmt: skip
    assert decode(data, socket.AF_INET).own == ROUTES


def test_other_protocols_are_foreign_only_at_the_default_priority() -> None:
    ours = encode_route(ROUTES[0], 1, 80, INDEX.__getitem__, delete=False)
    theirs = encode_route(Route("10.9.0.0/16", dev="up0"), 2, 4, INDEX.__getitem__, delete=False)
    result = decode(as_dump([ours, theirs], socket.AF_INET), socket.AF_INET)
    assert result.own == [ROUTES[0]]
    assert result.foreign == {"10.9.0.0/16"}


def test_ipv6() -> None:
    routes = [
        Route("fd00:10:244:2::/64", gateway="fd00::2", dev="up0"),
        Route("fd00:10:244:1::/64", RouteType.BLACKHOLE),
    ]
    data = as_dump([encode_route(r, i, 80, INDEX.__getitem__, delete=False)
                    for i, r in enumerate(routes)], socket.AF_INET6)  # fmt: skip
    assert decode(data, socket.AF_INET6).own == routes


def test_other_tables_are_ignored() -> None:
    msg = bytearray(encode_route(ROUTES[0], 1, 80, INDEX.__getitem__, delete=False))
    # Rewrite RTA_TABLE (the first attribute, after the rtmsg) to table 100.
    struct.pack_into("=I", msg, NLMSGHDR.size + RTMSG.size + 4, 100)
    assert decode(as_dump([bytes(msg)], socket.AF_INET), socket.AF_INET).own == []


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1), st.integers(8, 32), st.sampled_from(sorted(NAMES.values())),
            st.booleans(), st.integers(0, 9000),
        ),
        max_size=40,
    )
)  # fmt: skip
def test_round_trip(items: list[tuple[int, int, str, bool, int]]) -> None:
    routes = {}
    for address, length, dev, onlink, mtu in items:
        net = ipaddress_network(address, length)
        routes[net] = Route(net, gateway="192.0.2.9", dev=dev, onlink=onlink, mtu=mtu)
    data = as_dump([encode_route(r, i, 80, INDEX.__getitem__, delete=False)
                    for i, r in enumerate(routes.values())], socket.AF_INET)  # fmt: skip
    assert decode(data, socket.AF_INET).own == list(routes.values())


def ipaddress_network(address: int, length: int) -> str:
    return str(ipaddress.ip_network((address, length), strict=False))


def test_ipv4_route_via_an_ipv6_gateway_is_encoded_as_rta_via() -> None:
    route = Route("10.244.4.0/24", gateway="2001:db8::4", dev="up0")
    msg = encode_route(route, 1, 80, INDEX.__getitem__, delete=False)
    via = struct.pack("=HHH", 4 + 2 + 16, 18, socket.AF_INET6) + socket.inet_pton(
        socket.AF_INET6, "2001:db8::4"
    )
    assert via in msg
    assert struct.pack("=HH", 8, 5) not in msg  # no RTA_GATEWAY of the wrong family
    ipv6 = Route("fd00::/64", gateway="fe80::1", dev="up0")
    assert struct.pack("=HH", 20, 5) in encode_route(ipv6, 2, 80, INDEX.__getitem__, delete=False)


def test_ipv6_routes_decode_back() -> None:
    wanted = [
        Route("fd00:10:0:2::/64", gateway="fe80::2", dev="up0"),
        Route("fd00:10:0:3::/64", gateway="fd00:10:0:3::", dev="up0", onlink=True, mtu=1430),
        Route("fd00:10:0:1::5/128", dev="cali1"),
    ]
    data = as_dump([encode_route(r, i, 80, INDEX.__getitem__, delete=False)
                    for i, r in enumerate(wanted)], socket.AF_INET6)  # fmt: skip
    assert decode(data, socket.AF_INET6).own == wanted
