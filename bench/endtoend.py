"""Benchmark: a BGP peer announces N blocks; how fast are they all kernel routes on the node?

Run as root: ``python -m bench.endtoend [--prefixes 100000] [--runs 3] [--profile FILE]
[--netlink] [--out FILE]``. One ``podbgp node`` (felix on, the file datastore, an IP pool
16.0.0.0/7 of /24 blocks) in a namespace peers (iBGP, graceful restart, so End-of-RIB
converges felix at once) with a BIRD 2 sender on the same LAN: bench.receive's sender, N static
/24s, its static protocol disabled until the session is up. Each run, alternately:

* end to end: ``birdc enable static4`` is time zero; the first kernel route of felix's protocol
  (``16.x.y.0/24 via <peer> dev up0 proto 80``) and the N-th, seen by a netlink listener
  (RTNLGRP_IPV4_ROUTE notifications, counted by protocol, in the node's namespace); then
  ``birdc disable static4`` and the last of the N deletions; the node's CPU seconds over both;
* ``ip -batch``: the same N routes (``route replace ... proto 80``) into a fresh namespace pair
  of the same shape, the same listener timing first and N-th; then ``route del``.

The ratio is ip -batch's seconds / end to end seconds for the whole table (1.0: the node is as
fast as iproute2 writing routes it already knows). ``--netlink`` also runs bench.netlink's
felix bulk writer and ``ip -batch`` on the same N (alternately, same session): felix's own
writes without BGP. ``--profile FILE`` samples the node with py-spy over the runs (collapsed
stacks in FILE) and prints the top functions. Every phase is checked against the kernel
(``ip route show proto 80`` count) before its time is taken. A report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from bench import latency, pyspy
from bench import netlink as netlink_bench
from bench.receive import RECEIVER as NODE
from bench.receive import SENDER as PEER
from bench.receive import RawBirdConfig, proc_cpu, sender_config
from podbgp.lab.netns import netns_socket
from tests.support.bird import BirdRouter
from tests.support.netns import NetnsFactory, run, wait_until

ASN = 64512
PROTO = 80
API = "127.0.0.1:9179"
# bench.latency's cluster, plus the pool the sender's blocks come from (felix programs only
# routes inside a pool).
RESOURCES = (
    latency.RESOURCES
    + """---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: remote}
spec: {cidr: 16.0.0.0/7, blockSize: 24, ipipMode: Never, vxlanMode: Never}
"""
)
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
SO_RCVBUFFORCE = 33
HEADER = struct.Struct("=IH")  # nlmsghdr: length, type


@dataclass
class Phase:
    """One table load (or withdrawal): seconds to the first and to the N-th kernel change."""

    first: float
    last: float


@dataclass
class Run:
    contender: str  # "node" or "ip -batch"
    load: Phase
    withdraw: Phase
    cpu_seconds: float | None
    load_average: float


class RouteListener:
    """Counts route notifications of ``PROTO`` in a namespace, noting the first and N-th.

    A thread reads RTNLGRP_IPV4_ROUTE with a large receive buffer; ``arm`` starts a phase.
    Should the kernel drop notifications (ENOBUFS) the phase falls back to polling the table.
    """

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.sock = netns_socket(ns, socket.AF_NETLINK, socket.SOCK_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
        self.sock.bind((0, RTMGRP_IPV4_ROUTE))
        self.kind = RTM_NEWROUTE
        self.count = 0
        self.first: float | None = None
        self.done = threading.Event()
        self.target = 0
        self.overrun = False
        self._closed = False
        threading.Thread(target=self._read, daemon=True, name="route-listener").start()

    def arm(self, kind: int, target: int) -> None:
        self.kind, self.target, self.count, self.first = kind, target, 0, None
        self.overrun = False
        self.last: float | None = None
        self.done.clear()

    def _read(self) -> None:
        while not self._closed:
            try:
                buf = self.sock.recv(1 << 22)
            except OSError:
                if self._closed:
                    return
                self.overrun = True
                continue
            now = time.monotonic()
            offset, n = 0, 0
            while offset + 16 <= len(buf):
                length, msg_type = HEADER.unpack_from(buf, offset)
                if length < 16:
                    break
                if msg_type == self.kind and buf[offset + 16 + 5] == PROTO:
                    n += 1
                offset += (length + 3) & ~3
            if n:
                if self.first is None:
                    self.first = now
                self.count += n
                if self.target and self.count >= self.target and not self.done.is_set():
                    self.last = now
                    self.done.set()

    def wait(self, start: float, timeout: float, expect_in_table: int) -> Phase:
        """The phase's times from ``start``; polls ``ip route`` if notifications were lost."""
        if not self.done.wait(timeout):
            if not self.overrun:
                raise TimeoutError(f"{self.count} of {self.target} route changes seen")
            wait_until(lambda: count_routes(self.ns) == expect_in_table, timeout=timeout)
            self.last = time.monotonic()
        assert self.first is not None and self.last is not None
        if count_routes(self.ns) != expect_in_table:
            raise AssertionError(f"{self.ns}: not {expect_in_table} routes of proto {PROTO}")
        return Phase(round(self.first - start, 4), round(self.last - start, 4))

    def close(self) -> None:
        self._closed = True
        self.sock.close()


def count_routes(ns: str) -> int:
    out = run(ns, "ip", "-4", "route", "show", "proto", str(PROTO), timeout=120).stdout
    return sum(1 for line in out.splitlines() if line.startswith(("16.", "17.")))


def start_node(
    factory: NetnsFactory, ns: str, work: Path, log_level: str = "warning"
) -> subprocess.Popen[bytes]:
    cluster = work / "cluster"
    cluster.mkdir()
    (cluster / "resources.yaml").write_text(RESOURCES)
    config = {
        "nodeName": "n1",
        "address": f"{NODE}/24",
        "datastore": {"type": "file", "path": str(cluster)},
        "api": {"listen": API},
        "felix": {"resyncInterval": 300},
        "logLevel": log_level,
    }
    (work / "node.yaml").write_text(yaml.safe_dump(config))
    argv = [sys.executable, "-m", "podbgp", "node", "-c", str(work / "node.yaml")]
    return factory.popen(ns, argv, work / "node.log")


def prefixes(n: int) -> list[str]:
    """The sender's prefixes (bench.receive.sender_config's numbering)."""
    return [f"{16 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}.0/24" for i in range(n)]


def ip_batch_run(ns: str, listener: RouteListener, dsts: list[str]) -> Run:
    add = "".join(f"route replace {d} via {PEER} dev up0 proto {PROTO}\n" for d in dsts)
    remove = "".join(f"route del {d} proto {PROTO}\n" for d in dsts)
    phases = []
    for kind, text, expect in ((RTM_NEWROUTE, add, len(dsts)), (RTM_DELROUTE, remove, 0)):
        listener.arm(kind, len(dsts))
        start = time.monotonic()
        subprocess.run(
            ["ip", "netns", "exec", ns, "ip", "-batch", "-"], input=text, text=True, check=True,
            capture_output=True, timeout=600,
        )  # fmt: skip
        phases.append(listener.wait(start, 600, expect))
    return Run("ip -batch", phases[0], phases[1], None, os.getloadavg()[0])


def node_run(bird: BirdRouter, ns: str, listener: RouteListener, pid: int, n: int) -> Run:
    cpu0 = proc_cpu(pid)
    phases = []
    for kind, command, expect in ((RTM_NEWROUTE, "enable", n), (RTM_DELROUTE, "disable", 0)):
        listener.arm(kind, n)
        start = time.monotonic()
        bird.birdc(command, "static4")
        phases.append(listener.wait(start, 600, expect))
    cpu = round(proc_cpu(pid) - cpu0, 2)
    return Run("node", phases[0], phases[1], cpu, os.getloadavg()[0])


def veth_pair(factory: NetnsFactory) -> tuple[str, str]:
    node_ns, peer_ns = factory.namespace("n"), factory.namespace("b")
    factory.veth(node_ns, peer_ns, [f"{NODE}/24"], [f"{PEER}/24"], "up0", "up0")
    return node_ns, peer_ns


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="node and ip -batch, alternately")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the node here")
    parser.add_argument("--netlink", action="store_true", help="bench.netlink on N as well")
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    parser.add_argument("--node-log", type=Path, help="keep the node's log (info level) here")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.endtoend needs root (network namespaces)", file=sys.stderr)
        return 2
    n = args.prefixes
    dsts = prefixes(n)
    runs: list[Run] = []
    own_writes: list[netlink_bench.Result] = []
    spy: subprocess.Popen[bytes] | None = None
    with TemporaryDirectory(prefix="podbgp-e2e-") as tmp, NetnsFactory(log_dir=tmp) as factory:
        work = Path(tmp)
        node_ns, peer_ns = veth_pair(factory)
        ip_ns, _ = veth_pair(factory)
        raw = RawBirdConfig(sender_config(n, graceful_restart=True))
        bird = BirdRouter(factory, peer_ns, raw, work / "bird")  # type: ignore[arg-type]
        bird.start(timeout=120)
        proc = start_node(factory, node_ns, work, "info" if args.node_log else "warning")
        node_listener, ip_listener = RouteListener(node_ns), RouteListener(ip_ns)
        try:
            wait_until(lambda: bird.protocols()["feed"].bgp_state == "Established", 60)
            wait_until(lambda: "blackhole 10.244.1.0/24" in run(node_ns, "ip", "route").stdout, 60)
            time.sleep(1.0)  # the node's start-up work settles
            if args.profile:
                spy = pyspy.start(proc.pid, args.profile, settle=1.0)
            for i in range(args.runs):
                print(f"... run {i + 1}/{args.runs}", file=sys.stderr, flush=True)
                runs.append(node_run(bird, node_ns, node_listener, proc.pid, n))
                print(f"    {runs[-1]}", file=sys.stderr, flush=True)
                runs.append(ip_batch_run(ip_ns, ip_listener, dsts))
                print(f"    {runs[-1]}", file=sys.stderr, flush=True)
        except BaseException:
            print((work / "node.log").read_text()[-3000:], file=sys.stderr)
            raise
        finally:
            if spy is not None:
                pyspy.stop(spy)
            node_listener.close()
            ip_listener.close()
            factory.stop(proc)
            bird.stop()
            if args.node_log:
                args.node_log.write_text((work / "node.log").read_text())
        if args.netlink:
            for _ in range(args.runs):
                own_writes.append(
                    asyncio.run(netlink_bench.bench_felix(netlink_bench.node(factory), dsts))
                )
                own_writes.append(netlink_bench.bench_ip(netlink_bench.node(factory), dsts))
    report(runs, own_writes, n)
    if args.profile and args.profile.exists():
        print("\nnode profile (py-spy, by own time): function | self % | total %")
        for frame, own, total in pyspy.top(args.profile):
            print(f"  {own:5.1f} {total:5.1f}  {frame}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"runs": [asdict(r) for r in runs], "own": [asdict(r) for r in own_writes]},
                indent=2,
            )
        )
    return 0


def report(runs: list[Run], own_writes: list[netlink_bench.Result], n: int) -> None:
    print(
        f"\n# End to end, {n} /24s ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})"
    )
    print("| run | contender | first route s | all routes s | routes/s | withdraw all s | "
          "node CPU s | ratio (ip/node) | load |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---|")
    ratios = []
    for i in range(0, len(runs) - 1, 2):
        node, ip = runs[i], runs[i + 1]
        ratio = ip.load.last / node.load.last
        ratios.append(ratio)
        for r in (node, ip):
            cpu = "" if r.cpu_seconds is None else f"{r.cpu_seconds}"
            print(
                f"| {i // 2 + 1} | {r.contender} | {r.load.first:.3f} | {r.load.last:.3f} | "
                f"{n / r.load.last:,.0f} | {r.withdraw.last:.3f} | {cpu} | "
                f"{ratio:.2f}x | {r.load_average:.2f} |"
            )
    if ratios:
        print(f"end to end vs ip -batch: median {statistics.median(ratios):.2f}x, "
              f"range {min(ratios):.2f}-{max(ratios):.2f}x")  # fmt: skip
    if own_writes:
        print("\n# felix's own writes (bench.netlink, same session)")
        print(netlink_bench.table(own_writes))
        pairs = list(zip(own_writes[::2], own_writes[1::2], strict=False))
        own = [ip.install_seconds / felix.install_seconds for felix, ip in pairs]
        print(f"felix install vs ip -batch: {', '.join(f'{r:.2f}x' for r in own)}")


if __name__ == "__main__":
    raise SystemExit(main())
