"""BFD on a thread of its own: a :class:`~bgpd.bfd.udp.BfdEndpoint` with a private event loop.

A loop busy with a 200k-route ingest can delay a timer by more than 100 ms and flap a
100 ms x 3 session. Here the BFD timers run on a dedicated thread (pure-Python work on the main
thread gives up the GIL every switch interval, 5 ms by default), and state changes are handed
back to the caller's loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

from bgpd.bfd.udp import BfdEndpoint, SocketFactory
from bgpd.bfd.views import BfdSessionView, BfdStateChange, StateCallback

log = logging.getLogger("podbgp.bfd")

CALL_TIMEOUT = 5.0  # seconds a call into the BFD thread may take
T = TypeVar("T")


class ThreadedBfdEndpoint:
    """A :class:`BfdEndpoint` on a thread of its own, with its own event loop.

    BFD timers then fire on time however busy the main loop is. Calls from other threads are
    marshalled into the BFD loop and wait (bounded) for the result. A state change is handed
    to ``callback_loop`` (by default the loop running when :meth:`start` is called) with
    ``call_soon_threadsafe``, so ``on_state`` always runs on the caller's loop; with no such
    loop it runs on the BFD thread.
    """

    def __init__(
        self,
        *,
        socket_factory: SocketFactory | None = None,
        rng: random.Random | None = None,
        multihop_max_hops: int | None = None,
        callback_loop: asyncio.AbstractEventLoop | None = None,
        name: str = "podbgp-bfd",
    ) -> None:
        self._socket_factory = socket_factory
        self._rng = rng
        self._multihop_max_hops = multihop_max_hops
        self._callback_loop = callback_loop
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._endpoint: BfdEndpoint | None = None

    def start(self) -> ThreadedBfdEndpoint:
        if self._thread is not None:
            raise RuntimeError("BFD thread already started")
        if self._callback_loop is None:
            with contextlib.suppress(RuntimeError):
                self._callback_loop = asyncio.get_running_loop()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._endpoint = BfdEndpoint(
            socket_factory=self._socket_factory,
            rng=self._rng,
            multihop_max_hops=self._multihop_max_hops,
            loop=loop,
        )
        self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
        self._thread.start()
        return self

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
        endpoint = self._require()
        deliver = self._deliverer(on_state)
        self._call(
            lambda: endpoint.add_session(
                peer,
                local,
                multihop=multihop,
                min_tx_ms=min_tx_ms,
                min_rx_ms=min_rx_ms,
                multiplier=multiplier,
                on_state=deliver,
            )
        )

    def remove_session(self, peer: str, local: str, *, multihop: bool) -> None:
        endpoint = self._require()
        self._call(lambda: endpoint.remove_session(peer, local, multihop=multihop))

    def admin_down(self, peer: str, local: str, *, multihop: bool) -> None:
        endpoint = self._require()
        self._call(lambda: endpoint.admin_down(peer, local, multihop=multihop))

    def enable(self, peer: str, local: str, *, multihop: bool) -> None:
        endpoint = self._require()
        self._call(lambda: endpoint.enable(peer, local, multihop=multihop))

    def snapshot(self) -> list[BfdSessionView]:
        return self._call(self._require().snapshot)

    def close(self) -> None:
        """Close every session and socket, stop the loop and join the thread (bounded)."""
        if self._thread is None or self._loop is None or self._endpoint is None:
            return
        loop, thread, endpoint = self._loop, self._thread, self._endpoint
        try:
            self._call(endpoint.close)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CALL_TIMEOUT)
            if not thread.is_alive():
                loop.close()
            self._thread = None
            self._endpoint = None
            self._loop = None

    def _require(self) -> BfdEndpoint:
        if self._endpoint is None:
            raise RuntimeError("BFD thread not started")
        return self._endpoint

    def _deliverer(self, on_state: StateCallback) -> StateCallback:
        target = self._callback_loop
        if target is None:
            return on_state

        def deliver(change: BfdStateChange) -> None:
            if target.is_closed():
                log.warning(
                    "bfd state change after the main loop closed", extra={"peer": change.peer}
                )
                return
            target.call_soon_threadsafe(on_state, change)

        return deliver

    def _call(self, fn: Callable[[], T]) -> T:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            raise RuntimeError("BFD thread not started")
        if threading.get_ident() == thread.ident:
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller, re-raised there
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(CALL_TIMEOUT)
