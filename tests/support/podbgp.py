"""Run real `podbgp bgpd` processes for tests: write a YAML config, start, query the REST API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.netns import netns_socket

REPO = Path(__file__).resolve().parents[2]


class PodbgpSpeaker:
    """One `podbgp bgpd` process. ``netns`` runs it inside a namespace via `ip netns exec`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        config: dict[str, Any],
        netns: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.name = name
        self.config = config
        self.netns = netns
        self.config_path = workdir / f"{name}.yaml"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        api = config.get("api", {}).get("listen", "127.0.0.1:9179")
        self.api_url = f"http://{api}"

    def start(self) -> PodbgpSpeaker:
        self.config_path.write_text(yaml.safe_dump(self.config))
        argv = [sys.executable, "-m", "podbgp", "bgpd", "-c", str(self.config_path)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        env = dict(os.environ, PYTHONPATH=str(REPO))
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- REST API --------------------------------------------------------------------------

    def get(self, path: str) -> Any:
        if self.netns:
            out = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    self.netns,
                    sys.executable,
                    "-c",
                    "import sys,urllib.request;"
                    "sys.stdout.write(urllib.request.urlopen(sys.argv[1],timeout=3).read().decode())",
                    self.api_url + path,
                ],
                capture_output=True,
                timeout=10,
                check=True,
            )
            return json.loads(out.stdout)
        with urllib.request.urlopen(self.api_url + path, timeout=3) as resp:
            return json.loads(resp.read())

    def get_fast(self, path: str, timeout: float = 2.0) -> Any:
        """GET over a socket made in the namespace: no interpreter per call, for tight polls."""
        host, _, port = self.api_url.removeprefix("http://").rpartition(":")
        sock = netns_socket(self.netns) if self.netns else socket.socket()
        with sock:
            sock.settimeout(timeout)
            sock.connect((host, int(port)))
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1]
        if status != b"200":
            raise OSError(f"GET {path}: HTTP {status.decode()}")
        return json.loads(body)

    def try_get(self, path: str) -> Any | None:
        try:
            return self.get(path)
        except (OSError, urllib.error.URLError, subprocess.SubprocessError, ValueError):
            return None

    def peer_state(self, address: str) -> str | None:
        peers = self.try_get("/v1/peers") or []
        for peer in peers:
            if peer["address"] == address:
                return str(peer["state"])
        return None

    def route_prefixes(self) -> set[str]:
        routes = self.try_get("/v1/routes") or []
        return {r["prefix"] for r in routes}

    def routes_by_prefix(self) -> dict[str, dict[str, Any]]:
        return {r["prefix"]: r for r in (self.try_get("/v1/routes") or [])}


def wait_for(predicate: Any, timeout: float, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until truthy; fail after ``timeout`` seconds with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)
