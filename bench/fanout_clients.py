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
are CLOCK_REALTIME seconds (the driver's clock too); arrivals are the kernel's receive
timestamps of the reads that carried them, so the figures say when the reflector's messages
reached a client, however busy this one process was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import struct
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
SO_TIMESTAMPNS = SCM_TIMESTAMPNS = 35  # linux/asm-generic/socket.h (the _OLD, timespec form)
ANC_SIZE = socket.CMSG_SPACE(16)


def client_address(i: int) -> str:
    """Client ``i``'s source address (also its router ID and next hop)."""
    return f"10.0.{128 + i // 250}.{1 + i % 250}"


def client_block(i: int) -> str:
    return f"10.{100 + i // 256}.{i % 256}.0/24"


def emit(event: str, **data: object) -> None:
    print(json.dumps({"event": event, **data}), flush=True)


@dataclass
class Client:
    """One client session on a raw non-blocking socket, read with ``recvmsg`` so that each
    read carries the kernel's receive timestamp (SO_TIMESTAMPNS): churn latencies are when the
    reflector's UPDATE reached this client's socket, not when this busy process got to it."""

    sim: Simulator
    index: int
    address: str
    block: bytes
    sock: socket.socket | None = None
    framer: Framer = field(default_factory=Framer)
    outbuf: bytearray = field(default_factory=bytearray)
    established_at: float | None = None
    complete_at: float | None = None
    announced: Counter[bytes] = field(default_factory=Counter)
    withdrawn: Counter[bytes] = field(default_factory=Counter)
    have: set[bytes] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    # kernel receive time (CLOCK_REALTIME) of the last announcement / withdrawal of a prefix
    last_announce: dict[bytes, float] = field(default_factory=dict)
    last_withdraw: dict[bytes, float] = field(default_factory=dict)

    def attach(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framer = Framer()
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self.readable)
        self.sim.connected(self)
        caps = (Multiprotocol(Afi.IPV4, Safi.UNICAST), FourOctetAs(self.sim.asn))
        self.send(encode_message(Open(self.sim.asn, HOLD_TIME, self.address, caps)))

    def readable(self) -> None:
        assert self.sock is not None
        try:
            data, ancdata, _flags, _addr = self.sock.recvmsg(1 << 16, ANC_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(exc)
            return
        if not data:
            self.lost(None)
            return
        stamp = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec / 1e9
        self.data_received(data, stamp)

    def close(self) -> None:
        if self.sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(self.sock.fileno())
            loop.remove_writer(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def lost(self, exc: Exception | None) -> None:
        self.close()
        if self.sim.stopping:
            return
        if self.established_at is None:
            # Refused before Established (a reflector not ready for this peer yet): retry,
            # as a BGP speaker would.
            self.sim.reconnect(self)
        else:
            self.errors.append(f"connection lost: {exc or 'closed by reflector'}")

    def data_received(self, data: bytes, stamp: float) -> None:
        self.sim.bytes_received += len(data)
        for frame in self.framer.feed(data):
            kind = frame[18]
            if kind == UPDATE:
                # The reflector sends every client the same UPDATEs: decode each distinct one
                # once, so the clients' process measures the reflector, not its own decoding.
                message = self.sim.decoded.get(frame)
                if message is None:
                    message = self.sim.decoded[frame] = self.sim.decoder.decode(frame)
                assert isinstance(message, Update)
                self.on_update(message, stamp)
            elif kind == KEEPALIVE:
                if self.established_at is None:
                    self.established_at = stamp
                    self.sim.established(self)
            elif kind == OPEN:
                self.send(KEEPALIVE_FRAME)
            elif kind == NOTIFICATION:
                note = self.sim.decoder.decode(frame)
                assert isinstance(note, Notification)
                self.errors.append(f"NOTIFICATION {note.code}/{note.subcode}")

    def on_update(self, update: Update, stamp: float) -> None:
        for prefix in update.withdrawn:
            self.withdrawn[prefix] += 1
            self.have.discard(prefix)
            self.last_withdraw[prefix] = stamp
        for prefix in update.nlri:
            self.announced[prefix] += 1
            self.last_announce[prefix] = stamp
            if prefix == self.block:
                self.errors.append("own block echoed")
            else:
                self.have.add(prefix)
        if self.complete_at is None and len(self.have) == self.sim.count - 1:
            self.complete_at = stamp
            self.sim.complete(self)

    def send(self, data: bytes) -> None:
        if self.sock is None:
            return
        if not self.outbuf:
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.lost(exc)
                return
            if sent == len(data):
                return
            data = data[sent:]
            asyncio.get_running_loop().add_writer(self.sock.fileno(), self._writable)
        self.outbuf += data

    def _writable(self) -> None:
        assert self.sock is not None
        try:
            sent = self.sock.send(self.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(exc)
            return
        del self.outbuf[:sent]
        if not self.outbuf:
            asyncio.get_running_loop().remove_writer(self.sock.fileno())

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
        self.decoded: dict[bytes, Update | Notification | Open | Keepalive | object] = {}
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
        self.churns = 0
        self.deadline = 0.0
        self.tasks: list[asyncio.Task[None]] = []

    # --- progress ------------------------------------------------------------------------

    def connected(self, client: Client) -> None:
        if self.first_connect is None:
            self.first_connect = time.time()

    def established(self, client: Client) -> None:
        self.n_established += 1
        if self.first_update is None:
            self.first_update = time.time()
        client.announce()
        if self.n_established == self.count:
            emit(
                "established", t=max(c.established_at or 0.0 for c in self.clients),
                first_connect=self.first_connect,
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
            sock = socket.socket()
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind((client.address, 0))
                await asyncio.wait_for(
                    loop.sock_connect(sock, (self.reflector, 179)),
                    max(0.1, deadline - time.monotonic()),
                )
            except (OSError, TimeoutError):
                sock.close()
                # Refused until the reflector listens: retry soon, spread out.
                await asyncio.sleep(0.05 + random.random() * 0.1)
                continue
            client.attach(sock)
            return
        client.errors.append("never connected")

    async def wait_for(self, done: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():  # type: ignore[operator]
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    async def churn(self, index: int, timeout: float, repeat: int) -> dict[str, object]:
        """Withdraw client ``index``'s block, wait until every other client saw it, announce it
        again, ``repeat`` times; arrival latencies in ms at every other client, for both."""
        latencies: dict[str, list[float]] = {"withdraw": [], "announce": []}
        complete = {"withdraw": True, "announce": True}
        for _ in range(repeat):
            one = await self._churn_once(index, timeout)
            for step in latencies:
                latencies[step] += one[step]  # type: ignore[arg-type]
                complete[step] = complete[step] and bool(one[f"{step}_complete"])
        self.churns += repeat
        result: dict[str, object] = {step: sorted(lat) for step, lat in latencies.items()}
        result |= {f"{step}_complete": ok for step, ok in complete.items()}
        return result

    async def _churn_once(self, index: int, timeout: float) -> dict[str, object]:
        source = self.clients[index]
        others = [c for c in self.clients if c is not source]
        block = source.block
        result: dict[str, object] = {"block": prefix_to_str(Afi.IPV4, block)}
        for step in ("withdraw", "announce"):
            t_send = time.time()  # arrivals are kernel receive times on the same clock
            seen = [c.last_withdraw if step == "withdraw" else c.last_announce for c in others]
            if step == "withdraw":
                source.withdraw()
            else:
                source.announce()

            def arrived(seen: list[dict[bytes, float]] = seen, t_send: float = t_send) -> bool:
                return all(s.get(block, 0) >= t_send for s in seen)

            ok = await self.wait_for(arrived, timeout)
            arrivals = [s.get(block, 0) for s in seen]
            result[step] = sorted(round((t - t_send) * 1000, 2) for t in arrivals if t >= t_send)
            result[f"{step}_complete"] = ok
            await asyncio.sleep(0.1)
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
                churns = self.churns if other.block == churn_block and c.index != churned else 0
                expected = 1 + churns
                got = c.announced.get(other.block, 0)
                if got != expected:
                    kind = "missing" if got < expected else "duplicate"
                    kinds[kind] += 1
                    problems.append(f"{c.address}: {other.address}'s block {got}x, want {expected}")
            want_withdrawn = (
                {churn_block: self.churns} if churn_block and c.index != churned else {}
            )
            if dict(c.withdrawn) != want_withdrawn:
                problems.append(f"{c.address}: withdrawals {len(c.withdrawn)} prefixes")
            if c.announced.get(c.block):
                problems.append(f"{c.address}: own block echoed")
        return {"ok": not problems, "problems": problems[:20], "problem_count": len(problems),
                "kinds": dict(kinds),
                "bytes": self.bytes_received, "reconnects": self.reconnects,
                "cpu_s": round(time.process_time(), 2)}  # fmt: skip

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
                timeout = float(command.get("timeout", 10))
                repeat = int(command.get("repeat", 1))
                emit("churn", **await self.churn(churned, timeout, repeat))
            elif command["cmd"] == "report":
                emit("report", **self.report(churned))
        self.stopping = True
        for task in self.tasks:
            task.cancel()
        for c in self.clients:
            c.close()

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
