"""The etcd v3 backend (aetcd over gRPC): ranges, compare-and-swap transactions, watches.

Owns the connection to an etcd cluster: endpoints tried in turn, TLS with client certificates
(``https://`` endpoints), one key prefix, bounded call timeouts and gRPC keepalives so a dead
peer is noticed. Any connection failure drops the client and surfaces as
:class:`DatastoreUnavailable`; the next call reconnects (to the next endpoint), so the caller's
backoff decides how hard we retry. Implements etcd's v3 KV/Watch API semantics, no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.utils
import aetcd.watcher
import grpc

from podbgp.cluster.datastore.kv import (
    Compare,
    DatastoreError,
    DatastoreUnavailable,
    Delete,
    EventType,
    KeyValue,
    Op,
    Put,
    WatchEvent,
)

log = logging.getLogger("podbgp.datastore.etcd")

T = TypeVar("T")
CALL_TIMEOUT = 5  # seconds per unary call; an etcd that takes longer is as good as down
_UNAVAILABLE = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    aetcd.exceptions.WatchTimeoutError,
    aetcd.exceptions.InternalError,
    asyncio.TimeoutError,
    ConnectionError,
)
_GRPC_OPTIONS = {
    # Notice a silently dead server (no FIN) within ~15 s instead of never.
    "grpc.keepalive_time_ms": 10_000,
    "grpc.keepalive_timeout_ms": 5_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,
    # gRPC's default reconnect backoff grows to 120 s; we reconnect on our own schedule.
    "grpc.initial_reconnect_backoff_ms": 500,
    "grpc.max_reconnect_backoff_ms": 5_000,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
}
WATCH_QUEUE = 1024  # events buffered between the prefixes' watch streams and the consumer


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for TLS to etcd: CA bundle (None: system roots), client cert and key."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        """``http://host:port``, ``https://host:port`` or bare ``host:port``."""
        parsed = urllib.parse.urlsplit(url if "//" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"{url!r} is not an etcd endpoint like http://127.0.0.1:2379")
        try:
            port = parsed.port or 2379
        except ValueError:
            raise ValueError(f"{url!r} has an invalid port") from None
        return cls(parsed.hostname, port, parsed.scheme == "https")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


class _Client(aetcd.Client):  # type: ignore[misc]  # aetcd ships no type hints
    """aetcd's client with an optionally secure channel (aetcd 1.0 only dials plaintext)."""

    def __init__(self, endpoint: Endpoint, credentials: grpc.ChannelCredentials | None) -> None:
        super().__init__(
            host=endpoint.host, port=endpoint.port, timeout=CALL_TIMEOUT, options=_GRPC_OPTIONS
        )
        self._credentials = credentials

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        target = f"{self._host}:{self._port}"
        options = list(self._options.items())
        if self._credentials is not None:
            self.channel = aetcd.rpc.secure_channel(target, self._credentials, options=options)
        else:
            self.channel = aetcd.rpc.insecure_channel(target, options=options)
        self.kvstub = aetcd.rpc.KVStub(self.channel)
        self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
        self.leasestub = aetcd.rpc.LeaseStub(self.channel)
        self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
        self._watcher = aetcd.watcher.Watcher(
            aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()

    async def range_prefix(self, key: bytes, revision: int = 0, keys_only: bool = False) -> Any:
        """A prefix range as of ``revision`` (0: now): aetcd 1.0 cannot pin the revision."""
        await self.connect()
        request = self._build_get_range_request(
            key, range_end=aetcd.utils.prefix_range_end(key), keys_only=keys_only
        )
        request.revision = revision
        try:
            return await self.kvstub.Range(request, timeout=self._timeout, metadata=self.metadata)
        except aetcd.rpc.AioRpcError as exc:
            aetcd.exceptions._handle_exception(exc)  # raises the matching ClientError


def _credentials(tls: TlsFiles) -> grpc.ChannelCredentials:
    def read(path: str | None) -> bytes | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as exc:
            raise DatastoreError(f"cannot read {path}: {exc.strerror or exc}") from None

    return grpc.ssl_channel_credentials(
        root_certificates=read(tls.ca_file),
        private_key=read(tls.key_file),
        certificate_chain=read(tls.cert_file),
    )


class EtcdBackend:
    """Keys relative to ``prefix`` in the etcd cluster at ``endpoints``."""

    def __init__(self, endpoints: Sequence[str], prefix: str, tls: TlsFiles | None = None) -> None:
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self.endpoints = [Endpoint.parse(e) for e in endpoints]
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.tls = tls or TlsFiles()
        self.description = f"etcd {','.join(map(str, self.endpoints))} prefix {self.prefix}"
        self._client: _Client | None = None
        self._index = 0

    # --- connection ----------------------------------------------------------------------

    def _connect(self) -> _Client:
        if self._client is None:
            endpoint = self.endpoints[self._index % len(self.endpoints)]
            use_tls = endpoint.tls or self.tls.cert_file is not None
            self._client = _Client(endpoint, _credentials(self.tls) if use_tls else None)
        return self._client

    async def _drop(self, why: object) -> None:
        """Forget the client after a failure; the next call dials the next endpoint."""
        client, self._client = self._client, None
        self._index += 1
        if client is not None:
            log.debug("event=etcd-disconnect reason=%s", why)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)

    async def _call(self, fn: Callable[[_Client], Awaitable[T]]) -> T:
        client = self._connect()
        try:
            return await fn(client)
        except _UNAVAILABLE as exc:
            await self._drop(exc)
            raise DatastoreUnavailable(f"{self.description}: {_reason(exc)}") from None
        except aetcd.exceptions.ClientError as exc:
            raise DatastoreError(f"{self.description}: {_reason(exc)}") from None

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2)

    def _key(self, key: str) -> bytes:
        return (self.prefix + key).encode()

    def _rel(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) :]

    # --- KV ------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        got = await self._call(lambda c: c.get(self._key(key)))
        if got is None:
            return None
        return KeyValue(key, got.value, got.mod_revision)

    async def range(self, prefix: str, keys_only: bool = False) -> tuple[list[KeyValue], int]:
        result = await self._call(lambda c: c.range_prefix(self._key(prefix), 0, keys_only))
        kvs = [KeyValue(self._rel(kv.key), kv.value, kv.mod_revision) for kv in result.kvs]
        return kvs, int(result.header.revision)

    async def snapshot(self, prefixes: Sequence[str]) -> tuple[list[KeyValue], int]:
        kvs: list[KeyValue] = []
        revision = 0
        for prefix in prefixes:  # the first range fixes the revision the others read at
            key, at = self._key(prefix), revision

            def read(c: _Client, key: bytes = key, at: int = at) -> Awaitable[Any]:
                return c.range_prefix(key, at)

            result = await self._call(read)
            revision = revision or int(result.header.revision)
            kvs += [KeyValue(self._rel(kv.key), kv.value, kv.mod_revision) for kv in result.kvs]
        return kvs, revision

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        async def run(client: _Client) -> bool:
            t = client.transactions
            cmp = [t.mod(self._key(c.key)) == c.mod_revision for c in compares]
            success: list[Any] = []
            for op in ops:
                if isinstance(op, Put):
                    success.append(t.put(self._key(op.key), op.value))
                elif isinstance(op, Delete):
                    success.append(t.delete(self._key(op.key)))
            ok, _responses = await client.transaction(compare=cmp, success=success, failure=[])
            return bool(ok)

        return await self._call(run)

    async def watch(
        self, prefixes: Sequence[str], after_revision: int
    ) -> AsyncIterator[WatchEvent]:
        if len(prefixes) == 1:
            async for event in self._watch_prefix(prefixes[0], after_revision):
                yield event
            return
        # One etcd watch per prefix (they share the client's gRPC stream), merged. Each
        # stream ends in an exception, so the first one to fail ends the merged watch.
        queue: asyncio.Queue[WatchEvent | Exception] = asyncio.Queue(WATCH_QUEUE)

        async def pump(prefix: str) -> None:
            try:
                async for event in self._watch_prefix(prefix, after_revision):
                    await queue.put(event)
            except Exception as exc:
                await queue.put(exc)

        tasks = [asyncio.create_task(pump(p), name=f"etcd-watch {p}") for p in prefixes]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_prefix(self, prefix: str, after_revision: int) -> AsyncIterator[WatchEvent]:
        watch = await self._call(
            lambda c: c.watch_prefix(self._key(prefix), start_revision=after_revision + 1)
        )
        try:
            async for event in watch:
                kind = EventType.PUT if event.kind == "PUT" else EventType.DELETE
                value = event.kv.value if kind == EventType.PUT else b""
                yield WatchEvent(kind, self._rel(event.kv.key), value, event.kv.mod_revision)
        except aetcd.exceptions.RevisionCompactedError as exc:
            # History we needed is gone: the caller must resync from a fresh snapshot.
            raise DatastoreUnavailable(f"{self.description}: {exc}") from None
        except _UNAVAILABLE as exc:
            await self._drop(exc)
            raise DatastoreUnavailable(f"{self.description}: {_reason(exc)}") from None
        except aetcd.exceptions.ClientError as exc:
            await self._drop(exc)
            raise DatastoreUnavailable(f"{self.description}: {_reason(exc)}") from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(watch.cancel(), 2)
        # The stream ended without an error (the client was closed): make the caller resync.
        raise DatastoreUnavailable(f"{self.description}: watch ended")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return f"no answer within {CALL_TIMEOUT}s"
    return " ".join(str(exc).split()) or type(exc).__name__
