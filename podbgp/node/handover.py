"""Make-before-break peering changes: the new sessions carry the routes before the old ones close.

Owns :class:`Handover`, the node agent's list of *retiring* peers: sessions the topology no
longer wants (the mesh switched off for reflectors, a reflector removed, a BGPPeer deleted). A
retiring peer is not closed at once; it stays until

* every *joining* peer (added by the same topology changes) is Established and has sent
  End-of-RIB (RFC 4724 §2) for every family it negotiated, and
* every prefix the retiring peers still give us has a path from another peer (or is our own),

so the best path of each prefix moves from an old session to a new one inside one decision
run, and the dataplane never sees a withdraw in between. A change that brings no new session
and drops only sessions that are down already (a node stopped and deleted) closes them at once:
nothing could replace their routes. The second condition matters because
a reflector's End-of-RIB only says it sent what it had: the other clients' routes may reach it
later. A change that never completes (a new reflector that never comes up, a route that exists
only on the old session) ends after ``timeout`` seconds and the old sessions close anyway,
logged as ``event=handover-timeout``.

Retired node sessions close without a NOTIFICATION: the other node (graceful restart, RFC 4724)
keeps our routes as stale until its own handover retires the session on its side, so neither end
loses a route while the two ends apply the change a few milliseconds apart. Sessions to routers
outside the cluster close with a Cease, as a de-configured peer should — but only ``cease_grace``
seconds after the conditions above hold: such a router (a dedicated route reflector) withdraws
our routes from everyone at once, and the other nodes, applying the same change a little later,
may still have them only through it.

The conditions are checked every ``poll`` seconds while peers are retiring (a new path that does
not change the best path produces no event to wait on); nothing runs when no change is pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

from bgpd.fsm_types import State
from bgpd.speaker import Speaker

log = logging.getLogger("podbgp.node.handover")

HANDOVER_TIMEOUT = 30.0  # seconds an old session waits at most for its replacement
POLL = 0.05  # seconds between checks while a handover is pending
# Seconds a session closed with a Cease (a router outside the cluster, e.g. a dedicated route
# reflector) stays up after our own conditions hold: the router withdraws our routes from
# everyone at once, and the other nodes, applying the same change a little later, may still
# have our routes only through it.
CEASE_GRACE = 3.0


def waiting_for(speaker: Speaker, retiring: Iterable[str], joining: Iterable[str]) -> str | None:
    """Why the retiring peers cannot close yet, or None when they can (pure over the speaker)."""
    retiring = set(retiring)
    joining = {a for a in joining if a in speaker.peers} - retiring
    if not joining and all(_down(speaker, a) for a in retiring):
        return None  # a node that left: no session replaces it, nothing will arrive
    for address in sorted(joining):
        peer = speaker.peers.get(address)
        if peer is None:
            continue  # removed again meanwhile
        if peer.session.state != State.ESTABLISHED or peer.negotiated is None:
            return f"new peer {address} not Established"
        missing = [f for f in peer.negotiated.families if f not in peer.eor_received]
        if missing:
            return f"new peer {address}: no End-of-RIB yet for {missing[0]}"
    held = [speaker.peers[a] for a in sorted(retiring) if a in speaker.peers]
    if not any(peer.adj_in.routes.get(afi) for peer in held for afi in peer.adj_in.routes):
        return None
    covered = _covered(speaker, retiring)
    for peer in held:
        for afi in list(peer.adj_in.routes):
            have = covered.get(afi, set())
            if any(prefix not in have for prefix in peer.adj_in.prefixes(afi)):
                return f"a route from {peer.spec.address} has no other path yet"
    return None


def _covered(speaker: Speaker, retiring: set[str]) -> dict[int, set[bytes]]:
    """Per family, the prefixes some path of ours or of a peer that stays offers: one pass
    over the tables (a check per prefix and peer would cost O(routes x peers) per poll)."""
    covered: dict[int, set[bytes]] = {afi: set(t) for afi, t in speaker.originated.items()}
    for address, peer in speaker.peers.items():
        if address in retiring or peer.source is None:
            continue
        for afi in list(peer.adj_in.routes):
            covered.setdefault(afi, set()).update(peer.adj_in.prefixes(afi))
    return covered


def _down(speaker: Speaker, address: str) -> bool:
    peer = speaker.peers.get(address)
    return peer is None or peer.session.state != State.ESTABLISHED


class Handover:
    """Retiring peers of one speaker and the task that closes them; see the module docstring.

    ``still_unwanted(address)`` is asked right before a close, so a peer the topology wants
    again by then stays.
    """

    def __init__(
        self,
        still_unwanted: Callable[[str], bool],
        *,
        timeout: float = HANDOVER_TIMEOUT,
        poll: float = POLL,
        cease_grace: float = CEASE_GRACE,
    ) -> None:
        self.still_unwanted = still_unwanted
        self.timeout = timeout
        self.poll = poll
        self.cease_grace = cease_grace
        self._ready: float | None = None  # monotonic time our conditions first held
        self.retiring: dict[str, bool] = {}  # address -> close gracefully
        self.joining: set[str] = set()
        self.started: float | None = None  # monotonic time the pending change began
        self.completed = 0
        self.timeouts = 0
        self._speaker: Speaker | None = None
        self._task: asyncio.Task[None] | None = None

    def change(
        self,
        speaker: Speaker,
        retire: dict[str, bool],
        join: Iterable[str],
        keep: Iterable[str],
    ) -> None:
        """Add peers to retire (address -> graceful close) and joining peers to wait for;
        ``keep``: peers the topology wants (again), never retired."""
        if speaker is not self._speaker:
            self.cancel()
            self._speaker = speaker
        for address in keep:
            self.retiring.pop(address, None)
        fresh = set(retire) - set(self.retiring)
        self.retiring.update(retire)
        self.joining.update(join)
        if not self.retiring:
            self.joining.clear()
            self.started = None
            return
        if self.started is None or fresh:
            self.started = time.monotonic()  # a newly dropped peer restarts the clock
            self._ready = None
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="peer-handover")

    def cancel(self) -> None:
        """Forget everything pending (the speaker is being replaced)."""
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self.retiring.clear()
        self.joining.clear()
        self.started = None
        self._ready = None

    async def close(self) -> None:
        task = self._task
        self.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def status(self) -> dict[str, object]:
        """For ``GET /v1/node``: what a pending change still waits for."""
        speaker = self._speaker
        reason = None
        if speaker is not None and self.retiring:
            reason = waiting_for(speaker, self.retiring, self.joining)
            if reason is None and self._ready is not None:
                reason = f"the {self.cease_grace:.0f} s grace before a Cease to a router"
        return {
            "retiring": sorted(self.retiring),
            "joining": sorted(self.joining & set(speaker.peers)) if speaker else [],
            "waitingFor": reason,
            "completed": self.completed,
            "timeouts": self.timeouts,
        }

    async def _run(self) -> None:
        while self.retiring and self._speaker is not None and self.started is not None:
            speaker = self._speaker
            reason = waiting_for(speaker, self.retiring, self.joining)
            now = time.monotonic()
            elapsed = now - self.started
            if reason is None and self._ceased_up(speaker):
                self._ready = self._ready if self._ready is not None else now
                if now - self._ready < self.cease_grace and elapsed < self.timeout:
                    await asyncio.sleep(self.poll)
                    continue
            if reason is None or elapsed >= self.timeout:
                if reason is None:
                    self.completed += 1
                else:
                    self.timeouts += 1
                    log.warning("event=handover-timeout after=%.1fs waiting_for=%r",
                                elapsed, reason)  # fmt: skip
                self._retire_all(speaker, elapsed)
                return
            await asyncio.sleep(self.poll)

    def _ceased_up(self, speaker: Speaker) -> bool:
        """Is a peer that will get a Cease still up (its router still has our routes)?"""
        return any(
            not graceful and not _down(speaker, address)
            for address, graceful in self.retiring.items()
        )

    def _retire_all(self, speaker: Speaker, elapsed: float) -> None:
        retiring, self.retiring = self.retiring, {}
        joined = sorted(self.joining & set(speaker.peers))
        self.joining.clear()
        self.started = None
        self._ready = None
        for address, graceful in sorted(retiring.items()):
            if address not in speaker.peers or not self.still_unwanted(address):
                continue
            speaker.remove_peer(address, graceful=graceful)
            log.info("event=peer-removed peer=%s handover=%.3fs graceful=%s joined=%s",
                     address, elapsed, graceful, ",".join(joined) or "-")  # fmt: skip
