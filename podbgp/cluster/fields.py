"""Field checkers for cluster resources (and the node config): each takes a YAML value and
returns it checked and normalised, or raises :class:`~bgpd.configcheck.FieldError` saying what
is wrong; :mod:`podbgp.cluster.resources` names the resource and key around it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from bgpd.configcheck import FieldError, check_unicast_ip
from podbgp.cluster.selector import Selector, SelectorError, parse_selector

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs, hashable

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def check_name(value: Any) -> str:
    """A resource name: a DNS-1123 subdomain (lower case, digits, '-', '.'; at most 253)."""
    if not isinstance(value, str) or not value or len(value) > 253 or not _NAME.match(value):
        raise FieldError(
            "must be a lower-case DNS name (letters, digits, '-' and '.'; at most 253 characters)"
        )
    return value


def check_labels(value: Any) -> Labels:
    if not isinstance(value, Mapping):
        raise FieldError("must be a mapping of label names to string values")
    out: list[tuple[str, str]] = []
    for key, val in value.items():
        if not isinstance(key, str) or not _label_key_ok(key):
            raise FieldError(f"label name {key!r} is not a valid label key")
        if not isinstance(val, str) or not _LABEL_VALUE.match(val):
            raise FieldError(f"label {key!r}: value must be a string of at most 63 characters")
        out.append((key, val))
    return tuple(sorted(out))


def _label_key_ok(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _NAME.match(prefix)):
        return False
    return bool(_LABEL_NAME.match(name))


def check_selector(value: Any) -> Selector:
    try:
        return parse_selector(value)
    except SelectorError as exc:
        raise FieldError(f"invalid selector: {exc}") from None


def check_duration(value: Any) -> int:
    """Seconds: an integer, or a duration like ``120s``, ``2m``, ``1h30m`` (as Calico writes)."""
    seconds = _seconds(value)
    if not 1 <= seconds <= 4095:  # the Restart Time field is 12 bits (RFC 4724 §3)
        raise FieldError("must be between 1s and 4095s")
    return seconds


def check_long_lived_stale_time(value: Any) -> int:
    """A long-lived stale time (RFC 9494 §3, 24 bits of seconds); 0 turns LLGR off."""
    seconds = _seconds(value)
    if not 0 <= seconds <= 0xFFFFFF:
        raise FieldError("must be between 0s and 16777215s")
    return seconds


def _seconds(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and re.fullmatch(r"(\d+h)?(\d+m)?(\d+s)?", value) and value:
        units = {"h": 3600, "m": 60, "s": 1}
        seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", value))
    else:
        raise FieldError("must be seconds, or a duration like 120s, 2m or 1h30m")
    return seconds


def check_address_with_prefix(value: Any) -> str:
    """A host address with its subnet's prefix length: ``192.0.2.11/24``."""
    if not isinstance(value, str) or "/" not in value:
        raise FieldError("must be an address with prefix length, like 192.0.2.11/24")
    addr_text, _, len_text = value.partition("/")
    try:
        iface = ipaddress.ip_interface(value)
        check_unicast_ip(addr_text)
    except (ValueError, FieldError):
        raise FieldError("must be an address with prefix length, like 192.0.2.11/24") from None
    if not len_text.isdigit():
        raise FieldError("must be an address with prefix length, like 192.0.2.11/24")
    return iface.with_prefixlen


def check_peer_ip(value: Any) -> tuple[str, int | None]:
    """``192.0.2.1``, ``192.0.2.1:1179``, ``2001:db8::1`` or ``[2001:db8::1]:1179``."""
    if not isinstance(value, str):
        raise FieldError("must be an IP address, optionally with :port")
    text = value
    port: int | None = None
    if text.startswith("[") and "]:" in text:
        text, _, port_text = text[1:].partition("]:")
        port = _port(port_text)
    elif text.count(":") == 1:
        text, _, port_text = text.partition(":")
        port = _port(port_text)
    return check_unicast_ip(text), port


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise FieldError("port must be in 1..65535")
    return int(text)


def check_community(value: Any) -> str:
    """A standard (``aa:nn``, 16-bit parts, RFC 1997) or large (``aa:nn:mm``, 32-bit parts,
    RFC 8092) community."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) not in (2, 3) or not all(p.isascii() and p.isdigit() for p in parts):
        raise FieldError("must be a community aa:nn or a large community aa:nn:mm")
    limit = 0xFFFF if len(parts) == 2 else 0xFFFFFFFF
    if any(int(p) > limit for p in parts):
        raise FieldError(f"community parts must be at most {limit} here")
    return ":".join(str(int(p)) for p in parts)


def check_restart_after(value: Any) -> int:
    """``restartAfter``: 0 (stay down) or seconds/a duration up to a day."""
    if value == 0 and not isinstance(value, bool):
        return 0
    if value in ("0", "0s"):
        return 0
    try:
        return check_duration(value)
    except FieldError:
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 86400:
            return value
        raise FieldError("must be 0 (stay down), seconds, or a duration like 30s or 5m") from None
