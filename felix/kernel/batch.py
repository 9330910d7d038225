"""Bulk route changes: many RTM_NEWROUTE / RTM_DELROUTE messages per ``send`` on a netlink socket.

felix's normal path (felix.kernel.netlink through pyroute2) costs about 0.25 ms of Python per route,
which is fine for the handful of changes a BGP update brings but makes a 100,000-route table
take half a minute. This module encodes route messages directly with ``struct`` (the rtnetlink
layout of linux/rtnetlink.h, RFC 3549 §2.3.3.1: nlmsghdr, rtmsg, then route attributes), sends
them in chunks, and matches the kernel's acknowledgements (NLMSG_ERROR, error 0 = success) back
to each route by sequence number. Only the route shapes felix plans are encoded: unicast via a
gateway and/or device (optionally onlink, optionally with an MTU metric), link-scope device
routes, and blackholes, for IPv4 and IPv6, in the main table. An IPv4 route through an IPv6
gateway (RFC 8950 next hops) carries it as RTA_VIA (family + address, ``via inet6``), which the
dump reads back into the same :class:`~felix.plan.Route`.

Blocking I/O on a socket the caller opened (felix.kernel.netlink creates it in the right namespace
and runs :func:`apply_bulk` in a worker thread). No pyroute2 here.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from felix.plan import Route, RouteType, Scope

NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTATTR = struct.Struct("=HH")  # length, type
NLMSGERR = struct.Struct("=i")
_U32 = struct.Struct("=I")  # negative errno, followed by the offending header
_FLAGS = struct.Struct("=H")  # nlmsg_flags, at this offset of the header
_FLAGS_OFFSET = 6
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_METRICS = 8
RTA_TABLE = 15
RTA_VIA = 18  # struct rtvia: u16 family, then the address
_VIA_FAMILY = struct.Struct("=H")
RTAX_MTU = 2
RTNH_F_ONLINK = 4
MAIN_TABLE = 254
RT_SCOPE_NOWHERE = 255
MAX_CHUNK = 16384  # messages per send at most (~1 MiB of requests)
MIN_CHUNK = 64
FIRST_CHUNK = 256  # a batch's first send is small, so its first routes land at once
# What one error reply costs the receive buffer (the kernel counts an skb's true size, ~0.7 KiB
# for a short message): a send's messages may all fail and every reply must still fit.
REPLY_COST = 1024
SO_SNDBUFFORCE = 32  # asm-generic/socket.h: past net.core.{w,r}mem_max, with CAP_NET_ADMIN
SO_RCVBUFFORCE = 33
SEND_BUFFER = 4 << 20
RECEIVE_BUFFER = 16 << 20


@dataclass(frozen=True)
class BulkError:
    """A change the kernel refused: which route, what was asked, errno."""

    route: Route
    delete: bool
    code: int

    @property
    def message(self) -> str:
        return f"{os.strerror(self.code)} (errno {self.code})"


def attr(kind: int, payload: bytes) -> bytes:
    data = RTATTR.pack(RTATTR.size + len(payload), kind) + payload
    return data + b"\0" * (-len(data) % 4)


@functools.lru_cache(maxsize=4096)
def _gateway(gateway: str, via: bool = False) -> bytes:
    """RTA_GATEWAY, or with ``via`` (a gateway of the other family) RTA_VIA."""
    family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
    address = socket.inet_pton(family, gateway)
    if via:
        return attr(RTA_VIA, _VIA_FAMILY.pack(family) + address)
    return attr(RTA_GATEWAY, address)


@functools.lru_cache(maxsize=256)
def _mtu(mtu: int) -> bytes:
    return attr(RTA_METRICS, attr(RTAX_MTU, struct.pack("=I", mtu)))


_TABLE_ATTR = attr(RTA_TABLE, struct.pack("=I", MAIN_TABLE))
_REPLACE_FLAGS = NLM_F_REQUEST | NLM_F_REPLACE | NLM_F_CREATE
_DELETE_FLAGS = NLM_F_REQUEST
# RTA_DST's header per family: the address follows, 4 or 16 bytes, already 4-byte aligned.
_DST_HEADER: dict[int, bytes] = {
    socket.AF_INET: RTATTR.pack(RTATTR.size + 4, RTA_DST),
    socket.AF_INET6: RTATTR.pack(RTATTR.size + 16, RTA_DST),
}


_SEQ_PORT = struct.Struct("=II")  # the header's sequence number and port id


@functools.lru_cache(maxsize=1024)
def _shape(
    family: int,
    prefixlen: int,
    protocol: int,
    delete: bool,
    ack: bool,
    rtype: int = 0,
    scope: int = 0,
    onlink: bool = False,
    gateway: str | None = None,
    oif: int | None = None,
    mtu: int = 0,
) -> tuple[bytes, bytes, bytes]:
    """A route request of this shape around its sequence number and destination address:
    (length, type and flags of the header; rtmsg, RTA_TABLE and RTA_DST's header; the
    attributes after RTA_DST)."""
    dst_header = _DST_HEADER[family] if prefixlen else b""
    address_size = (16 if family == socket.AF_INET6 else 4) if prefixlen else 0
    if delete:
        # Scope "nowhere" and type 0 match a route of any scope and type (as `ip route del`).
        body = RTMSG.pack(family, prefixlen, 0, 0, MAIN_TABLE, protocol, RT_SCOPE_NOWHERE, 0, 0)
        msg_type, flags, tail = RTM_DELROUTE, _DELETE_FLAGS, b""
    else:
        rflags = RTNH_F_ONLINK if onlink else 0
        body = RTMSG.pack(family, prefixlen, 0, 0, MAIN_TABLE, protocol, scope, rtype, rflags)
        msg_type, flags = RTM_NEWROUTE, _REPLACE_FLAGS
        via = gateway is not None and (":" in gateway) != (family == socket.AF_INET6)
        tail = _gateway(gateway, via) if gateway else b""
        if oif is not None:
            tail += RTATTR.pack(8, RTA_OIF) + _U32.pack(oif)
        if mtu:
            tail += _mtu(mtu)
    head = body + _TABLE_ATTR + dst_header
    size = NLMSGHDR.size + len(head) + address_size + len(tail)
    start = struct.pack("=IHH", size, msg_type, flags | (NLM_F_ACK if ack else 0))
    return start, head, tail


def encode_route(
    route: Route,
    seq: int,
    protocol: int,
    index_of: Callable[[str], int],
    *,
    delete: bool,
    ack: bool = True,
) -> bytes:
    """One complete RTM_NEWROUTE (replace) or RTM_DELROUTE netlink message for ``route``.

    Without ``ack`` the kernel answers only if the request fails (an NLMSG_ERROR either way).
    The destination is taken as felix writes it, canonical (host bits clear). All but the
    sequence number and destination address comes from a small cache keyed by the route's
    shape (a table of 100,000 blocks has a handful of shapes)."""
    address, _, length = route.dst.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    prefixlen = int(length)
    if delete:
        start, head, tail = _shape(family, prefixlen, protocol, True, ack)
    else:
        dev = route.dev
        start, head, tail = _shape(
            family, prefixlen, protocol, False, ack, route.type, route.scope, route.onlink,
            route.gateway, index_of(dev) if dev else None, route.mtu,
        )  # fmt: skip
    dst = socket.inet_pton(family, address) if prefixlen else b""
    return start + _SEQ_PORT.pack(seq, 0) + head + dst + tail


def size_buffers(sock: socket.socket) -> None:
    """Large send and receive buffers for bulk writes: one send may carry thousands of requests
    (the kernel refuses a send larger than the send buffer) and its error replies must fit the
    receive buffer. Past the system maxima when allowed (CAP_NET_ADMIN), else up to them."""
    for force, plain, size in (
        (SO_SNDBUFFORCE, socket.SO_SNDBUF, SEND_BUFFER),
        (SO_RCVBUFFORCE, socket.SO_RCVBUF, RECEIVE_BUFFER),
    ):
        try:
            sock.setsockopt(socket.SOL_SOCKET, force, size)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, size)


def chunk_limits(sock: socket.socket) -> tuple[int, int]:
    """(messages, bytes) one send may carry on ``sock``, from its buffer sizes."""
    sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    messages = max(MIN_CHUNK, min(MAX_CHUNK, rcvbuf // REPLY_COST))
    return messages, max(8192, sndbuf // 2)


def apply_bulk(
    sock: socket.socket,
    replace: Sequence[Route],
    delete: Sequence[Route],
    protocol: int,
    index_of: Callable[[str], int],
) -> list[BulkError]:
    """Delete, then replace, as few sends as the socket's buffers allow; returns what the kernel
    refused (a missing route to delete is not an error). ``index_of`` raises KeyError for an
    unknown device.

    Only a send's last request asks for an acknowledgement: the kernel handles a send's
    messages in order and answers a failed request whatever its flags, so that one
    acknowledgement follows every error of the send, each matched to its route by sequence
    number. Fewer, larger sends also mean fewer waits for the interpreter lock between them
    (this runs in a worker thread beside the BGP speaker); the first send is small and each
    next one four times larger up to the limit, so the kernel starts on a big batch at once."""
    errors: list[BulkError] = []
    max_messages, max_bytes = chunk_limits(sock)
    limit = min(FIRST_CHUNK, max_messages)
    sent: dict[int, tuple[Route, bool]] = {}
    parts: list[bytes] = []
    size = 0
    seq = 0
    for routes, is_delete in ((delete, True), (replace, False)):
        for route in routes:
            seq += 1
            try:
                message = encode_route(route, seq, protocol, index_of, delete=is_delete, ack=False)
            except KeyError:
                errors.append(BulkError(route, is_delete, errno.ENODEV))
                continue
            parts.append(message)
            size += len(message)
            sent[seq] = (route, is_delete)
            if len(sent) >= limit or size >= max_bytes:
                _send(sock, parts, sent, seq, errors)
                parts, size, sent = [], 0, {}
                limit = min(limit * 4, max_messages)
    if sent:
        _send(sock, parts, sent, seq, errors)
    return errors


def _send(
    sock: socket.socket,
    parts: list[bytes],
    sent: dict[int, tuple[Route, bool]],
    last: int,
    errors: list[BulkError],
) -> None:
    """One send of ``parts`` (requests that ask for no acknowledgement), the last one turned
    into one that does (or a barrier appended when the last route failed to encode); then read
    the replies up to that acknowledgement."""
    if last in sent:
        closing = bytearray(parts[-1])
        (flags,) = _FLAGS.unpack_from(closing, _FLAGS_OFFSET)
        _FLAGS.pack_into(closing, _FLAGS_OFFSET, flags | NLM_F_ACK)
        parts[-1] = bytes(closing)
    else:
        parts.append(_barrier(last))
    sock.sendall(b"".join(parts))
    _collect_errors(sock, sent, last, errors)


def _barrier(seq: int) -> bytes:
    """A request that changes nothing and is acknowledged: RTM_GETROUTE for no table entry."""
    payload = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    flags = NLM_F_REQUEST | NLM_F_ACK
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), RTM_GETROUTE, flags, seq, 0) + payload


def _collect_errors(
    sock: socket.socket,
    sent: dict[int, tuple[Route, bool]],
    last: int,
    errors: list[BulkError],
) -> None:
    """Read replies until the acknowledgement of ``last``; record every refused change."""
    while True:
        buf = sock.recv(1 << 20)
        offset = 0
        while offset + NLMSGHDR.size <= len(buf):
            length, msg_type, _flags, seq, _pid = NLMSGHDR.unpack_from(buf, offset)
            if length < NLMSGHDR.size:
                break
            offset += (length + 3) & ~3
            if msg_type != NLMSG_ERROR:
                continue  # e.g. the barrier's answer
            (code,) = NLMSGERR.unpack_from(buf, offset - ((length + 3) & ~3) + NLMSGHDR.size)
            entry = sent.get(seq)
            if code and entry is not None:
                route, is_delete = entry
                if not (is_delete and -code in (errno.ESRCH, errno.ENOENT)):
                    errors.append(BulkError(route, is_delete, -code))
            if seq == last:
                return


# --- dump ------------------------------------------------------------------------------------

RTM_GETROUTE = 26
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
RTA_PRIORITY = 6
NETLINK_GET_STRICT_CHK = 12  # linux/netlink.h: let the kernel filter dumps by table/protocol
SOL_NETLINK = 270
RTN_UNICAST = 1
_ATTR = struct.Struct("=HH")
_KNOWN_TYPES = {int(t) for t in RouteType}
_KNOWN_SCOPES = {int(s) for s in Scope}


@dataclass(slots=True)
class DumpResult:
    """felix's routes in the main table, and the destinations other protocols hold there at the
    kernel's default priority (what a route of ours would collide with)."""

    own: list[Route]
    foreign: set[str]


def enable_strict_check(sock: socket.socket) -> bool:
    """Ask the kernel to filter route dumps by the header's table and protocol (Linux 4.20+).
    False when the kernel does not know the option; the dump then filters here alone."""
    try:
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
    except OSError:
        return False
    return True


def dump_routes(
    sock: socket.socket,
    protocol: int,
    names: dict[int, str],
    default_priority: dict[int, int],
    *,
    strict: bool = False,
) -> DumpResult:
    """Dump the main table of both families with RTM_GETROUTE and decode it with ``struct``.

    Routes of ``protocol`` become :class:`~felix.plan.Route` s (types and scopes felix never
    sets are skipped or made to differ from any plan, as the pyroute2 path did); other routes
    only count as foreign destinations when they sit at the family's default priority. With
    ``strict`` the kernel already filters by table (the foreign set then misses nothing: it is
    filtered by table too, never by protocol).
    """
    result = DumpResult([], set())
    for family in (socket.AF_INET, socket.AF_INET6):
        header = RTMSG.pack(family, 0, 0, 0, MAIN_TABLE if strict else 0, 0, 0, 0, 0)
        attrs = attr(RTA_TABLE, _U32.pack(MAIN_TABLE)) if strict else b""
        payload = header + attrs
        seq = family
        sock.sendall(
            NLMSGHDR.pack(NLMSGHDR.size + len(payload), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP,
                          seq, 0) + payload
        )  # fmt: skip
        _read_dump(sock, seq, family, protocol, names, default_priority, result)
    return result


def _read_dump(
    sock: socket.socket,
    seq: int,
    family: int,
    protocol: int,
    names: dict[int, str],
    default_priority: dict[int, int],
    result: DumpResult,
) -> None:
    version = 6 if family == socket.AF_INET6 else 4
    any_address = "::" if version == 6 else "0.0.0.0"
    size = 16 if version == 6 else 4
    ntop = socket.inet_ntop
    while True:
        buf = sock.recv(1 << 20)
        offset = 0
        end = len(buf)
        while offset + NLMSGHDR.size <= end:
            length, msg_type, _flags, msg_seq, _pid = NLMSGHDR.unpack_from(buf, offset)
            if length < NLMSGHDR.size:
                raise OSError(errno.EPROTO, "truncated netlink message in a route dump")
            if msg_seq != seq:
                offset += (length + 3) & ~3
                continue
            if msg_type == NLMSG_DONE:
                return
            if msg_type == NLMSG_ERROR:
                (code,) = NLMSGERR.unpack_from(buf, offset + NLMSGHDR.size)
                if code:
                    raise OSError(-code, f"route dump: {os.strerror(-code)}")
                return
            if msg_type == RTM_NEWROUTE:
                _decode_route(
                    buf, offset + NLMSGHDR.size, offset + length, family, version, any_address,
                    size, ntop, protocol, names, default_priority, result,
                )  # fmt: skip
            offset += (length + 3) & ~3


def _decode_route(
    buf: bytes,
    start: int,
    end: int,
    family: int,
    version: int,
    any_address: str,
    size: int,
    ntop: Callable[[int, bytes], str],
    protocol: int,
    names: dict[int, str],
    default_priority: dict[int, int],
    result: DumpResult,
) -> None:
    (_fam, dst_len, _src, _tos, table, proto, scope, rtype, rflags) = RTMSG.unpack_from(buf, start)
    pos = start + RTMSG.size
    dst: str | None = None
    gateway: str | None = None
    oif: int | None = None
    priority = 0
    mtu = 0
    while pos + 4 <= end:
        alen, kind = _ATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        data = pos + 4
        if kind == RTA_TABLE:
            (table,) = _U32.unpack_from(buf, data)
        elif kind == RTA_DST:
            dst = ntop(family, buf[data : data + size])
        elif kind == RTA_GATEWAY and alen - 4 == size:
            gateway = ntop(family, buf[data : data + size])
        elif kind == RTA_VIA and alen - 4 >= 2:
            (via_family,) = _VIA_FAMILY.unpack_from(buf, data)
            with contextlib.suppress(OSError, ValueError):  # a family felix never writes
                gateway = ntop(via_family, buf[data + 2 : pos + alen])
        elif kind == RTA_OIF:
            (oif,) = _U32.unpack_from(buf, data)
        elif kind == RTA_PRIORITY:
            (priority,) = _U32.unpack_from(buf, data)
        elif kind == RTA_METRICS:
            mpos, mend = data, pos + alen
            while mpos + 4 <= mend:
                mlen, mkind = _ATTR.unpack_from(buf, mpos)
                if mlen < 4:
                    break
                if mkind == RTAX_MTU:
                    (mtu,) = _U32.unpack_from(buf, mpos + 4)
                mpos += (mlen + 3) & ~3
        pos += (alen + 3) & ~3
    if table != MAIN_TABLE:
        return
    # The kernel keeps a route's destination with its host bits clear, and inet_ntop writes the
    # canonical text, so this is already what ipaddress.ip_network() would print.
    canonical = f"{dst or any_address}/{dst_len}"
    if proto != protocol:
        if priority == default_priority[version]:
            result.foreign.add(canonical)
        return
    if rtype not in _KNOWN_TYPES:
        return  # a type felix never creates (local, broadcast, ...): not a route to own
    if rtype != RTN_UNICAST:
        # IPv6 reports blackholes through "lo": the device is not part of the route's identity.
        result.own.append(Route(canonical, RouteType(rtype)))
        return
    result.own.append(
        Route(
            canonical,
            RouteType.UNICAST,
            gateway=gateway,
            dev=names.get(oif) if oif is not None else None,
            onlink=bool(rflags & RTNH_F_ONLINK),
            scope=Scope(scope) if scope in _KNOWN_SCOPES else Scope.NOWHERE,
            mtu=mtu,
        )
    )
