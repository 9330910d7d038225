"""Benchmark: install then remove N kernel routes through felix's netlink adapter vs ``ip -batch``.

Run as root: ``python -m bench.netlink [--sizes 10000,100000] [--out FILE]``. For each size, in
one run and in fresh network namespaces (one per contender, so neither sees the other's table):

* felix, bulk: ``felix.kernel.netlink.Netlink.apply_routes`` as the reconciler calls it (a batch
  this size goes through felix.kernel.batch: many messages per send), then a full
  ``dump_routes`` (a raw rtnetlink dump: what a resync reads), then ``apply_routes`` deleting
  them all;
* felix, per request: ``Netlink.replace_route`` / ``delete_route`` once per route (pyroute2
  ``AsyncIPRoute``: the path small diffs take);
* iproute2: ``ip -batch`` with the same routes (``route replace ... proto 80``), then
  ``route del``.

Routes are ``10.x.y.z/32 via 192.0.2.2 dev up0`` (unicast via an on-link gateway: the common
case, a remote block via its node). Each phase is checked against the kernel (route count by
``ip route show proto 80``) before its time is taken as valid. This is a report, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from felix.kernel.netlink import Netlink
from felix.plan import Route
from tests.support.netns import NetnsFactory, run

PROTO = 80
GATEWAY = "192.0.2.2"


@dataclass
class Result:
    tool: str
    routes: int
    install_seconds: float
    dump_seconds: float | None
    remove_seconds: float

    @property
    def install_rate(self) -> float:
        return self.routes / self.install_seconds

    @property
    def remove_rate(self) -> float:
        return self.routes / self.remove_seconds


def prefixes(count: int) -> list[str]:
    base = int(ipaddress.ip_address("10.0.0.0"))
    return [f"{ipaddress.ip_address(base + i)}/32" for i in range(count)]


def count_routes(ns: str) -> int:
    out = run(ns, "ip", "route", "show", "proto", str(PROTO), timeout=120).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def node(factory: NetnsFactory) -> str:
    ns = factory.namespace("b")
    peer = factory.namespace("g")
    factory.veth(ns, peer, ["192.0.2.1/24"], [f"{GATEWAY}/24"], "up0", "up0")
    return ns


async def bench_felix(ns: str, dsts: list[str]) -> Result:
    routes = [Route(dst, gateway=GATEWAY, dev="up0") for dst in dsts]
    async with Netlink(PROTO, ns) as nl:
        start = time.perf_counter()
        errors = await nl.apply_routes(routes, [])
        install = time.perf_counter() - start
        assert not errors, errors[:3]
        assert count_routes(ns) == len(routes)
        start = time.perf_counter()
        dumped = await nl.dump_routes()
        dump = time.perf_counter() - start
        assert len(dumped.own) == len(routes) and set(dumped.own.values()) == set(routes)
        start = time.perf_counter()
        errors = await nl.apply_routes([], routes)
        remove = time.perf_counter() - start
        assert not errors, errors[:3]
    assert count_routes(ns) == 0
    return Result("felix apply_routes (bulk)", len(routes), install, dump, remove)


async def bench_felix_per_request(ns: str, dsts: list[str]) -> Result:
    routes = [Route(dst, gateway=GATEWAY, dev="up0") for dst in dsts]
    async with Netlink(PROTO, ns) as nl:
        await nl.links()
        start = time.perf_counter()
        for route in routes:
            await nl.replace_route(route)
        install = time.perf_counter() - start
        assert count_routes(ns) == len(routes)
        start = time.perf_counter()
        for route in routes:
            await nl.delete_route(route)
        remove = time.perf_counter() - start
    assert count_routes(ns) == 0
    return Result("felix per request (pyroute2)", len(routes), install, None, remove)


def ip_batch(ns: str, lines: list[str]) -> float:
    data = "".join(lines)
    start = time.perf_counter()
    subprocess.run(
        ["ip", "netns", "exec", ns, "ip", "-batch", "-"], input=data, text=True, check=True,
        capture_output=True, timeout=600,
    )  # fmt: skip
    return time.perf_counter() - start


def bench_ip(ns: str, dsts: list[str]) -> Result:
    install = ip_batch(
        ns, [f"route replace {d} via {GATEWAY} dev up0 proto {PROTO}\n" for d in dsts]
    )
    assert count_routes(ns) == len(dsts)
    remove = ip_batch(ns, [f"route del {d} proto {PROTO}\n" for d in dsts])
    assert count_routes(ns) == 0
    return Result("ip -batch (iproute2)", len(dsts), install, None, remove)


def table(results: list[Result]) -> str:
    head = (
        f"{'tool':32} {'routes':>8} {'install s':>10} {'routes/s':>10} {'remove s':>9} "
        f"{'routes/s':>10} {'dump s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        dump = f"{r.dump_seconds:7.2f}" if r.dump_seconds is not None else f"{'-':>7}"
        lines.append(
            f"{r.tool:32} {r.routes:8d} {r.install_seconds:10.2f} {r.install_rate:10.0f} "
            f"{r.remove_seconds:9.2f} {r.remove_rate:10.0f} {dump}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--out", default=None, help="also write the results as JSON")
    args = parser.parse_args()
    results: list[Result] = []
    for size in (int(s) for s in args.sizes.split(",")):
        dsts = prefixes(size)
        with NetnsFactory() as factory:
            results.append(asyncio.run(bench_felix(node(factory), dsts)))
            results.append(asyncio.run(bench_felix_per_request(node(factory), dsts)))
            results.append(bench_ip(node(factory), dsts))
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
