"""Socket options for sessions: RFC 5082 GTSM, and the listen backlog, on real sockets (loopback,
no traffic needed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from bgpd.speaker import Speaker, SpeakerConfig
from bgpd.tcp import (
    DEFAULT_BACKLOG,
    IP_MINTTL,
    IPV6_MINHOPCOUNT,
    listen_backlog,
    make_listen_socket,
    normalise_address,
    set_ttl_security,
)


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


def _listen_queue_limit(port: int) -> int:
    """The accept-queue limit of the listener on ``port`` (``ss``: Send-Q of a LISTEN socket)."""
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return int(out.split()[2])


def _somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_listen_socket_backlog_is_sized_for_a_cluster() -> None:
    assert listen_backlog() >= DEFAULT_BACKLOG
    with make_listen_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert _listen_queue_limit(port) == min(listen_backlog(), _somaxconn())
    with make_listen_socket("127.0.0.1", 0, backlog=7) as sock:
        assert _listen_queue_limit(sock.getsockname()[1]) == 7


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
async def test_speaker_keeps_its_backlog_once_serving() -> None:
    # asyncio.start_server(sock=...) listens again with its own backlog (default 100).
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="127.0.0.1"))
    port = await speaker.listen("127.0.0.1", 0)
    try:
        limit = _listen_queue_limit(port)
        assert limit == min(listen_backlog(), _somaxconn())
        assert limit > 100
    finally:
        await speaker.stop(graceful=False)
