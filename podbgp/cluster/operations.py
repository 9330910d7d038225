"""Cluster operations that span the store and IPAM, so neither has to call the other.

Deleting a Node removes its resource and registration (one transaction in the store) and then
releases the blocks it owned (IPAM), as ``calicoctl delete node`` does. Deleting an IPPool, or
applying one as ``disabled``, releases that pool's empty blocks at once (a block still holding
addresses goes when its last address is released, see :mod:`podbgp.cluster.ipam`).
"""

from __future__ import annotations

from collections.abc import Sequence

from podbgp.cluster import ipam
from podbgp.cluster.datastore.store import Datastore
from podbgp.cluster.resources import IPPool, Node, Resource


async def delete_resource(store: Datastore, kind: str, name: str) -> bool:
    """Delete one resource; a Node's blocks are released too. False when nothing existed."""
    return await released_by_delete(store, kind, name) is not None


async def released_by_delete(store: Datastore, kind: str, name: str) -> list[str] | None:
    """Delete one resource and release the blocks that go with it (a Node's, an IPPool's
    empty ones); the released CIDRs, or None when nothing existed."""
    existed = await store.delete_resource(kind, name)
    released: list[str] = []
    if kind == Node.KIND:
        released = await ipam.release_blocks(store, name)
        existed = existed or bool(released)
    elif kind == IPPool.KIND and existed:
        released = await ipam.release_unused_blocks(store, pool=name)
    return released if existed else None


async def apply_resources(
    store: Datastore, resources: Sequence[Resource]
) -> tuple[list[tuple[Resource, str]], list[str]]:
    """:meth:`Datastore.apply`, then the empty blocks of pools applied as disabled are
    released; returns the apply results and the released CIDRs."""
    results = await store.apply(resources)
    released: list[str] = []
    for res in resources:
        if isinstance(res, IPPool) and res.disabled:
            released += await ipam.release_unused_blocks(store, pool=res.name)
    return results, released
