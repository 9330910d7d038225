"""sd_notify without python-systemd: datagrams arrive on a real AF_UNIX socket standing in for
systemd's, in a per-test directory (and in the abstract namespace)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from podbgp.ops import sdnotify
from podbgp.ops.sdnotify import Notifier, start_watchdog, stop_watchdog, watchdog_loop


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield path, sock
    finally:
        sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_ready_status_stopping(systemd_socket: tuple[str, socket.socket]) -> None:
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("2 peers configured")
    assert received(sock) == "READY=1\nSTATUS=2 peers configured"
    assert notifier.status("datastore synced")
    assert received(sock) == "STATUS=datastore synced"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_abstract_socket() -> None:
    name = f"podbgp-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert received(sock) == "READY=1"


def test_module_functions_read_the_environment(
    systemd_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sock = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert sdnotify.notify_ready()
    assert received(sock) == "READY=1"
    assert sdnotify.notify_watchdog()
    assert received(sock) == "WATCHDOG=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sdnotify.notify_ready()


def test_outside_systemd_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert notifier.watchdog_interval is None
    assert not Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready()
    assert "event=sd-notify-failed fields=READY" in caplog.text


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    assert Notifier(env).watchdog_interval == interval


async def test_watchdog_loop_pings(systemd_socket: tuple[str, socket.socket]) -> None:
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "20000"})
    task = start_watchdog(notifier)
    assert task is not None
    try:
        for _ in range(3):  # half the interval apart, several in a row
            assert await asyncio.to_thread(received, sock) == "WATCHDOG=1"
    finally:
        await stop_watchdog(task)
    assert task.cancelled()


async def test_watchdog_loop_skips_pings_while_unhealthy(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, sock = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    asked: list[bool] = []
    healthy = False

    def check() -> bool:
        asked.append(healthy)
        return healthy

    task = asyncio.create_task(watchdog_loop(notifier, check, period=0.001))
    try:
        while len(asked) < 3:  # three rounds while unhealthy
            await asyncio.sleep(0.001)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing was sent
            sock.recv(4096)
        sock.settimeout(5)
        healthy = True
        assert await asyncio.to_thread(received, sock) == "WATCHDOG=1"
    finally:
        await stop_watchdog(task)


def test_no_watchdog_task_without_watchdog_usec(
    systemd_socket: tuple[str, socket.socket],
) -> None:
    path, _ = systemd_socket
    assert start_watchdog(Notifier({"NOTIFY_SOCKET": path})) is None
    assert start_watchdog(Notifier({"WATCHDOG_USEC": "1000000"})) is None
