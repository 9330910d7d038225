"""The speaker's batched best-route events against its per-prefix ones.

A real ``Speaker`` with two client sessions (recording stand-ins, see test_export) is fed
announcements, withdrawals and originations with flushes at random points and a small flush
chunk. A batched subscriber and a per-prefix subscriber listen side by side: the batches,
split, must be exactly the per-prefix events in the same order; each batch names a prefix at
most once, with the Loc-RIB state at the moment it is published (a prefix changed twice
before a flush carries its final state).
"""

from __future__ import annotations

from ipaddress import ip_network
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import speaker as speaker_module
from bgpd.codec.types import (
    Afi,
    Origin,
    PathAttributes,
    Safi,
    Update,
    prefix_from_str,
    prefix_to_str,
)
from bgpd.events import (
    BestRouteChange,
    BestRouteChanges,
    EndOfRib,
    SpeakerEvent,
    best_route_changes,
    one_by_one,
)
from bgpd.speaker import Speaker
from tests.unit.bgpd.test_export import client, reflector
from tests.unit.bgpd.test_rib_runs_properties import ADDRESSES, PREFIXES, TEXT, apply, changes

HOPS = ["192.0.2.10", "192.0.2.11", "192.0.2.99"]
Table = dict[bytes, tuple[str | None, bool]]  # the Loc-RIB as events see it


def attrs(hop: str) -> PathAttributes:
    return PathAttributes(origin=Origin.IGP, next_hop=hop, local_pref=100)


def listen(speaker: Speaker) -> tuple[list[tuple[BestRouteChanges, Table]], list[SpeakerEvent]]:
    """A batched subscriber (each batch with the Loc-RIB as it was then) and a per-prefix one."""
    batches: list[tuple[BestRouteChanges, Table]] = []
    singles: list[SpeakerEvent] = []

    def batched(event: SpeakerEvent) -> None:
        assert not isinstance(event, BestRouteChange), "a batched subscriber gets batches"
        if isinstance(event, BestRouteChanges):
            table = speaker.loc_rib.table(event.afi)
            now: Table = {
                p: (None, True) if b.source.local else (str(b.attrs.next_hop), False)
                for p, b in table.items()
            }
            batches.append((event, now))

    speaker.subscribe(batched, batched=True)
    speaker.subscribe(singles.append)
    return batches, singles


def flush_all(speaker: Speaker) -> None:
    for _ in range(100):
        speaker._flush()
        if not (speaker._dirty or speaker._runs):
            return
    raise AssertionError("the speaker did not settle in 100 flushes")


@settings(max_examples=200, deadline=None)
@given(ops=changes, chunk=st.integers(1, 5))
async def test_batches_carry_the_per_prefix_events_in_order_each_prefix_once_final(
    ops: list[tuple[int, list[int], int | None, bool]], chunk: int
) -> None:
    with mock.patch.object(speaker_module, "FLUSH_CHUNK", chunk):
        speaker = reflector()
        for address in ADDRESSES:
            client(speaker, address)
        batches, singles = listen(speaker)
        for who, indices, choice, flush in ops:
            apply(speaker, who, indices, choice, 1.0 + len(batches))
            if flush:
                flush_all(speaker)
        flush_all(speaker)

    split = [e for batch, _ in batches for e in batch.events()]
    assert split == [e for e in singles if isinstance(e, BestRouteChange)]
    for batch, table in batches:
        assert len(batch) > 0 and len(set(batch.prefixes)) == len(batch)
        assert all(e.received == batch.received for e in batch.events())
        for prefix, next_hop, local in zip(
            batch.prefixes, batch.next_hops, batch.local, strict=True
        ):
            wire = prefix_from_str(prefix)[1]
            assert (next_hop, local) == table.get(wire, (None, False))
            assert next_hop is None or not local  # a dataplane may read (prefix, next hop) alone


async def test_a_prefix_changed_twice_before_a_flush_is_published_once_in_its_final_state() -> None:
    speaker = reflector()
    a = client(speaker, ADDRESSES[0])
    batches, singles = listen(speaker)
    peer = speaker.peers[a.address]
    nlri = (PREFIXES[0], PREFIXES[1])
    speaker._handle(peer, peer.generation, Update(attributes=attrs(HOPS[0]), nlri=nlri), 2.0)
    speaker._handle(peer, peer.generation, Update(attributes=attrs(HOPS[2]), nlri=nlri[:1]), 3.0)
    speaker._handle(peer, peer.generation, Update(withdrawn=nlri[1:]), 4.0)
    speaker.originate(TEXT[2])
    flush_all(speaker)
    ((batch, _),) = batches
    assert sorted(zip(batch.prefixes, batch.next_hops, batch.local, strict=True)) == [
        (TEXT[0], HOPS[2], False),  # the second UPDATE's next hop, once
        (TEXT[2], None, True),  # our own block
    ]  # TEXT[1] came and went within the step: no change to publish
    assert batch.afi == Afi.IPV4 and batch.received == 2.0
    assert [e for e in singles if isinstance(e, BestRouteChange)] == list(batch.events())


def test_a_per_prefix_subscriber_that_fails_on_one_change_still_gets_the_rest() -> None:
    seen: list[str] = []

    def sink(event: SpeakerEvent) -> None:
        if isinstance(event, BestRouteChange) and event.prefix == TEXT[0]:
            raise RuntimeError("boom")
        seen.append(event.prefix if isinstance(event, BestRouteChange) else type(event).__name__)

    split = one_by_one(sink)
    split(BestRouteChanges(Afi.IPV4, (TEXT[0], TEXT[1]), ("192.0.2.10", None), (False, False)))
    split(EndOfRib("192.0.2.10", Afi.IPV4, Safi.UNICAST))
    assert seen == [TEXT[1], "EndOfRib"]


def test_prefix_text_in_a_batch_is_the_codec_text_for_every_length_and_family() -> None:
    wires = {
        Afi.IPV4: [
            prefix_from_str(str(ip_network(f"203.0.113.255/{n}", False)))[1] for n in range(33)
        ],
        Afi.IPV6: [
            prefix_from_str(str(ip_network(f"2001:db8::ff/{n}", False)))[1] for n in range(129)
        ],
    }
    for afi, prefixes in wires.items():
        batch = best_route_changes(afi, prefixes, {}, None)
        assert batch.prefixes == tuple(prefix_to_str(afi, w) for w in prefixes)
        assert batch.next_hops == (None,) * len(prefixes)
