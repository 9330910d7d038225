"""Simulated route-reflector clients for ``bench.fanout``: one process, one BGP session each.

Runs inside the clients' network namespace (``python -m bench.fanout_clients ...``). Client
``i`` connects from its own source address to the reflector, speaks just enough BGP (OPEN,
KEEPALIVE, UPDATE, built and parsed with podbgp's codec), announces its own /24 block once the
session is Established, and records every UPDATE it receives. Nothing is simulated with sleeps:
each client is an ``asyncio.Protocol`` on one event loop, so a thousand sessions cost one
process.

The driver talks to it over stdin/stdout, one JSON object a line. Events out: ``established``
(every session up), ``converged`` (every client holds every other block), ``churn`` (arrival
times of one block's withdrawal and re-announcement at every other client) and ``report``
(correctness). Commands in: ``churn`` and ``report``; end of stdin stops the process. All times
are CLOCK_MONOTONIC seconds, which the driver shares.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from bgpd.codec.messages import CodecContext, Decoder, Framer, encode_message, encode_updates
from bgpd.codec.types import (
    Afi,
    FourOctetAs,
    Keepalive,
    Multiprotocol,
    Notification,
    Open,
    Origin,
    PathAttributes,
    Safi,
    Update,
    prefix_from_str,
    prefix_to_str,
)

OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
HOLD_TIME = 240
CTX = CodecContext()
KEEPALIVE_FRAME = encode_message(Keepalive())


def client_address(i: int) -> str:
    """Client ``i``'s source address (also its router ID and next hop)."""
    return f"10.0.{128 + i // 250}.{1 + i % 250}"


def client_block(i: int) -> str:
    return f"10.{100 + i // 256}.{i % 256}.0/24"


def emit(event: str, **data: object) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


@dataclass
class Client(asyncio.Protocol):
    sim: Simulator
    index: int
    address: str
    block: bytes
    transport: asyncio.Transport | None = None
    framer: Framer = field(default_factory=Framer)
    established_at: float | None = None
    complete_at: float | None = None
    announced: Counter[bytes] = field(default_factory=Counter)
    withdrawn: Counter[bytes] = field(default_factory=Counter)
    have: set[bytes] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    last_announce: dict[bytes, float] = field(default_factory=dict)
    last_withdraw: dict[bytes, float] = field(default_factory=dict)

    def __hash__(self) -> int:
        return self.index

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sim.connected(self)
        caps = (Multiprotocol(Afi.IPV4, Safi.UNICAST), FourOctetAs(self.sim.asn))
        transport.write(encode_message(Open(self.sim.asn, HOLD_TIME, self.address, caps)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.sim.stopping:
            return
        if self.established_at is None:
            # Refused before Established (a reflector not ready for this peer yet): retry,
            # as a BGP speaker would.
            self.framer = Framer()
            self.sim.reconnect(self)
        else:
            self.errors.append(f"connection lost: {exc or 'closed by reflector'}")

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.sim.bytes_received += len(data)
        for frame in self.framer.feed(data):
            kind = frame[18]
            if kind == UPDATE:
                message = self.sim.decoder.decode(frame)
                assert isinstance(message, Update)
                self.on_update(message, now)
            elif kind == KEEPALIVE:
                if self.established_at is None:
                    self.established_at = now
                    self.sim.established(self)
            elif kind == OPEN:
                self.send(KEEPALIVE_FRAME)
            elif kind == NOTIFICATION:
                note = self.sim.decoder.decode(frame)
                assert isinstance(note, Notification)
                self.errors.append(f"NOTIFICATION {note.code}/{note.subcode}")

    def on_update(self, update: Update, now: float) -> None:
        for prefix in update.withdrawn:
            self.withdrawn[prefix] += 1
            self.have.discard(prefix)
            self.last_withdraw[prefix] = now
        for prefix in update.nlri:
            self.announced[prefix] += 1
            self.last_announce[prefix] = now
            if prefix == self.block:
                self.errors.append("own block echoed")
            else:
                self.have.add(prefix)
        if self.complete_at is None and len(self.have) == self.sim.count - 1:
            self.complete_at = now
            self.sim.complete(self)

    def send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def announce(self) -> None:
        attrs = PathAttributes(
            origin=Origin.IGP, as_path=(), next_hop=self.address, local_pref=100
        )  # fmt: skip
        for frame in encode_updates(attrs, [self.block], CTX):
            self.send(frame)

    def withdraw(self) -> None:
        self.send(encode_message(Update(withdrawn=(self.block,)), CTX))


class Simulator:
    def __init__(self, reflector: str, count: int, asn: int) -> None:
        self.reflector = reflector
        self.count = count
        self.asn = asn
        self.decoder = Decoder(CTX)
        self.clients = [
            Client(self, i, client_address(i), prefix_from_str(client_block(i))[1])
            for i in range(count)
        ]
        self.first_connect: float | None = None
        self.first_update: float | None = None
        self.n_established = 0
        self.n_complete = 0
        self.bytes_received = 0
        self.stopping = False
        self.connect_attempts = 0
        self.reconnects = 0
        self.deadline = 0.0
        self.tasks: list[asyncio.Task[None]] = []

    # --- progress ------------------------------------------------------------------------

    def connected(self, client: Client) -> None:
        if self.first_connect is None:
            self.first_connect = time.monotonic()

    def established(self, client: Client) -> None:
        self.n_established += 1
        if self.first_update is None:
            self.first_update = time.monotonic()
        client.announce()
        if self.n_established == self.count:
            emit(
                "established", t=time.monotonic(), first_connect=self.first_connect,
                attempts=self.connect_attempts, reconnects=self.reconnects,
            )  # fmt: skip

    def complete(self, client: Client) -> None:
        self.n_complete += 1
        if self.n_complete == self.count:
            last = max(c.complete_at or 0.0 for c in self.clients)
            emit("converged", t=last, first_update=self.first_update,
                 bytes=self.bytes_received)  # fmt: skip

    # --- sessions --------------------------------------------------------------------------

    def reconnect(self, client: Client) -> None:
        self.reconnects += 1
        task = asyncio.create_task(self.connect(client, self.deadline))
        self.tasks.append(task)

    async def connect(self, client: Client, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while time.monotonic() < deadline:
            self.connect_attempts += 1
            try:
                await asyncio.wait_for(
                    loop.create_connection(
                        lambda: client, self.reflector, 179, local_addr=(client.address, 0)
                    ),
                    max(0.1, deadline - time.monotonic()),
                )
                sock = client.transport.get_extra_info("socket") if client.transport else None
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except (OSError, TimeoutError):
                # Refused until the reflector listens: retry soon, spread out.
                await asyncio.sleep(0.05 + random.random() * 0.1)
        client.errors.append("never connected")

    async def wait_for(self, done: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    async def churn(self, index: int, timeout: float) -> dict[str, object]:
        """Withdraw client ``index``'s block, wait until every other client saw it, announce it
        again; arrival latencies in ms at every other client, for both."""
        source = self.clients[index]
        others = [c for c in self.clients if c is not source]
        block = source.block
        result: dict[str, object] = {"block": prefix_to_str(Afi.IPV4, block)}
        for step in ("withdraw", "announce"):
            t_send = time.monotonic()
            if step == "withdraw":
                source.withdraw()
                ok = await self.wait_for(
                    lambda: all(c.last_withdraw.get(block, 0) >= t_send for c in others), timeout
                )
                arrivals = [c.last_withdraw.get(block, 0) for c in others]
            else:
                source.announce()
                ok = await self.wait_for(
                    lambda: all(c.last_announce.get(block, 0) >= t_send for c in others), timeout
                )
                arrivals = [c.last_announce.get(block, 0) for c in others]
            result[step] = sorted(round((t - t_send) * 1000, 2) for t in arrivals if t >= t_send)
            result[f"{step}_complete"] = ok
            await asyncio.sleep(0.3)
        return result

    def report(self, churned: int | None) -> dict[str, object]:
        """Every client got every other block exactly once (the churned one twice, and one
        withdrawal of it), never its own; no session lost, no NOTIFICATION."""
        churn_block = self.clients[churned].block if churned is not None else None
        problems: list[str] = []
        kinds: Counter[str] = Counter()
        for c in self.clients:
            for text in c.errors:
                problems.append(f"{c.address}: {text}")
            for other in self.clients:
                if other is c:
                    continue
                expected = 2 if other.block == churn_block and c.index != churned else 1
                got = c.announced.get(other.block, 0)
                if got != expected:
                    kind = "missing" if got < expected else "duplicate"
                    kinds[kind] += 1
                    problems.append(f"{c.address}: {other.address}'s block {got}x, want {expected}")
            want_withdrawn = {churn_block: 1} if churn_block and c.index != churned else {}
            if dict(c.withdrawn) != want_withdrawn:
                problems.append(f"{c.address}: withdrawals {len(c.withdrawn)} prefixes")
            if c.announced.get(c.block):
                problems.append(f"{c.address}: own block echoed")
        return {"ok": not problems, "problems": problems[:20], "problem_count": len(problems),
                "kinds": dict(kinds),
                "bytes": self.bytes_received, "reconnects": self.reconnects}  # fmt: skip

    async def run(self, connect_timeout: float) -> None:
        self.deadline = deadline = time.monotonic() + connect_timeout
        self.tasks = [asyncio.create_task(self.connect(c, deadline)) for c in self.clients]
        asyncio.get_running_loop().call_later(HOLD_TIME / 3, self._keepalive)
        emit("ready", t=time.monotonic())
        churned: int | None = None
        reader = asyncio.StreamReader()
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            command = json.loads(line)
            if command["cmd"] == "churn":
                churned = int(command["index"])
                emit("churn", **await self.churn(churned, float(command.get("timeout", 10))))
            elif command["cmd"] == "report":
                emit("report", **self.report(churned))
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        for c in self.clients:
            if c.transport is not None:
                c.transport.abort()

    def _keepalive(self) -> None:
        for c in self.clients:
            if c.established_at is not None:
                c.send(KEEPALIVE_FRAME)
        asyncio.get_running_loop().call_later(HOLD_TIME / 3, self._keepalive)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reflector", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--asn", type=int, default=64512)
    parser.add_argument("--connect-timeout", type=float, default=300)
    args = parser.parse_args()
    asyncio.run(Simulator(args.reflector, args.clients, args.asn).run(args.connect_timeout))


if __name__ == "__main__":
    main()
