"""The real-process harness tested against itself: namespaces, BIRD, GoBGP and their parsers.

BIRD and GoBGP peer over a veth pair (iBGP, then eBGP with TCP MD5); a route originated on each
side must show up on the other with the attributes it was given, as read by our parsers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bird import BirdConfig, BirdNeighbor, BirdRouter, StaticRoute
from tests.support.gobgp import GoBgpConfig, GoBgpNeighbor, GoBgpRouter
from tests.support.netns import NETNS_DIR, NetnsFactory, netns_socket, run, wait_until

pytestmark = [pytest.mark.netns, pytest.mark.interop]

BIRD_IP, GOBGP_IP = "192.0.2.1", "192.0.2.2"
BIRD_IP6, GOBGP_IP6 = "2001:db8::1", "2001:db8::2"


def _pair(factory: NetnsFactory) -> tuple[str, str]:
    bird_ns, gobgp_ns = factory.namespace("bd"), factory.namespace("gb")
    factory.veth(
        bird_ns,
        gobgp_ns,
        addrs_a=[f"{BIRD_IP}/24", f"{BIRD_IP6}/64"],
        addrs_b=[f"{GOBGP_IP}/24", f"{GOBGP_IP6}/64"],
    )
    return bird_ns, gobgp_ns


def test_namespaces_lan_and_teardown(tmp_path: Path) -> None:
    with NetnsFactory() as factory:
        nodes = [factory.namespace(f"n{i}") for i in range(3)]
        lan = factory.lan({ns: [f"198.51.100.{i + 1}/24"] for i, ns in enumerate(nodes)})
        assert set(lan.ports) == set(nodes)
        run(nodes[0], "ping", "-c1", "-W2", "198.51.100.3")
        sleeper = factory.popen(nodes[1], ["sleep", "60"], tmp_path / "sleep.log")
        owned = [*nodes, lan.bridge_ns]
    assert sleeper.poll() is not None
    assert not any((NETNS_DIR / ns).exists() for ns in owned)


def test_wait_until_reports_what_it_waited_for() -> None:
    def never() -> bool:
        return False

    with pytest.raises(TimeoutError, match="never"):
        wait_until(never, timeout=0.2, interval=0.05)


def test_bird_and_gobgp_ibgp(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    bird_ns, gobgp_ns = _pair(netns_factory)
    bird = BirdRouter(
        netns_factory,
        bird_ns,
        BirdConfig(
            router_id=BIRD_IP,
            asn=64512,
            listen_address=BIRD_IP,
            neighbors=(
                BirdNeighbor(GOBGP_IP, 64512, name="gobgp", ipv6=True, ipv6_next_hop=BIRD_IP6),
            ),
            routes=(
                StaticRoute(
                    "203.0.113.0/24",
                    communities=((64512, 10),),
                    large_communities=((64512, 1, 2),),
                    med=30,
                    local_pref=200,
                ),
                StaticRoute("2001:db8:100::/48", communities=((64512, 6),)),
            ),
        ),
        tmp_path / "bird",
    ).start()
    gobgp = GoBgpRouter(
        netns_factory,
        gobgp_ns,
        GoBgpConfig(
            GOBGP_IP,
            64512,
            listen_addresses=(GOBGP_IP,),
            neighbors=(GoBgpNeighbor(BIRD_IP, 64512, ipv6=True),),
        ),
        tmp_path / "gobgp",
    ).start()
    bird.wait_established("gobgp")
    gobgp.wait_established(BIRD_IP)

    gobgp.add_route("198.51.100.0/24", GOBGP_IP, med=7, local_pref=150, communities=((1, 2),))
    (learned,) = bird.wait_route("198.51.100.0/24")
    assert learned["protocol"] == "gobgp" and learned["from"] == GOBGP_IP
    assert (learned["as_path"], learned["next_hop"], learned["gateway"]) == ([], GOBGP_IP, GOBGP_IP)
    assert (learned["local_pref"], learned["med"], learned["communities"]) == (150, 7, [(1, 2)])

    (path,) = gobgp.wait_route("203.0.113.0/24")
    assert path["from"] == BIRD_IP and path["next_hop"] == BIRD_IP and path["as_path"] == []
    assert (path["local_pref"], path["med"], path["origin"]) == (200, 30, 0)
    assert path["communities"] == [(64512, 10)]
    assert path["large_communities"] == [(64512, 1, 2)]
    (path6,) = gobgp.wait_route("2001:db8:100::/48")
    assert path6["next_hop"] == BIRD_IP6 and path6["communities"] == [(64512, 6)]

    gobgp.del_route("198.51.100.0/24")
    bird.wait_route("198.51.100.0/24", present=False)


def test_bird_and_gobgp_ebgp_with_md5(netns_factory: NetnsFactory, tmp_path: Path) -> None:
    bird_ns, gobgp_ns = _pair(netns_factory)
    secret = "harness-md5"
    bird = BirdRouter(
        netns_factory,
        bird_ns,
        BirdConfig(
            router_id=BIRD_IP,
            asn=64512,
            listen_address=BIRD_IP,
            neighbors=(BirdNeighbor(GOBGP_IP, 4200000001, name="gobgp", password=secret),),
            routes=(StaticRoute("203.0.113.0/24", as_path=(65100,), origin="egp"),),
        ),
        tmp_path / "bird",
    ).start()
    gobgp = GoBgpRouter(
        netns_factory,
        gobgp_ns,
        GoBgpConfig(
            GOBGP_IP,
            4200000001,
            listen_addresses=(GOBGP_IP,),
            neighbors=(GoBgpNeighbor(BIRD_IP, 64512, password=secret),),
        ),
        tmp_path / "gobgp",
    ).start()
    proto = bird.wait_established("gobgp")
    assert proto.details["Neighbor AS"] == "4200000001"
    assert "4-octet AS numbers" in proto.neighbor_capabilities

    gobgp.add_route("198.51.100.0/24", GOBGP_IP, as_path=(65200, 65201))
    (learned,) = bird.wait_route("198.51.100.0/24")
    assert learned["as_path"] == [4200000001, 65200, 65201]
    assert learned["local_pref"] == 100  # set by BIRD on import; eBGP carries none

    (path,) = gobgp.wait_route("203.0.113.0/24")
    assert path["as_path"] == [64512, 65100] and path["origin"] == 1
    assert path["next_hop"] == BIRD_IP and path["local_pref"] is None

    # MD5 is really in force: BIRD's kernel drops an unsigned SYN from GoBGP's address.
    with netns_socket(gobgp_ns) as sock:
        sock.settimeout(1.0)
        sock.bind((GOBGP_IP, 0))
        with pytest.raises(TimeoutError):
            sock.connect((BIRD_IP, 179))
