"""A real BIRD 2 router in a network namespace, for interoperability tests.

Owns: writing a BIRD 2 configuration from typed parameters (:class:`BirdConfig`), starting and
stopping ``bird -f`` inside a namespace, and parsing ``birdc`` output (``show protocols all``,
``show route all``) into plain data. BIRD here never touches a kernel table: the configuration
has no ``kernel`` protocol, only ``device`` (interfaces, for direct next hops), ``static``
protocols for the prefixes to originate, and one ``bgp`` protocol per neighbour.

BGP features configurable per neighbour: MD5 (RFC 2385), graceful restart (RFC 4724), ADD-PATH
(RFC 7911), route reflection (RFC 4456), extended messages (RFC 8654), extended next hop
(RFC 8950) and link-local neighbours on an interface.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.support.netns import DEFAULT_TIMEOUT, NetnsFactory, stop_process, wait_until

ORIGINS = {"igp": 0, "egp": 1, "incomplete": 2}


@dataclass(frozen=True)
class BirdNeighbor:
    """One ``protocol bgp``; ``name`` defaults to ``n_`` + the address with ``_`` separators."""

    address: str
    asn: int
    name: str | None = None
    local_address: str | None = None  # default: the router's listen address of that family
    port: int = 179
    passive: bool = False
    password: str | None = None  # TCP MD5 signature (RFC 2385)
    graceful_restart: bool = False
    restart_time: int = 120
    add_paths_rx: bool = False
    add_paths_tx: bool = False
    rr_client: bool = False
    next_hop_self: bool = False
    ipv4: bool = True
    ipv6: bool = False
    # A channel whose family differs from the session's needs an explicit next hop.
    ipv4_next_hop: str | None = None
    ipv6_next_hop: str | None = None
    hold_time: int | None = None
    extended_messages: bool = False
    gateway: str = "direct"  # "direct": next hops on a shared subnet need no IGP table
    multihop: bool = False  # BIRD's iBGP default; False writes ``direct`` (one hop, a shared link)
    bfd: bool = False  # ``bfd on``: needs a ``protocol bfd`` (see BirdConfig.bfd)
    long_lived_stale_time: int | None = None  # RFC 9494 LLGR on, with this stale time (s)
    extended_next_hop: bool = False  # RFC 8950 on the IPv4 channel (IPv6 next hops)
    interface: str | None = None  # the link of a link-local neighbour address

    @property
    def protocol(self) -> str:
        return self.name or "n_" + re.sub(r"[.:]", "_", self.address)


@dataclass(frozen=True)
class StaticRoute:
    """A prefix BIRD originates (a static blackhole/unreachable route) with BGP attributes."""

    prefix: str
    kind: str = "blackhole"  # or "unreachable"
    as_path: tuple[int, ...] = ()  # prepended, leftmost first
    communities: tuple[tuple[int, int], ...] = ()
    large_communities: tuple[tuple[int, int, int], ...] = ()
    med: int | None = None
    local_pref: int | None = None
    origin: str | None = None  # "igp", "egp", "incomplete"

    def render(self) -> str:
        stmts = [f"bgp_path.prepend({asn});" for asn in reversed(self.as_path)]
        stmts += [f"bgp_community.add(({a},{b}));" for a, b in self.communities]
        stmts += [f"bgp_large_community.add(({a},{b},{c}));" for a, b, c in self.large_communities]
        if self.med is not None:
            stmts.append(f"bgp_med = {self.med};")
        if self.local_pref is not None:
            stmts.append(f"bgp_local_pref = {self.local_pref};")
        if self.origin is not None:
            stmts.append(f"bgp_origin = ORIGIN_{self.origin.upper()};")
        body = " { " + " ".join(stmts) + " }" if stmts else ""
        return f"  route {self.prefix} {self.kind}{body};"


@dataclass(frozen=True)
class BirdConfig:
    router_id: str
    asn: int
    listen_address: str | None = None  # IPv4 (or only) local address for sessions
    listen_address6: str | None = None  # local address for IPv6 sessions
    neighbors: tuple[BirdNeighbor, ...] = ()
    routes: tuple[StaticRoute, ...] = ()
    rr_cluster_id: str | None = None
    fast_timers: bool = True  # retry in seconds, not BIRD's minutes, after a failed connect
    bfd: tuple[int, int, int] | None = None  # protocol bfd: (min rx ms, min tx ms, multiplier)

    def neighbor(self, address: str) -> BirdNeighbor:
        for nbr in self.neighbors:
            if nbr.address == address:
                return nbr
        raise KeyError(address)

    def render(self) -> str:
        lines = [
            f"router id {self.router_id};",
            "log stderr all;",
            "protocol device { scan time 10; }",
        ]
        for family in (4, 6):
            routes = [r for r in self.routes if (":" in r.prefix) == (family == 6)]
            if routes:
                lines.append(f"protocol static static{family} {{\n  ipv{family};")
                lines += [r.render() for r in routes]
                lines.append("}")
        if any(n.multihop for n in self.neighbors):
            # Multihop next hops resolve recursively, over the connected routes.
            lines.append("protocol direct { ipv4; ipv6; }")
        if self.bfd is not None:
            rx, tx, mult = self.bfd
            timing = f"min rx interval {rx} ms; min tx interval {tx} ms; multiplier {mult};"
            lines += ["protocol bfd {", f'  interface "*" {{ {timing} }};',
                      f"  multihop {{ {timing} }};", "}"]  # fmt: skip
        lines += [self._render_neighbor(n) for n in self.neighbors]
        return "\n".join(lines) + "\n"

    def _render_neighbor(self, nbr: BirdNeighbor) -> str:
        v6 = ":" in nbr.address
        local = nbr.local_address or (self.listen_address6 if v6 else self.listen_address)
        ibgp = nbr.asn == self.asn
        opts = [f"local {local} as {self.asn};" if local else f"local as {self.asn};"]
        opts.append(f"neighbor {nbr.address} port {nbr.port} as {nbr.asn};")
        opts.append("multihop;" if nbr.multihop else "direct;")
        if nbr.interface is not None:
            opts.append(f'interface "{nbr.interface}";')
        if nbr.bfd:
            opts.append("bfd on;")
        if nbr.passive:
            opts.append("passive on;")
        if nbr.password is not None:
            opts.append(f'password "{nbr.password}";')
        if nbr.graceful_restart:
            opts += ["graceful restart on;", f"graceful restart time {nbr.restart_time};"]
        else:
            opts.append("graceful restart off;")
        if nbr.long_lived_stale_time is not None:
            opts += ["long lived graceful restart on;",
                     f"long lived stale time {nbr.long_lived_stale_time};"]  # fmt: skip
        if nbr.rr_client:
            opts.append("rr client;")
        if self.rr_cluster_id is not None and nbr.rr_client:
            opts.append(f"rr cluster id {self.rr_cluster_id};")
        if nbr.hold_time is not None:
            opts.append(f"hold time {nbr.hold_time};")
        if nbr.extended_messages:
            opts.append("enable extended messages on;")
        if self.fast_timers:
            opts += ["connect delay time 1;", "connect retry time 2;", "error wait time 1, 4;"]
        families = ((4, nbr.ipv4, nbr.ipv4_next_hop), (6, nbr.ipv6, nbr.ipv6_next_hop))
        for family, wanted, hop in families:
            if wanted:
                opts.append(self._render_channel(nbr, family, ibgp, hop))
        body = "\n".join("  " + o for o in opts)
        return f"protocol bgp {nbr.protocol} {{\n{body}\n}}"

    @staticmethod
    def _render_channel(nbr: BirdNeighbor, family: int, ibgp: bool, hop: str | None) -> str:
        parts = ["import all;"]
        if ibgp:
            gateway = "recursive" if nbr.multihop else nbr.gateway
            parts += ["export all;", f"gateway {gateway};"]
        else:
            # BIRD sends MED to another AS only when the export filter set it; setting it to
            # itself lets a MED given on a static route (or learned) go out, as a test expects.
            parts.append("export filter { if defined(bgp_med) then bgp_med = bgp_med; accept; };")
        if family == 4 and nbr.extended_next_hop:
            parts.append("extended next hop on;")
        if hop is not None:
            parts.append(f"next hop address {hop};")
        elif nbr.next_hop_self:
            parts.append("next hop self;")
        add = {(True, True): "on", (True, False): "rx", (False, True): "tx"}
        mode = add.get((nbr.add_paths_rx, nbr.add_paths_tx))
        if mode:
            parts.append(f"add paths {mode};")
        return f"ipv{family} {{ " + " ".join(parts) + " };"


@dataclass(frozen=True)
class BirdProtocol:
    """One protocol from ``show protocols all``; ``details`` keeps every ``key: value`` line."""

    name: str
    proto: str
    state: str
    info: str
    details: dict[str, str] = field(default_factory=dict)
    neighbor_capabilities: tuple[str, ...] = ()
    local_capabilities: tuple[str, ...] = ()
    channels: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def bgp_state(self) -> str | None:
        return self.details.get("BGP state")


class BirdRouter:
    """``bird -f`` in namespace ``ns`` from a :class:`BirdConfig`; its files in ``workdir``."""

    def __init__(
        self, factory: NetnsFactory, ns: str, config: BirdConfig, workdir: Path | str
    ) -> None:
        self.factory = factory
        self.ns = ns
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.workdir / "bird.conf"
        self.socket_path = self.workdir / "bird.ctl"
        self.pid_path = self.workdir / "bird.pid"
        self.log_path = self.workdir / "bird.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> BirdRouter:
        self.conf_path.write_text(self.config.render())
        self.factory.run(self.ns, "bird", "-p", "-c", str(self.conf_path))  # parse check
        argv = ["bird", "-f", "-c", str(self.conf_path), "-s", str(self.socket_path),
                "-P", str(self.pid_path)]  # fmt: skip
        self.proc = self.factory.popen(self.ns, argv, self.log_path)
        wait_until(self._answers, timeout)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"bird exited with {self.proc.returncode}: {self.log_tail()}")
        return self.socket_path.exists() and "ready" in self.birdc("show", "status", check=False)

    def stop(self) -> int | None:
        """Stop BIRD (SIGTERM: it sends Cease NOTIFICATIONs to its peers first)."""
        if self.proc is None:
            return None
        code = stop_process(self.proc)
        self.proc = None
        return code

    def restart(self, timeout: float = DEFAULT_TIMEOUT) -> BirdRouter:
        self.stop()
        return self.start(timeout)

    def configure(self, config: BirdConfig) -> None:
        """Switch to ``config`` live (``birdc configure``); BIRD applies only the differences."""
        self.config = config
        self.conf_path.write_text(config.render())
        out = self.birdc("configure")
        if "Reconfigured" not in out and "Reconfiguration in progress" not in out:
            raise RuntimeError(f"birdc configure failed: {out}")

    def with_routes(self, *routes: StaticRoute) -> BirdConfig:
        """A copy of the current config originating exactly ``routes`` (for :meth:`configure`)."""
        return replace(self.config, routes=tuple(routes))

    def birdc(self, *args: str, check: bool = True) -> str:
        proc = self.factory.run(self.ns, "birdc", "-s", str(self.socket_path), *args, check=check)
        return proc.stdout

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    # -- state ------------------------------------------------------------------------------

    def protocols(self) -> dict[str, BirdProtocol]:
        return parse_protocols(self.birdc("show", "protocols", "all"))

    def wait_established(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> BirdProtocol:
        def established() -> BirdProtocol | None:
            proto = self.protocols().get(name)
            return proto if proto is not None and proto.bgp_state == "Established" else None

        established.__name__ = f"BIRD protocol {name} Established"
        proto = wait_until(established, timeout)
        assert proto is not None  # wait_until returns only a truthy value
        return proto

    def routes(self, *filters: str) -> list[dict[str, Any]]:
        """``show route all [filters]`` as dicts; see :func:`parse_routes` for the keys."""
        sources = {n.protocol: n.address for n in self.config.neighbors}
        return parse_routes(self.birdc("show", "route", "all", *filters), sources)

    def wait_route(
        self, prefix: str, timeout: float = DEFAULT_TIMEOUT, present: bool = True
    ) -> list[dict[str, Any]]:
        """Wait until ``prefix`` is in BIRD's tables (or, with ``present=False``, gone)."""

        def check() -> list[dict[str, Any]] | bool:
            found = [r for r in self.routes() if r["prefix"] == prefix]
            return found if present else not found

        check.__name__ = f"BIRD route {prefix} {'present' if present else 'absent'}"
        result = wait_until(check, timeout)
        return result if isinstance(result, list) else []


# -- parsers --------------------------------------------------------------------------------

# name, protocol, table, state, since (a time, or a date and a time), info
_PROTO_HEAD = re.compile(r"^(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+\S+(?:\s+\d\d:\d\d:\d\d\S*)?\s*(.*)$")


def parse_protocols(text: str) -> dict[str, BirdProtocol]:
    """Parse ``birdc show protocols all`` (BIRD 2.0 layout, indentation is significant)."""
    result: dict[str, BirdProtocol] = {}
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("BIRD ")]
        if lines and lines[0].startswith("Name "):
            lines = lines[1:]
        if not lines or lines[0][0].isspace():
            continue
        head = _PROTO_HEAD.match(lines[0])
        if head is None:
            continue
        name, proto, _table, state, info = head.groups()
        result[name] = _protocol_details(name, proto, state, info.strip(), lines[1:])
    return result


def _protocol_details(
    name: str, proto: str, state: str, info: str, lines: list[str]
) -> BirdProtocol:
    details: dict[str, str] = {}
    caps: dict[str, list[str]] = {"Local capabilities": [], "Neighbor capabilities": []}
    channels: dict[str, dict[str, str]] = {}
    section: list[str] | None = None
    channel: dict[str, str] | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 2 and text.startswith("Channel "):
            channel = channels.setdefault(text.split()[1], {})
            section = None
        elif indent <= 2:
            channel = None
        if text in caps:
            section = caps[text]
            continue
        if section is not None and indent >= 6:
            section.append(text)
            continue
        section = None
        key, sep, value = text.partition(":")
        if sep:
            target = channel if channel is not None else details
            target.setdefault(key.strip(), value.strip())
    return BirdProtocol(
        name,
        proto,
        state,
        info,
        details,
        tuple(caps["Neighbor capabilities"]),
        tuple(caps["Local capabilities"]),
        channels,
    )


_ROUTE_HEAD = re.compile(
    r"^(?P<prefix>\S+)?\s+(?P<type>\w+) \[(?P<proto>\S+) (?P<rest>[^\]]*)\]"
    r"\s*(?P<primary>\*)?\s*\((?P<pref>\d+)[^)]*\)"
)


def parse_routes(text: str, sources: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Parse ``birdc show route all`` into one dict per route (several per prefix possible).

    Keys: ``prefix``, ``table``, ``type`` (unicast/blackhole/unreachable), ``protocol``,
    ``from`` (the BGP neighbour address, from ``sources`` protocol→address or BIRD's own
    ``from``), ``gateway``, ``interface``, ``primary``, ``preference``, and the BGP attributes
    ``origin`` (0/1/2), ``as_path`` (list of ints; AS_SET members flattened in), ``next_hop``
    (first address), ``next_hops``, ``local_pref``, ``med``, ``communities`` [(a, b)],
    ``large_communities`` [(a, b, c)], ``originator_id``, ``cluster_list`` [str]; the raw
    ``BGP.*`` values stay in ``attributes``.
    """
    sources = sources or {}
    routes: list[dict[str, Any]] = []
    table: str | None = None
    prefix: str | None = None
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        if line.startswith("Table "):
            table = line.split()[1].rstrip(":")
            continue
        if line.startswith("\t"):
            if current is not None:
                _route_detail(current, line.strip())
            continue
        head = _ROUTE_HEAD.match(line)
        if head is None:
            continue
        prefix = head["prefix"] or prefix
        rest = head["rest"]
        learned = re.search(r"from (\S+)", rest)
        current = {
            "prefix": prefix,
            "table": table,
            "type": head["type"],
            "protocol": head["proto"],
            "from": learned[1] if learned else sources.get(head["proto"]),
            "gateway": None,
            "interface": None,
            "primary": head["primary"] == "*",
            "preference": int(head["pref"]),
            "origin": None,
            "as_path": [],
            "next_hop": None,
            "next_hops": [],
            "local_pref": None,
            "med": None,
            "communities": [],
            "large_communities": [],
            "originator_id": None,
            "cluster_list": [],
            "attributes": {},
        }
        routes.append(current)
    return routes


def _route_detail(route: dict[str, Any], text: str) -> None:
    via = re.match(r"via (\S+)(?: on (\S+))?", text)
    if via:
        if route["gateway"] is None:
            route["gateway"], route["interface"] = via[1], via[2]
        return
    key, sep, value = text.partition(":")
    if not sep or not key.startswith("BGP."):
        return
    name, value = key[4:], value.strip()
    route["attributes"][name] = value
    if name == "origin":
        route["origin"] = ORIGINS[value.lower()]
    elif name == "as_path":
        route["as_path"] = [int(n) for n in re.findall(r"\d+", value)]
    elif name == "next_hop":
        route["next_hops"] = value.split()
        route["next_hop"] = route["next_hops"][0] if route["next_hops"] else None
    elif name in ("local_pref", "med"):
        route[name] = int(value)
    elif name == "community":
        route["communities"] = [
            (int(a), int(b)) for a, b in re.findall(r"\((\d+),\s*(\d+)\)", value)
        ]
    elif name == "large_community":
        route["large_communities"] = [
            (int(a), int(b), int(c))
            for a, b, c in re.findall(r"\((\d+),\s*(\d+),\s*(\d+)\)", value)
        ]
    elif name == "originator_id":
        route["originator_id"] = value
    elif name == "cluster_list":
        route["cluster_list"] = value.split()
