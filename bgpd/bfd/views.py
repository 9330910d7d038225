"""What the BFD driver shows the rest of podbgp: the state-change event, the per-session view,
and the :class:`BfdManager` interface that both drivers (same loop, own thread) implement.

Plain frozen dataclasses, no I/O: the API, metrics and ``podbgp status`` read these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bgpd.bfd.packet import Diag, State


@dataclass(frozen=True)
class SessionKey:
    """A configured session: peer and local address (normalised) and the configured hop mode."""

    peer: str
    local: str
    multihop: bool


@dataclass(frozen=True)
class BfdStateChange:
    """A session changed state; ``at`` is wall-clock time (seconds since the epoch)."""

    peer: str
    local: str
    multihop: bool
    old: State
    new: State
    diag: Diag
    remote_diag: Diag
    at: float


@dataclass(frozen=True)
class BfdSessionView:
    """A read-only snapshot of one session for the API, metrics and ``podbgp status``."""

    peer: str
    local: str
    multihop: bool  # as configured
    port: int  # the port the session is served on now (the peer's choice wins)
    state: State
    remote_state: State
    local_discriminator: int
    remote_discriminator: int
    tx_interval_ms: float | None  # negotiated: max(our desired TX, their required RX)
    rx_interval_ms: float  # negotiated: max(our required RX, their desired TX)
    detect_time_ms: float | None
    detect_mult: int
    remote_detect_mult: int
    local_diag: Diag
    remote_diag: Diag
    flaps: int
    up_since: float | None  # wall-clock seconds since the epoch
    packets_sent: int
    packets_received: int
    packets_dropped: int  # received for this session but failing a check (TTL)
    send_errors: int


StateCallback = Callable[[BfdStateChange], None]


class BfdManager(Protocol):
    """What the rest of podbgp uses, whichever thread the sessions run on."""

    def add_session(
        self,
        peer: str,
        local: str,
        *,
        multihop: bool,
        min_tx_ms: int = 300,
        min_rx_ms: int = 300,
        multiplier: int = 3,
        on_state: StateCallback,
    ) -> None: ...

    def remove_session(self, peer: str, local: str, *, multihop: bool) -> None: ...

    def snapshot(self) -> list[BfdSessionView]: ...

    def close(self) -> None: ...
