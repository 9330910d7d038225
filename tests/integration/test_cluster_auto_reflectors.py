"""Automatic route reflectors: the cluster grows past the threshold, elects two reflectors and
moves to them without losing a packet, re-elects one when a candidate appears, then goes back
to the mesh, each time without a loss.

The cluster of tests/integration/test_cluster_reflectors_down.py's namespaces (real etcd,
``podbgp node`` with felix, two subnets joined by a router, VXLAN across them, pods from
``podbgp-cni``), with ``routeReflectors: {mode: auto, nodeThreshold: 5, count: 2,
candidateSelector: "rr == 'yes'"}`` and no reflector chosen by hand. Four nodes run, each with a
pod; pods ping each other 20 times a second (same subnet and across the router) and
``ip monitor route`` records every kernel route change:

1. a fifth node starts: five nodes reach the threshold, every node elects the same two (no
   candidate yet, so one per subnet: n1 and n3, both with pods of the flows), those restart
   their speakers as reflectors (graceful restart), the others keep the sessions to them,
   renamed, and close their mesh sessions once the reflectors carry every route (make before
   break);
2. n2 gets the ``candidateSelector`` label: it takes n1's seat (n3 keeps its own, the other
   subnet's); the clients let n1 go once n2 carries the routes, and n1 goes on reflecting for
   the step-down grace (3 s) before it restarts as a client;
3. ``nodeThreshold`` goes up to 6: five nodes are below it (hysteresis 0), the cluster returns
   to the mesh: the clients keep their sessions to n2 and n3 (renamed ``mesh``) and add the
   others; n2 and n3 go on reflecting for the grace, so the clients' new mesh sessions carry
   the routes before the reflectors restart without their cluster ID.

No ping is lost and no kernel route present at the start of a step is deleted or rewritten.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.cluster_traffic import logs_on_failure
from tests.integration.test_cluster_dataplane import (
    Cluster,
    add_pod,
    established,
    running_cluster,
)
from tests.integration.test_cluster_make_before_break import apply, peer_types, watched
from tests.integration.test_cluster_reflectors_down import ADDRESSES, CLIENTS, build, client_flows
from tests.support.netns import wait_until

pytestmark = pytest.mark.netns

FIRST = list(CLIENTS)  # n1, n2 on 192.0.2.0/24; n3, n4 on 198.51.100.0/24
JOINING = "rr1"  # 192.0.2.3: the fifth node (no routeReflectorClusterID: it is just a node)
FIRST_ELECTED = ("n1", "n3")  # no candidate yet: the first name of each subnet
SECOND_ELECTED = ("n2", "n3")  # n2 labelled a candidate takes a seat; n3 keeps the other
AUTO = """
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec:
  asNumber: 64512
  routeReflectors:
    {{mode: auto, nodeThreshold: {threshold}, hysteresis: 0, count: 2,
     candidateSelector: "rr == 'yes'"}}
"""
CANDIDATE_N2 = """
apiVersion: podbgp/v1
kind: Node
metadata: {name: n2, labels: {rr: "yes"}}
"""
RESOURCES = (
    AUTO.format(threshold=5)
    + """---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}
"""
)


class AutoCluster(Cluster):
    addresses = ADDRESSES

    def node_extra(self, name: str) -> dict[str, Any]:
        # As production nodes run: a speaker restart on a running host is a graceful one with
        # selection deferral, except when only the cluster ID changes.
        return {"gracefulRestart": {"runFile": str(self.workdir / f"{name}.running")}}


def ip(name: str) -> str:
    return ADDRESSES[name].split("/")[0]


def mesh_ready(cluster: Cluster) -> bool:
    return all(established(cluster, n, len(FIRST) - 1) for n in FIRST)


@pytest.fixture(scope="module")
def auto_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory, "auto-rr", RESOURCES, FIRST, mesh_ready, AutoCluster, build=build,
    ) as c:  # fmt: skip
        for name in FIRST:
            add_pod(c, name, 0)
        yield c


def reflector_view(cluster: Cluster, elected: tuple[str, str]) -> bool:
    """Every node elected ``elected``; clients peer with exactly them, reflectors with all."""
    nodes = [*FIRST, JOINING]
    for n in nodes:
        info = cluster.api(n, "/v1/node") or {}
        election = (info.get("topology") or {}).get("routeReflectors") or {}
        if election.get("mode") != "reflectors" or tuple(election["reflectors"]) != elected:
            return False
        if info["topology"]["steppingDown"]:  # a former reflector still in its grace
            return False
        want = {ip(m) for m in nodes if m != n} if n in elected else {ip(m) for m in elected}
        if set(peer_types(cluster, n)) != want:
            return False
    return True


def mesh_view(cluster: Cluster) -> bool:
    nodes = [*FIRST, JOINING]
    return all(
        set(peer_types(cluster, n).values()) == {"mesh"}
        and set(peer_types(cluster, n)) == {ip(m) for m in nodes if m != n}
        for n in nodes
    )


def handovers(cluster: Cluster) -> list[float]:
    """Seconds each retired session waited for its replacement (from the node logs)."""
    out = []
    for n in [*FIRST, JOINING]:
        text = (cluster.workdir / f"{n}.log").read_text(errors="replace")
        out += [
            float(s) for s in re.findall(r"event=peer-removed peer=\S+ handover=([\d.]+)s", text)
        ]
    return out


def last_time(log: str, text: str) -> float:
    """Seconds since midnight of the last log line containing ``text``."""
    line = [ln for ln in log.splitlines() if text in ln][-1]
    h, m, sec = line.split()[1].replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)


def test_join_past_the_threshold_elects_reflectors_and_back_to_mesh_losing_nothing(
    auto_cluster: Cluster,
) -> None:
    cluster = auto_cluster
    traffic = client_flows(cluster)
    info = cluster.api("n1", "/v1/node")
    assert info["topology"]["routeReflectors"]["mode"] == "mesh"  # 4 nodes < 5
    timings: dict[str, float] = {}
    with logs_on_failure(cluster, [*FIRST, JOINING]):
        with watched(cluster, traffic) as up:  # pings at 20/s, every kernel route change
            t0 = time.monotonic()
            cluster.start(JOINING)
            wait_until(lambda: reflector_view(cluster, FIRST_ELECTED), timeout=60)
            timings["join -> every node on the elected reflectors"] = time.monotonic() - t0
        for n in FIRST_ELECTED:
            info = cluster.api(n, "/v1/node")
            assert info["topology"]["electedReflector"] is True
            assert info["topology"]["clusterID"] == "244.0.0.1"
            assert info["electedReflector"] is True  # and registered as such
            status = cluster.api(n, "/v1/status")
            assert status["reflection"].startswith("elected route reflector, cluster ID 244.0.0.1")
        assert set(peer_types(cluster, "n2").values()) == {"route-reflector"}
        assert set(peer_types(cluster, "n1").values()) == {"rr-client", "route-reflector"}
        assert cluster.api("n2", "/v1/status")["reflection"].startswith(
            "client of elected reflectors n1, n3"
        )
        elected_logs = sum(
            "event=route-reflector-mode mode=reflectors"
            in (cluster.workdir / f"{n}.log").read_text()
            for n in FIRST
        )
        assert elected_logs == len(FIRST)
        with watched(cluster, traffic) as swap:
            t0 = time.monotonic()
            apply(cluster, "n2-candidate", CANDIDATE_N2)
            wait_until(lambda: reflector_view(cluster, SECOND_ELECTED), timeout=60)
            timings["n2 labelled -> n2 and n3 reflect"] = time.monotonic() - t0
        with watched(cluster, traffic) as down:
            t0 = time.monotonic()
            apply(cluster, "threshold-6", AUTO.format(threshold=6))
            wait_until(lambda: mesh_view(cluster), timeout=60)
            timings["threshold 6 -> full mesh again"] = time.monotonic() - t0
    waits = handovers(cluster)
    logs = {n: (cluster.workdir / f"{n}.log").read_text(errors="replace") for n in FIRST}
    # On the way back, the clients' mesh session was up before the reflectors restarted.
    mesh_up = last_time(logs["n4"], f"peer={ip('n1')} event=established")
    restarts = [last_time(logs[rr], "event=speaker-restart") for rr in SECOND_ELECTED]
    lead = min(restarts) - mesh_up
    print(f"\nway back: n1-n4 mesh session up {lead:.2f} s before the first reflector restarted")
    assert lead > 0
    print(f"auto reflectors: {', '.join(f'{k}: {v:.1f} s' for k, v in timings.items())}")
    print(f"handover waits (s): n={len(waits)} min={min(waits):.2f} "
          f"median={sorted(waits)[len(waits) // 2]:.2f} max={max(waits):.2f}")  # fmt: skip
    for step, watch in (("up", up), ("swap", swap), ("down", down)):
        print(f"{step}:", end=" ")
        watch.check()  # no ping lost, no kernel route there before deleted or rewritten
        assert all(sent > 60 for sent, _ in watch.sent_received.values()), step
    # Up: the clients' mesh session to each other retired after the handover, not at once;
    # their sessions to the elected nodes stayed up, renamed.
    assert f"event=peer-removed peer={ip('n4')} handover=" in logs["n2"]
    assert f"event=peer-removed peer={ip('n2')} handover=" in logs["n4"]
    for rr in FIRST_ELECTED:
        for client in ("n2", "n4"):
            assert f"event=peer-type-changed peer={ip(rr)} type=route-reflector" in logs[client]
    # Swap: n4 let n1 go once n2 carried the routes; n1 stepped down after the grace.
    assert f"event=peer-removed peer={ip('n1')} handover=" in logs["n4"]
    # Down: the clients' sessions to the reflectors stayed up, renamed again.
    for rr in SECOND_ELECTED:
        for client in ("n1", "n4"):
            assert f"event=peer-type-changed peer={ip(rr)} type=mesh" in logs[client]
    for rr in ("n1", "n2", "n3"):  # each elected once and stepped down once
        assert logs[rr].count("event=speaker-restart") == 2
        assert "event=speaker-restart reason=cluster ID - -> 244.0.0.1" in logs[rr]
        assert "event=speaker-restart reason=cluster ID 244.0.0.1 -> -" in logs[rr]
        # not deferred (runFile is set): the clients' handovers wait for the End-of-RIB instead
        assert "event=selection-deferral-start" not in logs[rr]
        # it went on reflecting for the grace while its clients moved
        assert "event=reflector-stepping-down restart_in=3.0s" in logs[rr]
