"""The IPIP cluster test: the whole lab with `--encap ipip` in a VM booted from Debian's kernel.

The host kernel has no ``ipip`` module, so one qemu VM (tests/vm/vmkit.py) runs
tests/vm/lab_scenario.py: real etcd, four `podbgp node` processes on two subnets, pods made by
`podbgp-cni`. Asserted here: every session Established, every pod reaches every pod, the
cross-subnet pairs go through `tunl0 onlink` and the same-subnet pairs directly, the packets on
the router's wire are IP-in-IP, and `lab down` leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.vm.vmkit import GUEST_RESULTS, run_vm

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces in the VM, 9p export of /)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86 is not installed")
    results = tmp_path_factory.mktemp("lab-vm")
    argv = [sys.executable, "-m", "tests.vm.lab_scenario", f"{GUEST_RESULTS}/facts.json"]
    vm = run_vm(argv, results, env={"PYTHONPATH": str(REPO)}, cwd=str(REPO), timeout=1800,
                memory="2048M")  # fmt: skip
    facts_file = results / "facts.json"
    assert facts_file.exists(), (
        f"VM status {vm.status} (qemu {vm.qemu_status})\n{vm.console[-3000:]}"
    )
    data: dict[str, Any] = json.loads(facts_file.read_text())
    assert "error" not in data, data.get("error")
    assert data["up"]["status"] == 0, data["up"]["stdout"][-3000:] + data["up"]["stderr"]
    return data


def test_every_session_established_and_every_pod_reaches_every_pod(facts: dict[str, Any]) -> None:
    out = facts["up"]["stdout"]
    assert "encap ipip" in out
    table = out.split("BGP sessions (cluster-wide)")[1].split("Pod-to-pod")[0]
    assert table.count("Established") == 12, table  # 4 nodes, full mesh: 4 x 3
    section, outside = out.split("Pod-to-pod ping")[1].split("Pod to the outside host")
    rows = [r for r in section.splitlines() if r.startswith("pod-")]
    # natOutgoing over IPIP nodes too: every pod reaches the host beyond the router.
    assert outside.count("✓") == 8 and "✗" not in outside, outside
    matrix = "\n".join(rows)
    assert matrix.count("✓") == 8 * 7 and "✗" not in matrix, matrix
    # pods 1-x, 2-x on subnet 1 and 3-x, 4-x on subnet 2: across subnets it is IPIP
    for row in rows:
        cells = row.split()[1:]
        assert cells.count("ipip") == 4 and cells.count("direct") == 2, row


def test_cross_subnet_blocks_use_tunl0_onlink_and_the_wire_carries_ip_in_ip(
    facts: dict[str, Any],
) -> None:
    tunnelled = [r for r in facts["routes_node1"] if "dev tunl0" in r]
    assert len(tunnelled) == 2, facts["routes_node1"]  # node-3's and node-4's blocks
    assert all("onlink" in r and "mtu 1480" in r for r in tunnelled), tunnelled
    assert "dev tunl0" in facts["route_get"]
    src, dst = facts["pods"]["src"]["ip"], facts["pods"]["dst"]["ip"]
    assert facts["ping"]["status"] == 0, facts["ping"]
    inner = [line for line in facts["tcpdump"] if f"{src} > {dst}" in line]
    assert inner and "IP 172.31.1." in inner[0], facts["tcpdump"]  # outer node addresses


def test_lab_down_leaves_nothing(facts: dict[str, Any]) -> None:
    assert facts["down"]["status"] == 0
    assert facts["left_namespaces"] == []
    assert facts["left_pids"] == []
