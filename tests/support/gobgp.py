"""A real GoBGP router (gobgpd) in a network namespace, for interoperability tests.

Owns: writing a gobgpd TOML configuration from typed parameters (:class:`GoBgpConfig`), starting
``gobgpd`` inside a namespace with its gRPC API on that namespace's loopback, and driving the
``gobgp`` CLI there: neighbour state (``neighbor -j``), the global RIB (``global rib -j``, decoded
into plain dicts), and originating/withdrawing routes (``global rib add|del``).

BGP features configurable per neighbour: MD5 (RFC 2385), graceful restart (RFC 4724), ADD-PATH
(RFC 7911), route-reflector clients (RFC 4456), IPv4 and IPv6 unicast (RFC 4760).

Known behaviour of GoBGP 3.10: after ``gobgp neighbor ADDR reset`` the neighbour stays Idle and
refuses connections for 30 s; ``idle-hold-time-after-reset`` in the TOML file is not applied
(the API still reports 30), so a test that resets must wait longer than that.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.netns import DEFAULT_TIMEOUT, NetnsFactory, stop_process, wait_until

# GoBGP's API enum for the session state (apipb.PeerState.SessionState).
SESSION_STATES = {
    0: "unknown",
    1: "idle",
    2: "connect",
    3: "active",
    4: "opensent",
    5: "openconfirm",
    6: "established",
}


def _q(text: str) -> str:
    # A JSON string is a valid TOML basic string for the plain ASCII values used here.
    return json.dumps(text)


@dataclass(frozen=True)
class GoBgpNeighbor:
    address: str
    asn: int
    local_address: str | None = None
    port: int = 179  # the neighbour's port (we connect there)
    passive: bool = False
    password: str | None = None  # TCP MD5 signature (RFC 2385)
    graceful_restart: bool = False
    restart_time: int = 120
    notification: bool = False  # RFC 8538 N bit (needs graceful_restart)
    long_lived_stale_time: int | None = None  # RFC 9494 LLGR (needs graceful_restart)
    add_paths_receive: bool = False
    add_paths_send_max: int = 0
    rr_client: bool = False
    rr_cluster_id: str | None = None
    ipv4: bool = True
    ipv6: bool = False
    hold_time: int | None = None
    connect_retry: int = 2  # seconds; GoBGP's default is 120

    def render(self) -> str:
        out = ["[[neighbors]]", "  [neighbors.config]"]
        out.append(f"    neighbor-address = {_q(self.address)}")
        out.append(f"    peer-as = {self.asn}")
        if self.password is not None:
            out.append(f"    auth-password = {_q(self.password)}")
        out += ["  [neighbors.timers.config]", f"    connect-retry = {self.connect_retry}"]
        if self.hold_time is not None:
            out.append(f"    hold-time = {self.hold_time}")
            out.append(f"    keepalive-interval = {max(1, self.hold_time // 3)}")
        out += ["  [neighbors.transport.config]", f"    remote-port = {self.port}"]
        if self.local_address is not None:
            out.append(f"    local-address = {_q(self.local_address)}")
        if self.passive:
            out.append("    passive-mode = true")
        if self.graceful_restart:
            out += ["  [neighbors.graceful-restart.config]", "    enabled = true"]
            out.append(f"    restart-time = {self.restart_time}")
            if self.notification:
                out.append("    notification-enabled = true")
            if self.long_lived_stale_time is not None:
                out.append("    long-lived-enabled = true")
        if self.rr_client:
            out += ["  [neighbors.route-reflector.config]", "    route-reflector-client = true"]
            if self.rr_cluster_id is not None:
                out.append(f"    route-reflector-cluster-id = {_q(self.rr_cluster_id)}")
        if self.add_paths_receive or self.add_paths_send_max:
            out += ["  [neighbors.add-paths.config]"]
            out.append(f"    receive = {'true' if self.add_paths_receive else 'false'}")
            out.append(f"    send-max = {self.add_paths_send_max}")
        for name, wanted in (("ipv4-unicast", self.ipv4), ("ipv6-unicast", self.ipv6)):
            if wanted:
                out += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]"]
                out.append(f"      afi-safi-name = {_q(name)}")
                if self.graceful_restart:
                    out.append("    [neighbors.afi-safis.mp-graceful-restart.config]")
                    out.append("      enabled = true")
                if self.graceful_restart and self.long_lived_stale_time is not None:
                    out.append("    [neighbors.afi-safis.long-lived-graceful-restart.config]")
                    out.append("      enabled = true")
                    out.append(f"      restart-time = {self.long_lived_stale_time}")
        return "\n".join(out)


@dataclass(frozen=True)
class GoBgpConfig:
    router_id: str
    asn: int
    listen_port: int = 179  # -1: do not listen
    listen_addresses: tuple[str, ...] = ()
    neighbors: tuple[GoBgpNeighbor, ...] = ()

    def render(self) -> str:
        out = ["[global.config]", f"  as = {self.asn}", f"  router-id = {_q(self.router_id)}"]
        out.append(f"  port = {self.listen_port}")
        if self.listen_addresses:
            addresses = ", ".join(_q(a) for a in self.listen_addresses)
            out.append(f"  local-address-list = [{addresses}]")
        return "\n".join(out + [n.render() for n in self.neighbors]) + "\n"


class GoBgpRouter:
    """``gobgpd`` in namespace ``ns``; the CLI talks to ``127.0.0.1:api_port`` in that namespace."""

    def __init__(
        self,
        factory: NetnsFactory,
        ns: str,
        config: GoBgpConfig,
        workdir: Path | str,
        api_port: int = 50051,
    ) -> None:
        self.factory = factory
        self.ns = ns
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.api_port = api_port
        self.conf_path = self.workdir / "gobgpd.toml"
        self.log_path = self.workdir / "gobgpd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> GoBgpRouter:
        self.conf_path.write_text(self.config.render())
        argv = ["gobgpd", "-f", str(self.conf_path), "-t", "toml", "-p",
                "--api-hosts", f"127.0.0.1:{self.api_port}", "--pprof-disable"]  # fmt: skip
        self.proc = self.factory.popen(self.ns, argv, self.log_path)

        def answers() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"gobgpd exited: {self.log_tail()}")
            return self.gobgp("global", check=False).startswith("AS:")

        answers.__name__ = "gobgpd API answering"
        wait_until(answers, timeout)
        return self

    def stop(self) -> int | None:
        """Stop gobgpd (SIGTERM: it closes its sessions with a Cease NOTIFICATION)."""
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> GoBgpRouter:
        self.stop()
        return self.start(timeout)

    def gobgp(self, *args: str, check: bool = True) -> str:
        argv = ["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), *args]
        return self.factory.run(self.ns, *argv, check=check).stdout

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # -- neighbours -------------------------------------------------------------------------

    def neighbors(self) -> list[dict[str, Any]]:
        """``gobgp neighbor -j`` as GoBGP returns it (the API's Peer objects)."""
        data = json.loads(self.gobgp("neighbor", "-j") or "[]")
        return list(data or [])

    def neighbor_state(self, address: str) -> str:
        """``idle`` … ``established`` for the neighbour at ``address``."""
        for peer in self.neighbors():
            if peer.get("conf", {}).get("neighbor_address") == address:
                state = peer.get("state", {}).get("session_state", 0)
                return SESSION_STATES.get(state, str(state).lower())
        raise KeyError(address)

    def wait_established(self, address: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        def established() -> bool:
            return self.neighbor_state(address) == "established"

        established.__name__ = f"GoBGP neighbor {address} established"
        wait_until(established, timeout)

    # -- RIB --------------------------------------------------------------------------------

    def rib(self, family: str = "ipv4") -> dict[str, list[dict[str, Any]]]:
        """``gobgp global rib -a FAMILY -j``: prefix → paths, see :func:`parse_path`."""
        data = json.loads(self.gobgp("global", "rib", "-a", family, "-j") or "{}") or {}
        return {prefix: [parse_path(prefix, p) for p in paths] for prefix, paths in data.items()}

    def wait_route(
        self, prefix: str, timeout: float = DEFAULT_TIMEOUT, present: bool = True
    ) -> list[dict[str, Any]]:
        family = "ipv6" if ":" in prefix else "ipv4"

        def check() -> list[dict[str, Any]] | bool:
            paths = self.rib(family).get(prefix, [])
            return paths if present else not paths

        check.__name__ = f"GoBGP route {prefix} {'present' if present else 'absent'}"
        result = wait_until(check, timeout)
        return result if isinstance(result, list) else []

    def add_route(
        self,
        prefix: str,
        next_hop: str,
        *,
        as_path: tuple[int, ...] = (),
        origin: str | None = None,
        med: int | None = None,
        local_pref: int | None = None,
        communities: tuple[tuple[int, int], ...] = (),
        large_communities: tuple[tuple[int, int, int], ...] = (),
    ) -> None:
        """Originate ``prefix`` from GoBGP's global RIB with the given attributes."""
        args = ["global", "rib", "add", "-a", _family(prefix), prefix, "nexthop", next_hop]
        if as_path:
            args += ["aspath", ",".join(str(a) for a in as_path)]
        if origin is not None:
            args += ["origin", origin]
        if med is not None:
            args += ["med", str(med)]
        if local_pref is not None:
            args += ["local-pref", str(local_pref)]
        if communities:
            args += ["community", ",".join(f"{a}:{b}" for a, b in communities)]
        if large_communities:
            args += ["large-community", ",".join(f"{a}:{b}:{c}" for a, b, c in large_communities)]
        self.gobgp(*args)

    def del_route(self, prefix: str) -> None:
        self.gobgp("global", "rib", "del", "-a", _family(prefix), prefix)


def _family(prefix: str) -> str:
    return "ipv6" if ":" in prefix else "ipv4"


def _first(attr: dict[str, Any], *keys: str) -> Any:
    return next((attr[k] for k in keys if k in attr), None)


def parse_path(prefix: str, path: dict[str, Any]) -> dict[str, Any]:
    """One GoBGP JSON path → dict with the same keys as ``bird.parse_routes`` where they apply.

    Keys: ``prefix``, ``from`` (neighbour address, None for a locally originated path),
    ``best``, ``stale``, ``path_id``, ``origin``, ``as_path`` (list of ints, segments
    flattened), ``next_hop``, ``med``, ``local_pref``, ``communities`` [(a, b)],
    ``large_communities`` [(a, b, c)], ``originator_id``, ``cluster_list``, and ``attrs`` (raw).
    """
    route: dict[str, Any] = {
        "prefix": prefix,
        "from": path.get("neighbor-ip"),
        "best": bool(path.get("best", False)),
        "stale": bool(path.get("stale", False)),
        "path_id": path.get("id"),
        "origin": None,
        "as_path": [],
        "next_hop": None,
        "med": None,
        "local_pref": None,
        "communities": [],
        "large_communities": [],
        "originator_id": None,
        "cluster_list": [],
        "attrs": path.get("attrs", []),
    }
    for attr in route["attrs"]:
        _apply_attr(route, attr)
    return route


def _apply_attr(route: dict[str, Any], attr: dict[str, Any]) -> None:
    kind = attr.get("type")
    if kind == 1:
        route["origin"] = int(attr["value"])
    elif kind == 2:
        for seg in attr.get("as_paths") or []:
            route["as_path"] += [int(a) for a in seg.get("asns") or []]
    elif kind == 3:
        route["next_hop"] = attr.get("nexthop")
    elif kind == 4:
        route["med"] = int(attr["metric"])
    elif kind == 5:
        route["local_pref"] = int(attr["value"])
    elif kind == 8:
        route["communities"] = [(c >> 16, c & 0xFFFF) for c in attr.get("communities") or []]
    elif kind == 9:
        # The JSON key for these two has changed between GoBGP releases.
        route["originator_id"] = _first(attr, "value", "originator", "Address", "address")
    elif kind == 10:
        route["cluster_list"] = list(_first(attr, "value", "cluster", "Address", "address") or [])
    elif kind == 14 and route["next_hop"] is None:
        route["next_hop"] = attr.get("nexthop")
    elif kind == 32:
        route["large_communities"] = [
            (int(v["ASN"]), int(v["LocalData1"]), int(v["LocalData2"]))
            for v in attr.get("value") or []
        ]
