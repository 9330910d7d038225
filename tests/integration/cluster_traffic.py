"""Shared by the cluster failure tests: counted pings between pods, and daemon logs on failure."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterable, Iterator

from tests.integration.test_cluster_dataplane import Cluster


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
