"""A running cluster changes its AS number without losing a packet.

Four nodes in a full mesh (the cluster of tests/integration/test_cluster_make_before_break.py,
real etcd, ``podbgp node`` with felix, two subnets, VXLAN across) carry continuous pod-to-pod
pings while one ``apply`` changes ``BGPConfiguration.spec.asNumber``. Every node then restarts
its speaker under the new AS (gracefully: its sessions close without a NOTIFICATION, its kernel
routes stay), and replaces each of its peers (the peer's AS changed) with a new session while
keeping the peer's routes stale until that session's End-of-RIB (``Speaker.replace_peer``). No
ping is lost and no kernel route is deleted or rewritten on any node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.integration.test_cluster_dataplane import Cluster, add_pod, running_cluster
from tests.integration.test_cluster_make_before_break import apply, mesh_ready, watched
from tests.integration.test_cluster_reflectors_down import (
    CLIENTS,
    ReflectorCluster,
    build,
    client_flows,
)
from tests.support.netns import wait_until

pytestmark = pytest.mark.netns

RESOURCES = """
apiVersion: podbgp/v1
kind: IPPool
metadata: {{name: pods}}
spec: {{cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}}
---
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: {asn}, nodeToNodeMeshEnabled: true{extra}}}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory, "as-change", RESOURCES.format(asn=64512, extra=""), CLIENTS, mesh_ready,
        ReflectorCluster, build=build,
    ) as c:  # fmt: skip
        for name in CLIENTS:
            add_pod(c, name, 0)
        yield c


def on_as(cluster: Cluster, asn: int) -> bool:
    """Every node's mesh sessions are Established with peers of AS ``asn``."""
    for node in CLIENTS:
        peers = cluster.api(node, "/v1/peers") or []
        up = [p for p in peers if p["state"] == "Established" and p["asNumber"] == asn]
        if len(up) != len(CLIENTS) - 1:
            return False
    return True


def replaced(cluster: Cluster) -> int:
    return sum((cluster.workdir / f"{n}.log").read_text().count("event=replaced") for n in CLIENTS)


def test_cluster_as_change_loses_no_packet(mesh: Cluster) -> None:
    """Every speaker restarts under the new AS; felix keeps the kernel routes meanwhile."""
    with watched(mesh, client_flows(mesh)) as watch:
        t0 = time.monotonic()
        apply(mesh, "asn", RESOURCES.format(asn=64513, extra=""))
        wait_until(lambda: on_as(mesh, 64513), timeout=60)
        took = time.monotonic() - t0
        time.sleep(1.0)
    print(f"\nAS 64512 -> 64513: every mesh session back on the new AS {took:.2f} s after apply")
    watch.check()


def test_mesh_password_change_loses_no_packet(mesh: Cluster) -> None:
    """Every mesh session is replaced (TCP MD5 on), each keeping its peer's routes stale until
    the new session's End-of-RIB; the speakers stay."""
    before = replaced(mesh)
    with watched(mesh, client_flows(mesh)) as watch:
        t0 = time.monotonic()
        apply(mesh, "password", RESOURCES.format(asn=64513, extra=", nodeMeshPassword: s3cret"))
        wait_until(lambda: replaced(mesh) - before >= len(CLIENTS) * (len(CLIENTS) - 1), 60)
        wait_until(lambda: on_as(mesh, 64513), timeout=60)
        took = time.monotonic() - t0
        time.sleep(1.0)
    print(f"\nnodeMeshPassword set: every mesh session back {took:.2f} s after apply, "
          f"{replaced(mesh) - before} sessions replaced keeping the peer's routes")  # fmt: skip
    watch.check()
