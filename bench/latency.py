"""Benchmark: one best-route change, BGP UPDATE to kernel route, N times.

Run as root: ``python -m bench.latency [--changes 200] [--out FILE]``. One ``podbgp node`` (felix
on, the file datastore) in a namespace peers with a BIRD 2 router in another namespace on the
same LAN (iBGP). BIRD originates one /24 and, N times, withdraws it and announces it again
(``birdc disable``/``enable`` of its static protocol), one change at a time: the next change
starts once the kernel shows the previous one. Reported:

* the node's own measurement, UPDATE reached the speaker → kernel acknowledged felix's write:
  ``GET /v1/node`` ``felix.updateToKernel`` (p50/p90/p99/max) and the Prometheus histogram
  ``podbgp_felix_update_to_kernel_seconds`` (bucket counts);
* seen from outside: ``birdc`` returned → ``ip monitor route`` in the node's namespace printed
  the change (includes BIRD's own work and the monitor's wake-up).

This is a report, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Queue
from tempfile import TemporaryDirectory

import yaml

from felix.latency import percentile
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory, run, wait_until

NODE, PEER = "192.0.2.1", "192.0.2.2"
ASN = 64512
PREFIX = "10.244.200.0/24"
API = "http://127.0.0.1:9179"
RESOURCES = f"""
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: {ASN}, nodeToNodeMeshEnabled: false}}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {{name: pods}}
spec: {{cidr: 10.244.0.0/16, blockSize: 24, ipipMode: Never, vxlanMode: Never}}
---
apiVersion: podbgp/v1
kind: Node
metadata: {{name: n1}}
spec: {{blocks: [10.244.1.0/24]}}
---
apiVersion: podbgp/v1
kind: BGPPeer
metadata: {{name: bird}}
spec: {{peerIP: {PEER}, asNumber: {ASN}}}
"""
GET = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())"
)


def api(ns: str, path: str) -> str:
    return run(ns, sys.executable, "-c", GET, API + path).stdout


def start_node(factory: NetnsFactory, ns: str, work: Path) -> subprocess.Popen[bytes]:
    cluster = work / "cluster"
    cluster.mkdir()
    (cluster / "resources.yaml").write_text(RESOURCES)
    config = {
        "nodeName": "n1",
        "address": f"{NODE}/24",
        "datastore": {"type": "file", "path": str(cluster)},
        "api": {"listen": "127.0.0.1:9179"},
        "felix": {"resyncInterval": 90},
        "logLevel": "info",
    }
    (work / "node.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "podbgp", "node", "-c", str(work / "node.yaml")]
    return factory.popen(ns, argv, work / "node.log")


def bird_config() -> BirdConfig:
    return BirdConfig(
        router_id=PEER,
        asn=ASN,
        listen_address=PEER,
        # Graceful restart: BIRD then sends End-of-RIB, and felix converges at once.
        neighbors=(BirdNeighbor(NODE, ASN, name="node", graceful_restart=True),),
        routes=(StaticRoute(PREFIX),),
    )


def monitor(ns: str) -> tuple[subprocess.Popen[str], Queue[tuple[float, str]]]:
    """``ip -o monitor route`` in ``ns``; each line with the monotonic time it was read."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "ip", "-o", "monitor", "route"],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: Queue[tuple[float, str]] = Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put((time.monotonic(), line))

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def wait_line(lines: Queue[tuple[float, str]], deleted: bool, timeout: float = 10.0) -> float:
    end = time.monotonic() + timeout
    while True:
        try:
            at, line = lines.get(timeout=max(0.01, end - time.monotonic()))
        except Empty:
            raise TimeoutError(f"no kernel change for {PREFIX} (deleted={deleted})") from None
        if PREFIX in line and line.startswith("Deleted") == deleted:
            return at


def ms(values: list[float], q: float) -> float:
    return round(percentile(sorted(values), q) * 1000, 2)


def histogram(text: str) -> list[tuple[str, int]]:
    out = []
    for line in text.splitlines():
        if line.startswith("podbgp_felix_update_to_kernel_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((le, int(float(line.rsplit(" ", 1)[1]))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--changes", type=int, default=200, help="withdraw+announce pairs / 2")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.latency needs root (network namespaces)", file=sys.stderr)
        return 2
    with TemporaryDirectory() as tmp, NetnsFactory(log_dir=tmp) as factory:
        work = Path(tmp)
        node_ns, peer_ns = factory.namespace("n"), factory.namespace("b")
        factory.veth(node_ns, peer_ns, [f"{NODE}/24"], [f"{PEER}/24"], "up0", "up0")
        bird = BirdRouter(factory, peer_ns, bird_config(), work / "bird").start()
        proc = start_node(factory, node_ns, work)
        mon, lines = monitor(node_ns)
        try:
            wait_until(lambda: PREFIX in run(node_ns, "ip", "route").stdout, timeout=60)
            wait_until(lambda: json.loads(api(node_ns, "/v1/node"))["felix"]["converged"], 60)
            external: list[float] = []
            for i in range(args.changes):
                deleted = i % 2 == 0
                time.sleep(0.02)  # one change at a time, never a burst
                bird.birdc("disable" if deleted else "enable", "static4")

                sent = time.monotonic()
                external.append(wait_line(lines, deleted) - sent)
            time.sleep(0.2)
            node = json.loads(api(node_ns, "/v1/node"))
            summary = node["felix"]["updateToKernel"]
            buckets = histogram(api(node_ns, "/metrics"))
        except BaseException:
            print((work / "node.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            mon.terminate()
            mon.wait(5)
            factory.stop(proc)
            bird.stop()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "changes": args.changes,
        "node": summary,
        "histogram": buckets,
        "external_ms": {q: ms(external, q) for q in (50, 90, 99, 100)},
    }
    print(f"# UPDATE -> kernel, {args.changes} single changes ({result['date']}, "
          f"{result['machine']}, load {os.getloadavg()[0]:.2f})")  # fmt: skip
    print("| measured by | samples | p50 ms | p90 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| node (UPDATE in → kernel ack) | {summary['samples']} | {summary['p50Ms']} | "
          f"{summary['p90Ms']} | {summary['p99Ms']} | {summary['maxMs']} |")  # fmt: skip
    ext = result["external_ms"]
    print(f"| outside (birdc → ip monitor) | {len(external)} | {ext[50]} | {ext[90]} | "
          f"{ext[99]} | {ext[100]} |")  # fmt: skip
    print(f"node histogram (bucket: changes): {_deltas(buckets)}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


def _deltas(buckets: list[tuple[str, int]]) -> str:
    out, previous = [], 0
    for le, n in buckets:
        if n - previous:
            out.append(f"<= {le}: {n - previous}")
        previous = n
    return ", ".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
