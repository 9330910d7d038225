"""Kernel-state helpers for felix tests: read routes with iproute2, make pods by hand, wait.

Reading goes through the ``ip`` command on purpose: assertions about what felix programmed
should not depend on felix's own netlink code. Pods made here imitate what ``podbgp-cni`` does
(veth, /32 and /128, default routes via 169.254.1.1 and fe80::1, the host-side alias felix
reads) without the plugin, for tests of felix alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from felix.dataplane import Dataplane
from tests.support.netns import NetnsFactory, run, unique_name

T = TypeVar("T")
GATEWAY = "169.254.1.1"
GATEWAY_V6 = "fe80::1"


def routes(ns: str | None, proto: int | str = 80) -> set[str]:
    """``ip route show proto P`` (IPv4 and IPv6), one normalised line per route."""
    out: set[str] = set()
    for family in ("-4", "-6"):
        text = run(ns, "ip", family, "route", "show", "proto", str(proto)).stdout
        out |= {" ".join(line.split()) for line in text.splitlines() if line.strip()}
    return out


def route_get(ns: str, dst: str) -> str:
    """``ip route get DST`` as one normalised line."""
    return " ".join(run(ns, "ip", "route", "get", dst).stdout.split())


def links(ns: str) -> dict[str, dict[str, object]]:
    """``ip -j -d link show`` by interface name."""
    data = json.loads(run(ns, "ip", "-j", "-d", "link", "show").stdout)
    return {item["ifname"]: item for item in data}


def ping(ns: str, dst: str, count: int = 1, timeout: float = 2.0) -> bool:
    proc = run(ns, "ping", "-c", str(count), "-W", str(int(timeout)), "-i", "0.2", dst,
               check=False, timeout=timeout * count + 5)  # fmt: skip
    return proc.returncode == 0


def make_pod(factory: NetnsFactory, node_ns: str, *ips: str) -> tuple[str, str]:
    """A pod namespace wired into ``node_ns`` like podbgp-cni would; returns (pod ns, host veth).

    Each address gets a host prefix in the pod (/32, or /128 for IPv6); IPv4 leaves by default via
    169.254.1.1 (answered by proxy ARP), IPv6 by default via the link-local ``fe80::1`` (a
    permanent neighbour entry at the host veth's MAC). The host veth's alias lists every address.
    """
    pod = factory.namespace("p")
    host = unique_name("h")
    for ns in (pod, node_ns):  # addresses usable at once: no duplicate address detection
        run(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
    run(None, "ip", "link", "add", host, "netns", node_ns, "type", "veth", "peer", "name", "eth0",
        "netns", pod)  # fmt: skip
    for ip in ips:
        length = 128 if ":" in ip else 32
        run(pod, "ip", "addr", "add", f"{ip}/{length}", "dev", "eth0", *(["nodad"] * (length > 32)))
    run(pod, "ip", "link", "set", "eth0", "up")
    run(node_ns, "ip", "link", "set", host, "alias", f"podbgp:{','.join(ips)} test", "up")
    mac = str(links(node_ns)[host]["address"])
    families = {":" in ip for ip in ips}
    if False in families:
        run(pod, "ip", "route", "add", f"{GATEWAY}/32", "dev", "eth0", "scope", "link")
        run(pod, "ip", "route", "add", "default", "via", GATEWAY, "dev", "eth0")
        run(pod, "ip", "neigh", "replace", GATEWAY, "lladdr", mac, "dev", "eth0", "nud",
            "permanent")  # fmt: skip
        run(node_ns, "sysctl", "-qw", f"net.ipv4.conf.{host}.proxy_arp=1")
    if True in families:
        run(pod, "ip", "-6", "neigh", "replace", GATEWAY_V6, "lladdr", mac, "dev", "eth0", "nud",
            "permanent")  # fmt: skip
        run(pod, "ip", "-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0")
    return pod, host


async def eventually(
    predicate: Callable[[], T | Awaitable[T]], timeout: float = 10.0, interval: float = 0.1
) -> T:
    """Async twin of ``wait_until``: poll without blocking the event loop; bounded in time."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value  # type: ignore[return-value]
        except Exception as exc:  # not checkable yet
            last = exc
        if time.monotonic() >= deadline:
            what = getattr(predicate, "__name__", repr(predicate))
            detail = f"; last error: {last!r}" if last else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def captured(
    ns: str, bpf: str, count: int = 2, iface: str = "up0"
) -> AsyncIterator[list[str]]:
    """tcpdump on ``iface`` of ``ns`` while the block runs; afterwards the list holds its output
    (up to ``count`` packets, bounded by a 10 s wait). tcpdump is always stopped."""
    argv = ["tcpdump", "-l", "-n", "-c", str(count), "-i", iface, bpf]
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    out: list[str] = []
    try:
        await asyncio.sleep(0.5)  # let tcpdump attach
        yield out
        text, _ = await asyncio.to_thread(proc.communicate, timeout=10)
        out.append(text)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


@contextlib.asynccontextmanager
async def running_dataplane(dp: Dataplane) -> AsyncIterator[Dataplane]:
    """Run ``dp`` for the block, from its first completed pass; stopped afterwards (what it
    programmed stays in the kernel, as on a real stop)."""
    task = asyncio.create_task(dp.run())
    try:
        await dp.wait_synced()
        yield dp
    finally:
        await dp.stop()
        await asyncio.wait_for(task, 10)
