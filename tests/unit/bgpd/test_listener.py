"""The listening sockets (bgpd.listener), on real loopback sockets: a connection from an address
no peer covers is refused with Cease/Connection Rejected, and GTSM is set at the SYN only when
every peer that may connect uses it. Accepting a configured peer's connection is exercised by
every speaker-to-speaker test (test_llgr.py, test_deferral.py, the interop tests)."""

from __future__ import annotations

import asyncio
import socket

from bgpd.codec.errors import CeaseSubcode, ErrorCode
from bgpd.codec.messages import Framer, decode_message
from bgpd.codec.types import Notification
from bgpd.listener import Listener
from bgpd.session import Session
from bgpd.tcp import IP_MINTTL

refused: list[str] = []


def refuse_all(address: str) -> Session | None:
    refused.append(address)
    return None


async def test_unknown_address_gets_cease_connection_rejected() -> None:
    listener = Listener(refuse_all)
    port = await listener.listen("127.0.0.1", 0, (), ())
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        data = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        frames = Framer().feed(data)
        assert len(frames) == 1
        message = decode_message(frames[0])
        assert message == Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_REJECTED)
        assert await asyncio.wait_for(reader.read(1), 5) == b""  # and closed
        assert refused[-1] == "127.0.0.1"
    finally:
        listener.close()


def min_ttls(listener: Listener) -> set[int]:
    return {s.getsockopt(socket.IPPROTO_IP, IP_MINTTL) for s in listener._sockets()}


async def test_gtsm_at_the_syn_only_when_every_peer_uses_it() -> None:
    listener = Listener(refuse_all)
    await listener.listen("127.0.0.1", 0, (), ())
    try:
        listener.gtsm([1, 3], ranges=False)
        assert min_ttls(listener) == {253}  # the most distant peer: 3 hops
        listener.gtsm([1, 0], ranges=False)
        assert min_ttls(listener) == {0}  # one peer without GTSM may come from anywhere
        listener.gtsm([2], ranges=False)
        assert min_ttls(listener) == {254}
        listener.gtsm([2], ranges=True)
        assert min_ttls(listener) == {0}  # anyone in a peer range may connect
        listener.gtsm([], ranges=False)
        assert min_ttls(listener) == {0}
    finally:
        listener.close()
