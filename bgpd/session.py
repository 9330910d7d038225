"""The asyncio driver of one peer's BGP session: sockets in, FSM events out, FSM actions executed.

Thin by design (the protocol logic lives in the sans-IO ``bgpd.fsm``): read bytes, frame, decode,
feed the FSM, and execute what it returns — connect, send, close, report up/down, and hand UPDATE
and ROUTE-REFRESH messages to the speaker's bounded inbox (awaiting ``put`` pauses reading, which
pushes back on the peer through TCP instead of buffering without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bgpd import tcp
from bgpd.codec.errors import BGPError
from bgpd.codec.messages import CodecContext, Decoder, Framer, encode_message
from bgpd.codec.types import Message, MessageType, message_type
from bgpd.fsm import (
    BfdDown,
    Close,
    Connect,
    DecodeFailed,
    Deliver,
    Fsm,
    FsmConfig,
    ManualStart,
    ManualStop,
    MessageReceived,
    Negotiated,
    Send,
    SessionDown,
    SessionUp,
    State,
    TcpAccepted,
    TcpConnected,
    TcpFailed,
)

log = logging.getLogger("podbgp.session")

_READ_SIZE = 1 << 14  # 16 KiB: a few UPDATEs decoded per loop turn (a responsive loop)


class SessionOwner(Protocol):
    """What a session reports to (the speaker)."""

    def session_up(self, session: Session, negotiated: Negotiated, local_address: str) -> None: ...

    def session_down(self, session: Session, event: SessionDown) -> None: ...

    async def deliver(self, session: Session, message: Message) -> None: ...


@dataclass(slots=True)
class _Conn:
    ident: int
    outbound: bool
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    framer: Framer = field(default_factory=Framer)
    decoder: Decoder = field(default_factory=Decoder)
    ctx: CodecContext = field(default_factory=CodecContext)
    task: asyncio.Task[None] | None = None
    # UPDATEs queued this loop tick; written in one call (one send) when the tick ends.
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0


@dataclass(slots=True)
class SessionStats:
    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    flaps: int = 0
    since: float = field(default_factory=time.time)  # wall clock of the last state change


class Session:
    """One configured peer's session. ``generation`` increases on each Established."""

    _ids = itertools.count(1)

    def __init__(
        self,
        address: str,
        port: int,
        fsm_config: FsmConfig,
        owner: SessionOwner,
        *,
        password: str | None = None,
        source_address: str | None = None,
        ttl_security: int = 0,
    ) -> None:
        self.address = address
        self.port = port
        self.password = password
        self.ttl_security = ttl_security
        self.source_address = source_address
        self.fsm = Fsm(fsm_config)
        self.owner = owner
        self.stats = SessionStats()
        self.generation = 0
        self.established_conn: int | None = None
        self._conns: dict[int, _Conn] = {}
        self._pending_connects: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._last_state = self.fsm.state

    # --- control ---------------------------------------------------------------------------

    def start(self) -> None:
        self._dispatch(ManualStart())

    def stop(
        self,
        *,
        notify: bool = True,
        subcode: int | None = None,
        data: bytes = b"",
        info: str = "",
        reason: str = "",
    ) -> None:
        """Stop the session: with a Cease NOTIFICATION, or (``notify=False``) by just closing
        the TCP connections, which a graceful-restart peer treats as our restart. ``subcode``
        and ``data`` choose the Cease (default Administrative Shutdown, with ``reason`` as its
        RFC 9003 shutdown communication); ``info`` replaces the FSM's last error in words."""
        if subcode is None:
            self._dispatch(ManualStop(notify=notify, reason=reason))
        else:
            self._dispatch(ManualStop(subcode=subcode, notify=notify, data=data, reason=reason))
        if info:
            self.fsm.last_error = info
        for conn in list(self._conns.values()):
            self._close(conn)
        for task in self._pending_connects:
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def bfd_down(self, reason: str) -> None:
        """BFD saw the path fail: end the Established session now (RFC 5882 §4.3)."""
        self._dispatch(BfdDown(reason))

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and self.ttl_security:
            tcp.set_ttl_security(sock, self.ttl_security)
        conn = self._register(reader, writer, outbound=False)
        self._dispatch(TcpAccepted(conn.ident))

    @property
    def state(self) -> State:
        return self.fsm.state

    def local_address(self) -> str | None:
        conn = self._conns.get(self.established_conn or -1)
        if conn is None:
            return None
        return tcp.address_of(conn.writer.get_extra_info("sockname"))

    # --- sending (used by the speaker for UPDATEs) -------------------------------------------

    def codec_context(self) -> CodecContext:
        conn = self._conns.get(self.established_conn or -1)
        return conn.ctx if conn is not None else CodecContext()

    def send_raw(
        self, frames: list[bytes], kind: str = "update", count: int | None = None,
        *, flush: bool = False,
    ) -> bool:  # fmt: skip
        """Queue pre-encoded messages on the Established connection. False if there is none.

        An element of ``frames`` may hold several messages back to back (``count`` says how
        many messages in all; default one per element). Everything queued during one loop tick
        goes to the socket in one write at the end of the tick, so a member that receives many
        small UPDATEs in a burst costs one system call, not one per UPDATE. ``flush``: the
        caller is done for this tick (the speaker after a decision round): write what is
        queued now, in that one write, without waiting for the end of the tick.
        """
        conn = self._conns.get(self.established_conn or -1)
        if conn is None or conn.writer.is_closing():
            return False
        n = len(frames) if count is None else count
        self.stats.sent[kind] = self.stats.sent.get(kind, 0) + n
        if flush:
            if conn.pending:
                conn.pending += frames
                self._write_pending(conn)
            elif len(frames) == 1:
                conn.writer.write(frames[0])
            elif frames:
                conn.writer.write(b"".join(frames))
            return True
        if not frames:
            return True
        if not conn.pending:
            self._loop.call_soon(self._write_pending, conn)
        conn.pending += frames
        conn.pending_bytes += sum(map(len, frames))
        return True

    def _write_pending(self, conn: _Conn) -> None:
        pending = conn.pending
        if not pending:
            return
        conn.pending = []
        conn.pending_bytes = 0
        if conn.writer.is_closing():
            return
        if len(pending) == 1:
            conn.writer.write(pending[0])  # shared bytes go out as they are, no copy
        else:
            conn.writer.write(b"".join(pending))

    def when_drained(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the Established connection's write buffer has drained."""
        conn = self._conns.get(self.established_conn or -1)
        if conn is None:
            return

        async def wait() -> None:
            with contextlib.suppress(ConnectionError):
                self._write_pending(conn)
                await conn.writer.drain()
                if self._conns.get(conn.ident) is conn:
                    callback()

        task = asyncio.create_task(wait())
        self._pending_connects.add(task)  # cancelled with the session, like connects
        task.add_done_callback(self._pending_connects.discard)

    def established_socket(self) -> socket.socket | None:
        """The Established connection's socket (socket options, diagnostics)."""
        conn = self._conns.get(self.established_conn or -1)
        return None if conn is None else conn.writer.get_extra_info("socket")

    def write_buffer_size(self) -> int:
        conn = self._conns.get(self.established_conn or -1)
        if conn is None or conn.writer.transport is None:
            return 0
        return conn.writer.transport.get_write_buffer_size() + conn.pending_bytes

    # --- FSM plumbing ----------------------------------------------------------------------

    def _dispatch(self, event: object) -> list[Message]:
        """Feed one event to the FSM and execute its actions; return messages to deliver."""
        now = self._loop.time()
        actions = self.fsm.handle(event, now)  # type: ignore[arg-type]
        return self._execute(actions)

    def _execute(self, actions: Sequence[object]) -> list[Message]:
        deliveries: list[Message] = []
        for action in actions:
            if isinstance(action, Deliver):
                deliveries.append(action.message)
            elif isinstance(action, Send):
                self._send(action.conn, action.message)
            elif isinstance(action, Close):
                conn = self._conns.get(action.conn)
                if conn is not None:
                    self._close(conn)
            elif isinstance(action, Connect):
                task = asyncio.create_task(self._connect(next(self._ids)))
                self._pending_connects.add(task)
                task.add_done_callback(self._pending_connects.discard)
            elif isinstance(action, SessionUp):
                self._on_up(action)
            elif isinstance(action, SessionDown):
                self._on_down(action)
        self._note_state()
        self._reschedule()
        return deliveries

    def _note_state(self) -> None:
        if self.fsm.state != self._last_state:
            log.info(
                "peer=%s event=state from=%s to=%s info=%s",
                self.address,
                self._last_state,
                self.fsm.state,
                self.fsm.last_error or "-",
            )
            self._last_state = self.fsm.state
            self.stats.since = time.time()

    def _reschedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.fsm.next_deadline()
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._execute(self.fsm.handle_timeout(self._loop.time()))

    def _on_up(self, action: SessionUp) -> None:
        conn = self._conns[action.conn]
        neg = action.negotiated
        conn.ctx = CodecContext.negotiated(
            four_octet_as=neg.four_octet_as,
            extended_message=neg.extended_message,
            ebgp=neg.peer_asn != self.fsm.config.local_asn,
            add_path_receive=neg.add_path_receive,
            add_path_send=neg.add_path_send,
        )
        conn.framer.max_message_size = conn.ctx.max_message_size
        conn.decoder.ctx = conn.ctx
        self.established_conn = conn.ident
        self.generation += 1
        self.owner.session_up(
            self, neg, tcp.address_of(conn.writer.get_extra_info("sockname")) or ""
        )

    def _on_down(self, action: SessionDown) -> None:
        self.established_conn = None
        self.stats.flaps += 1
        self.owner.session_down(self, action)

    def _send(self, ident: int, message: Message) -> None:
        conn = self._conns.get(ident)
        if conn is None or conn.writer.is_closing():
            return
        self._write_pending(conn)  # keep the order messages were queued in
        conn.writer.write(encode_message(message, conn.ctx))
        kind = message_type(message).label
        self.stats.sent[kind] = self.stats.sent.get(kind, 0) + 1

    # --- connections -----------------------------------------------------------------------

    def _register(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        outbound: bool,
        ident: int | None = None,
    ) -> _Conn:
        conn = _Conn(ident or next(self._ids), outbound, reader, writer)
        self._conns[conn.ident] = conn
        conn.task = asyncio.create_task(self._read_loop(conn))
        return conn

    async def _connect(self, ident: int) -> None:
        try:
            sock = await tcp.connect(
                self.address,
                self.port,
                source=self.source_address,
                password=self.password,
                ttl_security=self.ttl_security,
            )
            reader, writer = await asyncio.open_connection(sock=sock)
        except (OSError, TimeoutError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "Timed out"
            self._dispatch(TcpFailed(ident, f"Connect failed: {reason}"))
            return
        conn = self._register(reader, writer, outbound=True, ident=ident)
        self._dispatch(TcpConnected(conn.ident))

    def _close(self, conn: _Conn) -> None:
        self._conns.pop(conn.ident, None)
        if self.established_conn == conn.ident:
            self.established_conn = None
        with contextlib.suppress(RuntimeError):
            self._write_pending(conn)  # what was queued goes out before the close
            conn.writer.close()
        if conn.task is not None and conn.task is not asyncio.current_task():
            conn.task.cancel()

    async def _read_loop(self, conn: _Conn) -> None:
        reason = "Connection closed by peer"
        try:
            while conn.ident in self._conns:
                data = await conn.reader.read(_READ_SIZE)
                if not data:
                    break
                if not await self._handle_bytes(conn, data):
                    return
                # A read returns at once while data is buffered: yield, so that a table
                # arriving is decoded one read per loop turn, not all that is buffered at once.
                await asyncio.sleep(0)
        except ConnectionError as exc:
            reason = f"Connection error: {exc.strerror or exc}"
        except asyncio.CancelledError:
            return
        if conn.ident in self._conns:
            self._close(conn)
            self._dispatch(TcpFailed(conn.ident, reason))

    async def _handle_bytes(self, conn: _Conn, data: bytes) -> bool:
        """Frame, decode and dispatch; False once the connection is gone."""
        received = self.stats.received
        try:
            frames = conn.framer.feed(data)
        except BGPError as err:
            self._dispatch(DecodeFailed(conn.ident, err))
            return False
        for frame in frames:
            kind = MessageType.label_of(frame[18])
            received[kind] = received.get(kind, 0) + 1
            try:
                message = conn.decoder.decode(frame)
            except BGPError as err:
                log.warning("peer=%s event=decode-error %s", self.address, err.reason)
                self._dispatch(DecodeFailed(conn.ident, err))
                return False
            for delivery in self._dispatch(MessageReceived(conn.ident, message)):
                await self.owner.deliver(self, delivery)
            if conn.ident not in self._conns:
                return False
        return True
