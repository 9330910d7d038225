"""Socket options for sessions: RFC 5082 GTSM on real sockets (loopback, no traffic needed)."""

from __future__ import annotations

import socket

from bgpd.tcp import IP_MINTTL, IPV6_MINHOPCOUNT, normalise_address, set_ttl_security


def test_gtsm_sets_outgoing_ttl_and_minimum_accepted_ttl() -> None:
    with socket.socket() as sock:
        set_ttl_security(sock, 1)
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == 255
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 255
    with socket.socket() as sock:
        set_ttl_security(sock, 3)
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 253


def test_gtsm_for_ipv6_and_off_when_zero() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        set_ttl_security(sock, 2)
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 255
        assert sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MINHOPCOUNT) == 254
    with socket.socket() as sock:
        default = sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL)
        set_ttl_security(sock, 0)
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_TTL) == default
        assert sock.getsockopt(socket.IPPROTO_IP, IP_MINTTL) == 0


def test_peer_addresses_are_normalised() -> None:
    assert normalise_address("::ffff:192.0.2.1") == "192.0.2.1"
    assert normalise_address("2001:DB8:0::1") == "2001:db8::1"
