"""felix's dataplane against real kernel routes in network namespaces (host kernel, no IPIP).

Each test drives a :class:`felix.dataplane.Dataplane` from the test process into a "node"
namespace (``netns=``), feeds it best routes the way the speaker would, and checks the kernel with
iproute2: every route kind, repair of a route deleted or changed behind felix's back within the
resync period, adoption (never a flush) across a restart, healing after an interface goes down
and up, and pod-to-pod forwarding over VXLAN. IPIP runs in a VM: tests/vm/test_ipip_vm.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from types import SimpleNamespace
from typing import Any

import pytest

from felix.dataplane import Dataplane
from felix.kernel.netlink import BULK_THRESHOLD, Netlink, ensure_protocol_name
from felix.plan import EncapMode, Pool, Route, Vtep
from felix.tunnels import vtep_mac
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

RESYNC = 0.5
POOL = Pool("10.244.0.0/16", ipip_mode=EncapMode.CROSS_SUBNET)
VXLAN_POOL = Pool("10.245.0.0/16", vxlan_mode=EncapMode.ALWAYS)


def announce(dp: Dataplane, prefix: str, next_hop: str | None) -> None:
    if next_hop:
        dp.set_route(prefix, next_hop)
    else:
        dp.remove_route(prefix)


def dataplane(ns: str, address: str, uplink: str, **kw: Any) -> Dataplane:
    kw.setdefault("resync_interval", RESYNC)
    kw.setdefault("converge_timeout", 3600.0)  # tests decide when the speaker has converged
    return Dataplane(
        f"node-{ns}", address, uplink, 80, netns=ns, register_protocol_name=False, **kw
    )


@pytest.fixture
def lan(netns_factory: NetnsFactory) -> SimpleNamespace:
    """A node and its same-subnet neighbour: node 192.0.2.1/24 on ``up0``."""
    node = netns_factory.namespace("n")
    peer = netns_factory.namespace("q")
    netns_factory.veth(node, peer, ["192.0.2.1/24"], ["192.0.2.2/24"], "up0", "up0")
    return SimpleNamespace(node=node, peer=peer)


async def test_every_route_kind_is_programmed_with_our_protocol(
    lan: SimpleNamespace, netns_factory: NetnsFactory
) -> None:
    _pod, host_veth = make_pod(netns_factory, lan.node, "10.244.1.7")
    dp = dataplane(lan.node, "192.0.2.1/24", "up0")
    dp.set_pools([POOL, VXLAN_POOL])
    dp.set_blocks(["10.244.1.0/24"])
    dp.set_tunnel_address("vxlan.podbgp", "10.245.1.0")
    dp.set_nodes([Vtep("192.0.2.2", "10.245.2.0", "66:00:00:00:00:02")])
    announce(dp, "10.244.2.0/24", "192.0.2.2")  # same subnet: direct
    announce(dp, "10.244.3.0/24", "198.51.100.3")  # other subnet: tunl0, absent here
    announce(dp, "10.245.2.0/24", "192.0.2.2")  # VXLAN Always
    async with running_dataplane(dp):
        want = {
            "blackhole 10.244.1.0/24",
            "10.244.2.0/24 via 192.0.2.2 dev up0",
            f"10.244.1.7 dev {host_veth} scope link",
            "10.245.2.0/24 via 10.245.2.0 dev vxlan.podbgp onlink mtu 1450",
        }
        await eventually(lambda: routes(lan.node) == want)
        neigh = run(lan.node, "ip", "neigh", "show", "dev", "vxlan.podbgp").stdout
        assert "10.245.2.0 lladdr 66:00:00:00:00:02 PERMANENT" in neigh
        fdb = run(lan.node, "bridge", "fdb", "show", "dev", "vxlan.podbgp").stdout
        assert "66:00:00:00:00:02 dst 192.0.2.2 self permanent" in fdb
        vx = links(lan.node)["vxlan.podbgp"]
        assert vx["mtu"] == 1450 and vx["address"] == vtep_mac(dp.node_name)
        assert vx["linkinfo"]["info_data"]["id"] == 4096
        assert vx["linkinfo"]["info_data"]["port"] == 4789
        snap = dp.snapshot()
        # No ipip module in this kernel: said in words, and the route is not faked.
        assert snap["tunnels"]["tunl0"]["error"] == "the kernel lacks the ipip module"
        assert snap["routes"]["skipped"]["10.244.3.0/24"] == "tunl0 is not available"
        assert snap["pods"] == {"10.244.1.7": host_veth}
        index = vx["ifindex"]
        await dp.wait_synced()
        await dp.wait_synced()  # full resyncs leave a converged device alone
        assert links(lan.node)["vxlan.podbgp"]["ifindex"] == index


async def test_route_deleted_or_changed_by_hand_is_repaired_within_the_resync_period(
    lan: SimpleNamespace,
) -> None:
    dp = dataplane(lan.node, "192.0.2.1/24", "up0")
    dp.set_pools([POOL])
    dp.set_blocks(["10.244.1.0/24"])
    announce(dp, "10.244.2.0/24", "192.0.2.2")
    async with running_dataplane(dp):
        direct = "10.244.2.0/24 via 192.0.2.2 dev up0"
        await eventually(lambda: direct in routes(lan.node))
        run(lan.node, "ip", "route", "del", "10.244.2.0/24")
        run(lan.node, "ip", "route", "del", "blackhole", "10.244.1.0/24")
        assert direct not in routes(lan.node)
        await eventually(
            lambda: {direct, "blackhole 10.244.1.0/24"} <= routes(lan.node), timeout=RESYNC * 10
        )
        run(lan.node, "ip", "route", "replace", "10.244.2.0/24", "via", "192.0.2.9", "dev", "up0",
            "proto", "80")  # fmt: skip
        await eventually(lambda: direct in routes(lan.node), timeout=RESYNC * 10)
        assert dp.snapshot()["sync"]["fullResyncs"] >= 3


async def test_withdrawn_route_is_removed_and_foreign_routes_are_never_touched(
    lan: SimpleNamespace,
) -> None:
    run(lan.node, "ip", "route", "add", "10.99.0.0/24", "via", "192.0.2.2", "proto", "static")
    run(lan.node, "ip", "route", "add", "10.244.5.0/24", "via", "192.0.2.2", "proto", "static")
    dp = dataplane(lan.node, "192.0.2.1/24", "up0")
    dp.set_pools([POOL])
    dp.mark_converged()
    announce(dp, "10.244.2.0/24", "192.0.2.2")
    announce(dp, "10.244.5.0/24", "192.0.2.2")  # held by someone else's static route
    async with running_dataplane(dp):
        await eventually(lambda: "10.244.2.0/24 via 192.0.2.2 dev up0" in routes(lan.node))
        announce(dp, "10.244.2.0/24", None)
        await eventually(lambda: routes(lan.node) == set())
        static = routes(lan.node, "static")
        assert static == {
            "10.99.0.0/24 via 192.0.2.2 dev up0",
            "10.244.5.0/24 via 192.0.2.2 dev up0",
        }
        assert dp.snapshot()["routes"]["conflicts"] == ["10.244.5.0/24"]


async def test_restart_adopts_existing_routes_and_removes_leftovers_only_after_convergence(
    lan: SimpleNamespace,
) -> None:
    first = dataplane(lan.node, "192.0.2.1/24", "up0")
    first.set_pools([POOL])
    first.set_blocks(["10.244.1.0/24"])
    announce(first, "10.244.2.0/24", "192.0.2.2")
    announce(first, "10.244.4.0/24", "192.0.2.2")
    installed = {
        "blackhole 10.244.1.0/24",
        "10.244.2.0/24 via 192.0.2.2 dev up0",
        "10.244.4.0/24 via 192.0.2.2 dev up0",
    }
    async with running_dataplane(first):
        await eventually(lambda: routes(lan.node) == installed)
    assert routes(lan.node) == installed  # stopping never flushes
    second = dataplane(lan.node, "192.0.2.1/24", "up0")
    second.set_pools([POOL])
    second.set_blocks(["10.244.1.0/24"])
    async with running_dataplane(second):
        # The new speaker has not re-learned anything yet: everything stays (adopted).
        await second.wait_synced()
        assert routes(lan.node) == installed
        assert second.snapshot()["routes"]["adoptedPendingConvergence"] == 2
        announce(second, "10.244.2.0/24", "192.0.2.2")
        second.mark_converged()  # End-of-RIB from every peer: 10.244.4.0/24 was not re-learned
        await eventually(
            lambda: routes(lan.node) == installed - {"10.244.4.0/24 via 192.0.2.2 dev up0"}
        )
        assert second.snapshot()["sync"]["deleted"] == 1


async def test_interface_down_and_up_is_healed(
    lan: SimpleNamespace, netns_factory: NetnsFactory
) -> None:
    _pod, host_veth = make_pod(netns_factory, lan.node, "10.244.1.7")
    dp = dataplane(lan.node, "192.0.2.1/24", "up0", resync_interval=30.0)  # link events heal
    dp.set_pools([POOL, VXLAN_POOL])
    dp.set_blocks(["10.244.1.0/24"])
    dp.set_tunnel_address("vxlan.podbgp", "10.245.1.0")
    announce(dp, "10.244.2.0/24", "192.0.2.2")
    async with running_dataplane(dp):
        direct = "10.244.2.0/24 via 192.0.2.2 dev up0"
        pod = f"10.244.1.7 dev {host_veth} scope link"
        await eventually(lambda: {direct, pod} <= routes(lan.node))
        for dev, route in (("up0", direct), (host_veth, pod)):
            run(lan.node, "ip", "link", "set", dev, "down")
            await eventually(lambda route=route: route not in routes(lan.node))  # kernel drops it
            run(lan.node, "ip", "link", "set", dev, "up")
            await eventually(lambda route=route: route in routes(lan.node))
        run(lan.node, "ip", "link", "set", "vxlan.podbgp", "down")
        await eventually(lambda: "UP" in links(lan.node)["vxlan.podbgp"]["flags"])
        run(lan.node, "ip", "link", "del", "vxlan.podbgp")
        await eventually(lambda: "vxlan.podbgp" in links(lan.node))
        addrs = run(lan.node, "ip", "-4", "addr", "show", "dev", "vxlan.podbgp").stdout
        assert "10.245.1.0/32" in addrs


async def test_pods_on_two_nodes_reach_each_other_over_vxlan(netns_factory: NetnsFactory) -> None:
    a = netns_factory.namespace("a")
    b = netns_factory.namespace("b")
    netns_factory.veth(a, b, ["192.0.2.1/24"], ["192.0.2.2/24"], "up0", "up0")
    for ns in (a, b):
        run(ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    pod_a, _ = make_pod(netns_factory, a, "10.245.1.5")
    pod_b, _ = make_pod(netns_factory, b, "10.245.2.5")
    dp_a = dataplane(a, "192.0.2.1/24", "up0")
    dp_b = dataplane(b, "192.0.2.2/24", "up0")
    for dp, block, vtep_ip in (
        (dp_a, "10.245.1.0/24", "10.245.1.0"),
        (dp_b, "10.245.2.0/24", "10.245.2.0"),
    ):
        dp.set_pools([VXLAN_POOL])
        dp.set_blocks([block])
        dp.set_tunnel_address("vxlan.podbgp", vtep_ip)
    dp_a.set_nodes([Vtep("192.0.2.2", "10.245.2.0", vtep_mac(dp_b.node_name))])
    dp_b.set_nodes([Vtep("192.0.2.1", "10.245.1.0", vtep_mac(dp_a.node_name))])
    announce(dp_a, "10.245.2.0/24", "192.0.2.2")
    announce(dp_b, "10.245.1.0/24", "192.0.2.1")
    async with running_dataplane(dp_a), running_dataplane(dp_b):
        await eventually(lambda: "dev vxlan.podbgp" in route_get(a, "10.245.2.5"))
        await eventually(lambda: "dev vxlan.podbgp" in route_get(b, "10.245.1.5"))
        async with captured(b, "udp port 4789") as capture:
            assert await asyncio.to_thread(ping, pod_a, "10.245.2.5", 3)
            assert await asyncio.to_thread(ping, pod_b, "10.245.1.5", 1)
        out = capture[0]
        assert "VXLAN" in out or "4789" in out
        assert "10.245.1.5 > 10.245.2.5" in out


def test_protocol_name_is_registered_once(tmp_path: Any) -> None:
    directory = tmp_path / "rt_protos.d"
    first = ensure_protocol_name(80, directory=directory)
    assert first == directory / "podbgp.conf"
    assert "80\tpodbgp" in first.read_text()
    assert ensure_protocol_name(80, directory=directory) is None  # idempotent
    (directory / "other.conf").write_text("81 podbgp\n")
    assert ensure_protocol_name(81, directory=directory) is None  # someone else named it


async def test_bulk_and_per_request_paths_program_identical_routes(
    netns_factory: NetnsFactory,
) -> None:
    """Large diffs go through felix.kernel.batch; it must write exactly what pyroute2 writes."""
    from felix.kernel.netlink import BULK_THRESHOLD, Netlink
    from felix.plan import Route, RouteType, Scope, canonical

    spaces = []
    for _ in range(2):
        ns = netns_factory.namespace("k")
        peer = netns_factory.namespace("q")
        netns_factory.veth(
            ns, peer, ["192.0.2.1/24", "2001:db8::1/64"], ["192.0.2.2/24"], "up0", "up0"
        )
        spaces.append(ns)
    kinds = [
        lambda i: Route(f"10.244.{i}.0/24", gateway="192.0.2.2", dev="up0"),
        lambda i: Route(f"10.245.{i}.0/24", RouteType.BLACKHOLE),
        lambda i: Route(
            f"10.246.{i}.0/24", gateway="198.51.100.9", dev="up0", onlink=True, mtu=1450
        ),
        lambda i: Route(f"10.247.0.{i}/32", dev="up0", scope=Scope.LINK),
        lambda i: Route(canonical(f"fd00:10:0:{i:x}::/64"), gateway="2001:db8::2", dev="up0"),
        lambda i: Route(f"10.248.{i}.0/24", gateway="2001:db8::2", dev="up0"),  # via inet6
        lambda i: Route(f"10.249.{i}.0/24", gateway="fe80::2", dev="up0"),
        lambda i: Route(canonical(f"fd00:11:0:{i:x}::/64"), gateway="fe80::2", dev="up0"),
        lambda i: Route(canonical(f"fd00:12::{i:x}/128"), dev="up0"),
    ]
    wanted = [kind(i) for i in range(40) for kind in kinds]
    assert len(wanted) >= BULK_THRESHOLD
    bad = [Route("10.250.0.0/24", gateway="198.51.100.9", dev="up0")]  # gateway not on-link
    async with Netlink(80, spaces[0]) as bulk, Netlink(80, spaces[1]) as single:
        bulk_errors = await bulk.apply_routes([*wanted, *bad], [])
        single_errors = []
        for route in [*wanted, *bad]:
            single_errors += await single.apply_routes([route], [])
        assert [e.what for e in bulk_errors] == [e.what for e in single_errors]
        assert len(bulk_errors) == 1 and "10.250.0.0/24" in bulk_errors[0].what
        assert routes(spaces[0]) == routes(spaces[1])
        assert len(routes(spaces[0])) == len(wanted)
        assert set((await bulk.dump_routes()).own.values()) == set(wanted)
        assert await bulk.apply_routes([], [*wanted, *bad]) == []  # a missing route is no error
        assert routes(spaces[0]) == set()
        for route in [*wanted, *bad]:
            assert await single.apply_routes([], [route]) == []
        assert routes(spaces[1]) == set()


async def test_update_to_kernel_latency_counts_each_route_change_once_the_kernel_has_it(
    lan: SimpleNamespace,
) -> None:
    dp = dataplane(lan.node, "192.0.2.1/24", "up0", resync_interval=3600.0)
    dp.set_pools([POOL])
    dp.mark_converged()
    async with running_dataplane(dp):
        assert dp.latency.count == 0
        dp.set_route("10.244.2.0/24", "192.0.2.2", received=time.monotonic())
        await eventually(lambda: "10.244.2.0/24 via 192.0.2.2 dev up0" in routes(lan.node))
        await eventually(lambda: dp.latency.count == 1)
        assert dp.latency.sum > 0
        dp.remove_route("10.244.2.0/24", received=time.monotonic())
        dp.set_route("10.244.9.0/24", "192.0.2.2")  # no receive time: not counted
        await eventually(lambda: routes(lan.node) == {"10.244.9.0/24 via 192.0.2.2 dev up0"})
        await eventually(lambda: dp.latency.count == 2)
        summary = dp.snapshot()["updateToKernel"]
        print(f"\nfelix alone, change -> kernel acknowledged: {summary}")
        assert summary["samples"] == 2 and summary["p99Ms"] > 0
        assert dp.latency.cumulative()[-1] == (math.inf, 2)


@pytest.mark.parametrize("count", [2, BULK_THRESHOLD + 1], ids=["one-by-one", "bulk"])
async def test_a_refused_route_is_reported_and_the_rest_of_its_batch_still_written(
    lan: SimpleNamespace, count: int
) -> None:
    """An onlink route through a device that is down (tunl0 before it is up) is refused; the
    routes before and after it in the same write are installed all the same."""
    run(lan.node, "ip", "link", "add", "dn0", "type", "veth", "peer", "name", "dn1")  # down
    refused = Route("10.244.2.0/24", gateway="198.51.100.2", dev="dn0", onlink=True)
    good = [Route(f"10.245.{n}.0/24", gateway="192.0.2.2", dev="up0") for n in range(count)]
    async with Netlink(80, lan.node) as nl:
        errors = await nl.apply_routes([good[0], refused, *good[1:]], [])
    assert [e.what for e in errors] == [f"replace {refused.describe()}"]
    assert "Network is down" in errors[0].error
    assert routes(lan.node) == {f"{r.dst} via 192.0.2.2 dev up0" for r in good}


async def test_refusals_are_matched_to_their_routes_across_many_sends(
    lan: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch larger than one send (sends of 4, 16, 64, ... requests here; thousands in
    production): only each send's last request asks for an acknowledgement, yet every refusal
    names its own route — first and last of a send, a send's last request, the batch's last —
    and every other route is written. A send where everything fails still ends cleanly."""
    from felix.kernel import batch

    monkeypatch.setattr(batch, "FIRST_CHUNK", 4)
    monkeypatch.setattr(batch, "MIN_CHUNK", 4)
    monkeypatch.setattr(batch, "MAX_CHUNK", 64)
    run(lan.node, "ip", "link", "add", "dn0", "type", "veth", "peer", "name", "dn1")  # down
    at = {0, 3, 4, 19, 20, 83, 84, 300, 601}  # sends end after requests 4, 20, 84, 148, ...
    work = [
        Route(f"10.246.{n // 250}.{n % 250}/32", gateway="198.51.100.2", dev="dn0", onlink=True)
        if n in at
        else Route(f"10.245.{n // 250}.{n % 250}/32", gateway="192.0.2.2", dev="up0")
        for n in range(602)
    ]
    refused = [r for r in work if r.dev == "dn0"]
    wanted = [r for r in work if r.dev == "up0"]
    async with Netlink(80, lan.node) as nl:
        errors = await nl.apply_routes(work, [])
        assert [e.what for e in errors] == [f"replace {r.describe()}" for r in refused]
        assert len(routes(lan.node)) == len(wanted)
        all_down = [Route(f"10.248.0.{n}/32", gateway="198.51.100.2", dev="dn0", onlink=True)
                    for n in range(200)]  # fmt: skip
        errors = await nl.apply_routes(all_down, [])
        assert len(errors) == 200 and all("Network is down" in e.error for e in errors)
        assert await nl.apply_routes([], wanted) == []
    assert routes(lan.node) == set()


def count_link_dumps(dp: Dataplane) -> list[int]:
    """Count ``dp``'s link dumps (the real dump still runs): ``[count]``."""
    dumps = [0]
    dump_links = dp.nl.links

    async def counted() -> Any:
        dumps[0] += 1
        return await dump_links()

    dp.nl.links = counted  # type: ignore[method-assign]
    return dumps


async def test_a_pass_dumps_the_links_once_whether_it_writes_routes_or_resyncs(
    lan: SimpleNamespace,
) -> None:
    """The plan's link dump also names the devices of the routes written and dumped in that pass
    (a dump of the node's links is the dearest read of a pass with a few pods)."""
    dp = dataplane(lan.node, "192.0.2.1/24", "up0", resync_interval=0.2)
    dp.set_pools([POOL])
    dumps = count_link_dumps(dp)
    async with running_dataplane(dp):
        start, before = dp.snapshot()["sync"], dumps[0]
        for n in range(3):
            dp.set_route(f"10.244.{2 + n}.0/24", "192.0.2.2")
            await eventually(
                lambda n=n: f"10.244.{2 + n}.0/24 via 192.0.2.2 dev up0" in routes(lan.node)
            )
        await dp.wait_synced()
        await dp.wait_synced()  # a full resync or more (every 0.2 s) among the passes
        end = dp.snapshot()["sync"]
    assert end["replaced"] - start["replaced"] >= 3 and end["fullResyncs"] > start["fullResyncs"]
    # Each full resync dumps; a pass of a burst may reuse the last dump (see the next test).
    assert end["fullResyncs"] - start["fullResyncs"] <= dumps[0] - before
    assert dumps[0] - before <= end["passes"] - start["passes"]


async def test_passes_of_a_burst_reuse_the_link_dump_until_a_link_changes(
    lan: SimpleNamespace,
) -> None:
    """Route changes in quick succession (a table arriving) plan against the last link dump
    while the link monitor reports nothing; a link event makes the next pass dump again."""
    dp = dataplane(lan.node, "192.0.2.1/24", "up0", resync_interval=60.0)
    dp.set_pools([POOL])
    dumps = count_link_dumps(dp)
    async with running_dataplane(dp):
        start, before = dp.snapshot()["sync"]["passes"], dumps[0]
        for n in range(6):
            dp.set_route(f"10.244.{2 + n}.0/24", "192.0.2.2")
            await eventually(
                lambda n=n: f"10.244.{2 + n}.0/24 via 192.0.2.2 dev up0" in routes(lan.node),
                interval=0.005,
            )
        passes = dp.snapshot()["sync"]["passes"] - start
        assert passes >= 6 and dumps[0] - before < passes, (passes, dumps[0] - before)
        before = dumps[0]
        run(lan.node, "ip", "link", "add", "ev0", "type", "veth", "peer", "name", "ev1")  # a pass
        await eventually(lambda: dumps[0] > before)
        dp.set_route("10.244.9.0/24", "192.0.2.2")  # written with the new dump's indexes
        await eventually(lambda: "10.244.9.0/24 via 192.0.2.2 dev up0" in routes(lan.node))


async def test_a_link_event_heals_only_the_routes_through_that_link(
    lan: SimpleNamespace, netns_factory: NetnsFactory
) -> None:
    """No full resync (resync period 60 s): a link coming back up re-installs the routes through
    it, one write each, and nothing else is rewritten or re-read."""
    _pod1, veth1 = make_pod(netns_factory, lan.node, "10.244.1.7")
    _pod2, veth2 = make_pod(netns_factory, lan.node, "10.244.1.8")
    dp = dataplane(lan.node, "192.0.2.1/24", "up0", resync_interval=60.0)
    dp.set_pools([POOL])
    dp.set_blocks(["10.244.1.0/24"])
    announce(dp, "10.244.2.0/24", "192.0.2.2")
    announce(dp, "10.244.3.0/24", "192.0.2.3")
    direct = {"10.244.2.0/24 via 192.0.2.2 dev up0", "10.244.3.0/24 via 192.0.2.3 dev up0"}
    pod1 = f"10.244.1.7 dev {veth1} scope link"
    pod2 = f"10.244.1.8 dev {veth2} scope link"
    async with running_dataplane(dp):
        await eventually(lambda: direct | {pod1, pod2} <= routes(lan.node))
        start = dp.snapshot()["sync"]
        for dev, dependants in ((veth1, {pod1}), ("up0", direct)):
            before = dp.snapshot()["sync"]["replaced"]
            run(lan.node, "ip", "link", "set", dev, "down")
            await eventually(lambda d=dependants: not d & routes(lan.node))  # the kernel drops them
            run(lan.node, "ip", "link", "set", dev, "up")
            await eventually(lambda d=dependants: d <= routes(lan.node))
            assert dp.snapshot()["sync"]["replaced"] - before == len(dependants)
            assert pod2 in routes(lan.node)
        end = dp.snapshot()["sync"]
        assert end["fullResyncs"] == start["fullResyncs"]  # no dump of the kernel's table
        assert end["linkHeals"] >= 2 and end["errors"] == 0
