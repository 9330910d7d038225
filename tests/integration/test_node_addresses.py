"""A node's addresses taken from its interface (``interface: eth0`` in node.yaml), in a real
namespace: the first IPv4 and the first global IPv6 address (a dual-stack node), never a
link-local one; ``addressV6`` wins over the detected IPv6 address."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.support.netns import NetnsFactory, run

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
