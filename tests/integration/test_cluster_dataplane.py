"""A whole cluster in network namespaces: real etcd, ``podbgp node`` with felix per node, pods
made by ``podbgp-cni``, and traffic between them.

Two subnets joined by a router namespace (192.0.2.0/24 with nodes n1, n2; 198.51.100.0/24 with
n3, n4), etcd in the router namespace, an IPPool with ``vxlanMode: CrossSubnet`` (the host kernel
has VXLAN but no IPIP; IPIP runs in tests/vm/test_ipip_vm.py), two pods per node. One module-
scoped cluster serves the tests, which run in file order and build on each other: all-pairs
ping, direct vs tunnelled paths, kill -9 and restart of a node under continuous pings (loss
measured), and removal of a node.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
import yaml

from podbgp.cni.plugin import host_veth_name
from tests.support.kernel import ping, route_get, routes
from tests.support.netns import NetnsFactory, netns_available, run, wait_until

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]

ETCD = "http://192.0.2.254:2379"
API_PORT = 9179
NODES = {
    "n1": "192.0.2.11/24",
    "n2": "192.0.2.12/24",
    "n3": "198.51.100.13/24",
    "n4": "198.51.100.14/24",
}
GATEWAYS = {"192.0.2": "192.0.2.254", "198.51.100": "198.51.100.254"}
RESOURCES = """
apiVersion: podbgp/v1
kind: BGPConfiguration
metadata: {name: default}
spec: {asNumber: 64512, nodeToNodeMeshEnabled: true, nodeMeshMaxRestartTime: 120}
---
apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.244.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}
"""
DATASTORE_SNIPPET = """
import asyncio, sys, yaml
from podbgp.cluster import operations
from podbgp.cluster.datastore import DatastoreConfig, open_datastore
from podbgp.cluster.resources import parse_resource
async def main(action, arg):
    store = open_datastore(DatastoreConfig(type="etcd", endpoints=(sys.argv[3],)))
    try:
        if action == "apply":
            docs = [d for d in yaml.safe_load_all(open(arg)) if d]
            await store.apply([parse_resource(d, arg) for d in docs])
        else:
            print(await operations.delete_resource(store, "Node", arg))
    finally:
        await store.close()
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def node_command() -> list[str]:
    """``podbgp node``: the agent with felix."""
    return [sys.executable, "-m", "podbgp", "node"]


HTTP_GET = (
    "import sys, urllib.request; "
    "print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())"
)


def http_get(ns: str, url: str) -> subprocess.CompletedProcess[str]:
    """GET ``url`` from inside ``ns`` (the API and etcd listen in namespaces, not here)."""
    return run(ns, sys.executable, "-c", HTTP_GET, url, check=False)


@dataclass
class Cluster:
    factory: NetnsFactory
    workdir: Path
    router: str
    ns: dict[str, str]  # node name -> namespace
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    pods: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # node -> (ns, ip)
    addresses: ClassVar[dict[str, str]] = NODES  # node name -> address with prefix length

    def node_config(self, name: str) -> Path:
        path = self.workdir / f"{name}.yaml"
        config = {
            "nodeName": name,
            "address": self.addresses[name],
            "datastore": {"type": "etcd", "endpoints": [ETCD]},
            "api": {"listen": f"127.0.0.1:{API_PORT}"},
            "felix": {"resyncInterval": 2},
            "logLevel": "info",
            **self.node_extra(name),
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def node_extra(self, name: str) -> dict[str, Any]:
        """More node.yaml keys for ``name`` (a subclass's choice)."""
        return {}

    def start(self, name: str) -> None:
        argv = [*node_command(), "-c", str(self.node_config(name))]
        log = self.workdir / f"{name}.log"
        self.procs[name] = self.factory.popen(self.ns[name], argv, log)

    def api(self, name: str, path: str) -> Any:
        url = f"http://127.0.0.1:{API_PORT}{path}"
        out = http_get(self.ns[name], url)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def datastore(self, *args: str) -> str:
        argv = [sys.executable, "-c", DATASTORE_SNIPPET, *args, ETCD]
        return run(self.router, *argv, timeout=30).stdout

    def all_pods(self) -> list[tuple[str, str, str]]:
        return [(node, ns, ip) for node, pods in self.pods.items() for ns, ip in pods]

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def build_topology(factory: NetnsFactory) -> tuple[str, dict[str, str]]:
    router = factory.namespace("r")
    run(router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ns = {name: factory.namespace(name) for name in NODES}
    for subnet, members in (("192.0.2", ("n1", "n2")), ("198.51.100", ("n3", "n4"))):
        lan = factory.lan({ns[m]: [NODES[m]] for m in members}, ifname="eth0")
        link = factory.veth(router, lan.bridge_ns, [f"{GATEWAYS[subnet]}/24"], [])
        run(lan.bridge_ns, "ip", "link", "set", link.ifname_b, "master", lan.bridge)
    for name, address in NODES.items():
        gateway = GATEWAYS[address.rsplit(".", 1)[0]]
        run(ns[name], "ip", "route", "add", "default", "via", gateway)
        # Forwarding stays off here: felix turns it on (a node routes for its pods).
    return router, ns


def start_etcd(factory: NetnsFactory, router: str, workdir: Path) -> None:
    argv = [
        "etcd", "--name", "etcd", "--data-dir", str(workdir / "etcd.data"),
        "--listen-client-urls", ETCD, "--advertise-client-urls", ETCD,
        "--listen-peer-urls", "http://127.0.0.1:2380",
        "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "etcd=http://127.0.0.1:2380", "--log-level", "warn",
    ]  # fmt: skip
    factory.popen(router, argv, workdir / "etcd.log")

    def etcd_healthy() -> bool:
        out = http_get(router, f"{ETCD}/health")
        return out.returncode == 0 and "true" in out.stdout

    wait_until(etcd_healthy, timeout=20)


def cni(cluster: Cluster, command: str, node: str, index: int, pod: str) -> bytes:
    """Run ``podbgp-cni`` for pod ``index`` of ``node`` (namespace ``pod``); its stdout."""
    conf = {
        "cniVersion": "1.0.0",
        "name": "podbgp",
        "type": "podbgp-cni",
        "nodeName": node,
        "datastore": {"type": "etcd", "endpoints": [ETCD]},
    }
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(REPO),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"{node}-pod{index}",
        "CNI_NETNS": f"/run/netns/{pod}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    argv = ["ip", "netns", "exec", cluster.ns[node], sys.executable, "-m", "podbgp.cni.main"]
    proc = subprocess.run(argv, input=json.dumps(conf).encode(), capture_output=True, env=env,
                          timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    return proc.stdout


def add_pod(cluster: Cluster, node: str, index: int) -> None:
    pod = cluster.factory.namespace("p")
    ip = json.loads(cni(cluster, "ADD", node, index, pod))["ips"][0]["address"].split("/")[0]
    cluster.pods.setdefault(node, []).append((pod, ip))


def block_of(cluster: Cluster, node: str) -> str:
    info = cluster.api(node, "/v1/node")
    assert info and info["ipam"]["blocks"], f"{node} has no block yet"
    return str(info["ipam"]["blocks"][0])


def felix_state(cluster: Cluster, node: str) -> dict[str, Any]:
    return dict((cluster.api(node, "/v1/node") or {}).get("felix") or {})


def established(cluster: Cluster, node: str, expected: int) -> bool:
    peers = cluster.api(node, "/v1/peers") or []
    return sum(1 for p in peers if p["state"] == "Established") == expected


C = TypeVar("C", bound="Cluster")


@contextlib.contextmanager
def running_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
    resources: str,
    names: Iterable[str],
    ready: Callable[[C], bool],
    make: Callable[[NetnsFactory, Path, str, dict[str, str]], C],
    build: Callable[[NetnsFactory], tuple[str, dict[str, str]]] = build_topology,
    timeout: float = 120.0,
) -> Iterator[C]:
    """A cluster of real ``podbgp`` processes on a real etcd in namespaces: built, started,
    waited for (``ready``), yielded, and always torn down; every daemon's log is printed when
    the body fails. Shared by every cluster test module."""
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    protos = Path("/etc/iproute2/rt_protos.d/podbgp.conf")
    had_protos = protos.exists()
    workdir = tmp_path_factory.mktemp(tag)
    names = list(names)
    with NetnsFactory(log_dir=workdir) as factory:
        router, ns = build(factory)
        start_etcd(factory, router, workdir)
        cluster = make(factory, workdir, router, ns)
        (workdir / "resources.yaml").write_text(resources)
        cluster.datastore("apply", str(workdir / "resources.yaml"))
        for name in names:
            cluster.start(name)
        try:
            wait_until(lambda: ready(cluster), timeout=timeout)
            yield cluster
        except BaseException:
            for name in names:
                sys.stderr.write(f"--- {name} log ---\n{cluster.log(name)}\n")
            raise
        finally:
            for proc in cluster.procs.values():
                factory.stop(proc)
    if not had_protos:
        protos.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    def ready(c: Cluster) -> bool:
        return all(established(c, name, 3) for name in NODES)

    with running_cluster(tmp_path_factory, "cluster", RESOURCES, NODES, ready, Cluster) as c:
        for name in NODES:
            for index in range(2):
                add_pod(c, name, index)
        yield c


def test_every_pod_pings_every_other_pod(cluster: Cluster) -> None:
    pods = cluster.all_pods()
    assert len(pods) == 8

    def converged() -> bool:
        return all(ping(src_ns, dst_ip) for _, src_ns, _ in pods for _, _, dst_ip in pods[:1])

    wait_until(converged, timeout=30)
    failures = [
        f"{src}:{src_ip} -> {dst}:{dst_ip}"
        for src, src_ns, src_ip in pods
        for dst, _dst_ns, dst_ip in pods
        if src_ip != dst_ip and not ping(src_ns, dst_ip)
    ]
    assert failures == []


def test_same_subnet_goes_direct_and_cross_subnet_through_vxlan(cluster: Cluster) -> None:
    n2_pod = cluster.pods["n2"][0][1]
    n3_pod = cluster.pods["n3"][0][1]
    n1_pod = cluster.pods["n1"][0][1]
    assert re.search(r"via 192\.0\.2\.12 dev eth0\b", route_get(cluster.ns["n1"], n2_pod))
    assert "dev vxlan.podbgp" in route_get(cluster.ns["n1"], n3_pod)
    assert "dev vxlan.podbgp" in route_get(cluster.ns["n4"], n1_pod)
    n1 = routes(cluster.ns["n1"])
    blocks = {name: block_of(cluster, name) for name in NODES}
    assert f"blackhole {blocks['n1']}" in n1
    assert f"{blocks['n2']} via 192.0.2.12 dev eth0" in n1
    assert any(r.startswith(f"{blocks['n3']} via ") and "dev vxlan.podbgp onlink" in r for r in n1)
    pod_host = host_veth_name("n1-pod0", "eth0")
    assert f"{n1_pod} dev {pod_host} scope link" in n1
    for name in NODES:
        assert run(cluster.ns[name], "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"
    felix = cluster.api("n1", "/v1/node")["felix"]
    assert felix["converged"] is True and felix["tunnels"]["vxlan.podbgp"]["ready"] is True


def loss(output: str) -> tuple[int, int]:
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert match, output
    return int(match[1]), int(match[2])


def test_kill_9_and_restart_of_a_node_does_not_stop_traffic(cluster: Cluster) -> None:
    victim = "n1"
    flows = {  # name: (source pod ns, destination IP)
        "n2->n3 (others)": (cluster.pods["n2"][0][0], cluster.pods["n3"][0][1]),
        "n2->n1 (same subnet, to the victim)": (cluster.pods["n2"][0][0], cluster.pods["n1"][0][1]),
        "n3->n1 (VXLAN, to the victim)": (cluster.pods["n3"][0][0], cluster.pods["n1"][1][1]),
    }
    pingers = {
        name: subprocess.Popen(
            ["ip", "netns", "exec", ns, "ping", "-n", "-i", "0.05", "-w", "15", "-W", "1", ip],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, (ns, ip) in flows.items()
    }
    try:
        time.sleep(1.0)
        before = routes(cluster.ns[victim])
        cluster.procs[victim].send_signal(signal.SIGKILL)
        cluster.procs[victim].wait(5)
        time.sleep(1.0)
        assert routes(cluster.ns[victim]) == before  # the kernel keeps felix's routes
        cluster.start(victim)
        wait_until(lambda: established(cluster, victim, 3), timeout=30)
        wait_until(lambda: felix_state(cluster, victim).get("converged"), timeout=30)
        outputs = {name: p.communicate(timeout=40)[0] for name, p in pingers.items()}
    finally:
        for p in pingers.values():
            if p.poll() is None:
                p.kill()
                p.wait(5)
    report = {name: loss(out) for name, out in outputs.items()}
    sys.stderr.write(f"kill -9 / restart of {victim}: (sent, received) per flow: {report}\n")
    for name, (sent, received) in report.items():
        assert sent > 100, name
        assert received == sent, f"{name}: {sent - received} of {sent} lost"


def test_removed_node_block_routes_disappear_everywhere_but_its_blackhole(cluster: Cluster) -> None:
    gone = "n4"
    block = block_of(cluster, gone)
    cluster.factory.stop(cluster.procs.pop(gone))  # stopped: the others keep its routes stale
    t0 = time.monotonic()
    assert cluster.datastore("delete", gone).strip() == "True"
    others = [n for n in NODES if n != gone]

    def withdrawn() -> bool:
        return all(
            not any(r.startswith(f"{block} ") for r in routes(cluster.ns[n])) for n in others
        )

    wait_until(withdrawn, timeout=30, interval=0.02)
    took = time.monotonic() - t0  # from the start of the `podbgp delete` process
    sys.stderr.write(f"node deleted -> its block out of every other kernel: {took:.2f} s\n")
    assert f"blackhole {block}" in routes(cluster.ns[gone])  # only on its (stopped) owner
    for n in others:
        assert established(cluster, n, 2)
    remaining = [p for p in cluster.all_pods() if p[0] != gone]
    assert ping(remaining[0][1], remaining[-1][2])


def test_a_disabled_pool_gives_its_blocks_back_once_empty_tunnels_included(
    cluster: Cluster,
) -> None:
    # The pool is disabled and another takes its place: every node claims a block of the new
    # pool and moves its VXLAN address there (as Calico moves tunnel addresses), pods keep
    # their addresses and their traffic, and new pods come from the new pool.
    nodes = [n for n in NODES if n in cluster.procs]
    old = {n: block_of(cluster, n) for n in nodes}
    (cluster.workdir / "pools.yaml").write_text(
        RESOURCES.split("---")[1].replace("blockSize: 24,", "blockSize: 24, disabled: true,")
        + "---\napiVersion: podbgp/v1\nkind: IPPool\nmetadata: {name: pods2}\n"
        "spec: {cidr: 10.245.0.0/16, blockSize: 24, vxlanMode: CrossSubnet, ipipMode: Never}\n"
    )
    cluster.datastore("apply", str(cluster.workdir / "pools.yaml"))

    def vxlan_address(node: str) -> str:
        tunnel = felix_state(cluster, node).get("tunnels", {}).get("vxlan.podbgp", {})
        return str(tunnel.get("address") or "")

    def moved() -> bool:
        return all(vxlan_address(n).startswith("10.245.") for n in nodes)

    wait_until(moved, timeout=30)
    pods = [p for p in cluster.all_pods() if p[0] in nodes]
    wait_until(lambda: ping(pods[0][1], pods[-1][2]), timeout=20)  # n1 -> n3: through VXLAN
    failures = [
        f"{src}:{src_ip} -> {dst}:{dst_ip}"
        for src, src_ns, src_ip in pods
        for dst, _dst_ns, dst_ip in pods
        if src_ip != dst_ip and not ping(src_ns, dst_ip)
    ]
    assert failures == []
    add_pod(cluster, "n3", 2)
    new_pod = cluster.pods["n3"][-1]
    assert new_pod[1].startswith("10.245.")
    wait_until(lambda: ping(pods[0][1], new_pod[1]), timeout=20)

    # n1's pods go: its old block is empty now and goes back (affinity included), so every
    # node drops its route, and n1 its blackhole.
    for index, (pod, _ip) in enumerate(cluster.pods.pop("n1")):
        cni(cluster, "DEL", "n1", index, pod)

    def released() -> bool:
        gone = all(
            not any(r.startswith(f"{old['n1']} ") for r in routes(cluster.ns[n])) for n in nodes
        )
        return gone and old["n1"] not in (cluster.api("n1", "/v1/node") or {}).get("blocks", [])

    wait_until(released, timeout=30)
    for n in nodes[1:]:  # their pods stay, so do their old blocks
        assert old[n] in cluster.api(n, "/v1/node")["blocks"]
