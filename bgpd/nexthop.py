"""Next hops across address families and links: RFC 2545 §3, RFC 8950, link-local scope.

Owns the text form of a next hop as the RIB, the events and the API carry it: an IPv4 or global
IPv6 address as usual, and an IPv6 link-local address with the interface it belongs to
(``fe80::1%eth0``), since a link-local address means nothing without its link. Also:

- which next hop of a received MP_REACH_NLRI we use (the global address; the link-local one
  when the global is absent, zero, or itself link-local — the common ``::`` + link-local form);
- which next hop we announce on a session (our address on it; for IPv4 routes over an IPv6
  session only once Extended Next Hop (RFC 8950) is negotiated), and its wire form (with our
  link-local address on the shared link after a global one, RFC 2545 §3);
- whether a path's next hop may go to a session at all (a link-local next hop only on its own
  link; an IPv6 next hop for IPv4 routes only where RFC 8950 was negotiated).
"""

from __future__ import annotations

import contextlib
import ipaddress

from bgpd.codec.types import Afi, Safi
from bgpd.fsm_types import Negotiated

IPV4_OVER_IPV6 = (Afi.IPV4, Safi.UNICAST, Afi.IPV6)  # RFC 8950 §3 capability tuple
_IF_INET6 = "/proc/net/if_inet6"


def split_scope(address: str) -> tuple[str, str | None]:
    """``"fe80::1%eth0"`` → ``("fe80::1", "eth0")``; no scope → ``(address, None)``."""
    bare, sep, scope = address.partition("%")
    return bare, (scope if sep and scope else None)


def is_link_local(address: str) -> bool:
    bare = split_scope(address)[0]
    return ":" in bare and ipaddress.IPv6Address(bare).is_link_local


def scoped(address: str, interface: str | None) -> str:
    """A link-local address with its interface (unchanged when ``interface`` is unknown)."""
    if interface is None or not is_link_local(address):
        return address
    return f"{split_scope(address)[0]}%{interface}"


def interface_of(address: str, table: str = _IF_INET6) -> str | None:
    """The interface that holds the local IPv6 ``address`` (its scope, if it has one)."""
    bare, scope = split_scope(address)
    if scope is not None:
        return scope
    if ":" not in bare:
        return None
    wanted = ipaddress.IPv6Address(bare).packed
    return next((name for packed, name in _local_addresses(table) if packed == wanted), None)


def _local_addresses(table: str) -> list[tuple[bytes, str]]:
    """Our IPv6 addresses (packed) with their interfaces, from ``table`` (``/proc/net/if_inet6``
    rows: address in hex, index, prefix length, scope, flags, name); none if unreadable."""
    rows: list[tuple[bytes, str]] = []
    with contextlib.suppress(OSError), open(table, encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 6:
                rows.append((bytes.fromhex(fields[0]), fields[5]))
    return rows


def received_next_hop(hops: tuple[str, ...], link: str | None) -> str | None:
    """The next hop we use from an MP_REACH_NLRI's addresses (RFC 2545 §3: global[, link-local]).

    A link-local address gets ``link``, the session's interface (``session_link``).
    """
    if not hops:
        return None
    chosen = hops[0]
    if len(hops) == 2 and (ipaddress.ip_address(chosen).is_unspecified or is_link_local(chosen)):
        chosen = hops[1]
    if not is_link_local(chosen):
        return chosen
    return scoped(chosen, link)


def session_link(peer_address: str, local_address: str, table: str = _IF_INET6) -> str | None:
    """The interface a session runs over, as far as link-local next hops need it: the scope of
    the peer's address on a link-local session, else the interface holding our local address.
    Found once when the session comes up, not per UPDATE (it reads the address table)."""
    return split_scope(peer_address)[1] or interface_of(local_address, table)


def own_next_hops(local_address: str, negotiated: Negotiated) -> tuple[str | None, str | None]:
    """Our (IPv4, IPv6) next hop on a session whose local end is ``local_address``.

    Over IPv6, IPv4 routes get our IPv6 address when both sides agreed on RFC 8950; otherwise
    that family has no next hop of ours and our own IPv4 routes do not go out.
    """
    if ":" not in local_address:
        return local_address, None
    v4 = local_address if IPV4_OVER_IPV6 in negotiated.extended_next_hop else None
    return v4, local_address


def wire_next_hop(next_hop: str, link_local: str | None = None) -> tuple[str, ...]:
    """The MP_REACH_NLRI next hop for an IPv6 ``next_hop``: a link-local one goes as the
    32-octet ``::`` + link-local form (peers take the zero global as "use the link-local"); a
    global one with ``link_local`` (ours on the shared link, RFC 2545 §3) as global + link-local.
    """
    bare = split_scope(next_hop)[0]
    if is_link_local(bare):
        return ("::", bare)
    return (bare, split_scope(link_local)[0]) if link_local else (bare,)


def link_locals(interface: str, table: str = _IF_INET6) -> list[str]:
    """Our own link-local addresses on ``interface``, lowest first."""
    found = {
        ipaddress.IPv6Address(packed)
        for packed, name in _local_addresses(table)
        if name == interface
    }
    return [str(address) for address in sorted(found) if address.is_link_local]


def own_link_local(local_address: str, table: str = _IF_INET6) -> str | None:
    """Our link-local address on the link of a global IPv6 session address, sent after the
    global next hop (RFC 2545 §3); None over IPv4 or link-local sessions or when unknown."""
    if ":" not in local_address or is_link_local(local_address):
        return None
    interface = interface_of(local_address, table)
    found = link_locals(interface, table) if interface else []
    return f"{found[0]}%{interface}" if found else None


def exportable(next_hop: str | None, own: str | None, ipv6: bool) -> str | None:
    """``next_hop`` as it may go to a session whose own next hop for the family is ``own``.

    A link-local next hop other than ours is valid only on its own link: ours replaces it (or
    the path does not go out). An IPv6 next hop on IPv4 routes needs RFC 8950 on the session,
    which is exactly when ``own`` (our IPv4-family next hop) is an IPv6 address.
    """
    if next_hop is None:
        return None
    if is_link_local(next_hop) and next_hop != own:
        next_hop = own
        if next_hop is None:
            return None
    if not ipv6 and ":" in next_hop and (own is None or ":" not in own):
        return None
    return next_hop
