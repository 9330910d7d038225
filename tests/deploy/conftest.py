"""The ``deploy`` test group: the shipped artefacts run for real on this machine.

* a Docker engine (Debian's ``docker.io``) started by ``scripts/dockerd.sh`` in a network
  namespace of its own, with its own data root, exec root, pidfile and socket, stopped by its PID
  afterwards — the host's network is never touched but for one veth and one NAT rule (removed);
* base images made from Debian packages by ``deploy/image/base.sh`` (no registry here);
* systemd under ``systemd-nspawn`` (tests/deploy/test_systemd.py).

Rootfs tarballs, images and build cache persist under ``$PODBGP_TEST_CACHE`` (default
``/var/cache/podbgp-test``), so a machine builds them once; one test run at a time uses the
engine's data root (an flock on it). Every wait is bounded.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.timings import TIMINGS

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("PODBGP_TEST_CACHE", "/var/cache/podbgp-test"))
DOCKER = "/usr/bin/docker"  # Debian's CLI, matching its engine (a newer one may sit in PATH)


def missing_tools(*tools: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, a Docker engine, systemd-nspawn)"
    missing = [t for t in tools if shutil.which(t) is None and not Path(t).exists()]
    if missing:
        return f"not installed: {', '.join(missing)} (scripts/setup-test-host.sh installs them)"
    return None


@dataclass
class Engine:
    name: str
    env: dict[str, str]
    pid: int

    def run(
        self, *argv: str, timeout: float = 120, check: bool = True, cwd: Path = REPO
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(argv), env=self.env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-3000:]}"
            )
        return proc

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> str:
        return self.run(DOCKER, *args, timeout=timeout, check=check).stdout


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    reason = missing_tools("/usr/sbin/dockerd", DOCKER, "docker-compose", "mmdebstrap", "iptables")
    if reason:
        pytest.skip(reason)
    CACHE.mkdir(parents=True, exist_ok=True)
    data = CACHE / "docker-data"
    with open(CACHE / "docker-data.lock", "w") as lock:
        deadline = time.monotonic() + 900
        while True:  # one engine per data root: wait (bounded) for another run to finish
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{data} stayed locked by another test run") from None
                time.sleep(2)
        name = f"t{os.getpid() % 1000000}"
        env = dict(os.environ, PODBGP_DOCKER_DATA=str(data), DOCKER=DOCKER,
                   PODBGP_IMAGE_CACHE=str(CACHE / "images"))  # fmt: skip
        script = str(REPO / "scripts/dockerd.sh")
        t0 = time.monotonic()
        proc = subprocess.run(["bash", script, "start", name], env=env, capture_output=True,
                              text=True, timeout=90, check=False)  # fmt: skip
        try:
            assert proc.returncode == 0, proc.stderr
            env["DOCKER_HOST"] = proc.stdout.strip().split("=", 1)[1]
            pid = int(Path(f"/run/podbgp-docker/{name}/docker.pid").read_text())
            TIMINGS["Docker engine up (scripts/dockerd.sh start)"] = time.monotonic() - t0
            yield Engine(name, env, pid)
        finally:
            stop = subprocess.run(["bash", script, "stop", name], env=env, capture_output=True,
                                  text=True, timeout=120, check=False)  # fmt: skip
            assert stop.returncode == 0, stop.stderr
            leftovers = check_engine_gone(name)
            assert not leftovers, f"the engine left behind: {leftovers}"


def check_engine_gone(name: str) -> list[str]:
    """What of engine ``name`` is still on the host (empty: nothing)."""
    left: list[str] = []
    if Path(f"/run/netns/pbd-{name}").exists():
        left.append(f"netns pbd-{name}")
    if Path(f"/sys/class/net/pbdh-{name}").exists():
        left.append(f"veth pbdh-{name}")
    if Path("/etc/docker/key.json").exists():
        left.append("/etc/docker/key.json")
    if Path(f"/run/podbgp-docker/{name}").exists():
        left.append(f"/run/podbgp-docker/{name}")
    nat = subprocess.run(["iptables", "-t", "nat", "-S", "POSTROUTING"], capture_output=True,
                         text=True, timeout=30, check=False).stdout  # fmt: skip
    if f"podbgp-docker-{name}" in nat:
        left.append("NAT rule")
    mounts = Path("/proc/self/mountinfo").read_text()
    if f"/run/podbgp-docker/{name}/" in mounts:
        left.append("mounts")
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"/run/podbgp-docker/{name}/".encode() in cmdline:
            left.append(f"process {proc.name}")
    return left


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """At the end of the session, the measured times (the README quotes them)."""
    if TIMINGS:
        terminalreporter.write_sep("-", "deploy: measured times")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:<60} {seconds:7.1f}")
