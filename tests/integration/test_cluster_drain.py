"""A node drained (RFC 8326) and then stopped: no pod loses a ping toward another node's pods.

The cluster of tests/integration/test_cluster_dataplane.py (real etcd, four ``podbgp node``
processes with felix in namespaces, a full mesh, two subnets joined by a router, VXLAN across
subnets), one pod per node. Continuous counted pings run between pods of the three other nodes
(same subnet and across the router) for the whole drain and stop, and from and to the drained
node's pod for the drain time. ``podbgp drain`` (``POST /v1/drain``) starts the drain on n1:

- the other nodes get n1's block with GRACEFUL_SHUTDOWN and LOCAL_PREF 0 — de-preferred, still
  the only path, so still installed; nothing in any kernel changes;
- after the drain time n1 closes its sessions with Cease/Administrative Shutdown: its block
  leaves the other kernels (a node's block has no other path), theirs stay;
- n1 is stopped with SIGTERM.

The timeline is printed (``pytest -s``); the test asserts 0 pings lost on every flow toward a
pod of a node that is not being drained, and none toward n1 until its sessions close.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator

import pytest

from tests.integration.cluster_traffic import counted_pings, logs_on_failure
from tests.integration.test_cluster_dataplane import (
    API_PORT,
    NODES,
    RESOURCES,
    Cluster,
    add_pod,
    block_of,
    established,
    loss,
    running_cluster,
)
from tests.support.kernel import ping, routes
from tests.support.netns import run, wait_until

pytestmark = pytest.mark.netns

DRAIN_S = 6
INTERVAL = 0.05
AFTER_S = 6.0  # pings among the other nodes go on this long after n1 stopped
GRACEFUL_SHUTDOWN = "65535:0"


@pytest.fixture(scope="module")
def drain_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    def ready(c: Cluster) -> bool:
        return all(established(c, name, 3) for name in NODES)

    with running_cluster(tmp_path_factory, "drain-cluster", RESOURCES, NODES, ready, Cluster) as c:
        for name in NODES:
            add_pod(c, name, 0)
        yield c


def path_to(cluster: Cluster, node: str, block: str) -> dict[str, object]:
    """The Loc-RIB's best path to ``block`` at ``node`` (empty when there is none)."""
    found = cluster.api(node, f"/v1/routes?prefix={block}") or []
    return dict(found[0]) if found else {}


def test_drained_then_stopped_node_loses_no_ping_toward_other_pods(drain_cluster: Cluster) -> None:
    cluster = drain_cluster
    victim, others = "n1", ["n2", "n3", "n4"]
    pod = {node: cluster.pods[node][0] for node in NODES}  # node -> (namespace, IP)
    blocks = {node: block_of(cluster, node) for node in NODES}
    among_others = {
        "n2->n3 (VXLAN)": (pod["n2"][0], pod["n3"][1]),
        "n3->n4 (same subnet)": (pod["n3"][0], pod["n4"][1]),
        "n4->n2 (VXLAN)": (pod["n4"][0], pod["n2"][1]),
    }
    during_drain = {
        "n1->n2 (drained node, same subnet)": (pod["n1"][0], pod["n2"][1]),
        "n1->n4 (drained node, VXLAN)": (pod["n1"][0], pod["n4"][1]),
        "n3->n1 (toward the drained node)": (pod["n3"][0], pod["n1"][1]),
    }
    flows = {**among_others, **during_drain}
    wait_until(lambda: all(ping(src, dst) for src, dst in flows.values()), timeout=60)
    wait_until(lambda: all(blocks[victim] in " ".join(routes(cluster.ns[o])) for o in others), 30)
    before = {o: routes(cluster.ns[o]) for o in others}

    timeline: list[tuple[float, str]] = []
    with (
        counted_pings(among_others, int(DRAIN_S + AFTER_S + 14), INTERVAL) as long_pings,
        counted_pings(during_drain, DRAIN_S - 1, INTERVAL) as short_pings,
        logs_on_failure(cluster, NODES),
    ):
        time.sleep(1.0)
        start = time.monotonic()

        def mark(event: str) -> None:
            timeline.append((time.monotonic() - start, event))

        api = f"http://127.0.0.1:{API_PORT}"
        argv = [sys.executable, "-m", "podbgp", "drain", "--api", api, "--drain-time", str(DRAIN_S)]
        answer = run(cluster.ns[victim], *argv, check=False)
        assert answer.returncode == 0, answer.stdout + answer.stderr
        mark("podbgp drain answered")

        def de_preferred() -> bool:
            paths = [path_to(cluster, o, blocks[victim]) for o in others]
            return all(
                p.get("localPref") == 0 and GRACEFUL_SHUTDOWN in json.dumps(p.get("communities"))
                for p in paths
            )

        wait_until(de_preferred, timeout=DRAIN_S)
        mark(f"every other node has {blocks[victim]} with {GRACEFUL_SHUTDOWN}, LOCAL_PREF 0")
        assert {o: routes(cluster.ns[o]) for o in others} == before, "a kernel route changed"

        wait_until(lambda: all(established(cluster, o, 2) for o in others), timeout=DRAIN_S + 10)
        mark("sessions to n1 closed on every other node")
        wait_until(
            lambda: all(blocks[victim] not in " ".join(routes(cluster.ns[o])) for o in others),
            timeout=10,
        )
        mark(f"{blocks[victim]} gone from every other kernel")
        cluster.procs[victim].send_signal(signal.SIGTERM)
        cluster.procs[victim].wait(20)
        mark(f"n1 stopped (SIGTERM, exit {cluster.procs[victim].returncode})")
        pingers = {**long_pings, **short_pings}
        outputs = {name: p.communicate(timeout=60)[0] for name, p in pingers.items()}
        mark("pings done")
        after = {o: routes(cluster.ns[o]) for o in others}
    report = {name: loss(out) for name, out in outputs.items()}
    print(f"\ndrain of {victim} ({DRAIN_S} s) then stop; timeline (s after the drain request):")
    for at, event in timeline:
        print(f"  {at:6.2f}  {event}")
    print(f"(sent, received) per flow: {report}")
    for o in others:  # only n1's block went; every other route is as it was
        gone = {r for r in before[o] - after[o] if not r.startswith(f"{blocks[victim]} ")}
        assert gone == set() and after[o] - before[o] == set(), (o, gone, after[o] - before[o])
    for name, (sent, received) in report.items():
        assert sent > 50, name
        assert received == sent, f"{name}: {sent - received} of {sent} lost"
