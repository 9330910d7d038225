"""The standalone speaker's configuration (``podbgp bgpd -c bgpd.yaml``): schema and loader.

Owns the typed, frozen config objects and their validation; the generic field checkers live in
:mod:`bgpd.configcheck`. Keys are camelCase in YAML (as in Calico) and snake_case in Python.
Limits come from the RFCs: 4-octet AS numbers (RFC 6793), the BGP Identifier (RFC 4271 §4.2),
Hold Time 0 or at least 3 s (RFC 4271 §4.2, §10), TCP MD5 keys of at most 80 octets
(RFC 2385), the 12-bit Restart Time of graceful restart (RFC 4724 §3) and the route-reflector
Cluster ID (RFC 4456 §7). The ``api`` section (shared with the node and rr configs through
:func:`api_section`) takes the REST API's bearer token from a file (RFC 6750 token syntax).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass, field

from bgpd.bgpfilter import BGPFilter
from bgpd.config_filters import check_filter_names, load_filters, max_prefixes, resolve
from bgpd.configcheck import (
    BfdOptions,
    ConfigError,
    FieldError,
    Section,
    bfd_section,
    check_asn,
    check_bool,
    check_enum,
    check_hold_time,
    check_int,
    check_interface_name,
    check_ip,
    check_port,
    check_prefix,
    check_remote_port,
    check_router_id,
    check_str,
    check_unicast_ip,
    load_yaml,
    parse_host_port,
)
from bgpd.prefix_limit import MaxPrefixes

__all__ = [
    "ApiConfig",
    "BgpdConfig",
    "ConfigError",
    "GracefulRestartConfig",
    "ListenConfig",
    "PeerConfig",
    "RouteReflectorConfig",
    "api_section",
    "is_loopback_host",
    "load_bgpd_config",
    "parse_host_port",
    "read_token_file",
]

LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_HOLD_TIME = 90  # RFC 4271 §10 suggested value
DEFAULT_API_HOST = "127.0.0.1"  # read-only API stays local unless configured otherwise
DEFAULT_API_PORT = 9179
# RFC 6750 §2.1 b64token: what may follow "Bearer " in an Authorization header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

_TOP_KEYS = (
    "asNumber",
    "routerId",
    "listen",
    "api",
    "gracefulRestart",
    "logLevel",
    "peers",
    "originate",
    "routeReflector",
    "peerRanges",
    "filters",
    "ebgpRequiresPolicy",
    "shutdown",
)
_PEER_KEYS = (
    "address",
    "asNumber",
    "port",
    "passive",
    "password",
    "holdTime",
    "keepaliveTime",
    "description",
    "sourceAddress",
    "routeReflectorClient",
    "ttlSecurity",
    "filters",
    "maxPrefixes",
    "localASNumber",
    "nextHopMode",
    "bfd",
    "longLivedStaleTime",
    "interface",
    "extendedNextHop",
)
_PEER_RANGE_KEYS = ("range", "asNumber", "routeReflectorClient", "password", "holdTime", "bfd")


@dataclass(frozen=True)
class ListenConfig:
    """Where the speaker accepts BGP connections (port 0 picks a free port, for tests)."""

    address: str = "0.0.0.0"
    port: int = 179


@dataclass(frozen=True)
class ApiConfig:
    """Where the REST API listens, and the file holding its bearer token.

    The token itself is never kept here: the API reads ``token_file`` when it starts (and again
    when the file changes), so a config object can be logged or shown without leaking it.
    """

    host: str = DEFAULT_API_HOST
    port: int = DEFAULT_API_PORT
    token_file: str | None = None

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        """True when only this machine can reach the API (127.0.0.0/8, ::1, localhost)."""
        return is_loopback_host(self.host)


@dataclass(frozen=True)
class GracefulRestartConfig:
    """RFC 4724 graceful restart: whether to advertise it and the Restart Time in seconds."""

    enabled: bool = True
    restart_time: int = 120
    # A file created at start and removed by a stop that is not graceful: found at start, it
    # means we restarted on a host that kept running (RFC 4724 R bit, selection deferral).
    run_file: str | None = None
    selection_deferral_time: int = 60  # seconds our table may wait for the peers' End-of-RIB
    long_lived_stale_time: int = 3600  # RFC 9494 LLST we advertise and honour at most; 0: off


@dataclass(frozen=True)
class ShutdownConfig:
    """What SIGTERM does: ``gracefulRestart`` (close without NOTIFICATION; peers keep our
    routes) or ``drain`` (RFC 8326: GRACEFUL_SHUTDOWN and LOCAL_PREF 0 for ``drain_time``
    seconds, then Cease/Administrative Shutdown with ``message``, RFC 9003)."""

    mode: str = "gracefulRestart"
    drain_time: int = 30
    message: str = "podbgp is shutting down"


@dataclass(frozen=True)
class RouteReflectorConfig:
    """RFC 4456 route reflection: this speaker's Cluster ID (dotted quad)."""

    cluster_id: str


@dataclass(frozen=True)
class PeerRangeConfig:
    """Dynamic neighbours: any peer connecting from ``range`` is accepted (we stay passive)."""

    range: str
    as_number: int
    route_reflector_client: bool = False
    password: str | None = field(default=None, repr=False)
    hold_time: int = DEFAULT_HOLD_TIME
    bfd: BfdOptions | None = None  # for every peer accepted from the range


@dataclass(frozen=True)
class PeerConfig:
    """One configured BGP neighbour: at ``address``, or unnumbered on ``interface`` (then
    ``address`` is empty and the neighbour's link-local address is learned on the link)."""

    address: str
    as_number: int
    port: int = 179
    passive: bool = False
    # Kept out of repr so a logged config never shows the TCP MD5 key.
    password: str | None = field(default=None, repr=False)
    hold_time: int = DEFAULT_HOLD_TIME
    keepalive_time: int | None = None
    description: str = ""
    source_address: str | None = None
    route_reflector_client: bool = False
    ttl_security: int = 0  # RFC 5082 GTSM: hops to the peer; 0 = off
    filters: tuple[BGPFilter, ...] = ()  # BGPFilters applied in order (names in the YAML)
    max_prefixes: MaxPrefixes | None = None  # RFC 4486 prefix limit
    local_as_number: int | None = None  # the AS presented on this session (default: ours)
    next_hop_mode: str = "Auto"  # Auto, Self (reflected paths too) or Keep (the original)
    bfd: BfdOptions | None = None  # RFC 5882: BFD brings the session down at once
    long_lived_stale_time: int | None = None  # RFC 9494; None: gracefulRestart's
    interface: str | None = None  # unnumbered: the point-to-point link the peer is on
    extended_next_hop: bool = False  # RFC 8950 (default on for unnumbered peers)

    @property
    def name(self) -> str:
        """How logs and errors name the peer: its address, or ``%eth0`` when unnumbered."""
        return self.address or f"%{self.interface}"


@dataclass(frozen=True)
class BgpdConfig:
    """A validated bgpd.yaml."""

    as_number: int
    router_id: str
    listen: ListenConfig = ListenConfig()
    api: ApiConfig | None = ApiConfig()  # None: API disabled
    graceful_restart: GracefulRestartConfig = GracefulRestartConfig()
    log_level: str = "info"
    peers: tuple[PeerConfig, ...] = ()
    originate: tuple[str, ...] = ()
    route_reflector: RouteReflectorConfig | None = None
    peer_ranges: tuple[PeerRangeConfig, ...] = ()
    filters: tuple[BGPFilter, ...] = ()
    ebgp_requires_policy: bool = False  # RFC 8212 on eBGP sessions
    path: str = field(default="", compare=False)  # the file it was read from (for SIGHUP)
    shutdown: ShutdownConfig = ShutdownConfig()


def check_shutdown_message(value: object) -> str:
    """RFC 9003 §2: at most 255 octets of UTF-8."""
    if not isinstance(value, str) or len(value.encode("utf-8")) > 255:
        raise FieldError("must be text of at most 255 UTF-8 octets (RFC 9003)")
    return value


def _shutdown(root: Section) -> ShutdownConfig:
    sec = root.section("shutdown", ("mode", "drainTime", "message"))
    if sec is None:
        return ShutdownConfig()
    return ShutdownConfig(
        mode=sec.optional("mode", check_enum(("gracefulRestart", "drain")), "gracefulRestart"),
        drain_time=sec.optional("drainTime", check_int(0, 3600), ShutdownConfig.drain_time),
        message=sec.optional("message", check_shutdown_message, ShutdownConfig.message),
    )


def check_api_listen(value: object) -> ApiConfig | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError("must be a string host:port, or null to disable the API")
    host, port = parse_host_port(value)
    return ApiConfig(host, port)


def _listen(root: Section) -> ListenConfig:
    sec = root.section("listen", ("address", "port"))
    if sec is None:
        return ListenConfig()
    return ListenConfig(
        address=sec.optional("address", check_ip, ListenConfig.address),
        port=sec.optional("port", check_port, ListenConfig.port),
    )


def is_loopback_host(host: str) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1) or the name ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other host name may resolve to a reachable address


def check_token_file(value: object) -> str:
    """A readable file holding one bearer token (RFC 6750 ``b64token`` characters)."""
    if not isinstance(value, str) or not value:
        raise FieldError("must be the path of a file holding the API token")
    try:
        read_token_file(value)
    except (OSError, ValueError) as exc:
        raise FieldError(str(exc)) from None
    return value


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace stripped).

    Raises OSError when unreadable and ValueError when it holds no valid token; neither
    message contains the file's content.
    """
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise OSError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise ValueError(f"token file {path} is empty")
    if not _B64TOKEN.fullmatch(token):
        raise ValueError(
            f"token file {path} must hold one token of letters, digits and -._~+/ (then =)"
        )
    return token


def _api(root: Section) -> ApiConfig | None:
    """The ``api`` section: ``listen`` (null disables the API) and ``tokenFile``.

    A listen address other than loopback requires ``tokenFile``: the API then answers only
    requests carrying ``Authorization: Bearer <token>`` (the kubelet probes excepted).
    """
    if not root.has("api"):
        return ApiConfig()
    sec = root.section("api", ("listen", "tokenFile"))
    if sec is None:  # `api: null` disables the API
        return None
    listen = sec.optional("listen", check_api_listen, ApiConfig())
    if listen is None:
        return None
    token_file = sec.optional("tokenFile", check_token_file, None)
    if token_file is None and not listen.loopback:
        raise sec.error(
            "tokenFile",
            f"required when api.listen is not a loopback address ({listen.listen})",
        )
    return dataclasses.replace(listen, token_file=token_file)


# The node and route-reflector configs share the section and its rules.
api_section = _api


def _graceful_restart(root: Section) -> GracefulRestartConfig:
    sec = root.section(
        "gracefulRestart",
        ("enabled", "restartTime", "runFile", "selectionDeferralTime", "longLivedStaleTime"),
    )
    if sec is None:
        return GracefulRestartConfig()
    return GracefulRestartConfig(
        enabled=sec.optional("enabled", check_bool, GracefulRestartConfig.enabled),
        # RFC 4724 §3: Restart Time is a 12-bit field.
        restart_time=sec.optional(
            "restartTime", check_int(1, 4095), GracefulRestartConfig.restart_time
        ),
        run_file=sec.optional("runFile", check_str(1, 4096), None),
        selection_deferral_time=sec.optional("selectionDeferralTime", check_int(1, 3600), 60),
        # RFC 9494 §3: a 24-bit field of seconds.
        long_lived_stale_time=sec.optional("longLivedStaleTime", check_int(0, 0xFFFFFF), 3600),
    )


def _peer_address(sec: Section) -> tuple[str, str | None]:
    """``address``, or for an unnumbered peer ``interface`` (exactly one of them)."""
    interface = sec.optional("interface", check_interface_name, None)
    if interface is None:
        return sec.required("address", check_unicast_ip), None
    if sec.has("address"):
        raise sec.error("interface", "give either address or interface, not both")
    return "", interface


def _peer(sec: Section, filters: tuple[BGPFilter, ...]) -> PeerConfig:
    address, interface = _peer_address(sec)
    peer = PeerConfig(
        address=address,
        interface=interface,
        extended_next_hop=sec.optional("extendedNextHop", check_bool, interface is not None),
        as_number=sec.required("asNumber", check_asn),
        port=sec.optional("port", check_remote_port, 179),
        passive=sec.optional("passive", check_bool, False),
        password=sec.optional("password", check_str(1, 80), None),
        hold_time=sec.optional("holdTime", check_hold_time, DEFAULT_HOLD_TIME),
        keepalive_time=sec.optional("keepaliveTime", check_int(1, 65535), None),
        description=sec.optional("description", check_str(), ""),
        source_address=sec.optional("sourceAddress", check_ip, None),
        route_reflector_client=sec.optional("routeReflectorClient", check_bool, False),
        ttl_security=sec.optional("ttlSecurity", check_int(0, 254), 0),
        filters=resolve(sec, sec.optional("filters", check_filter_names, ()), filters),
        max_prefixes=max_prefixes(sec),
        local_as_number=sec.optional("localASNumber", check_asn, None),
        next_hop_mode=sec.optional("nextHopMode", check_enum(("Auto", "Self", "Keep")), "Auto"),
        bfd=bfd_section(sec, "bfd"),
        long_lived_stale_time=sec.optional("longLivedStaleTime", check_int(0, 0xFFFFFF), None),
    )
    keepalive, hold = peer.keepalive_time, peer.hold_time
    if keepalive is not None and hold > 0 and keepalive >= hold:
        raise sec.error("keepaliveTime", f"must be less than holdTime ({hold})")
    source = peer.source_address
    if source is not None and interface is not None:
        raise sec.error("sourceAddress", "not with interface: the link-local address is used")
    if peer.bfd is not None and interface is not None:
        raise sec.error("bfd", "not supported on unnumbered (interface) peers yet")
    if source is not None and (":" in source) != (":" in peer.address):
        family = "IPv6" if ":" in peer.address else "IPv4"
        raise sec.error("sourceAddress", f"must be an {family} address, like the peer address")
    return peer


def _peers(root: Section, filters: tuple[BGPFilter, ...]) -> tuple[PeerConfig, ...]:
    peers: list[PeerConfig] = []
    for sec in root.sections("peers", _PEER_KEYS):
        peer = _peer(sec, filters)
        for j, other in enumerate(peers):
            if other.name == peer.name:
                key = "address" if peer.address else "interface"
                raise sec.error(key, f"duplicate peer {key}; also in peers[{j}]")
        peers.append(peer)
    return tuple(peers)


def _peer_ranges(root: Section, reflector: bool) -> tuple[PeerRangeConfig, ...]:
    ranges: list[PeerRangeConfig] = []
    for sec in root.sections("peerRanges", _PEER_RANGE_KEYS):
        ranges.append(
            PeerRangeConfig(
                range=sec.required("range", check_prefix),
                as_number=sec.required("asNumber", check_asn),
                route_reflector_client=sec.optional("routeReflectorClient", check_bool, reflector),
                password=sec.optional("password", check_str(1, 80), None),
                hold_time=sec.optional("holdTime", check_hold_time, DEFAULT_HOLD_TIME),
                bfd=bfd_section(sec, "bfd"),
            )
        )
    return tuple(ranges)


def _route_reflector(root: Section) -> RouteReflectorConfig | None:
    sec = root.section("routeReflector", ("clusterId",))
    if sec is None:
        return None
    return RouteReflectorConfig(cluster_id=sec.required("clusterId", check_router_id))


def load_bgpd_config(path: str) -> BgpdConfig:
    """Read and validate a bgpd YAML file; raises :class:`ConfigError` on the first problem."""
    root = load_yaml(path)
    root.check_keys(_TOP_KEYS)
    return BgpdConfig(
        as_number=root.required("asNumber", check_asn),
        router_id=root.required("routerId", check_router_id),
        listen=_listen(root),
        api=_api(root),
        graceful_restart=_graceful_restart(root),
        log_level=root.optional("logLevel", check_enum(LOG_LEVELS), "info"),
        filters=(filters := load_filters(root)),
        ebgp_requires_policy=root.optional("ebgpRequiresPolicy", check_bool, False),
        peers=_peers(root, filters),
        originate=tuple(root.items("originate", check_prefix, unique=True)),
        route_reflector=(reflector := _route_reflector(root)),
        peer_ranges=_peer_ranges(root, reflector is not None),
        path=path,
        shutdown=_shutdown(root),
    )
