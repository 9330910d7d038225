"""Deployment files: systemd units, docker-compose.yml, Kubernetes manifests, Dockerfile, Grafana.

What can run here does: ``systemd-analyze verify`` on the units (in a scratch root holding the
host's stock units and a stand-in ``/usr/local/bin/podbgp``), ``docker-compose config`` when a
Compose CLI is installed (no Docker engine is needed for it), the CNI installer script against a
scratch host root, and every podbgp config file the deployments ship through podbgp's own
loaders. The rest is checked structurally: required fields, cross references (volumes, config
keys, secrets, networks) and agreement with the code (probe paths, metric names).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bgpd.config import read_token_file
from podbgp.ops.metrics import exported_names
from podbgp.ops.openapi import OPEN_PATHS

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
UNITS = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"


# --- systemd ---------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as section -> key -> values (keys may repeat; comments dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, (section, key, values)
    return values[0]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", text)
    assert match, text
    return int(match[1]) * (60 if match[2] == "min" else 1)


@pytest.mark.parametrize(
    ("name", "verb", "caps"),
    [
        ("podbgp-node.service", "node", {"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"}),
        ("podbgp-rr.service", "rr", {"CAP_NET_BIND_SERVICE"}),
    ],
)
def test_unit_contents(name: str, verb: str, caps: set[str]) -> None:
    unit = parse_unit(UNITS / name)
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert seconds(one(unit, "Service", "WatchdogSec")) >= 10
    assert one(unit, "Service", "ExecStart") == (
        f"/usr/local/bin/podbgp {verb} -c /etc/podbgp/{verb}.yaml"
    )
    assert set(one(unit, "Service", "CapabilityBoundingSet").split()) == caps
    assert set(one(unit, "Service", "AmbientCapabilities").split()) == caps
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert "network-online.target" in one(unit, "Unit", "After")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_rr_unit_runs_unprivileged() -> None:
    unit = parse_unit(UNITS / "podbgp-rr.service")
    assert one(unit, "Service", "DynamicUser") == "yes"
    assert "User" not in unit["Service"]


@pytest.fixture
def systemd_root(tmp_path: Path) -> Iterator[Path]:
    """A scratch root for ``systemd-analyze verify --root``: stock units plus a stand-in
    ``podbgp`` executable (verify checks that ExecStart= names an executable file)."""
    analyze = shutil.which("systemd-analyze")
    stock = Path("/usr/lib/systemd/system")
    if analyze is None or not stock.is_dir():
        pytest.skip("systemd-analyze is not installed (Debian package: systemd)")
    root = tmp_path / "root"
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    podbgp = root / "usr/local/bin/podbgp"
    podbgp.parent.mkdir(parents=True)
    podbgp.write_text("#!/bin/sh\nexit 0\n")
    podbgp.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    yield root


def verify(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", "--man=no", *units],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_systemd_analyze_verify(systemd_root: Path) -> None:
    for unit in UNITS.glob("*.service"):
        shutil.copy(unit, systemd_root / "etc/systemd/system" / unit.name)
    proc = verify(systemd_root, "podbgp-node.service", "podbgp-rr.service")
    # verify exits 0 on mere warnings (an unknown key, a bad value), so its output must be empty.
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_systemd_analyze_verify_catches_mistakes(systemd_root: Path) -> None:
    # The check above can fail: a misspelt key and a bad value in a copy of our unit are reported.
    text = (UNITS / "podbgp-rr.service").read_text()
    text = text.replace("WatchdogSec=", "WatchdogSecs=").replace("Type=notify", "Type=notifyy")
    (systemd_root / "etc/systemd/system/podbgp-bad.service").write_text(text)
    proc = verify(systemd_root, "podbgp-bad.service")
    assert "Unknown key 'WatchdogSecs'" in proc.stderr
    assert "Failed to parse service type" in proc.stderr


# --- docker-compose.yml ----------------------------------------------------------------------

NODES = ("node-1", "node-2", "node-3", "node-4")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """The repository file a service mounts at ``container_path``."""
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if target == container_path:
            return (REPO / source).resolve()
    raise AssertionError(f"nothing mounted at {container_path}")


def network_of(service: dict[str, Any]) -> tuple[str, str]:
    [(name, spec)] = service["networks"].items()
    return name, spec["ipv4_address"]


def subnets(compose: dict[str, Any]) -> dict[str, ipaddress.IPv4Network]:
    return {
        name: ipaddress.IPv4Network(net["ipam"]["config"][0]["subnet"])
        for name, net in compose["networks"].items()
    }


def test_compose_services_and_networks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    wanted = {"etcd", "router", "rr-1", "rr-2", *NODES, *(f"pod-{i}" for i in range(1, 5))}
    assert wanted <= set(services)
    nets = subnets(compose)
    assert set(nets) == {"subnet-a", "subnet-b"}
    assert not nets["subnet-a"].overlaps(nets["subnet-b"])
    # The router is the one container in both subnets.
    router = services["router"]
    assert set(router["networks"]) == {"subnet-a", "subnet-b"}
    for name, spec in router["networks"].items():
        assert ipaddress.IPv4Address(spec["ipv4_address"]) in nets[name]
    assert str(router["sysctls"]["net.ipv4.ip_forward"]) == "1"
    in_both = [s for s, spec in services.items() if len(spec.get("networks", {})) > 1]
    assert in_both == ["router"]
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, (name, dep)
        for volume in service.get("volumes", []):
            assert (REPO / volume.split(":")[0]).exists(), (name, volume)
        if "build" in service:
            assert (REPO / service["build"] / "Dockerfile").is_file()


def test_compose_nodes_match_their_configs(compose: dict[str, Any], tmp_path: Path) -> None:
    from podbgp.node.config import load_node_config

    services, nets = compose["services"], subnets(compose)
    router = services["router"]["networks"]
    per_subnet: dict[str, list[str]] = {}
    for node in NODES:
        service = services[node]
        net, address = network_of(service)
        per_subnet.setdefault(net, []).append(node)
        cfg = yaml.safe_load(host_path(service, "/etc/podbgp/node.yaml").read_text())
        # Load through podbgp's own loader, the token file pointed at its repository copy.
        assert cfg["api"]["tokenFile"] == "/etc/podbgp/token"
        cfg["api"]["tokenFile"] = str(host_path(service, "/etc/podbgp/token"))
        path = tmp_path / f"{node}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        config = load_node_config(str(path))
        assert config.node_name == node == service["hostname"]
        assert config.address == f"{address}/{nets[net].prefixlen}"
        env = service["environment"]
        [other] = set(nets) - {net}
        assert env["OTHER_SUBNET"] == str(nets[other])
        assert env["ROUTER"] == router[net]["ipv4_address"]
        assert "NET_ADMIN" in service["cap_add"]
        assert config.datastore.endpoints == (
            f"http://{services['etcd']['networks']['subnet-a']['ipv4_address']}:2379",
        )
    assert sorted(len(v) for v in per_subnet.values()) == [2, 2]


def test_compose_reflectors_and_cluster(compose: dict[str, Any]) -> None:
    from podbgp.cluster.resources import BGPConfiguration, BGPPeer, IPPool, parse_resource
    from rr.cli import load_rr_config

    services, nets = compose["services"], subnets(compose)
    rr_addresses, cluster_ids = set(), set()
    for name in ("rr-1", "rr-2"):
        service = services[name]
        _, address = network_of(service)
        config = load_rr_config(str(host_path(service, "/etc/podbgp/rr.yaml")))
        assert config.router_id == address
        assert config.route_reflector is not None
        assert config.api is not None and config.api.loopback
        ranges = [ipaddress.ip_network(r.range) for r in config.peer_ranges]
        for net in nets.values():
            assert any(net.subnet_of(r) for r in ranges if r.version == 4), (name, net)
        assert service["environment"]["RUN_AS_UID"] != "0"  # drops root after routing
        rr_addresses.add(address)
        cluster_ids.add(config.route_reflector.cluster_id)
    assert len(cluster_ids) == 1  # redundant reflectors of one cluster

    init = services["cluster-init"]
    cluster = host_path(init, "/etc/podbgp/cluster.yaml")
    resources = [
        parse_resource(doc, str(cluster)) for doc in yaml.safe_load_all(cluster.read_text())
    ]
    peers = [r for r in resources if isinstance(r, BGPPeer)]
    assert {p.peer_ip for p in peers} == rr_addresses
    [config] = [r for r in resources if isinstance(r, BGPConfiguration)]
    assert config.node_to_node_mesh_enabled is False
    [pool] = [r for r in resources if isinstance(r, IPPool)]
    # As written: IPIP across the subnets; cluster-init.sh switches to VXLAN on a kernel
    # without ipip (the choice is exercised by tests/deploy/test_compose.py).
    assert (pool.ipip_mode, pool.vxlan_mode) == ("CrossSubnet", "Never")
    assert init["entrypoint"][-1] == "/opt/podbgp/cluster-init.sh"
    assert init["command"] == ["/etc/podbgp/cluster.yaml"]
    # etcd's route back to the second subnet, through the router.
    route = services["etcd-route"]
    assert route["network_mode"] == "service:etcd"
    other = str(nets["subnet-b"])
    assert route["entrypoint"][-3:] == [
        other,
        "via",
        services["router"]["networks"]["subnet-a"]["ipv4_address"],
    ]
    assert init["depends_on"]["etcd-route"]["condition"] == "service_completed_successfully"


def test_compose_pods(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for i, node in enumerate(NODES, start=1):
        pod = services[f"pod-{i}"]
        assert pod["network_mode"] == f"service:{node}"
        assert pod["environment"]["NODE_NAME"] == node
        assert pod["depends_on"][node]["condition"] == "service_healthy"
        assert "healthcheck" in services[node]


def test_compose_token_and_scripts() -> None:
    assert read_token_file(str(DEPLOY / "compose/api-token"))
    for script in (*DEPLOY.glob("compose/*.sh"), DEPLOY / "cni/install-cni",
                   DEPLOY / "cni/podbgp-cni-host"):  # fmt: skip
        subprocess.run(["sh", "-n", str(script)], check=True, timeout=30)


def compose_cli() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None


def test_docker_compose_config_is_valid() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI installed (Debian package: docker-compose)")
    # `config` validates against the Compose schema and resolves references; no engine needed.
    proc = subprocess.run(
        [*cli, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- Kubernetes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in out, key
            assert doc["metadata"]["namespace"] == "kube-system"
            out[key] = doc
    return out


def test_k8s_kinds(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert set(manifests) == {
        ("ConfigMap", "podbgp-config"),
        ("DaemonSet", "podbgp-node"),
        ("Deployment", "podbgp-rr"),
        ("Secret", "podbgp-etcd"),
        ("Secret", "podbgp-api-token"),
    }


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def check_workload(manifests: dict[tuple[str, str], Any], workload: dict[str, Any]) -> None:
    """Selector, volumes, config and secret references resolve; probes hit the open paths."""
    spec = workload["spec"]
    pod = spec["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod.get("initContainers", []) + pod["containers"]:
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes, mount
        for env in c.get("env", []):
            ref = env.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                cm = manifests[("ConfigMap", ref["configMapKeyRef"]["name"])]
                assert ref["configMapKeyRef"]["key"] in cm["data"]
            if "secretKeyRef" in ref:
                secret = manifests[("Secret", ref["secretKeyRef"]["name"])]
                assert ref["secretKeyRef"]["key"] in secret["stringData"]
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in manifests
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in manifests
    for c in pod["containers"]:
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe"):
            # The kubelet sends no token: only the API's open paths may be probed.
            assert c[probe]["httpGet"]["path"] in OPEN_PATHS
            assert c[probe]["httpGet"]["port"] == 9179
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx["readOnlyRootFilesystem"] is True


def test_k8s_daemonset(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    ds = manifests[("DaemonSet", "podbgp-node")]
    check_workload(manifests, ds)
    pod = ds["spec"]["template"]["spec"]
    node = container(ds, "podbgp-node")
    assert node["command"] == ["podbgp", "node", "-c", "/etc/podbgp/node.yaml"]
    assert set(node["securityContext"]["capabilities"]["add"]) == {
        "NET_ADMIN",
        "NET_RAW",
        "NET_BIND_SERVICE",
    }
    tolerations = pod["tolerations"]
    assert {"operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert {"operator": "Exists", "effect": "NoExecute"} in tolerations
    [init] = pod["initContainers"]
    assert init["command"] == ["/opt/podbgp/install-cni"]
    mounts = {m["mountPath"] for m in init["volumeMounts"]}
    assert {"/host/etc/cni/net.d", "/host/opt/cni/bin", "/etc/podbgp"} <= mounts
    host_paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert {"/etc/cni/net.d", "/opt/cni/bin"} <= host_paths


def test_k8s_reflectors(manifests: dict[tuple[str, str], dict[str, Any]]) -> None:
    dep = manifests[("Deployment", "podbgp-rr")]
    check_workload(manifests, dep)
    assert dep["spec"]["replicas"] == 2
    rr = container(dep, "podbgp-rr")
    assert rr["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]
    affinity = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    # The node agents stay off the reflectors' nodes (both want port 179 of the host).
    ds = manifests[("DaemonSet", "podbgp-node")]["spec"]["template"]["spec"]
    [expr] = ds["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"]
    selector = dep["spec"]["template"]["spec"]["nodeSelector"]
    assert (expr["key"], expr["operator"]) == (next(iter(selector)), "DoesNotExist")


def with_token_file(text: str, tmp_path: Path) -> str:
    """A copy of a podbgp YAML with api.tokenFile pointing at a real token file."""
    cfg = yaml.safe_load(text)
    token = tmp_path / "api-token"
    token.write_text("k8s-test-token\n")
    cfg["api"]["tokenFile"] = str(token)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_install_cni_renders_this_nodes_files(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    """Run the init container's script against a scratch host root."""
    from podbgp.node.config import load_node_config

    data = manifests[("ConfigMap", "podbgp-config")]["data"]
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for key, text in data.items():
        (config_dir / key).write_text(text)
    # A stand-in for the image's python3 running `-m podbgp.cni.bundle DEST` (the real bundle:
    # tests/integration/test_cni_bundle.py and the image in tests/deploy).
    python = tmp_path / "python3"
    python.write_text('#!/bin/sh\n[ "$1 $2" = "-m podbgp.cni.bundle" ] || exit 9\n'
                      'mkdir -p "$3/bin" && echo stand-in > "$3/bin/python3"\n')  # fmt: skip
    python.chmod(0o755)
    host = tmp_path / "host"
    env = {
        "PATH": os.environ["PATH"],
        "NODE_NAME": "worker-7",
        "NODE_IP": "10.1.2.7",
        "NODE_PREFIX_LENGTH": data["nodePrefixLength"],
        "ETCD_ENDPOINTS": "http://10.0.0.10:2379, http://10.0.0.11:2379",
        "HOST_ROOT": str(host),
        "CONFIG_DIR": str(config_dir),
        "NODE_CONFIG_DIR": str(tmp_path / "etc-podbgp"),
        "PYTHON": str(python),
        "SHIM": str(DEPLOY / "cni/podbgp-cni-host"),
        "LOOPBACK_SOURCE": str(DEPLOY / "cni/podbgp-cni-host"),  # a stand-in file
    }
    script = DEPLOY / "cni/install-cni"
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # The node lacked the standard loopback plugin: installed, executable, on the runtime.
    loopback = host / "opt/cni/bin/loopback"
    assert os.access(loopback, os.X_OK) and "loopback (the node had none)" in proc.stdout
    assert "/opt/podbgp/runtime/lib/ld.so" in loopback.read_text()
    assert (host / "opt/podbgp/runtime/cni/loopback").read_bytes() == Path(
        env["LOOPBACK_SOURCE"]).read_bytes()  # fmt: skip
    assert (host / "opt/podbgp/runtime/bin/python3").read_text() == "stand-in\n"
    # A second run renews the runtime and the loopback launcher it installed itself.
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "loopback (the node had none)" in proc.stdout, proc.stderr
    assert not list((host / "opt/podbgp").glob("runtime.*"))  # no half-swapped leftovers
    plugin = host / "opt/cni/bin/podbgp-cni"
    assert os.access(plugin, os.X_OK)
    assert plugin.read_bytes() == (DEPLOY / "cni/podbgp-cni-host").read_bytes()
    conflist = json.loads((host / "etc/cni/net.d/10-podbgp.conflist").read_text())
    assert conflist["cniVersion"] == "0.4.0"  # the default: kubelet 1.20 and older runtimes
    [plugin_conf] = conflist["plugins"]
    assert plugin_conf["type"] == "podbgp-cni"
    assert plugin_conf["nodeName"] == "worker-7"
    assert plugin_conf["datastore"]["endpoints"] == [
        "http://10.0.0.10:2379",
        "http://10.0.0.11:2379",
    ]
    rendered = (tmp_path / "etc-podbgp/node.yaml").read_text()
    assert "__" not in rendered
    node = load_node_config(with_token_file(rendered, tmp_path))
    assert (node.node_name, node.address) == ("worker-7", "10.1.2.7/24")
    assert node.datastore.endpoints == ("http://10.0.0.10:2379", "http://10.0.0.11:2379")
    assert node.api is not None and not node.api.loopback
    # Again, for a current runtime: conflist 1.0.0; the node's own loopback is left alone.
    loopback.write_text("the node's own\n")
    proc = subprocess.run([str(script)], env={**env, "CNI_CONF_VERSION": "1.0.0"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    conflist = json.loads((host / "etc/cni/net.d/10-podbgp.conflist").read_text())
    assert conflist["cniVersion"] == "1.0.0"
    assert loopback.read_text() == "the node's own\n"
    proc = subprocess.run([str(script)], env={**env, "CNI_CONF_VERSION": "0.2.0"},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and "CNI_CONF_VERSION" in proc.stderr
    # Without a required value the script stops before touching the host.
    del env["ETCD_ENDPOINTS"]
    shutil.rmtree(host)
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ETCD_ENDPOINTS is not set" in proc.stderr
    assert not host.exists()


def test_reflector_config_renders(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    from rr.cli import load_rr_config

    rr = container(manifests[("Deployment", "podbgp-rr")], "podbgp-rr")
    assert 'sed "s/__POD_IP__/$POD_IP/"' in rr["command"][2]
    text = manifests[("ConfigMap", "podbgp-config")]["data"]["rr.yaml"]
    config = load_rr_config(with_token_file(text.replace("__POD_IP__", "10.1.2.3"), tmp_path))
    assert config.router_id == "10.1.2.3"
    assert config.route_reflector is not None and config.peer_ranges


def test_secret_placeholders(
    manifests: dict[tuple[str, str], dict[str, Any]], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(manifests[("Secret", "podbgp-api-token")]["stringData"]["token"])
    # The sample token is invalid on purpose, so podbgp refuses to run with it.
    with pytest.raises(ValueError, match="must hold one token"):
        read_token_file(str(token_file))
    endpoints = manifests[("Secret", "podbgp-etcd")]["stringData"]["endpoints"]
    assert all(e.startswith(("http://", "https://")) for e in endpoints.split(","))


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile() -> None:
    lines = [ln.strip() for ln in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [ln for ln in lines if ln and not ln.startswith("#")]
    froms = [ln.split()[1] for ln in instructions if ln.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms)
    [user] = [ln.split()[1] for ln in instructions if ln.startswith("USER ")]
    assert user not in ("0", "root")
    for ln in instructions:
        if ln.startswith("COPY ") and "--from=" not in ln:
            *sources, _dest = ln.split()[1:]
            for source in sources:
                assert (REPO / source).exists(), source
    copied = " ".join(ln for ln in instructions if ln.startswith("COPY "))
    # What the manifests run from the image is put there by the Dockerfile.
    assert "deploy/cni/install-cni" in copied and "/opt/podbgp/" in copied
    assert 'ENTRYPOINT ["podbgp"]' in instructions


# --- Grafana ---------------------------------------------------------------------------------


def test_grafana_dashboard_uses_exported_metrics() -> None:
    dash = json.loads((DEPLOY / "grafana/podbgp.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    used = {name for expr in exprs for name in re.findall(r"\bpodbgp_[a-z0-9_]+", expr)}
    exported = set(exported_names())
    assert used <= exported, used - exported
    assert used == exported  # every metric has a panel
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"]


def test_k8s_e2e_script_parses_and_refuses_an_unknown_command() -> None:
    """The opt-in Kubernetes run (scripts/k8s-e2e.sh) is too slow for CI; its syntax and usage are
    checked here, its run is recorded in the README."""
    script = REPO / "scripts/k8s-e2e.sh"
    assert subprocess.run(["bash", "-n", str(script)], timeout=30).returncode == 0
    if os.geteuid() != 0:
        pytest.skip("the script runs as root only")
    proc = subprocess.run([str(script), "nonsense"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "scripts/k8s-e2e.sh run" in proc.stderr
