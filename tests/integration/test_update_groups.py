"""Update groups and slow peers, with a real speaker and real TCP peers on loopback.

Peers with one outbound policy share one update group and receive the same bytes; a peer that
stops reading is paused (its buffered bytes stay bounded) while the others get everything, and
once it reads again it catches up to the same table.
"""

from __future__ import annotations

import asyncio
import os
import socket

from bgpd.codec.messages import CodecContext, Decoder, Framer, encode_message
from bgpd.codec.types import (
    Afi,
    FourOctetAs,
    Keepalive,
    Multiprotocol,
    Open,
    Safi,
    Update,
    prefix_to_str,
)
from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig

NET = f"127.{100 + os.getpid() % 100}.{(os.getpid() + 31) % 200}"
SPEAKER = f"{NET}.1"
ASN = 64512
N = 20_000


class RawPeer:
    """A passive-minded BGP peer driven by the test: OPEN, KEEPALIVE, then read on demand."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.prefixes: set[str] = set()
        self.raw_updates: list[bytes] = []
        self.framer = Framer()
        self.decoder = Decoder(CodecContext())

    async def connect(self, port: int, rcvbuf: int | None = None) -> None:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((self.address, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (SPEAKER, port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock, limit=16384)
        caps = (Multiprotocol(Afi.IPV4, Safi.UNICAST), FourOctetAs(ASN))
        self.writer.write(encode_message(Open(ASN, 90, self.address, caps)))
        self.writer.write(encode_message(Keepalive()))
        seen = []
        while len(seen) < 2:
            seen += [type(self.decoder.decode(f)).__name__ for f in await self._frames()]
        assert seen[:2] == ["Open", "Keepalive"], seen

    async def _frames(self) -> list[bytes]:
        data = await asyncio.wait_for(self.reader.read(65536), 10)
        assert data, "connection closed"
        return self.framer.feed(data)

    async def read_until(self, count: int, timeout: float = 30) -> None:
        async def loop() -> None:
            while len(self.prefixes) < count:
                for frame in await self._frames():
                    message = self.decoder.decode(frame)
                    if isinstance(message, Update):
                        self.raw_updates.append(frame)
                        for wire in message.nlri:
                            self.prefixes.add(prefix_to_str(Afi.IPV4, wire))
                        for wire in message.withdrawn:
                            self.prefixes.discard(prefix_to_str(Afi.IPV4, wire))

        await asyncio.wait_for(loop(), timeout)


async def test_group_shares_bytes_and_a_slow_peer_is_paused_then_catches_up() -> None:
    speaker = Speaker(SpeakerConfig(asn=ASN, router_id=SPEAKER, graceful_restart=False))
    # Well below what the table minus the slow peer's socket and stream buffers (~40 KiB) leaves.
    speaker.exporter.high_water = 16 * 1024
    await speaker.start()
    addresses = [f"{NET}.{i}" for i in (2, 3, 4)]
    for a in addresses:
        speaker.add_peer(PeerSpec(address=a, asn=ASN, passive=True))
    port = await speaker.listen(SPEAKER, 0)
    fast1, fast2, slow = (RawPeer(a) for a in addresses)
    try:
        for peer in (fast1, fast2):
            await peer.connect(port)
        await slow.connect(port, rcvbuf=4096)  # and then it does not read for a while
        for _ in range(100):  # until the speaker has the session up on its side
            if speaker.peers[slow.address].session.established_socket() is not None:
                break
            await asyncio.sleep(0.01)
        # Small kernel buffers towards the slow peer, so user-space buffering shows at once.
        sock = speaker.peers[slow.address].session.established_socket()
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        blocks = [f"10.{i >> 8}.{i & 0xFF}.0/24" for i in range(N)]
        for block in blocks:
            speaker.originate(block)
        await fast1.read_until(N)
        await fast2.read_until(N)
        assert fast1.prefixes == fast2.prefixes == set(blocks)
        # One update group, one encoding: both fast peers got the very same UPDATE bytes.
        assert len(speaker.exporter.groups) == 1
        assert fast1.raw_updates == fast2.raw_updates
        group = next(iter(speaker.exporter.groups.values()))
        slow_member = group.members[slow.address]
        assert slow_member.paused, "the peer that does not read should be paused"
        buffered = speaker.peers[slow.address].session.write_buffer_size()
        largest_batch = sum(len(f) for f in fast1.raw_updates)
        assert buffered <= speaker.exporter.high_water + largest_batch

        # While it is paused the table changes; it must end with the current state.
        for block in blocks[:100]:
            speaker.withdraw_origin(block)
        await slow.read_until(N - 100, timeout=60)
        assert slow.prefixes == set(blocks[100:])
        assert not slow_member.paused
    finally:
        await speaker.stop(graceful=False)
        for peer in (fast1, fast2, slow):
            if hasattr(peer, "writer"):
                peer.writer.close()
