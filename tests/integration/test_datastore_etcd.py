"""The etcd datastore against a real etcd: block claims, IPAM, resources, watches, TLS, CLI.

One etcd serves the module; every test works under its own key prefix.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import yaml

from podbgp.cluster import ipam, ipam_check, operations
from podbgp.cluster.datastore import (
    Change,
    ChangeKind,
    Datastore,
    DatastoreConfig,
    DatastoreError,
    DatastoreUnavailable,
    NodeInfo,
    open_datastore,
    records,
)
from podbgp.cluster.datastore.kv import Delete, Put
from podbgp.cluster.resources import BGPConfiguration, IPPool, Node, ResourceError
from tests.support.etcd import EtcdServer, etcd_available, make_pki
from tests.support.podbgp_node import run_podbgp


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    reason = etcd_available()
    if reason is not None:
        pytest.skip(reason)
    server = EtcdServer(tmp_path_factory.mktemp("etcd")).start()
    yield server
    server.stop()


def new_prefix() -> str:
    return f"/podbgp-test-{uuid.uuid4().hex[:8]}/"


def config(etcd: EtcdServer, prefix: str) -> DatastoreConfig:
    return DatastoreConfig(type="etcd", endpoints=(etcd.endpoint,), prefix=prefix)


@pytest.fixture
async def store(etcd: EtcdServer) -> AsyncIterator[Datastore]:
    s = open_datastore(config(etcd, new_prefix()))
    yield s
    await s.close()


async def dump(store: Datastore) -> dict[str, tuple[bytes, int]]:
    kvs, _ = await store.backend.range("")
    return {kv.key: (kv.value, kv.mod_revision) for kv in kvs}


# --- block claims ------------------------------------------------------------------------------


async def test_twenty_nodes_claim_distinct_blocks_concurrently(
    store: Datastore, etcd: EtcdServer
) -> None:
    # 32 blocks for 20 nodes: the nodes' hashed starting points collide often, so the
    # compare-and-swap really decides.
    pool = IPPool("pool-a", "10.96.0.0/19", block_size=24)
    await store.apply([pool])
    prefix = store.backend.prefix  # type: ignore[attr-defined]
    stores = [open_datastore(config(etcd, prefix)) for _ in range(20)]
    try:
        blocks = await asyncio.gather(
            *(ipam.claim_block(s, f"node-{i}") for i, s in enumerate(stores))
        )
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    cidrs = [b.cidr for b in blocks]
    assert len(set(cidrs)) == 20
    for block in blocks:
        net = ipaddress.ip_network(block.cidr)
        assert net.prefixlen == 24 and net.subnet_of(pool.network)  # type: ignore[arg-type]
    stored = await ipam.all_blocks(store)
    assert sorted(b.cidr for b in stored) == sorted(cidrs)
    owners = {b.cidr: b.node for b in stored}
    assert owners == {b.cidr: f"node-{i}" for i, b in enumerate(blocks)}
    affinities, _ = await store.backend.range("ipam/affinity/")
    assert len(affinities) == 20
    for i, block in enumerate(blocks):
        assert [b.cidr for b, _ in await ipam.node_blocks(store, f"node-{i}")] == [block.cidr]


async def test_restarted_node_gets_its_block_back(store: Datastore, etcd: EtcdServer) -> None:
    await store.apply([IPPool("pool-a", "10.97.0.0/16")])
    first = await ipam.claim_block(store, "node-1")
    await ipam.claim_block(store, "node-2")
    again = open_datastore(config(etcd, store.backend.prefix))  # type: ignore[attr-defined]
    try:
        assert await ipam.claim_block(again, "node-1") == first
    finally:
        await again.close()
    assert len(await ipam.all_blocks(store)) == 2


async def test_exhausted_pool_is_a_clear_error_and_changes_nothing(store: Datastore) -> None:
    await store.apply([IPPool("tiny", "10.98.0.0/23", block_size=24)])
    a = await ipam.claim_block(store, "node-1")
    b = await ipam.claim_block(store, "node-2")
    before = await dump(store)
    with pytest.raises(ipam.PoolExhaustedError) as err:
        await ipam.claim_block(store, "node-3")
    assert str(err.value) == (
        "no free block for node node-3: every block is claimed in "
        "tiny (10.98.0.0/23, 2 blocks of /24)"
    )
    assert await dump(store) == before  # nothing written, nothing half-claimed
    # Space frees when a node is deleted: its block goes back to the pool.
    assert await operations.delete_resource(store, Node.KIND, "node-1")
    c = await ipam.claim_block(store, "node-3")
    assert c.cidr == a.cidr and c.node == "node-3"
    assert {x.cidr: x.node for x in await ipam.all_blocks(store)} == {
        b.cidr: "node-2",
        c.cidr: "node-3",
    }


async def test_no_pool_for_the_node(store: Datastore) -> None:
    await store.apply([IPPool("zoned", "10.99.0.0/16", node_selector=_sel("zone == 'a'"))])
    with pytest.raises(ipam.NoPoolError, match="no enabled IPPool selects node node-1"):
        await ipam.claim_block(store, "node-1", {"zone": "b"})
    block = await ipam.claim_block(store, "node-1", {"zone": "a"})
    assert block.pool == "zoned"


async def test_pinned_blocks_are_honoured(store: Datastore) -> None:
    pool = IPPool("pool-a", "10.100.0.0/16")
    await store.apply([pool, Node("node-1", blocks=("10.100.7.0/24",))])
    assert (await ipam.claim_block(store, "node-1")).cidr == "10.100.7.0/24"
    await store.apply([Node("node-2", blocks=("10.100.8.0/24",))])
    await ipam.claim_block(store, "node-2")
    # An administrator pins node-2's block on node-3 too: refused, node-2 keeps it.
    with pytest.raises(ResourceError, match="is pinned to Node/node-2"):
        await store.apply([Node("node-3", blocks=("10.100.8.0/24",))])


def _sel(text: str):  # type: ignore[no-untyped-def]
    from podbgp.cluster.selector import parse_selector

    return parse_selector(text)


# --- pod addresses -----------------------------------------------------------------------------


async def test_pod_addresses_are_unique_idempotent_and_reusable(store: Datastore) -> None:
    # /29 blocks: six usable addresses each (no network, no broadcast address).
    await store.apply([IPPool("small", "10.101.0.0/28", block_size=29)])
    handles = [f"ctr{i}.eth0" for i in range(6)]
    got = await asyncio.gather(*(ipam.assign_address(store, "node-1", h) for h in handles))
    ips = [ip for ip, _block in got]
    block = got[0][1]
    assert len(set(ips)) == 6
    assert {b for _ip, b in got} == {block}
    net = ipaddress.ip_network(block)
    assert str(net.network_address) not in ips and str(net.broadcast_address) not in ips
    assert await ipam.assign_address(store, "node-1", "ctr3.eth0") == got[3]  # same handle, same IP
    # The block is full: the seventh pod comes from a second block the node claims.
    ip7, block7 = await ipam.assign_address(store, "node-1", "ctr6.eth0")
    assert block7 != block and ipaddress.ip_address(ip7) in ipaddress.ip_network(block7)
    allocations = await ipam.list_allocations(store, "node-1")
    assert allocations == {**dict(zip(handles, ips, strict=True)), "ctr6.eth0": ip7}
    # Released addresses are handed out again; unknown handles are reported.
    assert await ipam.release_address(store, "ctr2.eth0")
    assert not await ipam.release_address(store, "ctr2.eth0")
    assert (await ipam.assign_address(store, "node-1", "ctr9.eth0"))[0] == ips[2]
    # The pool is now full for everyone else.
    with pytest.raises(ipam.PoolExhaustedError):
        await ipam.assign_address(store, "node-2", "other.eth0")


async def test_dual_stack_handles_hold_one_address_per_family(store: Datastore) -> None:
    # /127 blocks of IPv6: two addresses each, so the third pod needs a second v6 block.
    await store.apply(
        [
            IPPool("v4", "10.103.0.0/16", block_size=29),
            IPPool("v6", "fd00:103::/120", block_size=127),
        ]
    )
    for i in (1, 2, 3):
        await store.register_node(NodeInfo(f"node-{i}", (f"192.0.2.{i}/24", f"2001:db8::{i}/64")))
    ip4, block4 = await ipam.assign_address(store, "node-1", "a.eth0", 4)
    ip6, block6 = await ipam.assign_address(store, "node-1", "a.eth0", 6)
    assert ipaddress.ip_address(ip4).version == 4 and ipaddress.ip_address(ip6).version == 6
    assert ipaddress.ip_address(ip6) in ipaddress.ip_network(block6)
    # One block per family, claimed on demand; asking again gives the same addresses.
    blocks = {b.cidr for b, _kv in await ipam.node_blocks(store, "node-1")}
    assert blocks == {block4, block6}
    assert await ipam.assign_address(store, "node-1", "a.eth0", 6) == (ip6, block6)
    assert await ipam.assign_address(store, "node-1", "a.eth0", 4) == (ip4, block4)
    held = await ipam.handle_addresses(store, "a.eth0")
    assert held is not None and held.addresses == ((ip4, block4), (ip6, block6))
    # The v6 block is full after two pods: the third claims another v6 block (v4 untouched).
    await ipam.assign_address(store, "node-1", "b.eth0", 6)
    ip6c, block6c = await ipam.assign_address(store, "node-1", "c.eth0", 6)
    assert block6c != block6 and ipaddress.ip_network(block6c).prefixlen == 127
    v4_blocks = [b for b, _kv in await ipam.node_blocks(store, "node-1") if b.network.version == 4]
    assert [b.cidr for b in v4_blocks] == [block4]
    assert await ipam.list_allocations(store, "node-1", 6) == {
        "a.eth0": ip6,
        "b.eth0": (await ipam.assign_address(store, "node-1", "b.eth0", 6))[0],
        "c.eth0": ip6c,
    }
    # Releasing the handle frees both families in one go.
    assert await ipam.release_address(store, "a.eth0")
    assert await ipam.handle_addresses(store, "a.eth0") is None
    assert "a.eth0" not in await ipam.list_allocations(store, "node-1", 4)
    assert "a.eth0" not in await ipam.list_allocations(store, "node-1", 6)
    assert (await ipam.assign_address(store, "node-2", "d.eth0", 6))[0] != ip6c
    # No IPv6 pool selects node-3: a v6 request says so, the v4 one works.
    await store.apply([IPPool("v6", "fd00:103::/120", block_size=127, disabled=True)])
    with pytest.raises(ipam.NoPoolError, match="no enabled IPv6 IPPool selects node node-3"):
        await ipam.assign_address(store, "node-3", "e.eth0", 6)
    assert (await ipam.assign_address(store, "node-3", "e.eth0", 4))[0]
    report = await ipam_check.check(store)
    assert [f.problem for f in report.findings] == []


async def test_ipam_check_finds_a_leaked_address_of_one_family(store: Datastore) -> None:
    await store.apply([IPPool("v4", "10.104.0.0/24"), IPPool("v6", "fd00:104::/64")])
    await store.register_node(NodeInfo("node-1", ("192.0.2.1/24", "2001:db8::1/64")))
    ip4, block4 = await ipam.assign_address(store, "node-1", "a.eth0", 4)
    ip6, block6 = await ipam.assign_address(store, "node-1", "a.eth0", 6)
    # The v6 block loses the allocation behind the handle's back.
    kv = await store.backend.get(records.block_key(block6))
    assert kv is not None
    emptied = records.Block.from_json(records.decode(kv.value))
    emptied = records.Block(emptied.cidr, emptied.pool, emptied.node)
    await store.backend.txn([], [Put(kv.key, records.encode(emptied.to_json()))])
    report = await ipam_check.check(store)
    assert [(f.problem, f.subject) for f in report.findings] == [("leaked-handle", "a.eth0")]
    assert ip6 in report.findings[0].reason and ip4 not in report.findings[0].reason
    fixed = await ipam_check.fix(store, report)
    assert [f.action for f in fixed.findings] == ["deleted"]
    held = await ipam.handle_addresses(store, "a.eth0")
    assert held is not None and held.addresses == ((ip4, block4),)  # the v4 address stays
    assert (await ipam_check.check(store)).findings == []


async def test_tunnel_address_uses_a_plain_handle(store: Datastore) -> None:
    await store.apply([IPPool("pool-a", "10.102.0.0/16")])
    ip, block = await ipam.assign_address(store, "node-1", "tunl0:node-1")
    assert ip == str(ipaddress.ip_network(block).network_address + 1)
    assert await ipam.list_allocations(store, "node-1") == {"tunl0:node-1": ip}


# --- resources and registrations ---------------------------------------------------------------


async def test_apply_is_all_or_nothing(store: Datastore) -> None:
    a = IPPool("a", "10.110.0.0/16")
    result = await store.apply([a, BGPConfiguration("default", as_number=65001)])
    assert [(r.name, action) for r, action in result] == [("a", "created"), ("default", "created")]
    before = await dump(store)
    with pytest.raises(ResourceError, match="overlaps IPPool/a"):
        await store.apply(
            [BGPConfiguration("default", as_number=65002), IPPool("b", "10.110.5.0/24")]
        )
    assert await dump(store) == before
    again = await store.apply([a, BGPConfiguration("default", as_number=65003)])
    assert [action for _r, action in again] == ["unchanged", "configured"]
    got = await store.get_resource("BGPConfiguration", "default")
    assert isinstance(got, BGPConfiguration) and got.as_number == 65003


async def test_registration_updates_never_lose_a_concurrent_writer(
    store: Datastore, etcd: EtcdServer
) -> None:
    await store.register_node(NodeInfo("node-1", ("192.0.2.1/24",), router_id="192.0.2.1"))
    other = open_datastore(config(etcd, store.backend.prefix))  # type: ignore[attr-defined]
    try:
        await asyncio.gather(
            store.update_node_status("node-1", vtep={"ip": "10.0.0.1", "mac": "02:00:00:00:00:01"}),
            other.update_node_status("node-1", api_address="192.0.2.1:9179"),
        )
    finally:
        await other.close()
    reg = await store.get_registration("node-1")
    assert reg is not None
    assert reg.vtep == {"ip": "10.0.0.1", "mac": "02:00:00:00:00:01"}
    assert reg.api_address == "192.0.2.1:9179" and reg.router_id == "192.0.2.1"
    # The administrator's Node resource merges in: labels and cluster ID from it.
    await store.apply([Node("node-1", route_reflector_cluster_id="1.0.0.1", labels=(("rr", "y"),))])
    merged = await store.get_node("node-1")
    assert merged is not None and merged.route_reflector_cluster_id == "1.0.0.1"
    assert merged.addresses == ("192.0.2.1/24",) and merged.label_map == {"rr": "y"}
    # Re-registering keeps the VTEP felix published.
    await store.register_node(NodeInfo("node-1", ("192.0.2.1/24",), router_id="192.0.2.1"))
    reg = await store.get_registration("node-1")
    assert reg is not None and reg.vtep["ip"] == "10.0.0.1"


async def test_watch_reports_resource_node_and_affinity_changes(store: Datastore) -> None:
    snap = await store.snapshot()
    changes = []

    async def follow() -> None:
        async for change in store.watch(snap.revision):
            changes.append(change)
            if len(changes) == 3:
                return

    task = asyncio.create_task(follow())
    await store.apply([IPPool("w", "10.120.0.0/16")])
    await store.register_node(NodeInfo("node-w", ("192.0.2.9/24",)))
    block = await ipam.claim_block(store, "node-w")  # one transaction: block and affinity
    await asyncio.wait_for(task, 10)
    # One watch per prefix: ordered per key, not across prefixes.
    kinds = sorted((c.kind.value, c.name) for c in changes)
    assert kinds == [
        (ChangeKind.AFFINITY.value, block.cidr),
        (ChangeKind.NODE.value, "node-w"),
        (ChangeKind.RESOURCE.value, "IPPool/w"),
    ]
    pool = next(c.value for c in changes if c.kind == ChangeKind.RESOURCE)
    assert isinstance(pool, IPPool) and pool.cidr == "10.120.0.0/16"
    for change in changes:
        snap.apply(change)
    assert [(a.cidr, a.pool) for a in snap.blocks_of("node-w")] == [(block.cidr, "w")]


# --- connection loss and TLS ------------------------------------------------------------------


async def test_unreachable_etcd_is_reported_then_reconnected(tmp_path: Path) -> None:
    server = EtcdServer(tmp_path).start()
    store = open_datastore(config(server, "/outage/"))
    try:
        await store.apply([IPPool("p", "10.130.0.0/16")])
        server.stop()
        with pytest.raises(DatastoreUnavailable):
            await store.list_resources()
        server.start()
        assert [r.name for r in await store.list_resources()] == ["p"]
    finally:
        await store.close()
        server.stop()


async def test_tls_with_client_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    server = EtcdServer(tmp_path, pki=pki).start()
    good = DatastoreConfig(
        type="etcd",
        endpoints=(server.endpoint,),
        prefix="/tls/",
        ca_file=str(pki.ca),
        cert_file=str(pki.client_cert),
        key_file=str(pki.client_key),
    )
    store = open_datastore(good)
    anonymous = open_datastore(
        DatastoreConfig(
            type="etcd", endpoints=(server.endpoint,), prefix="/tls/", ca_file=str(pki.ca)
        )
    )
    try:
        await store.apply([IPPool("p", "10.131.0.0/16")])
        assert [r.name for r in await store.list_resources("IPPool")] == ["p"]
        with pytest.raises(DatastoreError):  # the server insists on a client certificate
            await anonymous.list_resources()
    finally:
        await store.close()
        await anonymous.close()
        server.stop()


# --- the CLI -----------------------------------------------------------------------------------


GOOD = """\
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 10.140.0.0/16, ipipMode: CrossSubnet}
---
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
"""
BAD = """\
apiVersion: podbgp/v1
kind: BGPPeer
metadata: {name: fine}
spec: {peerIP: 192.0.2.1, asNumber: 65000}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pool-b}
spec: {cidr: 10.141.0.0/16, blockSize: 33}
"""


async def test_cli_apply_get_delete_and_bad_resources(store: Datastore, tmp_path: Path) -> None:
    prefix = store.backend.prefix  # type: ignore[attr-defined]
    env = {
        "PODBGP_ETCD_ENDPOINTS": str(store.backend.endpoints[0]),  # type: ignore[attr-defined]
        "PODBGP_ETCD_PREFIX": prefix,
    }
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    run = await asyncio.to_thread(run_podbgp, "apply", "-f", str(good), env=env)
    assert run.returncode == 0, run.stderr
    assert "IPPool/pool-a created" in run.stdout
    before = await dump(store)

    run = await asyncio.to_thread(run_podbgp, "apply", "-f", str(bad), env=env)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        f"podbgp apply: {bad} (document 2) IPPool/pool-b: spec.blockSize: "
        "must be an integer in 16..30"
    )
    assert await dump(store) == before  # the valid BGPPeer in the same file was not written

    overlap = tmp_path / "overlap.yaml"
    overlap.write_text(GOOD.replace("pool-a", "pool-c").replace("10.140.0.0/16", "10.140.9.0/24"))
    run = await asyncio.to_thread(run_podbgp, "apply", "-f", str(overlap), env=env)
    assert run.returncode == 2 and "overlaps IPPool/pool-a" in run.stderr
    assert await dump(store) == before

    run = await asyncio.to_thread(run_podbgp, "get", "ippool", "pool-a", "-o", "yaml", env=env)
    assert run.returncode == 0, run.stderr
    doc = yaml.safe_load(run.stdout)
    assert doc["spec"]["cidr"] == "10.140.0.0/16" and doc["spec"]["ipipMode"] == "CrossSubnet"

    await ipam.claim_block(store, "node-1")
    run = await asyncio.to_thread(
        run_podbgp, "ipam", "show", "--show-blocks", "-o", "json", env=env
    )
    data = json.loads(run.stdout)
    assert data["pools"][0]["blocksInUse"] == 1 and data["pools"][0]["blocksTotal"] == 256
    assert data["blocks"][0]["node"] == "node-1"

    run = await asyncio.to_thread(run_podbgp, "delete", "ippool", "pool-a", env=env)
    assert run.returncode == 0 and "Successfully deleted IPPool/pool-a" in run.stdout
    run = await asyncio.to_thread(run_podbgp, "delete", "ippool", "pool-a", env=env)
    assert run.returncode == 1 and "IPPool/pool-a not found" in run.stderr
    run = await asyncio.to_thread(run_podbgp, "get", "pods", env=env)
    assert run.returncode == 2 and "unknown kind 'pods'" in run.stderr


# --- watch scope: pod churn wakes no other node ------------------------------------------------


async def test_pod_churn_on_one_node_wakes_no_other_node(
    store: Datastore, etcd: EtcdServer
) -> None:
    from podbgp.node.agent import NodeAgent
    from podbgp.node.config import FelixConfig, NodeConfig
    from tests.support.etcd import free_port

    prefix = store.backend.prefix  # type: ignore[attr-defined]
    net = f"127.{60 + os.getpid() % 50}.{os.getpid() % 250}"
    await store.apply(
        [BGPConfiguration("default", listen_port=free_port()), IPPool("p", "10.121.0.0/16")]
    )
    await store.register_node(NodeInfo("node-a", (f"{net}.1/24",), router_id=f"{net}.1"))
    block_a = await ipam.claim_block(store, "node-a")
    agent = NodeAgent(
        NodeConfig(
            "node-b",
            config(etcd, prefix),
            address=f"{net}.2/24",
            api=None,
            felix=FelixConfig(enabled=False),
        )
    )
    # A watcher of the whole prefix, as every node was before: it must see the churn, which
    # shows the churn really happened and would have woken every node.
    everything: list[str] = []

    async def follow_everything(after: int) -> None:
        async for event in store.backend.watch([""], after):
            everything.append(event.key)

    _kvs, rev = await store.backend.range("")
    whole = asyncio.create_task(follow_everything(rev))
    await agent.start()
    try:
        await agent.wait_synced(20)

        def settled() -> bool:  # the agent's own writes have come back through its watch
            reg = agent.snapshot.registrations.get("node-b")
            return bool(agent.blocks) and reg is not None and list(reg.blocks) == agent.blocks

        await wait_until(settled)
        await asyncio.sleep(0.5)
        snap = await store.snapshot()
        scoped: list[Change] = []

        async def follow_scoped() -> None:
            async for change in store.watch(snap.revision):
                scoped.append(change)

        watcher = asyncio.create_task(follow_scoped())
        events_before, seen_before = agent.health.watch_events, len(everything)

        # Pod churn on node A, as its CNI plugin makes it.
        for i in range(25):
            await ipam.assign_address(store, "node-a", f"churn{i}.eth0")
        for i in range(25):
            assert await ipam.release_address(store, f"churn{i}.eth0")
        await wait_until(lambda: len(everything) - seen_before >= 100)  # 2 keys per change
        await asyncio.sleep(1.0)
        assert agent.health.watch_events == events_before  # node B's agent: zero events
        assert scoped == []  # any store's watch: zero events

        # What routing needs does arrive: a new block claim and a new node's registration.
        block_a2 = await ipam.claim_block(store, "node-a", additional=True)
        await store.register_node(NodeInfo("node-c", (f"{net}.3/24",), router_id=f"{net}.3"))
        await wait_until(lambda: agent.health.watch_events - events_before >= 2)
        await wait_until(lambda: len(scoped) >= 2)
        await asyncio.sleep(0.5)
        assert agent.health.watch_events - events_before == 2
        assert agent.datastore_metrics()["watch_events"] == agent.health.watch_events
        assert sorted((c.kind.value, c.name) for c in scoped) == [
            (ChangeKind.AFFINITY.value, block_a2.cidr),
            (ChangeKind.NODE.value, "node-c"),
        ]
        assert [a.cidr for a in agent.snapshot.blocks_of("node-a")] == sorted(
            [block_a.cidr, block_a2.cidr], key=ipaddress.ip_network
        )
        assert "node-c" in agent.nodes
        watcher.cancel()
    finally:
        whole.cancel()
        await agent.stop()


async def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll ``condition`` every 50 ms until it is true; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


# --- IPAM: more blocks, dead pools, leaks --------------------------------------------------------


async def test_a_deleted_node_with_a_full_block_is_released(store: Datastore) -> None:
    # 200 addresses: more handles than one etcd transaction may delete.
    await store.apply([IPPool("p", "10.122.0.0/16")])
    for i in range(200):
        await ipam.assign_address(store, "node-1", f"pod{i}.eth0")
    assert await operations.delete_resource(store, Node.KIND, "node-1")
    assert await ipam.all_blocks(store) == []
    handles, _ = await store.backend.range("ipam/handles/")
    affinities, _ = await store.backend.range("ipam/affinity/")
    assert handles == [] and affinities == []


async def test_a_leaked_handle_never_hands_out_a_foreign_address(store: Datastore) -> None:
    await store.apply([IPPool("p", "10.123.0.0/16")])
    _ip, block = await ipam.assign_address(store, "node-1", "ctr.eth0")
    # The handle survives its block (an interrupted release); the block goes to node-2.
    kv = await store.backend.get(f"ipam/blocks/{block.replace('/', '-')}")
    assert kv is not None
    await store.backend.txn(
        [], [Delete(kv.key), Delete(f"ipam/affinity/node-1/{block.replace('/', '-')}")]
    )
    await store.apply([Node("node-2", blocks=(block,))])
    await ipam.claim_block(store, "node-2")
    ip2, block2 = await ipam.assign_address(store, "node-1", "ctr.eth0")
    assert block2 != block and ipaddress.ip_address(ip2) in ipaddress.ip_network(block2)
    assert await ipam.list_allocations(store, "node-1") == {"ctr.eth0": ip2}


def inside(cidr: str, pool: str) -> bool:
    return ipaddress.IPv4Network(cidr).subnet_of(ipaddress.IPv4Network(pool))


async def test_pool_deletion_and_disabling_release_empty_blocks(store: Datastore) -> None:
    await store.apply([IPPool("old", "10.124.0.0/16"), IPPool("spare", "10.125.0.0/16")])
    empty = await ipam.claim_block(store, "node-1")
    _ip, used = await ipam.assign_address(store, "node-2", "ctr.eth0")
    assert empty.pool == "old" and inside(used, "10.124.0.0/16")
    released = await operations.released_by_delete(store, IPPool.KIND, "old")
    assert released == [empty.cidr]  # the empty one at once; the used one stays
    assert {b.cidr for b in await ipam.all_blocks(store)} == {used}
    # The dead pool's block hands out nothing more: node-2 gets a block of "spare".
    _ip2, other = await ipam.assign_address(store, "node-2", "ctr2.eth0")
    assert inside(other, "10.125.0.0/16")
    # Its last address released, the dead pool's block goes with it (affinity included).
    assert await ipam.release_address(store, "ctr.eth0")
    assert {b.cidr for b in await ipam.all_blocks(store)} == {other}
    assert [b.cidr for b, _ in await ipam.node_blocks(store, "node-2")] == [other]
    # Disabling works the same way, through `podbgp apply`.
    spare_empty = await ipam.claim_block(store, "node-3")
    assert spare_empty.pool == "spare"
    _results, released = await operations.apply_resources(
        store, [IPPool("spare", "10.125.0.0/16", disabled=True)]
    )
    assert released == [spare_empty.cidr]
    assert {b.cidr for b in await ipam.all_blocks(store)} == {other}  # still holds ctr2
    with pytest.raises(ipam.NoPoolError):
        await ipam.assign_address(store, "node-3", "ctr3.eth0")


async def test_ipam_check_fix_on_a_seeded_leak(store: Datastore) -> None:
    prefix = store.backend.prefix  # type: ignore[attr-defined]
    env = {
        "PODBGP_ETCD_ENDPOINTS": str(store.backend.endpoints[0]),  # type: ignore[attr-defined]
        "PODBGP_ETCD_PREFIX": prefix,
    }
    await store.apply([IPPool("p", "10.126.0.0/16")])
    for name in ("node-1", "node-gone"):
        await store.register_node(NodeInfo(name, ("192.0.2.1/24",)))
    good = {
        f"pod{i}.eth0": (await ipam.assign_address(store, "node-1", f"pod{i}.eth0"))[0]
        for i in range(3)
    }
    _ip, gone_block = await ipam.assign_address(store, "node-gone", "gone.eth0")
    # The leaks: node-gone vanished without clean-up; a handle whose address its block does
    # not hold; an affinity without its block.
    await store.backend.txn([], [Delete("nodes/node-gone")])
    node1_block = (await ipam.node_blocks(store, "node-1"))[0][0].cidr
    leaked = records.Handle("leak.eth0", (("10.126.250.9", node1_block),), "node-1")
    await store.backend.txn(
        [],
        [
            Put(records.handle_key("leak.eth0"), records.encode(leaked.to_json())),
            Put(
                records.affinity_key("node-1", "10.126.251.0/24"),
                records.encode({"cidr": "10.126.251.0/24", "node": "node-1"}),
            ),
        ],
    )
    run = await asyncio.to_thread(run_podbgp, "ipam", "check", "-o", "json", env=env)
    assert run.returncode == 3, run.stderr
    found = {(f["problem"], f["subject"], f["node"]) for f in json.loads(run.stdout)["findings"]}
    assert found == {
        ("orphaned-block", gone_block, "node-gone"),
        ("leaked-handle", "leak.eth0", "node-1"),
        ("dangling-affinity", "10.126.251.0/24", "node-1"),
    }
    before_fix = await dump(store)

    run = await asyncio.to_thread(run_podbgp, "ipam", "check", "--fix", env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Fixed 3 problem(s)." in run.stdout
    after = await dump(store)
    assert set(before_fix) - set(after) == {
        records.block_key(gone_block),
        records.affinity_key("node-gone", gone_block),
        records.handle_key("gone.eth0"),
        records.handle_key("leak.eth0"),
        records.affinity_key("node-1", "10.126.251.0/24"),
    }
    assert set(after) <= set(before_fix)  # nothing else touched
    assert await ipam.list_allocations(store, "node-1") == good
    run = await asyncio.to_thread(run_podbgp, "ipam", "check", env=env)
    assert run.returncode == 0 and "No problems found." in run.stdout
    # The released block is free again.
    assert (await ipam.claim_block(store, "node-3")).cidr in {
        gone_block,
        *(b.cidr for b in await ipam.all_blocks(store)),
    }
