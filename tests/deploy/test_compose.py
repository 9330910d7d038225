"""docker-compose.yml, unchanged, on Debian's Docker engine: image, up, sessions, pings, down.

The image builds from base images made here from Debian packages (deploy/image/base.sh); then
`docker-compose up` brings up etcd, the router, two reflectors, four nodes on two subnets and a
pod per node, through every health gate; every BGP session is Established; every pod pings every
other pod, across the router too (VXLAN on a kernel without ipip, as cluster-init says); and
`docker-compose down` leaves no container, network or volume behind. The engine runs in its own
network namespace (tests/deploy/conftest.py), so no test traffic touches the host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from itertools import permutations
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO, Engine
from tests.deploy.timings import TIMINGS

pytestmark = pytest.mark.deploy

COMPOSE = REPO / "docker-compose.yml"
NODES = ("node-1", "node-2", "node-3", "node-4")
PODS = ("pod-1", "pod-2", "pod-3", "pod-4")


def wait_for(what: str, probe: Any, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {last!r})")


@pytest.fixture(scope="module")
def image(engine: Engine) -> str:
    t0 = time.monotonic()
    engine.run("bash", str(REPO / "deploy/image/base.sh"), timeout=600)
    TIMINGS["base images (deploy/image/base.sh)"] = time.monotonic() - t0
    t0 = time.monotonic()
    engine.run("docker-compose", "-f", str(COMPOSE), "build", "-q", timeout=900)
    TIMINGS["docker-compose build"] = time.monotonic() - t0
    engine.docker("image", "prune", "-f")  # earlier builds' leftovers: the cache stays bounded
    return yaml.safe_load(COMPOSE.read_text())["x-podbgp"]["image"]


def test_the_image_builds_from_the_local_debian_base(engine: Engine, image: str) -> None:
    base = json.loads(engine.docker("image", "inspect", "python:3.11-slim"))[0]
    assert base["Config"]["Labels"]["org.podbgp.base-key"]  # made here by base.sh
    built = json.loads(engine.docker("image", "inspect", image))[0]
    assert built["Config"]["Entrypoint"] == ["podbgp"]
    assert built["Config"]["User"] == "10001"
    # The image's own console scripts work, as its unprivileged user.
    out = engine.docker("run", "--rm", image, "--help")
    assert "node" in out and "rr" in out
    out = engine.docker("run", "--rm", "-i", "--entrypoint", "podbgp-cni", "-e",
                        "CNI_COMMAND=VERSION", image)  # fmt: skip
    assert {"0.3.1", "0.4.0", "1.0.0"} <= set(json.loads(out)["supportedVersions"])
    # The standard loopback plugin that install-cni puts on a node lacking it.
    out = engine.docker("run", "--rm", "--entrypoint", "sh", image, "-c",
                        "test -x /opt/podbgp/cni-loopback && CNI_COMMAND=VERSION "
                        "/opt/podbgp/cni-loopback </dev/null")  # fmt: skip
    assert "0.4.0" in json.loads(out)["supportedVersions"]


def test_install_cni_gives_a_node_without_python_a_working_plugin(
    engine: Engine, image: str, tmp_path: Path
) -> None:
    """The image's init-container script against a scratch host root; then the plugin and the
    loopback plugin it installed run in a chroot of that root with nothing else but a static
    /bin/sh: no Python, no C library of the node's own."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        pytest.skip("busybox (static) is not installed: apt-get install busybox-static")
    host = tmp_path / "host"
    config = tmp_path / "config"
    config.mkdir()
    (config / "10-podbgp.conflist").write_text('{"cniVersion": "1.0.0", "name": "podbgp"}')
    (config / "node.yaml").write_text("nodeName: __NODE_NAME__\n")
    for d in ("opt/cni/bin", "etc/cni/net.d", "opt/podbgp", "bin"):
        (host / d).mkdir(parents=True)
    t0 = time.monotonic()
    out = engine.docker(
        "run", "--rm", "--user", "0", "--entrypoint", "/opt/podbgp/install-cni",
        "-e", "NODE_NAME=n1", "-e", "NODE_IP=10.0.0.1", "-e", "NODE_PREFIX_LENGTH=24",
        "-e", "ETCD_ENDPOINTS=http://10.0.0.10:2379",
        "-v", f"{config}:/config:ro", "-v", f"{host}/opt/cni/bin:/host/opt/cni/bin",
        "-v", f"{host}/etc/cni/net.d:/host/etc/cni/net.d",
        "-v", f"{host}/opt/podbgp:/host/opt/podbgp", image, timeout=300,
    )  # fmt: skip
    TIMINGS["install-cni (runtime bundle) in the image"] = time.monotonic() - t0
    assert "loopback (the node had none)" in out, out
    runtime = host / "opt/podbgp/runtime"
    assert (runtime / "lib/ld.so").is_file() and (runtime / "site/podbgp").is_dir()
    assert not (runtime / "usr").exists() and not (runtime / "lib/python3.11/test").exists()
    size = sum(p.stat().st_size for p in runtime.rglob("*") if p.is_file())
    print(f"runtime on the node: {size / 2**20:.0f} MiB ({out.strip().splitlines()[0]})")
    assert size < 200 * 2**20
    (host / "bin/sh").write_bytes(busybox.read_bytes())
    (host / "bin/sh").chmod(0o755)
    for plugin, versions in (("podbgp-cni", "1.0.0"), ("loopback", "0.4.0")):
        proc = subprocess.run(
            ["/usr/sbin/chroot", str(host), f"/opt/cni/bin/{plugin}"],
            input='{"cniVersion": "0.4.0"}', env={"CNI_COMMAND": "VERSION"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, (plugin, proc.stdout, proc.stderr)
        assert versions in json.loads(proc.stdout)["supportedVersions"], plugin


def test_compose_up_sessions_ping_matrix_and_down(engine: Engine, image: str) -> None:
    project = f"pbt{os.getpid()}"
    compose = ["docker-compose", "-f", str(COMPOSE), "-p", project]
    services = yaml.safe_load(COMPOSE.read_text())["services"]

    def container(service: str) -> str:
        return f"{project}_{service}_1"

    def exec_(service: str, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return engine.docker("exec", container(service), *argv, check=check, timeout=timeout)

    try:
        t0 = time.monotonic()
        engine.run(*compose, "up", "-d", timeout=600)  # waits for every depends_on condition
        TIMINGS["docker-compose up (all health gates passed)"] = time.monotonic() - t0

        # Every service: healthy where it has a health check, one-shots exited 0, others up.
        for service, spec in services.items():
            state = json.loads(engine.docker("inspect", container(service)))[0]["State"]
            if spec.get("restart") == "no":
                assert (state["Status"], state["ExitCode"]) == ("exited", 0), (service, state)
            elif "healthcheck" in spec:
                assert state["Health"]["Status"] == "healthy", (service, state["Health"])
            else:
                assert state["Running"], (service, state)

        # cluster-init chose the tunnel the kernel has, and said so.
        init_log = engine.run(*compose, "logs", "--no-color", "cluster-init").stdout
        has_ipip = Path("/sys/module/ipip").exists()
        encap = "ipip" if has_ipip else "vxlan"
        if not has_ipip:
            assert "no IPIP" in init_log and "vxlanMode CrossSubnet" in init_log, init_log

        # Every BGP session Established: each node with both reflectors, each reflector with
        # all four nodes; the datastore synced on every node.
        def node_status(node: str) -> dict[str, Any]:
            out = exec_(node, "podbgp", "status", "--api", "http://127.0.0.1:9179",
                        "--token-file", "/etc/podbgp/token", "-o", "json")  # fmt: skip
            return dict(json.loads(out))

        t0 = time.monotonic()
        for node in NODES:

            def established(node: str = node) -> bool:
                status = node_status(node)
                states = [p["state"] for p in status["peers"]]
                return states == ["Established"] * 2 and status["status"]["datastore"]["synced"]

            wait_for(f"{node}: both reflector sessions Established", established, 90)
        for rr in ("rr-1", "rr-2"):

            def rr_established(rr: str = rr) -> bool:
                out = exec_(rr, "podbgp", "status", "--api", "http://127.0.0.1:9179", "-o", "json")
                peers = json.loads(out)["peers"]
                return len(peers) == 4 and all(p["state"] == "Established" for p in peers)

            wait_for(f"{rr}: four client sessions Established", rr_established, 90)
        TIMINGS["compose: every session Established after up"] = time.monotonic() - t0

        # Each pod has its address (podbgp-cni ADD inside the pod container worked).
        def pod_ip(pod: str) -> str:
            out = exec_(pod, "ip", "netns", "exec", "pod", "ip", "-4", "-o", "addr", "show",
                        "dev", "eth0", check=False)  # fmt: skip
            fields = out.split()
            return fields[3].split("/")[0] if len(fields) > 3 else ""

        ips = {pod: wait_for(f"{pod}: an address from podbgp-cni", lambda p=pod: pod_ip(p), 90)
               for pod in PODS}  # fmt: skip
        assert len(set(ips.values())) == 4

        # The ping matrix: 12 ordered pairs, within a subnet and across the router.
        t0 = time.monotonic()
        failures = []
        for src, dst in permutations(PODS, 2):

            def pings(src: str = src, dst: str = dst) -> bool:
                argv = ("ip", "netns", "exec", "pod", "ping", "-c", "1", "-W", "2", ips[dst])
                out = engine.docker("exec", container(src), *argv, check=False, timeout=20)
                return " 0% packet loss" in out

            try:
                wait_for(f"{src} -> {dst}", pings, 30, interval=0.5)
            except AssertionError as exc:
                failures.append(str(exc))
        assert not failures, failures
        TIMINGS["compose: 12-pair pod ping matrix"] = time.monotonic() - t0

        # Across the router the route goes through the tunnel the cluster uses.
        routes = exec_("node-1", "ip", "route")
        device = "tunl0" if encap == "ipip" else "vxlan.podbgp"
        block_3 = ".".join(ips["pod-3"].split(".")[:3]) + ".0/24"
        assert any(line.startswith(block_3) and f"dev {device}" in line
                   for line in routes.splitlines()), routes  # fmt: skip
    finally:
        t0 = time.monotonic()
        down = engine.run(*compose, "down", "-v", "-t", "5", timeout=300, check=False)
        TIMINGS["docker-compose down"] = time.monotonic() - t0
    assert down.returncode == 0, down.stderr
    label = f"label=com.docker.compose.project={project}"
    assert engine.docker("ps", "-a", "-q", "--filter", label) == ""
    assert engine.docker("network", "ls", "-q", "--filter", label) == ""
    assert engine.docker("volume", "ls", "-q", "--filter", label) == ""
