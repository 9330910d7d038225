"""TCP plumbing for BGP sessions: sockets with a source address and RFC 2385 TCP MD5 keys.

Linux only for MD5 (``TCP_MD5SIG``, struct tcp_md5sig from linux/tcp.h). The key is set per peer
address on the listening socket and on each outbound socket before ``connect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct

TCP_MD5SIG = 14
TCP_MD5SIG_EXT = 32
TCP_MD5SIG_FLAG_PREFIX = 1
TCP_MD5SIG_MAXKEYLEN = 80
IP_MINTTL = 21  # linux/in.h
IPV6_MINHOPCOUNT = 73  # linux/in6.h
_SOCKADDR_STORAGE = 128


def _sockaddr(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 0) + ip.packed
    else:
        raw = struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0) + ip.packed
        raw += struct.pack("=I", 0)
    return raw.ljust(_SOCKADDR_STORAGE, b"\0")


def set_md5_key(
    sock: socket.socket, peer: str, password: str | None, prefixlen: int | None = None
) -> None:
    """Install (or with ``None`` remove) the TCP MD5 key for ``peer`` on ``sock``.

    With ``prefixlen`` the key covers the whole range ``peer/prefixlen`` (TCP_MD5SIG_EXT, for
    dynamic neighbours).
    """
    key = (password or "").encode()
    if len(key) > TCP_MD5SIG_MAXKEYLEN:
        raise ValueError("TCP MD5 password longer than 80 bytes")
    # struct tcp_md5sig: addr, u8 flags, u8 prefixlen, u16 keylen, u32 ifindex, u8 key[80]
    flags = 0 if prefixlen is None else TCP_MD5SIG_FLAG_PREFIX
    value = _sockaddr(peer) + struct.pack("=BBHI", flags, prefixlen or 0, len(key), 0)
    value += key.ljust(TCP_MD5SIG_MAXKEYLEN, b"\0")
    option = TCP_MD5SIG if prefixlen is None else TCP_MD5SIG_EXT
    sock.setsockopt(socket.IPPROTO_TCP, option, value)


def set_ttl_security(sock: socket.socket, hops: int) -> None:
    """RFC 5082 GTSM: send with TTL 255 and drop anything that travelled more than ``hops``
    hops (arrived with TTL below 256 - hops). ``hops`` 0 leaves the socket alone."""
    if hops <= 0:
        return
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, 256 - hops)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, 256 - hops)


def set_listener_min_ttl(sock: socket.socket, hops: int) -> None:
    """RFC 5082 GTSM on a listening socket: a SYN that travelled more than ``hops`` hops is
    dropped before any connection exists (0: accept any TTL). Per-peer limits still apply to
    each accepted socket (:func:`set_ttl_security`)."""
    minimum = 256 - hops if hops > 0 else 0
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT, minimum)
        if sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 0:
            sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, minimum)  # IPv4-mapped peers too
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_MINTTL, minimum)


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


DEFAULT_BACKLOG = 4096
_SOMAXCONN = "/proc/sys/net/core/somaxconn"


def listen_backlog() -> int:
    """The accept-queue length for a BGP listener: the host's ``net.core.somaxconn`` (the kernel
    caps any larger value to it), at least ``DEFAULT_BACKLOG``.

    A reflector with a thousand clients gets a thousand SYNs at once when it starts; a short
    queue (asyncio's default is 100) drops the rest, and each dropped peer waits for its TCP
    retransmission (1 s, then 3 s, ...) before it is even seen.
    """
    try:
        with open(_SOMAXCONN) as handle:
            return max(DEFAULT_BACKLOG, int(handle.read()))
    except (OSError, ValueError):
        return DEFAULT_BACKLOG


def make_listen_socket(address: str, port: int, backlog: int | None = None) -> socket.socket:
    """A bound, listening, non-blocking socket; ``backlog`` defaults to :func:`listen_backlog`.

    Whoever serves it must keep that backlog: ``asyncio.start_server(sock=...)`` calls
    ``listen()`` again with its own ``backlog`` argument.
    """
    family = family_of(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and address in ("::", "::0"):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr(address, port))
        sock.listen(listen_backlog() if backlog is None else backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


async def connect(
    peer: str,
    port: int,
    *,
    source: str | None = None,
    password: str | None = None,
    ttl_security: int = 0,
    timeout: float = 10.0,
) -> socket.socket:
    """Open a TCP connection to a peer, from ``source`` if given, with an MD5 key if given."""
    sock = socket.socket(family_of(peer), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if password:
            set_md5_key(sock, peer, password)
        set_ttl_security(sock, ttl_security)
        if source:
            sock.bind(sockaddr(source, 0))
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.sock_connect(sock, sockaddr(peer, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


def sockaddr(address: str, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    """The socket address for ``address``: a link-local ``fe80::1%eth0`` needs its interface
    as the scope id (the socket module does not read it from the text)."""
    bare, _sep, scope = address.partition("%")
    if scope:
        return bare, port, 0, socket.if_nametoindex(scope)
    return bare, port


def address_of(name: tuple[object, ...] | None) -> str | None:
    """The normalised address of a socket name (``getsockname``/``getpeername``), with the
    interface of a link-local one from its scope id."""
    if not name:
        return None
    host = str(name[0])
    scope_id = name[3] if len(name) >= 4 else 0
    if isinstance(scope_id, int) and scope_id:
        with contextlib.suppress(OSError):
            host = f"{host.partition('%')[0]}%{socket.if_indextoname(scope_id)}"
    return normalise_address(host)


def normalise_address(address: str) -> str:
    """Peer addresses as keys: IPv4-mapped IPv6 becomes plain IPv4; IPv6 compressed; a
    link-local address keeps its interface (``fe80::1%eth0``), which it needs to mean anything.
    """
    bare, _sep, scope = address.partition("%")
    ip = ipaddress.ip_address(bare)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if scope and ip.is_link_local:
        return f"{ip}%{scope}"
    return str(ip)
