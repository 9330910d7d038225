"""Record the BGP messages BIRD and GoBGP really send, as golden vectors for the codec tests.

Owns: a deliberately tiny BGP-4 speaker on plain sockets (:class:`RawPeer`: hand-built OPEN,
KEEPALIVE and one kind of UPDATE, RFC 4271 §4; capabilities per RFC 5492, 4760, 2918, 6793,
4724, 7911, 8654), a minimal UPDATE reader that only sorts captured frames into files, and the
capture scenarios in :mod:`tests.support.capture_scenarios`. It does not use ``bgpd.codec``:
the captures exist to check that codec against independent bytes.

Script mode (root): ``python -m tests.support.capture --out tests/unit/bgpd/codec/captured``
writes ``<daemon>_<kind>.hex`` files: ``#`` comment lines saying how they were produced, then
one whole BGP message (header included) per line in hex.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.support.netns import DEFAULT_TIMEOUT, netns_socket

MARKER = b"\xff" * 16
HEADER_LEN = 19
AS_TRANS = 23456

OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
ATTR_MP_REACH, ATTR_MP_UNREACH = 14, 15


# -- hand-built messages --------------------------------------------------------------------


def message(msg_type: int, body: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), msg_type) + body


def keepalive() -> bytes:
    return message(KEEPALIVE)


def capability(code: int, value: bytes = b"") -> bytes:
    return bytes([code, len(value)]) + value


def cap_multiprotocol(afi: int, safi: int = 1) -> bytes:
    return capability(1, struct.pack("!HBB", afi, 0, safi))


def cap_route_refresh() -> bytes:
    return capability(2)


def cap_extended_message() -> bytes:
    return capability(6)


def cap_four_octet_as(asn: int) -> bytes:
    return capability(65, struct.pack("!I", asn))


def cap_graceful_restart(restart_time: int, families: tuple[tuple[int, int], ...]) -> bytes:
    value = struct.pack("!H", restart_time & 0x0FFF)
    value += b"".join(struct.pack("!HBB", afi, safi, 0) for afi, safi in families)
    return capability(64, value)


def cap_add_path(families: tuple[tuple[int, int, int], ...]) -> bytes:
    return capability(69, b"".join(struct.pack("!HBB", a, s, mode) for a, s, mode in families))


def open_message(asn: int, hold_time: int, router_id: str, caps: tuple[bytes, ...]) -> bytes:
    """OPEN with every capability in one Capabilities optional parameter (type 2)."""
    params = bytes([2, sum(len(c) for c in caps)]) + b"".join(caps)
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    body = struct.pack("!BHH4sB", 4, my_as, hold_time, socket.inet_aton(router_id), len(params))
    return message(OPEN, body + params)


def prefix_wire(prefix: str) -> bytes:
    net = ipaddress.ip_network(prefix)
    return bytes([net.prefixlen]) + net.network_address.packed[: (net.prefixlen + 7) // 8]


def update_ipv4(prefixes: tuple[str, ...], next_hop: str, local_pref: int = 100) -> bytes:
    """An iBGP UPDATE: ORIGIN IGP, empty AS_PATH, NEXT_HOP, LOCAL_PREF, IPv4 NLRI."""
    attrs = (
        bytes([0x40, 1, 1, 0])
        + bytes([0x40, 2, 0])
        + bytes([0x40, 3, 4])
        + socket.inet_aton(next_hop)
        + bytes([0x40, 5, 4])
        + struct.pack("!I", local_pref)
    )
    nlri = b"".join(prefix_wire(p) for p in prefixes)
    return message(UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)


# -- just enough UPDATE reading to sort captures --------------------------------------------


@dataclass(frozen=True)
class UpdateSummary:
    """What an UPDATE carries, prefixes as text; only used to name and check captures."""

    withdrawn: tuple[str, ...]
    nlri: tuple[str, ...]
    mp_reach: tuple[str, ...]
    mp_unreach: tuple[str, ...]
    attr_types: tuple[int, ...]
    mp_unreach_family: tuple[int, int] | None

    @property
    def is_end_of_rib(self) -> bool:
        # RFC 4724 §2: an empty UPDATE (IPv4) or one with only an empty MP_UNREACH_NLRI.
        if self.withdrawn or self.nlri or self.mp_reach or self.mp_unreach:
            return False
        return not self.attr_types or self.attr_types == (ATTR_MP_UNREACH,)

    @property
    def announced(self) -> tuple[str, ...]:
        return self.nlri + self.mp_reach


def _prefixes(data: bytes, afi: int, add_path: bool) -> tuple[str, ...]:
    size = 4 if afi == 1 else 16
    out, pos = [], 0
    while pos < len(data):
        path_id = ""
        if add_path:
            path_id = f"#{struct.unpack_from('!I', data, pos)[0]}"
            pos += 4
        length = data[pos]
        octets = (length + 7) // 8
        raw = data[pos + 1 : pos + 1 + octets].ljust(size, b"\0")
        out.append(f"{ipaddress.ip_address(raw)}/{length}{path_id}")
        pos += 1 + octets
    return tuple(out)


def summarize_update(frame: bytes, add_path: bool = False) -> UpdateSummary:
    body = frame[HEADER_LEN:]
    wlen = struct.unpack_from("!H", body, 0)[0]
    withdrawn = _prefixes(body[2 : 2 + wlen], 1, add_path)
    alen = struct.unpack_from("!H", body, 2 + wlen)[0]
    attrs = body[4 + wlen : 4 + wlen + alen]
    nlri = _prefixes(body[4 + wlen + alen :], 1, add_path)
    types: list[int] = []
    reach: tuple[str, ...] = ()
    unreach: tuple[str, ...] = ()
    family: tuple[int, int] | None = None
    pos = 0
    while pos < len(attrs):
        flags, code = attrs[pos], attrs[pos + 1]
        if flags & 0x10:
            length, pos = struct.unpack_from("!H", attrs, pos + 2)[0], pos + 4
        else:
            length, pos = attrs[pos + 2], pos + 3
        value = attrs[pos : pos + length]
        pos += length
        types.append(code)
        if code == ATTR_MP_REACH:
            afi, nh_len = struct.unpack_from("!H", value, 0)[0], value[3]
            reach = _prefixes(value[5 + nh_len :], afi, add_path)
        elif code == ATTR_MP_UNREACH:
            afi = struct.unpack_from("!H", value, 0)[0]
            family = (afi, value[2])
            unreach = _prefixes(value[3:], afi, add_path)
    return UpdateSummary(withdrawn, nlri, reach, unreach, tuple(types), family)


def classify(frame: bytes, add_path: bool = False) -> str:
    """The capture file kind for a frame: open, keepalive, notification, eor, update_ipv4, …"""
    kind = frame[18]
    if kind != UPDATE:
        return {OPEN: "open", KEEPALIVE: "keepalive", NOTIFICATION: "notification"}.get(
            kind, f"type{kind}"
        )
    summary = summarize_update(frame, add_path)
    if summary.is_end_of_rib:
        return "eor"
    if summary.mp_unreach:
        return "withdraw_ipv6"
    if summary.withdrawn and not summary.nlri:
        return "withdraw_ipv4"
    return "update_ipv4" if summary.nlri else "update_ipv6"


# -- the raw peer ---------------------------------------------------------------------------


class RawPeer:
    """One BGP session from a plain socket in a namespace; every frame received is kept."""

    def __init__(self, sock: socket.socket, add_path: bool = False) -> None:
        self.sock = sock
        self.add_path = add_path  # the peer sends path identifiers (ADD-PATH negotiated)
        self.received: list[bytes] = []
        self.closed = False
        self._buffer = b""

    @classmethod
    def connect(
        cls,
        ns: str,
        local: str,
        remote: str,
        port: int = 179,
        timeout: float = DEFAULT_TIMEOUT,
        add_path: bool = False,
    ) -> RawPeer:
        """Connect from ``local`` to ``remote``, retrying while the daemon is not listening."""
        deadline = time.monotonic() + timeout
        while True:
            sock = netns_socket(ns)
            try:
                sock.settimeout(2.0)
                sock.bind((local, 0))
                sock.connect((remote, port))
                return cls(sock, add_path)
            except OSError:
                sock.close()
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)

    def send(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def recv(self, timeout: float) -> bytes | None:
        """The next whole message (recorded), or None if none arrived in time or on EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buffer) >= HEADER_LEN:
                length = struct.unpack_from("!H", self._buffer, 16)[0]
                if len(self._buffer) >= length:
                    frame, self._buffer = self._buffer[:length], self._buffer[length:]
                    self.received.append(frame)
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                self.closed = True
            self._buffer += chunk

    def establish(
        self, asn: int, router_id: str, caps: tuple[bytes, ...], hold_time: int = 90
    ) -> bytes:
        """Send OPEN, wait for theirs, then KEEPALIVEs both ways; returns their OPEN."""
        self.send(open_message(asn, hold_time, router_id, caps))
        their_open = self.expect(OPEN)
        self.send(keepalive())
        self.expect(KEEPALIVE)
        return their_open

    def expect(self, msg_type: int, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        def arrived() -> bytes | None:
            return next((f for f in self.received if f[18] == msg_type), None)

        self.collect(lambda: arrived() is not None, timeout)
        frame = arrived()
        if frame is None:
            raise TimeoutError(f"no message of type {msg_type}; got {self.kinds()}")
        return frame

    def collect(self, done: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> bool:
        """Receive until ``done()`` holds (True), the peer closes or time runs out (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return False
            self.recv(min(remaining, 0.5))
        return True

    def kinds(self) -> list[str]:
        return [classify(f, self.add_path) for f in self.received]

    def announced(self) -> set[str]:
        return {
            p
            for f in self.received
            if f[18] == UPDATE
            for p in summarize_update(f, self.add_path).announced
        }

    def withdrawn(self) -> set[str]:
        out: set[str] = set()
        for frame in self.received:
            if frame[18] == UPDATE:
                summary = summarize_update(frame, self.add_path)
                out.update(summary.withdrawn + summary.mp_unreach)
        return out

    def end_of_rib(self) -> set[tuple[int, int]]:
        out: set[tuple[int, int]] = set()
        for frame in self.received:
            if frame[18] == UPDATE:
                summary = summarize_update(frame, self.add_path)
                if summary.is_end_of_rib:
                    out.add(summary.mp_unreach_family or (1, 1))
        return out

    def close(self) -> None:
        self.sock.close()


# -- files ----------------------------------------------------------------------------------


def write_captures(
    out_dir: Path,
    name: str,
    frames: list[bytes],
    comment: str,
    add_path: bool = False,
    kinds: set[str] | None = None,
) -> list[Path]:
    """Sort ``frames`` by kind into ``<name>_<kind>.hex`` files, only ``kinds`` when given;
    returns the files written."""
    by_kind: dict[str, list[bytes]] = {}
    for frame in frames:
        kind = classify(frame, add_path)
        if kinds is not None and kind not in kinds:
            continue
        if kind == "keepalive" and by_kind.get(kind):
            continue  # one is enough: they are all the same 19 bytes
        by_kind.setdefault(kind, []).append(frame)
    written = []
    for kind, kind_frames in sorted(by_kind.items()):
        path = out_dir / f"{name}_{kind}.hex"
        lines = [f"# {line}" for line in comment.strip().splitlines()]
        lines.append(
            "# regenerate: python -m tests.support.capture --out tests/unit/bgpd/codec/captured"
        )
        lines += [frame.hex() for frame in kind_frames]
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    from tests.support import capture_scenarios  # the scenarios need netns/bird/gobgp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the .hex files")
    parser.add_argument(
        "--only", choices=sorted(capture_scenarios.SCENARIOS), action="append", default=None
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or sorted(capture_scenarios.SCENARIOS):
        for path in capture_scenarios.SCENARIOS[name](args.out):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
