"""What `podbgp lab up|status` shows: the cluster-wide peer table, a pod-to-pod ping matrix per
IP family with each pair's path (direct, ipip, vxlan), and the outside host's view (natOutgoing).
Members are asked through their REST API over a socket made in their namespace."""

from __future__ import annotations

import http.client
import ipaddress
import json
from pathlib import Path
from typing import Any

from podbgp.lab.netns import NetnsHTTPConnection
from podbgp.lab.outside import outside_table
from podbgp.lab.state import API_TIMEOUT, POOL, POOL_V6, LabState, Member, Pod, say, sh


def api(state: LabState, member: Member, path: str, token_file: Path) -> Any:
    """GET ``path`` from the member's REST API (127.0.0.1:9179 in its namespace), or None."""
    token = token_file.read_text().strip()
    conn = NetnsHTTPConnection(member.ns, "127.0.0.1", 9179, timeout=API_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            return None
        return json.loads(body)
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def node_ready(state: LabState, node: Member, token_file: Path) -> bool:
    peers = api(state, node, "/v1/peers", token_file)
    routes = api(state, node, "/v1/routes", token_file)
    if not peers or routes is None:
        return False
    pools = {4: ipaddress.ip_network(POOL), 6: ipaddress.ip_network(POOL_V6)}
    prefixes = [ipaddress.ip_network(r["prefix"]) for r in routes]
    every_block = all(
        len([p for p in prefixes if p.version == v and p.overlaps(pools[v])]) >= len(state.nodes)
        for v in state.families
    )
    return all(p["state"] == "Established" for p in peers) and every_block


def path_between(state: LabState, src: Pod, dst: Pod, version: int = 4) -> str:
    if src.node == dst.node:
        return "local"
    node = next(m for m in state.members if m.name == src.node)
    out = sh("ip", "route", "get", dst.address(version), ns=node.ns, check=False).stdout
    if "dev tunl0" in out:
        return "ipip"
    if "dev vxlan.podbgp" in out or "dev vxlan-v6.podbgp" in out:
        return "vxlan"
    return "direct"


def ping(src: Pod, dst: Pod, attempts: int = 3, version: int = 4) -> bool:
    target = dst.address(version)
    for _ in range(attempts):
        if sh("ping", "-c", "1", "-W", "1", target, ns=src.ns, check=False).returncode == 0:
            return True
    return False


def ping_matrix(state: LabState, version: int = 4) -> tuple[str, int]:
    """The pod-to-pod matrix of one IP family (``ping`` / ``ping -6``)."""
    pods = state.pods
    width = max(len(p.name) for p in pods) + 1
    lines = [f"Pod-to-pod ping over IPv{version} (✓ reachable / ✗ not; path from the source "
             "node)",
             " " * width + "".join(f"{p.name:>16}" for p in pods)]  # fmt: skip
    failures = 0
    for src in pods:
        cells = []
        for dst in pods:
            if src is dst:
                cells.append(f"{'-':>16}")
                continue
            ok = ping(src, dst, version=version)
            failures += not ok
            path = path_between(state, src, dst, version)
            cells.append(f"{('✓ ' if ok else '✗ ') + path:>16}")
        lines.append(f"{src.name:<{width}}" + "".join(cells))
    return "\n".join(lines), failures


def peer_table(state: LabState, token_file: Path) -> str:
    """Reflectors answer for themselves; the nodes through one node's `/v1/cluster/peers`."""
    rows = [("NODE", "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE")]
    answers: list[tuple[str, Any]] = []
    for member in state.members:
        if member.name.startswith("rr-"):
            answers.append((member.name, api(state, member, "/v1/peers", token_file)))
    cluster = api(state, state.nodes[0], "/v1/cluster/peers", token_file) or {}
    by_name = {entry["name"]: entry for entry in cluster.get("nodes", [])}
    for node in state.nodes:
        entry = by_name.get(node.name) or {}
        answers.append((node.name, entry.get("peers") if entry.get("reachable") else None))
    for name, peers in answers:
        if peers is None:
            rows.append((name, "-", "-", "unreachable", "-"))
            continue
        for p in peers:
            rows.append((name, p["address"], p["type"], p["state"], p["since"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(5)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True))
                     for r in rows)  # fmt: skip


def show(state: LabState) -> int:
    def node_address(name: str, version: int) -> str:
        member = next(m for m in state.members if m.name == name)
        return (member.address if version == 4 else member.address6).split("/")[0]

    token_file = Path(state.directory) / "api-token"
    say("\nBGP sessions (cluster-wide)")
    say(peer_table(state, token_file))
    failures = 0
    for version in state.families:
        matrix, failed = ping_matrix(state, version)
        failures += failed
        say("\n" + matrix)
    if state.outside_ns:
        table, failed = outside_table(state.outside_ns, state.pods, state.families, node_address)
        failures += failed
        say("\n" + table)
    say("\nIP addresses: " + ", ".join(
        f"{p.name}=" + "/".join(a for a in (p.ip, p.ip6) if a) for p in state.pods
    ))  # fmt: skip
    say(f"Logs of every daemon: {Path(state.directory) / 'logs'}")
    return 0 if failures == 0 else 1
