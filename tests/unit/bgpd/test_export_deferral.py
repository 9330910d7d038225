"""Export work that cannot produce output is deferred, and caught up when someone can listen.

An update group whose only member is the source of a prefix's best path would send that member
nothing for it, so the group leaves its Adj-RIB-Out entry alone (the ingest of one peer's table
into a speaker with no other peer). A peer that joins later must still get the whole table, and
a change the lone member can see (the withdrawal of another peer's route) must still reach it.
"""

from __future__ import annotations

from bgpd.codec.types import Afi, Update, prefix_from_str
from bgpd.fsm_types import SessionDown
from tests.unit.bgpd.test_export import announce, client, reflector


def wire(prefixes: list[str]) -> set[bytes]:
    return {prefix_from_str(p)[1] for p in prefixes}


async def test_a_lone_source_defers_its_export_and_a_late_joiner_gets_the_whole_table() -> None:
    speaker = reflector()
    a = client(speaker, "192.0.2.10")
    blocks = [f"10.244.{i}.0/24" for i in range(200)]
    announce(speaker, a.address, blocks)
    group = speaker.exporter.group_of[a.address]
    # Nothing computed for a's own routes: the group's Adj-RIB-Out stays empty.
    assert group.adj_out.get(Afi.IPV4, {}) == {}
    assert group.deferred == {Afi.IPV4}
    handed = len(a.handed)
    # a withdraws some while alone; the late joiner gets exactly what is left.
    withdrawn = blocks[:50]
    peer = speaker.peers[a.address]
    speaker._handle(peer, peer.generation, Update(withdrawn=tuple(wire(withdrawn))), 0.0)
    speaker._flush()
    b = client(speaker, "192.0.2.11")
    assert {p for u in b.updates() for p in u.nlri} == wire(blocks[50:])
    assert not any(u.withdrawn for u in b.updates())
    assert len(a.handed) == handed, "the lone source is sent nothing"
    assert not group.deferred
    assert set(group.adj_out[Afi.IPV4]) == wire(blocks[50:])
    # With two members nothing is deferred: b's next route reaches a at once.
    announce(speaker, b.address, ["10.245.0.0/24"])
    assert {p for u in a.updates(handed) for p in u.nlri} == wire(["10.245.0.0/24"])


async def test_the_lone_member_still_gets_the_withdrawal_of_another_peers_route() -> None:
    speaker = reflector()
    a = client(speaker, "192.0.2.10")
    b = client(speaker, "192.0.2.11")
    announce(speaker, b.address, ["10.246.0.0/24"])
    assert {p for u in a.updates() for p in u.nlri} == wire(["10.246.0.0/24"])
    # a has routes of its own, so once b is gone a is the only peer with paths: the decision
    # is a's alone, but the withdrawal of b's route is a change a can see.
    announce(speaker, a.address, ["10.248.0.0/24"])
    mark = len(a.handed)
    speaker.session_down(b, SessionDown("test", None, None))  # type: ignore[arg-type]
    speaker._flush()
    assert speaker.loc_rib.sole_source == a.address
    assert {p for u in a.updates(mark) for p in u.withdrawn} == wire(["10.246.0.0/24"])
    assert not any(u.nlri for u in a.updates(mark))


async def test_a_lone_member_whose_own_path_replaces_ours_gets_our_route_withdrawn() -> None:
    # a holds our route for the prefix; when a's own path becomes the best, a must be told to
    # drop ours (the entry it had came from elsewhere): that change is not deferred.
    speaker = reflector()
    a = client(speaker, "192.0.2.10")
    speaker.originate("10.247.0.0/24")
    speaker._flush()
    assert {p for u in a.updates() for p in u.nlri} == wire(["10.247.0.0/24"])
    announce(speaker, a.address, ["10.247.0.0/24"])  # ours still wins (locally originated)
    mark = len(a.handed)
    speaker.withdraw_origin("10.247.0.0/24")
    speaker._flush()
    best = speaker.loc_rib.table(Afi.IPV4)[prefix_from_str("10.247.0.0/24")[1]]
    assert best.source.peer == a.address
    assert {p for u in a.updates(mark) for p in u.withdrawn} == wire(["10.247.0.0/24"])
