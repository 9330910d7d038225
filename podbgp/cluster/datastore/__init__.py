"""podbgp's cluster datastore: etcd v3 for real clusters, a YAML directory for one machine.

``open_datastore(config)`` returns a :class:`Datastore` over the configured backend. Keys live
under one prefix (default ``/podbgp/``); see :mod:`podbgp.cluster.datastore.records` for the layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podbgp.cluster.datastore.kv import DatastoreError, DatastoreUnavailable
from podbgp.cluster.datastore.records import Affinity, Block, Handle, NodeInfo
from podbgp.cluster.datastore.store import Change, ChangeKind, Datastore, Snapshot

__all__ = [
    "DEFAULT_FILE_PATH",
    "DEFAULT_PREFIX",
    "Affinity",
    "Block",
    "Change",
    "ChangeKind",
    "Datastore",
    "DatastoreConfig",
    "DatastoreError",
    "DatastoreUnavailable",
    "Handle",
    "NodeInfo",
    "Snapshot",
    "open_datastore",
    "update_node_status",
]

DEFAULT_PREFIX = "/podbgp/"
DEFAULT_FILE_PATH = "/etc/podbgp/cluster"


@dataclass(frozen=True)
class DatastoreConfig:
    """Where the cluster state lives. ``type`` "etcd": ``endpoints``, ``prefix`` and the TLS
    files; ``type`` "file": ``path`` (YAML directory) and ``state_path`` (JSON runtime state,
    default ``<path>/.podbgp-state.json``)."""

    type: str = "file"
    endpoints: tuple[str, ...] = ()
    prefix: str = DEFAULT_PREFIX
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    path: str = DEFAULT_FILE_PATH
    state_path: str | None = None
    poll_interval: float = 1.0  # file datastore: how often changes are looked for


def open_datastore(config: DatastoreConfig) -> Datastore:
    """A :class:`Datastore` for ``config`` (connections are made on first use)."""
    if config.type == "etcd":
        from podbgp.cluster.datastore.etcd import EtcdBackend, TlsFiles

        tls = TlsFiles(config.ca_file, config.cert_file, config.key_file)
        return Datastore(EtcdBackend(config.endpoints, config.prefix, tls), "etcd")
    if config.type == "file":
        from podbgp.cluster.datastore.file import FileBackend

        backend = FileBackend(config.path, config.state_path, config.poll_interval)
        return Datastore(backend, "file")
    raise ValueError(f"unknown datastore type {config.type!r} (etcd or file)")


async def update_node_status(store: Datastore, name: str, **fields: Any) -> NodeInfo:
    """Change fields of node ``name``'s registration (NodeInfo field names, e.g.
    ``vtep={"ip": ..., "mac": ...}``); see :meth:`Datastore.update_node_status`."""
    return await store.update_node_status(name, **fields)
