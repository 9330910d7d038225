"""Selection deferral after our own restart (RFC 4724 §4.1, "Procedures for the Restarting
Speaker").

A speaker that restarted with its forwarding state kept sets the Restart State (R) bit in its
OPENs and defers sending its table until it has heard End-of-RIB from every peer, so it never
advertises a partial table (withdrawing, for a moment, routes its peers still use). Peers that
did not advertise graceful restart, and peers that have the R bit set themselves (restarting at
the same time; waiting for them would deadlock), are not waited for. A deferral timer bounds
the wait. :class:`SelectionDeferral` owns the timer and the rule; the speaker owns the tables
and sends them when told.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from bgpd.fsm_types import Negotiated
from bgpd.gr import RESTART_STATE

log = logging.getLogger("podbgp.speaker")

# (established, negotiated, End-of-RIB (afi, safi) received) per peer
PeerProgress = tuple[bool, Negotiated | None, set[tuple[int, int]]]


def peer_done(established: bool, neg: Negotiated | None, eor: set[tuple[int, int]]) -> bool:
    """This peer no longer holds up our selection (RFC 4724 §4.1)."""
    if not established or neg is None:
        return False
    gr = neg.graceful_restart
    if gr is None or gr.restart_flags & RESTART_STATE:
        return True  # no End-of-RIB to expect, or it is restarting too
    return all(family in eor for family in neg.families)


class SelectionDeferral:
    """Active from construction when ``restarting``; over once :meth:`check` finds every peer
    done, or after ``timeout`` seconds from :meth:`start`. ``on_over(why)`` runs once."""

    def __init__(self, restarting: bool, timeout: float, on_over: Callable[[str], None]) -> None:
        self.active = restarting
        self.timeout = timeout
        self.reason = "" if restarting else "not restarting"
        self._on_over = on_over
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self.active and self._timer is None:
            log.info("event=selection-deferral-start timeout=%.0fs", self.timeout)
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.timeout, self._finish, "deferral timer expired")

    def check(self, peers: Iterable[PeerProgress]) -> None:
        progress = list(peers)
        if self.active and progress and all(peer_done(*p) for p in progress):
            self._finish("End-of-RIB from every peer")

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self, why: str) -> None:
        if not self.active:
            return
        self.active = False
        self.reason = why
        self.cancel()
        self._on_over(why)


def run_file_found(path: str | None) -> bool:
    """Did we restart on a host that kept running? True when ``path`` exists: the previous run
    made it and did not end with a stop that drops our routes anyway (see :func:`forget_run`);
    a reboot empties /run. (Re)creates it for the next start. None: never a restart."""
    if path is None:
        return False
    run_file = Path(path)
    found = run_file.exists()
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.touch()
    return found


def forget_run(path: str | None) -> None:
    """A stop that is not graceful: the next start is not a restart."""
    if path is not None:
        Path(path).unlink(missing_ok=True)
