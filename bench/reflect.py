"""Benchmark: podbgp, BIRD, GoBGP and FRR as the route reflector, side by side in one run.

Run as root: ``python -m bench.reflect [--clients 50] [--prefixes 100000]``. FRR (Debian's
``frr`` package, bgpd only, without zebra) joins the comparison when it is installed.

(a) Cold start: N BIRD clients (passive, each originating one /24 and five /32s) on one LAN;
    the reflector starts and connects to all of them. Time from the reflector's start until
    every client holds every other client's prefixes.
(b) Bulk reflect: one BIRD sender → reflector → one BIRD receiver, P /24s. Time from the
    sender's enabling its routes until the receiver holds all P (routes/s), then the time until
    the receiver has none after the sender withdraws them.
Reported per reflector: those times, the reflector's CPU seconds and peak RSS. A report, not a
test: nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory

from bench.receive import RawBirdConfig, proc_cpu, proc_mem
from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory
from tests.support.podbgp import PodbgpSpeaker

ASN = 64512
RR = "10.0.0.1"
CLUSTER = "1.1.1.1"


@dataclass
class Reflector:
    pid: int
    stop: Callable[[], object]


def start_reflector(
    kind: str, factory: NetnsFactory, ns: str, work: Path, clients: list[str]
) -> Reflector:
    if kind == "podbgp":
        config = {
            "asNumber": ASN, "routerId": RR, "listen": {"address": RR},
            "api": {"listen": "127.0.0.1:9179"}, "logLevel": "warning",
            "gracefulRestart": {"enabled": False}, "routeReflector": {"clusterId": CLUSTER},
            "peers": [{"address": c, "asNumber": ASN, "routeReflectorClient": True}
                      for c in clients],
        }  # fmt: skip
        sp = PodbgpSpeaker(work, "rr", config, netns=ns).start()
        assert sp.proc is not None
        factory.processes.append(sp.proc)
        return Reflector(sp.proc.pid, sp.stop)
    if kind == "bird":
        bird_cfg = BirdConfig(
            router_id=RR, asn=ASN, listen_address=RR, rr_cluster_id=CLUSTER,
            neighbors=tuple(BirdNeighbor(c, ASN, rr_client=True) for c in clients),
        )  # fmt: skip
        bird = BirdRouter(factory, ns, bird_cfg, work / "rr").start()
        assert bird.proc is not None
        return Reflector(bird.proc.pid, bird.stop)
    if kind == "frr":
        return start_frr(factory, ns, work, clients)
    gob_cfg = GoBgpConfig(
        router_id=RR, asn=ASN, listen_addresses=(RR,),
        neighbors=tuple(GoBgpNeighbor(c, ASN, rr_client=True, rr_cluster_id=CLUSTER)
                        for c in clients),
    )  # fmt: skip
    gob = GoBgpRouter(factory, ns, gob_cfg, work / "rr").start()
    assert gob.proc is not None
    return Reflector(gob.proc.pid, gob.stop)


def start_frr(factory: NetnsFactory, ns: str, work: Path, clients: list[str]) -> Reflector:
    """FRR's bgpd alone (no zebra: next hops count as reachable, nothing goes to a kernel)."""
    work.mkdir(parents=True, exist_ok=True)
    lines = [
        "frr defaults traditional",
        "hostname rr",
        "log stdout warnings",
        "router bgp 64512",
        f" bgp router-id {RR}",
        f" bgp cluster-id {CLUSTER}",
        " no bgp ebgp-requires-policy",
    ]
    lines += [f" neighbor {c} remote-as {ASN}" for c in clients]
    lines += [" address-family ipv4 unicast"]
    lines += [f"  neighbor {c} route-reflector-client" for c in clients]
    lines += [" exit-address-family"]  # fmt: skip
    conf = work / "frr-bgpd.conf"
    conf.write_text("\n".join(lines) + "\n")
    vty = work / "frr-vty"
    vty.mkdir(exist_ok=True)
    argv = ["/usr/lib/frr/bgpd", "-f", str(conf), "-i", str(work / "frr.pid"), "--vty_socket",
            str(vty), "-Z", "-S", "-n", "-N", ns]  # fmt: skip
    proc = factory.popen(ns, argv, work / "frr.log")
    return Reflector(proc.pid, lambda: factory.stop(proc))


def bird_count(router: BirdRouter, protocol: str) -> int:
    out = router.birdc("show", "route", "count", "protocol", protocol, check=False)
    found = re.search(r"(\d+) of \d+ routes", out)
    return int(found[1]) if found else -1


def wait(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(interval)
    return time.monotonic()


def cold_start(kind: str, n: int, work: Path) -> dict[str, float]:
    clients = [f"10.0.{1 + i // 200}.{1 + i % 200}" for i in range(n)]
    with NetnsFactory(log_dir=work) as factory:
        ns_rr = factory.namespace("rr")
        ns = {c: factory.namespace("c") for c in clients}
        factory.lan({ns_rr: [f"{RR}/16"], **{ns[c]: [f"{c}/16"] for c in clients}})
        birds = []
        for i, c in enumerate(clients):
            hosts = [StaticRoute(f"10.{200 + i // 256}.{i % 256}.{j}/32") for j in range(1, 6)]
            routes = (StaticRoute(f"10.{100 + i // 256}.{i % 256}.0/24"), *hosts)
            config = BirdConfig(
                router_id=c, asn=ASN, listen_address=c, routes=routes,
                neighbors=(BirdNeighbor(RR, ASN, name="reflector", passive=True),),
            )  # fmt: skip
            birds.append(BirdRouter(factory, ns[c], config, work / c).start())
        want = 6 * (n - 1)
        t0 = time.monotonic()
        rr = start_reflector(kind, factory, ns_rr, work, clients)
        t1 = wait(lambda: all(bird_count(b, "reflector") >= want for b in birds), 300, 0.2)
        cpu = proc_cpu(rr.pid)
        _, peak = proc_mem(rr.pid)
        return {"cold_start_s": round(t1 - t0, 2), "cold_cpu_s": round(cpu, 2),
                "cold_peak_rss_mib": round(peak / 2**20, 1)}  # fmt: skip


def bulk(kind: str, p: int, work: Path) -> dict[str, float]:
    sender, receiver = "10.0.0.2", "10.0.0.3"
    with NetnsFactory(log_dir=work) as factory:
        ns_rr, ns_s, ns_r = (factory.namespace(t) for t in ("rr", "s", "r"))
        factory.lan({ns_rr: [f"{RR}/16"], ns_s: [f"{sender}/16"], ns_r: [f"{receiver}/16"]})
        routes = tuple(
            StaticRoute(f"{16 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}.0/24") for i in range(p)
        )
        text = (
            BirdConfig(
                router_id=sender,
                asn=ASN,
                listen_address=sender,
                routes=routes,
                neighbors=(BirdNeighbor(RR, ASN, name="reflector", passive=True),),
            )
            .render()
            .replace("protocol static static4 {\n", "protocol static static4 {\n  disabled;\n")
        )
        send = BirdRouter(factory, ns_s, RawBirdConfig(text), work / "s")  # type: ignore[arg-type]
        send.start(timeout=120)
        recv_cfg = BirdConfig(
            router_id=receiver, asn=ASN, listen_address=receiver,
            neighbors=(BirdNeighbor(RR, ASN, name="reflector", passive=True),),
        )  # fmt: skip
        recv = BirdRouter(factory, ns_r, recv_cfg, work / "r").start()
        rr = start_reflector(kind, factory, ns_rr, work, [sender, receiver])
        wait(lambda: recv.protocols()["reflector"].bgp_state == "Established"
             and send.protocols()["reflector"].bgp_state == "Established", 60)  # fmt: skip
        cpu0 = proc_cpu(rr.pid)
        t0 = time.monotonic()
        send.birdc("enable", "static4")
        t1 = wait(lambda: bird_count(recv, "reflector") >= p, 600)
        t2 = time.monotonic()
        send.birdc("disable", "static4")
        t3 = wait(lambda: bird_count(recv, "reflector") == 0, 600)
        cpu = proc_cpu(rr.pid) - cpu0
        _, peak = proc_mem(rr.pid)
        return {"bulk_routes_per_s": round(p / (t1 - t0)), "bulk_load_s": round(t1 - t0, 3),
                "bulk_withdraw_s": round(t3 - t2, 3), "bulk_cpu_s": round(cpu, 2),
                "bulk_peak_rss_mib": round(peak / 2**20, 1)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--prefixes", type=int, default=100_000)
    parser.add_argument("--reflectors", default="podbgp,bird,gobgp,frr")
    args = parser.parse_args(argv)
    rows = {}
    with TemporaryDirectory(prefix="podbgp-bench-") as tmp:
        kinds = [k for k in args.reflectors.split(",")
                 if k != "frr" or Path("/usr/lib/frr/bgpd").exists()]  # fmt: skip
        for kind in kinds:
            print(f"... {kind}: cold start, {args.clients} clients", file=sys.stderr, flush=True)
            row = cold_start(kind, args.clients, Path(tmp) / f"{kind}-cold")
            print(f"... {kind}: bulk, {args.prefixes} prefixes", file=sys.stderr, flush=True)
            row |= bulk(kind, args.prefixes, Path(tmp) / f"{kind}-bulk")
            rows[kind] = row
    print(
        f"\nMeasured {datetime.now(UTC):%Y-%m-%d} on {socket.gethostname()} "
        f"({platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}); "
        f"{args.clients} clients x (1 /24 + 5 /32); bulk {args.prefixes} /24s\n"
    )
    cols = ["cold_start_s", "cold_cpu_s", "cold_peak_rss_mib", "bulk_routes_per_s",
            "bulk_load_s", "bulk_withdraw_s", "bulk_cpu_s", "bulk_peak_rss_mib"]  # fmt: skip
    print("| reflector | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for kind, row in rows.items():
        print(f"| {kind} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
