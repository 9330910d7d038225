"""The shipped systemd units, unchanged, under a real systemd (PID 1 of a systemd-nspawn guest).

A Debian 12 rootfs (scripts/nspawn-rootfs.sh, cached) boots under ``systemd-nspawn -b
--keep-unit --register=no --private-network --volatile=overlay`` (this machine's PID 1 is not
systemd, so there is no host D-Bus; the overlay keeps the cached rootfs as built). The guest is
entered with ``nsenter -t <guest PID 1> -a``. Inside: the wheel of the tree under test, the two
units from deploy/systemd as they are, etcd (Debian's), two addresses on a veth pair (no
``dummy`` here). Shown:

* podbgp-node is ``activating`` while etcd is down and becomes ``active`` (READY=1) only after
  etcd is up and the datastore synced; both units report a StatusText through sd_notify;
* podbgp-rr runs as its DynamicUser (a uid from systemd's dynamic range, not root);
* podbgp-node runs with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE only, and installs its routes;
* the node's session with the reflector is Established, the reflector has its route;
* with a ``WatchdogSec=2s`` drop-in, SIGSTOP on podbgp-node's main PID makes systemd kill and
  restart it (a new main PID, NRestarts 1, active again);
* ``systemd-analyze security`` scores both units (reported; the README quotes them);
* ``systemctl poweroff`` ends the guest; nothing of it is left on the host.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import REPO, missing_tools
from tests.deploy.timings import TIMINGS

pytestmark = pytest.mark.deploy

UNITS = REPO / "deploy/systemd"
NODE_IP, RR_IP = "10.99.0.1", "10.99.0.2"
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW = 10, 12, 13
DYNAMIC_UIDS = range(61184, 65520)  # systemd's DynamicUser= range

NODE_YAML = f"""nodeName: nspawn-node
address: {NODE_IP}/24
datastore: {{type: etcd, endpoints: ["http://127.0.0.1:2379"], prefix: /podbgp/}}
api: {{listen: "127.0.0.1:9179"}}
logLevel: info
"""
RR_YAML = f"""asNumber: 64512
routerId: {RR_IP}
listen: {{address: {RR_IP}, port: 179}}
api: {{listen: "127.0.0.1:9178"}}
routeReflector: {{clusterId: 1.1.1.1}}
peerRanges:
  - {{range: 10.99.0.0/24, asNumber: 64512, routeReflectorClient: true}}
logLevel: info
"""
CLUSTER_YAML = f"""apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {{name: default}}
spec: {{asNumber: 64512, nodeToNodeMeshEnabled: false}}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {{name: pods}}
spec: {{cidr: 10.245.0.0/16, blockSize: 24, ipipMode: Never}}
---
apiVersion: podbgp/v1
kind: BGPPeer
metadata: {{name: rr}}
spec: {{peerIP: {RR_IP}, asNumber: 64512}}
"""


def wait_for(what: str, probe: object, timeout: float, interval: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = probe()  # type: ignore[operator]
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@dataclass
class Guest:
    nspawn: subprocess.Popen[bytes]
    leader: int  # the guest's systemd (PID 1 inside), as a host PID

    def run(
        self, *argv: str, timeout: float = 60, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv], input=stdin, capture_output=True,
            text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, timeout: float = 60, check: bool = True) -> str:
        return self.run("sh", "-c", script, timeout=timeout, check=check).stdout

    def write(self, path: str, text: str) -> None:
        self.run("sh", "-c", f'mkdir -p "$(dirname {path})" && cat > {path}', stdin=text)

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-p", prop, "--value", unit).stdout.strip()


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def is_systemd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
    except OSError:
        return False


def guest_pid1(nspawn: int) -> int:
    """The host PID of the guest's systemd once its private bus is up (0 until then).

    nspawn forks an intermediate child first; PID 1 of the guest is the child named systemd,
    and ``systemctl`` works once it listens on /run/systemd/private.
    """
    try:
        for pid in children(nspawn):
            if (
                Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
                and Path(f"/proc/{pid}/root/run/systemd/private").exists()
            ):
                return pid
    except OSError:  # a child that just went away
        pass
    return 0


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    reason = missing_tools("systemd-nspawn", "mmdebstrap", "nsenter")
    if reason:
        pytest.skip(reason)
    t0 = time.monotonic()
    rootfs = subprocess.run(
        ["bash", str(REPO / "scripts/nspawn-rootfs.sh")], capture_output=True, text=True,
        timeout=1200, check=True,
    ).stdout.strip()  # fmt: skip
    TIMINGS["systemd rootfs (scripts/nspawn-rootfs.sh)"] = time.monotonic() - t0
    with tempfile.TemporaryDirectory(prefix="podbgp-nspawn-") as tmp:
        wheels = Path(tmp, "wheels")
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
             str(wheels), str(REPO)], capture_output=True, timeout=300, check=True,
        )  # fmt: skip
        log = open(Path(tmp, "nspawn.log"), "wb")  # noqa: SIM115 - closed below
        machine = f"pbsd{os.getpid()}"
        t0 = time.monotonic()
        nspawn = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", rootfs, "--volatile=overlay", "-b", "--keep-unit",
             "--register=no", "--private-network", f"--machine={machine}",
             f"--bind-ro={wheels}:/wheels", f"--bind-ro={UNITS}:/units"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        leader = 0
        try:
            leader = int(
                wait_for("the guest's systemd, its bus up", lambda: guest_pid1(nspawn.pid), 60)
            )  # type: ignore[call-overload]
            g = Guest(nspawn, leader)
            state = g.run("systemctl", "is-system-running", "--wait", timeout=120, check=False)
            TIMINGS["systemd-nspawn boot to is-system-running"] = time.monotonic() - t0
            assert state.stdout.strip() in ("running", "degraded"), state
            yield g
            # Clean shut-down of the guest: poweroff, nspawn exits.
            t0 = time.monotonic()
            g.run("systemctl", "poweroff", "--no-block")
            nspawn.wait(timeout=60)
            TIMINGS["systemd-nspawn poweroff"] = time.monotonic() - t0
        finally:
            if nspawn.poll() is None:
                os.kill(nspawn.pid, signal.SIGKILL)  # ours, by PID
                nspawn.wait(timeout=30)
            if leader and is_systemd(leader):  # the guest outlived nspawn
                os.kill(leader, signal.SIGKILL)  # the guest's PID 1 (ours): its namespace ends
                wait_for("the guest's end", lambda: not Path(f"/proc/{leader}").exists(), 30)
            log.close()
            output = Path(tmp, "nspawn.log").read_text(errors="replace")
    assert nspawn.returncode == 0, output[-3000:]
    assert not Path(f"/proc/{leader}").exists()


def caps(status: str, field: str) -> set[int]:
    value = int(re.search(rf"^{field}:\s*([0-9a-f]+)$", status, re.M).group(1), 16)  # type: ignore[union-attr]
    return {bit for bit in range(64) if value >> bit & 1}


def test_units_under_systemd(guest: Guest) -> None:
    g = guest
    # The tree under test and the units exactly as shipped.
    g.sh("pip install -q --no-deps --break-system-packages /wheels/podbgp-*.whl")
    g.sh("cp /units/podbgp-node.service /units/podbgp-rr.service /etc/systemd/system/")
    g.sh("cmp /units/podbgp-node.service /etc/systemd/system/podbgp-node.service")
    g.write("/etc/podbgp/node.yaml", NODE_YAML)
    g.write("/etc/podbgp/rr.yaml", RR_YAML)
    g.write("/root/cluster.yaml", CLUSTER_YAML)
    # Two addresses for two BGP speakers (no dummy module here): a veth pair.
    g.sh(
        f"ip link add pbn0 type veth peer name pbn1 && ip addr add {NODE_IP}/24 dev pbn0 && "
        f"ip addr add {RR_IP}/24 dev pbn1 && ip link set pbn0 up && ip link set pbn1 up"
    )
    g.run("systemctl", "daemon-reload")

    # READY only after the datastore synced: with etcd down the node stays "activating".
    g.run("systemctl", "stop", "etcd")
    t0 = time.monotonic()
    g.run("systemctl", "start", "--no-block", "podbgp-node")
    time.sleep(6)
    assert g.show("podbgp-node", "ActiveState") == "activating"
    assert "waiting for the datastore" in g.show("podbgp-node", "StatusText")
    g.run("systemctl", "start", "etcd", timeout=90)
    etcd_up = int(g.show("etcd", "ActiveEnterTimestampMonotonic"))
    g.run("env", "PODBGP_ETCD_ENDPOINTS=http://127.0.0.1:2379", "podbgp", "apply", "-f",
          "/root/cluster.yaml")  # fmt: skip
    wait_for("podbgp-node active", lambda: g.show("podbgp-node", "ActiveState") == "active", 60)
    node_ready = int(g.show("podbgp-node", "ActiveEnterTimestampMonotonic"))
    assert node_ready > etcd_up, "READY=1 came before the datastore was reachable"
    TIMINGS["podbgp-node: etcd up -> READY (active)"] = (node_ready - etcd_up) / 1e6
    node_pid = int(g.show("podbgp-node", "MainPID"))

    t0 = time.monotonic()
    g.run("systemctl", "start", "podbgp-rr", timeout=90)  # Type=notify: returns once READY
    TIMINGS["podbgp-rr: systemctl start (to READY)"] = time.monotonic() - t0
    assert g.show("podbgp-rr", "ActiveState") == "active"
    assert "synced" in g.show("podbgp-node", "StatusText")
    assert g.show("podbgp-rr", "StatusText"), "no STATUS= from podbgp-rr"

    # The reflector runs as its DynamicUser: not root, a uid from the dynamic range.
    rr_pid = int(g.show("podbgp-rr", "MainPID"))
    rr_status = g.sh(f"cat /proc/{rr_pid}/status")
    uid = int(re.search(r"^Uid:\s+(\d+)", rr_status, re.M).group(1))  # type: ignore[union-attr]
    assert uid in DYNAMIC_UIDS, uid
    assert g.sh(f"getent passwd {uid}").startswith("podbgp-rr:")
    assert caps(rr_status, "CapEff") == {CAP_NET_BIND_SERVICE}

    # The node: root with only CAP_NET_ADMIN, CAP_NET_RAW (legacy iptables) and
    # CAP_NET_BIND_SERVICE (port 179) ...
    node_status = g.sh(f"cat /proc/{node_pid}/status")
    node_caps = {CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE}
    assert caps(node_status, "CapBnd") == node_caps
    assert caps(node_status, "CapEff") == node_caps

    # ... the session with the reflector Established, the reflector holding the node's block ...
    def node_api() -> dict[str, object]:
        out = g.run("podbgp", "status", "--api", "http://127.0.0.1:9179", "-o", "json",
                    check=False).stdout  # fmt: skip
        return dict(json.loads(out)) if out.strip().startswith("{") else {}

    def established() -> bool:
        peers = node_api().get("peers") or []
        return [(p["address"], p["state"]) for p in peers] == [(RR_IP, "Established")]  # type: ignore[index,union-attr]

    t0 = time.monotonic()
    wait_for("node <-> reflector Established", established, 60)
    TIMINGS["podbgp-node <-> podbgp-rr Established (after rr READY)"] = time.monotonic() - t0

    # ... and the node's own routes installed by felix (its block, blackholed).
    def block_route() -> str:
        return g.sh("ip route show proto 80 | grep '^blackhole 10.245.' || true").strip()

    block = str(wait_for("the node's blackhole route", block_route, 30)).split()[1]
    rr_routes = g.run("podbgp", "status", "--api", "http://127.0.0.1:9178", "-o", "json").stdout
    assert block in rr_routes or json.loads(rr_routes)["status"]["routes"] >= 1

    # The watchdog: a short WatchdogSec in a drop-in, then freeze the node's main PID.
    g.write("/etc/systemd/system/podbgp-node.service.d/watchdog.conf",
            "[Service]\nWatchdogSec=2s\nRestartSec=1s\n")  # fmt: skip
    g.run("systemctl", "daemon-reload")
    g.run("systemctl", "restart", "podbgp-node", timeout=90)
    frozen = int(g.show("podbgp-node", "MainPID"))
    restarts = int(g.show("podbgp-node", "NRestarts"))
    t0 = time.monotonic()
    g.run("kill", "-STOP", str(frozen))

    def restarted() -> bool:
        pid = int(g.show("podbgp-node", "MainPID") or 0)
        return pid not in (0, frozen) and g.show("podbgp-node", "ActiveState") == "active"

    wait_for("watchdog restart of a SIGSTOPped podbgp-node", restarted, 60)
    TIMINGS["watchdog (2 s): SIGSTOP -> restarted and READY"] = time.monotonic() - t0
    assert int(g.show("podbgp-node", "NRestarts")) == restarts + 1
    journal = g.run("journalctl", "-u", "podbgp-node", "--no-pager", "-q").stdout
    assert "Watchdog timeout" in journal, journal[-2000:]
    g.sh(f"test ! -e /proc/{frozen}")

    # systemd-analyze security: the exposure scores (lower is better), for the README.
    for unit in ("podbgp-node", "podbgp-rr"):
        out = g.run("systemd-analyze", "security", "--no-pager", f"{unit}.service",
                    check=False).stdout  # fmt: skip
        score = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\S+)", out)
        assert score, out[-1000:]
        TIMINGS[f"systemd-analyze security {unit}: {score.group(2)} (exposure)"] = float(
            score.group(1)
        )
