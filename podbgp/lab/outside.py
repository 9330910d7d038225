"""The lab's "outside" host: an address beyond the router and outside every pool.

The lab's pools set ``natOutgoing``, so a pod's traffic to the outside host leaves its node with
the node's address (felix.nat masquerades it); the router knows no route to the pools, so without
NAT the replies would have nowhere to go. The outside host sits on its own link to the router:
198.51.100.1/24 (router .254) and, on a dual-stack underlay, 2001:db8:51::1/64 (router ::254).

:func:`outside_table` asks each pod to send a UDP datagram to the outside host, which reports
the source address it saw: the pod's node's address when NAT works, nothing when it does not.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

OUTSIDE = {4: ("198.51.100.1", "198.51.100.254", 24), 6: ("2001:db8:51::1", "2001:db8:51::254", 64)}
PORT = 9999
ATTEMPTS = 10  # datagrams per pod, 0.2 s apart: the first ones may meet a neighbour lookup

# The outside host's listener: prints the source address of the first datagram, or nothing.
_LISTEN = """
import socket, sys
family = socket.AF_INET6 if sys.argv[1] == "6" else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.bind(("::" if sys.argv[1] == "6" else "0.0.0.0", int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
try:
    print(s.recvfrom(64)[1][0], flush=True)
except TimeoutError:
    pass
"""
_SEND = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    try:
        s.sendto(b"podbgp-lab", (sys.argv[1], int(sys.argv[2])))
    except OSError:
        pass
    time.sleep(0.2)
"""


class Shell(Protocol):
    def __call__(self, *argv: str, ns: str | None = ..., check: bool = ...) -> Any: ...


class PodLike(Protocol):
    name: str
    ns: str
    node: str

    def address(self, version: int) -> str: ...


def build_outside(sh: Shell, outside_ns: str, router_ns: str, families: Sequence[int]) -> None:
    """The outside namespace (already created) linked to the router."""
    sh("ip", "link", "add", "eth0", "netns", outside_ns, "type", "veth", "peer", "name", "pout",
       "netns", router_ns)  # fmt: skip
    for version in families:
        host, router, length = OUTSIDE[version]
        sh("ip", "addr", "add", f"{router}/{length}", "dev", "pout", ns=router_ns)
        sh("ip", "addr", "add", f"{host}/{length}", "dev", "eth0", ns=outside_ns)
    sh("ip", "link", "set", "pout", "up", ns=router_ns)
    sh("ip", "link", "set", "eth0", "up", ns=outside_ns)
    for version in families:
        _host, router, _length = OUTSIDE[version]
        sh("ip", f"-{version}", "route", "add", "default", "via", router, ns=outside_ns)


def source_seen(outside_ns: str, pod_ns: str, version: int) -> str | None:
    """The source address the outside host saw on a datagram from the pod, or None."""
    host = OUTSIDE[version][0]
    timeout = ATTEMPTS * 0.2 + 1.0
    listener = subprocess.Popen(
        ["ip", "netns", "exec", outside_ns, sys.executable, "-c", _LISTEN, str(version),
         str(PORT), str(timeout)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)  # the listener binds before the first datagram
        subprocess.run(
            ["ip", "netns", "exec", pod_ns, sys.executable, "-c", _SEND, host, str(PORT),
             str(ATTEMPTS)],
            capture_output=True, timeout=timeout + 5, check=False,
        )  # fmt: skip
        out, _err = listener.communicate(timeout=timeout + 5)
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()
    return out.strip() or None


def outside_table(
    outside_ns: str, pods: Sequence[PodLike], families: Sequence[int],
    node_address: Callable[[str, int], str],
) -> tuple[str, int]:  # fmt: skip
    """Per pod and family: did the outside host hear it, and from which source (natOutgoing)."""
    lines = ["Pod to the outside host (natOutgoing: the outside host must see the node's address)"]
    failures = 0
    for pod in pods:
        cells = []
        for version in families:
            if not pod.address(version):
                continue
            seen = source_seen(outside_ns, pod.ns, version)
            expected = node_address(pod.node, version)
            ok = seen == expected
            failures += not ok
            mark = "✓" if ok else "✗"
            cells.append(f"IPv{version} {mark} {OUTSIDE[version][0]} saw {seen or 'nothing'}")
        lines.append(f"{pod.name:<10}" + "   ".join(cells))
    return "\n".join(lines), failures
