"""`podbgp lab up|status|down`: the compose topology in namespaces, end to end.

The lab builds etcd, a router between two subnets, four `podbgp node`s (with or without two
`podbgp rr` reflectors), two pods per node and a host outside every pool; every session must be
Established, every pod must reach every other pod, and the outside host (through natOutgoing)
from its node's address; `down` must leave no namespace and no process behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from podbgp.lab.lab import kernel_has

pytestmark = pytest.mark.netns


def lab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podbgp", "lab", *args], capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def namespaces(prefix: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.startswith(prefix)]


def matrices(stdout: str) -> dict[int, str]:
    """The ping matrix of each IP family in the lab's output: family -> its pod rows."""
    out = {}
    for part in stdout.split("Pod-to-pod ping over IPv")[1:]:
        rows = part.split("IP addresses")[0].split("Pod to the outside host")[0].splitlines()
        out[int(part[0])] = "\n".join(r for r in rows if r.startswith("pod-"))
    return out


@pytest.mark.parametrize(
    ("reflectors", "families", "sessions"),
    [(2, "v4,v6", 32), (0, "v4,v6", 24), (0, "v4", 12)],
    ids=["two-reflectors-dual-stack", "full-mesh-dual-stack", "full-mesh-ipv4"],
)
def test_lab_up_status_down(tmp_path: Path, reflectors: int, families: str, sessions: int) -> None:
    """Dual stack (the default) doubles the sessions: one per family between two members."""
    prefix = f"pbt{os.getpid() % 10000}r{reflectors}{len(families)}-"
    where = ["--dir", str(tmp_path / "lab")]
    up = lab("up", "--reflectors", str(reflectors), "--ip-families", families, "--prefix", prefix,
             *where)  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        table = up.stdout.split("BGP sessions (cluster-wide)")[1].split("Pod-to-pod")[0]
        assert table.count("Established") == sessions, table
        assert "unreachable" not in table
        found = matrices(up.stdout)
        assert sorted(found) == ([4, 6] if families == "v4,v6" else [4])
        paths = {"direct", "local"} | ({"ipip"} if "encap ipip" in up.stdout else {"vxlan"})
        for version, matrix in found.items():
            assert matrix.count("✓") == 8 * 7 and "✗" not in matrix, (version, matrix)
            assert {w for w in matrix.split() if w.isalpha() and w.islower()} <= paths | {"pod"}
            # The cross-subnet pairs go encapsulated (IPv6 through vxlan-v6.podbgp).
            assert "vxlan" in matrix or (version == 4 and "ipip" in matrix)
        # natOutgoing: every pod reaches the host beyond the router, which sees the pod's node.
        outside = up.stdout.split("Pod to the outside host")[1].split("IP addresses")[0]
        rows = [r for r in outside.splitlines() if r.startswith("pod-")]
        assert len(rows) == 8 and "✗" not in outside, outside
        for row in rows:
            node = int(row.split("-")[1])
            subnet = 1 if node <= 2 else 2
            assert f"saw 172.31.{subnet}.{10 + node}" in row, row
            assert row.count("✓") == len(found), row
            if 6 in found:
                assert f"saw fd31:0:0:{subnet}::{10 + node}" in row, row
        addresses = up.stdout.split("IP addresses: ")[1].splitlines()[0]
        assert addresses.count(":") > 0 if families == "v4,v6" else ":" not in addresses
        state = json.loads((tmp_path / "lab" / "state.json").read_text())
        assert len(state["pids"]) == 4 + reflectors + 1  # nodes, reflectors, etcd

        again = lab("status", *where)
        assert again.returncode == 0, again.stdout
        # the matrices and their legends, and the outside host's table
        assert again.stdout.count("✓ ") == len(found) * (8 * 7 + 1 + 8)
        if reflectors:
            switch_and_back(where)
        else:
            refused = lab("topology", "mesh", *where)
            assert refused.returncode == 2 and "no reflectors" in refused.stdout, refused.stdout
    finally:
        down = lab("down", *where)
    assert down.returncode == 0, down.stdout + down.stderr
    assert namespaces(prefix) == []
    for pid in state["pids"]:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert not (tmp_path / "lab").exists()


def switch_and_back(where: list[str]) -> None:
    """Mesh and back to the reflectors while every pod pings the next node's pod: no loss
    (make-before-break: podbgp.node.handover)."""
    for mode in ("mesh", "reflectors"):
        out = lab("topology", mode, *where, timeout=120)
        print(out.stdout)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"switched to {mode}" in out.stdout
        flows = [r for r in out.stdout.splitlines() if r.startswith("pod-")]
        assert len(flows) == 16, out.stdout  # 8 pods, two families
        for row in flows:
            sent, received, lost = (int(w) for w in row.split()[-3:])
            assert sent > 40 and received == sent and lost == 0, row


@pytest.mark.may_skip
def test_lab_refuses_ipip_on_a_kernel_without_it(tmp_path: Path) -> None:
    if kernel_has("ipip", f"pbt{os.getpid() % 10000}k-"):
        pytest.skip("this kernel has IPIP: the refusal cannot happen here")
    out = lab("up", "--encap", "ipip", "--dir", str(tmp_path / "lab"), "--prefix", "pbtx-")
    assert out.returncode == 2
    assert "no IPIP" in out.stdout and "--encap vxlan" in out.stdout
    assert namespaces("pbtx-") == []
