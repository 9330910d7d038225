"""Benchmark: does the speaker stay responsive while it ingests a 200k-route table?

Run as root: ``python -m bench.responsive [--prefixes 200000] [--profile FILE [--rate HZ]]
[--out FILE]``.
The sender of bench/receive.py (BIRD 2, N static /24s, iBGP) feeds a ``podbgp bgpd`` with a
hold time of 3 s (so KEEPALIVEs every second). Measured in the same run:

* the REST API: ``GET /v1/status`` every 20 ms from inside the namespace, for 3 s idle and then
  while the N routes arrive (ingest = BIRD's ``enable`` until the speaker holds all N): answer
  time p50/p99/max in each phase;
* KEEPALIVEs: every BGP segment podbgp sends to the sender (only KEEPALIVEs: the sender is an
  iBGP peer, nothing is reflected back) captured with ``tcpdump``; the largest gap during
  ingest (on time: about 1 s);
* ingest CPU seconds of podbgp, and of BIRD as the receiver of the same table in the same run
  (bench.receive's ``run_one``);
* with ``--profile``: ``py-spy`` samples the speaker during ingest (``--rate`` samples a second,
  200 unless told); the functions with the most own samples are printed (the collapsed stacks
  go to FILE).

This is a report, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench import pyspy
from bench.receive import (
    RECEIVER,
    SENDER,
    RawBirdConfig,
    proc_cpu,
    run_one,
    sender_config,
    start_podbgp,
    status_routes,
    wait,
)
from felix.latency import percentile
from tests.support.bird import BirdRouter
from tests.support.netns import NetnsFactory

HOLD = 3
PROBE_INTERVAL = 0.02


class Probe(threading.Thread):
    """GET /v1/status in ``ns`` every 20 ms: (sent at, seconds to answer, routes)."""

    def __init__(self, ns: str) -> None:
        super().__init__(daemon=True)
        self.ns = ns
        self.samples: list[tuple[float, float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            routes = status_routes(self.ns, timeout=10)
            self.samples.append((start, time.monotonic() - start, routes))
            time.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - start)))

    def routes(self) -> int:
        return self.samples[-1][2] if self.samples else -1

    def between(self, t0: float, t1: float) -> list[float]:
        return [lat for at, lat, _ in self.samples if t0 <= at <= t1]


def stats_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(percentile(ordered, 50) * 1000, 2),
        "p99": round(percentile(ordered, 99) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
    }


def podbgp_run(n: int, work: Path, profile: Path | None, rate: int = 200) -> dict[str, object]:
    work.mkdir(parents=True, exist_ok=True)
    with NetnsFactory(log_dir=work) as factory:
        ns_r, ns_s = factory.namespace("r"), factory.namespace("s")
        factory.veth(ns_r, ns_s, addrs_a=[f"{RECEIVER}/24"], addrs_b=[f"{SENDER}/24"])
        pid = start_podbgp(factory, ns_r, work)
        probe = Probe(ns_r)
        probe.start()
        try:
            wait(lambda: probe.routes() == 0, 30)
            text = sender_config(n).replace("  neighbor ", f"  hold time {HOLD};\n  neighbor ", 1)
            sender = BirdRouter(factory, ns_s, RawBirdConfig(text), work / "bird-s")  # type: ignore[arg-type]
            sender.start(timeout=120)
            wait(lambda: sender.protocols()["feed"].bgp_state == "Established", 60)
            dump = factory.popen(
                ns_r,
                ["tcpdump", "-i", "any", "-l", "-n", "-tt", "-q",
                 f"src host {RECEIVER} and tcp src port 179 and tcp[tcpflags] & tcp-push != 0"],
                work / "keepalives.txt",
            )  # fmt: skip
            time.sleep(1.0)
            idle0 = time.monotonic()
            time.sleep(3.0)
            idle1 = time.monotonic()
            spy = None
            if profile is not None:
                spy = pyspy.start(pid, profile, rate, settle=1.0)
            cpu0, t0 = proc_cpu(pid), time.monotonic()
            wall0 = time.time()
            sender.birdc("enable", "static4")
            t1 = wait(lambda: probe.routes() >= n, 900)
            cpu1, wall1 = proc_cpu(pid), time.time()
            if spy is not None:
                pyspy.stop(spy)
            time.sleep(1.5)
            still_up = sender.protocols()["feed"].bgp_state == "Established"
            factory.stop(dump)
        finally:
            probe.stop.set()
            probe.join(15)
    gaps = keepalive_gaps(work / "keepalives.txt", wall0, wall1)
    out: dict[str, object] = {
        "ingest_seconds": round(t1 - t0, 2),
        "cpu_seconds": round(cpu1 - cpu0, 3),
        "api_idle_ms": stats_ms(probe.between(idle0, idle1)),
        "api_ingest_ms": stats_ms(probe.between(t0, t1)),
        # Each answer during ingest: (sent, ms after BIRD's enable; answer time ms; routes then)
        "api_ingest_timeline": [
            (round((at - t0) * 1000), round(lat * 1000, 1), routes)
            for at, lat, routes in probe.samples
            if t0 <= at <= t1
        ],
        "keepalive_max_gap_s": round(max(gaps), 3) if gaps else None,
        "keepalives_in_ingest": len(gaps) + 1 if gaps else 0,
        "session_up_after": still_up,
    }
    if profile is not None and profile.exists():
        out["profile_top_own"] = [(name, own) for name, own, _ in pyspy.top(profile)]
    return out


def keepalive_gaps(path: Path, t0: float, t1: float) -> list[float]:
    """Gaps between podbgp's segments to the sender sent during [t0, t1] (Unix time)."""
    times = []
    for line in path.read_text().splitlines():
        head = line.split(" ", 1)[0]
        try:
            at = float(head)
        except ValueError:
            continue
        if t0 - 1.5 <= at <= t1:
            times.append(at)
    return [b - a for a, b in itertools.pairwise(times)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--prefixes", type=int, default=200_000)
    parser.add_argument("--profile", type=Path, help="py-spy the speaker; collapsed stacks here")
    parser.add_argument("--rate", type=int, help="py-spy samples per second (default 200)")
    parser.add_argument("--no-bird", action="store_true", help="skip BIRD's run")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the daemons' logs here")
    args = parser.parse_args(argv)
    if args.rate is not None and (args.profile is None or args.rate <= 0):
        parser.error("--rate needs --profile and a positive number of samples per second")
    with TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        podbgp = podbgp_run(args.prefixes, work / "podbgp", args.profile, args.rate or 200)
        bird = None if args.no_bird else run_one("bird", args.prefixes, work / "bird")
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs",
        "load": round(os.getloadavg()[0], 2),
        "prefixes": args.prefixes,
        "podbgp": podbgp,
        "bird": None
        if bird is None
        else {"load_seconds": bird.load_seconds, "cpu_seconds": bird.cpu_seconds},
    }
    idle, busy = podbgp["api_idle_ms"], podbgp["api_ingest_ms"]
    assert isinstance(idle, dict) and isinstance(busy, dict)
    print(f"# {args.prefixes} routes ingested ({result['date']}, {result['machine']}, "
          f"load {result['load']})")  # fmt: skip
    print("| | idle | during ingest |\n|---|---:|---:|")
    for key in ("n", "p50", "p99", "max"):
        print(f"| API /v1/status {key}{' ms' if key != 'n' else ''} | {idle[key]} | {busy[key]} |")
    theirs = ""
    if bird:
        ratio = float(podbgp["cpu_seconds"]) / bird.cpu_seconds  # type: ignore[arg-type]
        theirs = f", BIRD CPU {bird.cpu_seconds} s ({bird.load_seconds} s): {ratio:.2f}x BIRD's"
    print(f"ingest {podbgp['ingest_seconds']} s, podbgp CPU {podbgp['cpu_seconds']} s{theirs}")
    print(f"keepalives: largest gap during ingest {podbgp['keepalive_max_gap_s']} s "
          f"(hold {HOLD} s), session still up: {podbgp['session_up_after']}")  # fmt: skip
    timeline = podbgp["api_ingest_timeline"]
    assert isinstance(timeline, list)
    print("answers during ingest (sent ms, answer ms, routes):", *timeline)
    for name, share in podbgp.get("profile_top_own", []) or []:  # type: ignore[attr-defined]
        print(f"  {share:5.1f}%  {name}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
