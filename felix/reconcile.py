"""Make the kernel match the plan: a pure diff, and the asyncio loop that applies it.

The loop keeps what it believes is installed (a cache of felix's own routes, filled by a dump of
the kernel) and, on every trigger, diffs the latest plan against that cache and applies
``replace`` / ``delete`` in batches. A periodic full resync re-dumps the kernel, so a route
deleted or changed behind felix's back is repaired within one resync interval, and any apply
error makes the next pass a full one.

Adopt, never flush: until :meth:`Reconciler.mark_converged` is called (End-of-RIB from every peer,
or a timeout), routes of felix's protocol that the plan does not (yet) want stay installed; only
afterwards are they removed. A restarted node therefore keeps forwarding pod traffic with the
previous process's routes while its BGP sessions come back (RFC 4724's forwarding-state
preservation, seen from the kernel side). A desired route whose destination is held by a route
of another protocol is not installed (felix only ever touches its own routes) and is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from felix.plan import FdbEntry, Neighbour, Plan, Route

log = logging.getLogger("podbgp.felix.reconcile")

T = TypeVar("T")


@dataclass(frozen=True)
class RouteDiff:
    """What to change so that the kernel matches the plan."""

    replace: tuple[Route, ...] = ()
    delete: tuple[Route, ...] = ()
    kept: tuple[Route, ...] = ()  # unwanted, but adopted until the speaker has converged
    conflicts: tuple[str, ...] = ()  # desired destinations held by another protocol's route

    @property
    def empty(self) -> bool:
        return not self.replace and not self.delete


def diff_routes(
    desired: Mapping[str, Route],
    actual: Mapping[str, Route],
    *,
    converged: bool,
    foreign: Iterable[str] = (),
) -> RouteDiff:
    """Routes to replace (missing or different) and to delete (unwanted, once converged)."""
    every = itertools.chain(desired, (dst for dst in actual if dst not in desired))
    return diff_touched(desired, actual, every, converged=converged, foreign=frozenset(foreign))


def diff_touched(
    desired: Mapping[str, Route],
    actual: Mapping[str, Route],
    touched: Iterable[str],
    *,
    converged: bool,
    foreign: frozenset[str] = frozenset(),
) -> RouteDiff:
    """:func:`diff_routes` of ``desired`` and ``actual`` restricted to the ``touched``
    destinations, in one walk over them (an incremental pass after a burst touches 10,000s)."""
    replace: list[Route] = []
    unwanted: list[Route] = []
    conflicts: list[str] = []
    for dst in touched:
        route = desired.get(dst)
        have = actual.get(dst)
        if route is None:
            if have is not None:
                unwanted.append(have)
        elif have != route:
            if have is None and dst in foreign:
                conflicts.append(dst)
            else:
                replace.append(route)
    if converged:
        return RouteDiff(tuple(replace), tuple(unwanted), (), tuple(conflicts))
    return RouteDiff(tuple(replace), (), tuple(unwanted), tuple(conflicts))


def diff_sets(desired: frozenset[T], actual: frozenset[T]) -> tuple[list[T], list[T]]:
    """(to add, to remove) for neighbour and FDB entries; felix owns its device's entries."""
    return sorted(desired - actual, key=repr), sorted(actual - desired, key=repr)


@dataclass(frozen=True)
class KernelRoutes:
    """A dump of the main table: felix's own routes, and destinations held by other protocols."""

    own: dict[str, Route]
    foreign: frozenset[str]


@dataclass(frozen=True)
class ApplyError:
    """One change the kernel refused."""

    what: str  # e.g. "replace 10.244.2.0/24 via ..."
    error: str


class Kernel(Protocol):
    """The kernel operations the reconciler needs (felix.kernel.netlink.Netlink provides them)."""

    async def dump_routes(self) -> KernelRoutes: ...

    async def apply_routes(
        self, replace: Sequence[Route], delete: Sequence[Route]
    ) -> list[ApplyError]: ...

    async def dump_neighbours(self, dev: str) -> frozenset[Neighbour]: ...

    async def dump_fdb(self, dev: str) -> frozenset[FdbEntry]: ...

    async def apply_neighbours(
        self, add: Sequence[Neighbour], remove: Sequence[Neighbour]
    ) -> list[ApplyError]: ...

    async def apply_fdb(
        self, add: Sequence[FdbEntry], remove: Sequence[FdbEntry]
    ) -> list[ApplyError]: ...


@dataclass
class SyncStats:
    """Counters for the API and metrics; mutated only by the reconciler task."""

    syncs: int = 0
    full_syncs: int = 0
    replaced: int = 0
    deleted: int = 0
    errors: int = 0
    last_sync: float = 0.0  # wall-clock time of the last completed pass
    last_duration: float = 0.0
    installed: int = 0  # routes of felix's protocol after the last pass
    kept: int = 0  # adopted routes awaiting convergence
    conflicts: tuple[str, ...] = ()
    last_errors: list[ApplyError] = field(default_factory=list)
    link_heals: int = 0  # passes that re-checked the routes of links that changed


@dataclass(frozen=True)
class _Pass:
    """A planned and diffed pass, ready to write."""

    plan: Plan
    diff: RouteDiff
    full: bool
    started: float  # monotonic times: pass began, plan and diff done
    planned: float
    # Whether the speaker had converged when the plan was made: the pass deletes VXLAN entries
    # only then, as its route diff does. A plan made before convergence (from a replaced
    # speaker's partial table) must not delete what its routes keep, even if convergence is
    # declared while the pass is being written.
    converged: bool


# Argument: this is a full resync (the plan must be whole). Otherwise the source may return an
# incremental plan (``Plan.touched``), and only those destinations are diffed.
PlanSource = Callable[[bool], Awaitable[Plan]]


class Reconciler:
    """Applies the latest plan to the kernel on triggers and on a periodic full resync."""

    def __init__(
        self,
        kernel: Kernel,
        plan_source: PlanSource,
        *,
        resync_interval: float = 10.0,
        debounce: float = 0.01,
        vxlan_devices: Iterable[str] = (),
        on_applied: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_applied(ok)`` is called after each pass's kernel writes were acknowledged
        (``ok``) or failed."""
        self.kernel = kernel
        self.plan_source = plan_source
        self.resync_interval = resync_interval
        self.debounce = debounce
        self.on_applied = on_applied
        self._last_pass = -math.inf  # loop time the last pass ended
        # The VXLAN devices that are up (``vxlan.podbgp``, ``vxlan-v6.podbgp``): their permanent
        # neighbour and FDB entries are felix's and follow the plan.
        self.vxlan_devices: tuple[str, ...] = tuple(vxlan_devices)
        self.converged = False
        self._epoch = 0  # speakers replaced so far (``unconverge``)
        self.stats = SyncStats()
        self.last_plan: Plan | None = None
        self._cache: dict[str, Route] | None = None  # None: unknown, dump before diffing
        self._foreign: frozenset[str] = frozenset()
        self._kept: set[str] = set()  # unwanted routes adopted until convergence
        self._conflicts: set[str] = set()  # wanted destinations another protocol holds
        self._heal: set[str] = set()  # devices whose routes the kernel may have dropped
        self._wakeup = asyncio.Event()
        self._writing: asyncio.Task[None] | None = None  # the writes of the pass in flight
        self._full = True
        self._stopping = False
        self.synced = asyncio.Event()  # set after every completed pass (tests wait on it)

    def trigger(self, *, full: bool = False) -> None:
        """Ask for a pass soon (coalesced); ``full`` re-dumps the kernel first."""
        self._full = self._full or full
        self._wakeup.set()

    def heal(self, devices: Iterable[str]) -> None:
        """Links came (back) up or changed: the kernel may have dropped the routes through them.

        The next pass re-installs the wanted routes whose device is one of ``devices`` (and only
        those), without re-dumping the kernel: a link event costs the routes that depend on
        that link, not a full resync.
        """
        new = set(devices)
        if new:
            self._heal |= new
            self.trigger()

    def unconverge(self) -> None:
        """The speaker was replaced: adopt unwanted routes again until :meth:`mark_converged`.
        A pass being planned meanwhile counts as not converged either: its plan may come from
        the replaced speaker's emptied table."""
        self.converged = False
        self._epoch += 1

    def mark_converged(self) -> None:
        """The speaker has converged: unwanted adopted routes may now be removed."""
        if not self.converged:
            self.converged = True
            log.info("event=converged kept=%d", self.stats.kept)
            self.trigger(full=True)  # a whole diff: adopted routes nobody wants now go

    async def run(self) -> None:
        """Loop until :meth:`stop`: wait for a trigger or the resync timer, then sync.

        Passes overlap by one: while the kernel takes a pass's writes (a worker thread), the
        next pass is planned and diffed; its writes start once the previous ones are done. A
        table arriving in a burst thus keeps the kernel busy instead of idle while felix plans.
        """
        loop = asyncio.get_running_loop()
        next_resync = loop.time()
        try:
            while not self._stopping:
                timeout = max(0.0, next_resync - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                if self._stopping:
                    break
                if loop.time() >= next_resync:
                    self._full = True
                    next_resync = loop.time() + self.resync_interval
                elif (since := loop.time() - self._last_pass) < self.debounce:
                    # A burst: let its changes coalesce. The first change after a quiet spell
                    # goes at once (UPDATE -> kernel latency).
                    await asyncio.sleep(self.debounce - since)
                self._wakeup.clear()
                full, self._full = self._full, False
                try:
                    prepared = await self._prepare(full)
                except Exception as exc:  # keep the loop alive; the next pass dumps and retries
                    await self._drain()  # the previous pass reports first
                    log.exception("event=sync-failed error=%s", exc)
                    self._failed()
                else:
                    await self._drain()
                    self._writing = asyncio.create_task(self._write(prepared), name="felix-write")
                self._last_pass = loop.time()
        finally:
            await self._drain()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def sync_once(self, *, full: bool = True) -> RouteDiff:
        """One pass: plan, (dump), diff, apply. Returns the diff that was applied."""
        prepared = await self._prepare(full)
        await self._drain()
        await self._write(prepared)
        return prepared.diff

    async def _drain(self) -> None:
        """Wait for the writes of the pass in flight, if any."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    def _failed(self) -> None:
        self.stats.errors += 1
        self._cache = None
        self._full = True
        if self.on_applied is not None:
            self.on_applied(False)

    async def _prepare(self, full: bool) -> _Pass:
        """Plan, (dump), diff; the cache takes the diff at once (as if written: a failed write
        empties it, so the next pass dumps)."""
        started = time.monotonic()
        converged = self.converged  # before planning: the plan is at most this complete
        epoch = self._epoch
        plan = await self.plan_source(full or self._cache is None)
        if self._epoch != epoch:
            converged = False  # the speaker was replaced while this plan was made
        self.last_plan = plan
        dump = full or self._cache is None
        whole = dump or plan.touched is None
        if dump:
            await self._drain()  # every earlier write is in the kernel before it is read
            dumped = await self.kernel.dump_routes()
            self._cache = dict(dumped.own)
            self._foreign = dumped.foreign
            self.stats.full_syncs += 1
        cache = self._cache
        assert cache is not None  # dumped above, or kept: nothing awaited since the check
        healed: set[str] = set()
        if self._heal:
            heal, self._heal = self._heal, set()
            if not dump:  # a pass that has just read the kernel needs no healing
                healed = self._forget_devices(plan, heal)
        if not whole:
            # An incremental plan: only its touched destinations (and healed ones) can differ.
            touched = (plan.touched or frozenset()) | healed
            diff = diff_touched(
                plan.routes, cache, touched, converged=converged, foreign=self._foreign
            )
            self._kept.difference_update(touched)
            self._conflicts.difference_update(touched)
        else:
            diff = diff_routes(plan.routes, cache, converged=converged, foreign=self._foreign)
            self._kept.clear()
            self._conflicts.clear()
        self._kept.update(route.dst for route in diff.kept)
        self._conflicts.update(diff.conflicts)
        for route in diff.replace:
            cache[route.dst] = route
        for route in diff.delete:
            cache.pop(route.dst, None)
        return _Pass(plan, diff, full, started, time.monotonic(), converged)

    async def _write(self, prepared: _Pass) -> None:
        """Apply a prepared pass and report it (stats, ``on_applied``, ``synced``)."""
        plan, diff = prepared.plan, prepared.diff
        errors: list[ApplyError] = []
        try:
            if not diff.empty:
                errors += await self.kernel.apply_routes(diff.replace, diff.delete)
            if prepared.full or plan.neighbours or plan.fdb:
                for device in self.vxlan_devices:
                    errors += await self._sync_vxlan(plan, device, prepared.converged)
        except Exception as exc:  # the next pass dumps and retries
            log.exception("event=sync-failed error=%s", exc)
            self._failed()
            return
        self._record(diff, errors, prepared.started, prepared.planned)
        if self.on_applied is not None:
            self.on_applied(not errors)
        if errors:
            self._cache = None  # what the kernel holds is uncertain now: dump next time

    def _forget_devices(self, plan: Plan, devices: set[str]) -> set[str]:
        """Drop the cached routes through ``devices`` that the plan wants (so the diff installs
        them again); returns the destinations concerned."""
        assert self._cache is not None
        dsts = {dst for dst, route in plan.routes.items() if route.dev in devices}
        for dst in dsts:
            self._cache.pop(dst, None)
        self.stats.link_heals += 1
        log.info("event=link-heal devices=%s routes=%d", ",".join(sorted(devices)), len(dsts))
        return dsts

    async def _sync_vxlan(self, plan: Plan, dev: str, converged: bool) -> list[ApplyError]:
        neighbours = frozenset(n for n in plan.neighbours if n.dev == dev)
        fdb = frozenset(f for f in plan.fdb if f.dev == dev)
        add_n, del_n = diff_sets(neighbours, await self.kernel.dump_neighbours(dev))
        add_f, del_f = diff_sets(fdb, await self.kernel.dump_fdb(dev))
        if not converged:
            del_n, del_f = [], []
        errors: list[ApplyError] = []
        if add_n or del_n:
            errors += await self.kernel.apply_neighbours(add_n, del_n)
        if add_f or del_f:
            errors += await self.kernel.apply_fdb(add_f, del_f)
        return errors

    def _record(
        self, diff: RouteDiff, errors: list[ApplyError], started: float, planned: float
    ) -> None:
        stats = self.stats
        stats.syncs += 1
        stats.replaced += len(diff.replace)
        stats.deleted += len(diff.delete)
        stats.errors += len(errors)
        stats.kept = len(self._kept)
        stats.conflicts = tuple(sorted(self._conflicts))
        stats.installed = len(self._cache or {})
        stats.last_sync = time.time()
        stats.last_duration = time.monotonic() - started
        if errors:
            stats.last_errors = errors[-10:]
            for err in errors[:5]:
                log.warning("event=apply-failed what=%r error=%s", err.what, err.error)
        if diff.replace or diff.delete:
            log.info(
                "event=synced replaced=%d deleted=%d kept=%d errors=%d plan_ms=%.1f write_ms=%.1f",
                len(diff.replace), len(diff.delete), len(diff.kept), len(errors),
                (planned - started) * 1000, stats.last_duration * 1000 - (planned - started) * 1000,
            )  # fmt: skip
        self.synced.set()
