"""systemd service notifications (``Type=notify``, ``WatchdogSec=``) without python-systemd.

Owns the ``sd_notify(3)`` protocol: one datagram of newline-separated ``KEY=value`` lines sent
to the ``AF_UNIX`` socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace). ``READY=1`` tells systemd the service is up — for ``podbgp bgpd`` once its sessions
are configured and the API listens, for ``podbgp node`` once the datastore is synced as well;
``WATCHDOG=1`` must then arrive at least every ``$WATCHDOG_USEC`` microseconds, or systemd
restarts the service. The watchdog task pings from the event loop, so a loop that is stuck (the
failure that matters for a single-threaded asyncio daemon) stops the pings. Outside systemd
(no ``$NOTIFY_SOCKET``) every call does nothing. Implements no RFC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger("podbgp.sdnotify")

# systemd's recommendation: ping at half the watchdog interval.
WATCHDOG_FRACTION = 0.5


class Notifier:
    """Sends service notifications to systemd; ``env`` is normally ``os.environ``."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (``notify(READY=1, STATUS="...")``); False when not sent.

        Never raises: a daemon must not die because its supervisor went away.
        """
        if self.address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            log.warning("event=sd-notify-failed fields=%s error=%s", ",".join(fields), exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        fields: dict[str, str | int] = {"READY": 1}
        if status:
            fields["STATUS"] = status
        return self.notify(**fields)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def stopping(self) -> bool:
        return self.notify(STOPPING=1)


def _socket_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract socket namespace
    if value.startswith("/"):
        return value
    log.warning("event=sd-notify-ignored reason=NOTIFY_SOCKET is not a path")
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings systemd expects at most, or None without a watchdog for us."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # systemd names the process it watches; a child that inherited the variable is not it.
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000


async def watchdog_loop(
    notifier: Notifier, healthy: Callable[[], bool] | None = None, period: float | None = None
) -> None:
    """Ping the watchdog every ``period`` (default: half of ``$WATCHDOG_USEC``) while
    ``healthy()`` holds; skipping pings lets systemd restart a daemon that is wedged."""
    if period is None:
        if notifier.watchdog_interval is None:
            return
        period = notifier.watchdog_interval * WATCHDOG_FRACTION
    while True:
        if healthy is None or healthy():
            notifier.watchdog()
        else:
            log.warning("event=watchdog-skipped reason=unhealthy")
        await asyncio.sleep(period)


def start_watchdog(
    notifier: Notifier, healthy: Callable[[], bool] | None = None
) -> asyncio.Task[None] | None:
    """The watchdog task when systemd asked for one (``WatchdogSec=``), else None."""
    if not notifier.enabled or notifier.watchdog_interval is None:
        return None
    return asyncio.create_task(watchdog_loop(notifier, healthy), name="sd-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Module-level conveniences reading os.environ at call time (no state kept between calls).
def notify_ready(status: str = "") -> bool:
    """Tell systemd the service is ready (``READY=1``)."""
    return Notifier().ready(status)


def notify_watchdog() -> bool:
    """One watchdog keep-alive (``WATCHDOG=1``)."""
    return Notifier().watchdog()
