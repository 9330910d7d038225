"""felix on dual-stack nodes, in network namespaces: IPv6 pod routes and IPv4 over IPv6 next hops.

Each "node" namespace runs a real :class:`felix.dataplane.Dataplane` driven from the test
process (as tests/integration/test_felix_routes.py does). Covered: v6 pods (veth + /128) that
ping each other directly on a shared IPv6 subnet and over ``vxlan-v6.podbgp`` across subnets
through a router namespace (next to ``vxlan.podbgp`` with the same VNI and port), IPv4 pods
reached through IPv6 next hops (RFC 8950: ``via inet6``, global and link-local), and resyncs that
leave all of it untouched and repair what is deleted behind felix's back.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from felix.dataplane import Dataplane, vteps_of
from felix.plan import EncapMode, Pool
from felix.tunnels import vtep_mac
from tests.integration.test_felix_routes import RESYNC, announce
from tests.support.kernel import (
    captured,
    eventually,
    links,
    make_pod,
    ping,
    route_get,
    routes,
    running_dataplane,
)
from tests.support.netns import NetnsFactory, run

pytestmark = pytest.mark.netns

V6_POOL = Pool("fd00:10::/48", vxlan_mode=EncapMode.CROSS_SUBNET)
V4_POOL = Pool("10.244.0.0/16")  # no encapsulation: IPv4 must ride the IPv6 next hops
V4_VXLAN_POOL = Pool("10.245.0.0/16", vxlan_mode=EncapMode.CROSS_SUBNET)
V6_METRIC = "metric 1024 pref medium"  # how `ip -6 route` prints a route added without metric


def dataplane(ns: str, v4: str, v6: str, uplink: str = "up0", **kw: Any) -> Dataplane:
    kw.setdefault("resync_interval", RESYNC)
    kw.setdefault("converge_timeout", 3600.0)
    return Dataplane(
        f"node-{ns}", v4, uplink, 80, netns=ns, register_protocol_name=False,
        node_address_v6=v6, **kw,
    )  # fmt: skip


def forwarding(*spaces: str) -> None:
    for ns in spaces:
        run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run(ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        run(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")


async def pings(pod: str, dst: str) -> bool:
    """A few tries: the first packets may wait for neighbour discovery on a fresh link."""
    for _ in range(5):
        if await asyncio.to_thread(ping, pod, dst, 1):
            return True
    return False


async def steady(dp: Dataplane, passes: int = 3) -> int:
    """Wait for ``passes`` full resyncs; the number of routes felix (re)wrote meanwhile."""
    before = dp.snapshot()["sync"]
    start_full = before["fullResyncs"]
    await eventually(lambda: dp.snapshot()["sync"]["fullResyncs"] >= start_full + passes,
                     timeout=RESYNC * (passes + 4) + 5)  # fmt: skip
    after = dp.snapshot()["sync"]
    return int(after["replaced"] - before["replaced"] + after["deleted"] - before["deleted"])


@pytest.fixture
def link(netns_factory: NetnsFactory) -> SimpleNamespace:
    """Two nodes on one IPv6-only link (no IPv4 address on it): 2001:db8:1::/64, fe80::a/b."""
    a = netns_factory.namespace("a")
    b = netns_factory.namespace("b")
    forwarding(a, b)
    netns_factory.veth(a, b, ["2001:db8:1::1/64", "fe80::a/64"], ["2001:db8:1::2/64", "fe80::b/64"],
                       "up0", "up0")  # fmt: skip
    return SimpleNamespace(a=a, b=b)


async def test_v6_pods_ping_directly_and_ipv4_rides_ipv6_next_hops(
    link: SimpleNamespace, netns_factory: NetnsFactory
) -> None:
    pod_a, veth_a = make_pod(netns_factory, link.a, "10.244.1.5", "fd00:10:0:1::5")
    pod_b, _veth_b = make_pod(netns_factory, link.b, "10.244.2.5", "fd00:10:0:2::5")
    dp_a = dataplane(link.a, "192.0.2.1/24", "2001:db8:1::1/64")
    dp_b = dataplane(link.b, "192.0.2.2/24", "2001:db8:1::2/64")
    for dp, n in ((dp_a, 1), (dp_b, 2)):
        dp.set_pools([V4_POOL, V6_POOL])
        dp.set_blocks([f"10.244.{n}.0/24", f"fd00:10:0:{n}::/122"])
    # a learns b's blocks with b's global address as next hop (an RFC 8950 session between
    # global addresses); b learns a's with a's link-local one (an unnumbered session on up0).
    announce(dp_a, "fd00:10:0:2::/122", "2001:db8:1::2")
    announce(dp_a, "10.244.2.0/24", "2001:db8:1::2")
    announce(dp_b, "fd00:10:0:1::/122", "fe80::a%up0")
    announce(dp_b, "10.244.1.0/24", "fe80::a%up0")
    want_a = {
        "blackhole 10.244.1.0/24",
        f"blackhole fd00:10:0:1::/122 dev lo {V6_METRIC}",
        f"10.244.1.5 dev {veth_a} scope link",
        f"fd00:10:0:1::5 dev {veth_a} {V6_METRIC}",
        f"fd00:10:0:2::/122 via 2001:db8:1::2 dev up0 {V6_METRIC}",
        "10.244.2.0/24 via inet6 2001:db8:1::2 dev up0",
    }
    async with running_dataplane(dp_a), running_dataplane(dp_b):
        await eventually(lambda: routes(link.a) == want_a)
        await eventually(lambda: "10.244.1.0/24 via inet6 fe80::a dev up0" in routes(link.b))
        assert f"fd00:10:0:1::/122 via fe80::a dev up0 {V6_METRIC}" in routes(link.b)
        assert dp_b.snapshot()["routes"]["skipped"] == {}
        for pod, dst in ((pod_a, "fd00:10:0:2::5"), (pod_b, "fd00:10:0:1::5"),
                         (pod_a, "10.244.2.5"), (pod_b, "10.244.1.5")):  # fmt: skip
            assert await pings(pod, dst), f"{pod} cannot reach {dst}"
        assert "via inet6 2001:db8:1::2" in route_get(link.a, "10.244.2.5")
        # Resyncs read every route back as planned (RTA_VIA included): nothing is rewritten.
        rewritten = [await steady(dp_a), await steady(dp_b)]
        print(f"\nroutes rewritten over 3 full resyncs per node: {rewritten}")
        assert rewritten == [0, 0]
        assert routes(link.a) == want_a
        # Deleted behind felix's back: repaired within the resync period.
        run(link.a, "ip", "route", "del", "10.244.2.0/24")
        run(link.a, "ip", "-6", "route", "del", "fd00:10:0:2::/122")
        run(link.b, "ip", "route", "del", "10.244.1.0/24")
        await eventually(lambda: routes(link.a) == want_a, timeout=RESYNC * 10)
        await eventually(lambda: "10.244.1.0/24 via inet6 fe80::a dev up0" in routes(link.b),
                         timeout=RESYNC * 10)  # fmt: skip
        assert await pings(pod_b, "10.244.1.5")


@pytest.fixture
def routed(netns_factory: NetnsFactory) -> SimpleNamespace:
    """Nodes a and b on different subnets of both families, joined by router r."""
    a, r, b = (netns_factory.namespace(tag) for tag in ("a", "r", "b"))
    forwarding(a, r, b)
    netns_factory.veth(a, r, ["192.0.2.1/24", "2001:db8:1::1/64"],
                       ["192.0.2.254/24", "2001:db8:1::ff/64"], "up0", "ra")  # fmt: skip
    netns_factory.veth(b, r, ["198.51.100.1/24", "2001:db8:2::1/64"],
                       ["198.51.100.254/24", "2001:db8:2::ff/64"], "up0", "rb")  # fmt: skip
    gateways = {a: ("192.0.2.254", "2001:db8:1::ff"), b: ("198.51.100.254", "2001:db8:2::ff")}
    for ns, (v4, v6) in gateways.items():
        run(ns, "ip", "route", "add", "default", "via", v4)
        run(ns, "ip", "-6", "route", "add", "default", "via", v6)
    return SimpleNamespace(a=a, r=r, b=b)


async def test_v6_pods_ping_over_vxlan_v6_across_subnets_beside_vxlan_v4(
    routed: SimpleNamespace, netns_factory: NetnsFactory
) -> None:
    a, b = routed.a, routed.b
    pod_a, _ = make_pod(netns_factory, a, "10.245.1.5", "fd00:10:0:1::5")
    pod_b, _ = make_pod(netns_factory, b, "10.245.2.5", "fd00:10:0:2::5")
    dp_a = dataplane(a, "192.0.2.1/24", "2001:db8:1::1/64")
    dp_b = dataplane(b, "198.51.100.1/24", "2001:db8:2::1/64")
    published: dict[str, dict[str, str]] = {}
    for dp, n in ((dp_a, 1), (dp_b, 2)):

        async def publish(vtep: dict[str, str], name: str = dp.node_name) -> None:
            published[name] = vtep

        dp.vtep_publisher = publish
        dp.set_pools([V4_VXLAN_POOL, V6_POOL])
        dp.set_blocks([f"10.245.{n}.0/24", f"fd00:10:0:{n}::/122"])
        dp.set_tunnel_address("vxlan.podbgp", f"10.245.{n}.0")
        dp.set_tunnel_address("vxlan-v6.podbgp", f"fd00:10:0:{n}::")
    nodes = {dp_a: ("192.0.2.1", "2001:db8:1::1", 1), dp_b: ("198.51.100.1", "2001:db8:2::1", 2)}
    for dp, other in ((dp_a, dp_b), (dp_b, dp_a)):
        v4, v6, n = nodes[other]
        announce(dp, f"10.245.{n}.0/24", v4)
        announce(dp, f"fd00:10:0:{n}::/122", v6)
    async with running_dataplane(dp_a), running_dataplane(dp_b):
        # Each node's VTEPs as the other reads them from its published record (the node agent
        # carries the record through the datastore).
        await eventually(lambda: [len(r) for r in published.values()] == [4, 4])
        for dp, other in ((dp_a, dp_b), (dp_b, dp_a)):
            v4, v6, _n = nodes[other]
            dp.set_nodes(vteps_of(published[other.node_name], v4, v6))
        await eventually(lambda: "dev vxlan-v6.podbgp" in route_get(a, "fd00:10:0:2::5"))
        await eventually(lambda: "dev vxlan-v6.podbgp" in route_get(b, "fd00:10:0:1::5"))
        assert (
            "fd00:10:0:2::/122 via fd00:10:0:2:: dev vxlan-v6.podbgp metric 1024 onlink mtu 1430 "
            "pref medium" in routes(a)
        )
        assert "10.245.2.0/24 via 10.245.2.0 dev vxlan.podbgp onlink mtu 1450" in routes(a)
        dev = links(a)
        v6dev, v4dev = dev["vxlan-v6.podbgp"], dev["vxlan.podbgp"]
        info6, info4 = v6dev["linkinfo"]["info_data"], v4dev["linkinfo"]["info_data"]  # type: ignore[index]
        assert (info6["id"], info6["port"], info6["local6"]) == (4096, 4789, "2001:db8:1::1")
        assert (info4["id"], info4["port"], info4["local"]) == (4096, 4789, "192.0.2.1")
        assert not info6["learning"]
        assert v6dev["mtu"] == 1430 and v6dev["address"] == vtep_mac(dp_a.node_name, 6)
        assert v6dev["address"] != v4dev["address"]
        addrs = run(a, "ip", "-6", "addr", "show", "dev", "vxlan-v6.podbgp").stdout
        assert "fd00:10:0:1::/128" in addrs
        neigh = run(a, "ip", "-6", "neigh", "show", "dev", "vxlan-v6.podbgp").stdout
        mac_b = vtep_mac(dp_b.node_name, 6)
        assert f"fd00:10:0:2:: lladdr {mac_b} PERMANENT" in neigh
        fdb = run(a, "bridge", "fdb", "show", "dev", "vxlan-v6.podbgp").stdout
        assert f"{mac_b} dst 2001:db8:2::1 self permanent" in fdb
        assert published[dp_a.node_name] == {
            "ip": "10.245.1.0",
            "mac": vtep_mac(dp_a.node_name),
            "ipv6": "fd00:10:0:1::",
            "macv6": vtep_mac(dp_a.node_name, 6),
        }
        async with captured(b, "ip6 and udp port 4789") as capture:
            assert await pings(pod_a, "fd00:10:0:2::5")
        out = capture[0]
        assert "2001:db8:1::1" in out and "fd00:10:0:1::5 > fd00:10:0:2::5" in out
        assert await pings(pod_b, "fd00:10:0:1::5")
        assert await pings(pod_a, "10.245.2.5")  # the IPv4 device shares VNI and port
        index = links(a)["vxlan-v6.podbgp"]["ifindex"]
        rewritten = await steady(dp_a)
        print(f"\nroutes rewritten over 3 full resyncs: {rewritten}")
        assert rewritten == 0
        assert links(a)["vxlan-v6.podbgp"]["ifindex"] == index  # never re-created
        run(a, "ip", "-6", "route", "del", "fd00:10:0:2::/122")
        run(a, "bridge", "fdb", "del", mac_b, "dev", "vxlan-v6.podbgp", "dst", "2001:db8:2::1")
        await eventually(lambda: "dev vxlan-v6.podbgp" in route_get(a, "fd00:10:0:2::5"),
                         timeout=RESYNC * 10)  # fmt: skip
        await eventually(
            lambda: mac_b in run(a, "bridge", "fdb", "show", "dev", "vxlan-v6.podbgp").stdout,
            timeout=RESYNC * 10,
        )
        assert await pings(pod_a, "fd00:10:0:2::5")
