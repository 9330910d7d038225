"""IPAM arithmetic and records: block enumeration, usable addresses, JSON form — pure."""

from __future__ import annotations

import ipaddress

import pytest

from podbgp.cluster import ipam
from podbgp.cluster.datastore import records
from podbgp.cluster.datastore.records import Block, Handle
from podbgp.cluster.resources import IPPool


def test_blocks_of_a_pool() -> None:
    pool = IPPool("p", "10.244.0.0/16", block_size=24)
    assert ipam.block_count(pool) == 256
    assert ipam.nth_block(pool, 0) == "10.244.0.0/24"
    assert ipam.nth_block(pool, 255) == "10.244.255.0/24"
    v6 = IPPool("p6", "fd00::/120", block_size=122)
    assert ipam.block_count(v6) == 4
    assert ipam.nth_block(v6, 3) == "fd00::c0/122"


def test_usable_addresses_skip_network_and_v4_broadcast() -> None:
    v4 = [str(a) for a in ipam.usable_addresses("10.0.0.0/29")]
    assert v4 == [f"10.0.0.{i}" for i in range(1, 7)]
    v6 = list(ipam.usable_addresses("fd00::/126"))
    assert [str(a) for a in v6] == ["fd00::1", "fd00::2", "fd00::3"]
    # /127 and /128 blocks hand out every address they have (RFC 6164).
    assert [str(a) for a in ipam.usable_addresses("fd00::4/127")] == ["fd00::4", "fd00::5"]
    assert [str(a) for a in ipam.usable_addresses("fd00::9/128")] == ["fd00::9"]


def test_next_free_address_fills_gaps_first() -> None:
    block = Block("10.0.0.0/29", "p", "n", (("10.0.0.1", "a"), ("10.0.0.3", "c")))
    assert ipam.next_free_address(block) == "10.0.0.2"
    full = Block("10.0.0.0/30", "p", "n", (("10.0.0.1", "a"), ("10.0.0.2", "b")))
    assert ipam.next_free_address(full) is None


def test_start_index_spreads_nodes_over_the_pool() -> None:
    starts = {ipam._start_index(f"node-{i}", 256) for i in range(20)}
    assert len(starts) > 15  # a hash, not a counter: collisions are rare but allowed
    assert all(0 <= s < 256 for s in starts)
    assert ipam._start_index("node-1", 256) == ipam._start_index("node-1", 256)


def test_block_json_round_trip_sorts_allocations_by_address() -> None:
    block = Block.from_json(
        {
            "cidr": "10.0.0.0/24",
            "pool": "p",
            "node": "n",
            "allocations": {"10.0.0.10": "b", "10.0.0.9": "a"},
        }
    )
    assert block.allocations == (("10.0.0.9", "a"), ("10.0.0.10", "b"))
    assert Block.from_json(block.to_json()) == block
    assert block.network == ipaddress.ip_network("10.0.0.0/24")
    handle = Handle("ctr.eth0", (("10.0.0.9", "10.0.0.0/24"),), "n")
    assert Handle.from_json(handle.to_json()) == handle


def test_a_handle_holds_one_address_per_family() -> None:
    handle = Handle("ctr.eth0", (("10.0.0.9", "10.0.0.0/24"),), "n")
    dual = handle.with_address("fd00::5", "fd00::/122")
    assert dual.address(4) == ("10.0.0.9", "10.0.0.0/24")
    assert dual.address(6) == ("fd00::5", "fd00::/122")
    assert Handle.from_json(dual.to_json()) == dual
    # A second address of a family replaces the first (a leaked one is re-assigned so).
    moved = dual.with_address("10.0.0.12", "10.0.0.0/24")
    assert moved.addresses == (("10.0.0.12", "10.0.0.0/24"), ("fd00::5", "fd00::/122"))
    assert handle.address(6) is None
    # Records written before handles held one address per family still read.
    old = {"handle": "h", "ip": "10.0.0.9", "block": "10.0.0.0/24", "node": "n"}
    assert Handle.from_json(old).addresses == (("10.0.0.9", "10.0.0.0/24"),)


def test_key_layout() -> None:
    assert records.block_key("10.244.1.0/24") == "ipam/blocks/10.244.1.0-24"
    assert records.affinity_key("node-1", "10.244.1.0/24") == "ipam/affinity/node-1/10.244.1.0-24"
    # Handles come from container runtimes: anything unsafe in a key path is quoted.
    assert records.handle_key("tunl0:node-1") == "ipam/handles/tunl0%3Anode-1"
    assert records.handle_key("a/b c") == "ipam/handles/a%2Fb%20c"


def test_the_cidr_a_key_names() -> None:
    assert records.cidr_of_key("ipam/blocks/10.244.1.0-24") == "10.244.1.0/24"
    assert records.cidr_of_key("ipam/affinity/node-1/fd00::c0-122") == "fd00::c0/122"
    with pytest.raises(ValueError, match="does not end in a block"):
        records.cidr_of_key("ipam/affinity/node-1/garbage")
    # What a node agent watches leaves the per-pod records out.
    assert records.WATCHED == ("resources/", "nodes/", "ipam/affinity/")
    assert not any(
        p.startswith(w) for p in (records.BLOCKS, records.HANDLES) for w in records.WATCHED
    )


def test_affinity_records_old_and_new() -> None:
    affinity = records.Affinity("10.0.1.0/24", "n1", "pool-a")
    assert records.Affinity.from_json(affinity.to_json()) == affinity
    assert records.Affinity.from_json({"cidr": "10.0.1.0/24", "node": "n1"}).pool == ""


def test_a_block_is_live_while_its_pool_exists_and_is_enabled() -> None:
    a = IPPool("a", "10.0.0.0/16")
    off = IPPool("off", "10.1.0.0/16", disabled=True)
    assert ipam.live_pool("10.0.3.0/24", "a", [a, off]) == a
    assert ipam.live_pool("10.0.3.0/24", "", [a, off]) == a  # found by address
    assert ipam.live_pool("10.1.3.0/24", "off", [a, off]) is None  # disabled
    assert ipam.live_pool("10.2.3.0/24", "gone", [a, off]) is None  # deleted
    assert ipam.live_pool("10.0.3.0/24", "renamed", [a]) is None  # its pool was replaced
