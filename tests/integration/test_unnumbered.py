"""Finding the neighbour on an unnumbered link, for real, in two namespaces joined by a veth
with only the kernel's link-local addresses: the all-nodes echo answers with the neighbour's
address; a neighbour that ignores multicast echo is still found in the kernel's neighbour table
once it has talked to us; an interface that does not exist is an OSError (the watcher retries)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.support.netns import NetnsFactory

pytestmark = [pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import asyncio, json, sys\n"
    "from bgpd.unnumbered import probe_link\n"
    "try:\n"
    "    print(json.dumps(asyncio.run(probe_link(sys.argv[1], 1.0))))\n"
    "except OSError as exc:\n"
    "    print(json.dumps({'error': str(exc)}))\n"
)


def probe(factory: NetnsFactory, ns: str, interface: str) -> object:
    started = time.monotonic()
    out = factory.run(ns, "env", f"PYTHONPATH={REPO}", sys.executable, "-c", PROBE, interface)
    print(f"probe {interface}: {time.monotonic() - started:.2f} s (process start included)")
    return json.loads(out.stdout)


def link_local(factory: NetnsFactory, ns: str, ifname: str) -> str:
    out = factory.run(ns, "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link")
    return out.stdout.split()[3].split("/")[0]


def test_probe_finds_the_neighbour_by_echo_then_by_neighbour_table(
    netns_factory: NetnsFactory,
) -> None:
    ns_p = netns_factory.namespace("p")
    ns_r = netns_factory.namespace("r")
    netns_factory.veth(ns_p, ns_r, ifname_a="uplink0", ifname_b="down0")
    theirs = link_local(netns_factory, ns_r, "down0")
    ours = link_local(netns_factory, ns_p, "uplink0")

    assert probe(netns_factory, ns_p, "uplink0") == [f"{theirs}%uplink0"]
    assert probe(netns_factory, ns_p, "nosuch0") == {"error": "no interface with this name"}

    # The neighbour stops answering multicast echo and we forget it: nothing to find ...
    netns_factory.run(ns_r, "sysctl", "-qw", "net.ipv6.icmp.echo_ignore_multicast=1")
    netns_factory.run(ns_p, "ip", "-6", "neigh", "flush", "dev", "uplink0")
    assert probe(netns_factory, ns_p, "uplink0") == []
    # ... until it talks to us (as a BGP speaker connecting would): the kernel learns it.
    netns_factory.run(ns_r, "ping", "-6", "-c", "1", "-W", "2", f"{ours}%down0")
    assert probe(netns_factory, ns_p, "uplink0") == [f"{theirs}%uplink0"]
