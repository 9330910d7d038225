"""A running cluster switches from the node mesh to route reflectors without losing a packet.

The cluster of tests/integration/test_cluster_reflectors_down.py (real etcd, ``podbgp node`` with
felix in namespaces, two subnets, VXLAN across them, pods from ``podbgp-cni``): four nodes, and
two nodes that carry ``routeReflectorClusterID`` but start with no sessions, because the
cluster starts as a full mesh. While pods on different nodes ping each other continuously, and
``ip monitor route`` records every kernel route change on every node:

1. one ``apply`` adds a BGPPeer from every node to the reflectors and switches the mesh off:
   each node brings its reflector sessions up, waits for their End-of-RIB and for every route
   to have a path through them, and only then closes its mesh sessions;
2. one reflector is removed (its ``route-reflector`` label goes): the nodes keep the other one;
3. the reflector is added back.

No ping is lost and no kernel route is deleted or rewritten on any node (the only new routes are
the reflector nodes' own blocks, learnt once the nodes peer with them): the best path of each
block moves from one session to another with the same next hop.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.integration.cluster_traffic import watched_traffic
from tests.integration.test_cluster_dataplane import (
    Cluster,
    add_pod,
    established,
    running_cluster,
)
from tests.integration.test_cluster_reflectors_down import (
    ADDRESSES,
    CLIENTS,
    REFLECTORS,
    ReflectorCluster,
    build,
    client_flows,
)
from tests.support.kernel import ping
from tests.support.netns import wait_until

pytestmark = pytest.mark.netns

BASE = """
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}
---
apiVersion: podbgp/v1
kind: Node
metadata: {name: rr1, labels: {route-reflector: "true"}}
spec: {routeReflectorClusterID: 1.0.0.1}
"""
MESH = """
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true}
"""
RR2 = """
apiVersion: podbgp/v1
kind: Node
metadata: {{name: rr2{labels}}}
spec: {{routeReflectorClusterID: 1.0.0.1}}
"""
TO_REFLECTORS = """
apiVersion: podbgp/v1
kind: BGPPeer
metadata: {name: peer-with-rrs}
spec: {nodeSelector: all(), peerSelector: "route-reflector == 'true'"}
---
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: false}
"""
LABELLED = ', labels: {route-reflector: "true"}'


def rr2(labelled: bool) -> str:
    return RR2.format(labels=LABELLED if labelled else "")


def peer_types(cluster: Cluster, node: str) -> dict[str, str]:
    """Established peers of ``node``: address -> type."""
    peers = cluster.api(node, "/v1/peers") or []
    return {p["address"]: p["type"] for p in peers if p["state"] == "Established"}


def mesh_ready(cluster: Cluster) -> bool:
    return all(established(cluster, c, len(CLIENTS) - 1) for c in CLIENTS)


@pytest.fixture(scope="module")
def mesh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    resources = BASE + "---" + rr2(True) + "---" + MESH
    with running_cluster(
        tmp_path_factory, "mbb-cluster", resources, ADDRESSES, mesh_ready, ReflectorCluster,
        build=build,
    ) as c:  # fmt: skip
        for name in CLIENTS:
            add_pod(c, name, 0)
        yield c


def apply(cluster: Cluster, name: str, text: str) -> None:
    path = cluster.workdir / f"{name}.yaml"
    path.write_text(text)
    cluster.datastore("apply", str(path))


def wait_peers(cluster: Cluster, want: set[str], timeline: list[str], t0: float) -> None:
    """Until every client's Established peers are exactly ``want`` (reflector addresses)."""
    addresses = {ADDRESSES[r].split("/")[0] for r in want}

    def done() -> bool:
        return all(set(peer_types(cluster, c)) == addresses for c in CLIENTS)

    wait_until(done, timeout=60)
    timeline.append(f"{time.monotonic() - t0:7.2f}s every node peers with {sorted(want)} only")


def handovers(cluster: Cluster) -> list[str]:
    out = []
    for c in CLIENTS:
        text = (cluster.workdir / f"{c}.log").read_text(errors="replace")
        out += [
            f"{c}: {m}" for m in re.findall(r"event=peer-removed peer=(\S+ handover=\S+)", text)
        ]
    return out


@contextlib.contextmanager
def watched(cluster: Cluster, flows: dict[str, tuple[str, str]]) -> Iterator[Watch]:
    """While the body runs: pings at 20/s on every flow (name -> (pod namespace, destination)),
    ``ip monitor route`` on every client. Afterwards ``watch.lost`` and ``watch.changes`` say
    what was lost and which kernel routes that existed before were deleted or rewritten."""
    wait_until(lambda: all(ping(src, dst) for src, dst in flows.values()), timeout=60)
    watch = Watch()
    with watched_traffic(cluster, flows, CLIENTS, f"watch{next(_RUNS)}") as records:
        time.sleep(1.0)
        yield watch
        time.sleep(1.5)
    watch.sent_received = records[0].pings
    watch.changes = records[0].changed
    watch.new = records[0].added


_RUNS = itertools.count()  # each watch writes its own files


@dataclass
class Watch:
    sent_received: dict[str, tuple[int, int]] = field(default_factory=dict)
    changes: dict[str, list[str]] = field(default_factory=dict)  # node -> monitor lines
    new: dict[str, int] = field(default_factory=dict)  # node -> routes that were not there

    def check(self) -> None:
        """No ping lost on any flow, no kernel route deleted or rewritten on any node."""
        print(f"(sent, received) per flow: {self.sent_received}")
        counts = {c: len(v) for c, v in self.changes.items()}
        print(f"deleted or rewritten kernel routes per node: {counts}; new routes: {self.new}")
        for c, lines in self.changes.items():
            assert lines == [], f"{c}: felix changed kernel routes: {lines[:5]}"
        for name, (sent, received) in self.sent_received.items():
            assert sent > 40, name
            assert received == sent, f"{name}: {sent - received} of {sent} lost"


def test_mesh_to_reflectors_and_back_loses_no_packet(mesh_cluster: Cluster) -> None:
    cluster = mesh_cluster
    timeline: list[str] = []
    with watched(cluster, client_flows(cluster)) as watch:
        t0 = time.monotonic()
        timeline.append(f"{time.monotonic() - t0:7.2f}s apply: BGPPeer to reflectors, mesh off")
        apply(cluster, "to-rr", TO_REFLECTORS)
        wait_peers(cluster, set(REFLECTORS), timeline, t0)
        time.sleep(1.0)
        timeline.append(f"{time.monotonic() - t0:7.2f}s apply: rr2 is no reflector any more")
        apply(cluster, "rr2-off", rr2(False))
        wait_peers(cluster, {"rr1"}, timeline, t0)
        time.sleep(1.0)
        timeline.append(f"{time.monotonic() - t0:7.2f}s apply: rr2 is a reflector again")
        apply(cluster, "rr2-on", rr2(True))
        wait_peers(cluster, set(REFLECTORS), timeline, t0)
        body = time.monotonic() - t0
    print("\nmesh -> reflectors -> one reflector -> two, timeline:\n  " + "\n  ".join(timeline))
    print("handovers (old session closed after):\n  " + "\n  ".join(handovers(cluster)))
    print(f"new routes (the reflectors' own blocks): {watch.new}")
    watch.check()
    # Every flow pinged through the whole sequence: 1 s before it, the changes, 1.5 s after,
    # at 20 a second nominal (15 counted, for the pinger's own delays).
    pinged = 15 * (1.0 + body + 1.5)
    assert all(sent >= pinged for sent, _ in watch.sent_received.values()), pinged
    assert len(handovers(cluster)) >= 2 * len(CLIENTS)  # mesh sessions retired, then rr2's
