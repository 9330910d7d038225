"""The file datastore: resources from a YAML directory, state in JSON, claims across processes,
polling watches, the CLI, and two `podbgp node` processes sharing one directory."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from podbgp.cluster import ipam
from podbgp.cluster.datastore import (
    ChangeKind,
    DatastoreConfig,
    DatastoreError,
    NodeInfo,
    open_datastore,
)
from podbgp.cluster.resources import IPPool, Node
from tests.support.podbgp import REPO, wait_for
from tests.support.podbgp_node import PodbgpNode, run_podbgp

CLUSTER = """\
# The example cluster: one pool and the BGP defaults.
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 10.150.0.0/16, blockSize: 24}
---
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512}
"""


def file_config(path: Path, poll: float = 0.05) -> DatastoreConfig:
    return DatastoreConfig(type="file", path=str(path), poll_interval=poll)


async def test_resources_come_from_yaml_files(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "nodes.yml").write_text(
        "apiVersion: podbgp/v1\nkind: Node\nmetadata: {name: node-1}\n"
        "spec: {addresses: [192.0.2.1/24], blocks: [10.150.9.0/24]}\n"
    )
    (tmp_path / "notes.txt").write_text("not a resource")
    store = open_datastore(file_config(tmp_path))
    kinds = sorted(f"{r.KIND}/{r.name}" for r in await store.list_resources())
    assert kinds == ["BGPConfiguration/default", "IPPool/pool-a", "Node/node-1"]
    node = await store.get_node("node-1")
    assert node is not None and node.address(4) == "192.0.2.1" and not node.registered
    # Blocks pinned per Node are what the node gets.
    assert (await ipam.claim_block(store, "node-1")).cidr == "10.150.9.0/24"
    state = json.loads((tmp_path / ".podbgp-state.json").read_text())
    assert "ipam/blocks/10.150.9.0-24" in state["keys"]


async def test_invalid_files_are_refused_with_file_and_document(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("blockSize: 24", "blockSize: 8"))
    store = open_datastore(file_config(tmp_path))
    with pytest.raises(DatastoreError) as err:
        await store.list_resources()
    assert str(err.value) == (
        f"{tmp_path}/cluster.yaml (document 1) IPPool/pool-a: spec.blockSize: "
        "must be an integer in 16..30"
    )
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "again.yaml").write_text(CLUSTER.split("---")[0])
    with pytest.raises(DatastoreError, match="IPPool/pool-a is also defined in"):
        await store.list_resources()
    (tmp_path / "again.yaml").unlink()
    (tmp_path / "broken.yaml").write_text("kind: [unclosed\n")
    with pytest.raises(DatastoreError, match=r"broken\.yaml: invalid YAML"):
        await store.list_resources()


async def test_apply_and_delete_rewrite_only_their_documents(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    store = open_datastore(file_config(tmp_path))
    await store.apply([IPPool("pool-a", "10.150.0.0/16", ipip_mode="Always")])
    docs = list(yaml.safe_load_all((tmp_path / "cluster.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["IPPool", "BGPConfiguration"]
    assert docs[0]["spec"]["ipipMode"] == "Always"
    await store.apply([Node("node-2", ("192.0.2.2/24",))])
    assert (tmp_path / "node-node-2.yaml").exists()
    assert await store.delete_resource("IPPool", "pool-a")
    docs = list(yaml.safe_load_all((tmp_path / "cluster.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["BGPConfiguration"]
    assert await store.delete_resource("Node", "node-2")
    assert not (tmp_path / "node-node-2.yaml").exists()
    assert not await store.delete_resource("Node", "node-2")


_CLAIM = """
import asyncio, sys
from podbgp.cluster import ipam
from podbgp.cluster.datastore import DatastoreConfig, open_datastore
store = open_datastore(DatastoreConfig(type="file", path=sys.argv[1]))
print(asyncio.run(ipam.claim_block(store, sys.argv[2])).cidr)
"""


def test_claims_from_many_processes_never_share_a_block(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("10.150.0.0/16", "10.151.0.0/20"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM, str(tmp_path), f"node-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(12)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _out, err in results]
    cidrs = [out.strip() for out, _err in results]
    assert len(set(cidrs)) == 12
    store = open_datastore(file_config(tmp_path))
    blocks = asyncio.run(ipam.all_blocks(store))
    assert {b.cidr: b.node for b in blocks} == {c: f"node-{i}" for i, c in enumerate(cidrs)}


async def test_watch_sees_file_edits_and_state_changes(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    store = open_datastore(file_config(tmp_path))
    snap = await store.snapshot()
    seen = []

    async def follow() -> None:
        async for change in store.watch(snap.revision):
            seen.append(change)
            if {c.kind for c in seen} >= {ChangeKind.RESOURCE, ChangeKind.AFFINITY}:
                return

    task = asyncio.create_task(follow())
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("asNumber: 64512", "asNumber: 65001"))
    writer = open_datastore(file_config(tmp_path))  # another client, as another process would be
    block = await ipam.claim_block(writer, "node-1")
    await asyncio.wait_for(task, 10)
    for change in seen:
        snap.apply(change)
    assert snap.bgp_configuration().as_number == 65001
    assert [b.cidr for b in snap.blocks_of("node-1")] == [block.cidr]


def test_cli_uses_the_directory(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    source = tmp_path / "pool.yaml"
    source.write_text(CLUSTER)
    env = {"PODBGP_DATASTORE_PATH": str(cluster), "PODBGP_ETCD_ENDPOINTS": ""}
    run = run_podbgp("apply", "-f", str(source), env=env)
    assert run.returncode == 0, run.stderr
    run = run_podbgp("get", "ippools", "-o", "json", env=env)
    assert [d["metadata"]["name"] for d in json.loads(run.stdout)] == ["pool-a"]
    run = run_podbgp("get", "ippools", "--datastore-path", str(tmp_path / "missing"))
    assert run.returncode == 1 and "directory does not exist" in run.stderr


@pytest.fixture
def nodes() -> Iterator[list[PodbgpNode]]:
    started: list[PodbgpNode] = []
    yield started
    for node in started:
        node.stop()


def test_two_nodes_share_a_file_datastore(tmp_path: Path, nodes: list[PodbgpNode]) -> None:
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    port = 30000 + os.getpid() % 20000
    (cluster / "cluster.yaml").write_text(
        CLUSTER.replace("asNumber: 64512", f"asNumber: 64512, listenPort: {port}")
    )
    net = f"127.{150 + os.getpid() % 50}.{os.getpid() % 250}"
    for i in (1, 2):
        cfg = {
            "nodeName": f"node-{i}",
            "address": f"{net}.{i}/24",
            "datastore": {"type": "file", "path": str(cluster), "pollInterval": 0.2},
            "api": {"listen": f"{net}.{i}:9179"},
            "felix": {"enabled": False},  # the test machine's own routes stay untouched
            "logLevel": "debug",
        }
        nodes.append(PodbgpNode(tmp_path, f"node-{i}", cfg).start())
    a, b = nodes
    wait_for(lambda: b.ip in a.established() and a.ip in b.established(), 30, what="mesh")
    block_b = wait_for(lambda: b.blocks(), 10, what="node-2 block")[0]
    wait_for(lambda: block_b in a.route_prefixes(), 10, what="node-2's block at node-1")
    assert a.routes_by_prefix()[block_b]["nextHop"] == b.ip
    assert a.peers()[b.ip]["type"] == "mesh"


async def test_an_agent_gives_back_its_empty_block_when_its_pool_is_disabled(
    tmp_path: Path,
) -> None:
    from podbgp.node.agent import NodeAgent
    from podbgp.node.config import FelixConfig, NodeConfig
    from podbgp.node.service import NodeViews
    from tests.support.etcd import free_port

    port = free_port()
    (tmp_path / "cluster.yaml").write_text(
        CLUSTER.replace("asNumber: 64512", f"asNumber: 64512, listenPort: {port}")
    )
    net = f"127.{100 + os.getpid() % 50}.{os.getpid() % 250}"
    agent = NodeAgent(
        NodeConfig(
            "node-1",
            file_config(tmp_path),
            address=f"{net}.1/24",
            api=None,
            felix=FelixConfig(enabled=False),
        )
    )
    await agent.start()
    try:
        await agent.wait_synced(10)
        first = await async_wait(lambda: agent.blocks, "a block")
        assert first[0].startswith("10.150.")
        # The snapshot holds affinities, never the allocation records.
        snap = await agent.store.snapshot()
        assert [a.cidr for a in snap.blocks_of("node-1")] == first
        kvs, _ = await agent.store.backend.snapshot(("resources/", "nodes/", "ipam/affinity/"))
        assert not any(kv.key.startswith(("ipam/blocks/", "ipam/handles/")) for kv in kvs)
        # The administrator disables pool-a and adds pool-b by editing the YAML directly.
        (tmp_path / "cluster.yaml").write_text(
            CLUSTER.replace("asNumber: 64512", f"asNumber: 64512, listenPort: {port}").replace(
                "spec: {cidr: 10.150.0.0/16, blockSize: 24}",
                "spec: {cidr: 10.150.0.0/16, blockSize: 24, disabled: true}\n---\n"
                "apiVersion: podbgp/v1\nkind: IPPool\nmetadata: {name: pool-b}\n"
                "spec: {cidr: 10.152.0.0/16}",
            )
        )
        await async_wait(lambda: [b[:7] for b in agent.blocks] == ["10.152."], "pool-b block")
        # The old block withdrawn, the new one originated (later in the same reconcile).
        await async_wait(
            lambda: {r["prefix"] for r in NodeViews(agent).routes()} == set(agent.blocks),
            "origination follows",
        )
        assert [b.cidr for b in await ipam.all_blocks(agent.store)] == agent.blocks
    finally:
        await agent.stop()


async def async_wait(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``condition`` every 50 ms until it is truthy; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        value = condition()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_ipam_check_fix_with_the_file_datastore(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    env = {"PODBGP_DATASTORE_PATH": str(tmp_path), "PODBGP_ETCD_ENDPOINTS": ""}

    async def seed() -> tuple[str, str]:
        store = open_datastore(file_config(tmp_path))
        await store.register_node(NodeInfo("node-1"))
        _ip, kept = await ipam.assign_address(store, "node-1", "a.eth0")
        _ip, gone = await ipam.assign_address(store, "ghost", "g.eth0")  # never registered
        return kept, gone

    kept, gone = asyncio.run(seed())
    run = run_podbgp("ipam", "check", env=env)
    assert run.returncode == 3, run.stdout + run.stderr
    assert f"orphaned-block | {gone}" in run.stdout and "node ghost does not exist" in run.stdout
    run = run_podbgp("ipam", "check", "--fix", env=env)
    assert run.returncode == 0 and "Fixed 1 problem(s)." in run.stdout, run.stdout + run.stderr
    blocks = asyncio.run(ipam.all_blocks(open_datastore(file_config(tmp_path))))
    assert [(b.cidr, b.node) for b in blocks] == [(kept, "node-1")]
    assert run_podbgp("ipam", "check", env=env).returncode == 0
