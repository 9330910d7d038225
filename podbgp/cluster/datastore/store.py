"""The datastore as podbgp uses it: resources, node registrations, snapshots and change events.

Owns :class:`Datastore` (one per process, over an etcd or file backend) and :class:`Snapshot`, the
in-memory picture of the cluster that the node agent keeps current from change events. A snapshot
and its watch cover only :data:`~podbgp.cluster.datastore.records.WATCHED` — resources, node
registrations and block affinities — never the per-pod IPAM records, so one node's pod churn
costs the other nodes nothing and a node's start does not read every handle. Writes that
must not race are transactions guarded by each key's ``mod_revision``: applying a batch of resources
is all-or-nothing, a registration update never loses a concurrent one. IPAM lives in
:mod:`podbgp.cluster.ipam`; the thin methods here only forward to it. Implements no RFC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from podbgp.cluster.consistency import check_consistency
from podbgp.cluster.datastore import records
from podbgp.cluster.datastore.kv import (
    Backend,
    Compare,
    DatastoreError,
    Delete,
    EventType,
    KeyValue,
    Op,
    Put,
    WatchEvent,
)
from podbgp.cluster.datastore.records import Affinity, NodeInfo
from podbgp.cluster.resources import (
    KINDS,
    BGPConfiguration,
    BGPPeer,
    IPPool,
    Node,
    Resource,
    ResourceError,
    parse_resource,
    to_dict,
)

if TYPE_CHECKING:
    pass

log = logging.getLogger("podbgp.datastore")

TXN_RETRIES = 20  # compare-and-swap retries before a write gives up
MAX_TXN_OPS = 100  # etcd refuses transactions above --max-txn-ops (128 by default)


class ChangeKind(Enum):
    RESOURCE = "resource"
    NODE = "node"
    AFFINITY = "affinity"  # which node owns a block
    OTHER = "other"  # a key outside the watched prefixes


@dataclass(frozen=True)
class Change:
    """One decoded watch event. ``value`` is None for a deletion or an undecodable value
    (then ``error`` says why)."""

    kind: ChangeKind
    key: str
    name: str  # "IPPool/default" for resources, the node name, the block CIDR
    value: Resource | NodeInfo | Affinity | None
    revision: int
    error: str | None = None


def decode_kv(key: str, value: bytes | None) -> tuple[ChangeKind, str, Any]:
    """Classify ``key`` and decode ``value`` (None: deleted). Raises ValueError if invalid."""
    if key.startswith(records.RESOURCES):
        name = key[len(records.RESOURCES) :]
        if value is None:
            return ChangeKind.RESOURCE, name, None
        return ChangeKind.RESOURCE, name, parse_resource(json.loads(value), key)
    if key.startswith(records.NODES):
        name = key[len(records.NODES) :]
        if value is None:
            return ChangeKind.NODE, name, None
        return ChangeKind.NODE, name, NodeInfo.from_json(records.decode(value))
    if key.startswith(records.AFFINITY):
        cidr = records.cidr_of_key(key)
        if value is None:
            return ChangeKind.AFFINITY, cidr, None
        return ChangeKind.AFFINITY, cidr, Affinity.from_json(records.decode(value))
    return ChangeKind.OTHER, key, None


def decode_event(event: WatchEvent) -> Change:
    value = event.value if event.type == EventType.PUT else None
    try:
        kind, name, decoded = decode_kv(event.key, value)
    except (ValueError, KeyError, TypeError, ResourceError) as exc:
        try:
            kind, name, _ = decode_kv(event.key, None)
        except ValueError:  # not even the key makes sense
            kind, name = ChangeKind.OTHER, event.key
        return Change(kind, event.key, name, None, event.revision, error=str(exc))
    return Change(kind, event.key, name, decoded, event.revision)


@dataclass
class Snapshot:
    """The cluster as last seen: resources, registrations, block affinities; kept current
    by :meth:`apply`. Invalid stored values are left out and listed in ``errors``."""

    revision: int = 0
    resources: dict[str, Resource] = field(default_factory=dict)  # "Kind/name"
    registrations: dict[str, NodeInfo] = field(default_factory=dict)
    affinities: dict[str, Affinity] = field(default_factory=dict)  # by block CIDR
    errors: dict[str, str] = field(default_factory=dict)  # key -> problem

    @classmethod
    def from_kvs(cls, kvs: Iterable[KeyValue], revision: int) -> Snapshot:
        snap = cls(revision=revision)
        for kv in kvs:
            snap.apply(decode_event(WatchEvent(EventType.PUT, kv.key, kv.value, revision)))
        return snap

    def apply(self, change: Change) -> None:
        self.revision = max(self.revision, change.revision)
        self.errors.pop(change.key, None)
        if change.error is not None:
            self.errors[change.key] = change.error
        tables: dict[ChangeKind, dict[str, Any]] = {
            ChangeKind.RESOURCE: self.resources,
            ChangeKind.NODE: self.registrations,
            ChangeKind.AFFINITY: self.affinities,
        }
        table = tables.get(change.kind)
        if table is None:
            return
        if change.value is None:
            table.pop(change.name, None)
        else:
            table[change.name] = change.value

    # --- derived views -------------------------------------------------------------------

    def of_kind(self, cls: type[Any]) -> list[Any]:
        return sorted(
            (r for r in self.resources.values() if isinstance(r, cls)), key=lambda r: r.name
        )

    def bgp_configuration(self) -> BGPConfiguration:
        found = self.resources.get("BGPConfiguration/default")
        return found if isinstance(found, BGPConfiguration) else BGPConfiguration("default")

    def pools(self) -> list[IPPool]:
        return self.of_kind(IPPool)

    def bgp_peers(self) -> list[BGPPeer]:
        return self.of_kind(BGPPeer)

    def nodes(self) -> dict[str, NodeInfo]:
        """Every known node, registered or only declared, merged (see records.merge_node)."""
        declared = {r.name: r for r in self.of_kind(Node)}
        names = sorted(set(declared) | set(self.registrations))
        return {n: records.merge_node(n, declared.get(n), self.registrations.get(n)) for n in names}

    def blocks_of(self, node: str) -> list[Affinity]:
        """The blocks ``node`` owns, in address order."""
        return sorted(
            (a for a in self.affinities.values() if a.node == node),
            key=lambda a: records.network_order(a.cidr),
        )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Datastore:
    """Cluster state over a :class:`~podbgp.cluster.datastore.kv.Backend` (etcd or file)."""

    def __init__(self, backend: Backend, type_: str) -> None:
        self.backend = backend
        self.type = type_

    @property
    def description(self) -> str:
        return self.backend.description

    async def close(self) -> None:
        await self.backend.close()

    # --- snapshot and watch --------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        """Resources, registrations and block affinities (not the per-pod IPAM records)."""
        kvs, revision = await self.backend.snapshot(records.WATCHED)
        return Snapshot.from_kvs(kvs, revision)

    async def watch(self, after_revision: int) -> AsyncIterator[Change]:
        """Decoded changes of what :meth:`snapshot` covers, after ``after_revision`` (a
        snapshot's revision)."""
        async for event in self.backend.watch(records.WATCHED, after_revision):
            yield decode_event(event)

    # --- resources -----------------------------------------------------------------------

    async def get_resource(self, kind: str, name: str) -> Resource | None:
        kv = await self.backend.get(records.resource_key(kind, name))
        return None if kv is None else _decode_resource(kv)

    async def list_resources(self, kind: str | None = None) -> list[Resource]:
        prefix = records.RESOURCES + (f"{kind}/" if kind else "")
        kvs, _ = await self.backend.range(prefix)
        return [_decode_resource(kv) for kv in kvs]

    async def apply(self, resources: Sequence[Resource]) -> list[tuple[Resource, str]]:
        """Create or replace ``resources`` together; each comes back with "created",
        "configured" or "unchanged". Cluster-wide rules are checked first (ResourceError);
        nothing is written unless everything is valid."""
        batch = {f"{r.KIND}/{r.name}": r for r in resources}
        for _ in range(TXN_RETRIES):
            kvs, _rev = await self.backend.range(records.RESOURCES)
            stored = {kv.key: kv for kv in kvs}
            current = {f"{r.KIND}/{r.name}": r for r in map(_decode_resource, kvs)}
            check_consistency({**current, **batch}.values())
            compares = [
                Compare(key, stored[key].mod_revision if key in stored else 0)
                for key in (records.resource_key(r.KIND, r.name) for r in batch.values())
            ]
            ops: list[Op] = [
                Put(records.resource_key(r.KIND, r.name), records.encode(to_dict(r)))
                for r in batch.values()
            ]
            if await self._txn_chunked(compares, ops):
                return [(r, _apply_action(current.get(name), r)) for name, r in batch.items()]
        raise DatastoreError("resources kept changing while being applied; try again")

    async def delete_resource(self, kind: str, name: str) -> bool:
        """Delete one resource; deleting a Node also drops its registration (its blocks are
        released by :func:`podbgp.cluster.operations.delete_resource`). False when it did not
        exist."""
        key = records.resource_key(kind, name)
        existed = await self.backend.get(key) is not None
        ops: list[Op] = [Delete(key)]
        if kind == Node.KIND:
            reg = await self.backend.get(records.node_key(name))
            existed = existed or reg is not None
            ops.append(Delete(records.node_key(name)))
        await self.backend.txn([], ops)
        return existed

    async def _txn_chunked(self, compares: Sequence[Compare], ops: Sequence[Op]) -> bool:
        # One transaction when it fits (the normal case); otherwise the compares guard the
        # first chunk and the rest follow (already validated, so only an outage can split it).
        if len(compares) + len(ops) <= MAX_TXN_OPS:
            return await self.backend.txn(compares, ops)
        if not await self.backend.txn(compares, ops[:MAX_TXN_OPS]):
            return False
        for i in range(MAX_TXN_OPS, len(ops), MAX_TXN_OPS):
            await self.backend.txn([], ops[i : i + MAX_TXN_OPS])
        return True

    # --- node registrations --------------------------------------------------------------

    async def get_registration(self, name: str) -> NodeInfo | None:
        kv = await self.backend.get(records.node_key(name))
        return None if kv is None else _decode_node(kv)

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        """Write ``info`` as the node's registration (keeping a VTEP published earlier if
        ``info`` has none) and return what was stored."""
        return await self.update_node_status(
            info.name,
            **{
                f.name: getattr(info, f.name)
                for f in fields(NodeInfo)
                if f.name not in ("name", "vtep", "updated", "registered")
            },
            **({"vtep": info.vtep} if info.vtep else {}),
        )

    async def update_node_status(self, name: str, **changes: Any) -> NodeInfo:
        """Change fields of a node's registration (NodeInfo field names; ``vtep`` replaces the
        whole dict), creating it if missing. Safe against concurrent writers (CAS)."""
        key = records.node_key(name)
        for _ in range(TXN_RETRIES):
            kv = await self.backend.get(key)
            current = _decode_node(kv) if kv is not None else NodeInfo(name=name)
            updated = replace(current, **changes, name=name, updated=_now(), registered=True)
            if kv is not None and replace(updated, updated=current.updated) == current:
                return current  # nothing to change: spare the watchers an event
            value = records.encode(updated.to_json())
            if await self.backend.txn(
                [Compare(key, kv.mod_revision if kv else 0)], [Put(key, value)]
            ):
                return updated
        raise DatastoreError(f"registration of node {name} kept changing; giving up")

    async def list_nodes(self) -> list[NodeInfo]:
        """Every node (declared or registered), merged."""
        snap = await self.snapshot()
        return list(snap.nodes().values())

    async def get_node(self, name: str) -> NodeInfo | None:
        resource = await self.get_resource(Node.KIND, name)
        reg = await self.get_registration(name)
        if resource is None and reg is None:
            return None
        assert resource is None or isinstance(resource, Node)
        return records.merge_node(name, resource, reg)


def _apply_action(old: Resource | None, new: Resource) -> str:
    if old is None:
        return "created"
    return "unchanged" if old == new else "configured"


def _decode_resource(kv: KeyValue) -> Resource:
    try:
        res = parse_resource(json.loads(kv.value), kv.key)
    except ValueError as exc:
        raise DatastoreError(f"{kv.key}: stored value is not valid JSON: {exc}") from None
    except ResourceError as exc:
        raise DatastoreError(f"stored resource is invalid: {exc}") from None
    if KINDS.get(res.KIND) is None:  # pragma: no cover - parse_resource guarantees it
        raise DatastoreError(f"{kv.key}: unknown kind")
    return res


def _decode_node(kv: KeyValue) -> NodeInfo:
    try:
        return NodeInfo.from_json(records.decode(kv.value))
    except (ValueError, KeyError, TypeError) as exc:
        raise DatastoreError(f"{kv.key}: stored registration is invalid: {exc}") from None
