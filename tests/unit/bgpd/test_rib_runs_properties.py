"""The speaker's shortcut for prefixes new to a peer (runs, stored with no decision when that
peer is the only source) leaves the Loc-RIB and the events as deciding every prefix would.

A real ``Speaker`` with two client sessions (recording stand-ins, see test_export) is fed
UPDATE-like changes — many prefixes with one path, repeats, withdrawals, a second peer, our own
originations — with flushes at random points and a small flush chunk (so runs are split across
flushes). After every flush, each Loc-RIB entry must be the winner of ``best_path`` over every
eligible path, and the best-route events since the previous check must name exactly the
prefixes whose best path changed, each once.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import speaker as speaker_module
from bgpd.codec.types import Afi, Origin, PathAttributes, Update, prefix_from_str
from bgpd.decision import best_path
from bgpd.events import BestRouteChange
from bgpd.speaker import Speaker
from tests.unit.bgpd.test_export import client, reflector
from tests.unit.bgpd.test_rib_bulk_properties import moved

TEXT = [f"10.244.{i}.0/24" for i in range(10)]
PREFIXES = [prefix_from_str(p)[1] for p in TEXT]
ADDRESSES = ["192.0.2.10", "192.0.2.11"]

# (who: 0/1 a peer, -1 our own origination; prefix indices; attribute choice or None to
# withdraw; flush afterwards)
changes = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 1, -1]),
        st.lists(st.integers(0, 9), min_size=1, max_size=12),
        st.none() | st.integers(0, 2),
        st.booleans(),
    ),
    min_size=1,
    max_size=25,
)


def attributes(choice: int, address: str) -> PathAttributes:
    return PathAttributes(
        origin=Origin.IGP if choice < 2 else Origin.EGP,
        next_hop=address,
        local_pref=100 if choice != 1 else 200,
    )


def apply(
    speaker: Speaker, who: int, indices: list[int], choice: int | None, received: float = 1.0
) -> None:
    """One change of ``changes``: our own originations, or an UPDATE from a peer."""
    if who < 0:
        for i in indices:
            if choice is None:
                speaker.withdraw_origin(TEXT[i])
            else:
                speaker.originate(TEXT[i], attributes(choice, "192.0.2.1"))
        return
    peer = speaker.peers[ADDRESSES[who]]
    nlri = tuple(PREFIXES[i] for i in indices)
    if choice is None:
        update = Update(withdrawn=nlri)
    else:
        update = Update(attributes=attributes(choice, ADDRESSES[who]), nlri=nlri)
    speaker._handle(peer, peer.generation, update, received)


@settings(max_examples=300, deadline=None)
@given(ops=changes, chunk=st.integers(1, 6))
async def test_runs_leave_the_loc_rib_and_events_as_deciding_would(
    ops: list[tuple[int, list[int], int | None, bool]], chunk: int
) -> None:
    with mock.patch.object(speaker_module, "FLUSH_CHUNK", chunk):
        speaker = reflector()
        for address in ADDRESSES:
            client(speaker, address)
        events: list[bytes] = []
        speaker.subscribe(
            lambda e: (
                events.append(prefix_from_str(e.prefix)[1])
                if isinstance(e, BestRouteChange)
                else None
            )
        )
        before: dict[bytes, tuple[object, object]] = {}
        for who, indices, choice, flush in ops:
            apply(speaker, who, indices, choice)
            if not flush:
                continue
            rounds = 0
            while True:
                speaker._flush()
                rounds += 1
                if not (speaker._dirty or speaker._runs):
                    break
                assert rounds < 100
            best = speaker.loc_rib.table(Afi.IPV4)
            for prefix in PREFIXES:
                paths = speaker.paths_for(Afi.IPV4, prefix)
                if not paths:
                    assert prefix not in best
                    continue
                (attrs, source), reason = best_path([(a, s) for a, s, _id in paths])
                assert best[prefix].attrs is attrs and best[prefix].source == source
                assert best[prefix].reason == reason
            after: dict[bytes, tuple[object, object]] = {
                q: (b.attrs, b.source) for q, b in best.items()
            }
            assert sorted(events) == sorted(moved(before, after))
            events.clear()
            before = after


async def test_a_run_whose_peer_went_stale_before_the_flush_is_decided_stale() -> None:
    # Graceful restart marks the peer's paths stale (no prefix made dirty) between the UPDATE
    # and the flush: the Loc-RIB must hold them as stale, not as the run's fresh paths.
    speaker = reflector()
    client(speaker, ADDRESSES[0])
    peer = speaker.peers[ADDRESSES[0]]
    update = Update(attributes=attributes(0, ADDRESSES[0]), nlri=tuple(PREFIXES))
    speaker._handle(peer, peer.generation, update, 1.0)
    assert speaker._runs, "the new prefixes wait as a run"
    peer.adj_in.mark_stale([Afi.IPV4])
    speaker._flush()
    best = speaker.loc_rib.table(Afi.IPV4)
    assert set(best) == set(PREFIXES)
    assert all(entry.stale for entry in best.values())
