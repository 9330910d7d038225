"""The asyncio driver of BFD: UDP sockets, timers and demultiplexing for many sessions.

Owns: the receive sockets (single hop RFC 5881 on port 3784, multihop RFC 5883 on port 4784,
one pair per address family), one send socket per local address (a source port in
49152-65535, kept for the life of the endpoint so every session keeps its source port, TTL/hop
limit 255), one ``loop.call_at`` timer per session, and the table that maps a received packet to
its :class:`~bgpd.bfd.session.BfdSession`: by Your Discriminator, or by (peer, local address,
port) when it is 0. The session logic itself is the sans-IO state machine; this module only
reads, decodes, feeds, sends and reports.

TTL rules: on 3784 a packet must arrive with TTL (hop limit) 255, i.e. from a neighbour on the
link (RFC 5881 §5, GTSM); on 4784 it must arrive with at least ``255 - multihop_max_hops`` when
that is configured, else any TTL (RFC 5883 §5 leaves it to configuration).

Either port: BIRD treats an iBGP neighbour as multihop unless told ``direct``, so a directly
connected peer configured single hop here may talk to us on 4784 (and the other way). A packet
from a configured peer on the other port switches that session to the port the peer used; we
answer where we are spoken to.

Threads: :class:`BfdEndpoint` runs on the event loop it is started on, with its timers on
that loop (``loop.call_at``). A loop busy with a 200k-route ingest can delay a timer by more
than 100 ms and flap a 100 ms x 3 session, so :class:`bgpd.bfd.thread.ThreadedBfdEndpoint`
runs a :class:`BfdEndpoint` on a dedicated thread with its own event loop and hands state
changes back to the caller's loop with ``call_soon_threadsafe``. Both implement
:class:`bgpd.bfd.views.BfdManager`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from bgpd.bfd.packet import PacketError, decode, encode
from bgpd.bfd.session import BfdSession, Output, SessionConfig
from bgpd.bfd.views import (
    BfdSessionView,
    BfdStateChange,
    SessionKey,
    StateCallback,
)

log = logging.getLogger("podbgp.bfd")

SINGLE_HOP_PORT = 3784  # RFC 5881 §4
MULTIHOP_PORT = 4784  # RFC 5883 §5
SOURCE_PORT_MIN, SOURCE_PORT_MAX = 49152, 65535  # RFC 5881 §4
TTL_MAX = 255
RECV_BUFFER = 512  # a Control packet without authentication is 24 bytes
ANCILLARY_BUFFER = 256
MAX_READS_PER_WAKEUP = 64  # bounded work per readiness callback
MAX_BIND_ATTEMPTS = 64
MAX_DISCRIMINATOR_ATTEMPTS = 1000

# Linux values; Python's socket module lacks some of them.
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_UNICAST_HOPS = getattr(socket, "IPV6_UNICAST_HOPS", 16)
IPV6_FREEBIND = 78

SocketFactory = Callable[[int, int], socket.socket]  # (family, type) -> a new socket


@dataclass
class _Entry:
    key: SessionKey
    session: BfdSession
    on_state: StateCallback
    family: int
    multihop_port: bool  # serving port: starts as configured, follows the peer
    timer: asyncio.TimerHandle | None = None
    timer_when: float | None = None
    sent: int = 0
    received: int = 0
    dropped: int = 0
    send_errors: int = 0


def _normalise(address: str) -> str:
    return ipaddress.ip_address(address.split("%", 1)[0]).compressed


def _family(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


class BfdEndpoint:
    """All BFD sessions of one process, on one asyncio event loop (see the module docstring).

    Every method must be called on the loop's thread. ``socket_factory`` makes the UDP sockets
    (tests pass one that creates them inside a network namespace); ``rng`` draws the
    discriminators, source ports and jitter.
    """

    def __init__(
        self,
        *,
        socket_factory: SocketFactory | None = None,
        rng: random.Random | None = None,
        multihop_max_hops: int | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if multihop_max_hops is not None and not 1 <= multihop_max_hops <= TTL_MAX:
            raise ValueError(f"multihop max hops {multihop_max_hops} outside 1..255")
        self._socket_factory: SocketFactory = socket_factory or socket.socket
        self._rng = rng if rng is not None else random.Random()
        self._min_multihop_ttl = 0 if multihop_max_hops is None else TTL_MAX - multihop_max_hops
        self._loop = loop
        self._entries: dict[SessionKey, _Entry] = {}
        self._by_discriminator: dict[int, _Entry] = {}
        self._listeners: dict[tuple[int, bool], socket.socket] = {}  # (family, multihop port)
        self._senders: dict[str, socket.socket] = {}  # local address -> bound send socket
        self._closed = False
        self.dropped_unknown = 0  # packets for no configured session, or failing a check

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- management ------------------------------------------------------------------------

    def add_session(
        self,
        peer: str,
        local: str,
        *,
        multihop: bool,
        min_tx_ms: int = 300,
        min_rx_ms: int = 300,
        multiplier: int = 3,
        on_state: StateCallback,
    ) -> None:
        """Start a session to ``peer`` from ``local``; ``on_state`` hears every state change.

        Adding a session that exists changes its intervals (a Poll Sequence) and callback.
        """
        if self._closed:
            raise RuntimeError("BFD endpoint is closed")
        key = SessionKey(_normalise(peer), _normalise(local), multihop)
        family = _family(key.peer)
        if family != _family(key.local):
            raise ValueError(f"peer {peer} and local {local} are of different families")
        config = SessionConfig(min_tx_ms * 1000, min_rx_ms * 1000, multiplier)
        now = self.loop.time()
        existing = self._entries.get(key)
        if existing is not None:
            existing.on_state = on_state
            out = existing.session.set_intervals(
                config.desired_min_tx_us, config.required_min_rx_us, config.detect_mult, now
            )
            self._execute(existing, out)
            return
        self._listen(family)
        self._sender(key.local, family)
        entry = _Entry(
            key=key,
            session=BfdSession(self._new_discriminator(), config, now, self._rng),
            on_state=on_state,
            family=family,
            multihop_port=multihop,
        )
        self._entries[key] = entry
        self._by_discriminator[entry.session.local_discriminator] = entry
        log.info(
            "bfd session added",
            extra={"peer": key.peer, "local": key.local, "multihop": multihop},
        )
        self._arm(entry)

    def remove_session(self, peer: str, local: str, *, multihop: bool) -> None:
        """Stop a session; the peer is told AdminDown (RFC 5880 §6.8.16) rather than timing out."""
        key = SessionKey(_normalise(peer), _normalise(local), multihop)
        entry = self._entries.pop(key, None)
        if entry is None:
            raise KeyError(f"no BFD session {key}")
        self._by_discriminator.pop(entry.session.local_discriminator, None)
        if entry.timer is not None:
            entry.timer.cancel()
        out = entry.session.admin_down(self.loop.time())
        out.changes.clear()  # the owner removed it; no callback for its own act
        self._execute(entry, out)

    def admin_down(self, peer: str, local: str, *, multihop: bool) -> None:
        """Hold a session in AdminDown (kept configured, packets still sent)."""
        entry = self._entries[SessionKey(_normalise(peer), _normalise(local), multihop)]
        self._execute(entry, entry.session.admin_down(self.loop.time()))

    def enable(self, peer: str, local: str, *, multihop: bool) -> None:
        entry = self._entries[SessionKey(_normalise(peer), _normalise(local), multihop)]
        self._execute(entry, entry.session.enable(self.loop.time()))

    def snapshot(self) -> list[BfdSessionView]:
        now_loop, now_wall = self.loop.time(), time.time()
        return [self._view(e, now_loop, now_wall) for e in self._entries.values()]

    def close(self) -> None:
        """Remove every session (telling peers AdminDown) and close every socket."""
        if self._closed:
            return
        for key in list(self._entries):
            self.remove_session(key.peer, key.local, multihop=key.multihop)
        self._closed = True
        for sock in self._listeners.values():
            self.loop.remove_reader(sock.fileno())
            sock.close()
        for sock in self._senders.values():
            sock.close()
        self._listeners.clear()
        self._senders.clear()

    # -- sockets ---------------------------------------------------------------------------

    def _listen(self, family: int) -> None:
        for multihop_port in (False, True):
            if (family, multihop_port) in self._listeners:
                continue
            port = MULTIHOP_PORT if multihop_port else SINGLE_HOP_PORT
            sock = self._socket_factory(family, socket.SOCK_DGRAM)
            try:
                # No SO_REUSEADDR: a second BFD speaker on this host (BIRD, FRR) must make the
                # bind fail loudly, not silently split the packets between the two.
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
                    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
                    sock.bind(("::", port))
                else:
                    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
                    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
                    sock.bind(("0.0.0.0", port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            self._listeners[(family, multihop_port)] = sock
            self.loop.add_reader(sock.fileno(), self._on_readable, sock, family, multihop_port)

    def _sender(self, local: str, family: int) -> socket.socket:
        sock = self._senders.get(local)
        if sock is not None:
            return sock
        sock = self._socket_factory(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, TTL_MAX)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL_MAX)
                sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            self._bind_source_port(sock, local)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._senders[local] = sock
        return sock

    def _bind_source_port(self, sock: socket.socket, local: str) -> None:
        last: OSError | None = None
        for _ in range(MAX_BIND_ATTEMPTS):
            port = self._rng.randint(SOURCE_PORT_MIN, SOURCE_PORT_MAX)
            try:
                sock.bind((local, port))
                return
            except OSError as exc:  # port taken: draw another, a bounded number of times
                last = exc
        raise OSError(
            f"no free BFD source port for {local} after {MAX_BIND_ATTEMPTS} tries: {last}"
        )

    def _new_discriminator(self) -> int:
        for _ in range(MAX_DISCRIMINATOR_ATTEMPTS):
            value = self._rng.randint(1, 0xFFFFFFFF)
            if value not in self._by_discriminator:
                return value
        raise RuntimeError("no free BFD discriminator")

    # -- receive ---------------------------------------------------------------------------

    def _on_readable(self, sock: socket.socket, family: int, multihop_port: bool) -> None:
        for _ in range(MAX_READS_PER_WAKEUP):
            try:
                data, ancdata, _flags, address = sock.recvmsg(RECV_BUFFER, ANCILLARY_BUFFER)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("bfd receive error", extra={"error": str(exc)})
                continue
            ttl, local = _ancillary(ancdata, family)
            self._on_datagram(data, _normalise(address[0]), local, ttl, multihop_port)

    def _on_datagram(
        self, data: bytes, peer: str, local: str | None, ttl: int | None, multihop_port: bool
    ) -> None:
        try:
            packet = decode(data)
        except PacketError as exc:
            self.dropped_unknown += 1
            log.debug("bfd packet discarded", extra={"peer": peer, "rule": exc.rule.name})
            return
        if packet.your_discriminator != 0:
            entry = self._by_discriminator.get(packet.your_discriminator)
            if entry is not None and entry.key.peer != peer:
                entry = None  # a discriminator is not a password: the source must match too
        else:
            entry = self._find_by_address(peer, local, multihop_port)
        if entry is None:
            self.dropped_unknown += 1
            log.debug("bfd packet for no session", extra={"peer": peer, "local": local})
            return
        if not self._ttl_ok(ttl, multihop_port):
            entry.dropped += 1
            log.debug("bfd packet with bad TTL", extra={"peer": peer, "ttl": ttl})
            return
        if entry.multihop_port != multihop_port:
            log.info(
                "bfd peer uses the other port; answering there",
                extra={"peer": peer, "port": MULTIHOP_PORT if multihop_port else SINGLE_HOP_PORT},
            )
            entry.multihop_port = multihop_port
        entry.received += 1
        self._execute(entry, entry.session.receive(packet, self.loop.time()))

    def _find_by_address(self, peer: str, local: str | None, multihop_port: bool) -> _Entry | None:
        candidates = [
            e
            for e in self._entries.values()
            if e.key.peer == peer and (local is None or e.key.local == local)
        ]
        # Prefer the session configured for this port; else serve the other one here.
        candidates.sort(key=lambda e: e.key.multihop != multihop_port)
        return candidates[0] if candidates else None

    def _ttl_ok(self, ttl: int | None, multihop_port: bool) -> bool:
        if multihop_port:
            return self._min_multihop_ttl == 0 or (
                ttl is not None and ttl >= self._min_multihop_ttl
            )
        return ttl == TTL_MAX

    # -- send, timers, events --------------------------------------------------------------

    def _execute(self, entry: _Entry, out: Output) -> None:
        for packet in out.packets:
            self._send(entry, encode(packet))
        for change in out.changes:
            event = BfdStateChange(
                peer=entry.key.peer,
                local=entry.key.local,
                multihop=entry.key.multihop,
                old=change.old,
                new=change.new,
                diag=change.diag,
                remote_diag=change.remote_diag,
                at=time.time(),
            )
            log.info(
                "bfd session %s -> %s (%s)",
                change.old.name,
                change.new.name,
                change.diag.name,
                extra={"peer": entry.key.peer, "local": entry.key.local},
            )
            try:
                entry.on_state(event)
            except Exception:  # the owner's bug must not stop the other sessions' timers
                log.exception("bfd state callback failed", extra={"peer": entry.key.peer})
        if entry.key in self._entries:
            self._arm(entry)

    def _send(self, entry: _Entry, payload: bytes) -> None:
        sock = self._senders.get(entry.key.local)
        if sock is None:
            return
        port = MULTIHOP_PORT if entry.multihop_port else SINGLE_HOP_PORT
        try:
            sock.sendto(payload, (entry.key.peer, port))
            entry.sent += 1
        except OSError as exc:  # link down, no route, buffer full: BFD is built to lose packets
            entry.send_errors += 1
            log.debug("bfd send failed", extra={"peer": entry.key.peer, "error": str(exc)})

    def _arm(self, entry: _Entry) -> None:
        deadline = entry.session.next_deadline()
        if deadline == entry.timer_when and entry.timer is not None:
            return
        if entry.timer is not None:
            entry.timer.cancel()
        entry.timer_when = deadline
        entry.timer = (
            None if deadline is None else self.loop.call_at(deadline, self._on_timer, entry)
        )

    def _on_timer(self, entry: _Entry) -> None:
        when = entry.timer_when
        entry.timer = None
        entry.timer_when = None
        # The loop may run a handle a clock tick early; it is due, so treat it as due.
        now = max(self.loop.time(), when or 0.0)
        self._execute(entry, entry.session.handle_timeout(now))

    def _view(self, entry: _Entry, now_loop: float, now_wall: float) -> BfdSessionView:
        s = entry.session
        tx = s.tx_interval_us()
        detect = s.detection_time_us()
        rx_us = max(s.advertised.required_min_rx_us, s.remote_desired_min_tx_us)
        return BfdSessionView(
            peer=entry.key.peer,
            local=entry.key.local,
            multihop=entry.key.multihop,
            port=MULTIHOP_PORT if entry.multihop_port else SINGLE_HOP_PORT,
            state=s.state,
            remote_state=s.remote_state,
            local_discriminator=s.local_discriminator,
            remote_discriminator=s.remote_discriminator,
            tx_interval_ms=None if tx is None else tx / 1000,
            rx_interval_ms=rx_us / 1000,
            detect_time_ms=None if detect is None else detect / 1000,
            detect_mult=s.advertised.detect_mult,
            remote_detect_mult=s.remote_detect_mult,
            local_diag=s.local_diag,
            remote_diag=s.remote_diag,
            flaps=s.flaps,
            up_since=None if s.up_since is None else now_wall - (now_loop - s.up_since),
            packets_sent=entry.sent,
            packets_received=entry.received,
            packets_dropped=entry.dropped,
            send_errors=entry.send_errors,
        )


def _ancillary(ancdata: list[tuple[int, int, bytes]], family: int) -> tuple[int | None, str | None]:
    """The received TTL/hop limit and the packet's destination address, from recvmsg data."""
    ttl: int | None = None
    local: str | None = None
    for level, kind, data in ancdata:
        if family == socket.AF_INET and level == socket.IPPROTO_IP:
            if kind == socket.IP_TTL and len(data) >= 4:
                ttl = struct.unpack("=i", data[:4])[0]
            elif kind == IP_PKTINFO and len(data) >= 12:
                # struct in_pktinfo { int ifindex; in_addr spec_dst; in_addr addr; }
                local = socket.inet_ntop(socket.AF_INET, data[8:12])
        elif family == socket.AF_INET6 and level == socket.IPPROTO_IPV6:
            if kind == IPV6_HOPLIMIT and len(data) >= 4:
                ttl = struct.unpack("=i", data[:4])[0]
            elif kind == IPV6_PKTINFO and len(data) >= 16:
                # struct in6_pktinfo { in6_addr addr; unsigned ifindex; }
                local = _normalise(socket.inet_ntop(socket.AF_INET6, data[:16]))
    return ttl, local
