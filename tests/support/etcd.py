"""Run a real single-member etcd (Debian's ``etcd-server``) for tests.

``EtcdServer`` listens on 127.0.0.1 with two free ports picked at construction (client and
peer) and a data directory under the test's temporary directory. ``stop()`` ends it (by its PID
only) and keeps the data; ``start()`` again brings it back on the same ports with the same data,
which is how tests take the datastore away and give it back. With ``pki`` (see
:func:`make_pki`, which runs ``openssl``) it serves TLS and requires client certificates.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def etcd_available() -> str | None:
    """None when etcd can run here, else the reason to skip."""
    if not Path(ETCD).exists():
        return "etcd is not installed (Debian package etcd-server)"
    return None


@dataclass(frozen=True)
class Pki:
    """A throwaway CA with a server certificate for 127.0.0.1 and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path) -> Pki:
    """Create the CA and both certificates in ``directory`` (P-256 keys, valid one day)."""
    directory.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=podbgp test CA",
    )
    for who, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = directory / f"{who}.ext"
        ext.write_text(f"subjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n")
        openssl(
            "req", *ec, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN=podbgp-{who}"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{who}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{who}.crt",
            "-days",
            "1",
            "-extfile",
            ext.name,
        )
    return Pki(
        directory / "ca.crt",
        directory / "server.crt",
        directory / "server.key",
        directory / "client.crt",
        directory / "client.key",
    )


class EtcdServer:
    def __init__(self, workdir: Path, name: str = "etcd", pki: Pki | None = None) -> None:
        self.workdir = workdir
        self.name = name
        self.pki = pki
        self.data_dir = workdir / f"{name}.data"
        self.log_path = workdir / f"{name}.log"
        self.client_port = free_port()
        self.peer_port = free_port()
        while self.peer_port == self.client_port:
            self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.pki else "http"
        return f"{scheme}://127.0.0.1:{self.client_port}"

    def argv(self) -> list[str]:
        client = self.endpoint
        peer = f"http://127.0.0.1:{self.peer_port}"
        tls = []
        if self.pki is not None:
            tls = [
                "--cert-file",
                str(self.pki.server_cert),
                "--key-file",
                str(self.pki.server_key),
                "--trusted-ca-file",
                str(self.pki.ca),
                "--client-cert-auth",
            ]
        return [
            ETCD,
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            client,
            "--advertise-client-urls",
            client,
            "--listen-peer-urls",
            peer,
            "--initial-advertise-peer-urls",
            peer,
            "--initial-cluster",
            f"{self.name}={peer}",
            "--initial-cluster-state",
            "new",
            "--log-level",
            "warn",
            *tls,
        ]

    def start(self, timeout: float = 20.0) -> EtcdServer:
        if self.running():
            return self
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd not healthy after {timeout}s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def healthy(self) -> bool:
        if self.pki is not None:
            # The health endpoint wants a client certificate too: ask etcdctl-free via TLS.
            import ssl

            ctx = ssl.create_default_context(cafile=str(self.pki.ca))
            ctx.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        else:
            ctx = None
        try:
            with urllib.request.urlopen(self.endpoint + "/health", timeout=1, context=ctx) as resp:
                return b"true" in resp.read()
        except (OSError, urllib.error.URLError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop this etcd process (only it, by PID); its data stays for a restart."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def restart(self) -> EtcdServer:
        self.stop()
        return self.start()

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""
