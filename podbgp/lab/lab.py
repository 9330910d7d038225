"""`podbgp lab up|status|topology|down`: the docker-compose.yml topology in namespaces, no Docker.

One machine, as root: a real etcd, two (or more) subnets joined by a router namespace, a
`podbgp node` per node namespace, optionally two dedicated `podbgp rr` reflectors, and two pods
per node wired by `podbgp-cni`. `up` shows progress while it builds, then prints the
cluster-wide peer table and a pod-to-pod ping matrix per IP family (✓/✗ and the path: direct,
ipip, vxlan). `topology` switches a running lab between mesh and reflectors (podbgp.lab.switch).
Everything created is written to a state file first, so `down` removes exactly that — the
namespaces, the processes (by PID) and the lab folder — and nothing else.

Addresses follow docker-compose.yml: subnet k is 172.31.k.0/24 with the router at .254, etcd is
172.31.1.2, reflector j is 172.31.j.3, node i is 172.31.k.(10+i); the pod pool is 10.244.0.0/16.
Dual stack (``--ip-families v4,v6``, the default; ``v6`` gives pods IPv6 only): every member
also gets fd31:0:0:k::<same host number>/64 (router ::254), the nodes register both addresses
and mesh in both families, the reflectors listen on both, and an IPv6 pool fd00:10:244::/64
(blockSize 122) gives each pod an IPv6 address too. A host beyond the router, outside every
pool (podbgp.lab.outside), shows natOutgoing at work: it sees each pod's traffic come from the
pod's node.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from podbgp.lab import switch
from podbgp.lab.outside import build_outside
from podbgp.lab.report import node_ready, show
from podbgp.lab.state import (
    ASN,
    DEFAULT_DIR,
    FAMILIES,
    LabError,
    LabState,
    Member,
    Pod,
    cluster_resources,
    etcd_url,
    say,
    sh,
    v6_address,
    wait,
)

# --- building ------------------------------------------------------------------------------


def kernel_has(kind: str, prefix: str) -> bool:
    """Can this kernel create a ``kind`` (ipip, vxlan) device? Tried in a throwaway namespace."""
    ns = f"{prefix}probe"
    sh("ip", "netns", "add", ns, check=False)
    try:
        # Endpoints of their own: a bare ipip device would clash with the fallback tunl0.
        if kind == "vxlan":
            extra = ["id", "42", "dstport", "4789"]
        else:
            extra = ["local", "198.51.100.1", "remote", "198.51.100.2"]
        added = sh("ip", "link", "add", "probe0", "type", kind, *extra, ns=ns, check=False)
        return added.returncode == 0
    finally:
        sh("ip", "netns", "del", ns, check=False)


def choose_encap(requested: str, prefix: str) -> str:
    if requested == "none":
        return "none"
    if requested in ("auto", "ipip") and kernel_has("ipip", prefix):
        return "ipip"
    if requested == "ipip":
        raise LabError(
            "this kernel has no IPIP support (`ip link add type ipip` fails); "
            "run `podbgp lab up --encap vxlan` instead"
        )
    if requested == "auto":
        say("    this kernel has no IPIP support: using VXLAN between subnets instead")
    return "vxlan"


def plan(args: argparse.Namespace, directory: Path, encap: str) -> LabState:
    prefix = args.prefix
    state = LabState(prefix, str(directory), encap, args.subnets, f"{prefix}router")
    state.families = list(FAMILIES[args.ip_families])
    state.outside_ns = f"{prefix}out"
    state.members.append(Member("etcd", f"{prefix}etcd", "172.31.1.2/24", 1))
    for j in range(1, args.reflectors + 1):
        subnet = (j - 1) % args.subnets + 1
        address = f"172.31.{subnet}.3/24"
        state.members.append(Member(f"rr-{j}", f"{prefix}rr{j}", address, subnet))
    for i in range(1, args.nodes + 1):
        subnet = (i - 1) * args.subnets // args.nodes + 1
        address = f"172.31.{subnet}.{10 + i}/24"
        state.members.append(Member(f"node-{i}", f"{prefix}n{i}", address, subnet))
    if state.dual_underlay:
        for member in state.members:
            member.address6 = v6_address(member.address)
    for node in state.nodes:
        index = node.name.split("-")[1]
        for j in (1, 2):
            pod_ns = f"{prefix}n{index}p{j}"
            state.pods.append(Pod(f"pod-{index}-{j}", pod_ns, node.name, f"lab-{pod_ns}"))
    return state


def build_network(state: LabState) -> None:
    router = state.router_ns
    for ns in [router, state.outside_ns, *(m.ns for m in state.members)]:
        sh("ip", "netns", "add", ns)
        state.namespaces.append(ns)
        state.save()
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=router)
    if state.dual_underlay:
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=router)
    for ns in [router, *(m.ns for m in state.members)]:
        # Addresses usable at once (no duplicate address detection wait on the lab's links).
        for key in ("all", "default"):
            sh("sysctl", "-qw", f"net.ipv6.conf.{key}.accept_dad=0", ns=ns, check=False)
    for k in range(1, state.subnets + 1):
        bridge = f"br{k}"
        sh("ip", "link", "add", bridge, "type", "bridge", ns=router)
        sh("ip", "addr", "add", f"172.31.{k}.254/24", "dev", bridge, ns=router)
        if state.dual_underlay:
            sh("ip", "addr", "add", f"fd31:0:0:{k}::254/64", "dev", bridge, ns=router)
        sh("ip", "link", "set", bridge, "up", ns=router)
    build_outside(sh, state.outside_ns, router, [4, 6] if state.dual_underlay else [4])
    for n, member in enumerate(state.members):
        port = f"p{n}"
        sh("ip", "link", "add", "eth0", "netns", member.ns, "type", "veth", "peer", "name", port,
           "netns", router)  # fmt: skip
        sh("ip", "link", "set", port, "master", f"br{member.subnet}", "up", ns=router)
        sh("ip", "addr", "add", member.address, "dev", "eth0", ns=member.ns)
        sh("ip", "link", "set", "eth0", "up", ns=member.ns)
        sh("ip", "route", "add", "default", "via", f"172.31.{member.subnet}.254", ns=member.ns)
        if member.address6:
            sh("ip", "addr", "add", member.address6, "dev", "eth0", ns=member.ns)
            gateway6 = f"fd31:0:0:{member.subnet}::254"
            sh("ip", "-6", "route", "add", "default", "via", gateway6, ns=member.ns)
    for pod in state.pods:
        sh("ip", "netns", "add", pod.ns)
        state.namespaces.append(pod.ns)
        state.save()
        sh("ip", "link", "set", "lo", "up", ns=pod.ns)


def spawn(state: LabState, member: Member, argv: list[str], log_name: str) -> None:
    logs = Path(state.directory) / "logs"
    with open(logs / log_name, "ab") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", member.ns, *argv], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    member.pid = proc.pid
    state.pids.append(proc.pid)
    state.save()


def start_etcd(state: LabState, timeout: float) -> None:
    etcd = next(m for m in state.members if m.name == "etcd")
    data = Path(state.directory) / "etcd-data"
    ip = etcd.address.split("/")[0]
    spawn(state, etcd, [
        "etcd", "--name", "lab", "--data-dir", str(data),
        "--listen-client-urls", f"http://{ip}:2379,http://127.0.0.1:2379",
        "--advertise-client-urls", f"http://{ip}:2379",
        "--listen-peer-urls", "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "lab=http://127.0.0.1:2380",
    ], "etcd.log")  # fmt: skip
    wait(lambda: sh("etcdctl", "--endpoints", "http://127.0.0.1:2379", "endpoint", "health",
                    ns=etcd.ns, check=False).returncode == 0, timeout, "etcd")  # fmt: skip


def configure(state: LabState, token_file: Path) -> None:
    directory = Path(state.directory)
    reflectors = [m for m in state.members if m.name.startswith("rr-")]
    cluster = directory / "cluster.yaml"
    cluster.write_text(yaml.safe_dump_all(cluster_resources(state, reflectors)))
    etcd = next(m for m in state.members if m.name == "etcd")
    sh(sys.executable, "-m", "podbgp", "apply", "-f", str(cluster),
       "--etcd-endpoints", "http://127.0.0.1:2379", ns=etcd.ns)  # fmt: skip
    for rr in reflectors:
        ip = rr.address.split("/")[0]
        ranges = ["172.31.0.0/16"] + (["fd31::/16"] if rr.address6 else [])
        config = {
            "asNumber": ASN, "routerId": ip,
            # "::" takes IPv4 clients too (as IPv4-mapped addresses, seen as IPv4).
            "listen": {"address": "::" if rr.address6 else "0.0.0.0", "port": 179},
            "api": {"listen": "127.0.0.1:9179"}, "routeReflector": {"clusterId": "1.1.1.1"},
            "peerRanges": [{"range": r, "asNumber": ASN, "routeReflectorClient": True}
                           for r in ranges],
            "logLevel": "info",
        }  # fmt: skip
        path = directory / f"{rr.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        spawn(state, rr, [sys.executable, "-m", "podbgp", "rr", "-c", str(path)], f"{rr.name}.log")
    for node in state.nodes:
        config = {
            "nodeName": node.name, "address": node.address,
            **({"addressV6": node.address6} if node.address6 else {}),
            "datastore": {"type": "etcd", "endpoints": [etcd_url(state)], "prefix": "/podbgp/"},
            "api": {"listen": "0.0.0.0:9179", "tokenFile": str(token_file)},
            "logLevel": "info",
        }  # fmt: skip
        path = directory / f"{node.name}.yaml"
        path.write_text(yaml.safe_dump(config))
        spawn(state, node, [sys.executable, "-m", "podbgp", "node", "-c", str(path)],
              f"{node.name}.log")  # fmt: skip


def plug_pods(state: LabState) -> None:
    netconf = {
        "cniVersion": "1.0.0", "name": "podbgp", "type": "podbgp-cni",
        "datastore": {"type": "etcd", "endpoints": [etcd_url(state)], "prefix": "/podbgp/"},
    }  # fmt: skip
    for pod in state.pods:
        node = next(m for m in state.members if m.name == pod.node)
        env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID=pod.container_id,
                   CNI_NETNS=f"/var/run/netns/{pod.ns}", CNI_IFNAME="eth0",
                   CNI_PATH=str(Path(sys.executable).parent))  # fmt: skip
        conf = json.dumps(netconf | {"nodeName": pod.node})
        out = sh(sys.executable, "-m", "podbgp.cni.main", ns=node.ns, stdin=conf, env=env,
                 check=False, timeout=180)  # fmt: skip
        try:
            result = json.loads(out.stdout)
            for entry in result["ips"]:
                ip = ipaddress.ip_interface(entry["address"]).ip
                if ip.version == 4:
                    pod.ip = str(ip)
                else:
                    pod.ip6 = str(ip)
        except (ValueError, KeyError, IndexError) as exc:
            why = out.stdout or out.stderr
            raise LabError(f"podbgp-cni ADD for {pod.name} failed: {why}") from exc
        state.save()


# --- verbs -------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if (directory / "state.json").exists():
        say(f"a lab is already up (state in {directory}); `podbgp lab down` first")
        return 2
    if os.geteuid() != 0:
        say("podbgp lab needs root (network namespaces)")
        return 2
    for tool in ("ip", "etcd", "etcdctl", "ping"):
        if shutil.which(tool) is None:
            say(f"podbgp lab needs `{tool}` (see scripts/setup-test-host.sh)")
            return 2
    try:
        encap = choose_encap(args.encap, args.prefix)
    except LabError as err:
        say(str(err))
        return 2
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "logs").mkdir(exist_ok=True)
    token_file = directory / "api-token"
    token_file.write_text(secrets.token_hex(16) + "\n")
    token_file.chmod(0o600)
    state = plan(args, directory, encap)
    state.save()
    try:
        families = "+".join(f"IPv{v}" for v in state.families)
        say(f"==> network: {args.subnets} subnets, router, {args.nodes} nodes, "
            f"{args.reflectors} reflectors, {len(state.pods)} {families} pods "
            f"(encap {encap})")  # fmt: skip
        build_network(state)
        say("==> etcd")
        start_etcd(state, args.timeout)
        say("==> cluster resources, reflectors and `podbgp node` per node")
        configure(state, token_file)
        for node in state.nodes:
            wait(lambda n=node: node_ready(state, n, token_file), args.timeout,
                 f"{node.name}: sessions Established and every block routed")  # fmt: skip
            say(f"    {node.name} ready")
        say("==> pods through podbgp-cni")
        plug_pods(state)
    except (LabError, subprocess.TimeoutExpired) as err:
        say(f"lab up failed: {err}")
        say(f"logs: {directory / 'logs'}; `podbgp lab down` removes what was made")
        return 1
    return show(state)


def cmd_status(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "state.json").exists():
        say("no lab is up")
        return 1
    return show(LabState.load(directory))


def cmd_down(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    if not (directory / "state.json").exists():
        say("no lab is up")
        return 0
    state = LabState.load(directory)
    for pid in reversed(state.pids):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 10
    for pid in state.pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    for ns in reversed(state.namespaces):
        sh("ip", "netns", "del", ns, check=False)
    shutil.rmtree(directory, ignore_errors=True)
    say(f"lab down: {len(state.namespaces)} namespaces and {len(state.pids)} processes removed")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours is gone for our purpose; reap it if it is our child.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


def register(verbs: Any) -> None:
    lab = verbs.add_parser(
        "lab", help="a multi-node cluster in network namespaces",
        description="Build, show or remove the docker-compose.yml topology in network "
        "namespaces on this machine (root): etcd, a router between subnets, nodes, reflectors, "
        "pods.",
    )  # fmt: skip
    sub = lab.add_subparsers(dest="lab_verb", metavar="up|status|topology|down", required=True)
    up = sub.add_parser("up", help="build the lab and show it", description="Build the lab.")
    up.add_argument("--nodes", type=int, default=4)
    up.add_argument("--subnets", type=int, default=2)
    up.add_argument("--reflectors", type=int, choices=(0, 2), default=2)
    up.add_argument(
        "--timeout", type=float, default=120.0,
        help="seconds each wait may take (etcd, each node's convergence)",
    )  # fmt: skip
    up.add_argument(
        "--encap",
        choices=("auto", "ipip", "vxlan", "none"),
        default="auto",
        help="between subnets; auto = ipip when the kernel has it, else vxlan",
    )
    up.add_argument(
        "--ip-families", choices=tuple(FAMILIES), default="v4,v6",
        help="the pods' IP families (default v4,v6: dual stack; the nodes then have both "
        "address families too)",
    )  # fmt: skip
    up.set_defaults(func=cmd_up)
    st = sub.add_parser(
        "status",
        help="show the peer table and ping matrix again",
        description="Reprint the lab's peer table and ping matrix.",
    )
    st.set_defaults(func=cmd_status)
    dn = sub.add_parser(
        "down",
        help="remove everything the lab made",
        description="Stop the lab's processes and delete its namespaces.",
    )
    dn.set_defaults(func=cmd_down)
    tp = switch.register(sub)
    for p in (up, st, tp, dn):
        p.add_argument("--dir", default=str(DEFAULT_DIR), help="the lab's state and log folder")
    up.add_argument("--prefix", default="pblab-", help="namespace name prefix")
