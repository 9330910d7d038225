"""The IPIP scenario, run inside the test VM (a kernel with ``ipip``); writes facts as JSON.

Three nodes and a router, each a network namespace: node A (192.0.2.1) and node C (192.0.2.3)
share subnet 192.0.2.0/24, node B (198.51.100.1) is on 198.51.100.0/24; the router joins the two
subnets. The pool is ``ipipMode: CrossSubnet``, so felix (the real Dataplane: plan, reconciler,
tunnels, netlink adapter) must program A → B through ``tunl0 onlink`` and A → C directly. Each
node has one pod (made like podbgp-cni makes them). The script records what the kernel holds,
ping results, what tcpdump sees on the router, and the repair of a route deleted by hand; the
host-side test (tests/vm/test_ipip_vm.py) asserts on those facts.

Run: ``python -m tests.vm.ipip_scenario FACTS.json`` (as root, in the VM).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from felix.dataplane import Dataplane
from felix.plan import EncapMode, Pool
from tests.support.kernel import eventually, links, make_pod, ping, route_get, routes
from tests.support.netns import NetnsFactory, run

POOL = Pool("10.244.0.0/16", ipip_mode=EncapMode.CROSS_SUBNET)
RESYNC = 0.5
NODES = {  # name: (address, gateway, block, pod IP)
    "a": ("192.0.2.1/24", "192.0.2.254", "10.244.1.0/24", "10.244.1.5"),
    "b": ("198.51.100.1/24", "198.51.100.254", "10.244.2.0/24", "10.244.2.5"),
    "c": ("192.0.2.3/24", "192.0.2.254", "10.244.3.0/24", "10.244.3.5"),
}


def topology(factory: NetnsFactory) -> tuple[dict[str, str], str, dict[str, str]]:
    """Namespaces for the nodes and the router; returns (node ns by name, router ns, router
    interface by subnet)."""
    router = factory.namespace("r")
    run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    lan1 = factory.lan({}, ifname="up0")  # a bridge for subnet 1 (nodes A, C and the router)
    ns = {name: factory.namespace(name) for name in NODES}
    for name in ("a", "c"):
        link = factory.veth(ns[name], lan1.bridge_ns, [NODES[name][0]], [], "up0")
        run(lan1.bridge_ns, "ip", "link", "set", link.ifname_b, "master", lan1.bridge)
    r1 = factory.veth(router, lan1.bridge_ns, ["192.0.2.254/24"], [], "r1")
    run(lan1.bridge_ns, "ip", "link", "set", r1.ifname_b, "master", lan1.bridge)
    factory.veth(ns["b"], router, [NODES["b"][0]], ["198.51.100.254/24"], "up0", "r2")
    for name, (_addr, gw, _block, _pod) in NODES.items():
        run(ns[name], "ip", "route", "add", "default", "via", gw)
        run(ns[name], "sysctl", "-qw", "net.ipv4.ip_forward=1")
    return ns, router, {"subnet1": "r1", "subnet2": "r2"}


def dataplanes(ns: dict[str, str]) -> dict[str, Dataplane]:
    out = {}
    for name, (addr, _gw, block, _pod) in NODES.items():
        dp = Dataplane(
            f"node-{name}", addr, "up0", 80, netns=ns[name], resync_interval=RESYNC,
            converge_timeout=3600.0, register_protocol_name=False,
        )  # fmt: skip
        dp.set_pools([POOL])
        dp.set_blocks([block])
        dp.set_tunnel_address("tunl0", block.split("/")[0])
        for other, (oaddr, _ogw, oblock, _opod) in NODES.items():
            if other != name:
                dp.set_route(oblock, oaddr.split("/")[0])
        dp.mark_converged()
        out[name] = dp
    return out


def tcpdump(router: str, ifname: str, count: int) -> subprocess.Popen[str]:
    argv = ["tcpdump", "-l", "-n", "-c", str(count), "-i", ifname, "ip proto 4"]
    return subprocess.Popen(
        ["ip", "netns", "exec", router, *argv],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip


async def scenario(factory: NetnsFactory) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    ns, router, rifs = topology(factory)
    pods = {name: make_pod(factory, ns[name], NODES[name][3]) for name in NODES}
    dps = dataplanes(ns)
    tasks = [asyncio.create_task(dp.run()) for dp in dps.values()]
    try:
        await eventually(lambda: "dev tunl0" in route_get(ns["a"], "10.244.2.5"), timeout=30)
        await eventually(lambda: "dev tunl0" in route_get(ns["b"], "10.244.1.5"), timeout=30)
        # The table as converged: node a's direct route to c too (the snapshot once raced it).
        direct = "10.244.3.0/24 via 192.0.2.3 dev up0"
        await eventually(lambda: direct in routes(ns["a"]), timeout=30)
        facts["routes"] = {name: sorted(routes(ns[name])) for name in NODES}
        facts["route_get"] = {
            "a_to_b": route_get(ns["a"], "10.244.2.5"),
            "a_to_c": route_get(ns["a"], "10.244.3.5"),
            "b_to_a": route_get(ns["b"], "10.244.1.5"),
        }
        tunl = links(ns["a"])["tunl0"]
        facts["tunl0_a"] = {
            "mtu": tunl["mtu"],
            "flags": tunl["flags"],
            "pmtudisc": tunl.get("linkinfo", {}).get("info_data", {}).get("pmtudisc"),
            "addresses": run(ns["a"], "ip", "-4", "-o", "addr", "show", "dev", "tunl0").stdout,
        }
        facts["tunnels_a"] = dps["a"].snapshot()["tunnels"]
        capture = tcpdump(router, rifs["subnet2"], 4)
        await asyncio.sleep(1.0)  # let tcpdump attach
        facts["ping"] = {
            "a_to_b": await asyncio.to_thread(ping, pods["a"][0], "10.244.2.5", 3),
            "b_to_a": await asyncio.to_thread(ping, pods["b"][0], "10.244.1.5", 3),
            "a_to_c": await asyncio.to_thread(ping, pods["a"][0], "10.244.3.5", 3),
        }
        try:
            facts["tcpdump"], _ = await asyncio.to_thread(capture.communicate, timeout=10)
        except subprocess.TimeoutExpired:
            capture.kill()
            facts["tcpdump"], _ = capture.communicate()
        run(ns["a"], "ip", "route", "del", "10.244.2.0/24")
        started = time.monotonic()
        await eventually(lambda: "dev tunl0" in route_get(ns["a"], "10.244.2.5"), timeout=10)
        facts["repair_seconds"] = round(time.monotonic() - started, 2)
        facts["resync_interval"] = RESYNC
        run(ns["a"], "ip", "link", "set", "tunl0", "down")
        await eventually(lambda: "UP" in links(ns["a"])["tunl0"]["flags"], timeout=10)
        await eventually(lambda: "dev tunl0" in route_get(ns["a"], "10.244.2.5"), timeout=10)
        facts["healed_after_tunl0_down"] = await asyncio.to_thread(
            ping, pods["a"][0], "10.244.2.5", 2
        )
    finally:
        for dp in dps.values():
            await dp.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    return facts


def main() -> int:
    target = Path(sys.argv[1])
    facts: dict[str, Any]
    try:
        with NetnsFactory() as factory:
            facts = asyncio.run(scenario(factory))
    except Exception:
        facts = {"error": traceback.format_exc()}
    target.write_text(json.dumps(facts, indent=1))
    return 1 if "error" in facts else 0


if __name__ == "__main__":
    sys.exit(main())
