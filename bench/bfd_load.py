"""Benchmark: does BFD at 100 ms x 3 stay Up while podbgp ingests a 200k-route table?

Run as root: ``python -m bench.bfd_load [--prefixes 200000] [--rounds 3]
[--drivers thread,loop]``. A BIRD 2 sender (its own namespace, N static /24s, iBGP with
``bfd on`` and ``protocol bfd`` at 100 ms x 3) feeds a podbgp receiver whose peer has
``bfd: {minRx: 100, minTx: 100, multiplier: 3}``. Each round enables the sender's routes (the
receiver ingests all N), then disables them (it withdraws all N). Reported per BFD driver:

- ``thread`` — what ``podbgp bgpd`` runs: :class:`bgpd.bfd.thread.ThreadedBfdEndpoint`, BFD timers
  on a thread of their own;
- ``loop`` — for comparison: :class:`bgpd.bfd.udp.BfdEndpoint` on the speaker's own event loop.

Columns: load and withdraw seconds (median over the rounds), BFD flaps (our BFD sessions that
left Up) and BGP sessions taken down, counted from the receiver's log, plus the largest delay
between two consecutive event-loop ticks of the receiver seen by a 10 ms probe (how long the
speaker blocked its loop). A report, not a test: nothing asserts.

The receiver is started by this module itself (``--serve``) so the driver can be chosen; it is
the same Speaker, peers and API as ``podbgp bgpd``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import yaml

from bench.receive import RawBirdConfig, bird_count, podbgp_count, wait
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.netns import NetnsFactory

RECEIVER, SENDER, CLIENT = "192.0.2.1", "192.0.2.2", "192.0.2.4"  # podbgp; BIRDs
ASN = 64512
INTERVAL_MS, MULTIPLIER = 100, 3
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    scenario: str
    driver: str
    prefixes: int
    rounds: int
    load_seconds: float
    withdraw_seconds: float
    bfd_flaps: int
    bgp_resets: int
    max_loop_lag_ms: float


# --- the receiver (runs inside the namespace) ----------------------------------------------


async def serve(config_path: str, driver: str) -> None:
    from prometheus_client.registry import CollectorRegistry

    from bgpd.bfd.udp import BfdEndpoint
    from bgpd.config import load_bgpd_config
    from bgpd.speaker import Speaker, threaded_bfd
    from podbgp.daemon import peer_spec, speaker_config, start_operations
    from podbgp.ops.views import SpeakerViews

    config = load_bgpd_config(config_path)
    factory = threaded_bfd if driver == "thread" else BfdEndpoint
    speaker = Speaker(speaker_config(config), bfd=factory)
    await speaker.start()
    for peer in config.peers:
        speaker.add_peer(peer_spec(peer))
    await speaker.listen(config.listen.address, config.listen.port)
    runner = await start_operations(SpeakerViews(speaker), config.api, CollectorRegistry())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    lag = 0.0
    last = loop.time()
    while not stop.is_set():
        await asyncio.sleep(0.01)
        now = loop.time()
        if now - last - 0.01 > lag:
            lag = now - last - 0.01
            print(f"loop-lag-ms={lag * 1000:.1f}", file=sys.stderr, flush=True)
        last = now
    await speaker.stop(graceful=False)
    if runner is not None:
        await runner.cleanup()


# --- the driver of one measurement -----------------------------------------------------------


def bird_sender(n: int) -> str:
    """bench.receive's sender (N static /24s, disabled until ``enable``) with BFD on."""
    routes = tuple(
        StaticRoute(f"{16 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}.0/24") for i in range(n)
    )
    config = BirdConfig(
        router_id=SENDER,
        asn=ASN,
        listen_address=SENDER,
        neighbors=(BirdNeighbor(RECEIVER, ASN, name="feed", bfd=True),),
        routes=routes,
        bfd=(INTERVAL_MS, INTERVAL_MS, MULTIPLIER),
    )
    return config.render().replace(
        "protocol static static4 {\n", "protocol static static4 {\n  disabled;\n"
    )


def run_one(scenario: str, driver: str, n: int, rounds: int, work: Path) -> Result:
    """``ingest``: BIRD -> podbgp. ``reflect``: BIRD -> podbgp (route reflector) -> BIRD, BFD
    on both sessions; the count is the receiving BIRD's table."""
    work.mkdir(parents=True, exist_ok=True)
    reflect = scenario == "reflect"
    with NetnsFactory(log_dir=work) as factory:
        ns_r, ns_s = factory.namespace("r"), factory.namespace("s")
        ns_c = factory.namespace("c") if reflect else None
        if ns_c is not None:
            factory.lan({ns_r: [f"{RECEIVER}/24"], ns_s: [f"{SENDER}/24"], ns_c: [f"{CLIENT}/24"]})
        else:
            factory.veth(ns_r, ns_s, addrs_a=[f"{RECEIVER}/24"], addrs_b=[f"{SENDER}/24"])
        bfd = {"minRx": INTERVAL_MS, "minTx": INTERVAL_MS, "multiplier": MULTIPLIER}
        peers = [{"address": a, "asNumber": ASN, "passive": True, "bfd": bfd,
                  "routeReflectorClient": reflect}
                 for a in ([SENDER, CLIENT] if reflect else [SENDER])]  # fmt: skip
        config: dict[str, object] = {
            "asNumber": ASN,
            "routerId": RECEIVER,
            "listen": {"address": RECEIVER},
            "api": {"listen": "127.0.0.1:9179"},
            "logLevel": "info",
            "gracefulRestart": {"enabled": False},
            "peers": peers,
        }
        if reflect:
            config["routeReflector"] = {"clusterId": "1.0.0.1"}
        config_path = work / "podbgp.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = work / "podbgp.log"
        argv = [sys.executable, "-m", "bench.bfd_load", "--serve", str(config_path),
                "--driver", driver]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=str(REPO))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns_r, *argv], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        factory.processes.append(proc)
        count = podbgp_count(ns_r)
        wait(lambda: count() == 0, 30)
        raw = RawBirdConfig(bird_sender(n))
        sender = BirdRouter(factory, ns_s, raw, work / "bird-s")  # type: ignore[arg-type]
        sender.start(timeout=120)
        wait(lambda: sender.protocols()["feed"].bgp_state == "Established", 60)
        if ns_c is not None:
            client_cfg = BirdConfig(
                router_id=CLIENT, asn=ASN, listen_address=CLIENT,
                neighbors=(BirdNeighbor(RECEIVER, ASN, name="feed", bfd=True),),
                bfd=(INTERVAL_MS, INTERVAL_MS, MULTIPLIER),
            )  # fmt: skip
            client = BirdRouter(factory, ns_c, client_cfg, work / "bird-c").start()
            wait(lambda: client.protocols()["feed"].bgp_state == "Established", 60)
            count = bird_count(client)
        sessions = 2 if reflect else 1

        def bfd_up() -> bool:
            ups = re.findall(r"bfd session (?:INIT|DOWN) -> UP", log_path.read_text("utf-8"))
            return len(ups) >= sessions

        wait(bfd_up, 30)
        time.sleep(1.5)  # the poll sequence to 100 ms is done
        loads, withdraws = [], []
        for _ in range(rounds):
            t0 = time.monotonic()
            sender.birdc("enable", "static4")
            loads.append(wait(lambda: count() >= n, 600) - t0)
            time.sleep(1.0)
            t0 = time.monotonic()
            sender.birdc("disable", "static4")
            withdraws.append(wait(lambda: count() == 0, 600) - t0)
            time.sleep(1.0)
        text = log_path.read_text(errors="replace")  # before the stop's own session downs
        factory.stop(proc)
        lags = [float(m) for m in re.findall(r"loop-lag-ms=([\d.]+)", text)]
        return Result(
            scenario=scenario,
            driver=driver,
            prefixes=n,
            rounds=rounds,
            load_seconds=round(statistics.median(loads), 3),
            withdraw_seconds=round(statistics.median(withdraws), 3),
            bfd_flaps=len(re.findall(r"bfd session UP -> (?:DOWN|ADMIN_DOWN)", text)),
            bgp_resets=len(re.findall(r"event=down reason=", text)),
            max_loop_lag_ms=max(lags, default=0.0),
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefixes", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--drivers", default="thread,loop")
    parser.add_argument("--scenarios", default="ingest,reflect")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--driver", default="thread", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        from podbgp.cli import setup_logging

        setup_logging("info")
        asyncio.run(serve(args.serve, args.driver))
        return 0
    results = []
    with TemporaryDirectory(prefix="podbgp-bench-bfd-") as tmp:
        for scenario in args.scenarios.split(","):
            for driver in args.drivers.split(","):
                print(f"... {scenario}, BFD driver {driver}: {args.rounds} x {args.prefixes} "
                      "prefixes in and out", file=sys.stderr, flush=True)  # fmt: skip
                work = Path(tmp) / f"{scenario}-{driver}"
                results.append(run_one(scenario, driver, args.prefixes, args.rounds, work))
    print(
        f"\nMeasured {datetime.now(UTC):%Y-%m-%d} on {socket.gethostname()} "
        f"({platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}); "
        f"BFD {INTERVAL_MS} ms x {MULTIPLIER} both sides\n"
    )
    print("| scenario | BFD driver | prefixes | rounds | load s | withdraw s | BFD flaps "
          "| BGP resets | max loop lag ms |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.scenario} | {r.driver} | {r.prefixes} | {r.rounds} | {r.load_seconds} "
            f"| {r.withdraw_seconds} | {r.bfd_flaps} | {r.bgp_resets} | {r.max_loop_lag_ms} |"
        )
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
