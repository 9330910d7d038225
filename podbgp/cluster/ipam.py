"""Block IPAM: nodes claim pool blocks, pods get addresses from their node's blocks.

Owns the allocation rules. A node *claims* a free block of a pool whose ``nodeSelector``
matches it with one transaction that requires both the block key and the node's affinity key to
be absent (compare-and-swap), so two nodes can never own one block; a node that asks again gets
the block it already owns (a restart keeps its block); a node whose ``Node`` resource pins
blocks gets those. Pod addresses are handed out from the node's blocks one transaction per
address (block CAS + handle as read), idempotent per handle and family — one handle holds at
most one IPv4 and one IPv6 address, each from a block of its family — never the block's network
address (nor an IPv4 block's broadcast address). When every block of the node of a family is
full, a further block is claimed (Calico's behaviour; the node agent sees the new affinity and
originates it).

A block is *live* while its pool exists and is enabled: only live blocks hand out addresses,
and a block of a deleted or disabled pool is released (block and affinity deleted together)
once its last address is released — or at once when it is empty then — unless a ``Node`` pins
it. Handles are checked against their block, so a handle left behind by an interrupted release
never hands out an address the block no longer holds. Reads stay scoped: a claim reads the
affinity records and the block keys, never another node's allocations. Implements no RFC;
address arithmetic follows RFC 4632 (CIDR).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from podbgp.cluster.datastore import records
from podbgp.cluster.datastore.kv import Compare, DatastoreError, Delete, KeyValue, Op, Put
from podbgp.cluster.datastore.records import Affinity, Block, Handle
from podbgp.cluster.datastore.store import Datastore
from podbgp.cluster.resources import IPPool, Node
from podbgp.cluster.selector import Selector

log = logging.getLogger("podbgp.ipam")

TXN_RETRIES = 50  # CAS attempts; each failure means another writer made progress
MAX_TXN_OPS = 100  # etcd refuses transactions above --max-txn-ops (128 by default)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class IpamError(Exception):
    """An allocation that cannot be made; ``str()`` says why in one line."""


class NoPoolError(IpamError):
    """No enabled IPPool selects this node."""


class PoolExhaustedError(IpamError):
    """Every block of every pool that selects this node is claimed."""


class BlockConflictError(IpamError):
    """A block pinned to this node is owned by another node."""


@dataclass(frozen=True)
class PoolUsage:
    """One pool's occupancy, for ``podbgp ipam show``."""

    pool: IPPool
    blocks_total: int
    blocks: tuple[Block, ...]

    @property
    def addresses_in_use(self) -> int:
        return sum(len(b.allocations) for b in self.blocks)


# --- address arithmetic -----------------------------------------------------------------------


def block_count(pool: IPPool) -> int:
    return 1 << (pool.block_size - pool.network.prefixlen)


def nth_block(pool: IPPool, index: int) -> str:
    net = pool.network
    size = 1 << (net.max_prefixlen - pool.block_size)
    start = int(net.network_address) + index * size
    return f"{ipaddress.ip_address(start)}/{pool.block_size}"


def usable_addresses(cidr: str) -> Iterator[IpAddress]:
    """The addresses IPAM may hand out: never the network address (for IPv6 the Subnet-Router
    anycast address, RFC 4291 §2.6.1) unless the block is a /127 or /128 (RFC 6164), which
    hand out all they have; for IPv4 blocks of /30 and shorter, not the broadcast address
    either (some tools still treat it as broadcast)."""
    net: IpNetwork = ipaddress.ip_network(cidr)
    first = int(net.network_address) + (0 if net.version == 6 and net.prefixlen >= 127 else 1)
    last = int(net.broadcast_address)
    if net.version == 4 and net.prefixlen <= 30:
        last -= 1
    for value in range(first, last + 1):
        yield ipaddress.ip_address(value)


def next_free_address(block: Block) -> str | None:
    taken = {ip for ip, _handle in block.allocations}
    for addr in usable_addresses(block.cidr):
        if str(addr) not in taken:
            return str(addr)
    return None


def _start_index(node: str, count: int) -> int:
    """Where a node starts looking: spread by name so concurrent claims rarely collide."""
    digest = hashlib.sha256(node.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


# --- reading ----------------------------------------------------------------------------------


async def _block_kv(store: Datastore, cidr: str) -> tuple[Block, KeyValue] | None:
    kv = await store.backend.get(records.block_key(cidr))
    if kv is None:
        return None
    try:
        return Block.from_json(records.decode(kv.value)), kv
    except (ValueError, KeyError, TypeError) as exc:
        raise DatastoreError(f"{kv.key}: stored block is invalid: {exc}") from None


async def _handle_kv(store: Datastore, handle: str) -> tuple[Handle, KeyValue] | None:
    kv = await store.backend.get(records.handle_key(handle))
    if kv is None:
        return None
    try:
        return Handle.from_json(records.decode(kv.value)), kv
    except (ValueError, KeyError, TypeError) as exc:
        raise DatastoreError(f"{kv.key}: stored handle is invalid: {exc}") from None


async def node_blocks(store: Datastore, node: str) -> list[tuple[Block, KeyValue]]:
    """The blocks affine to ``node`` (through its affinity keys), in address order."""
    kvs, _ = await store.backend.range(f"{records.AFFINITY}{node}/")
    found: list[tuple[Block, KeyValue]] = []
    for kv in kvs:
        got = await _block_kv(store, records.cidr_of_key(kv.key))
        if got is not None and got[0].node == node:
            found.append(got)
    found.sort(key=lambda item: records.network_order(item[0].cidr))
    return found


async def list_pools(store: Datastore) -> list[IPPool]:
    return [p for p in await store.list_resources(IPPool.KIND) if isinstance(p, IPPool)]


def live_pool(cidr: str, pool_name: str, pools: Iterable[IPPool]) -> IPPool | None:
    """The enabled pool a block belongs to (by name, else the one holding it), or None when
    that pool is deleted or disabled: such a block hands out no more addresses."""
    net = ipaddress.ip_network(cidr)
    for pool in pools:
        if pool_name and pool.name != pool_name:
            continue
        pnet = pool.network
        if net.version == pnet.version and net.subnet_of(pnet):  # type: ignore[arg-type]
            return None if pool.disabled else pool
    return None


async def _pinned(store: Datastore, node: str) -> tuple[str, ...]:
    resource = await store.get_resource(Node.KIND, node)
    return resource.blocks if isinstance(resource, Node) else ()


async def all_blocks(store: Datastore) -> list[Block]:
    kvs, _ = await store.backend.range(records.BLOCKS)
    return sorted(
        (Block.from_json(records.decode(kv.value)) for kv in kvs),
        key=lambda b: records.network_order(b.cidr),
    )


async def pool_usage(store: Datastore) -> list[PoolUsage]:
    pools = [p for p in await store.list_resources(IPPool.KIND) if isinstance(p, IPPool)]
    blocks = await all_blocks(store)
    return [
        PoolUsage(
            pool,
            block_count(pool),
            tuple(b for b in blocks if b.pool == pool.name or _inside(b, pool)),
        )
        for pool in pools
    ]


def _inside(block: Block, pool: IPPool) -> bool:
    net, pnet = block.network, pool.network
    return net.version == pnet.version and net.subnet_of(pnet)  # type: ignore[arg-type]


# --- claiming blocks --------------------------------------------------------------------------


async def claim_block(
    store: Datastore,
    node: str,
    labels: dict[str, str] | None = None,
    *,
    pool_selector: Selector | None = None,
    additional: bool = False,
    version: int | None = None,
) -> Block:
    """A block owned by ``node``: the live one it already has (unless ``additional``), else a pinned
    one from its Node resource, else a free block of the first enabled pool selecting it
    (``labels``: the node's labels, read from its Node resource when None; ``pool_selector``
    further narrows the pools by their own labels; ``version``: only blocks and pools of that
    address family — a dual-stack node claims one of each). Raises :class:`IpamError`."""
    owned = await node_blocks(store, node)
    resource = await store.get_resource(Node.KIND, node)
    pinned = resource.blocks if isinstance(resource, Node) else ()
    pools = await list_pools(store)
    owned_cidrs = {b.cidr for b, _kv in owned}
    for cidr in pinned:
        if cidr not in owned_cidrs:
            return await _claim_pinned(store, node, cidr, pools)
    live = [
        b
        for b, _kv in owned
        if live_pool(b.cidr, b.pool, pools) is not None
        and (version is None or b.network.version == version)
    ]
    if live and not additional:
        return live[0]
    if labels is None:
        labels = dict(resource.labels) if isinstance(resource, Node) else {}
    candidates = [
        p
        for p in pools
        if not p.disabled
        and p.node_selector.matches(labels)
        and (pool_selector is None or pool_selector.matches(dict(p.labels)))
        and (version is None or p.network.version == version)
    ]
    if not candidates:
        family = f"IPv{version} " if version is not None else ""
        raise NoPoolError(f"no enabled {family}IPPool selects node {node}")
    for pool in candidates:
        block = await _claim_from_pool(store, node, pool, owned_cidrs)
        if block is not None:
            return block
    names = ", ".join(
        f"{p.name} ({p.cidr}, {n} block{'s' * (n != 1)} of /{p.block_size})"
        for p in candidates
        if (n := block_count(p))
    )
    raise PoolExhaustedError(f"no free block for node {node}: every block is claimed in {names}")


def _claim_ops(node: str, block: Block) -> list[Op]:
    value = records.encode(Affinity(block.cidr, node, block.pool).to_json())
    return [
        Put(records.block_key(block.cidr), records.encode(block.to_json())),
        Put(records.affinity_key(node, block.cidr), value),
    ]


async def _claim_from_pool(
    store: Datastore, node: str, pool: IPPool, owned: set[str]
) -> Block | None:
    """A free block of ``pool`` for ``node``; None when the pool is full. ``owned``: the
    node's blocks when it decided it needs one more — a block that appears meanwhile (a
    concurrent claim for the same node) is returned instead of claiming yet another."""
    count = block_count(pool)
    start = _start_index(node, count)
    for _ in range(TXN_RETRIES):
        # Only small reads: this node's affinities, and the block keys without their values.
        fresh = [
            b
            for b, _kv in await node_blocks(store, node)
            if b.cidr not in owned and b.network.version == pool.network.version
        ]
        if fresh:
            return fresh[0]
        keys, _rev = await store.backend.range(records.BLOCKS, keys_only=True)
        taken = {records.cidr_of_key(kv.key) for kv in keys}
        cidr = next(
            (c for i in range(count) if (c := nth_block(pool, (start + i) % count)) not in taken),
            None,
        )
        if cidr is None:
            return None
        block = Block(cidr=cidr, pool=pool.name, node=node)
        compares = [
            Compare(records.block_key(cidr), 0),
            Compare(records.affinity_key(node, cidr), 0),
        ]
        if await store.backend.txn(compares, _claim_ops(node, block)):
            log.info("event=block-claimed node=%s block=%s pool=%s", node, cidr, pool.name)
            return block
        # Someone else took it first: look again (their block is now in `taken`).
    raise DatastoreError(f"could not claim a block for node {node}: too much contention")


async def _claim_pinned(store: Datastore, node: str, cidr: str, pools: list[IPPool]) -> Block:
    pool = next((p for p in pools if _inside(Block(cidr, "", node), p)), None)
    if pool is None:
        raise NoPoolError(f"block {cidr} pinned to node {node} is not inside any IPPool")
    for _ in range(TXN_RETRIES):
        got = await _block_kv(store, cidr)
        if got is not None and got[0].node != node:
            raise BlockConflictError(
                f"block {cidr} pinned to node {node} is owned by {got[0].node}"
            )
        block = got[0] if got is not None else Block(cidr=cidr, pool=pool.name, node=node)
        mod = got[1].mod_revision if got is not None else 0
        if await store.backend.txn(
            [Compare(records.block_key(cidr), mod)], _claim_ops(node, block)
        ):
            log.info("event=block-claimed node=%s block=%s pinned=true", node, cidr)
            return block
    raise DatastoreError(f"could not claim pinned block {cidr}: too much contention")


async def release_block(
    store: Datastore, block: Block, kv: KeyValue, *, guards: Iterable[Compare] = ()
) -> bool:
    """Delete ``block`` and its affinity in one transaction, if the block is still as read
    (``kv``) and every guard holds, then the handles of its addresses. False when something
    changed meanwhile (nothing deleted)."""
    compares = [Compare(kv.key, kv.mod_revision), *guards]
    ops: list[Op] = [Delete(kv.key), Delete(records.affinity_key(block.node, block.cidr))]
    if not await store.backend.txn(compares, ops):
        return False
    log.info("event=block-released node=%s block=%s", block.node, block.cidr)
    # The handles go after the block (a full block's would not fit one transaction). One left
    # behind by an interruption hands out nothing: assign_address checks handles against
    # their block, and `podbgp ipam check --fix` deletes it. A dual-stack handle keeps its
    # address of the other family.
    for ip, handle in block.allocations:
        got = await _handle_kv(store, handle)
        if got is not None and (ip, block.cidr) in got[0].addresses:
            h, hkv = got
            rest = tuple(a for a in h.addresses if a != (ip, block.cidr))
            op: Op = (
                Put(hkv.key, records.encode(replace(h, addresses=rest).to_json()))
                if rest
                else Delete(hkv.key)
            )
            await store.backend.txn([Compare(hkv.key, hkv.mod_revision)], [op])
    return True


async def release_blocks(store: Datastore, node: str) -> list[str]:
    """Release every block of ``node`` (with its addresses): a deleted node's blocks return to
    their pools. Returns the released CIDRs."""
    released: list[str] = []
    kvs, _ = await store.backend.range(records.BLOCKS)
    for kv in kvs:
        block = Block.from_json(records.decode(kv.value))
        if block.node == node and await release_block(store, block, kv):
            released.append(block.cidr)
    # Affinities left without a block (an interrupted claim elsewhere) go too.
    affinities, _ = await store.backend.range(f"{records.AFFINITY}{node}/")
    for i in range(0, len(affinities), MAX_TXN_OPS):
        await store.backend.txn([], [Delete(kv.key) for kv in affinities[i : i + MAX_TXN_OPS]])
    return released


async def release_unused_blocks(
    store: Datastore, node: str | None = None, pool: str | None = None
) -> list[str]:
    """Release the empty blocks whose pool is deleted or disabled — of ``node`` (None: every
    node; the node agent passes its own name) and/or of the pool named ``pool``. A block a
    ``Node`` pins is kept. Returns the released CIDRs."""
    pools = await list_pools(store)
    if node is not None:
        candidates = await node_blocks(store, node)
    else:
        kvs, _ = await store.backend.range(records.BLOCKS)
        candidates = [(Block.from_json(records.decode(kv.value)), kv) for kv in kvs]
    pins: dict[str, tuple[str, ...]] = {}
    released: list[str] = []
    for block, kv in candidates:
        if block.allocations or (pool is not None and block.pool != pool):
            continue
        if live_pool(block.cidr, block.pool, pools) is not None:
            continue
        if block.node not in pins:
            pins[block.node] = await _pinned(store, block.node)
        if block.cidr in pins[block.node]:
            continue
        if await release_block(store, block, kv):
            released.append(block.cidr)
    return released


# --- addresses --------------------------------------------------------------------------------


async def assign_address(
    store: Datastore, node_name: str, handle: str, version: int = 4
) -> tuple[str, str]:
    """The address of family ``version`` for ``handle`` (``<container id>.<ifname>``, or
    ``tunl0:<node>`` for the tunnel) from one of ``node_name``'s live blocks of that family, and
    that block's CIDR. Persisted before it is returned; asking again with the same handle returns
    the same address. One handle holds one address per family (a dual-stack pod asks twice). When
    every live block of that family is full, the node claims another (Calico's behaviour)."""
    hkey = records.handle_key(handle)
    for _ in range(TXN_RETRIES):
        existing = await _handle_kv(store, handle)
        held = existing[0].address(version) if existing is not None else None
        if held is not None:
            got = await _block_kv(store, held[1])
            if got is not None and (held[0], handle) in got[0].allocations:
                return held
            # A leaked address: its block no longer holds it. Replaced below (CAS).
        hmod = existing[1].mod_revision if existing is not None else 0
        base = existing[0] if existing is not None else Handle(handle, (), node_name)
        pools = await list_pools(store)
        blocks = [
            (b, kv)
            for b, kv in await node_blocks(store, node_name)
            if b.network.version == version and live_pool(b.cidr, b.pool, pools) is not None
        ]
        for block, kv in blocks:
            ip = next_free_address(block)
            if ip is None:
                continue
            new = replace(block, allocations=(*block.allocations, (ip, handle)))
            rec = base.with_address(ip, block.cidr)
            compares = [Compare(kv.key, kv.mod_revision), Compare(hkey, hmod)]
            ops: list[Op] = [
                Put(kv.key, records.encode(new.to_json())),
                Put(hkey, records.encode(rec.to_json())),
            ]
            if await store.backend.txn(compares, ops):
                return ip, block.cidr
            break  # lost a race on this block or the handle: read again
        else:
            # No live block, or all full: claim one (another one when some are full).
            claimed = await claim_block(store, node_name, additional=bool(blocks), version=version)
            if live_pool(claimed.cidr, claimed.pool, pools) is None:
                raise NoPoolError(
                    f"block {claimed.cidr} of node {node_name} is in a deleted or disabled pool"
                )
    raise DatastoreError(f"could not assign an address to {handle}: too much contention")


async def pod_families(store: Datastore, node_name: str) -> tuple[int, ...]:
    """The address families a pod on ``node_name`` gets (4, 6 or both): those of the node's
    live blocks, plus each family the node has an address of and an enabled pool of selecting
    it (its first block is claimed with the first pod). IPv4 alone when nothing says more."""
    pools = await list_pools(store)
    families = {
        b.network.version
        for b, _kv in await node_blocks(store, node_name)
        if live_pool(b.cidr, b.pool, pools) is not None
    }
    node = await store.get_node(node_name)
    if node is not None:
        labels = node.label_map
        for text in node.addresses:
            version = ipaddress.ip_interface(text).version
            if any(
                p.network.version == version and not p.disabled and p.node_selector.matches(labels)
                for p in pools
            ):
                families.add(version)
    return tuple(sorted(families)) or (4,)


async def handle_addresses(store: Datastore, handle: str) -> Handle | None:
    """The addresses ``handle`` holds (as recorded; a leaked one included), or None."""
    got = await _handle_kv(store, handle)
    return got[0] if got is not None else None


async def release_address(store: Datastore, handle: str) -> bool:
    """Free every address held by ``handle`` (both families) in one transaction; False when the
    handle holds none. The block of a deleted or disabled pool goes with its last address."""
    for _ in range(TXN_RETRIES):
        got_handle = await _handle_kv(store, handle)
        if got_handle is None:
            return False
        h, hkv = got_handle
        compares = [Compare(hkv.key, hkv.mod_revision)]
        ops: list[Op] = [Delete(hkv.key)]
        released: list[str] = []
        for ip, cidr in h.addresses:
            got = await _block_kv(store, cidr)
            if got is None:
                continue
            block, bkv = got
            kept = tuple(a for a in block.allocations if a != (ip, handle))
            compares.append(Compare(bkv.key, bkv.mod_revision))
            if not kept and await _unused(store, block):
                ops += [Delete(bkv.key), Delete(records.affinity_key(block.node, block.cidr))]
                released.append(block.cidr)
            else:
                ops.append(Put(bkv.key, records.encode(replace(block, allocations=kept).to_json())))
        if await store.backend.txn(compares, ops):
            for cidr in released:
                log.info("event=block-released node=%s block=%s reason=pool-gone", h.node, cidr)
            return True
    raise DatastoreError(f"could not release {handle}: too much contention")


async def _unused(store: Datastore, block: Block) -> bool:
    """May an empty ``block`` go back? Yes when its pool is deleted or disabled and no Node
    pins it."""
    if live_pool(block.cidr, block.pool, await list_pools(store)) is not None:
        return False
    return block.cidr not in await _pinned(store, block.node)


async def list_allocations(store: Datastore, node_name: str, version: int = 4) -> dict[str, str]:
    """Every address of family ``version`` allocated from ``node_name``'s blocks, as
    ``{handle: ip}``."""
    out: dict[str, str] = {}
    for block, _kv in await node_blocks(store, node_name):
        if block.network.version == version:
            out.update({handle: ip for ip, handle in block.allocations})
    return out
