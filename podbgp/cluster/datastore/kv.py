"""The key-value contract every datastore backend implements (etcd v3 and the file store).

Owns the small vocabulary the rest of podbgp builds on: keys are ``str`` relative to the
configured prefix, values are ``bytes``, and every key carries a ``mod_revision`` token that a
transaction can compare against (``0`` means "the key does not exist") — the compare-and-swap
that makes block claims safe. ``range`` returns a snapshot plus a revision (``snapshot``: of
several prefixes at one revision); ``watch`` yields the changes under the given prefixes made
after that revision, and nothing else — a node agent is not woken by keys it does not watch.
Implements no RFC; the semantics are etcd v3's KV API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class DatastoreError(Exception):
    """A datastore operation failed; ``str()`` says why in one line."""


class DatastoreUnavailable(DatastoreError):
    """The datastore cannot be reached now (retry later; nothing was changed)."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    mod_revision: int  # opaque, non-zero token; changes on every write of the key


@dataclass(frozen=True, slots=True)
class Compare:
    """Transaction guard: the key's ``mod_revision`` equals ``mod_revision`` (0: absent)."""

    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


Op = Put | Delete


class EventType(Enum):
    PUT = "PUT"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: EventType
    key: str
    value: bytes  # empty for DELETE
    revision: int  # the snapshot revision this event brings the watcher up to


class Backend(Protocol):
    """A key-value store with transactions and watches, keys relative to its prefix."""

    description: str

    async def get(self, key: str) -> KeyValue | None: ...

    async def range(self, prefix: str, keys_only: bool = False) -> tuple[list[KeyValue], int]:
        """Every key under ``prefix`` and the revision of this snapshot (``keys_only``: the
        values are left out, ``b""``)."""
        ...

    async def snapshot(self, prefixes: Sequence[str]) -> tuple[list[KeyValue], int]:
        """Every key under any of ``prefixes``, all as of one revision, and that revision."""
        ...

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        """Apply ``ops`` atomically if every compare holds; False (nothing written) if not."""
        ...

    def watch(self, prefixes: Sequence[str], after_revision: int) -> AsyncIterator[WatchEvent]:
        """Changes under any of ``prefixes`` made after the snapshot ``after_revision``, in
        order per key. Raises DatastoreUnavailable when the connection is lost (the caller
        resyncs)."""
        ...

    async def close(self) -> None: ...
