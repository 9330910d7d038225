"""BFD for BGP peers (RFC 5882): one BFD session per BGP peer that asks for it.

Owns the binding between the speaker's peers and the BFD sessions of one
:class:`~bgpd.bfd.views.BfdManager` (the speaker's only BFD endpoint, created on first use, on
a thread of its own by default so a busy event loop cannot flap it):

- :class:`BfdSettings`, the per-peer knobs (``peers[].bfd``, ``BGPPeer.spec.bfd``,
  ``BGPConfiguration.spec.nodeMeshBFD``): intervals in milliseconds and the hop mode
  (``multihop`` None: single hop when the peer is directly connected, else multihop —
  :func:`directly_connected`). Either port is answered whatever the mode (``bgpd.bfd.udp``).
- :class:`BfdPeering`, which adds, changes and removes sessions as peers come and go, and calls
  ``on_down(peer, change)`` when a session that was Up goes Down. RFC 5882 §3.2: a peer that
  signals AdminDown is not a failure, so that change does not take BGP down; every other Up →
  Down does, at once. Our C bit is 0 (BFD shares fate with the control plane), so the speaker
  drops the peer's routes instead of keeping them for graceful restart (RFC 5882 §4.3).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bgpd.bfd.packet import Diag, State
from bgpd.bfd.views import BfdManager, BfdSessionView, BfdStateChange
from bgpd.configcheck import BfdOptions

log = logging.getLogger("podbgp.bfd")

DEFAULT_MIN_RX_MS = 300
DEFAULT_MIN_TX_MS = 300
DEFAULT_MULTIPLIER = 3
MAX_INTERVAL_MS = 60_000

ManagerFactory = Callable[[], BfdManager]
DownCallback = Callable[[str, BfdStateChange], None]


@dataclass(frozen=True, slots=True)
class BfdSettings:
    """BFD for one peer; milliseconds. ``multihop`` None picks by reachability."""

    min_rx_ms: int = DEFAULT_MIN_RX_MS
    min_tx_ms: int = DEFAULT_MIN_TX_MS
    multiplier: int = DEFAULT_MULTIPLIER
    multihop: bool | None = None

    def __post_init__(self) -> None:
        for name, value in (("min_rx_ms", self.min_rx_ms), ("min_tx_ms", self.min_tx_ms)):
            if not 1 <= value <= MAX_INTERVAL_MS:
                raise ValueError(f"{name} {value} outside 1..{MAX_INTERVAL_MS}")
        if not 1 <= self.multiplier <= 255:
            raise ValueError(f"multiplier {self.multiplier} outside 1..255")


def bfd_settings(options: BfdOptions | None, multihop: bool | None = None) -> BfdSettings | None:
    """What the speaker runs for a ``bfd:`` mapping as configured (None: no BFD)."""
    if options is None or not options.enabled:
        return None
    return BfdSettings(options.min_rx_ms, options.min_tx_ms, options.multiplier, multihop)


@dataclass(frozen=True, slots=True)
class _Attached:
    local: str
    multihop: bool
    settings: BfdSettings


class BfdPeering:
    """The BFD sessions of one speaker's peers (see the module docstring).

    Call on the speaker's loop. ``on_down`` runs there too: a threaded manager hands state
    changes back to the loop that was running when it was created.
    """

    def __init__(self, factory: ManagerFactory, on_down: DownCallback) -> None:
        self._factory = factory
        self._on_down = on_down
        self._manager: BfdManager | None = None
        self._attached: dict[str, _Attached] = {}
        self.down_events = 0  # BGP sessions taken down by BFD
        self.last_error = ""  # why the last session could not be started

    def attach(self, peer: str, local: str, settings: BfdSettings) -> None:
        """Run a session to ``peer`` from ``local`` (idempotent; a change re-tunes or moves it)."""
        multihop = settings.multihop
        if multihop is None:
            multihop = not directly_connected(peer)
        wanted = _Attached(local, multihop, settings)
        current = self._attached.get(peer)
        if current == wanted:
            return
        if current is not None and (current.local, current.multihop) != (local, multihop):
            self.detach(peer)
        try:
            self._manager_or_start().add_session(
                peer,
                local,
                multihop=multihop,
                min_tx_ms=settings.min_tx_ms,
                min_rx_ms=settings.min_rx_ms,
                multiplier=settings.multiplier,
                on_state=lambda change: self._state_changed(peer, change),
            )
        except OSError as exc:
            # Ports 3784/4784 taken (another BFD daemon on this host), an address gone: BGP
            # runs on without BFD, and the next session start tries again.
            self.last_error = f"{peer}: {exc}"
            log.error("peer=%s event=bfd-failed error=%s", peer, exc)
            return
        self._attached[peer] = wanted

    def detach(self, peer: str) -> None:
        """Stop the peer's session (the remote side is told AdminDown)."""
        current = self._attached.pop(peer, None)
        if current is None or self._manager is None:
            return
        with contextlib.suppress(KeyError):  # already gone with the endpoint
            self._manager.remove_session(peer, current.local, multihop=current.multihop)

    def attached(self, peer: str) -> bool:
        return peer in self._attached

    def snapshot(self) -> dict[str, BfdSessionView]:
        """Each attached peer's session view, by peer address."""
        if self._manager is None or not self._attached:
            return {}
        views = {view.peer: view for view in self._manager.snapshot()}
        return {peer: views[peer] for peer in self._attached if peer in views}

    def close(self) -> None:
        self._attached.clear()
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def _manager_or_start(self) -> BfdManager:
        if self._manager is None:
            self._manager = self._factory()
        return self._manager

    def _state_changed(self, peer: str, change: BfdStateChange) -> None:
        if peer not in self._attached:
            return  # a late change from a session removed since
        if change.old != State.UP or change.new not in (State.DOWN, State.ADMIN_DOWN):
            return
        if change.new == State.ADMIN_DOWN or (
            change.diag == Diag.NEIGHBOR_SIGNALED_DOWN
            and change.remote_diag == Diag.ADMINISTRATIVELY_DOWN
        ):
            # RFC 5882 §3.2: administratively down is not a path failure.
            log.info("peer=%s event=bfd-admin-down bgp=kept", peer)
            return
        self.down_events += 1
        log.warning("peer=%s event=bfd-down diag=%s bgp=reset", peer, change.diag.name)
        self._on_down(peer, change)


def directly_connected(peer: str, proc: Path = Path("/proc/net")) -> bool:
    """True when the kernel reaches ``peer`` without a gateway (longest match in the main
    table, read from ``/proc/net/route`` or ``/proc/net/ipv6_route`` of this namespace).

    Unknown (no table, no matching route) counts as not directly connected: multihop, which
    is the safer guess since both ports are answered anyway.
    """
    address = ipaddress.ip_address(peer)
    routes: list[tuple[ipaddress.IPv4Network, bool]] | list[tuple[ipaddress.IPv6Network, bool]]
    try:
        if address.version == 4:
            routes = _ipv4_routes((proc / "route").read_text())
        else:
            routes = _ipv6_routes((proc / "ipv6_route").read_text())
    except OSError:
        return False
    best: tuple[int, bool] | None = None
    for network, gatewayless in routes:
        if address in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, gatewayless)
    return best is not None and best[1]


_RTF_GATEWAY = 0x2
_RTF_REJECT = 0x200


def _ipv4_routes(text: str) -> list[tuple[ipaddress.IPv4Network, bool]]:
    routes: list[tuple[ipaddress.IPv4Network, bool]] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        # Destination, Gateway and Mask are little-endian hex (the kernel's byte order dump).
        dest = ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(fields[1]), "little"))
        mask = ipaddress.IPv4Address(int.from_bytes(bytes.fromhex(fields[7]), "little"))
        flags = int(fields[3], 16)
        if flags & _RTF_REJECT:
            continue
        network = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        routes.append((network, not flags & _RTF_GATEWAY))
    return routes


def _ipv6_routes(text: str) -> list[tuple[ipaddress.IPv6Network, bool]]:
    routes: list[tuple[ipaddress.IPv6Network, bool]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 10:
            continue
        flags = int(fields[8], 16)
        if flags & _RTF_REJECT or fields[9] == "lo":
            continue  # unreachable routes, and our own addresses (the local table)
        dest = ipaddress.IPv6Address(int(fields[0], 16))
        network = ipaddress.IPv6Network(f"{dest}/{int(fields[1], 16)}", strict=False)
        routes.append((network, not flags & _RTF_GATEWAY))
    return routes
