"""Sockets inside a network namespace, from a process that stays in its own.

A socket belongs to the namespace it was created in, so a short-lived thread enters the named
namespace with setns(2) (``/run/netns/<name>``, as ``ip netns add`` makes it), creates the socket
and exits; the rest of the process never switches. The lab talks to its members' REST APIs this
way (no interpreter started per request), and the tests use the same function.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import socket
import threading
from pathlib import Path

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
SETNS_TIMEOUT = 10.0


def netns_socket(
    ns: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket created inside namespace ``ns``, usable from this (host-namespace) process."""
    result: list[socket.socket | BaseException] = []

    def create() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(NETNS_DIR / ns, "rb") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            result.append(socket.socket(family, type))
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=create, name=f"setns-{ns}")
    worker.start()
    worker.join(SETNS_TIMEOUT)
    if not result:
        raise TimeoutError(f"creating a socket in {ns} did not finish")
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


class NetnsHTTPConnection(http.client.HTTPConnection):
    """An HTTP/1.1 client connection whose TCP socket lives in namespace ``ns``."""

    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = netns_socket(self.ns, family)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
