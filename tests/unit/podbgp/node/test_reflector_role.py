"""A reflector stepping down keeps its speaker for the grace, then lets it restart; the elected
flag follows the topology."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bgpd.speaker import SpeakerConfig
from podbgp.cluster.datastore.records import NodeInfo
from podbgp.cluster.reflectors import RouteReflectors
from podbgp.cluster.resources import BGPConfiguration
from podbgp.node.peering import Topology, compute_topology
from podbgp.node.reflector_role import ReflectorRole

REFLECTING = SpeakerConfig(asn=64512, router_id="192.0.2.1", cluster_id="244.0.0.1")


def mesh_topology() -> Topology:
    return Topology("n1", replace(REFLECTING, cluster_id=None), 179, True)


async def test_step_down_waits_for_the_grace_then_wakes_the_agent() -> None:
    woken = asyncio.Event()
    role = ReflectorRole(woken.set, grace=0.05)
    assert role.holding(REFLECTING, mesh_topology())
    assert role.stepping_down
    assert role.holding(REFLECTING, mesh_topology())  # a reconcile meanwhile: still holding
    await asyncio.wait_for(woken.wait(), 5)
    assert not role.holding(REFLECTING, mesh_topology())  # the grace is over: restart now
    assert not role.stepping_down


async def test_other_changes_are_not_held() -> None:
    role = ReflectorRole(lambda: None, grace=10)
    plain = replace(REFLECTING, cluster_id=None)
    assert not role.holding(plain, mesh_topology())  # not a reflector: nothing to step down from
    elected = Topology("n1", REFLECTING, 179, False)
    assert not role.holding(plain, elected)  # becoming a reflector: at once
    other_as = Topology("n1", replace(plain, asn=65000), 179, True)
    assert not role.holding(REFLECTING, other_as)  # more than the cluster ID changes
    assert role.holding(REFLECTING, mesh_topology())
    assert not role.holding(REFLECTING, Topology("n1", REFLECTING, 179, False))  # elected again
    assert not role.stepping_down


def test_elected_flag_follows_the_topology() -> None:
    rr = RouteReflectors("auto", node_threshold=2, hysteresis=0, count=1)
    config = BGPConfiguration("default", route_reflectors=rr)
    nodes = {
        f"n{i}": NodeInfo(f"n{i}", (f"192.0.2.{i}/24",), router_id=f"192.0.2.{i}", registered=True)
        for i in (1, 2)
    }
    role = ReflectorRole(lambda: None)
    role.update(None, compute_topology("n1", nodes, config, []))
    assert role.elected
    role.update(None, compute_topology("n2", nodes, config, []))
    assert not role.elected
