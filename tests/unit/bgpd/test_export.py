"""Update groups without sockets: what each member is handed, and how often.

A real ``Speaker`` and ``Exporter`` with recording stand-ins for sessions: prefixes that share
an attribute set go to a member as one UPDATE in one hand-over, every member of the group gets
the very same bytes, a member never gets back what it sent, and a member joining late gets the
whole table from one encoding shared with the next joiner.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bgpd.codec.messages import CodecContext, Framer, decode_message
from bgpd.codec.types import Afi, Origin, PathAttributes, Safi, Update, prefix_from_str
from bgpd.events import BestRouteChange
from bgpd.fsm import Negotiated
from bgpd.speaker import FLUSH_CHUNK, Peer, PeerSpec, Speaker, SpeakerConfig

ASN = 64512
RR = "192.0.2.1"


@dataclass
class RecordingSession:
    """Just what the exporter uses of a session; records every hand-over."""

    address: str
    generation: int = 1
    handed: list[tuple[list[bytes], int]] = field(default_factory=list)

    def send_raw(
        self,
        frames: list[bytes],
        kind: str = "update",
        count: int | None = None,
        flush: bool = False,
    ) -> bool:
        self.handed.append((list(frames), len(frames) if count is None else count))
        return True

    def write_buffer_size(self) -> int:
        return 0

    def when_drained(self, callback: object) -> None:
        raise AssertionError("never paused here")

    def codec_context(self) -> CodecContext:
        return CodecContext()

    def updates(self, since: int = 0) -> list[Update]:
        out = []
        for frames, _count in self.handed[since:]:
            for frame in Framer().feed(b"".join(frames)):
                message = decode_message(frame)
                assert isinstance(message, Update)
                out.append(message)
        return out


def negotiated(router_id: str) -> Negotiated:
    return Negotiated(
        peer_asn=ASN, peer_router_id=router_id, hold_time=90, keepalive_time=30,
        four_octet_as=True, extended_message=False, route_refresh=True,
        families=((Afi.IPV4, Safi.UNICAST),), graceful_restart=None,
        add_path_receive=frozenset(), add_path_send=frozenset(), peer_capabilities=(),
    )  # fmt: skip


def client(speaker: Speaker, address: str) -> RecordingSession:
    session = RecordingSession(address)
    spec = PeerSpec(address=address, asn=ASN, passive=True, rr_client=True)
    speaker.peers[address] = Peer(spec, session)  # type: ignore[arg-type]
    speaker.session_up(session, negotiated(address), RR)  # type: ignore[arg-type]
    return session


def announce(speaker: Speaker, address: str, prefixes: list[str]) -> None:
    attrs = PathAttributes(origin=Origin.IGP, next_hop=address, local_pref=100)
    nlri = tuple(prefix_from_str(p)[1] for p in prefixes)
    peer = speaker.peers[address]
    speaker._handle(peer, peer.generation, Update(attributes=attrs, nlri=nlri), 0.0)
    speaker._flush()


def reflector() -> Speaker:
    return Speaker(SpeakerConfig(asn=ASN, router_id=RR, graceful_restart=False, cluster_id=RR))


async def test_prefixes_with_one_attribute_set_go_out_as_one_update_in_one_hand_over() -> None:
    speaker = reflector()
    a, b, c = (client(speaker, f"192.0.2.{i}") for i in (10, 11, 12))
    before = {s.address: len(s.handed) for s in (a, b, c)}
    blocks = [f"10.244.{i}.0/24" for i in range(50)]
    announce(speaker, a.address, blocks)

    for member in (b, c):
        new = member.handed[before[member.address] :]
        assert len(new) == 1, "one hand-over per member for one change"
        updates = member.updates(before[member.address])
        assert len(updates) == 1, "50 prefixes, one attribute set: one UPDATE"
        assert sorted(updates[0].nlri) == sorted(prefix_from_str(p)[1] for p in blocks)
        assert new[0][1] == 1
    # Encoded once for the group: both members were handed the same bytes object.
    assert b.handed[-1][0][0] is c.handed[-1][0][0]
    # Never back to the peer it came from.
    assert len(a.handed) == before[a.address]


async def test_a_source_member_gets_the_shared_update_without_its_own_routes() -> None:
    speaker = reflector()
    a, b, c = (client(speaker, f"192.0.2.{i}") for i in (10, 11, 12))
    # Two sources in one decision round: each member gets the other's routes only.
    for address, prefix in ((a.address, "10.244.1.0/24"), (b.address, "10.244.2.0/24")):
        attrs = PathAttributes(origin=Origin.IGP, next_hop=address, local_pref=100)
        peer = speaker.peers[address]
        update = Update(attributes=attrs, nlri=(prefix_from_str(prefix)[1],))
        speaker._handle(peer, peer.generation, update, 0.0)
    marks = {s.address: len(s.handed) for s in (a, b, c)}
    speaker._flush()

    def got(session: RecordingSession) -> set[bytes]:
        return {p for u in session.updates(marks[session.address]) for p in u.nlri}

    assert got(a) == {prefix_from_str("10.244.2.0/24")[1]}
    assert got(b) == {prefix_from_str("10.244.1.0/24")[1]}
    assert got(c) == {prefix_from_str(p)[1] for p in ("10.244.1.0/24", "10.244.2.0/24")}
    assert [n for _, n in c.handed[marks[c.address] :]] == [2]


async def test_late_joiners_share_one_encoding_of_the_table_and_skip_their_own() -> None:
    speaker = reflector()
    a = client(speaker, "192.0.2.10")
    announce(speaker, a.address, [f"10.244.{i}.0/24" for i in range(10)])
    b, c = (client(speaker, f"192.0.2.{i}") for i in (11, 12))
    # The table did not change between the two joins: one encoding, the same bytes.
    assert b.handed[-1][0][0] is c.handed[-1][0][0]
    assert {p for u in b.updates() for p in u.nlri} == {
        prefix_from_str(f"10.244.{i}.0/24")[1] for i in range(10)
    }
    announce(speaker, b.address, ["10.245.0.0/24"])
    d = client(speaker, "192.0.2.13")
    mark = len(b.handed)
    speaker.exporter.send_full_table(speaker.peers[b.address], refresh=True)
    # A route refresh: b's table is everything but its own route.
    table_b = {p for u in b.updates(mark) for p in u.nlri}
    assert table_b == {prefix_from_str(f"10.244.{i}.0/24")[1] for i in range(10)}
    table_d = {p for u in d.updates() for p in u.nlri}
    assert table_d == table_b | {prefix_from_str("10.245.0.0/24")[1]}


async def test_best_route_change_carries_the_oldest_receive_time_of_its_decision_run() -> None:
    speaker = reflector()
    a, b = (client(speaker, f"192.0.2.{i}") for i in (10, 11))
    events: list[BestRouteChange] = []
    speaker.subscribe(lambda e: events.append(e) if isinstance(e, BestRouteChange) else None)
    for address, prefix, received in (
        (a.address, "10.244.1.0/24", 7.5),
        (b.address, "10.244.2.0/24", 3.25),
    ):
        attrs = PathAttributes(origin=Origin.IGP, next_hop=address, local_pref=100)
        peer = speaker.peers[address]
        update = Update(attributes=attrs, nlri=(prefix_from_str(prefix)[1],))
        speaker._handle(peer, peer.generation, update, received)
    speaker._flush()
    assert sorted((e.prefix, e.received) for e in events) == [
        ("10.244.1.0/24", 3.25),
        ("10.244.2.0/24", 3.25),
    ]
    # A change no UPDATE caused (a block originated here) carries no receive time.
    speaker.originate("10.244.3.0/24")
    speaker._flush()
    assert events[-1] == BestRouteChange(Afi.IPV4, "10.244.3.0/24", None, local=True)


async def test_a_large_change_is_decided_in_chunks_across_loop_iterations() -> None:
    speaker = reflector()
    a = client(speaker, "192.0.2.10")
    n = FLUSH_CHUNK * 2 + 10
    blocks = [f"10.{i >> 8}.{i & 0xFF}.0/24" for i in range(n)]
    attrs = PathAttributes(origin=Origin.IGP, next_hop=a.address, local_pref=100)
    peer = speaker.peers[a.address]
    update = Update(attributes=attrs, nlri=tuple(prefix_from_str(p)[1] for p in blocks))
    speaker._handle(peer, peer.generation, update, 1.0)
    events: list[BestRouteChange] = []
    speaker.subscribe(lambda e: events.append(e) if isinstance(e, BestRouteChange) else None)
    speaker._flush()
    assert len(speaker.loc_rib.table(Afi.IPV4)) == FLUSH_CHUNK  # the rest waits its turn
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(speaker.loc_rib.table(Afi.IPV4)) == n
    assert len(events) == n and all(e.received == 1.0 for e in events)
