"""A real node agent (file datastore, speaker on loopback) in the hysteresis band of automatic
route reflectors: what its registration says decides, also across its own restart.

Three nodes with ``nodeThreshold: 4, hysteresis: 1`` are in the band (3 is neither >= 4 nor
< 3): the cluster keeps what it has. An agent whose previous registration says it is an elected
reflector resumes as one (cluster ID on its speaker, the others its clients, still registered as
elected), so the other nodes, who read that registration, and the node itself agree. The same
cluster without that registration stays a mesh. The other two nodes are registrations only:
their sessions never come up (loopback addresses nobody listens on).
"""

from __future__ import annotations

import os
from pathlib import Path

from podbgp.cluster.datastore import NodeInfo, open_datastore
from podbgp.node.agent import NodeAgent
from podbgp.node.config import FelixConfig, NodeConfig
from tests.integration.test_datastore_file import async_wait, file_config
from tests.support.etcd import free_port

CLUSTER = """\
apiVersion: podbgp/v1
kind: IPPool
metadata: {{name: pool-a}}
spec: {{cidr: 10.150.0.0/16, blockSize: 24}}
---
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  asNumber: 64512
  listenPort: {port}
  routeReflectors: {{mode: auto, nodeThreshold: 4, hysteresis: 1, count: 1, clusterID: 10.9.9.9}}
"""


async def run_agent(tmp_path: Path, was_elected: bool) -> tuple[bool, str | None, bool, set[str]]:
    """Start node-1 among two registered nodes; (election active, speaker cluster ID,
    registered as elected, peer types)."""
    net = f"127.{100 + os.getpid() % 50}.{os.getpid() % 250}"
    (tmp_path / "cluster.yaml").write_text(CLUSTER.format(port=free_port()))
    store = open_datastore(file_config(tmp_path))
    try:
        for n in (2, 3):
            await store.register_node(
                NodeInfo(f"node-{n}", (f"{net}.{n}/24",), router_id=f"{net}.{n}")
            )
        if was_elected:  # what a previous run of this agent published
            await store.register_node(
                NodeInfo("node-1", (f"{net}.1/24",), router_id=f"{net}.1", elected_reflector=True)
            )
    finally:
        await store.close()
    agent = NodeAgent(
        NodeConfig("node-1", file_config(tmp_path), address=f"{net}.1/24", api=None,
                   felix=FelixConfig(enabled=False))
    )  # fmt: skip
    await agent.start()
    try:
        await agent.wait_synced(10)
        await async_wait(lambda: agent.speaker is not None and agent.blocks, "speaker and block")
        topology = agent.topology
        assert topology is not None and agent.speaker is not None
        registered = (await agent.store.get_node("node-1")) or NodeInfo("node-1")
        types = {p.spec.peer_type for p in agent.speaker.peers.values()}
        return (
            topology.election.active,
            agent.speaker.config.cluster_id,
            (registered.elected_reflector),
            types,
        )
    finally:
        await agent.stop()


async def test_an_elected_reflector_in_the_band_resumes_as_one(tmp_path: Path) -> None:
    active, cluster_id, registered, types = await run_agent(tmp_path, was_elected=True)
    assert active and cluster_id == "10.9.9.9" and registered
    assert types == {"rr-client"}


async def test_without_an_elected_reflector_the_band_stays_a_mesh(tmp_path: Path) -> None:
    active, cluster_id, registered, types = await run_agent(tmp_path, was_elected=False)
    assert not active and cluster_id is None and not registered
    assert types == {"mesh"}
