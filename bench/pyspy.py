"""py-spy for the benchmarks: sample a process into collapsed stacks, and the functions that
took the most samples of their own."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path


def start(pid: int, out: Path, rate: int = 200, settle: float = 0.2) -> subprocess.Popen[bytes]:
    """Sample ``pid`` at ``rate`` Hz into ``out`` (py-spy's raw, collapsed-stack format) until
    :func:`stop`; ``settle`` seconds to attach before the caller's work starts."""
    argv = ["py-spy", "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out),
            "--nonblocking"]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(settle)
    return spy


def stop(spy: subprocess.Popen[bytes]) -> None:
    """SIGINT: py-spy writes what it has and exits (killed if it does not within 30 s)."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait(5)


def top(collapsed: Path, limit: int = 15) -> list[tuple[str, float, float]]:
    """(function (file), own %, total %) by own samples, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return []
    return [
        (frame, round(100 * n / samples, 1), round(100 * total[frame] / samples, 1))
        for frame, n in own.most_common(limit)
    ]


def _function(frame: str) -> str:
    """``name (file.py:123)`` -> ``name (file.py)``: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.split(':')[0]})" if where else name
