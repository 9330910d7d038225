"""A dual-stack node agent in a real namespace: its addresses taken from its interface
(``interface: eth0`` in node.yaml: the first IPv4 and the first global IPv6 address, never a
link-local one; ``addressV6`` wins over the detected IPv6 address), and its blocks claimed per
family (a full IPv4 pool does not keep it from an IPv6 block)."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cluster_dataplane import HTTP_GET
from tests.support.netns import NetnsFactory, run, wait_until

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
RESOLVE = """
import json, sys
from podbgp.cluster.datastore import DatastoreConfig
from podbgp.node.config import NodeConfig, resolve_addresses
config = NodeConfig(node_name="n", datastore=DatastoreConfig(type="file"), interface=sys.argv[1],
                    address_v6=sys.argv[2] or None)
try:
    print(json.dumps(list(resolve_addresses(config))))
except OSError as exc:
    print(json.dumps(str(exc)))
"""


def resolve(ns: str, interface: str, address_v6: str = "") -> object:
    out = run(ns, "env", f"PYTHONPATH={REPO}", sys.executable, "-c", RESOLVE, interface, address_v6)
    return json.loads(out.stdout)


def test_both_families_come_from_the_interface(netns_factory: NetnsFactory) -> None:
    ns = netns_factory.namespace("n")
    peer = netns_factory.namespace("q")
    netns_factory.veth(
        ns, peer, ["192.0.2.1/24", "2001:db8::1/64", "2001:db8:9::1/64"], [], "eth0", "eth1"
    )
    netns_factory.veth(ns, peer, ["2001:db8:5::1/64"], [], "eth6", "eth7")
    netns_factory.veth(ns, peer, [], [], "bare0", "bare1")
    got = resolve(ns, "eth0")
    assert isinstance(got, list) and got[0] == "192.0.2.1/24"
    # The first global IPv6 address (the kernel lists the newest first), never fe80::.
    assert len(got) == 2 and got[1] in ("2001:db8::1/64", "2001:db8:9::1/64")
    assert resolve(ns, "eth0", "2001:db8:7::1/64") == ["192.0.2.1/24", "2001:db8:7::1/64"]
    assert resolve(ns, "eth6") == ["2001:db8:5::1/64"]  # IPv6 only
    assert resolve(ns, "bare0") == "interface bare0 has no IPv4 or global IPv6 address"


CLAIM = """
import asyncio, sys
from podbgp.cluster import ipam
from podbgp.cluster.datastore import DatastoreConfig, open_datastore
async def main():
    store = open_datastore(DatastoreConfig(type="file", path=sys.argv[1]))
    try:
        print((await ipam.claim_block(store, "other", version=4)).cidr)
    finally:
        await store.close()
asyncio.run(main())
"""
POOLS = """apiVersion: podbgp/v1
kind: IPPool
metadata: {name: small-v4}
spec: {cidr: 10.250.0.0/24, blockSize: 24}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods-v6}
spec: {cidr: "fd00:250::/120", blockSize: 122}
"""


def test_a_full_ipv4_pool_does_not_keep_a_dual_stack_node_from_its_ipv6_block(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    ns = netns_factory.namespace("n")
    peer = netns_factory.namespace("q")
    netns_factory.veth(ns, peer, ["192.0.2.1/24", "2001:db8::1/64"], [], "eth0", "eth1")
    store = tmp_path / "cluster"
    store.mkdir()
    (store / "pools.yaml").write_text(POOLS)
    env = ["env", f"PYTHONPATH={REPO}"]
    taken = run(None, *env, sys.executable, "-c", CLAIM, str(store)).stdout.strip()
    assert taken == "10.250.0.0/24"  # the IPv4 pool's only block, owned by another node
    config = tmp_path / "node.yaml"
    config.write_text(
        "nodeName: node-1\naddress: 192.0.2.1/24\naddressV6: 2001:db8::1/64\n"
        f"datastore: {{type: file, path: {store}}}\napi: {{listen: '127.0.0.1:9179'}}\n"
        "felix: {enabled: false}\n"
    )
    netns_factory.popen(
        ns, [*env, sys.executable, "-m", "podbgp", "node", "-c", str(config)], tmp_path / "log"
    )

    def ipam_state() -> dict[str, Any] | None:
        out = run(ns, sys.executable, "-c", HTTP_GET, "http://127.0.0.1:9179/v1/node", check=False)
        if out.returncode != 0:
            return None
        state = json.loads(out.stdout)["ipam"]
        return state if state["blocks"] and state["error"] else None

    state = wait_until(ipam_state, timeout=30)
    [block] = state["blocks"]
    assert ipaddress.ip_network(block).subnet_of(ipaddress.ip_network("fd00:250::/120"))
    assert "no free block for node node-1" in str(state["error"])
