"""The file backend: cluster resources from a YAML directory, runtime state in one JSON file.

Owns the embedded datastore for one machine or a systemd deployment without etcd. Resources are
the ``*.yaml``/``*.yml`` documents in a directory (several per file allowed), validated on every
read; a write from ``podbgp apply``/``delete`` rewrites the file holding the document (or creates
``<kind>-<name>.yaml``). Everything the daemons write (registrations, blocks, affinities,
handles) lives in a JSON state file beside them. Transactions take an exclusive ``flock`` on the
state file's lock, so node agents and CLIs on one machine get the same compare-and-swap
guarantees as with etcd. Watches poll: the directory and state are re-read every
``poll_interval`` seconds and differences become events. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from podbgp.cluster.datastore.kv import (
    Compare,
    DatastoreError,
    Delete,
    EventType,
    KeyValue,
    Op,
    Put,
    WatchEvent,
)
from podbgp.cluster.resources import ResourceError, parse_resource, to_dict

RESOURCES = "resources/"
STATE_NAME = ".podbgp-state.json"
# Snapshots a watch may start from (one per range() that saw a change): enough for the writes
# a node agent makes between taking its snapshot and starting its watch.
_SNAPSHOTS_KEPT = 64


@dataclass(frozen=True)
class _Doc:
    file: Path
    index: int  # position among the file's documents
    value: bytes  # canonical JSON


def _token(value: bytes) -> int:
    """A stable, non-zero mod_revision for a YAML-held value (its content hash)."""
    return int.from_bytes(hashlib.blake2b(value, digest_size=6).digest(), "big") + 1


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FileBackend:
    """Resources in ``path`` (YAML), runtime state in ``state_path`` (JSON)."""

    def __init__(
        self, path: str, state_path: str | None = None, poll_interval: float = 1.0
    ) -> None:
        self.path = Path(path)
        self.state_path = Path(state_path) if state_path else self.path / STATE_NAME
        self.lock_path = self.state_path.with_name(self.state_path.name + ".lock")
        self.poll_interval = poll_interval
        self.description = f"file {self.path}"
        self._parsed: dict[Path, tuple[tuple[int, int], list[tuple[str, bytes]]]] = {}
        self._revision = 0
        self._snapshots: dict[int, dict[str, KeyValue]] = {}

    async def close(self) -> None:
        return None

    # --- reading -------------------------------------------------------------------------

    def _yaml_files(self) -> list[Path]:
        if not self.path.is_dir():
            raise DatastoreError(f"{self.description}: directory does not exist")
        return sorted(p for p in self.path.iterdir() if p.suffix in (".yaml", ".yml"))

    def _parse_file(self, file: Path) -> list[tuple[str, bytes]]:
        """``(key, canonical JSON)`` per document, cached while the file is unchanged."""
        try:
            st = file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._parsed.get(file)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DatastoreError(f"{file}: cannot read: {exc}") from None
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise DatastoreError(f"{file}: invalid YAML: {' '.join(str(exc).split())}") from None
        out: list[tuple[str, bytes]] = []
        for i, doc in enumerate(docs):
            if doc is None:
                continue
            try:
                res = parse_resource(doc, f"{file} (document {i + 1})")
            except ResourceError as exc:
                raise DatastoreError(str(exc)) from None
            value = json.dumps(to_dict(res), sort_keys=True, separators=(",", ":")).encode()
            out.append((f"{RESOURCES}{res.KIND}/{res.name}", value))
        self._parsed[file] = (stamp, out)
        return out

    def _resources(self) -> dict[str, _Doc]:
        found: dict[str, _Doc] = {}
        for file in self._yaml_files():
            for index, (key, value) in enumerate(self._parse_file(file)):
                if key in found:
                    other = found[key].file
                    raise DatastoreError(
                        f"{file}: {key[len(RESOURCES) :]} is also defined in {other}"
                    )
                found[key] = _Doc(file, index, value)
        return found

    def _state(self) -> dict[str, Any]:
        try:
            text = self.state_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"revision": 0, "keys": {}}
        except OSError as exc:
            raise DatastoreError(f"{self.state_path}: cannot read: {exc.strerror}") from None
        try:
            state = json.loads(text)
            assert isinstance(state.get("keys"), dict)
            return state  # type: ignore[no-any-return]
        except (ValueError, AssertionError, AttributeError):
            raise DatastoreError(f"{self.state_path}: not a podbgp state file") from None

    def _all(self) -> dict[str, KeyValue]:
        kvs = {
            key: KeyValue(key, doc.value, _token(doc.value))
            for key, doc in self._resources().items()
        }
        for key, entry in self._state()["keys"].items():
            kvs[key] = KeyValue(key, entry["value"].encode(), int(entry["mod"]))
        return kvs

    def _snapshot(self) -> tuple[dict[str, KeyValue], int]:
        """Everything now, numbered: the revision moves only when something changed."""
        current = self._all()
        last = self._snapshots.get(self._revision)
        if last != current:
            self._revision += 1
            self._snapshots[self._revision] = current
            for old in [r for r in self._snapshots if r <= self._revision - _SNAPSHOTS_KEPT]:
                del self._snapshots[old]
        return current, self._revision

    async def get(self, key: str) -> KeyValue | None:
        return self._all().get(key)

    async def range(self, prefix: str, keys_only: bool = False) -> tuple[list[KeyValue], int]:
        kvs, revision = await self.snapshot((prefix,))
        if keys_only:
            kvs = [KeyValue(kv.key, b"", kv.mod_revision) for kv in kvs]
        return kvs, revision

    async def snapshot(self, prefixes: Sequence[str]) -> tuple[list[KeyValue], int]:
        current, revision = self._snapshot()
        wanted = tuple(prefixes)
        return [kv for key, kv in sorted(current.items()) if key.startswith(wanted)], revision

    # --- writing -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    async def txn(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        # Synchronous under the lock: no other coroutine of ours can interleave, and the
        # lock keeps other processes out. Files are small, so the loop blocks only briefly.
        with self._locked():
            self.path.mkdir(parents=True, exist_ok=True)
            current = self._all()
            for cmp in compares:
                kv = current.get(cmp.key)
                if (kv.mod_revision if kv else 0) != cmp.mod_revision:
                    return False
            state = self._state()
            revision = int(state.get("revision", 0)) + 1
            resource_ops = [op for op in ops if op.key.startswith(RESOURCES)]
            for op in ops:
                if op.key.startswith(RESOURCES):
                    continue
                if isinstance(op, Put):
                    state["keys"][op.key] = {"value": op.value.decode(), "mod": revision}
                else:
                    state["keys"].pop(op.key, None)
            if len(resource_ops) < len(ops):
                state["revision"] = revision
                _atomic_write(self.state_path, json.dumps(state, sort_keys=True, indent=1))
            if resource_ops:
                self._write_resources(resource_ops)
        return True

    def _write_resources(self, ops: Sequence[Op]) -> None:
        docs = self._resources()
        files: dict[Path, list[Any]] = {}

        def documents(file: Path) -> list[Any]:
            if file not in files:
                files[file] = [json.loads(v) for _k, v in self._parse_file(file)]
            return files[file]

        for op in ops:
            where = docs.get(op.key)
            if isinstance(op, Put):
                body = json.loads(op.value)
                if where is None:
                    kind, name = op.key[len(RESOURCES) :].split("/", 1)
                    files[self.path / f"{kind.lower()}-{name}.yaml"] = [body]
                else:
                    documents(where.file)[where.index] = body
            elif isinstance(op, Delete) and where is not None:
                documents(where.file)[where.index] = None
        for file, bodies in files.items():
            kept = [b for b in bodies if b is not None]
            if kept:
                _atomic_write(file, yaml.safe_dump_all(kept, sort_keys=False))
            else:
                file.unlink(missing_ok=True)
            self._parsed.pop(file, None)

    # --- watching ------------------------------------------------------------------------

    async def watch(
        self, prefixes: Sequence[str], after_revision: int
    ) -> AsyncIterator[WatchEvent]:
        wanted = tuple(prefixes)
        base = self._snapshots.get(after_revision)
        if base is None:
            raise DatastoreError(f"{self.description}: revision {after_revision} unknown; resync")
        while True:
            await asyncio.sleep(self.poll_interval)
            current, revision = self._snapshot()
            if revision == after_revision:
                continue
            for key in sorted(set(base) | set(current)):
                if not key.startswith(wanted):
                    continue
                old, new = base.get(key), current.get(key)
                if new is None:
                    yield WatchEvent(EventType.DELETE, key, b"", revision)
                elif old is None or old.mod_revision != new.mod_revision or old.value != new.value:
                    yield WatchEvent(EventType.PUT, key, new.value, revision)
            base, after_revision = current, revision
