"""The IPIP cluster scenario, run inside the test VM (a kernel with ``ipip``): the whole lab.

`podbgp lab up --encap ipip` builds etcd, a router between two subnets, four `podbgp node`
processes (full mesh) and two pods per node through `podbgp-cni`; the pool is ipipMode
CrossSubnet. The script records the lab's output (peer table, ping matrix), node-1's kernel
routes, `ip route get` towards a pod across the subnets, and what tcpdump sees on the router's
subnet-2 bridge while a pod pings across; then `podbgp lab down` and what is left. The host-side
test (tests/vm/test_lab_ipip_vm.py) asserts on those facts.

Run: ``python -m tests.vm.lab_scenario FACTS.json`` (as root, in the VM).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

PREFIX = "vl-"
LAB_DIR = "/run/podbgp-vm-lab"


def run(*argv: str, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def running(pid: int) -> bool:
    """Alive and not a zombie: the guest's init (guest_boot.py) does not reap orphans."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lab(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "podbgp", "lab", *args, "--dir", LAB_DIR)


def scenario() -> dict[str, Any]:
    facts: dict[str, Any] = {}
    # Everything is slower under software emulation: generous waits.
    # IPv4 only: IPIP carries IPv4 (the host-side lab test covers the dual-stack default).
    up = lab("up", "--encap", "ipip", "--reflectors", "0", "--ip-families", "v4",
             "--prefix", PREFIX, "--timeout", "900")  # fmt: skip
    facts["up"] = {"status": up.returncode, "stdout": up.stdout, "stderr": up.stderr[-3000:]}
    if up.returncode != 0:
        return facts
    state = json.loads(Path(LAB_DIR, "state.json").read_text())
    pods = {p["name"]: p for p in state["pods"]}
    src, dst = pods["pod-1-1"], pods["pod-3-1"]  # node-1 on subnet 1, node-3 on subnet 2
    facts["pods"] = {"src": src, "dst": dst}
    facts["routes_node1"] = run("ip", "-n", f"{PREFIX}n1", "route").stdout.splitlines()
    facts["route_get"] = run("ip", "-n", f"{PREFIX}n1", "route", "get", dst["ip"]).stdout
    facts["tunl0_node1"] = run("ip", "-n", f"{PREFIX}n1", "-d", "addr", "show", "tunl0").stdout
    dump = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}router", "tcpdump", "-n", "-l", "-c", "2", "-i",
         "br2", "ip proto 4"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    time.sleep(2)  # tcpdump needs a moment to attach in the emulated VM
    ping = run("ip", "netns", "exec", src["ns"], "ping", "-c", "3", "-W", "2", dst["ip"])
    facts["ping"] = {"status": ping.returncode, "stdout": ping.stdout[-500:]}
    try:
        out, _ = dump.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        dump.kill()
        out, _ = dump.communicate()
    facts["tcpdump"] = out.splitlines()
    down = lab("down")
    facts["down"] = {"status": down.returncode, "stdout": down.stdout}
    netns = run("ip", "netns", "list").stdout.split()
    facts["left_namespaces"] = [n for n in netns if n.startswith(PREFIX)]
    facts["left_pids"] = [p for p in state["pids"] if running(p)]
    return facts


def main() -> int:
    out = Path(sys.argv[1])
    try:
        facts = scenario()
    except Exception:
        facts = {"error": traceback.format_exc()}
    out.write_text(json.dumps(facts, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
