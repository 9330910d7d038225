"""The capture scenarios: what BIRD and GoBGP are configured with, and what the raw peer does.

Each scenario builds two namespaces joined by a veth (the daemon on 192.0.2.1 / 2001:db8::1, raw
peers on 192.0.2.2-4 / 2001:db8::2), lets :class:`tests.support.capture.RawPeer` sessions
record everything the daemon sends, and writes ``.hex`` files. The expected decoded values in
``tests/unit/bgpd/codec/captured/test_captured.py`` come from the constants here.

- ``*_ebgp``: eBGP, 4-octet AS on one side; IPv4 and IPv6 routes with communities, large
  communities, MED, a prepended AS_PATH and origin INCOMPLETE; End-of-RIB for both families;
  two routes withdrawn; then an administrative shutdown with a message (NOTIFICATION Cease).
- ``*_ibgp``: the daemon is a route reflector with three raw clients. Client 2 announces two
  prefixes; client 1 records the daemon's own route (LOCAL_PREF) and the reflected one
  (ORIGINATOR_ID, CLUSTER_LIST); client 3 negotiated ADD-PATH and records both paths.
"""

from __future__ import annotations

import contextlib
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.capture import (
    UPDATE,
    RawPeer,
    cap_add_path,
    cap_extended_message,
    cap_four_octet_as,
    cap_graceful_restart,
    cap_multiprotocol,
    cap_route_refresh,
    message,
    update_ipv4,
    write_captures,
)
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NetnsFactory

DAEMON_IP, DAEMON_IP6 = "192.0.2.1", "2001:db8::1"
RAW_IPS = ("192.0.2.2", "192.0.2.3", "192.0.2.4")
RAW_IP6 = "2001:db8::2"

EBGP_BIRD_AS = 4200000001  # BIRD's own AS in bird_ebgp: 4-octet, so its OPEN says AS_TRANS
EBGP_GOBGP_AS = 65001
EBGP_RAW_AS = 65002  # the raw peer's AS facing BIRD
EBGP_RAW_AS_GOBGP = 4200000002  # the raw peer's AS facing GoBGP
IBGP_AS = 65001
RESTART_TIME = 120

# (prefix, communities, large communities, MED, prepended AS path, origin)
EBGP_ROUTES = (
    ("203.0.113.0/24", ((65000, 100), (65000, 200)), ((65001, 1, 2),), 50, (), "igp"),
    ("198.51.100.0/24", (), (), None, (65100,), "incomplete"),
    ("2001:db8:100::/48", ((65000, 600),), (), None, (), "igp"),
    ("2001:db8:200::/48", (), (), None, (), "igp"),
)
EBGP_WITHDRAWN = ("198.51.100.0/24", "2001:db8:200::/48")
# The daemon's own route in *_ibgp (ORIGIN IGP): prefix, LOCAL_PREF, MED, community.
IBGP_OWN = ("203.0.113.0/24", 300, 50, (65000, 300))
IBGP_FROM_CLIENT2 = ("198.51.100.0/24", "203.0.113.0/24")  # announced by client 2, LOCAL_PREF 100
SHUTDOWN_MESSAGE = "capture done"


def end_of_rib(afi: int) -> bytes:
    if afi == 1:
        return message(UPDATE, b"\0\0\0\0")
    attr = bytes([0x80, 15, 3]) + struct.pack("!HB", afi, 1)
    return message(UPDATE, struct.pack("!HH", 0, len(attr)) + attr)


def _raw_caps(asn: int, ipv6: bool = True, add_path: bool = False) -> tuple[bytes, ...]:
    families = ((1, 1), (2, 1)) if ipv6 else ((1, 1),)
    caps = [cap_multiprotocol(afi, safi) for afi, safi in families]
    caps += [cap_route_refresh(), cap_extended_message(), cap_four_octet_as(asn)]
    caps.append(cap_graceful_restart(RESTART_TIME, families))
    if add_path:
        caps.append(cap_add_path(((1, 1, 1),)))  # receive IPv4 unicast paths with IDs
    return tuple(caps)


@contextlib.contextmanager
def _topology() -> Iterator[tuple[NetnsFactory, str, str, Path]]:
    with NetnsFactory() as factory, tempfile.TemporaryDirectory(prefix="podbgp-cap-") as tmp:
        daemon_ns, raw_ns = factory.namespace("d"), factory.namespace("r")
        factory.veth(
            daemon_ns,
            raw_ns,
            addrs_a=[f"{DAEMON_IP}/24", f"{DAEMON_IP6}/64"],
            addrs_b=[*(f"{ip}/24" for ip in RAW_IPS), f"{RAW_IP6}/64"],
        )
        yield factory, daemon_ns, raw_ns, Path(tmp)


def _open_session(raw_ns: str, local: str, caps: tuple[bytes, ...], asn: int) -> RawPeer:
    peer = RawPeer.connect(raw_ns, local, DAEMON_IP, add_path=any(c[0] == 69 for c in caps))
    peer.establish(asn, local, caps)
    families = [1, 2] if any(c[:4] == bytes([1, 4, 0, 2]) for c in caps) else [1]
    for afi in families:
        peer.send(end_of_rib(afi))
    return peer


def _run_ebgp(
    peer: RawPeer, withdraw: Callable[[], object], shutdown: Callable[[], object]
) -> list[bytes]:
    """Drive an eBGP capture: initial table + End-of-RIB, withdrawals, shutdown."""
    prefixes = {r[0] for r in EBGP_ROUTES}
    ok = peer.collect(lambda: peer.announced() >= prefixes and len(peer.end_of_rib()) == 2)
    _require(ok, "initial routes and End-of-RIB", peer)
    withdraw()
    _require(peer.collect(lambda: peer.withdrawn() >= set(EBGP_WITHDRAWN)), "withdrawals", peer)
    shutdown()
    _require(peer.collect(lambda: "notification" in peer.kinds()), "NOTIFICATION", peer)
    peer.close()
    return peer.received


def _require(ok: bool, what: str, peer: RawPeer) -> None:
    if not ok:
        raise RuntimeError(f"capture: no {what}; received {peer.kinds()}")


def _version(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    return (proc.stdout + proc.stderr).strip().splitlines()[0]


# -- BIRD -----------------------------------------------------------------------------------


def bird_ebgp(out: Path) -> list[Path]:
    routes = tuple(
        StaticRoute(p, communities=c, large_communities=lc, med=med, as_path=path, origin=o)
        for p, c, lc, med, path, o in EBGP_ROUTES
    )
    nbr = BirdNeighbor(
        RAW_IPS[0], EBGP_RAW_AS, name="raw", passive=True, graceful_restart=True,
        restart_time=RESTART_TIME, ipv6=True, ipv6_next_hop=DAEMON_IP6, extended_messages=True,
    )  # fmt: skip
    config = BirdConfig(DAEMON_IP, EBGP_BIRD_AS, DAEMON_IP, neighbors=(nbr,), routes=routes)
    with _topology() as (factory, daemon_ns, raw_ns, tmp):
        bird = BirdRouter(factory, daemon_ns, config, tmp).start()
        peer = _open_session(raw_ns, RAW_IPS[0], _raw_caps(EBGP_RAW_AS), EBGP_RAW_AS)
        kept = tuple(r for r in routes if r.prefix not in EBGP_WITHDRAWN)
        frames = _run_ebgp(
            peer,
            lambda: bird.configure(bird.with_routes(*kept)),
            lambda: bird.birdc("disable", "raw", f'"{SHUTDOWN_MESSAGE}"'),
        )
        version = _version(["bird", "--version"])
    comment = f"""Sent by {version} to a raw eBGP peer
(tests/support/capture_scenarios.py, bird_ebgp). BIRD: AS {EBGP_BIRD_AS}, router id {DAEMON_IP},
passive, graceful restart {RESTART_TIME} s, extended messages; IPv6 over the IPv4 session
with next hop {DAEMON_IP6}.
Raw peer: AS {EBGP_RAW_AS}, {RAW_IPS[0]}; OPEN with MP ipv4+ipv6, route refresh, extended
message, 4-octet AS, graceful restart. Decode with four_octet_as=True, ebgp=True."""
    return write_captures(out, "bird", frames, comment)


def bird_ibgp(out: Path) -> list[Path]:
    prefix, local_pref, med, community = IBGP_OWN
    own = StaticRoute(
        prefix, local_pref=local_pref, med=med, communities=(community,), origin="igp"
    )
    nbrs = tuple(
        BirdNeighbor(
            ip,
            IBGP_AS,
            name=f"client{i + 1}",
            passive=True,
            rr_client=True,
            graceful_restart=True,
            add_paths_tx=(i == 2),
        )
        for i, ip in enumerate(RAW_IPS)
    )
    config = BirdConfig(DAEMON_IP, IBGP_AS, DAEMON_IP, neighbors=nbrs, routes=(own,))
    with _topology() as (factory, daemon_ns, raw_ns, tmp):
        BirdRouter(factory, daemon_ns, config, tmp).start()
        version = _version(["bird", "--version"])
        client1, client3 = _run_ibgp(raw_ns)
    comment = f"""Sent by {version}, a route reflector (AS {IBGP_AS}, router id {DAEMON_IP}), to
raw iBGP client %s (tests/support/capture_scenarios.py, bird_ibgp). BIRD originates {prefix}
(LOCAL_PREF {local_pref}, MED {med}, community {community}); client 2 ({RAW_IPS[1]}) announced
{", ".join(IBGP_FROM_CLIENT2)} with next hop {RAW_IPS[1]}, LOCAL_PREF 100. %s"""
    plain = "Decode with four_octet_as=True, ebgp=False."
    addpath = "ADD-PATH: BIRD sends, client 3 receives IPv4 unicast. Decode with " + (
        "four_octet_as=True, ebgp=False, add_path_receive={IPV4_UNICAST}."
    )
    return [
        *write_captures(out, "bird_ibgp", client1, comment % (1, plain), kinds={"update_ipv4"}),
        *write_captures(
            out, "bird_addpath", client3, comment % (3, addpath), True, {"open", "update_ipv4"}
        ),
    ]


def _run_ibgp(raw_ns: str) -> tuple[list[bytes], list[bytes]]:
    """Three route-reflector clients; returns what clients 1 and 3 received."""
    client1 = _open_session(raw_ns, RAW_IPS[0], _raw_caps(IBGP_AS, ipv6=False), IBGP_AS)
    client2 = _open_session(raw_ns, RAW_IPS[1], _raw_caps(IBGP_AS, ipv6=False), IBGP_AS)
    client3 = _open_session(raw_ns, RAW_IPS[2], _raw_caps(IBGP_AS, False, True), IBGP_AS)
    client2.send(update_ipv4(IBGP_FROM_CLIENT2, RAW_IPS[1]))
    wanted = set(IBGP_FROM_CLIENT2)
    _require(client1.collect(lambda: client1.announced() >= wanted), "reflected routes", client1)

    def both_paths() -> bool:
        seen = [p.split("#")[0] for p in client3.announced()]
        return seen.count(IBGP_OWN[0]) == 2 and IBGP_FROM_CLIENT2[0] in seen

    _require(client3.collect(both_paths), "two paths", client3)
    for peer in (client1, client2, client3):
        peer.close()
    return client1.received, client3.received


# -- GoBGP ----------------------------------------------------------------------------------


def gobgp_ebgp(out: Path) -> list[Path]:
    nbr = GoBgpNeighbor(
        RAW_IPS[0], EBGP_RAW_AS_GOBGP, passive=True, graceful_restart=True,
        restart_time=RESTART_TIME, ipv6=True,
    )  # fmt: skip
    config = GoBgpConfig(DAEMON_IP, EBGP_GOBGP_AS, listen_addresses=(DAEMON_IP,), neighbors=(nbr,))
    with _topology() as (factory, daemon_ns, raw_ns, tmp):
        gobgp = GoBgpRouter(factory, daemon_ns, config, tmp).start()
        for prefix, comms, large, med, path, origin in EBGP_ROUTES:
            hop = DAEMON_IP6 if ":" in prefix else DAEMON_IP
            gobgp.add_route(prefix, hop, communities=comms, large_communities=large, med=med,
                            as_path=path, origin=origin)  # fmt: skip
        caps = _raw_caps(EBGP_RAW_AS_GOBGP)
        peer = _open_session(raw_ns, RAW_IPS[0], caps, EBGP_RAW_AS_GOBGP)

        def withdraw() -> None:
            for prefix in EBGP_WITHDRAWN:
                gobgp.del_route(prefix)

        def shutdown() -> None:
            gobgp.gobgp("neighbor", RAW_IPS[0], "shutdown", "--reason", SHUTDOWN_MESSAGE)

        frames = _run_ebgp(peer, withdraw, shutdown)
        version = _version(["gobgpd", "--version"])
    comment = f"""Sent by {version} to a raw eBGP peer
(tests/support/capture_scenarios.py, gobgp_ebgp). GoBGP: AS {EBGP_GOBGP_AS}, router id {DAEMON_IP},
passive, graceful restart {RESTART_TIME} s; routes added with `gobgp global rib add`
(IPv6 next hop {DAEMON_IP6}).
Raw peer: AS {EBGP_RAW_AS_GOBGP} (AS_TRANS in its OPEN), {RAW_IPS[0]}; OPEN with MP ipv4+ipv6,
route refresh, extended message, 4-octet AS, graceful restart. Decode with four_octet_as=True,
ebgp=True."""
    return write_captures(out, "gobgp", frames, comment)


def gobgp_ibgp(out: Path) -> list[Path]:
    nbrs = tuple(
        GoBgpNeighbor(
            ip,
            IBGP_AS,
            passive=True,
            rr_client=True,
            rr_cluster_id=DAEMON_IP,
            graceful_restart=True,
            add_paths_send_max=8 if i == 2 else 0,
        )
        for i, ip in enumerate(RAW_IPS)
    )
    config = GoBgpConfig(DAEMON_IP, IBGP_AS, listen_addresses=(DAEMON_IP,), neighbors=nbrs)
    prefix, local_pref, med, community = IBGP_OWN
    with _topology() as (factory, daemon_ns, raw_ns, tmp):
        gobgp = GoBgpRouter(factory, daemon_ns, config, tmp).start()
        gobgp.add_route(
            prefix, DAEMON_IP, local_pref=local_pref, med=med, communities=(community,),
            origin="igp",
        )  # fmt: skip
        version = _version(["gobgpd", "--version"])
        client1, client3 = _run_ibgp(raw_ns)
    comment = f"""Sent by {version}, a route reflector (AS {IBGP_AS}, router id and cluster id
{DAEMON_IP}), to raw iBGP client %s (tests/support/capture_scenarios.py, gobgp_ibgp). GoBGP
originates {prefix} (LOCAL_PREF {local_pref}, MED {med}, community {community}); client 2
({RAW_IPS[1]}) announced {", ".join(IBGP_FROM_CLIENT2)} with next hop {RAW_IPS[1]},
LOCAL_PREF 100. %s"""
    plain = "Decode with four_octet_as=True, ebgp=False."
    addpath = "ADD-PATH: GoBGP sends (send-max 8), client 3 receives IPv4 unicast. Decode " + (
        "with four_octet_as=True, ebgp=False, add_path_receive={IPV4_UNICAST}."
    )
    return [
        *write_captures(out, "gobgp_ibgp", client1, comment % (1, plain), kinds={"update_ipv4"}),
        *write_captures(
            out, "gobgp_addpath", client3, comment % (3, addpath), True, {"open", "update_ipv4"}
        ),
    ]


SCENARIOS: dict[str, Callable[[Path], list[Path]]] = {
    "bird_ebgp": bird_ebgp,
    "bird_ibgp": bird_ibgp,
    "gobgp_ebgp": gobgp_ebgp,
    "gobgp_ibgp": gobgp_ibgp,
}
