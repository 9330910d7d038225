"""The session's write path without sockets: UPDATEs queued in one loop tick go out in one write,
in order, and count towards the write buffer until they do."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from bgpd.codec.types import Keepalive
from bgpd.fsm import FsmConfig
from bgpd.session import Session, _Conn


@dataclass
class FakeTransport:
    buffered: int = 0

    def get_write_buffer_size(self) -> int:
        return self.buffered


@dataclass
class FakeWriter:
    """Records each write call (each one is a send() on a real socket)."""

    writes: list[bytes] = field(default_factory=list)
    transport: FakeTransport = field(default_factory=FakeTransport)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, data: list[bytes]) -> None:
        self.writes.append(b"".join(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> Any:
        return None


class Owner:
    def session_up(self, *args: object) -> None: ...

    def session_down(self, *args: object) -> None: ...

    async def deliver(self, *args: object) -> None: ...


def established(writer: FakeWriter) -> Session:
    config = FsmConfig(local_asn=64512, local_router_id="192.0.2.1", peer_asn=64512, passive=True)
    session = Session("192.0.2.2", 179, config, Owner())
    conn = _Conn(1, False, asyncio.StreamReader(), writer)  # type: ignore[arg-type]
    session._conns[1] = conn
    session.established_conn = 1
    return session


async def test_updates_queued_in_one_tick_go_out_in_one_write() -> None:
    writer = FakeWriter()
    session = established(writer)
    assert session.send_raw([b"u1", b"u2"])
    assert session.send_raw([b"u3"])
    assert session.send_raw([b"u4u5"], count=2)
    assert writer.writes == [], "nothing written before the tick ends"
    assert session.write_buffer_size() == 10, "queued bytes count as buffered"
    assert session.stats.sent["update"] == 5
    await asyncio.sleep(0)
    assert writer.writes == [b"u1u2u3u4u5"]
    assert session.write_buffer_size() == 0
    session.send_raw([b"u6"])
    await asyncio.sleep(0)
    assert writer.writes == [b"u1u2u3u4u5", b"u6"]


async def test_a_single_shared_buffer_is_written_as_it_is() -> None:
    writer = FakeWriter()
    session = established(writer)
    shared = b"x" * 100
    session.send_raw([shared], count=3)
    await asyncio.sleep(0)
    assert writer.writes == [shared]


async def test_fsm_messages_keep_their_place_after_queued_updates() -> None:
    writer = FakeWriter()
    session = established(writer)
    session.send_raw([b"update"])
    session._send(1, Keepalive())
    assert writer.writes[0] == b"update"
    assert writer.writes[1][18] == 4  # the KEEPALIVE, after the UPDATE queued before it
    await asyncio.sleep(0)
    assert len(writer.writes) == 2, "nothing written twice"


async def test_queued_updates_go_out_before_close() -> None:
    writer = FakeWriter()
    session = established(writer)
    session.send_raw([b"last"])
    session._close(session._conns[1])
    assert writer.writes == [b"last"]
    assert writer.closed


async def test_a_flush_writes_at_once_together_with_what_was_queued() -> None:
    writer = FakeWriter()
    session = established(writer)
    session.send_raw([b"table"])
    session.send_raw([b"change"], flush=True)
    assert writer.writes == [b"tablechange"]
    assert session.write_buffer_size() == 0
    session.send_raw([b"next"], flush=True)
    assert writer.writes == [b"tablechange", b"next"]
    await asyncio.sleep(0)
    assert len(writer.writes) == 2, "nothing left for the end of the tick"
