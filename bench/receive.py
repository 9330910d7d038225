"""Benchmark: a BIRD peer announces N prefixes; how fast does the receiver hold them all?

Run as root: ``python -m bench.receive [--prefixes 100000] [--out FILE]``. In one run, the same
sender (BIRD 2 in its own namespace, N static /24s, iBGP) feeds three receivers in turn — podbgp,
BIRD and GoBGP — each in a fresh namespace pair. Reported per receiver: seconds from the
sender's ``enable`` of its routes (session already up) until the receiver's RIB holds all N
prefixes, then seconds until it has removed them all after the sender withdraws them;
receiver CPU seconds over the load; peak RSS, and RSS growth per stored path. This is a
report, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory, netns_socket
from tests.support.podbgp import PodbgpSpeaker

RECEIVER, SENDER = "192.0.2.1", "192.0.2.2"
ASN = 64512
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    receiver: str
    prefixes: int
    load_seconds: float
    withdraw_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    bytes_per_path: float


def proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` so far, to the nanosecond: the scheduler's run time of each of its
    threads (``/proc/PID/task/*/schedstat``). ``utime + stime`` counts 10 ms ticks, too coarse for
    an ingest of a few tens of milliseconds; it is the fallback where schedstat is missing."""
    total, found = 0, False
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            found = True
        except (OSError, ValueError, IndexError):
            continue
    if found:
        return total / 1e9
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_mem(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", text)[1]) * 1024  # type: ignore[index]
    hwm = int(re.search(r"VmHWM:\s+(\d+)", text)[1]) * 1024  # type: ignore[index]
    return rss, hwm


def sender_config(n: int, *, graceful_restart: bool = False) -> str:
    """BIRD announcing ``n`` /24s (16.0.0.0/24 upwards) to RECEIVER, its static protocol off.

    ``graceful_restart``: BIRD then sends End-of-RIB (a node's felix converges at once)."""
    routes = tuple(
        StaticRoute(f"{16 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}.0/24") for i in range(n)
    )
    config = BirdConfig(
        router_id=SENDER,
        asn=ASN,
        listen_address=SENDER,
        neighbors=(BirdNeighbor(RECEIVER, ASN, name="feed", graceful_restart=graceful_restart),),
        routes=routes,
    )
    # The routes start disabled: once the session is up, `birdc enable static4` is time zero
    # and `birdc disable static4` sends the withdrawals.
    return config.render().replace(
        "protocol static static4 {\n", "protocol static static4 {\n  disabled;\n"
    )


@dataclass(frozen=True)
class RawBirdConfig:
    """A BIRD configuration given as text (BirdRouter only needs ``render``)."""

    text: str
    neighbors: tuple[BirdNeighbor, ...] = ()

    def render(self) -> str:
        return self.text


def wait(predicate: Callable[[], bool], timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(0.02)
    return time.monotonic()


def start_podbgp(factory: NetnsFactory, ns: str, work: Path) -> int:
    """``podbgp bgpd`` as the receiver in ``ns`` (API on 127.0.0.1:9179); its PID."""
    config = {
        "asNumber": ASN,
        "routerId": RECEIVER,
        "listen": {"address": RECEIVER},
        "api": {"listen": "127.0.0.1:9179"},
        "logLevel": "warning",
        "gracefulRestart": {"enabled": False},
        "peers": [{"address": SENDER, "asNumber": ASN, "passive": True}],
    }
    speaker = PodbgpSpeaker(work, "podbgp", config, netns=ns).start()
    assert speaker.proc is not None
    factory.processes.append(speaker.proc)
    return speaker.proc.pid


def status_routes(ns: str, timeout: float = 5.0) -> int:
    """The Loc-RIB size from ``GET /v1/status`` of the receiver in ``ns``; -1 on failure."""
    try:
        sock = netns_socket(ns)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", 9179))
        sock.sendall(b"GET /v1/status HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        return int(json.loads(data.split(b"\r\n\r\n", 1)[1])["routes"])
    except (OSError, ValueError, KeyError):
        return -1


def podbgp_count(ns: str) -> Callable[[], int]:
    return lambda: status_routes(ns)


def bird_count(router: BirdRouter) -> Callable[[], int]:
    def count() -> int:
        out = router.birdc("show", "route", "count", check=False)
        found = re.search(r"(\d+) of \d+ routes", out)
        return int(found[1]) if found else -1

    return count


def gobgp_count(router: GoBgpRouter) -> Callable[[], int]:
    def count() -> int:
        out = router.gobgp("global", "rib", "summary", check=False)
        found = re.search(r"Destination:\s*(\d+)", out) or re.search(r"destinations:\s*(\d+)", out)
        return int(found[1]) if found else -1

    return count


def run_one(kind: str, n: int, work: Path) -> Result:
    work.mkdir(parents=True, exist_ok=True)
    with NetnsFactory(log_dir=work) as factory:
        ns_r, ns_s = factory.namespace("r"), factory.namespace("s")
        factory.veth(ns_r, ns_s, addrs_a=[f"{RECEIVER}/24"], addrs_b=[f"{SENDER}/24"])
        if kind == "podbgp":
            pid, count = start_podbgp(factory, ns_r, work), podbgp_count(ns_r)
        elif kind == "bird":
            bird_cfg = BirdConfig(
                router_id=RECEIVER,
                asn=ASN,
                listen_address=RECEIVER,
                neighbors=(BirdNeighbor(SENDER, ASN, passive=True),),
            )
            router = BirdRouter(factory, ns_r, bird_cfg, work / "bird-r").start()
            assert router.proc is not None
            pid, count = router.proc.pid, bird_count(router)
        else:
            gobgp_cfg = GoBgpConfig(
                router_id=RECEIVER,
                asn=ASN,
                listen_addresses=(RECEIVER,),
                neighbors=(GoBgpNeighbor(SENDER, ASN, passive=True),),
            )
            gob = GoBgpRouter(factory, ns_r, gobgp_cfg, work / "gobgp").start()
            assert gob.proc is not None
            pid, count = gob.proc.pid, gobgp_count(gob)
        wait(lambda: count() == 0, 30)
        raw = RawBirdConfig(sender_config(n))
        sender = BirdRouter(factory, ns_s, raw, work / "bird-s")  # type: ignore[arg-type]
        sender.start(timeout=120)
        wait(lambda: sender.protocols()["feed"].bgp_state == "Established", 60)
        rss0, _ = proc_mem(pid)
        cpu0 = proc_cpu(pid)
        t0 = time.monotonic()
        sender.birdc("enable", "static4")
        t1 = wait(lambda: count() >= n, 600)
        cpu1 = proc_cpu(pid)
        rss1, _ = proc_mem(pid)
        t2 = time.monotonic()
        sender.birdc("disable", "static4")
        t3 = wait(lambda: count() == 0, 600)
        _, peak = proc_mem(pid)
        return Result(
            receiver=kind,
            prefixes=n,
            load_seconds=round(t1 - t0, 3),
            withdraw_seconds=round(t3 - t2, 3),
            cpu_seconds=round(cpu1 - cpu0, 3),
            peak_rss_mib=round(peak / 2**20, 1),
            bytes_per_path=round((rss1 - rss0) / n, 1),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--receivers", default="podbgp,bird,gobgp")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    results = []
    with TemporaryDirectory(prefix="podbgp-bench-") as tmp:
        for kind in args.receivers.split(","):
            print(f"... {kind} receiving {args.prefixes} prefixes", file=sys.stderr, flush=True)
            results.append(run_one(kind, args.prefixes, Path(tmp) / kind))
    base = {r.receiver: r for r in results}
    print(
        f"\nMeasured {datetime.now(UTC):%Y-%m-%d} on {socket.gethostname()} "
        f"({platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()})\n"
    )
    print(
        "| receiver | prefixes | load s | vs BIRD | withdraw s | CPU s | peak RSS MiB "
        "| RSS bytes/path |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ratio = r.load_seconds / base["bird"].load_seconds if "bird" in base else float("nan")
        print(
            f"| {r.receiver} | {r.prefixes} | {r.load_seconds} | {ratio:.2f}x | "
            f"{r.withdraw_seconds} | {r.cpu_seconds} | {r.peak_rss_mib} | {r.bytes_per_path} |"
        )
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
