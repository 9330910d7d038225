"""Pod traffic through a node whose firewall drops forwarded packets, with real iptables (both
backends) in network namespaces: pod-to-pod ping fails while FORWARD's policy is DROP and
succeeds once felix has put its accept chain in place; the jump is repaired when deleted, the
chain removed when no pool is left, and no other rule is touched.

Topology: two pod namespaces wired into a "node" namespace like podbgp-cni does; pod-to-pod
traffic is routed (forwarded) by the node, whose ``filter`` ``FORWARD`` policy is DROP, set with
the backend under test, as the Docker engine does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from felix.dataplane import Dataplane
from felix.forward import CHAIN, JUMP
from felix.plan import Pool
from tests.support.kernel import eventually, make_pod, ping, running_dataplane
from tests.support.netns import NetnsFactory, run

pytestmark = pytest.mark.netns

RESYNC = 0.5
POOLS = [Pool("10.244.0.0/16"), Pool("fd00:10:244::/48")]


def save(ns: str, backend: str, version: int = 4) -> list[str]:
    """``iptables-save -t filter`` of one backend, without comments and counters."""
    cmd = f"{'iptables' if version == 4 else 'ip6tables'}-{backend}-save"
    out = run(ns, cmd, "-t", "filter").stdout
    return [line.split(" [")[0] for line in out.splitlines() if not line.startswith("#")]


def others(lines: list[str]) -> list[str]:
    return [line for line in lines if CHAIN not in line]


def node_dataplane(ns: str) -> Dataplane:
    return Dataplane(
        "node-fw", "192.0.2.1/24", "lo", 80, netns=ns, resync_interval=RESYNC,
        converge_timeout=3600.0, register_protocol_name=False,
    )  # fmt: skip


@pytest.mark.parametrize("backend", ["nft", "legacy"])
async def test_pool_traffic_is_accepted_where_forward_drops(
    netns_factory: NetnsFactory, backend: str
) -> None:
    node = netns_factory.namespace("n")
    run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    pod_a, _ = make_pod(netns_factory, node, "10.244.1.7")
    _pod_b, _ = make_pod(netns_factory, node, "10.244.1.8")
    for cmd in (f"iptables-{backend}", f"ip6tables-{backend}"):
        run(node, cmd, "-P", "FORWARD", "DROP")
        # Someone else's rules, which felix must leave exactly as they are.
        run(node, cmd, "-N", "SOMEONE-ELSE")
        run(node, cmd, "-A", "SOMEONE-ELSE", "-j", "RETURN")
        run(node, cmd, "-A", "FORWARD", "-j", "SOMEONE-ELSE")
        run(node, cmd, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
    before = {v: save(node, backend, v) for v in (4, 6)}

    dp = node_dataplane(node)
    dp.set_blocks(["10.244.1.0/24"])
    async with running_dataplane(dp):
        # No pool yet: felix adds nothing, and FORWARD's DROP eats pod-to-pod traffic.
        assert save(node, backend) == before[4]
        assert not await asyncio.to_thread(ping, pod_a, "10.244.1.8")

        t0 = time.monotonic()
        dp.set_pools(POOLS)
        await eventually(lambda: JUMP in save(node, backend), timeout=15, interval=0.02)
        print(f"\n[{backend}] pools set -> jump in FORWARD: {time.monotonic() - t0:.3f}s")
        assert await asyncio.to_thread(ping, pod_a, "10.244.1.8")
        # The IPv6 chain follows in the same pass.
        await eventually(lambda: all(f.backends for f in dp.forward.families.values()), timeout=10)
        for version, net in ((4, "10.244.0.0/16"), (6, "fd00:10:244::/48")):
            lines = save(node, backend, version)
            assert lines.count(JUMP) == 1
            forward = [line for line in lines if line.startswith("-A FORWARD ")]
            assert forward[0] == JUMP  # first, ahead of everyone else's
            assert f"-A {CHAIN} -s {net} -j ACCEPT" in lines
            assert f"-A {CHAIN} -d {net} -j ACCEPT" in lines
            assert others(lines) == before[version]
            assert dp.forward.families[version].backends == (backend,)

        # The jump deleted behind felix's back: put back within a resync or two.
        t0 = time.monotonic()
        run(node, f"iptables-{backend}", "-D", "FORWARD", "-j", CHAIN)
        await eventually(lambda: dp.forward.repairs >= 1, timeout=10, interval=0.02)
        print(f"[{backend}] jump deleted -> repaired: {time.monotonic() - t0:.2f}s")
        forward = [line for line in save(node, backend) if line.startswith("-A FORWARD ")]
        assert forward == [JUMP, "-A FORWARD -j SOMEONE-ELSE"]
        assert await asyncio.to_thread(ping, pod_a, "10.244.1.8")

        # No pool left: chain and jump go, in both families; everything else is as it was.
        dp.set_pools([])
        await eventually(
            lambda: all(save(node, backend, v) == before[v] for v in (4, 6)), timeout=10
        )
        assert not await asyncio.to_thread(ping, pod_a, "10.244.1.8")
        snap = dp.snapshot()["forward"]
        assert snap["ipv4"]["lastError"] is None and snap["ipv6"]["lastError"] is None
        assert snap["ipv4"]["forwardPolicy"][backend] == "DROP"


def wrappers(bin_dir: Path, log: Path, names: list[str]) -> None:
    """Put ``names`` in ``bin_dir``: each logs its call to ``log``, then runs the real one."""
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name)
        assert real is not None, name
        path = bin_dir / name
        path.write_text(f'#!/bin/sh\necho "{name} $*" >>{log}\nexec {real} "$@"\n')
        path.chmod(0o755)


async def passes(dp: Dataplane, count: int) -> None:
    """Wait for ``count`` more full resyncs."""
    target = dp.reconciler.stats.full_syncs + count
    await eventually(lambda: dp.reconciler.stats.full_syncs >= target, timeout=count * 5 + 5)


async def test_no_pool_starts_no_process_per_resync(
    netns_factory: NetnsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = netns_factory.namespace("n")
    log = tmp_path / "calls.log"
    log.touch()
    saves = [f"{t}-{b}-{op}" for t in ("iptables", "ip6tables") for b in ("nft", "legacy")
             for op in ("save", "restore")]  # fmt: skip
    wrappers(tmp_path / "bin", log, saves)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    dp = node_dataplane(node)
    async with running_dataplane(dp):
        await passes(dp, 1)
        first = log.read_text().splitlines()
        # One look per family and backend, to be sure no chain of ours is left over ...
        assert sorted(first) == sorted(f"{s} -t filter" for s in saves if s.endswith("-save"))
        await passes(dp, 4)
        # ... and none after that.
        assert log.read_text().splitlines() == first

        # With a pool, each full resync reads the chain back (that is how it repairs).
        dp.set_pools(POOLS[:1])
        await passes(dp, 3)
        calls = log.read_text().splitlines()[len(first) :]
        print(f"\n3+ full resyncs with an IPv4 pool: {len(calls)} iptables processes")
        assert sum(c.startswith("iptables-nft-restore") for c in calls) == 1  # applied once
        assert not any(c.startswith("ip6tables") for c in calls)  # no IPv6 pool: still none


async def test_without_iptables_a_dropping_forward_hook_is_reported(
    netns_factory: NetnsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = netns_factory.namespace("n")
    drop = "table inet host-fw {\n\tchain fw_forward {\n\t\ttype filter hook forward priority 0; "
    drop += "policy drop;\n\t}\n}\n"
    run(node, "nft", "-f", "-", input=drop)
    log = tmp_path / "calls.log"
    log.touch()
    # A PATH with ip and nft but no iptables of any kind.
    wrappers(tmp_path / "bin", log, ["ip", "nft"])
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    dp = node_dataplane(node)
    dp.set_pools(POOLS[:1])
    async with running_dataplane(dp):
        await passes(dp, 4)
        snap = dp.snapshot()["forward"]
    error = snap["ipv4"]["lastError"]
    assert error is not None and "table inet host-fw" in error and "iptables" in error
    assert snap["ipv4"]["present"] is False
    assert snap["ipv6"]["lastError"] is None  # no IPv6 pool: nothing to forward
    # Looked at once for this pool set, not once per resync.
    lists = [c for c in log.read_text().splitlines() if c == "nft list chains"]
    assert len(lists) == 1, lists
