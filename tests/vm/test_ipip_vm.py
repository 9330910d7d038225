"""IPIP (tunl0) routes programmed by felix, in a VM booted from Debian's kernel.

The host kernel has no ``ipip`` module, so one qemu VM (tests/vm/vmkit.py) runs
tests/vm/ipip_scenario.py for the whole file: two subnets joined by a router, nodes on both,
``ipipMode: CrossSubnet``. The scenario records facts; the tests below assert on them: onlink
tunl0 routes with MTU 1480 across subnets and a direct route within one, pods pinging each
other, IP-in-IP (protocol 4) on the router's wire, tunl0 set up by felix, and repair.
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
    results = tmp_path_factory.mktemp("ipip-vm")
    argv = [sys.executable, "-m", "tests.vm.ipip_scenario", f"{GUEST_RESULTS}/facts.json"]
    vm = run_vm(argv, results, env={"PYTHONPATH": str(REPO)}, cwd=str(REPO), timeout=300)
    log = results / "output.log"
    output = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    facts_file = results / "facts.json"
    assert facts_file.exists(), (
        f"VM status {vm.status} (qemu {vm.qemu_status})\n{vm.console[-2000:]}\n{output}"
    )
    data: dict[str, Any] = json.loads(facts_file.read_text())
    assert "error" not in data, data.get("error")
    assert vm.status == 0, f"scenario exit {vm.status}\n{output}"
    return data


def test_cross_subnet_blocks_route_through_tunl0_onlink_and_same_subnet_goes_direct(
    facts: dict[str, Any],
) -> None:
    a = set(facts["routes"]["a"])
    assert "10.244.2.0/24 via 198.51.100.1 dev tunl0 onlink mtu 1480" in a
    assert "10.244.3.0/24 via 192.0.2.3 dev up0" in a
    assert "blackhole 10.244.1.0/24" in a
    assert "10.244.1.0/24 via 192.0.2.1 dev tunl0 onlink mtu 1480" in set(facts["routes"]["b"])
    assert "dev tunl0" in facts["route_get"]["a_to_b"]
    assert "dev up0" in facts["route_get"]["a_to_c"]


def test_tunl0_is_up_with_mtu_pmtudisc_and_an_address_from_the_block(facts: dict[str, Any]) -> None:
    tunl = facts["tunl0_a"]
    assert tunl["mtu"] == 1480 and "UP" in tunl["flags"]
    assert tunl["pmtudisc"] is True
    assert "10.244.1.0/32" in tunl["addresses"]
    assert facts["tunnels_a"]["tunl0"]["ready"] is True


def test_pods_ping_across_the_tunnel_and_on_the_subnet(facts: dict[str, Any]) -> None:
    assert facts["ping"] == {"a_to_b": True, "b_to_a": True, "a_to_c": True}


def test_router_sees_ip_in_ip_on_the_wire(facts: dict[str, Any]) -> None:
    lines = facts["tcpdump"].splitlines()
    request = "192.0.2.1 > 198.51.100.1: IP 10.244.1.5 > 10.244.2.5: ICMP echo request"
    reply = "198.51.100.1 > 192.0.2.1: IP 10.244.2.5 > 10.244.1.5: ICMP echo reply"
    assert any(request in line for line in lines), lines
    assert any(reply in line for line in lines), lines


def test_deleted_tunnel_route_and_downed_tunl0_are_repaired(facts: dict[str, Any]) -> None:
    assert facts["repair_seconds"] >= 0  # restored (the scenario's wait is bounded)
    assert facts["healed_after_tunl0_down"] is True
