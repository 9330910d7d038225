"""The speaker's listening sockets: incoming BGP connections, accepted or refused.

A connection from a configured peer, or from an address a peer range covers, goes to that
peer's session (its collision detection, RFC 4271 §6.8, decides which connection stays); any
other is refused with Cease/Connection Rejected (RFC 4486). The listener owns the servers and
the per-socket settings every listening socket needs: the TCP MD5 key of each peer and peer
range (RFC 2385), and GTSM at the SYN when every peer that may connect uses it (RFC 5082).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable, Sequence

from bgpd import tcp
from bgpd.codec.errors import CeaseSubcode, ErrorCode
from bgpd.codec.messages import encode_message
from bgpd.codec.types import Notification
from bgpd.peerspec import PeerRange
from bgpd.session import Session

log = logging.getLogger("podbgp.speaker")

# The session a connection from this address belongs to, None: refuse it.
FindSession = Callable[[str], Session | None]


class Listener:
    def __init__(self, find: FindSession) -> None:
        self._find = find
        self._servers: list[asyncio.Server] = []

    async def listen(
        self,
        address: str,
        port: int,
        keys: Iterable[tuple[str, str]],
        ranges: Iterable[PeerRange],
    ) -> int:
        """Listen on ``address``:``port`` (0: any free port, returned), with the MD5 ``keys``
        (peer address, password) and those of the peer ``ranges`` in place."""
        backlog = tcp.listen_backlog()
        sock = tcp.make_listen_socket(address, port, backlog)
        for peer, password in keys:
            if tcp.family_of(peer) == sock.family:
                tcp.set_md5_key(sock, peer, password)
        for rng in ranges:
            _range_md5(sock, rng)
        # start_server re-listens with its own backlog (default 100): pass ours on.
        server = await asyncio.start_server(self._on_accept, sock=sock, backlog=backlog)
        self._servers.append(server)
        return int(sock.getsockname()[1])

    def _sockets(self) -> Iterable[socket.socket]:
        for server in self._servers:
            yield from server.sockets

    def set_key(self, address: str, password: str | None) -> None:
        """Install (or with None remove) a peer's MD5 key on every socket of its family."""
        for sock in self._sockets():
            if tcp.family_of(address) == sock.family:
                tcp.set_md5_key(sock, address, password)

    def add_range(self, rng: PeerRange) -> None:
        for sock in self._sockets():
            _range_md5(sock, rng)

    def gtsm(self, hops: Sequence[int], ranges: bool) -> None:
        """RFC 5082 on the listening sockets: when every peer that may connect uses GTSM (its
        ``hops``; with peer ``ranges`` anyone in them may connect), a connection from further
        away than the most distant of them is dropped at the SYN, so it never reaches
        OpenSent (each accepted socket then gets its own peer's limit)."""
        on = bool(hops) and all(hops) and not ranges
        for sock in self._sockets():
            tcp.set_listener_min_ttl(sock, max(hops) if on else 0)

    def close(self) -> None:
        for server in self._servers:
            server.close()

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        address = tcp.address_of(peername) or "?"
        session = self._find(address)
        if session is None:
            log.info("event=reject-connection from=%s reason=not a configured peer", address)
            cease = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED)
            writer.write(encode_message(cease))
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(writer.drain(), 2)
            writer.close()
            return
        session.accept(reader, writer)


def _range_md5(sock: socket.socket, rng: PeerRange) -> None:
    net = ipaddress.ip_network(rng.prefix)
    if rng.password and tcp.family_of(str(net.network_address)) == sock.family:
        tcp.set_md5_key(sock, str(net.network_address), rng.password, net.prefixlen)
