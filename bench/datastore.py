"""Benchmark: a node agent's start against a large cluster in a real etcd, and pod churn elsewhere.

Run: ``python -m bench.datastore [--nodes 1000] [--pods 100000] [--before DIR] [--out FILE]``.

One real etcd (Debian's ``etcd-server``, data on tmpfs) is seeded the way running podbgp nodes
leave it: ``--nodes`` registrations, one /24 block per node (block record with its allocations,
and its affinity), ``--pods`` allocated addresses spread over the blocks (each with its handle
record, ``<64 hex container id>.eth0``), an IPPool, and the reflector set-up a cluster this size
runs (mesh off, two reflector nodes, one global BGPPeer). Then, for each code tree — this one,
and with ``--before DIR`` an older checkout (``git archive <commit> | tar -x -C DIR``) — a fresh
process runs one ``NodeAgent`` (no felix, no API) for an existing node and reports:

* start: seconds from ``NodeAgent.start()`` until it has synced (snapshot + first reconcile) —
  for a registered node restarting (``restart``: it finds its block) and for a new node joining
  (``join``: it registers and claims a block),
  bytes etcd sent to it meanwhile (etcd's own ``etcd_network_client_grpc_sent_bytes_total``,
  nothing else talks to etcd then), and the process's RSS before the agent and at its peak;
* churn: while the agent runs, this process assigns then releases ``--churn`` pod addresses on
  another node (``podbgp.cluster.ipam``, as ``podbgp-cni`` does); the agent counts the watch
  events delivered to it and the reconciles they cause.

A report, not a test. Both trees read the same keys, so the same seeded etcd serves both.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PREFIX = "/bench/"
MEASURED = "node-0500"  # the node whose agent starts
CHURNER = "node-0007"  # the node whose pods come and go


def node_name(i: int) -> str:
    return f"node-{i:04d}"


def node_address(i: int) -> str:
    return f"127.77.{i // 250}.{i % 250 + 1}"


def block_cidr(i: int) -> str:
    return f"10.{i // 256}.{i % 256}.0/24"


def container_id(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


# --- seeding ----------------------------------------------------------------------------------


async def seed(endpoint: str, nodes: int, pods: int, listen_port: int) -> dict[str, Any]:
    from podbgp.cluster.datastore import DatastoreConfig, open_datastore, records
    from podbgp.cluster.datastore.kv import Op, Put
    from podbgp.cluster.datastore.records import Affinity, Block, Handle, NodeInfo
    from podbgp.cluster.resources import BGPConfiguration, BGPPeer, IPPool, Node
    from podbgp.cluster.selector import parse_selector

    store = open_datastore(DatastoreConfig(type="etcd", endpoints=(endpoint,), prefix=PREFIX))
    started = time.perf_counter()
    try:
        rr = [node_name(1), node_name(2)]
        await store.apply(
            [
                BGPConfiguration(
                    "default",
                    as_number=64512,
                    node_to_node_mesh_enabled=False,
                    listen_port=listen_port,
                ),
                IPPool("default-pool", "10.0.0.0/8", block_size=24),
                BGPPeer("to-reflectors", peer_selector=parse_selector("has(rr)")),
                *(
                    Node(name, route_reflector_cluster_id="1.0.0.1", labels=(("rr", "y"),))
                    for name in rr
                ),
            ]
        )
        per_node, extra = divmod(pods, nodes)
        ops: list[Op] = []
        pod = 0

        async def flush(force: bool = False) -> None:
            while len(ops) >= 100 or (force and ops):
                await store.backend.txn([], ops[:100])
                del ops[:100]

        for i in range(nodes):
            name, cidr = node_name(i), block_cidr(i)
            info = NodeInfo(
                name,
                (f"{node_address(i)}/8",),
                as_number=64512,
                router_id=node_address(i),
                api_address=f"{node_address(i)}:9179",
                blocks=(cidr,),
                updated="2026-12-03T00:00:00Z",
            )
            ops.append(Put(records.node_key(name), records.encode(info.to_json())))
            base = int.from_bytes(bytes(map(int, cidr.split("/")[0].split("."))), "big")
            allocations = []
            for k in range(per_node + (1 if i < extra else 0)):
                ip = ".".join(str(b) for b in (base + 1 + k).to_bytes(4, "big"))
                handle = f"{container_id(pod)}.eth0"
                pod += 1
                allocations.append((ip, handle))
                h = Handle(handle, ip, cidr, name)
                ops.append(Put(records.handle_key(handle), records.encode(h.to_json())))
            block = Block(cidr, "default-pool", name, tuple(allocations))
            ops.append(Put(records.block_key(cidr), records.encode(block.to_json())))
            affinity = Affinity(cidr, name, "default-pool")
            ops.append(Put(records.affinity_key(name, cidr), records.encode(affinity.to_json())))
            await flush()
        await flush(force=True)
        kvs, _ = await store.backend.range("", keys_only=True)
        return {"keys": len(kvs), "pods": pod, "seconds": time.perf_counter() - started}
    finally:
        await store.close()


# --- the measured process --------------------------------------------------------------------


def child_main(endpoint: str, node: str, address: str) -> None:
    """Run in a fresh interpreter on one code tree: start an agent, report, follow churn."""
    from podbgp.cluster.datastore import DatastoreConfig
    from podbgp.node.agent import NodeAgent
    from podbgp.node.config import FelixConfig, NodeConfig

    def rss_kib(field: str) -> int:
        text = Path("/proc/self/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else 0

    async def run() -> None:
        config = NodeConfig(
            node_name=node,
            datastore=DatastoreConfig(type="etcd", endpoints=(endpoint,), prefix=PREFIX),
            address=address,
            api=None,
            felix=FelixConfig(enabled=False),
        )
        agent = NodeAgent(config)
        events = 0
        reconciles = 0
        watch, reconcile = agent.store.watch, agent.reconcile

        async def counting_watch(after: int) -> AsyncIterator[Any]:
            nonlocal events
            async for change in watch(after):
                events += 1
                yield change

        async def counting_reconcile() -> None:
            nonlocal reconciles
            reconciles += 1
            await reconcile()

        agent.store.watch = counting_watch  # type: ignore[method-assign,assignment]
        agent.reconcile = counting_reconcile  # type: ignore[method-assign]
        rss_before = rss_kib("VmRSS")
        started = time.perf_counter()
        await agent.start()
        await agent.wait_synced(120)
        seconds = time.perf_counter() - started
        report = {
            "start_seconds": seconds,
            "rss_before_kib": rss_before,
            "rss_peak_kib": rss_kib("VmHWM"),
            "blocks": list(agent.blocks),
            "nodes_known": len(agent.nodes),
        }
        await asyncio.sleep(1.0)  # let the watch settle before counting
        base_events, base_reconciles = events, reconciles
        print(json.dumps(report), flush=True)  # the parent churns once it has read this
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        assert line.strip() == "churned", line
        await asyncio.sleep(2.0)  # events in flight arrive
        print(
            json.dumps(
                {
                    "churn_events": events - base_events,
                    "churn_reconciles": reconciles - base_reconciles,
                }
            ),
            flush=True,
        )
        await agent.stop()

    asyncio.run(run())


def etcd_sent_bytes(endpoint: str) -> int:
    with urllib.request.urlopen(endpoint + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    match = re.search(r"^etcd_network_client_grpc_sent_bytes_total (\S+)$", text, re.M)
    if match is None:
        raise RuntimeError("etcd does not export etcd_network_client_grpc_sent_bytes_total")
    return int(float(match.group(1)))


async def churn(endpoint: str, count: int) -> float:
    from podbgp.cluster import ipam
    from podbgp.cluster.datastore import DatastoreConfig, open_datastore

    store = open_datastore(DatastoreConfig(type="etcd", endpoints=(endpoint,), prefix=PREFIX))
    started = time.perf_counter()
    try:
        handles = [f"churn{i:05d}.eth0" for i in range(count)]
        for handle in handles:
            await ipam.assign_address(store, CHURNER, handle)
        for handle in handles:
            await ipam.release_address(store, handle)
    finally:
        await store.close()
    return time.perf_counter() - started


def measure(tree: Path, endpoint: str, churn_count: int, node: str, address: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    # The script itself runs in the child (an old tree has no bench.datastore), its imports
    # come from ``tree``.
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        endpoint,
        node,
        address,
    ]
    sent_before = etcd_sent_bytes(endpoint)
    proc = subprocess.Popen(
        argv, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        report: dict[str, Any] = json.loads(proc.stdout.readline())
        report["bytes_read"] = etcd_sent_bytes(endpoint) - sent_before
        report["churn_seconds"] = asyncio.run(churn(endpoint, churn_count))
        proc.stdin.write("churned\n")
        proc.stdin.flush()
        report.update(json.loads(proc.stdout.readline()))
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()  # only our own child, by its handle
            proc.wait(10)
    report["churn_pods"] = churn_count
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods", type=int, default=100_000)
    ap.add_argument("--churn", type=int, default=100, help="pods added then removed elsewhere")
    ap.add_argument("--before", type=Path, help="an older code tree to measure too")
    ap.add_argument("--out", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--child", nargs=3, metavar=("ENDPOINT", "NODE", "ADDRESS"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        child_main(*args.child)
        return
    if not 2 < args.nodes <= 60000 or args.pods < 0 or args.pods > args.nodes * 250:
        ap.error("need 3..60000 nodes and at most 250 pods per node")
    from tests.support.etcd import EtcdServer, free_port

    workdir = Path(tempfile.mkdtemp(prefix="podbgp-bench-", dir="/dev/shm"))
    server = EtcdServer(workdir).start()
    try:
        seeded = asyncio.run(seed(server.endpoint, args.nodes, args.pods, free_port()))
        print(
            f"seeded {args.nodes} nodes, {seeded['pods']} pods, {seeded['keys']} keys "
            f"in {seeded['seconds']:.1f}s",
            file=sys.stderr,
        )
        trees = [("after", REPO)]
        if args.before is not None:
            trees.insert(0, ("before", args.before.resolve()))
        results = []
        index = int(MEASURED.split("-")[1])
        for n, (label, tree) in enumerate(trees):
            # A registered node restarting, then a new node joining (it claims a block).
            cases = [
                ("restart", MEASURED, f"{node_address(index)}/8"),
                ("join", f"node-new-{label}", f"127.78.0.{n + 1}/8"),
            ]
            for case, node, address in cases:
                r = measure(tree, server.endpoint, args.churn, node, address)
                r.update(tree=label, case=case)
                results.append(r)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print_table(args, results)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"nodes": args.nodes, "pods": args.pods, "results": results}, indent=2)
        )


def print_table(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print(
        f"node agent start at {args.nodes} nodes, {args.pods} pods (real etcd); "
        f"then {args.churn} pods added and removed on another node"
    )
    print(
        f"{'code':<8} {'agent':<8} {'start s':>8} {'read MiB':>9} {'RSS before MiB':>15} "
        f"{'RSS peak MiB':>13} {'churn events':>13} {'churn reconciles':>17}"
    )
    for r in results:
        print(
            f"{r['tree']:<8} {r['case']:<8} {r['start_seconds']:>8.2f} "
            f"{r['bytes_read'] / 2**20:>9.2f} "
            f"{r['rss_before_kib'] / 1024:>15.1f} {r['rss_peak_kib'] / 1024:>13.1f} "
            f"{r['churn_events']:>13} {r['churn_reconciles']:>17}"
        )


if __name__ == "__main__":
    main()
