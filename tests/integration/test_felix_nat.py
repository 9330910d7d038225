"""natOutgoing with real nftables in network namespaces: a pod's traffic to outside every pool
leaves with the node's address; pod-to-pod traffic keeps the pod's; the table is repaired when
changed behind felix's back, removed when no pool asks for NAT, and no other table is touched.

Topology: pod namespaces wired into a "node" namespace like podbgp-cni does; the node's uplink
``up0`` (192.0.2.1/24) reaches an "outside" namespace (192.0.2.2) that has no route to the pod
pool, so an un-NATed reply could not come back at all.
"""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from felix.dataplane import Dataplane
from felix.nat import TABLE
from felix.plan import Pool
from tests.support.kernel import eventually, make_pod, running_dataplane
from tests.support.netns import NetnsFactory, netns_socket, run

pytestmark = pytest.mark.netns

RESYNC = 0.5
NAT_POOL = Pool("10.244.0.0/16", nat_outgoing=True)
PLAIN_POOL = Pool("10.244.0.0/16")


def source_seen(client_ns: str, server_ns: str, server_ip: str) -> str | None:
    """Connect from ``client_ns`` to a listener in ``server_ns``: the source address the
    listener saw, or None when no connection came through within 3 s."""
    with netns_socket(server_ns) as server, netns_socket(client_ns) as client:
        server.bind((server_ip, 0))
        server.listen(1)
        server.settimeout(3.0)
        client.settimeout(3.0)
        try:
            client.connect(server.getsockname())
            conn, peer = server.accept()
        except OSError:
            return None
        conn.close()
        return str(peer[0])


def nft(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args], capture_output=True, text=True, timeout=10
    )


async def test_nat_outgoing_masquerades_to_outside_only_and_is_reconciled(
    netns_factory: NetnsFactory,
) -> None:
    node = netns_factory.namespace("n")
    outside = netns_factory.namespace("o")
    netns_factory.veth(node, outside, ["192.0.2.1/24"], ["192.0.2.2/24"], "up0", "up0")
    run(node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    pod_a, _ = make_pod(netns_factory, node, "10.244.1.7")
    pod_b, _ = make_pod(netns_factory, node, "10.244.1.8")
    # Someone else's table in the same namespace: felix must never touch it.
    other = "table ip someone-else {\n\tchain c {\n\t\ttype filter hook input priority 0;\n\t}\n}\n"
    subprocess.run(["ip", "netns", "exec", node, "nft", "-f", "-"], input=other, text=True,
                   check=True, timeout=10)  # fmt: skip

    dp = Dataplane(
        "node-nat", "192.0.2.1/24", "up0", 80, netns=node, resync_interval=RESYNC,
        converge_timeout=3600.0, register_protocol_name=False,
    )  # fmt: skip
    dp.set_pools([PLAIN_POOL])
    dp.set_blocks(["10.244.1.0/24"])
    async with running_dataplane(dp):
        # No natOutgoing: no table, and the outside cannot answer the pod (no route back).
        assert nft(node, "list", "table", "inet", TABLE).returncode != 0
        assert await asyncio.to_thread(source_seen, pod_a, outside, "192.0.2.2") is None

        dp.set_pools([NAT_POOL])
        await eventually(lambda: nft(node, "list", "table", "inet", TABLE).returncode == 0)
        seen = await asyncio.to_thread(source_seen, pod_a, outside, "192.0.2.2")
        assert seen == "192.0.2.1"  # masqueraded to the node's address
        # Pod to pod (a pool destination) is never NATed.
        assert await asyncio.to_thread(source_seen, pod_a, pod_b, "10.244.1.8") == "10.244.1.7"

        # Changed behind felix's back: repaired within a resync or two.
        assert nft(node, "flush", "table", "inet", TABLE).returncode == 0
        await eventually(lambda: dp.nat.repairs >= 1, timeout=10)
        seen = await asyncio.to_thread(source_seen, pod_a, outside, "192.0.2.2")
        assert seen == "192.0.2.1"

        # No pool asks for NAT any more: the table goes; the other table stays.
        dp.set_pools([PLAIN_POOL])
        await eventually(lambda: nft(node, "list", "table", "inet", TABLE).returncode != 0)
        assert "someone-else" in nft(node, "list", "tables").stdout
    # Stopping felix leaves the kernel as it is (like routes): nothing flushed.
    assert "someone-else" in nft(node, "list", "tables").stdout
    assert dp.nat.last_error is None
