"""Reusable YAML config validation: one-line errors and small field checkers.

Every podbgp config file (bgpd.yaml, node.yaml, rr.yaml) is validated with the pieces here, so
all of them fail the same way: a :class:`ConfigError` whose text is one line naming the file, the
key path (``peers[1].asNumber``) and the problem. Nothing starts half-configured.

A *checker* is a plain function ``value -> typed value`` that raises :class:`FieldError` with the
problem in words; :class:`Section` walks a YAML mapping, applies checkers to its keys and turns a
``FieldError`` into a ``ConfigError`` carrying the file and the key path. Address rules follow
RFC 4291/RFC 791 via :mod:`ipaddress`; AS numbers are 4-octet (RFC 6793).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
D = TypeVar("D")
Check = Callable[[Any], T]

ASN_MAX = 4294967295  # 4-octet AS numbers (RFC 6793)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class ConfigError(Exception):
    """A config problem: ``str()`` is one line, ``FILE: KEY: PROBLEM`` (KEY may be empty)."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(str(self))

    def __str__(self) -> str:
        # One line whatever the YAML parser or the OS put into the problem text.
        problem = " ".join(self.problem.split())
        if self.key:
            return f"{self.file}: {self.key}: {problem}"
        return f"{self.file}: {problem}"


class FieldError(ValueError):
    """Raised by a checker with the problem in words; :class:`Section` adds file and key."""


# --- field checkers -------------------------------------------------------------------------


def check_int(lo: int, hi: int) -> Check[int]:
    """An integer in ``lo..hi`` (YAML booleans and numeric strings are rejected)."""

    def check(value: Any) -> int:
        # bool is an int subclass: `port: yes` must not become port 1.
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise FieldError(f"must be an integer in {lo}..{hi}")
        return value

    return check


check_asn: Check[int] = check_int(1, ASN_MAX)
check_port: Check[int] = check_int(0, 65535)
check_remote_port: Check[int] = check_int(1, 65535)


def check_hold_time(value: Any) -> int:
    """A BGP Hold Time: zero (no keepalives) or at least three seconds (RFC 4271 §4.2)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (value == 0 or 3 <= value <= 65535)
    ):
        raise FieldError("must be 0 or an integer in 3..65535")
    return value


def check_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FieldError("must be true or false")
    return value


def check_str(min_len: int = 0, max_len: int | None = None, what: str = "characters") -> Check[str]:
    """A string whose UTF-8 length is within bounds (bytes are what the kernel and wire see)."""

    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise FieldError("must be a string")
        size = len(value.encode())
        if size < min_len or (max_len is not None and size > max_len):
            bound = f"{min_len}..{max_len}" if max_len is not None else f"at least {min_len}"
            raise FieldError(f"must be a string of {bound} {what}")
        return value

    return check


def check_enum(choices: Collection[str]) -> Check[str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise FieldError(f"must be one of {', '.join(choices)}")
        return value

    return check


def _ip(value: Any, want: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if not isinstance(value, str):
        raise FieldError(f"must be {want} (a string)")
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise FieldError(f"must be {want}") from None


def check_ipv4(value: Any) -> str:
    """An IPv4 address in dotted-quad form; returned normalised."""
    addr = _ip(value, "an IPv4 address")
    if addr.version != 4:
        raise FieldError("must be an IPv4 address")
    return str(addr)


def check_ip(value: Any) -> str:
    """An IPv4 or IPv6 address; returned in canonical (compressed) form."""
    return str(_ip(value, "an IPv4 or IPv6 address"))


def check_unicast_ip(value: Any) -> str:
    """An address a BGP peer can have: not unspecified, not multicast, not broadcast."""
    addr = _ip(value, "an IPv4 or IPv6 address")
    if addr.is_unspecified or addr.is_multicast or str(addr) == "255.255.255.255":
        raise FieldError("must be a unicast IP address")
    return str(addr)


def check_interface_name(value: Any) -> str:
    """A Linux interface name: 1..15 bytes, no slash, colon, percent sign or whitespace."""
    if not isinstance(value, str) or not 0 < len(value.encode()) <= 15:
        raise FieldError("must be an interface name of 1..15 characters")
    if value in (".", "..") or any(c in value for c in "/:%") or any(c.isspace() for c in value):
        raise FieldError("must be an interface name (no '/', ':', '%' or whitespace)")
    return value


def check_router_id(value: Any) -> str:
    """A BGP Identifier (RFC 4271 §4.2, RFC 6286): an IPv4 address other than 0.0.0.0."""
    text = check_ipv4(value)
    if text == "0.0.0.0":
        raise FieldError("must not be 0.0.0.0")
    return text


def check_prefix(value: Any) -> str:
    """An IPv4/IPv6 prefix in CIDR form with host bits zero; returned canonical."""
    usage = "must be an IP prefix in CIDR form, like 10.244.1.0/24"
    if not isinstance(value, str):
        raise FieldError(usage)
    addr_text, _, len_text = value.partition("/")
    if not len_text.isdigit():
        raise FieldError(usage)
    try:
        net = ipaddress.ip_network(value, strict=False)
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise FieldError(usage) from None
    if addr != net.network_address:
        # Written with host bits set (10.244.1.5/24): say what was probably meant.
        raise FieldError(f"host bits are set; did you mean {net.with_prefixlen}?")
    return net.with_prefixlen


def parse_host_port(text: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6) into a host and a port in 0..65535.

    The host is an IP address (returned canonical) or a DNS name. Raises :class:`FieldError`.
    """
    if not isinstance(text, str):
        raise FieldError("must be a string host:port")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise FieldError("must be host:port, with IPv6 in brackets like [::1]:9179")
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise FieldError("must have an IPv6 address inside the brackets") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise FieldError("must be host:port, like 127.0.0.1:9179")
        if ":" in host:
            raise FieldError("must write an IPv6 host in brackets, like [::1]:9179")
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise FieldError("must have an IP address or a host name before the port") from None
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise FieldError("must end with a port in 0..65535")
    return host, int(port_text)


# --- walking a mapping ------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One YAML mapping under validation, with its key path for error messages."""

    file: str
    path: str
    data: Mapping[str, Any]

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def check_keys(self, allowed: Collection[str]) -> None:
        """Reject keys outside ``allowed``: a typo must not silently become a default."""
        for name in self.data:
            if name not in allowed:
                expected = ", ".join(allowed)
                raise self.error(str(name), f"unknown key; expected one of {expected}")

    def has(self, name: str) -> bool:
        return name in self.data

    def required(self, name: str, check: Check[T]) -> T:
        if name not in self.data:
            raise self.error(name, "required key is missing")
        return self._apply(name, check, self.data[name])

    def optional(self, name: str, check: Check[T], default: D) -> T | D:
        if name not in self.data:
            return default
        return self._apply(name, check, self.data[name])

    def _apply(self, key: str, check: Check[T], value: Any) -> T:
        try:
            return check(value)
        except FieldError as exc:
            raise self.error(key, str(exc)) from None

    def section(self, name: str, allowed: Collection[str]) -> Section | None:
        """The mapping under ``name`` with its keys checked; None when absent or null."""
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.error(name, "must be a mapping")
        sub = Section(self.file, self.key(name), value)
        sub.check_keys(allowed)
        return sub

    def _list(self, name: str) -> list[Any]:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, "must be a list")
        return value

    def sections(self, name: str, allowed: Collection[str]) -> list[Section]:
        """The list of mappings under ``name`` (empty when absent or null)."""
        out = []
        for i, item in enumerate(self._list(name)):
            key = f"{name}[{i}]"
            if not isinstance(item, Mapping):
                raise self.error(key, "must be a mapping")
            sub = Section(self.file, self.key(key), item)
            sub.check_keys(allowed)
            out.append(sub)
        return out

    def items(self, name: str, check: Check[T], unique: bool = False) -> list[T]:
        """The list of scalars under ``name``, each checked; optionally without duplicates."""
        out: list[T] = []
        for i, item in enumerate(self._list(name)):
            value = self._apply(f"{name}[{i}]", check, item)
            if unique and value in out:
                problem = f"duplicate of {name}[{out.index(value)}]"
                raise self.error(f"{name}[{i}]", problem)
            out.append(value)
        return out


# --- shared sections --------------------------------------------------------------------------

BFD_KEYS = ("enabled", "minRx", "minTx", "multiplier")
BFD_MAX_INTERVAL_MS = 60_000


@dataclass(frozen=True)
class BfdOptions:
    """A ``bfd:`` mapping as written (bgpd ``peers[].bfd``, ``BGPPeer.spec.bfd``,
    ``BGPConfiguration.spec.nodeMeshBFD``): milliseconds, RFC 5880 detect multiplier."""

    enabled: bool = True
    min_rx_ms: int = 300
    min_tx_ms: int = 300
    multiplier: int = 3

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "minRx": self.min_rx_ms,
            "minTx": self.min_tx_ms,
            "multiplier": self.multiplier,
        }


def bfd_section(parent: Section, name: str) -> BfdOptions | None:
    """The ``bfd``-shaped mapping under ``name``: ``enabled`` (default true once the mapping is
    written), ``minRx``/``minTx`` in ms (1..60000, default 300), ``multiplier`` (1..255,
    default 3). None when absent or null."""
    sec = parent.section(name, BFD_KEYS)
    if sec is None:
        return None
    interval = check_int(1, BFD_MAX_INTERVAL_MS)
    return BfdOptions(
        enabled=sec.optional("enabled", check_bool, True),
        min_rx_ms=sec.optional("minRx", interval, 300),
        min_tx_ms=sec.optional("minTx", interval, 300),
        multiplier=sec.optional("multiplier", check_int(1, 255), 3),
    )


# --- reading the file -------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):  # PyYAML ships no types
    """SafeLoader that rejects a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            continue  # non-string keys are reported later as unknown keys
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: str) -> Section:
    """Read ``path`` as a YAML mapping (the root :class:`Section`), or raise ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "cannot read file: not UTF-8 text") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: builds no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "parse error"
        raise ConfigError(path, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"invalid YAML: {exc}") from None
    if data is None:
        raise ConfigError(path, "", "file is empty; expected a YAML mapping")
    if not isinstance(data, dict):
        raise ConfigError(path, "", "must be a YAML mapping at the top level")
    return Section(path, "", data)
