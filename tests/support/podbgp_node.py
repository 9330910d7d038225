"""Run real `podbgp node` processes and the cluster CLI verbs (`apply`, `get`, ...) for tests.

Child processes run ``python -m podbgp`` from this checkout: the real front door and parser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support.netns import NetnsFactory
from tests.support.podbgp import REPO, PodbgpSpeaker


def podbgp_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "podbgp", *args]


def run_podbgp(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one `podbgp` verb to completion; stdout/stderr captured as text."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(
        podbgp_argv(*args),
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def node_config(
    name: str,
    address: str,
    etcd_endpoint: str,
    prefix: str,
    *,
    api_port: int = 9179,
    felix: bool = False,
) -> dict[str, Any]:
    """A node.yaml for a node on ``address`` ("127.x.y.z/24") using etcd under ``prefix``.

    felix stays off: these nodes share the test machine's namespace, whose kernel routes a
    test must never change (``felix=True`` is for nodes started inside a namespace)."""
    ip = address.split("/")[0]
    return {
        "nodeName": name,
        "address": address,
        "datastore": {"type": "etcd", "endpoints": [etcd_endpoint], "prefix": prefix},
        "api": {"listen": f"{ip}:{api_port}"},
        "felix": {"enabled": felix},
        "logLevel": "debug",
    }


class PodbgpNode(PodbgpSpeaker):
    """One `podbgp node -c FILE` process, with the REST API of :class:`PodbgpSpeaker`."""

    def start(self) -> PodbgpNode:
        self.config_path.write_text(yaml.safe_dump(self.config))
        argv = podbgp_argv("node", "-c", str(self.config_path))
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    @property
    def ip(self) -> str:
        return str(self.config["address"]).split("/")[0]

    def node_status(self) -> dict[str, Any] | None:
        status = self.try_get("/v1/node")
        return status if isinstance(status, dict) else None

    def peers(self) -> dict[str, dict[str, Any]]:
        return {p["address"]: p for p in (self.try_get("/v1/peers") or [])}

    def established(self) -> dict[str, dict[str, Any]]:
        return {a: p for a, p in self.peers().items() if p["state"] == "Established"}

    def blocks(self) -> list[str]:
        status = self.node_status() or {}
        return list(status.get("blocks") or [])


def file_node_in(
    factory: NetnsFactory, ns: str, workdir: Path, store: Path, address: str
) -> PodbgpNode:
    """``podbgp node`` ``node-1`` in ``ns`` on ``address``, reading the file datastore ``store``
    (polled every 0.2 s), felix off, API on 127.0.0.1:9179; stopped on teardown too."""
    config = {
        "nodeName": "node-1",
        "address": address,
        "datastore": {"type": "file", "path": str(store), "pollInterval": 0.2},
        "api": {"listen": "127.0.0.1:9179"},
        "felix": {"enabled": False},
        "logLevel": "debug",
    }
    node = PodbgpNode(workdir, "node", config, netns=ns).start()
    factory.processes.append(node.proc)  # type: ignore[arg-type]
    return node


def workdir_file(workdir: Path, name: str, text: str) -> Path:
    path = workdir / name
    path.write_text(text)
    return path
