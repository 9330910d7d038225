"""The runtime install-cni puts on a Kubernetes node (``python3 -m podbgp.cni.bundle``) runs the
plugin on a host that has no Python and no C library: a chroot holding nothing but that runtime,
the launcher (deploy/cni/podbgp-cni-host) as ``/opt/cni/bin/podbgp-cni`` and a static ``/bin/sh``
(busybox). VERSION answers, and an ADD wires a real pod namespace and a DEL removes it again.

The runtime is made from this interpreter. podbgp is installed here in editable mode, which lists
no files, so the test declares the distribution in a scratch directory (metadata from
pyproject.toml) in front of the source tree, as a wheel install would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.support.kernel import links
from tests.support.netns import NetnsFactory

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
POOL = """apiVersion: podbgp/v1
kind: IPPool
metadata: {name: pods}
spec: {cidr: 10.246.0.0/16, blockSize: 26}
"""


def declare_podbgp(site: Path) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    meta = site / f"podbgp-{project['version']}.dist-info"
    meta.mkdir(parents=True)
    requires = "".join(f"Requires-Dist: {r}\n" for r in project["dependencies"])
    (meta / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: podbgp\nVersion: {project['version']}\n{requires}"
    )
    (meta / "top_level.txt").write_text("bgpd\nfelix\npodbgp\nrr\n")
    scripts = "".join(f"{k} = {v}\n" for k, v in project["scripts"].items())
    (meta / "entry_points.txt").write_text(f"[console_scripts]\n{scripts}")


@pytest.fixture(scope="module")
def host_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node root with the bundled runtime and the launcher, and nothing else but /bin/sh."""
    if not Path(BUSYBOX).is_file():
        pytest.skip("busybox (static) is not installed: apt-get install busybox-static")
    tmp = tmp_path_factory.mktemp("bundle")
    declare_podbgp(tmp / "site")
    root = tmp / "root"
    env = {**os.environ, "PYTHONPATH": f"{tmp / 'site'}:{REPO}"}
    proc = subprocess.run(
        [sys.executable, "-m", "podbgp.cni.bundle", str(root / "opt/podbgp/runtime")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout.strip())
    for d in ("bin", "opt/cni/bin", "proc", "run/netns", "store", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin/sh")
    shutil.copy2(REPO / "deploy/cni/podbgp-cni-host", root / "opt/cni/bin/podbgp-cni")
    return root


def test_the_runtime_is_self_contained(host_root: Path) -> None:
    runtime = host_root / "opt/podbgp/runtime"
    assert (runtime / "lib/ld.so").is_file() and (runtime / "lib/libc.so.6").is_file()
    [stdlib] = runtime.glob("lib/python3*")
    assert (stdlib / "asyncio").is_dir() and (stdlib / "lib-dynload").is_dir()
    for unneeded in ("test", "tkinter", "idlelib", "ensurepip", "site-packages"):
        assert not (stdlib / unneeded).exists(), unneeded
    assert not list(stdlib.glob("config-*"))  # no static libpython
    # Only podbgp's requirement closure: the test tools installed beside it stay behind.
    assert (runtime / "site/aetcd").is_dir() and (runtime / "site/yaml").is_dir()
    assert not (runtime / "site/pytest").exists() and not (runtime / "site/_pytest").exists()
    out = subprocess.run(
        ["/usr/sbin/chroot", str(host_root), "/opt/cni/bin/podbgp-cni"],
        input='{"cniVersion": "0.4.0"}', env={"CNI_COMMAND": "VERSION"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["supportedVersions"][-3:] == ["0.3.1", "0.4.0", "1.0.0"]


def test_the_launcher_says_when_the_runtime_is_missing(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(REPO / "deploy/cni/podbgp-cni-host")], input="{}",
        env={"PATH": "/usr/bin:/bin", "PODBGP_RUNTIME": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "install-cni has not run" in json.loads(proc.stdout)["msg"]


def in_chroot(node: str, root: Path, store: Path, env: dict[str, str], conf: Any) -> Any:
    """One plugin call inside the node's namespace, chrooted into ``root`` (with /proc, the
    pod namespaces and the file datastore bind-mounted in a private mount namespace)."""
    script = (
        f"mount --bind /proc {root}/proc && mount --rbind /run/netns {root}/run/netns && "
        f"mount --bind {store} {root}/store && exec /usr/sbin/chroot {root} /opt/cni/bin/podbgp-cni"
    )
    proc = subprocess.run(
        ["ip", "netns", "exec", node, "unshare", "--mount", "--propagation", "private",
         "/bin/sh", "-c", script],
        input=json.dumps(conf), env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def test_add_and_del_through_the_bundled_runtime(
    host_root: Path, netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    node = netns_factory.namespace("n")
    pod = netns_factory.namespace("p")
    store = tmp_path / "store"
    store.mkdir()
    (store / "pool.yaml").write_text(POOL)
    conf = {
        "cniVersion": "0.4.0", "name": "podbgp", "type": "podbgp-cni", "nodeName": "node-1",
        "datastore": {"type": "file", "path": "/store"},
    }  # fmt: skip
    env = {
        "CNI_CONTAINERID": "ctr-bundle", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=b-0",
    }  # fmt: skip
    result = in_chroot(node, host_root, store, {**env, "CNI_COMMAND": "ADD"}, conf)
    assert result["cniVersion"] == "0.4.0"
    [ip] = result["ips"]
    assert ip["address"].startswith("10.246.")
    host_if = result["interfaces"][0]["name"]
    assert host_if in links(node)
    assert in_chroot(node, host_root, store, {**env, "CNI_COMMAND": "DEL"}, conf) is None
    assert host_if not in links(node)
