"""Unnumbered peering: a BGP session to whatever router sits at the other end of a link.

A peer configured by ``interface`` instead of an address runs its session over the IPv6
link-local address of the neighbour on that link (RFC 4291 §2.5.6; every IPv6 interface has
one, so the link needs no addresses of its own). This module owns finding that address and
keeping the speaker's peer on it:

- a probe sends one ICMPv6 Echo Request to the all-nodes group ``ff02::1`` on the link
  (RFC 4443 §4.1; every IPv6 node answers) and collects the link-local sources of the replies
  for at most ``probe_timeout`` seconds (0.2 s after the first reply); when nothing answers (a
  neighbour that ignores multicast echo), the kernel's neighbour table for the link is read
  instead (``ip -6 neigh``: entries learned from the neighbour's router advertisements or
  neighbour discovery, e.g. when it connects to us);
- a watcher per link probes until a neighbour is found (backing off from 1 s to ``recheck``),
  adds the peer at ``fe80::…%<interface>``, and probes again every ``recheck`` seconds: when the
  known address stops answering and another one answers, the peer moves to the new address.
  With several neighbours on the link (it should be point-to-point), the lowest address wins
  and a warning says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from bgpd.nexthop import is_link_local, link_locals, split_scope
from bgpd.peerspec import PeerSpec

log = logging.getLogger("podbgp.unnumbered")

ALL_NODES = "ff02::1"
ECHO_REQUEST, ECHO_REPLY = 128, 129  # RFC 4443 §4.1, §4.2
_ECHO = struct.Struct("!BBHHH")  # type, code, checksum (the kernel fills it in), id, sequence
PROBE_TIMEOUT = 1.0
RECHECK = 30.0
_NEIGH_TIMEOUT = 2.0
_GRACE = 0.2  # seconds to wait for more echo replies after the first
_USABLE = ("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT")  # neighbour states

Prober = Callable[[str, float], Awaitable[list[str]]]


class PeerTable(Protocol):
    """What the watcher needs of the speaker."""

    def add_peer(self, spec: PeerSpec) -> object: ...

    def remove_peer(self, address: str) -> None: ...


async def echo_neighbours(interface: str, timeout: float) -> list[str]:
    """Link-local addresses answering an Echo Request to all nodes on ``interface``."""
    index = socket.if_nametoindex(interface)
    loop = asyncio.get_running_loop()
    ident = int.from_bytes(os.urandom(2), "big")
    found: set[str] = set()
    with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
        request = _ECHO.pack(ECHO_REQUEST, 0, 0, ident, 1) + b"podbgp unnumbered"
        await loop.sock_sendto(sock, request, (ALL_NODES, 0, 0, index))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                data, source = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), left)
            except TimeoutError:
                break
            reply = len(data) >= _ECHO.size and data[0] == ECHO_REPLY
            if reply and _ECHO.unpack_from(data)[3] == ident:
                found.add(split_scope(str(source[0]))[0])
                # Others on the link answer about as fast: a short grace, not the full wait.
                deadline = min(deadline, time.monotonic() + _GRACE)
    return sorted(a for a in found if is_link_local(a))


async def neighbour_table(interface: str, timeout: float = _NEIGH_TIMEOUT) -> list[str]:
    """Link-local neighbours the kernel knows on ``interface`` (reachable or recently so)."""
    proc = await asyncio.create_subprocess_exec(
        "ip", "-6", "neigh", "show", "dev", interface,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        out, _err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return []
    found = set()
    for line in out.decode(errors="replace").splitlines():
        fields = line.split()  # fe80::1 lladdr 02:00:00:00:00:01 router REACHABLE
        if len(fields) >= 2 and fields[-1] in _USABLE and is_link_local(fields[0]):
            found.add(str(ipaddress.IPv6Address(fields[0])))
    return sorted(found)


async def probe_link(interface: str, timeout: float) -> list[str]:
    """The neighbours on ``interface``, ``fe80::…%interface``: echo replies, else the kernel's
    neighbour table."""
    own = set(link_locals(interface))
    found = [a for a in await echo_neighbours(interface, timeout) if a not in own]
    if not found:
        found = [a for a in await neighbour_table(interface) if a not in own]
    return [f"{address}%{interface}" for address in found]


class UnnumberedPeers:
    """One watcher per unnumbered peer: learns the neighbour's link-local address and keeps the
    speaker's peer on it."""

    def __init__(
        self,
        speaker: PeerTable,
        *,
        prober: Prober = probe_link,
        probe_timeout: float = PROBE_TIMEOUT,
        recheck: float = RECHECK,
    ) -> None:
        self.speaker = speaker
        self.prober = prober
        self.probe_timeout = probe_timeout
        self.recheck = recheck
        self.addresses: dict[str, str] = {}  # interface -> the peer's current address
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._specs: dict[str, PeerSpec] = {}  # interface -> the configured spec

    def add(self, spec: PeerSpec) -> None:
        interface = spec.interface
        if interface is None:
            raise ValueError("an unnumbered peer needs an interface")
        if interface in self._tasks:
            raise ValueError(f"unnumbered peer on {interface} already configured")
        self._specs[interface] = spec
        self._tasks[interface] = asyncio.create_task(self._watch(spec, interface),
                                                     name=f"unnumbered-{interface}")  # fmt: skip

    def apply(self, specs: Iterable[PeerSpec]) -> None:
        """Make the watched peers exactly ``specs`` (a changed peer starts over)."""
        wanted = {spec.interface: spec for spec in specs if spec.interface is not None}
        for interface in list(self._specs):
            if self._specs[interface] != wanted.get(interface):
                self.remove(interface)
        for spec in wanted.values():
            if spec.interface not in self._specs:
                self.add(spec)

    def remove(self, interface: str) -> None:
        self._specs.pop(interface, None)
        task = self._tasks.pop(interface, None)
        if task is not None:
            task.cancel()
        address = self.addresses.pop(interface, None)
        if address is not None:
            self.speaker.remove_peer(address)

    async def close(self) -> None:
        """Stop watching (the speaker's peers stay; the speaker stops them)."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._specs.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _probe(self, interface: str) -> list[str]:
        try:
            return await self.prober(interface, self.probe_timeout)
        except OSError as exc:  # no such interface (yet), no permission for raw sockets
            log.warning("interface=%s event=probe-failed error=%s", interface, exc)
            return []

    async def _watch(self, spec: PeerSpec, interface: str) -> None:
        backoff = 1.0
        log.info("interface=%s event=looking-for-neighbour", interface)
        while True:
            found = await self._probe(interface)
            current = self.addresses.get(interface)
            if found and current not in found:
                if len(found) > 1:
                    log.warning("interface=%s event=several-neighbours addresses=%s using=%s",
                                interface, ",".join(found), found[0])  # fmt: skip
                self._move(spec, interface, current, found[0])
            if interface in self.addresses:
                await asyncio.sleep(self.recheck)
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.recheck)

    def _move(self, spec: PeerSpec, interface: str, old: str | None, new: str) -> None:
        if old is not None:
            log.info("interface=%s event=neighbour-changed old=%s new=%s", interface, old, new)
            self.speaker.remove_peer(old)
        else:
            log.info("interface=%s event=neighbour-found address=%s", interface, new)
        self.speaker.add_peer(dataclasses.replace(spec, address=new))
        self.addresses[interface] = new
