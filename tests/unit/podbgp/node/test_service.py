"""The node's part in route reflection as ``/v1/status`` and ``podbgp status`` show it."""

from __future__ import annotations

from typing import Any

from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import BGPConfiguration
from podbgp.node.peering import compute_topology
from podbgp.node.service import reflection
from podbgp.ops.client import render_status

AUTO = BGPConfiguration("default", route_reflectors=RouteReflectors("auto", 3, 0, 1, "244.0.0.7"))


def nodes(count: int) -> dict[str, NodeInfo]:
    return {
        f"n{i}": NodeInfo(f"n{i}", (f"192.0.2.{i}/24",), router_id=f"192.0.2.{i}", registered=True)
        for i in range(1, count + 1)
    }


def test_each_role_in_one_line() -> None:
    three = nodes(3)
    assert reflection(compute_topology("n1", three, AUTO, [])) == (
        "elected route reflector, cluster ID 244.0.0.7 (1 of 3 nodes)"
    )
    assert reflection(compute_topology("n2", three, AUTO, [])) == (
        "client of elected reflectors n1 (1 of 3 nodes)"
    )
    below = reflection(compute_topology("n1", nodes(2), AUTO, []))
    assert (
        below
        == "node-to-node mesh (automatic reflectors: 2 nodes < 3 (nodeThreshold - hysteresis))"
    )
    plain = reflection(compute_topology("n1", three, BGPConfiguration("default"), []))
    assert plain == "node-to-node mesh"
    explicit = {
        **three,
        "n1": NodeInfo("n1", ("192.0.2.1/24",), route_reflector_cluster_id="1.0.0.1"),
    }
    mine = compute_topology("n1", explicit, BGPConfiguration("default"), [])
    assert reflection(mine) == "route reflector, cluster ID 1.0.0.1"


def test_podbgp_status_prints_it() -> None:
    status: dict[str, Any] = {
        "nodeName": "n1",
        "routerId": "192.0.2.1",
        "asNumber": 64512,
        "uptimeSeconds": 5,
        "reflection": "client of elected reflectors n2, n3 (2 of 9 nodes)",
    }
    text = render_status(status, [])
    assert "\nRoute reflection: client of elected reflectors n2, n3 (2 of 9 nodes)\n" in text
