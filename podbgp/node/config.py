"""The node agent's configuration (``podbgp node -c node.yaml``): schema, loader, address lookup.

Owns what the datastore cannot know about a node: its name, its addresses — at most one IPv4 and
one IPv6, each with its prefix length, or the interface to take them from (its first IPv4 and
first global IPv6 address), as Calico's node has ``IP`` and ``IP6`` — where the datastore is,
where the REST API listens, and the settings felix (the dataplane) reads: the kernel route
protocol number, an MTU override and the resync interval. Validated with
:mod:`bgpd.configcheck`: a bad file stops the program with one line naming the file, the key and
the problem. Router IDs follow RFC 4271 §4.2 / RFC 6286.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from bgpd.config import LOG_LEVELS, ApiConfig, api_section
from bgpd.configcheck import (
    FieldError,
    Section,
    check_bool,
    check_enum,
    check_int,
    check_ip,
    check_router_id,
    check_str,
    load_yaml,
)
from podbgp.cluster.datastore import DEFAULT_FILE_PATH, DEFAULT_PREFIX, DatastoreConfig
from podbgp.cluster.fields import check_address_with_prefix, check_name

__all__ = [
    "DEFAULT_ROUTE_PROTOCOL",
    "FelixConfig",
    "NodeConfig",
    "load_node_config",
    "resolve_address",
    "resolve_addresses",
]

DEFAULT_ROUTE_PROTOCOL = 80  # unused in iproute2's rt_protos; registered as "podbgp"
DEFAULT_RESYNC_INTERVAL = 90  # seconds between felix's full kernel-route resyncs

_TOP_KEYS = (
    "nodeName",
    "address",
    "addressV6",
    "interface",
    "routerId",
    "listenAddress",
    "datastore",
    "api",
    "routeProtocol",
    "mtu",
    "felix",
    "gracefulRestart",
    "logLevel",
)
_GR_KEYS = ("runFile", "selectionDeferralTime")  # restart time etc. come from the cluster
_DATASTORE_KEYS = ("type", "endpoints", "prefix", "tls", "path", "statePath", "pollInterval")


@dataclass(frozen=True)
class FelixConfig:
    """Dataplane settings (used by felix's dataplane)."""

    enabled: bool = True
    resync_interval: int = DEFAULT_RESYNC_INTERVAL


@dataclass(frozen=True)
class NodeConfig:
    """A validated node.yaml."""

    node_name: str
    datastore: DatastoreConfig
    address: str | None = None  # "192.0.2.11/24"; None: take it from ``interface``
    interface: str | None = None
    address_v6: str | None = None  # "2001:db8::11/64", beside an IPv4 ``address``/``interface``
    router_id: str | None = None  # None: the node's IPv4 address
    listen_address: str | None = None  # BGP; None: the node's address
    api: ApiConfig | None = field(default_factory=ApiConfig)
    route_protocol: int = DEFAULT_ROUTE_PROTOCOL
    mtu: int | None = None
    felix: FelixConfig = field(default_factory=FelixConfig)
    # RFC 4724 §4.1 after a restart on a running host: see bgpd.deferral.run_file_found.
    run_file: str | None = None
    selection_deferral_time: int = 60
    log_level: str = "info"
    source: str = ""  # the file it came from


def check_interface(value: Any) -> str:
    """A Linux interface name: 1..15 bytes, no '/', no whitespace (IFNAMSIZ is 16)."""
    name = check_str(1, 15)(value)
    if "/" in name or any(c.isspace() for c in name) or name in (".", ".."):
        raise FieldError("must be an interface name like eth0")
    return name


def check_endpoint(value: Any) -> str:
    from podbgp.cluster.datastore.etcd import Endpoint

    if not isinstance(value, str):
        raise FieldError("must be a URL like http://127.0.0.1:2379")
    try:
        return str(Endpoint.parse(value))
    except ValueError as exc:
        raise FieldError(str(exc)) from None


def check_key_prefix(value: Any) -> str:
    text = check_str(1, 200)(value)
    if not text.startswith("/"):
        raise FieldError("must start with '/', like /podbgp/")
    return text if text.endswith("/") else text + "/"


def check_readable_file(value: Any) -> str:
    path = check_str(1)(value)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise FieldError(f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def check_poll_interval(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= 60:
        raise FieldError("must be a number of seconds in 0.05..60")
    return float(value)


def datastore_section(root: Section) -> DatastoreConfig:
    sec = root.section("datastore", _DATASTORE_KEYS)
    if sec is None:
        raise root.error("datastore", "required key is missing")
    kind = sec.required("type", check_enum(("etcd", "file")))
    tls = sec.section("tls", ("caFile", "certFile", "keyFile"))
    cfg = DatastoreConfig(
        type=kind,
        endpoints=tuple(sec.items("endpoints", check_endpoint, unique=True)),
        prefix=sec.optional("prefix", check_key_prefix, DEFAULT_PREFIX),
        ca_file=tls.optional("caFile", check_readable_file, None) if tls else None,
        cert_file=tls.optional("certFile", check_readable_file, None) if tls else None,
        key_file=tls.optional("keyFile", check_readable_file, None) if tls else None,
        path=sec.optional("path", check_str(1), DEFAULT_FILE_PATH),
        state_path=sec.optional("statePath", check_str(1), None),
        poll_interval=sec.optional("pollInterval", check_poll_interval, 1.0),
    )
    if kind == "etcd" and not cfg.endpoints:
        raise sec.error("endpoints", "required for the etcd datastore")
    if kind == "file" and cfg.endpoints:
        raise sec.error("endpoints", "only for the etcd datastore")
    if tls is not None and (cfg.cert_file is None) != (cfg.key_file is None):
        raise tls.error("keyFile", "certFile and keyFile go together")
    return cfg


def _felix(root: Section) -> FelixConfig:
    sec = root.section("felix", ("enabled", "resyncInterval"))
    if sec is None:
        return FelixConfig()
    return FelixConfig(
        enabled=sec.optional("enabled", check_bool, True),
        resync_interval=sec.optional(
            "resyncInterval", check_int(1, 86400), DEFAULT_RESYNC_INTERVAL
        ),
    )


def _graceful_restart(root: Section) -> tuple[str | None, int]:
    """``gracefulRestart``: ``runFile`` and ``selectionDeferralTime`` (the restart time itself
    is the cluster's, BGPConfiguration nodeMeshMaxRestartTime / BGPPeer maxRestartTime)."""
    sec = root.section("gracefulRestart", _GR_KEYS)
    if sec is None:
        return None, 60
    return (
        sec.optional("runFile", check_str(1, 4096), None),
        sec.optional("selectionDeferralTime", check_int(1, 3600), 60),
    )


def load_node_config(path: str) -> NodeConfig:
    """Read and validate a node YAML file; raises ConfigError on the first problem."""
    root = load_yaml(path)
    root.check_keys(_TOP_KEYS)
    address = root.optional("address", check_address_with_prefix, None)
    interface = root.optional("interface", check_interface, None)
    if (address is None) == (interface is None):
        raise root.error("address", "set exactly one of address and interface")
    address_v6 = root.optional("addressV6", check_address_with_prefix, None)
    if address_v6 is not None and ipaddress.ip_interface(address_v6).version != 6:
        raise root.error("addressV6", "must be an IPv6 address with prefix length")
    if address_v6 is not None and address and ipaddress.ip_interface(address).version == 6:
        raise root.error("addressV6", "address is IPv6 already; a node has one address a family")
    run_file, deferral = _graceful_restart(root)
    config = NodeConfig(
        node_name=root.required("nodeName", check_name),
        datastore=datastore_section(root),
        address=address,
        interface=interface,
        address_v6=address_v6,
        router_id=root.optional("routerId", check_router_id, None),
        listen_address=root.optional("listenAddress", check_ip, None),
        api=api_section(root),
        route_protocol=root.optional("routeProtocol", check_int(5, 255), DEFAULT_ROUTE_PROTOCOL),
        mtu=root.optional("mtu", check_int(576, 65535), None),
        felix=_felix(root),
        run_file=run_file,
        selection_deferral_time=deferral,
        log_level=root.optional("logLevel", check_enum(LOG_LEVELS), "info"),
        source=path,
    )
    if (
        address is not None
        and ipaddress.ip_interface(address).version == 6
        and not config.router_id
    ):
        raise root.error("routerId", "required when the node address is IPv6")
    return config


# --- taking the address from an interface ------------------------------------------------------

_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


def _ipv4_of(interface: str) -> str | None:
    request = struct.pack("256s", interface.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            addr = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)[20:24]
            mask = fcntl.ioctl(sock.fileno(), _SIOCGIFNETMASK, request)[20:24]
        except OSError:
            return None
    prefixlen = bin(int.from_bytes(mask, "big")).count("1")
    return f"{socket.inet_ntoa(addr)}/{prefixlen}"


def _ipv6_of(interface: str) -> str | None:
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hexaddr, _idx, plen, scope, _flags, name = line.split()
        if name == interface and int(scope, 16) == 0:  # global scope only
            addr = ipaddress.IPv6Address(bytes.fromhex(hexaddr))
            return f"{addr}/{int(plen, 16)}"
    return None


def resolve_addresses(config: NodeConfig) -> tuple[str, ...]:
    """The node's addresses with prefix length, IPv4 first: as configured (``address``, plus
    ``addressV6``), or the interface's first IPv4 and first global IPv6 address (``addressV6``
    wins over the detected one). Raises OSError when there is none."""
    if config.address is not None:
        found = [config.address]
    else:
        assert config.interface is not None
        v4 = _ipv4_of(config.interface)
        v6 = config.address_v6 or _ipv6_of(config.interface)
        found = [a for a in (v4, v6) if a is not None]
        if not found:
            raise OSError(f"interface {config.interface} has no IPv4 or global IPv6 address")
        return tuple(found)
    if config.address_v6 is not None:
        found.append(config.address_v6)
    return tuple(found)


def resolve_address(config: NodeConfig) -> str:
    """The node's primary address (IPv4 when it has one), see :func:`resolve_addresses`."""
    return resolve_addresses(config)[0]
