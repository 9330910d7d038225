"""felix.reconcile: the pure diff, and one reconciler pass against an in-memory route table.

The in-memory table stands in for the kernel only to pin down the reconciler's bookkeeping
(adopt before convergence, cached incremental passes, re-dump after an error); the same loop is
exercised against real kernel routes in tests/integration/test_felix_routes.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from felix.plan import FdbEntry, Neighbour, Plan, Route, RouteType, Scope
from felix.reconcile import (
    ApplyError,
    KernelRoutes,
    Reconciler,
    diff_routes,
    diff_sets,
    diff_touched,
)

A = Route("10.244.2.0/24", gateway="192.0.2.2", dev="eth0")
A2 = Route("10.244.2.0/24", gateway="192.0.2.3", dev="eth0")
B = Route("10.244.3.0/24", gateway="198.51.100.7", dev="tunl0", onlink=True, mtu=1480)
HOLE = Route("10.244.1.0/24", RouteType.BLACKHOLE)


def test_missing_and_changed_routes_are_replaced_equal_ones_untouched() -> None:
    diff = diff_routes(
        {A.dst: A2, B.dst: B, HOLE.dst: HOLE}, {A.dst: A, HOLE.dst: HOLE}, converged=True
    )
    assert set(diff.replace) == {A2, B}
    assert diff.delete == () and diff.kept == ()


def test_unwanted_routes_are_adopted_until_converged_then_deleted() -> None:
    before = diff_routes({HOLE.dst: HOLE}, {HOLE.dst: HOLE, B.dst: B}, converged=False)
    assert before.delete == () and before.kept == (B,) and before.empty
    after = diff_routes({HOLE.dst: HOLE}, {HOLE.dst: HOLE, B.dst: B}, converged=True)
    assert after.delete == (B,) and after.kept == ()


def test_destination_held_by_another_protocol_is_not_taken_over() -> None:
    diff = diff_routes({A.dst: A}, {}, converged=True, foreign=[A.dst])
    assert diff.replace == () and diff.conflicts == (A.dst,)
    # Our own route to the same destination may still be updated.
    diff = diff_routes({A.dst: A2}, {A.dst: A}, converged=True, foreign=[A.dst])
    assert diff.replace == (A2,) and diff.conflicts == ()


def test_diff_sets_adds_and_removes() -> None:
    n1 = Neighbour("vxlan.podbgp", "10.245.2.0", "66:00:00:00:00:02")
    n2 = Neighbour("vxlan.podbgp", "10.245.3.0", "66:00:00:00:00:03")
    assert diff_sets(frozenset({n1, n2}), frozenset({n2})) == ([n1], [])
    assert diff_sets(frozenset({n1}), frozenset({n2})) == ([n1], [n2])


class TableKernel:
    """felix's route table as a dict, counting dumps; ``refuse`` makes replaces fail."""

    def __init__(self, routes: Sequence[Route] = (), foreign: Sequence[str] = ()) -> None:
        self.routes = {r.dst: r for r in routes}
        self.foreign = frozenset(foreign)
        self.dumps = 0
        self.refuse: set[str] = set()

    async def dump_routes(self) -> KernelRoutes:
        self.dumps += 1
        return KernelRoutes(dict(self.routes), self.foreign)

    async def apply_routes(
        self, replace: Sequence[Route], delete: Sequence[Route]
    ) -> list[ApplyError]:
        errors = []
        for route in delete:
            self.routes.pop(route.dst, None)
        for route in replace:
            if route.dst in self.refuse:
                errors.append(ApplyError(f"replace {route.dst}", "Network is unreachable"))
                continue
            self.routes[route.dst] = route
        return errors

    async def dump_neighbours(self, dev: str) -> frozenset[Neighbour]:
        return frozenset()

    async def dump_fdb(self, dev: str) -> frozenset[FdbEntry]:
        return frozenset()

    async def apply_neighbours(
        self, add: Sequence[Neighbour], remove: Sequence[Neighbour]
    ) -> list[ApplyError]:
        return []

    async def apply_fdb(
        self, add: Sequence[FdbEntry], remove: Sequence[FdbEntry]
    ) -> list[ApplyError]:
        return []


def reconciler(kernel: TableKernel, routes: dict[str, Route]) -> Reconciler:
    async def source(full: bool) -> Plan:
        return Plan(dict(routes), frozenset(), frozenset(), {})

    return Reconciler(kernel, source)


async def test_first_pass_adopts_existing_routes_and_installs_missing_ones() -> None:
    kernel = TableKernel([B])  # left by a previous run
    rec = reconciler(kernel, {HOLE.dst: HOLE, A.dst: A})
    diff = await rec.sync_once(full=False)  # no cache yet: dumps anyway
    assert kernel.dumps == 1
    assert kernel.routes == {HOLE.dst: HOLE, A.dst: A, B.dst: B}
    assert diff.kept == (B,) and rec.stats.kept == 1
    rec.mark_converged()
    await rec.sync_once(full=False)
    assert kernel.routes == {HOLE.dst: HOLE, A.dst: A}
    assert rec.stats.deleted == 1


async def test_incremental_pass_uses_the_cache_and_full_pass_repairs() -> None:
    kernel = TableKernel()
    desired = {A.dst: A}
    rec = reconciler(kernel, desired)
    rec.mark_converged()
    await rec.sync_once(full=True)
    desired[B.dst] = B
    await rec.sync_once(full=False)
    assert kernel.dumps == 1 and kernel.routes == {A.dst: A, B.dst: B}
    del kernel.routes[A.dst]  # deleted behind felix's back
    await rec.sync_once(full=False)
    assert A.dst not in kernel.routes  # the cache cannot know...
    await rec.sync_once(full=True)
    assert kernel.routes[A.dst] == A  # ...the periodic full resync does


async def test_a_refused_change_is_reported_and_forces_a_dump_next_time() -> None:
    kernel = TableKernel()
    kernel.refuse.add(B.dst)
    rec = reconciler(kernel, {A.dst: A, B.dst: B})
    await rec.sync_once(full=True)
    assert rec.stats.errors == 1
    assert rec.stats.last_errors[0].what == f"replace {B.dst}"
    kernel.refuse.clear()
    await rec.sync_once(full=False)
    assert kernel.dumps == 2 and kernel.routes[B.dst] == B


async def test_conflicting_foreign_route_is_left_and_reported() -> None:
    kernel = TableKernel(foreign=[A.dst])
    rec = reconciler(kernel, {A.dst: A, HOLE.dst: HOLE})
    await rec.sync_once(full=True)
    assert kernel.routes == {HOLE.dst: HOLE}
    assert rec.stats.conflicts == (A.dst,)


async def test_an_incremental_plan_is_diffed_only_where_it_touched() -> None:
    """A plan with ``touched`` (felix.plan.replan) costs its changes, not the table: routes it
    did not touch are not compared, even when they differ in the kernel; kept and conflict
    counts carry over from earlier passes."""
    kernel = TableKernel([B], foreign=["10.244.9.0/24"])  # B: adopted, unwanted
    held = Route("10.244.9.0/24", gateway="192.0.2.2", dev="up0")
    plans = [
        Plan({A.dst: A, held.dst: held}, frozenset(), frozenset(), {}),
        Plan({A.dst: A2, held.dst: held}, frozenset(), frozenset(), {}, frozenset({A.dst})),
    ]

    async def source(full: bool) -> Plan:
        return plans[0] if full else plans[1]

    rec = Reconciler(kernel, source)
    await rec.sync_once(full=True)
    assert kernel.routes == {A.dst: A, B.dst: B}
    assert rec.stats.kept == 1 and rec.stats.conflicts == (held.dst,)
    kernel.routes[B.dst] = HOLE  # changed behind our back: only a full pass would notice
    diff = await rec.sync_once(full=False)
    assert diff.replace == (A2,) and diff.delete == () and kernel.dumps == 1
    assert kernel.routes == {A.dst: A2, B.dst: HOLE}
    assert rec.stats.kept == 1 and rec.stats.conflicts == (held.dst,)


class EntryKernel(TableKernel):
    """Also holds permanent neighbour and FDB entries, per device."""

    def __init__(self) -> None:
        super().__init__()
        self.neighbours: set[Neighbour] = set()
        self.fdb: set[FdbEntry] = set()
        self.dumped: list[str] = []

    async def dump_neighbours(self, dev: str) -> frozenset[Neighbour]:
        self.dumped.append(dev)
        return frozenset(n for n in self.neighbours if n.dev == dev)

    async def dump_fdb(self, dev: str) -> frozenset[FdbEntry]:
        return frozenset(f for f in self.fdb if f.dev == dev)

    async def apply_neighbours(
        self, add: Sequence[Neighbour], remove: Sequence[Neighbour]
    ) -> list[ApplyError]:
        self.neighbours.difference_update(remove)
        self.neighbours.update(add)
        return []

    async def apply_fdb(
        self, add: Sequence[FdbEntry], remove: Sequence[FdbEntry]
    ) -> list[ApplyError]:
        self.fdb.difference_update(remove)
        self.fdb.update(add)
        return []


async def test_entries_of_both_vxlan_devices_follow_the_plan_each_on_its_own_device() -> None:
    n4 = Neighbour("vxlan.podbgp", "10.245.2.0", "66:00:00:00:04:02")
    n6 = Neighbour("vxlan-v6.podbgp", "fd00:10:0:2::", "66:00:00:00:06:02")
    f4 = FdbEntry("vxlan.podbgp", "66:00:00:00:04:02", "192.0.2.2")
    f6 = FdbEntry("vxlan-v6.podbgp", "66:00:00:00:06:02", "2001:db8:2::1")
    stale = Neighbour("vxlan-v6.podbgp", "fd00:10:0:9::", "66:00:00:00:06:09")
    kernel = EntryKernel()
    kernel.neighbours.add(stale)
    plan = Plan({}, frozenset({n4, n6}), frozenset({f4, f6}), {})

    async def source(full: bool) -> Plan:
        return plan

    rec = Reconciler(kernel, source, vxlan_devices=("vxlan.podbgp", "vxlan-v6.podbgp"))
    await rec.sync_once(full=True)
    assert kernel.neighbours == {n4, n6, stale}  # adopted until the speaker has converged
    assert kernel.fdb == {f4, f6}
    rec.mark_converged()
    await rec.sync_once(full=True)
    assert kernel.neighbours == {n4, n6}
    # A device that is not up is left alone: its entries are not even read.
    rec.vxlan_devices = ("vxlan.podbgp",)
    kernel.dumped.clear()
    await rec.sync_once(full=True)
    assert kernel.dumped == ["vxlan.podbgp"]


async def test_vxlan_entries_stay_when_convergence_comes_during_a_pass_planned_before() -> None:
    """The speaker was replaced (its new table still empty): felix adopts the kernel's routes
    and VXLAN entries. Convergence declared while that pass is being written must not let the
    pass delete the entries its own (pre-convergence) plan left out: its routes stay adopted,
    so the entries that carry them must stay too (a lost packet otherwise)."""
    vtep = Neighbour("vxlan.podbgp", "10.244.75.1", "66:00:00:00:04:02")
    fdb = FdbEntry("vxlan.podbgp", "66:00:00:00:04:02", "192.0.2.12")
    route = Route("10.244.75.0/24", gateway="10.244.75.1", dev="vxlan.podbgp", onlink=True)
    rec: Reconciler

    class ConvergingKernel(EntryKernel):
        async def dump_neighbours(self, dev: str) -> frozenset[Neighbour]:
            rec.mark_converged()  # End-of-RIB from every peer arrives during the write
            return await super().dump_neighbours(dev)

    kernel = ConvergingKernel()
    kernel.routes[route.dst] = route
    kernel.neighbours.add(vtep)
    kernel.fdb.add(fdb)
    plans = [Plan({}, frozenset(), frozenset(), {}), Plan({route.dst: route}, frozenset({vtep}),
                                                         frozenset({fdb}), {})]  # fmt: skip

    async def source(full: bool) -> Plan:
        return plans[0] if not rec.converged else plans[1]

    rec = Reconciler(kernel, source, vxlan_devices=("vxlan.podbgp",))
    await rec.sync_once(full=True)
    assert rec.converged
    assert kernel.routes == {route.dst: route}
    assert kernel.neighbours == {vtep} and kernel.fdb == {fdb}


async def test_routes_stay_when_the_speaker_is_replaced_while_a_pass_is_planned() -> None:
    """A pass starts converged; while it plans, the speaker is replaced (felix forgets its
    routes: ``unconverge``) and the plan comes out of the emptied table. That pass must adopt
    the kernel's routes, not delete them (a cluster lost 1.8 s of pings so)."""
    kernel = TableKernel()
    kernel.routes[A.dst] = A
    rec: Reconciler
    replaced = False

    async def source(full: bool) -> Plan:
        nonlocal replaced
        if rec.converged and not replaced:
            await asyncio.sleep(0)  # planning yields: the agent replaces the speaker now
            rec.unconverge()
            replaced = True
            return Plan({}, frozenset(), frozenset(), {})
        return Plan({A.dst: A}, frozenset(), frozenset(), {})

    rec = Reconciler(kernel, source)
    rec.mark_converged()
    diff = await rec.sync_once(full=True)
    assert replaced and not rec.converged
    assert diff.delete == () and diff.kept == (A,)
    assert kernel.routes == {A.dst: A}


async def test_a_link_heal_reinstalls_only_the_routes_through_that_link_without_a_dump() -> None:
    pod = Route("10.244.1.5/32", dev="pbgaaa", scope=Scope.LINK)
    kernel = TableKernel()
    plans = [
        Plan({A.dst: A, B.dst: B, pod.dst: pod}, frozenset(), frozenset(), {}),
        Plan({A.dst: A, B.dst: B, pod.dst: pod}, frozenset(), frozenset(), {}, frozenset()),
    ]

    async def source(full: bool) -> Plan:
        return plans[0] if full else plans[1]

    rec = Reconciler(kernel, source)
    await rec.sync_once(full=True)
    written: list[Route] = []
    apply = kernel.apply_routes

    async def counting(replace: Sequence[Route], delete: Sequence[Route]) -> list[ApplyError]:
        written.extend(replace)
        return await apply(replace, delete)

    kernel.apply_routes = counting  # type: ignore[method-assign]
    del kernel.routes[A.dst], kernel.routes[pod.dst]  # eth0 and the veth went down: dropped
    await rec.sync_once(full=False)
    assert A.dst not in kernel.routes and written == []  # the cache cannot know
    rec.heal(["eth0"])  # eth0 is up again
    await rec.sync_once(full=False)
    assert written == [A] and kernel.routes[A.dst] == A
    assert pod.dst not in kernel.routes  # its veth is still down: not this heal's business
    assert kernel.dumps == 1 and rec.stats.full_syncs == 1 and rec.stats.link_heals == 1
    rec.heal(["pbgaaa"])
    await rec.sync_once(full=False)
    assert written == [A, pod] and kernel.dumps == 1


DSTS = [f"10.244.{i}.0/24" for i in range(8)]
_routes = st.dictionaries(st.sampled_from(DSTS), st.sampled_from(["192.0.2.2", "192.0.2.3"])).map(
    lambda hops: {dst: Route(dst, gateway=hop, dev="eth0") for dst, hop in hops.items()}
)


@given(_routes, _routes, st.frozensets(st.sampled_from(DSTS)),
       st.frozensets(st.sampled_from(DSTS)), st.booleans())  # fmt: skip
def test_a_touched_diff_is_the_whole_diff_of_the_touched_destinations(
    desired: dict[str, Route],
    actual: dict[str, Route],
    touched: frozenset[str],
    foreign: frozenset[str],
    converged: bool,
) -> None:
    got = diff_touched(desired, actual, touched, converged=converged, foreign=foreign)
    want = diff_routes(
        {d: r for d, r in desired.items() if d in touched},
        {d: r for d, r in actual.items() if d in touched},
        converged=converged,
        foreign=foreign,
    )
    assert sorted(got.replace, key=repr) == sorted(want.replace, key=repr)
    assert sorted(got.delete, key=repr) == sorted(want.delete, key=repr)
    assert sorted(got.kept, key=repr) == sorted(want.kept, key=repr)
    assert sorted(got.conflicts) == sorted(want.conflicts)


class GatedKernel(TableKernel):
    """Route writes wait for ``gate``; every dump and write is logged in order."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.log: list[str] = []
        self.writing = False

    async def dump_routes(self) -> KernelRoutes:
        self.log.append("dump")
        return await super().dump_routes()

    async def apply_routes(
        self, replace: Sequence[Route], delete: Sequence[Route]
    ) -> list[ApplyError]:
        self.log.append("write " + ",".join(sorted(r.dst for r in [*replace, *delete])))
        self.writing = True
        await self.gate.wait()
        self.writing = False
        return await super().apply_routes(replace, delete)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(400):  # 2 s at most
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_the_next_pass_is_planned_while_the_kernel_takes_the_previous_writes() -> None:
    """Passes overlap by one: planning and diffing go on while a write is in flight, the next
    write waits for it, a full pass reads the kernel only after it, and each pass is reported
    once, in order."""
    kernel = GatedKernel()
    desired: dict[str, Route] = {}
    touched: set[str] = set()
    planned_during_write: list[bool] = []

    async def source(full: bool) -> Plan:
        planned_during_write.append(kernel.writing)
        changed = frozenset(touched)
        touched.clear()
        return Plan(dict(desired), frozenset(), frozenset(), {}, None if full else changed)

    def change(route: Route) -> None:
        desired[route.dst] = route
        touched.add(route.dst)
        rec.trigger()

    applied: list[bool] = []
    rec = Reconciler(kernel, source, resync_interval=3600.0, on_applied=applied.append)
    task = asyncio.create_task(rec.run())
    try:
        await until(lambda: applied == [True])  # the first (full) pass: nothing to write
        change(A)
        await until(lambda: kernel.writing)
        change(B)
        await until(lambda: len(planned_during_write) == 3)
        assert planned_during_write == [False, False, True]  # B planned while A is written
        rec.trigger(full=True)
        await asyncio.sleep(0.05)
        assert kernel.log == ["dump", f"write {A.dst}"]  # B and the dump wait for A's write
        kernel.gate.set()
        await until(lambda: len(applied) == 4)
        assert kernel.log == ["dump", f"write {A.dst}", f"write {B.dst}", "dump"]
        assert kernel.routes == {A.dst: A, B.dst: B} and applied == [True] * 4
    finally:
        rec.stop()
        kernel.gate.set()
        await asyncio.wait_for(task, 5)
