"""BFD for BGP peers (RFC 5882): which BFD changes take BGP down, session bookkeeping, and the
directly-connected test that picks single hop or multihop. A recording fake stands in for the
UDP endpoint (the endpoint itself is tested in test_udp.py and against BIRD)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bgpd.bfd.packet import Diag, State
from bgpd.bfd.peering import BfdPeering, BfdSettings, bfd_settings, directly_connected
from bgpd.bfd.views import BfdSessionView, BfdStateChange, StateCallback
from bgpd.configcheck import BfdOptions


class FakeManager:
    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str, bool], tuple[int, int, int, StateCallback]] = {}
        self.removed: list[tuple[str, str, bool]] = []
        self.closed = False

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
    ) -> None:
        self.sessions[(peer, local, multihop)] = (min_tx_ms, min_rx_ms, multiplier, on_state)

    def remove_session(self, peer: str, local: str, *, multihop: bool) -> None:
        del self.sessions[(peer, local, multihop)]
        self.removed.append((peer, local, multihop))

    def snapshot(self) -> list[BfdSessionView]:
        return []

    def close(self) -> None:
        self.closed = True

    def fire(self, peer: str, old: State, new: State, diag: Diag, remote: Diag) -> None:
        for (p, local, multihop), (*_, callback) in list(self.sessions.items()):
            if p == peer:
                callback(BfdStateChange(p, local, multihop, old, new, diag, remote, 0.0))


def make() -> tuple[BfdPeering, FakeManager, list[str]]:
    manager = FakeManager()
    downs: list[str] = []
    peering = BfdPeering(lambda: manager, lambda peer, change: downs.append(peer))
    return peering, manager, downs


FAST = BfdSettings(min_rx_ms=100, min_tx_ms=100, multiplier=3, multihop=False)


def test_attach_adds_one_session_with_the_settings_and_is_idempotent() -> None:
    peering, manager, _ = make()
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    assert list(manager.sessions) == [("192.0.2.2", "192.0.2.1", False)]
    assert manager.sessions[("192.0.2.2", "192.0.2.1", False)][:3] == (100, 100, 3)


def test_a_new_local_address_moves_the_session() -> None:
    peering, manager, _ = make()
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    peering.attach("192.0.2.2", "192.0.2.9", FAST)
    assert list(manager.sessions) == [("192.0.2.2", "192.0.2.9", False)]
    assert manager.removed == [("192.0.2.2", "192.0.2.1", False)]


def test_detach_and_close() -> None:
    peering, manager, _ = make()
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    peering.detach("192.0.2.2")
    peering.detach("192.0.2.2")  # twice is harmless
    assert manager.sessions == {}
    peering.close()
    assert manager.closed


@pytest.mark.parametrize(
    ("old", "new", "diag", "remote", "down"),
    [
        (State.UP, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, Diag.NO_DIAGNOSTIC, True),
        (
            State.UP,
            State.DOWN,
            Diag.NEIGHBOR_SIGNALED_DOWN,
            Diag.CONTROL_DETECTION_TIME_EXPIRED,
            True,
        ),
        # RFC 5882 §3.2: the peer administratively down is not a path failure.
        (State.UP, State.DOWN, Diag.NEIGHBOR_SIGNALED_DOWN, Diag.ADMINISTRATIVELY_DOWN, False),
        (State.UP, State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN, Diag.NO_DIAGNOSTIC, False),
        # Never Up: nothing to take down.
        (State.INIT, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, Diag.NO_DIAGNOSTIC, False),
        (State.DOWN, State.UP, Diag.NO_DIAGNOSTIC, Diag.NO_DIAGNOSTIC, False),
    ],
    ids=["detection", "peer-detected", "peer-admin-down", "our-admin-down", "init", "up"],
)
def test_which_changes_take_bgp_down(
    old: State, new: State, diag: Diag, remote: Diag, down: bool
) -> None:
    peering, manager, downs = make()
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    manager.fire("192.0.2.2", old, new, diag, remote)
    assert downs == (["192.0.2.2"] if down else [])
    assert peering.down_events == (1 if down else 0)


def test_a_late_change_after_detach_is_ignored() -> None:
    peering, manager, downs = make()
    peering.attach("192.0.2.2", "192.0.2.1", FAST)
    callback = manager.sessions[("192.0.2.2", "192.0.2.1", False)][3]
    peering.detach("192.0.2.2")
    callback(
        BfdStateChange("192.0.2.2", "192.0.2.1", False, State.UP, State.DOWN,
                       Diag.CONTROL_DETECTION_TIME_EXPIRED, Diag.NO_DIAGNOSTIC, 0.0)
    )  # fmt: skip
    assert downs == []


def test_settings_from_options() -> None:
    assert bfd_settings(None) is None
    assert bfd_settings(BfdOptions(enabled=False)) is None
    assert bfd_settings(BfdOptions(min_rx_ms=100, min_tx_ms=200, multiplier=5)) == BfdSettings(
        100, 200, 5
    )
    with pytest.raises(ValueError, match="multiplier"):
        BfdSettings(multiplier=0)


ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t0000A8C0\t020200C0\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
IPV6_ROUTE = (
    "20010db8000000000000000000000000 40 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
    "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
    "20010db8000000000000000000000002 00000400 00000002 00000000 00000003     eth0\n"
    "20010db8000000000000000000000001 80 00000000000000000000000000000000 00 "
    "00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo\n"
)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.7", True),  # on the /24 of eth0
        ("192.168.3.4", False),  # via a gateway
        ("198.51.100.1", False),  # only the default route
        ("2001:db8::7", True),
        ("2001:db9::7", False),
    ],
)
def test_directly_connected(tmp_path: Path, address: str, expected: bool) -> None:
    (tmp_path / "route").write_text(ROUTE)
    (tmp_path / "ipv6_route").write_text(IPV6_ROUTE)
    assert directly_connected(address, tmp_path) is expected


def test_directly_connected_without_tables_guesses_multihop(tmp_path: Path) -> None:
    assert directly_connected("192.0.2.7", tmp_path) is False


def test_a_session_that_cannot_start_leaves_bgp_alone() -> None:
    class Busy(FakeManager):
        def add_session(self, peer: str, local: str, **kwargs: object) -> None:  # type: ignore[override]
            raise OSError(98, "Address already in use")

    peering = BfdPeering(Busy, lambda peer, change: None)
    peering.attach("192.0.2.2", "192.0.2.1", FAST)  # logged, not raised
    assert not peering.attached("192.0.2.2")
    assert "Address already in use" in peering.last_error
