"""Shared by the cluster tests: pings between pods (counted, or watched together with every
kernel route change), and daemon logs on failure."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tests.integration.test_cluster_dataplane import Cluster, loss
from tests.support.kernel import routes


@contextlib.contextmanager
def logs_on_failure(cluster: Cluster, names: Iterable[str]) -> Iterator[None]:
    """Print the tail of each named daemon's log when the body fails."""
    try:
        yield
    except BaseException:
        for name in names:
            sys.stderr.write(f"--- {name} log ---\n{cluster.log(name)}\n")
        raise


@contextlib.contextmanager
def counted_pings(
    flows: dict[str, tuple[str, str]], seconds: int, interval: float
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """One counted ``ping`` per flow (source pod namespace, destination IP) for ``seconds``;
    the body collects each one's summary (``communicate``) for ``loss``; any still running at
    the end is killed. Quiet (``-q``): a ping writing a line per reply into a pipe nobody
    reads until the end blocks once the pipe is full, and stops sending."""
    timing = ["-q", "-n", "-i", str(interval), "-w", str(seconds), "-W", "1"]
    pingers = {
        name: subprocess.Popen(
            ["ip", "netns", "exec", src, "ping", *timing, dst],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (src, dst) in flows.items()
    }
    try:
        yield pingers
    finally:
        for p in pingers.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)


@dataclass
class TrafficRecord:
    """What :func:`watched_traffic` saw: (sent, received) per flow, and per node the kernel
    route changes that touched a route present at the start (rewritten or deleted) and the
    routes that were only added."""

    pings: dict[str, tuple[int, int]]
    changed: dict[str, list[str]]
    added: dict[str, int]

    def lost(self) -> dict[str, int]:
        return {name: sent - received for name, (sent, received) in self.pings.items()}


@contextlib.contextmanager
def watched_traffic(
    cluster: Cluster, flows: dict[str, tuple[str, str]], nodes: Iterable[str], tag: str
) -> Iterator[list[TrafficRecord]]:
    """Ping every flow (source pod namespace, destination IP) 20 times a second and record
    ``ip monitor route`` on each node while the body runs; on exit (also on failure) stop
    them by PID and append the :class:`TrafficRecord` to the yielded list."""
    nodes = list(nodes)
    before = {n: {r.split()[0] for r in routes(cluster.ns[n])} for n in nodes}
    factory, work = cluster.factory, cluster.workdir
    monitors = {
        n: factory.popen(cluster.ns[n], ["ip", "-o", "monitor", "route"], work / f"{tag}-{n}.mon")
        for n in nodes
    }
    pingers = {
        name: factory.popen(
            src, ["ping", "-n", "-i", "0.05", "-W", "1", dst], work / f"{tag}-{src}-{dst}.ping"
        )
        for name, (src, dst) in flows.items()
    }
    out: list[TrafficRecord] = []
    try:
        yield out
    finally:
        for proc in [*pingers.values(), *monitors.values()]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # ping prints its summary on SIGINT
        for proc in [*pingers.values(), *monitors.values()]:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                factory.stop(proc)
    lines = {n: (work / f"{tag}-{n}.mon").read_text().splitlines() for n in nodes}
    changed = {
        n: [ln for ln in lines[n] if ln.startswith("Deleted") or ln.split()[0] in before[n]]
        for n in nodes
    }
    out.append(
        TrafficRecord(
            pings={
                name: loss((work / f"{tag}-{src}-{dst}.ping").read_text())
                for name, (src, dst) in flows.items()
            },
            changed=changed,
            added={n: len(lines[n]) - len(changed[n]) for n in nodes},
        )
    )
