"""Network namespaces for real-process tests: nodes, veth links, bridged LANs, daemons, teardown.

Every namespace, interface and process made here belongs to one :class:`NetnsFactory`, whose
names carry this process's PID (``pb<pid>x<n>``) so concurrent runs never collide, and whose
:meth:`NetnsFactory.close` always runs (context manager or pytest fixture). Teardown kills only
processes this factory started, by PID, then any process still left inside one of *its*
namespaces (necessarily started by this run), then deletes the namespaces; deleting a namespace
removes its veth ends, and with them their peers. Every wait is bounded in time.

Interface names are limited to 15 characters (IFNAMSIZ - 1); the generated ones stay under 14.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

# netns_socket: the lab's implementation, the one in the tree; the tests import it from here.
from podbgp.lab.netns import NETNS_DIR, netns_socket  # noqa: F401

DEFAULT_TIMEOUT = 10.0
MAX_IFNAME = 15

T = TypeVar("T")

_counter = itertools.count(1)
_counter_lock = threading.Lock()


def unique_name(tag: str = "") -> str:
    """A per-run unique short name, ``pb<pid>x<n><tag>``; ``tag`` keeps it readable."""
    with _counter_lock:
        n = next(_counter)
    name = f"pb{os.getpid()}x{n}{tag}"
    if len(name) > MAX_IFNAME:
        raise ValueError(f"name {name!r} longer than {MAX_IFNAME} characters")
    return name


def wait_until(
    predicate: Callable[[], T], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.1
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that; bounded in time.

    Raises TimeoutError naming the predicate, with the last exception it raised (if any), so a
    failing test says what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may not be checkable yet (daemon still starting)
            last_error = exc
        if time.monotonic() >= deadline:
            what = getattr(predicate, "__name__", repr(predicate))
            detail = f"; last error: {last_error!r}" if last_error else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


@contextmanager
def frozen(proc: subprocess.Popen[bytes]) -> Iterator[float]:
    """Stop ``proc`` with SIGSTOP (a hung process: nothing sent, its sockets stay open) and
    continue it on leaving, also on failure; yields the monotonic time it was stopped."""
    proc.send_signal(signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        proc.send_signal(signal.SIGCONT)


def netns_available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    try:
        proc = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, timeout=DEFAULT_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns` is unavailable: {exc}"
    if proc.returncode != 0:
        return f"`ip netns list` failed: {proc.stderr.strip()}"
    return None


def run(
    ns: str | None,
    *argv: str,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion inside namespace ``ns`` (host namespace when None)."""
    cmd = [*_exec_prefix(ns), *argv]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, input=input, check=False
    )
    if check and proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return proc


def popen(ns: str | None, argv: Sequence[str], log_path: Path | str) -> subprocess.Popen[bytes]:
    """Start a long-running process inside ``ns``; stdout and stderr go to ``log_path``.

    ``ip netns exec`` execs the command itself, so the returned PID is the daemon's own.
    Prefer :meth:`NetnsFactory.popen`, which also guarantees the process is stopped.
    """
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - the child keeps it; closed below
    try:
        return subprocess.Popen(
            [*_exec_prefix(ns), *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C on the test run must not hit the daemon first
        )
    finally:
        log.close()


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit status (None if it never died)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
    return proc.returncode


def _exec_prefix(ns: str | None) -> list[str]:
    return [] if ns is None else ["ip", "netns", "exec", ns]


@dataclass(frozen=True)
class Link:
    """One veth pair: ``ifname_a`` lives in ``ns_a``, ``ifname_b`` in ``ns_b``."""

    ns_a: str
    ifname_a: str
    ns_b: str
    ifname_b: str


@dataclass(frozen=True)
class Lan:
    """A bridge in its own namespace; ``ports`` maps each member namespace to its interface."""

    bridge_ns: str
    bridge: str
    ports: dict[str, str]


class NetnsFactory:
    """Owns namespaces, links and processes for one test; :meth:`close` undoes all of it."""

    def __init__(self, log_dir: Path | str | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self._closed = False

    # -- namespaces and links ---------------------------------------------------------------

    def namespace(self, tag: str = "") -> str:
        """A new namespace with loopback up and IPv6 DAD off (addresses usable at once)."""
        name = unique_name(tag)
        run(None, "ip", "netns", "add", name)
        self.namespaces.append(name)
        run(name, "ip", "link", "set", "lo", "up")
        # Without DAD an IPv6 address is usable the moment it is added, no tentative wait.
        for key in ("all", "default"):
            run(name, "sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0")
        return name

    def veth(
        self,
        ns_a: str,
        ns_b: str,
        addrs_a: Iterable[str] = (),
        addrs_b: Iterable[str] = (),
        ifname_a: str | None = None,
        ifname_b: str | None = None,
    ) -> Link:
        """A veth pair between two namespaces, both ends up, with the given ``addr/len`` each."""
        a = ifname_a or unique_name("a")
        b = ifname_b or unique_name("b")
        # The kernel creates each end directly in its target namespace (no host-side name).
        run(None, "ip", "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b,
            "netns", ns_b)  # fmt: skip
        for ns, ifname, addrs in ((ns_a, a, addrs_a), (ns_b, b, addrs_b)):
            for addr in addrs:
                self.add_address(ns, ifname, addr)
            run(ns, "ip", "link", "set", ifname, "up")
        return Link(ns_a, a, ns_b, b)

    def lan(self, members: dict[str, Iterable[str]], ifname: str | None = None) -> Lan:
        """A bridge in a dedicated namespace joining every member namespace (3+ peers on a LAN).

        ``members`` maps namespace → addresses (``addr/len``) for its port; each member gets
        one veth into the bridge, named ``ifname`` when given (names are per namespace).
        """
        bridge_ns = self.namespace("br")
        bridge = "br0"
        run(bridge_ns, "ip", "link", "add", bridge, "type", "bridge")
        run(bridge_ns, "ip", "link", "set", bridge, "up")
        ports: dict[str, str] = {}
        for ns, addrs in members.items():
            link = self.veth(ns, bridge_ns, addrs_a=addrs, ifname_a=ifname)
            run(bridge_ns, "ip", "link", "set", link.ifname_b, "master", bridge)
            ports[ns] = link.ifname_a
        return Lan(bridge_ns, bridge, ports)

    def add_address(self, ns: str, ifname: str, cidr: str) -> None:
        extra = ["nodad"] if ":" in cidr else []
        run(ns, "ip", "addr", "add", cidr, "dev", ifname, *extra)

    # -- processes --------------------------------------------------------------------------

    def run(
        self, ns: str | None, *argv: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run(ns, *argv, check=check, timeout=timeout)

    def popen(
        self, ns: str | None, argv: Sequence[str], log_path: Path | str
    ) -> subprocess.Popen[bytes]:
        """Start a daemon in ``ns``; it is stopped (by PID) on :meth:`close` at the latest."""
        proc = popen(ns, argv, log_path)
        self.processes.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
        return stop_process(proc, timeout)

    # -- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop our processes, then delete our namespaces. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        for proc in reversed(self.processes):
            if stop_process(proc) is None:
                errors.append(f"pid {proc.pid} survived SIGKILL")
        for ns in reversed(self.namespaces):
            self._kill_leftovers(ns)
            deleted = run(None, "ip", "netns", "delete", ns, check=False)
            if deleted.returncode != 0 and (NETNS_DIR / ns).exists():
                errors.append(f"deleting {ns}: {deleted.stderr.strip()}")
        if errors:
            raise RuntimeError("netns teardown incomplete: " + "; ".join(errors))

    def _kill_leftovers(self, ns: str) -> None:
        # A process still inside one of this run's namespaces was started by this run (e.g. a
        # daemon's child); left alive it would pin the namespace after `ip netns delete`.
        proc = run(None, "ip", "netns", "pids", ns, check=False)
        for text in proc.stdout.split():
            pid = int(text)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            if not run(None, "ip", "netns", "pids", ns, check=False).stdout.strip():
                return
            time.sleep(0.05)

    def __enter__(self) -> NetnsFactory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
