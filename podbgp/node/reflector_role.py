"""This node's part in route reflection as it changes: elected or not, and stepping down.

Owns :class:`ReflectorRole`, the node agent's memory between two topologies: whether this node
is an elected reflector (its registration publishes it, the election's memory for the hysteresis
band, :mod:`podbgp.node.election`), the ``event=route-reflector-mode`` log line when the cluster
switches mode or re-elects, and the step-down grace: a reflector whose cluster ID goes keeps
reflecting for ``STEP_DOWN_GRACE`` seconds before its speaker restarts. Its clients' sessions to
it only change their name (``route-reflector`` → ``mesh``), so no handover waits on their side;
the grace lets their new mesh sessions carry the routes before this node's restarted sessions
end the stale ones (graceful restart, RFC 4724).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from bgpd.speaker import SpeakerConfig
from podbgp.cluster.datastore.records import NodeInfo
from podbgp.node.election import election_change
from podbgp.node.peering import Topology

__all__ = ["STEP_DOWN_GRACE", "ReflectorRole"]

log = logging.getLogger("podbgp.node")

STEP_DOWN_GRACE = 3.0  # seconds a reflector stepping down goes on reflecting


class ReflectorRole:
    """See the module docstring; ``wake()`` asks the agent for another reconcile."""

    def __init__(self, wake: Callable[[], None], grace: float = STEP_DOWN_GRACE) -> None:
        self.wake = wake
        self.grace = grace
        self.elected = False  # what our registration says
        self._step_down_at: float | None = None  # monotonic time the reflector speaker restarts

    @property
    def stepping_down(self) -> bool:
        return self._step_down_at is not None

    def resume(self, registration: NodeInfo | None) -> None:
        """After a restart: an elected reflector in the hysteresis band stays one, as the
        other nodes (who read our registration) expect."""
        self.elected = bool(registration and registration.elected_reflector)

    def update(self, old: Topology | None, new: Topology) -> None:
        line = election_change(old.election if old else None, new.election, new.elected_reflector)
        if line is not None:
            log.info("event=route-reflector-mode %s", line)
        self.elected = new.elected_reflector

    def holding(self, running: SpeakerConfig, topology: Topology) -> bool:
        """Keep the ``running`` speaker a while longer instead of the one ``topology`` wants?"""
        if running.cluster_id is None or topology.speaker != replace(running, cluster_id=None):
            self._step_down_at = None
            return False
        now = time.monotonic()
        if self._step_down_at is None:
            self._step_down_at = now + self.grace
            log.info("event=reflector-stepping-down restart_in=%.1fs", self.grace)
        remaining = self._step_down_at - now
        if remaining <= 0:
            self._step_down_at = None
            return False
        asyncio.get_running_loop().call_later(remaining, self.wake)
        return True
