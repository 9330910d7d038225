"""Shared set-up for interop tests: podbgp in one namespace, a real router in another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.netns import NetnsFactory
from tests.support.podbgp import PodbgpSpeaker

PODBGP_V4, ROUTER_V4 = "192.0.2.1", "192.0.2.2"
PODBGP_V6, ROUTER_V6 = "2001:db8::1", "2001:db8::2"


def two_namespaces(factory: NetnsFactory) -> tuple[str, str]:
    """Namespaces for podbgp and its peer, joined by a veth with IPv4 and IPv6 addresses."""
    ns_p = factory.namespace("p")
    ns_r = factory.namespace("r")
    factory.veth(
        ns_p,
        ns_r,
        addrs_a=[f"{PODBGP_V4}/24", f"{PODBGP_V6}/64"],
        addrs_b=[f"{ROUTER_V4}/24", f"{ROUTER_V6}/64"],
    )
    return ns_p, ns_r


def podbgp_in(
    factory: NetnsFactory,
    ns: str,
    workdir: Path,
    *,
    asn: int,
    peers: list[dict[str, Any]],
    originate: list[str],
    graceful: bool = True,
    name: str = "podbgp",
    deferral: int | None = None,
) -> PodbgpSpeaker:
    """podbgp ``bgpd`` in ``ns``, stopped on teardown. With ``deferral`` (seconds) graceful restart
    keeps a run file in ``workdir``: a second speaker started on the same ``workdir`` after a
    graceful stop restarts (R bit, selection deferral up to ``deferral``)."""
    restart: dict[str, Any] = {"enabled": graceful, "restartTime": 60}
    if deferral is not None:
        restart |= {
            "runFile": str(workdir / "run" / "bgpd.running"),
            "selectionDeferralTime": deferral,
        }
    config = {
        "asNumber": asn,
        "routerId": PODBGP_V4,
        "listen": {"address": "::", "port": 179},
        "api": {"listen": "127.0.0.1:9179"},
        "gracefulRestart": restart,
        "logLevel": "debug",
        "peers": peers,
        "originate": originate,
    }
    speaker = PodbgpSpeaker(workdir, name, config, netns=ns).start()
    factory.processes.append(speaker.proc)  # type: ignore[arg-type]  # stopped on teardown too
    return speaker
