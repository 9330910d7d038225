"""Cluster operations that span the store and IPAM, so neither has to call the other.

Deleting a Node removes its resource and registration (one transaction in the store) and then
releases the blocks it owned (IPAM), as ``calicoctl delete node`` does.
"""

from __future__ import annotations

from podbgp.cluster import ipam
from podbgp.cluster.datastore.store import Datastore
from podbgp.cluster.resources import Node


async def delete_resource(store: Datastore, kind: str, name: str) -> bool:
    """Delete one resource; a Node's blocks are released too. False when nothing existed."""
    existed = await store.delete_resource(kind, name)
    if kind == Node.KIND:
        released = await ipam.release_blocks(store, name)
        existed = existed or bool(released)
    return existed
