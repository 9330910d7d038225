"""``podbgp ipam check``: IPAM records that belong to nothing, found and (``--fix``) released.

Owns the consistency rules between the IPAM records (key layout in
:mod:`podbgp.cluster.datastore.records`), checked on one consistent snapshot of them:

* ``leaked-handle`` — a handle holding an address its block no longer holds (its block was
  released and an interruption left the handle, or the block was rewritten). A handle holds one
  address per family; each is checked. Fix: take those addresses out of the handle (delete it
  when none is left).
* ``leaked-address`` — an allocation in a block whose handle is gone or does not hold that
  address. Fix: take the allocation out of the block.
* ``orphaned-block`` — a block owned by a node that no longer exists (neither a ``Node``
  resource nor a registration). Fix: release the block, its affinity and its handles.
* ``dangling-affinity`` — an affinity whose block is missing or owned by another node. Fix:
  delete it (routing would otherwise originate a block nobody owns).
* ``missing-affinity`` — a block of an existing node without its affinity (the node would not
  originate it). Fix: write the affinity.

Every fix is one compare-and-swap transaction guarded by the records it was decided on (and,
for an orphaned block, by the node's keys still being absent), so a fix never undoes a write
made after the check; such a finding is reported as changed and left for the next run.
Implements no RFC; these are Calico's ``calicoctl ipam check`` rules without Kubernetes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from podbgp.cluster import ipam
from podbgp.cluster.datastore import records
from podbgp.cluster.datastore.kv import Compare, Delete, KeyValue, Put
from podbgp.cluster.datastore.records import Affinity, Block, Handle
from podbgp.cluster.datastore.store import Datastore
from podbgp.cluster.resources import Node

log = logging.getLogger("podbgp.ipam")

LEAKED_HANDLE = "leaked-handle"
LEAKED_ADDRESS = "leaked-address"
ORPHANED_BLOCK = "orphaned-block"
DANGLING_AFFINITY = "dangling-affinity"
MISSING_AFFINITY = "missing-affinity"


@dataclass(frozen=True)
class Finding:
    """One problem: what, where, why — and, after :func:`fix`, what was done."""

    problem: str
    subject: str  # the handle, the block CIDR, or (leaked-address) the address
    node: str
    reason: str
    block: str = ""  # leaked-address: the block holding it
    handle: str = ""  # leaked-address: the handle it is allocated to
    addresses: tuple[tuple[str, str], ...] = ()  # leaked-handle: the (ip, block) pairs leaked
    action: str = ""  # "released", "deleted", "written", "changed meanwhile; run again"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "problem": self.problem,
            "subject": self.subject,
            "node": self.node,
            "reason": self.reason,
            "action": self.action or None,
        }
        if self.block:
            out.update(block=self.block, handle=self.handle)
        return out


@dataclass
class Report:
    nodes: int = 0
    blocks: int = 0
    handles: int = 0
    findings: list[Finding] = field(default_factory=list)
    # What the fixes need: the records as read, by key.
    _kvs: dict[str, KeyValue] = field(default_factory=dict, repr=False)

    @property
    def unresolved(self) -> list[Finding]:
        return [f for f in self.findings if f.action not in ("released", "deleted", "written")]


def _decoded(kvs: list[KeyValue], cls: Any) -> dict[str, tuple[Any, KeyValue]]:
    out: dict[str, tuple[Any, KeyValue]] = {}
    for kv in kvs:
        try:
            out[kv.key] = (cls.from_json(records.decode(kv.value)), kv)
        except (ValueError, KeyError, TypeError):
            log.warning("event=ipam-check-skipped key=%s reason=invalid record", kv.key)
    return out


async def check(store: Datastore) -> Report:
    """Every finding, on one consistent snapshot of nodes and IPAM records."""
    prefixes = (records.RESOURCES + "Node/", records.NODES, records.BLOCKS)
    kvs, _ = await store.backend.snapshot((*prefixes, records.AFFINITY, records.HANDLES))
    by_prefix: dict[str, list[KeyValue]] = {}
    for kv in kvs:
        prefix = next(
            p for p in (*prefixes, records.AFFINITY, records.HANDLES) if kv.key.startswith(p)
        )
        by_prefix.setdefault(prefix, []).append(kv)
    nodes = {kv.key.rpartition("/")[2] for kv in by_prefix.get(records.RESOURCES + "Node/", [])}
    nodes |= {kv.key[len(records.NODES) :] for kv in by_prefix.get(records.NODES, [])}
    blocks: dict[str, tuple[Block, KeyValue]] = {
        b.cidr: (b, kv) for b, kv in _decoded(by_prefix.get(records.BLOCKS, []), Block).values()
    }
    affinities = _decoded(by_prefix.get(records.AFFINITY, []), Affinity)
    handles = {
        h.handle: (h, kv) for h, kv in _decoded(by_prefix.get(records.HANDLES, []), Handle).values()
    }
    report = Report(nodes=len(nodes), blocks=len(blocks), handles=len(handles))
    report._kvs = {kv.key: kv for kv in kvs}
    found = report.findings

    for cidr, (block, _kv) in sorted(blocks.items()):
        if block.node not in nodes:
            found.append(
                Finding(ORPHANED_BLOCK, cidr, block.node, f"node {block.node} does not exist")
            )
            continue  # releasing it settles its affinity, addresses and handles too
        if records.affinity_key(block.node, cidr) not in affinities:
            found.append(
                Finding(MISSING_AFFINITY, cidr, block.node, "the block has no affinity record")
            )
        for ip, handle in block.allocations:
            got = handles.get(handle)
            if got is None or (ip, cidr) not in got[0].addresses:
                held = ", ".join(a for a, _b in got[0].addresses) if got is not None else ""
                why = "no handle record" if got is None else f"the handle holds {held}"
                found.append(
                    Finding(LEAKED_ADDRESS, ip, block.node, why, block=cidr, handle=handle)
                )
    for key, (affinity, _kv) in sorted(affinities.items()):
        node = key[len(records.AFFINITY) :].rpartition("/")[0]  # the key's node decides
        block_got = blocks.get(affinity.cidr)
        if block_got is None or block_got[0].node != node:
            why = "no such block" if block_got is None else f"owned by {block_got[0].node}"
            found.append(Finding(DANGLING_AFFINITY, affinity.cidr, node, why))
    for name, (h, _kv) in sorted(handles.items()):
        leaked: list[tuple[str, str]] = []
        whys: list[str] = []
        for ip, cidr in h.addresses:
            block_got = blocks.get(cidr)
            if block_got is None or (ip, name) not in block_got[0].allocations:
                leaked.append((ip, cidr))
                gone = "does not exist" if block_got is None else "lacks it"
                whys.append(f"{ip}: block {cidr} {gone}")
        if leaked:
            found.append(
                Finding(LEAKED_HANDLE, name, h.node, "; ".join(whys), addresses=tuple(leaked))
            )
    return report


async def fix(store: Datastore, report: Report) -> Report:
    """Apply the fixes of ``report`` (see the module doc); each finding gets its action."""
    kvs = report._kvs

    def mod(key: str) -> int:
        kv = kvs.get(key)
        return kv.mod_revision if kv is not None else 0

    fixed: list[Finding] = []
    for finding in report.findings:
        ok: bool
        if finding.problem == ORPHANED_BLOCK:
            kv = kvs[records.block_key(finding.subject)]
            block = Block.from_json(records.decode(kv.value))
            guards = [
                Compare(records.node_key(block.node), 0),
                Compare(records.resource_key(Node.KIND, block.node), 0),
            ]
            ok = await ipam.release_block(store, block, kv, guards=guards)
            action = "released"
        elif finding.problem == LEAKED_HANDLE:
            key = records.handle_key(finding.subject)
            ok = await _drop_handle_addresses(store, finding, kvs.get(key))
            action = "deleted"
        elif finding.problem == DANGLING_AFFINITY:
            key = records.affinity_key(finding.node, finding.subject)
            bkey = records.block_key(finding.subject)
            compares = [Compare(key, mod(key)), Compare(bkey, mod(bkey))]
            ok = await store.backend.txn(compares, [Delete(key)])
            action = "deleted"
        elif finding.problem == MISSING_AFFINITY:
            bkey = records.block_key(finding.subject)
            block = Block.from_json(records.decode(kvs[bkey].value))
            key = records.affinity_key(block.node, block.cidr)
            value = records.encode(Affinity(block.cidr, block.node, block.pool).to_json())
            ok = await store.backend.txn(
                [Compare(bkey, mod(bkey)), Compare(key, 0)], [Put(key, value)]
            )
            action = "written"
        else:  # LEAKED_ADDRESS
            ok = await _drop_allocation(store, finding, mod(records.handle_key(finding.handle)))
            action = "released"
        if ok:
            log.info(
                "event=ipam-fixed problem=%s subject=%s node=%s action=%s",
                finding.problem,
                finding.subject,
                finding.node,
                action,
            )
        fixed.append(replace(finding, action=action if ok else "changed meanwhile; run again"))
    report.findings = fixed
    return report


async def _drop_handle_addresses(store: Datastore, finding: Finding, kv: KeyValue | None) -> bool:
    """Take the leaked addresses out of their handle as checked (guarded by its revision); the
    handle goes when it holds nothing else."""
    if kv is None:
        return False
    handle = Handle.from_json(records.decode(kv.value))
    rest = tuple(a for a in handle.addresses if a not in finding.addresses)
    op = (
        Put(kv.key, records.encode(replace(handle, addresses=rest).to_json()))
        if rest
        else Delete(kv.key)
    )
    return await store.backend.txn([Compare(kv.key, kv.mod_revision)], [op])


async def _drop_allocation(store: Datastore, finding: Finding, handle_mod: int) -> bool:
    """Take the leaked allocation out of its block — re-read, as an earlier fix of this run
    may have rewritten the block; guarded by the handle being as checked."""
    ip, handle, key = finding.subject, finding.handle, records.block_key(finding.block)
    for _ in range(ipam.TXN_RETRIES):
        kv = await store.backend.get(key)
        if kv is None:
            return False
        block = Block.from_json(records.decode(kv.value))
        if (ip, handle) not in block.allocations:
            return False
        kept = tuple(a for a in block.allocations if a != (ip, handle))
        new = records.encode(replace(block, allocations=kept).to_json())
        compares = [Compare(key, kv.mod_revision), Compare(records.handle_key(handle), handle_mod)]
        if await store.backend.txn(compares, [Put(key, new)]):
            return True
    return False
