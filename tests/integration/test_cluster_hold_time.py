"""A frozen node without BFD: the hold time, then graceful restart, decide what the others keep.

The cluster of tests/integration/test_cluster_dataplane.py (real etcd, four ``podbgp node``
processes with felix in namespaces, a full mesh, two subnets joined by a router, VXLAN across
subnets), no BFD, the default hold time (90 s, keepalives every 30 s). n1's agent is frozen
with SIGSTOP — its kernel keeps forwarding, as with a hung agent — and two nodes watch (n2 on
its subnet, n3 across the router): their kernel route to n1's block, and the path in their
Loc-RIB (stale? long-lived stale?). Polled every ~0.5 s; the timelines are printed
(``pytest -s``).

- Graceful restart at its shortest (``nodeMeshMaxRestartTime: 1``), LLGR off
  (``nodeMeshLongLivedStaleTime: 0``): the hold timer expires 60-90 s after the freeze (the
  last keepalive came up to 30 s before it), the route is stale for 1 s and goes from the
  kernels. This is the bound when graceful restart does not cover the peer.
- The defaults (LLGR 3600 s) with a short restart time (``nodeMeshMaxRestartTime: 10``; the
  default 120 s runs with PODBGP_LONG=1): the hold timer expires as before, but both sides set
  the N bit (RFC 8538), so the route stays, stale, for the restart time, then long-lived stale
  (RFC 9494) — still installed, so pods on n1 stay reachable through its still-forwarding
  kernel. Thawed, n1 returns and refreshes its route; no kernel route changes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from tests.integration.cluster_traffic import logs_on_failure
from tests.integration.test_cluster_dataplane import (
    NODES,
    Cluster,
    add_pod,
    block_of,
    established,
    running_cluster,
)
from tests.support.kernel import ping, routes
from tests.support.netns import wait_until

pytestmark = pytest.mark.netns

HOLD_S = 90  # the node mesh's hold time (BGP's default)
LLGR_STALE = "65535:6"
POLL_S = 0.5
RESOURCES = """
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  asNumber: 64512
  nodeToNodeMeshEnabled: true
  nodeMeshMaxRestartTime: {restart}
  nodeMeshLongLivedStaleTime: {llgr}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {{name: pods}}
spec: {{cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}}
"""
VICTIM, WATCHERS = "n1", ("n2", "n3")


def cluster_with(
    tmp_path_factory: pytest.TempPathFactory, tag: str, restart: int, llgr: int
) -> Iterator[Cluster]:
    def ready(c: Cluster) -> bool:
        return all(established(c, name, 3) for name in NODES)

    resources = RESOURCES.format(restart=restart, llgr=llgr)
    with running_cluster(tmp_path_factory, tag, resources, NODES, ready, Cluster) as c:
        for name in (VICTIM, *WATCHERS):
            add_pod(c, name, 0)
        yield c


@pytest.fixture
def short_gr_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    yield from cluster_with(tmp_path_factory, "hold-short-gr", restart=1, llgr=0)


@pytest.fixture(params=[10, 120], ids=["restart-10s", "restart-120s-default"])
def default_gr_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, int]]:
    restart = int(request.param)
    if restart > 10 and os.environ.get("PODBGP_LONG") != "1":
        pytest.skip(
            "opt-in (PODBGP_LONG=1): the default restart time adds 2 minutes; the 10 s variant "
            "takes the same path"
        )
    for cluster in cluster_with(tmp_path_factory, f"hold-gr-{restart}", restart, llgr=3600):
        yield cluster, restart


def path_state(cluster: Cluster, node: str, block: str) -> str:
    """``installed``/``stale``/``long-lived stale`` for ``block`` at ``node``, as its kernel and
    Loc-RIB have it, or ``gone``."""
    if not any(r.startswith(f"{block} ") for r in routes(cluster.ns[node])):
        return "gone"
    found = cluster.api(node, f"/v1/routes?prefix={block}") or []
    if not found:
        return "installed, not in the Loc-RIB"
    path = found[0]
    if LLGR_STALE in json.dumps(path.get("communities")):
        return "long-lived stale"
    return "stale" if path.get("stale") else "installed"


def watch(cluster: Cluster, block: str, until: str, timeout: float) -> dict[str, list[tuple]]:
    """Freeze the victim and record, per watcher, when the state of ``block`` changed, until
    every watcher is in state ``until`` (or ``timeout`` seconds pass). The victim stays frozen."""
    history: dict[str, list[tuple[float, str]]] = {w: [] for w in WATCHERS}
    current = {w: path_state(cluster, w, block) for w in WATCHERS}
    assert set(current.values()) == {"installed"}, current
    cluster.procs[VICTIM].send_signal(19)  # SIGSTOP
    frozen = time.monotonic()
    while time.monotonic() - frozen < timeout:
        for w in WATCHERS:
            state = path_state(cluster, w, block)
            if state != current[w]:
                current[w] = state
                history[w].append((time.monotonic() - frozen, state))
        if all(s == until for s in current.values()):
            break
        time.sleep(POLL_S)
    return history


def show(title: str, history: dict[str, list[tuple]]) -> None:
    print(f"\n{title}")
    for w, events in history.items():
        kind = "same subnet" if w == "n2" else "other subnet"
        steps = ", ".join(f"{state} at {at:.1f} s" for at, state in events) or "no change"
        print(f"  {w} ({kind}): {steps}")


def test_without_bfd_a_frozen_node_is_gone_within_the_hold_time(short_gr_cluster: Cluster) -> None:
    cluster = short_gr_cluster
    block = block_of(cluster, VICTIM)
    try:
        with logs_on_failure(cluster, NODES):
            history = watch(cluster, block, "gone", timeout=HOLD_S + 30)
    finally:
        cluster.procs[VICTIM].send_signal(18)  # SIGCONT
    show(f"{VICTIM} frozen, no BFD, hold {HOLD_S} s, restart time 1 s, LLGR off:", history)
    for w, events in history.items():
        assert events and events[-1][1] == "gone", (w, events)
        gone_at = events[-1][0]
        # The hold timer governs: never before 60 s (a keepalive came at most 30 s before the
        # freeze), and by the hold time plus the restart time plus polling and a loaded VM.
        assert HOLD_S - 30 - 2 < gone_at < HOLD_S + 1 + 10, (w, gone_at)
    for w in WATCHERS:
        assert "reason=Hold timer expired" in (cluster.workdir / f"{w}.log").read_text(), w


@pytest.mark.may_skip
def test_without_bfd_graceful_restart_keeps_a_frozen_node_reachable(
    default_gr_cluster: tuple[Cluster, int],
) -> None:
    cluster, restart = default_gr_cluster
    block = block_of(cluster, VICTIM)
    victim_pod = cluster.pods[VICTIM][0][1]
    before = {w: routes(cluster.ns[w]) for w in WATCHERS}
    try:
        with logs_on_failure(cluster, NODES):
            history = watch(cluster, block, "long-lived stale", timeout=HOLD_S + restart + 30)
            reachable = {w: ping(cluster.pods[w][0][0], victim_pod) for w in WATCHERS}
            kept = {w: routes(cluster.ns[w]) for w in WATCHERS}
    finally:
        cluster.procs[VICTIM].send_signal(18)  # SIGCONT
    thawed = time.monotonic()
    wait_until(lambda: all(path_state(cluster, w, block) == "installed" for w in WATCHERS), 90)
    wait_until(lambda: all(established(cluster, n, 3) for n in NODES), timeout=90)
    refreshed = time.monotonic() - thawed
    show(
        f"{VICTIM} frozen, no BFD, hold {HOLD_S} s, restart time {restart} s, LLGR 3600 s; "
        f"thawed after, refreshed and all Established {refreshed:.1f} s "
        f"later; pods on {VICTIM} reachable while long-lived stale: {reachable}",
        history,
    )
    for w, events in history.items():
        states = [state for _at, state in events]
        assert states == ["stale", "long-lived stale"], (w, events)
        stale_at, llgr_at = events[0][0], events[1][0]
        assert HOLD_S - 30 - 2 < stale_at < HOLD_S + 10, (w, stale_at)
        assert restart - 2 < llgr_at - stale_at < restart + 10, (w, events)
        assert kept[w] == before[w], f"{w}: a kernel route changed while {VICTIM} was frozen"
        assert reachable[w], f"{w}'s pod could not reach {VICTIM}'s pod"
    for w in WATCHERS:
        assert routes(cluster.ns[w]) == before[w], f"{w}: a kernel route changed on the return"
        log = (cluster.workdir / f"{w}.log").read_text()
        assert "reason=Hold timer expired graceful=True" in log, w  # the N bit kept the route
