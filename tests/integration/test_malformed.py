"""Malformed input against a running `podbgp bgpd`: each case gets the RFC's answer (RFC 4271
§6 NOTIFICATION, or RFC 7606 treat-as-withdraw) and neither the daemon nor its other session
notices. The bad messages are written by hand, byte by byte, from a raw TCP peer on loopback."""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.podbgp import PodbgpSpeaker, wait_for

PORT = 21000 + os.getpid() % 20000
NET = f"127.{100 + os.getpid() % 100}.{(os.getpid() + 7) % 200}"
SPEAKER, RAW, OTHER = f"{NET}.1", f"{NET}.2", f"{NET}.3"
MARKER = b"\xff" * 16


def message(kind: int, body: bytes, *, marker: bytes = MARKER, length: int | None = None) -> bytes:
    size = 19 + len(body) if length is None else length
    return marker + struct.pack("!HB", size, kind) + body


def open_body() -> bytes:
    # version 4, AS 64512, hold 90, BGP ID, capabilities: MP IPv4 unicast, 4-octet AS 64512
    caps = bytes([2, 6, 1, 4, 0, 1, 0, 1]) + bytes([2, 6, 65, 4]) + struct.pack("!I", 64512)
    return struct.pack("!BHH4sB", 4, 64512, 90, socket.inet_aton(RAW), len(caps)) + caps


def attr(flags: int, code: int, value: bytes) -> bytes:
    return bytes([flags, code, len(value)]) + value


ORIGIN_IGP = attr(0x40, 1, b"\x00")
AS_PATH_EMPTY = attr(0x40, 2, b"")
NEXT_HOP = attr(0x40, 3, socket.inet_aton(RAW))
LOCAL_PREF = attr(0x40, 5, struct.pack("!I", 100))
PREFIX = bytes([24, 10, 250, 1])  # 10.250.1.0/24
PREFIX_TEXT = "10.250.1.0/24"


def update(attrs: bytes, nlri: bytes = PREFIX, withdrawn: bytes = b"") -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs))
    return message(2, body + attrs + nlri)


VALID = update(ORIGIN_IGP + AS_PATH_EMPTY + NEXT_HOP + LOCAL_PREF)


class RawPeer:
    """A hand-driven BGP peer: OPEN/KEEPALIVE handshake, then whatever bytes a test sends."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.settimeout(5)
        self.sock.bind((RAW, 0))
        self.sock.connect((SPEAKER, PORT))
        self.sock.sendall(message(1, open_body()))
        kinds = [self.read()[0], self.read()[0]]
        assert kinds == [1, 4], f"expected OPEN then KEEPALIVE, got {kinds}"
        self.sock.sendall(message(4, b""))

    def read(self) -> tuple[int, bytes]:
        head = self._exact(19)
        length, kind = struct.unpack("!HB", head[16:19])
        return kind, self._exact(length - 19)

    def _exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def expect_notification(self) -> tuple[int, int]:
        """Read past KEEPALIVEs/UPDATEs to the NOTIFICATION; return (code, subcode)."""
        for _ in range(100):
            kind, body = self.read()
            if kind == 3:
                return body[0], body[1]
        raise AssertionError("no NOTIFICATION")

    def close(self) -> None:
        self.sock.close()


def connect_raw(timeout: float = 30) -> RawPeer:
    """Connect once podbgp accepts us again (after an error it holds the peer Idle a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return RawPeer()
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def speakers(tmp_path: Path) -> Iterator[tuple[PodbgpSpeaker, PodbgpSpeaker]]:
    def config(me: str, peers: list[dict[str, object]], block: str) -> dict[str, object]:
        return {
            "asNumber": 64512,
            "routerId": me,
            "listen": {"address": me, "port": PORT},
            "api": {"listen": f"{me}:9179"},
            "gracefulRestart": {"enabled": False},
            "logLevel": "debug",
            "peers": peers,
            "originate": [block],
        }

    main = PodbgpSpeaker(tmp_path, "main", config(SPEAKER, [
        {"address": RAW, "asNumber": 64512, "passive": True},
        {"address": OTHER, "asNumber": 64512, "port": PORT, "sourceAddress": SPEAKER},
    ], "10.244.1.0/24")).start()  # fmt: skip
    other = PodbgpSpeaker(tmp_path, "other", config(OTHER, [
        {"address": SPEAKER, "asNumber": 64512, "port": PORT, "sourceAddress": OTHER},
    ], "10.244.3.0/24")).start()  # fmt: skip
    try:
        yield main, other
    finally:
        main.stop()
        other.stop()


def other_session_since(main: PodbgpSpeaker) -> str:
    peer = main.get(f"/v1/peers/{OTHER}")
    assert peer["state"] == "Established"
    return str(peer["since"])


# (name, malformed bytes, NOTIFICATION (code, subcode))
SESSION_RESETS = [
    ("bad marker", message(4, b"", marker=b"\x00" * 16), (1, 1)),
    ("bad length", message(4, b"", length=18), (1, 2)),
    ("keepalive with a body", message(4, b"\x00"), (1, 2)),
    ("unknown message type", message(9, b""), (1, 3)),
    # Truncated UPDATE: the withdrawn-routes length runs past the end of the message.
    ("truncated update", message(2, struct.pack("!H", 200) + PREFIX), (3, 1)),
]

# (name, an UPDATE for PREFIX that must be treated as a withdrawal of PREFIX)
TREAT_AS_WITHDRAW = [
    ("ORIGIN of 5", update(attr(0x40, 1, b"\x05") + AS_PATH_EMPTY + NEXT_HOP + LOCAL_PREF)),
    ("missing NEXT_HOP", update(ORIGIN_IGP + AS_PATH_EMPTY + LOCAL_PREF)),
    # RFC 7606 §4: an attribute whose length overruns the attribute section.
    ("attribute length overrun",
     update(ORIGIN_IGP + AS_PATH_EMPTY + NEXT_HOP + bytes([0x40, 5, 40]) + b"\x00\x00\x00\x64")),
    # RFC 7607: AS 0 in the AS_PATH.
    ("AS 0 in AS_PATH", update(ORIGIN_IGP + attr(0x40, 2, b"\x02\x01\x00\x00\x00\x00")
                               + NEXT_HOP + LOCAL_PREF)),
    # RFC 7606 §7.14: EXTENDED_COMMUNITIES not a multiple of 8 octets.
    ("extended communities length 7",
     update(ORIGIN_IGP + AS_PATH_EMPTY + NEXT_HOP + LOCAL_PREF + attr(0xC0, 16, b"\x00" * 7))),
]  # fmt: skip
# RFC 4271 §6.3: a NEXT_HOP that is the receiving speaker's own address; the route is ignored.
OWN_NEXT_HOP = update(ORIGIN_IGP + AS_PATH_EMPTY + attr(0x40, 3, socket.inet_aton(SPEAKER))
                      + LOCAL_PREF)  # fmt: skip
# Every attribute a path can carry, some of them malformed only in a way that is discarded.
RICH = update(
    ORIGIN_IGP + AS_PATH_EMPTY + NEXT_HOP + LOCAL_PREF
    + attr(0x40, 6, b"\x00")  # ATOMIC_AGGREGATE with a value: discarded (RFC 7606 §7.6)
    + attr(0xC0, 7, struct.pack("!I4s", 65001, socket.inet_aton("10.0.0.1")))  # AGGREGATOR
    + attr(0xC0, 16, struct.pack("!BBHI", 0x00, 0x02, 65000, 7))  # route target 65000:7
    + attr(0xC0, 99, b"\xab\xcd")  # unknown optional transitive: kept, shown in hex
)  # fmt: skip


def test_malformed_messages(speakers: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    main, _other = speakers
    wait_for(lambda: main.peer_state(OTHER) == "Established", 20, what="other session")
    since = other_session_since(main)

    raw = connect_raw()
    try:
        for name, bad in TREAT_AS_WITHDRAW:
            raw.sock.sendall(VALID)
            wait_for(lambda: PREFIX_TEXT in main.route_prefixes(), 10, what=f"route before {name}")
            raw.sock.sendall(bad)
            wait_for(lambda: PREFIX_TEXT not in main.route_prefixes(), 10, what=f"{name} withdraws")
            assert main.peer_state(RAW) == "Established", f"{name} must not reset the session"
        raw.sock.sendall(VALID)
        wait_for(lambda: PREFIX_TEXT in main.route_prefixes(), 10, what="route before own hop")
        raw.sock.sendall(OWN_NEXT_HOP)
        wait_for(lambda: PREFIX_TEXT not in main.route_prefixes(), 10, what="own next hop ignored")
        errors = main.get(f"/v1/peers/{RAW}")["updateErrors"]
        assert errors["treatAsWithdraw"] == len(TREAT_AS_WITHDRAW), errors
        assert errors["ownNextHop"] == 1 and "RFC 4271 §6.3" in errors["lastReason"], errors
        # A path with every attribute: /v1/routes shows them all, as BIRD's `show route all`.
        raw.sock.sendall(RICH)
        route = wait_for(lambda: main.routes_by_prefix().get(PREFIX_TEXT), 10, what="rich route")
        assert route["atomicAggregate"] is False  # the malformed one was discarded
        assert route["aggregator"] == "65001 10.0.0.1"
        assert route["extendedCommunities"] == ["rt:65000:7"]
        assert route["unknown"] == [{"code": 99, "flags": 0xC0, "value": "abcd"}]
        errors = main.get(f"/v1/peers/{RAW}")["updateErrors"]
        assert errors["attributesDiscarded"] == 1, errors
        assert main.peer_state(RAW) == "Established"
    finally:
        raw.close()

    for name, bad, expected in SESSION_RESETS:
        raw = connect_raw()
        try:
            raw.sock.sendall(VALID)
            wait_for(lambda: PREFIX_TEXT in main.route_prefixes(), 10, what=f"route before {name}")
            raw.sock.sendall(bad)
            assert raw.expect_notification() == expected, name
        finally:
            raw.close()
        # The session's routes are flushed; the daemon and the other session carry on.
        wait_for(lambda: PREFIX_TEXT not in main.route_prefixes(), 10, what=f"flush after {name}")
        assert main.running(), main.log()[-3000:]
        assert other_session_since(main) == since, f"{name} disturbed another session"
    assert "10.244.3.0/24" in main.route_prefixes()


def test_unconfigured_address_gets_cease(speakers: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    main, _other = speakers
    wait_for(lambda: main.peer_state(OTHER) == "Established", 20, what="other session")
    stranger = socket.socket()
    stranger.settimeout(5)
    try:
        stranger.bind((f"{NET}.9", 0))
        stranger.connect((SPEAKER, PORT))
        head = stranger.recv(19, socket.MSG_WAITALL)
        body = stranger.recv(2, socket.MSG_WAITALL)
        assert head[:16] == MARKER and head[18] == 3, "expected a NOTIFICATION"
        assert (body[0], body[1]) == (6, 5)  # Cease / Connection Rejected
        assert stranger.recv(1) == b""  # and the connection is closed
    finally:
        stranger.close()
    assert main.running()
    assert main.peer_state(OTHER) == "Established"


def test_rfc7606_rows_end_to_end(speakers: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    """Every iBGP row of the RFC 7606 audit table (tests/unit/bgpd/codec/test_rfc7606.py)
    against the running daemon: treat-as-withdraw rows withdraw the prefix, discard rows keep
    it, the session stays Established, and the peer's counters say how many of each."""
    from bgpd.codec.errors import ErrorAction
    from tests.unit.bgpd.codec.test_rfc7606 import IBGP4, ROWS

    main, _other = speakers
    rows = [(name, bytes.fromhex(sec.replace(" ", "")), action)
            for name, sec, ctx, action, _sub in ROWS if ctx is IBGP4]  # fmt: skip
    raw = connect_raw()
    try:
        for name, section, action in rows:
            raw.sock.sendall(VALID)
            wait_for(lambda: main.routes_by_prefix().get(PREFIX_TEXT, {}).get("nextHop") == RAW,
                     10, what=f"valid route before {name}")  # fmt: skip
            raw.sock.sendall(update(section))
            if action is ErrorAction.TREAT_AS_WITHDRAW:
                wait_for(lambda: PREFIX_TEXT not in main.route_prefixes(), 10, what=name)
            else:  # discard: the route stays, now with the row's next hop
                wait_for(lambda: main.routes_by_prefix().get(PREFIX_TEXT, {}).get("nextHop")
                         == "10.0.0.1", 10, what=name)  # fmt: skip
            assert main.peer_state(RAW) == "Established", f"{name} must not reset the session"
        errors = main.get(f"/v1/peers/{RAW}")["updateErrors"]
        withdrawn = sum(1 for _n, _s, a in rows if a is ErrorAction.TREAT_AS_WITHDRAW)
        assert errors["treatAsWithdraw"] == withdrawn, errors
        assert errors["attributesDiscarded"] == len(rows) - withdrawn, errors
    finally:
        raw.close()
