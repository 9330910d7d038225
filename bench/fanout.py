"""Benchmark: reflector fan-out — one route reflector, C clients, each announcing its own block.

Run as root from the repository: ``python3 -m bench.fanout --clients 200,500,1000``. For each C
and each reflector (podbgp rr, BIRD 2, GoBGP; the same simulated clients in the same run):

- two namespaces joined by one veth: the reflector's, and the clients' with C source addresses
  (``/32``s on that veth; the reflector reaches them through one gateway, so it needs one
  neighbour entry, not C);
- the clients (``bench.fanout_clients``: one asyncio process, one BGP session per source
  address, podbgp's codec) start first and retry connecting; then the reflector starts, pinned
  to one core (``taskset -c 1``; the clients run on core 0);
- times are when the bytes reached each client's socket (kernel receive timestamps), so the
  simulator's own processing lag does not count against the reflector;
- est: reflector start → every session Established (and from the first accepted connection);
  conv: first UPDATE a client sent → every client holds all C-1 other blocks;
  churn: one client withdraws its block, then announces it again; latency until each other
  client has it (p50 / max ms);
- the reflector's CPU seconds (``/proc/PID/stat``), peak RSS (VmHWM), BGP octets it sent (as
  the clients received them);
- correctness (in the simulator): every client got every other block exactly once (the churned
  one once more), never its own, and no session was lost.

A report, not a test: it prints a markdown table (date, machine, versions) and asserts nothing.
Namespaces carry this run's PID in their names and are deleted at the end, always; every wait
is bounded; only processes this run started are stopped, by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import yaml

from bench import pyspy
from bench.fanout_clients import client_address
from bench.receive import proc_cpu, proc_mem
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory, run, stop_process

ASN = 64512
RR = "10.0.0.1"
GATEWAY = "10.0.0.2"  # the clients' end of the veth
CLIENT_NET = "10.0.128.0/17"
CLUSTER = "1.1.1.1"
REPO = Path(__file__).resolve().parents[1]
REFLECTOR_CPU = "1"
CLIENT_CPU = "0"


@dataclass
class Reflector:
    pid: int
    stop: Callable[[], object]


@dataclass
class Row:
    reflector: str
    clients: int
    est_s: float | None = None  # reflector start → all Established
    est_after_connect_s: float | None = None  # first accepted connection → all Established
    conv_s: float | None = None  # first UPDATE → every client converged
    withdraw_ms: tuple[float, float] | None = None  # p50, max
    announce_ms: tuple[float, float] | None = None
    cpu_s: float | None = None
    rss_mib: float | None = None
    bytes_sent: int | None = None
    correct: str = "-"
    notes: list[str] = field(default_factory=list)


class _Pinned:
    """A NetnsFactory whose daemons start under ``taskset -c CPU`` (taskset execs, so the PID
    is the daemon's)."""

    def __init__(self, factory: NetnsFactory, cpu: str) -> None:
        self.factory = factory
        self.cpu = cpu

    def popen(self, ns: str | None, argv: list[str], log: Path | str) -> subprocess.Popen[bytes]:
        return self.factory.popen(ns, ["taskset", "-c", self.cpu, *argv], log)

    def run(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.factory.run(*args, **kwargs)


def start_reflector(
    kind: str, factory: NetnsFactory, ns: str, work: Path, clients: list[str],
    podbgp_tree: Path | None = None,
) -> Reflector:  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    pinned = _Pinned(factory, REFLECTOR_CPU)
    if kind == "podbgp":
        config = {
            "asNumber": ASN, "routerId": RR, "listen": {"address": RR, "port": 179},
            "api": {"listen": None}, "logLevel": "warning",
            "gracefulRestart": {"enabled": False}, "routeReflector": {"clusterId": CLUSTER},
            "peers": [{"address": c, "asNumber": ASN, "routeReflectorClient": True,
                       "passive": True} for c in clients],
        }  # fmt: skip
        path = work / "rr.yaml"
        path.write_text(yaml.safe_dump(config))
        argv = [sys.executable, "-m", "podbgp", "rr", "-c", str(path)]
        if podbgp_tree is not None:
            # Another source tree (a before/after comparison): -P keeps the current directory
            # off sys.path, so PYTHONPATH decides which podbgp runs.
            argv = ["env", f"PYTHONPATH={podbgp_tree}", sys.executable, "-P", *argv[1:]]
        proc = pinned.popen(ns, argv, work / "rr.log")
        return Reflector(proc.pid, lambda: stop_process(proc))
    if kind == "bird":
        bird_cfg = BirdConfig(
            router_id=RR, asn=ASN, listen_address=RR, rr_cluster_id=CLUSTER,
            neighbors=tuple(BirdNeighbor(c, ASN, rr_client=True, passive=True)
                            for c in clients),
        )  # fmt: skip
        bird = BirdRouter(pinned, ns, bird_cfg, work)  # type: ignore[arg-type]
        bird.start(timeout=60)
        assert bird.proc is not None
        return Reflector(bird.proc.pid, bird.stop)
    gob_cfg = GoBgpConfig(
        router_id=RR, asn=ASN, listen_addresses=(RR,),
        neighbors=tuple(GoBgpNeighbor(c, ASN, passive=True, rr_client=True,
                                      rr_cluster_id=CLUSTER) for c in clients),
    )  # fmt: skip
    gob = GoBgpRouter(pinned, ns, gob_cfg, work)  # type: ignore[arg-type]
    gob.start(timeout=60)
    assert gob.proc is not None
    return Reflector(gob.proc.pid, gob.stop)


class Clients:
    """The simulator process; events are JSON lines on its stdout."""

    def __init__(
        self, factory: NetnsFactory, ns: str, count: int, log: Path, connect_timeout: float
    ) -> None:
        # Clients keep retrying their connects as long as the driver waits for Established.
        argv = ["ip", "netns", "exec", ns, "taskset", "-c", CLIENT_CPU, sys.executable, "-m",
                "bench.fanout_clients", "--reflector", RR, "--clients", str(count),
                "--connect-timeout", str(connect_timeout + 30)]  # fmt: skip
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=str(REPO)), start_new_session=True,
        )  # fmt: skip
        factory.processes.append(self.proc)  # stopped on teardown at the latest
        self._buffer = b""

    def send(self, **command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next event named ``event`` (others are skipped); TimeoutError after ``timeout``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                data: dict[str, Any] = json.loads(line)
                if data.get("event") == event:
                    return data
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"clients: no {event!r} within {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"clients exited (status {self.proc.wait(5)})")
                self._buffer += chunk

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)
        self._log.close()


def listen_overflows(ns: str) -> int:
    """TcpExt ListenOverflows in ``ns``: connections dropped because an accept queue was full."""
    lines = run(ns, "cat", "/proc/net/netstat").stdout.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup(factory: NetnsFactory, count: int) -> tuple[str, str]:
    ns_rr = factory.namespace("rr")
    ns_cl = factory.namespace("cl")
    link = factory.veth(ns_rr, ns_cl, [f"{RR}/16"], [f"{GATEWAY}/16"])
    batch = "".join(f"addr add {client_address(i)}/32 dev {link.ifname_b}\n" for i in range(count))
    run(ns_cl, "ip", "-batch", "-", input=batch, timeout=60)
    # One gateway for all clients: the reflector's kernel keeps one neighbour entry.
    factory.run(ns_rr, "ip", "route", "add", CLIENT_NET, "via", GATEWAY)
    for ns in (ns_rr, ns_cl):
        factory.run(ns, "sysctl", "-qw", "net.ipv4.tcp_max_syn_backlog=8192")
        factory.run(ns, "sysctl", "-qw", "net.core.somaxconn=8192")
    return ns_rr, ns_cl


def measure(
    kind: str, count: int, factory: NetnsFactory, ns_rr: str, ns_cl: str, work: Path,
    timeout: float, profile: Path | None, churns: int, podbgp_tree: Path | None = None,
) -> Row:  # fmt: skip
    row = Row(kind, count)
    clients = Clients(factory, ns_cl, count, work / f"clients-{kind}.log", timeout)
    reflector: Reflector | None = None
    spy: subprocess.Popen[bytes] | None = None
    try:
        clients.expect("ready", 30)
        time.sleep(0.5)  # clients are retrying their connects
        overflows0 = listen_overflows(ns_rr)
        t0 = time.time()  # the clients report kernel receive times on this clock
        addresses = [client_address(i) for i in range(count)]
        reflector = start_reflector(kind, factory, ns_rr, work / kind, addresses, podbgp_tree)
        if profile is not None and kind == "podbgp":
            spy = pyspy.start(reflector.pid, profile.with_suffix(f".{count}.start.raw"), 250)
        est = clients.expect("established", timeout)
        row.est_s = round(est["t"] - t0, 2)
        if est.get("first_connect"):
            row.est_after_connect_s = round(est["t"] - est["first_connect"], 2)
        conv = clients.expect("converged", timeout)
        row.conv_s = round(conv["t"] - conv["first_update"], 2)
        row.bytes_sent = int(conv["bytes"])
        if spy is not None and profile is not None:
            pyspy.stop(spy)
            spy = pyspy.start(reflector.pid, profile.with_suffix(f".{count}.churn.raw"), 250)
        time.sleep(0.5)
        clients.send(cmd="churn", index=count // 2, timeout=10, repeat=churns)
        churn = clients.expect("churn", 30 * churns)
        for step in ("withdraw", "announce"):
            lat = churn[step]
            value = (round(percentile(lat, 0.5), 1), round(max(lat, default=float("nan")), 1))
            setattr(row, f"{step}_ms", value)
            if not churn[f"{step}_complete"]:
                row.notes.append(f"churn {step}: {len(lat)} arrivals, want {churns * (count - 1)}")
        clients.send(cmd="report")
        report = clients.expect("report", 30)
        overflows = listen_overflows(ns_rr) - overflows0
        row.notes.append(f"clients' process CPU {report.get('cpu_s')} s, "
                         f"{report.get('reconnects')} reconnects before Established; "
                         f"listen queue overflows {overflows}")  # fmt: skip
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.get("kinds", {}).items()))
        row.correct = "yes" if report["ok"] else f"NO ({kinds or report['problem_count']})"
        if not report["ok"]:
            row.notes += report["problems"][:5]
        row.cpu_s = round(proc_cpu(reflector.pid), 2)
        row.rss_mib = round(proc_mem(reflector.pid)[1] / 2**20, 1)
    except (TimeoutError, RuntimeError) as exc:
        row.notes.append(str(exc))
        if reflector is not None:
            row.cpu_s = round(proc_cpu(reflector.pid), 2)
            row.rss_mib = round(proc_mem(reflector.pid)[1] / 2**20, 1)
    finally:
        if spy is not None:
            pyspy.stop(spy)
        clients.stop()
        if reflector is not None:
            reflector.stop()
    return row


def versions(podbgp_tree: Path | None = None) -> str:
    bird = subprocess.run(["bird", "--version"], capture_output=True, text=True).stderr.strip()
    gobgp = subprocess.run(["gobgpd", "--version"], capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    podbgp = f"podbgp from {podbgp_tree}" if podbgp_tree else f"podbgp {head}"
    return f"{podbgp} (Python {platform.python_version()}); {bird}; {gobgp}"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return " / ".join(str(v) for v in value)
    return str(value)


def print_table(rows: list[Row], podbgp_tree: Path | None = None) -> None:
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"\nMeasured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}; "
        f"{versions(podbgp_tree)}. "
        f"Reflector pinned to core {REFLECTOR_CPU}, clients (one process) to core {CLIENT_CPU}; "
        f"load average at the end {' '.join(load)}.\n"
    )
    print("| reflector | C | est s | est s after 1st connect | conv s | withdraw p50 / max ms "
          "| re-announce p50 / max ms | CPU s | peak RSS MiB | MB sent | correct |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        mb = None if r.bytes_sent is None else round(r.bytes_sent / 1e6, 1)
        cells = [r.reflector, r.clients, r.est_s, r.est_after_connect_s, r.conv_s,
                 r.withdraw_ms, r.announce_ms, r.cpu_s, r.rss_mib, mb, r.correct]  # fmt: skip
        print("| " + " | ".join(fmt(c) for c in cells) + " |")
    for r in rows:
        for note in r.notes:
            print(f"- {r.reflector} C={r.clients}: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="200,500,1000", help="comma-separated C values")
    parser.add_argument("--reflectors", default="podbgp,bird,gobgp")
    parser.add_argument("--timeout", type=float, default=300, help="per phase, seconds")
    parser.add_argument(
        "--churns",
        type=int,
        default=5,
        help="withdraw/re-announce rounds of one block (latencies pooled)",
    )
    parser.add_argument(
        "--podbgp-tree",
        type=Path,
        help="run podbgp rr from this source tree (e.g. a `git archive` of an "
        "older commit) instead of this one",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per reflector and C")
    parser.add_argument("--workdir", type=Path, help="keep configs and logs here")
    parser.add_argument("--profile", type=Path, help="py-spy raw profile of podbgp (last C)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    rows: list[Row] = []
    with TemporaryDirectory(prefix="podbgp-fanout-") as scratch:
        tmp = str(args.workdir or scratch)
        Path(tmp).mkdir(parents=True, exist_ok=True)
        for count in (int(c) for c in args.clients.split(",")):
            with NetnsFactory(log_dir=tmp) as factory:
                ns_rr, ns_cl = setup(factory, count)
                runs = [k for k in args.reflectors.split(",") for _ in range(args.repeat)]
                for kind in runs:
                    print(f"... {kind}: {count} clients", file=sys.stderr, flush=True)
                    work = Path(tmp) / f"{count}"
                    work.mkdir(exist_ok=True)
                    row = measure(kind, count, factory, ns_rr, ns_cl, work, args.timeout,
                                  args.profile, args.churns, args.podbgp_tree)  # fmt: skip
                    rows.append(row)
                    print(f"... {row}", file=sys.stderr, flush=True)
                    time.sleep(1)
    print_table(rows, args.podbgp_tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
