"""`podbgp lab topology mesh|reflectors`: switch a running lab's peering while pods ping.

A lab built with its two ``podbgp rr`` reflectors starts with the nodes peering with them. This
verb applies the other topology to the lab's etcd — ``mesh``: ``nodeToNodeMeshEnabled`` on and
the reflector BGPPeers deleted; ``reflectors``: the BGPPeers back and the mesh off — while every
pod pings a pod on the next node (one flow per pod and IP family, 20 packets a second), and
reports when every node's sessions were the new ones and how many pings each flow lost. The
nodes switch make-before-break (podbgp.node.handover), so the expected loss is zero.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from podbgp.lab.report import api
from podbgp.lab.state import (
    LabError,
    LabState,
    Member,
    Pod,
    cluster_resources,
    say,
    sh,
    wait,
)

PING_INTERVAL = 0.05
SETTLE_S = 2.0  # pings continue this long after the switch


def flows(state: LabState) -> list[tuple[Pod, Pod, int]]:
    """Each pod to the first pod of the next node, per IP family: (source, destination, v)."""
    nodes = [n.name for n in state.nodes]
    first = {node: next(p for p in state.pods if p.node == node) for node in nodes}
    out = []
    for pod in state.pods:
        other = first[nodes[(nodes.index(pod.node) + 1) % len(nodes)]]
        out += [(pod, other, v) for v in state.families if pod.address(v) and other.address(v)]
    return out


def sessions(state: LabState, node: Member, token_file: Path) -> dict[str, str] | None:
    """The node's Established sessions: peer address -> type; None if its API is silent."""
    peers = api(state, node, "/v1/peers", token_file)
    if peers is None:
        return None
    return {p["address"]: p["type"] for p in peers if p["state"] == "Established"}


def switched(state: LabState, mode: str, token_file: Path) -> bool:
    """Every node has exactly the sessions of ``mode`` up, in every family it has."""
    versions = 2 if state.dual_underlay else 1
    for node in state.nodes:
        up = sessions(state, node, token_file)
        if up is None:
            return False
        want = (len(state.nodes) - 1) * versions if mode == "mesh" else 2 * versions
        if len(up) != want or any((kind == "mesh") != (mode == "mesh") for kind in up.values()):
            return False
    return True


def cmd_topology(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "state.json").exists():
        say("no lab is up")
        return 1
    state = LabState.load(directory)
    reflectors = [m for m in state.members if m.name.startswith("rr-")]
    if not reflectors:
        say("this lab has no reflectors (built with --reflectors 0): nothing to switch to")
        return 2
    token_file = directory / "api-token"
    if switched(state, args.mode, token_file):
        say(f"the lab's nodes already peer in the {args.mode} topology")
        return 0
    pingers = []
    for src, dst, version in flows(state):
        argv = ["ping", "-q", "-n", "-i", str(PING_INTERVAL), "-W", "1", dst.address(version)]
        proc = subprocess.Popen(
            ["ip", "netns", "exec", src.ns, *argv], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )  # fmt: skip
        pingers.append((f"{src.name} -> {dst.name} IPv{version}", proc))
    try:
        took = _switch(state, args.mode, reflectors, args.timeout)
    except LabError as err:
        say(f"lab topology failed: {err}")
        return 1
    finally:
        results = [(name, _stop(proc)) for name, proc in pingers]
    say(f"switched to {args.mode}: every node's sessions were the new ones {took:.2f} s after "
        "the apply")  # fmt: skip
    width = max(len(name) for name, _ in results)
    say(f"{'FLOW':<{width}}  SENT  RECEIVED  LOST")
    lost = 0
    for name, (sent, received) in results:
        lost += sent - received
        say(f"{name:<{width}}  {sent:4d}  {received:8d}  {sent - received:4d}")
    say(f"{lost} of {sum(s for _, (s, _r) in results)} pings lost")
    return 0 if lost == 0 else 1


def _switch(state: LabState, mode: str, reflectors: list[Member], timeout: float) -> float:
    """Apply ``mode`` to the lab's etcd; seconds until every node peers that way."""
    directory = Path(state.directory)
    etcd = next(m for m in state.members if m.name == "etcd")
    endpoints = ("--etcd-endpoints", "http://127.0.0.1:2379")
    time.sleep(1.0)  # pings first
    t0 = time.monotonic()
    resources = cluster_resources(state, reflectors if mode == "reflectors" else [])
    path = directory / f"topology-{mode}.yaml"
    path.write_text(yaml.safe_dump_all(resources))
    sh(sys.executable, "-m", "podbgp", "apply", "-f", str(path), *endpoints, ns=etcd.ns)
    if mode == "mesh":
        for rr in reflectors:
            for suffix in ("", "-v6") if rr.address6 else ("",):
                sh(sys.executable, "-m", "podbgp", "delete", "bgppeer", rr.name + suffix,
                   *endpoints, ns=etcd.ns)  # fmt: skip
    token_file = directory / "api-token"
    wait(lambda: switched(state, mode, token_file), timeout,
         f"every node peering in the {mode} topology", interval=0.1)  # fmt: skip
    took = time.monotonic() - t0
    time.sleep(SETTLE_S)
    return took


def _stop(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """Interrupt a counting ping; (transmitted, received) from its summary."""
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out or "")
    if match is None:
        raise LabError(f"ping printed no summary: {out!r}")
    return int(match[1]), int(match[2])


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    topology = sub.add_parser(
        "topology", help="switch the nodes between the mesh and the reflectors, pinging",
        description="Switch a running lab (built with reflectors) to the node-to-node mesh or "
        "back to the reflectors while pods ping each other; print the pings each flow lost.",
    )  # fmt: skip
    topology.add_argument("mode", choices=("mesh", "reflectors"))
    topology.add_argument("--timeout", type=float, default=60.0, help="seconds the switch may take")
    topology.set_defaults(func=cmd_topology)
    return topology
