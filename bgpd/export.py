"""Adj-RIB-Out, update groups and UPDATE generation (RFC 4271 §9.2, RFC 7911 ADD-PATH send).

Peers whose outbound policy is the same (``PeerPolicy``, families, ADD-PATH, codec context) form
an *update group*: the group computes one Adj-RIB-Out, and every change is encoded once per
attribute set and the same bytes go to every member. One per-member rule stays: a path is never
sent back to the peer it came from (RFC 4456 reflection would loop it back), so announcements
are bucketed by (attributes, source peer) and a member skips the buckets it is the source of.

Bytes are shared, not copied: a decision round's changes become one buffer for the whole group
(``Pieces``), handed to each member as it is, or without the spans the member is the source of;
the whole table for members that join is kept encoded per bucket of (attribute set, source) and
re-encoded only where it changed, so a thousand clients connecting at once cost one encoding.
Each member's UPDATEs leave in one socket write per loop tick (``Session.send_raw``).

A member whose socket write buffer passes ``HIGH_WATER`` is paused: instead of queueing more
bytes for it, the group remembers which entries changed (at most one mark per entry, so memory
is bounded by the table size) and replays their current state once the socket drains.

Entries are prefixes in wire form, or for ADD-PATH groups the 4-octet path identifier followed by
the prefix; path identifiers are allocated per (source peer, received path identifier).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bgpd.codec.messages import (
    CodecContext,
    encode_end_of_rib,
    encode_updates,
    encode_withdrawals,
)
from bgpd.codec.types import Afi, LongLivedGracefulRestart, PathAttributes, Safi
from bgpd.decision import PathSource
from bgpd.fsm_types import Negotiated
from bgpd.nexthop import wire_next_hop
from bgpd.policy import PeerPolicy, export_attributes, may_advertise
from bgpd.policy_filters import export_verdict, transit_blocked
from bgpd.rib import LocRib

PathsFor = Callable[[int, bytes], list[tuple[PathAttributes, PathSource, bytes]]]


class Outbound(Protocol):
    """The Established session a member's UPDATEs are written to (``bgpd.session.Session``)."""

    @property
    def address(self) -> str: ...

    def codec_context(self) -> CodecContext: ...

    def send_raw(
        self, frames: list[bytes], kind: str = "update", count: int | None = None,
        *, flush: bool = False,
    ) -> bool: ...  # fmt: skip

    def write_buffer_size(self) -> int: ...

    def when_drained(self, callback: Callable[[], None]) -> None: ...


class Peer(Protocol):
    """What export needs of a peer (``bgpd.speaker.Peer``): its session, policy, negotiation."""

    @property
    def session(self) -> Outbound: ...

    @property
    def policy(self) -> PeerPolicy | None: ...

    @property
    def negotiated(self) -> Negotiated | None: ...


log = logging.getLogger("podbgp.export")

HIGH_WATER = 4 << 20  # bytes queued on one socket before its member is paused
_CACHE_LIMIT = 100_000
_LLGR_STALE = 0xFFFF0006  # RFC 9494 (bgpd.llgr.LLGR_STALE)

Out = tuple[PathAttributes, str]  # exported attributes, source peer address ("" = local)
# (policy, families, ADD-PATH send, codec context, peer takes long-lived stale paths)
GroupKey = tuple[
    PeerPolicy, tuple[tuple[int, int], ...], frozenset[tuple[int, int]], CodecContext, bool
]


@dataclass(slots=True)
class Member:
    peer: Peer
    paused: bool = False
    dirty: dict[int, set[bytes]] = field(default_factory=dict)  # entries changed while paused


@dataclass(slots=True)
class Bucket:
    """The entries of a group's Adj-RIB-Out that share one exported attribute set and source,
    with their UPDATEs encoded once (``data``: messages back to back; None: to be encoded)."""

    attrs: PathAttributes
    source: str
    entries: dict[bytes, None] = field(default_factory=dict)  # an ordered set
    data: bytes | None = None
    count: int = 0


@dataclass(slots=True)
class Pieces:
    """Encoded UPDATEs for a whole group: one ``blob`` every member receives as it is, except
    a member that is the source of some of it, which gets the blob without those ``spans``
    (start, end, message count) — a path never goes back to the peer it came from."""

    blob: bytes = b""
    count: int = 0
    spans: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, parts: Iterable[tuple[str, bytes, int]]) -> Pieces:
        chunks: list[bytes] = []
        spans: dict[str, list[tuple[int, int, int]]] = {}
        pos = count = 0
        for source, data, n in parts:
            if not data:
                continue
            chunks.append(data)
            spans.setdefault(source, []).append((pos, pos + len(data), n))
            pos += len(data)
            count += n
        return cls(b"".join(chunks), count, spans)

    def for_member(self, address: str) -> tuple[list[bytes], int]:
        """What ``address`` receives: data (possibly several slices) and its message count."""
        own = self.spans.get(address)
        if own is None:
            return ([self.blob] if self.blob else []), self.count
        out: list[bytes] = []
        pos = 0
        count = self.count
        for start, end, n in own:
            if start > pos:
                out.append(self.blob[pos:start])
            pos = end
            count -= n
        if pos < len(self.blob):
            out.append(self.blob[pos:])
        return out, count


@dataclass(slots=True)
class Changes:
    """One export step of a group for one family, before per-member filtering."""

    announce: dict[Out, list[bytes]] = field(default_factory=dict)
    withdraw: dict[str, list[bytes]] = field(default_factory=dict)  # by old source
    # A member that became the source of an entry it had from elsewhere must withdraw it.
    member_withdraw: dict[str, list[bytes]] = field(default_factory=dict)
    touched: list[bytes] = field(default_factory=list)


class UpdateGroup:
    def __init__(self, key: GroupKey) -> None:
        self.key = key
        self.policy, self.families, self.add_path, self.ctx, self.llgr = key
        self.members: dict[str, Member] = {}
        self.adj_out: dict[int, dict[bytes, Out]] = {}
        self.entries_of: dict[int, dict[bytes, set[bytes]]] = {}  # ADD-PATH: prefix → entries
        self.synced = False
        # The Adj-RIB-Out by (attribute set identity, source), kept in step with ``adj_out``,
        # and the whole table encoded for new members (None: changed since last encoded).
        self.buckets: dict[int, dict[tuple[int, str], Bucket]] = {}
        self.table: dict[int, Pieces | None] = {}
        # Families whose Adj-RIB-Out is not up to date because the group's only member was the
        # source of every change (see ``Exporter.export``); caught up before a join.
        self.deferred: set[int] = set()

    def set_out(self, afi: int, out: dict[bytes, Out], entry: bytes, new: Out | None) -> None:
        """Change one Adj-RIB-Out entry (``new`` None: remove it), keeping the buckets."""
        buckets = self.buckets.setdefault(afi, {})
        old = out.pop(entry, None) if new is None else out.get(entry)
        if old is not None:
            key = (id(old[0]), old[1])
            bucket = buckets[key]
            del bucket.entries[entry]
            bucket.data = None
            if not bucket.entries:
                del buckets[key]
        if new is not None:
            out[entry] = new
            key = (id(new[0]), new[1])
            target = buckets.get(key)
            if target is None:
                target = buckets[key] = Bucket(new[0], new[1])
            target.entries[entry] = None
            target.data = None
        self.table[afi] = None


class Exporter:
    """Every update group of one speaker. Reads the Loc-RIB (and, for ADD-PATH groups, every
    eligible path through ``paths_for``); owns the Adj-RIBs-Out."""

    def __init__(self, loc_rib: LocRib, paths_for: PathsFor, router_id: str) -> None:
        self.loc_rib = loc_rib
        self.paths_for = paths_for
        self.router_id = router_id
        self.groups: dict[GroupKey, UpdateGroup] = {}
        self.group_of: dict[str, UpdateGroup] = {}
        self._interned: dict[PathAttributes, PathAttributes] = {}
        self._out_cache: dict[tuple[object, ...], PathAttributes | None] = {}
        self._path_ids: dict[tuple[str, bytes], bytes] = {}
        self.high_water = HIGH_WATER

    def intern(self, attrs: PathAttributes | None) -> PathAttributes | None:
        if attrs is None:
            return None
        found = self._interned.get(attrs)
        if found is not None:
            return found
        if len(self._interned) > _CACHE_LIMIT:
            self._interned.clear()
        self._interned[attrs] = attrs
        return attrs

    # --- membership ------------------------------------------------------------------------

    def _key(self, peer: Peer) -> GroupKey:
        assert peer.policy is not None and peer.negotiated is not None
        neg = peer.negotiated
        families = tuple(f for f in neg.families if f[1] == Safi.UNICAST)
        # RFC 9494 §4.3: long-lived stale paths go to peers that advertised the capability,
        # even empty (BIRD's "aware" mode).
        llgr = any(isinstance(c, LongLivedGracefulRestart) for c in neg.peer_capabilities)
        return (peer.policy, families, neg.add_path_send, peer.session.codec_context(), llgr)

    def send_full_table(self, peer: Peer, *, refresh: bool = False) -> None:
        """Join the peer to its update group and send it the group's Adj-RIB-Out."""
        address = peer.session.address
        group = self._join(peer)
        member = group.members[address]
        member.dirty.clear()
        for afi, safi in group.families:
            # Encoded once per table version: a hundred members joining at once cost one
            # encoding, not a hundred.
            data, count = self._table(group, afi).for_member(address)
            peer.session.send_raw(data, count=count)
            neg = peer.negotiated
            if neg is not None and neg.graceful_restart is not None and not refresh:
                peer.session.send_raw([encode_end_of_rib(afi, safi)])
        self._check_pressure(group, member)

    def _join(self, peer: Peer) -> UpdateGroup:
        """The peer's update group (joined, and its Adj-RIB-Out computed, if need be)."""
        address = peer.session.address
        group = self.group_of.get(address)
        if group is None:
            key = self._key(peer)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = UpdateGroup(key)
            else:
                self._catch_up(group)
            self.group_of[address] = group
            group.members[address] = Member(peer)
        if not group.synced:
            for afi, _safi in group.families:
                self._compute(group, afi, list(self.loc_rib.table(afi)))
            group.synced = True
        return group

    def _catch_up(self, group: UpdateGroup) -> None:
        """Compute the deferred families of ``group`` (a member is about to join). What this
        changes was invisible to the lone member (paths it is the source of), so normally
        nothing goes out; anything another source's path changed is still distributed."""
        deferred, group.deferred = group.deferred, set()
        for afi in deferred:
            loc, out = self.loc_rib.table(afi), group.adj_out.get(afi, {})
            changes = self._compute(group, afi, [*loc, *(p for p in out if p not in loc)])
            members = group.members.keys()
            if changes.member_withdraw or any(
                source not in members
                for source in (*changes.withdraw, *(v[1] for v in changes.announce))
            ):
                self._distribute(group, afi, changes)

    def regroup(self, peer: Peer) -> None:
        """The peer's outbound policy changed (a filter was edited): move it to the group of
        its new policy and send only the difference, without resetting the session."""
        address = peer.session.address
        old = self.group_of.get(address)
        if old is None:
            return
        before = self._member_view(old, address)
        self.forget(peer)
        group = self._join(peer)
        after = self._member_view(group, address)
        frames: list[bytes] = []
        for afi, _safi in group.families:
            was, now = before.get(afi, {}), after.get(afi, {})
            gone = [entry for entry in was if entry not in now]
            if gone:
                frames += self._withdraw(group, afi, gone)
            buckets: dict[Out, list[bytes]] = {}
            for entry, value in now.items():
                prior = was.get(entry)
                if prior is None or prior[0] != value[0]:
                    buckets.setdefault(value, []).append(entry)
            for value, entries in buckets.items():
                frames += self._encode(group, afi, value[0], entries)
        log.info("peer=%s event=policy-changed updates=%d", address, len(frames))
        if frames:
            peer.session.send_raw(frames)
        self._check_pressure(group, group.members[address])

    @staticmethod
    def _member_view(group: UpdateGroup, address: str) -> dict[int, dict[bytes, Out]]:
        """What a member of ``group`` has been sent: the Adj-RIB-Out less its own paths."""
        return {
            afi: {e: v for e, v in out.items() if v[1] != address}
            for afi, out in group.adj_out.items()
        }

    def _table(self, group: UpdateGroup, afi: int) -> Pieces:
        """The group's whole Adj-RIB-Out for ``afi``, encoded (re-encoding changed buckets)."""
        table = group.table.get(afi)
        if table is None:
            parts = []
            for bucket in group.buckets.get(afi, {}).values():
                if bucket.data is None:
                    frames = self._encode(group, afi, bucket.attrs, list(bucket.entries))
                    bucket.data = b"".join(frames)
                    bucket.count = len(frames)
                parts.append((bucket.source, bucket.data, bucket.count))
            table = group.table[afi] = Pieces.build(parts)
        return table

    def forget(self, peer: Peer) -> None:
        address = peer.session.address
        group = self.group_of.pop(address, None)
        if group is None:
            return
        group.members.pop(address, None)
        if not group.members:
            del self.groups[group.key]

    def advertised_count(self, peer: Peer) -> int:
        address = peer.session.address
        group = self.group_of.get(address)
        if group is None:
            return 0
        return sum(1 for out in group.adj_out.values() for v in out.values() if v[1] != address)

    # --- export ------------------------------------------------------------------------

    def export(
        self, afi: int, changed: list[bytes], touched: Iterable[bytes], source: str | None = None
    ) -> None:
        """Send the Loc-RIB changes (``changed``: best path changed; ``touched``: any path of
        the prefix changed, which matters to ADD-PATH groups) to every group. ``source``: the
        only peer with paths for the family, when so (``LocRib.sole_source``).

        A group whose only member is that peer, and holds nothing from anyone else, would send
        it nothing: the changes are deferred (the ingest of one peer's table into a speaker
        with no other peer costs no export), and caught up before another member joins."""
        for group in list(self.groups.values()):
            if not group.synced or (afi, Safi.UNICAST) not in group.families:
                continue
            add_path = (afi, Safi.UNICAST) in group.add_path
            if not (touched if add_path else changed):
                continue
            if source is not None and not add_path and self._lone(group, afi, source):
                group.deferred.add(afi)
                continue
            changes = self._compute(group, afi, touched if add_path else changed)
            if changes.touched:
                self._distribute(group, afi, changes)

    @staticmethod
    def _lone(group: UpdateGroup, afi: int, source: str) -> bool:
        """Whether ``source`` is the group's only member and the source of all it holds."""
        if len(group.members) != 1 or source not in group.members:
            return False
        return all(src == source for _id, src in group.buckets.get(afi, ()))

    def _compute(self, group: UpdateGroup, afi: int, prefixes: Iterable[bytes]) -> Changes:
        out = group.adj_out.setdefault(afi, {})
        changes = Changes()
        if (afi, Safi.UNICAST) in group.add_path:
            self._compute_add_path(group, afi, prefixes, out, changes)
            return changes
        loc = self.loc_rib.table(afi)
        # Loc-RIB entries are interned, so one export computation serves every prefix that
        # shares a best path (unless export rules look at the prefix); buckets are keyed by
        # identity for the same reason.
        per_prefix = group.policy.filters.prefix_dependent
        memo: dict[int, Out | None] = {}
        buckets: dict[int, list[bytes]] = {}
        values: dict[int, Out] = {}
        touched = changes.touched
        for prefix in prefixes:
            best = loc.get(prefix)
            if best is None:
                new = None
            else:
                key = id(best)
                if per_prefix:
                    new = self._outbound(best.attrs, best.source, group, afi, prefix)
                elif key in memo:
                    new = memo[key]
                else:
                    new = memo[key] = self._outbound(best.attrs, best.source, group, afi, prefix)
            old = out.get(prefix)
            if new is None:
                if old is not None:
                    group.set_out(afi, out, prefix, None)
                    changes.withdraw.setdefault(old[1], []).append(prefix)
                    touched.append(prefix)
                continue
            if old is new or (old is not None and old[0] is new[0] and old[1] == new[1]):
                continue
            group.set_out(afi, out, prefix, new)
            bucket = buckets.get(id(new))
            if bucket is None:
                bucket = buckets[id(new)] = []
                values[id(new)] = new
            bucket.append(prefix)
            touched.append(prefix)
            if old is not None and old[1] != new[1]:
                changes.member_withdraw.setdefault(new[1], []).append(prefix)
        for key, entries in buckets.items():
            changes.announce.setdefault(values[key], []).extend(entries)
        return changes

    def _compute_add_path(
        self, group: UpdateGroup, afi: int, prefixes: Iterable[bytes], out: dict[bytes, Out],
        changes: Changes,
    ) -> None:  # fmt: skip
        index = group.entries_of.setdefault(afi, {})
        for prefix in prefixes:
            wanted: dict[bytes, Out] = {}
            for attrs, source, rx_id in self.paths_for(afi, prefix):
                new = self._outbound(attrs, source, group, afi, prefix)
                if new is not None:
                    wanted[self._path_id(source.peer, rx_id) + prefix] = new
            for entry in index.pop(prefix, set()) - set(wanted):
                self._diff(group, afi, out, entry, None, changes)
            for entry, new in wanted.items():
                self._diff(group, afi, out, entry, new, changes)
            if wanted:
                index[prefix] = set(wanted)

    @staticmethod
    def _diff(
        group: UpdateGroup, afi: int, out: dict[bytes, Out], entry: bytes, new: Out | None,
        changes: Changes,
    ) -> None:  # fmt: skip
        old = out.get(entry)
        if new is None:
            if old is not None:
                group.set_out(afi, out, entry, None)
                changes.withdraw.setdefault(old[1], []).append(entry)
                changes.touched.append(entry)
            return
        if old is not None and old[0] is new[0] and old[1] == new[1]:
            return
        group.set_out(afi, out, entry, new)
        changes.announce.setdefault(new, []).append(entry)
        changes.touched.append(entry)
        if old is not None and old[1] != new[1]:
            changes.member_withdraw.setdefault(new[1], []).append(entry)

    def _path_id(self, source_peer: str, rx_id: bytes) -> bytes:
        key = (source_peer, rx_id)
        found = self._path_ids.get(key)
        if found is None:
            found = self._path_ids[key] = struct.pack("!I", len(self._path_ids) + 1)
        return found

    def _outbound(
        self, attrs: PathAttributes, source: PathSource, group: UpdateGroup, afi: int,
        prefix: bytes,
    ) -> Out | None:  # fmt: skip
        """The attributes of a path towards the group, or None if it may not go there.

        The group's filters run first (their operations see the path as we hold it), then the
        session's own changes: next hop, and on eBGP our AS prepended (as BIRD orders them).
        """
        policy = group.policy
        if not may_advertise(source, None, policy):
            return None
        if not group.llgr and _LLGR_STALE in attrs.communities:
            return None  # RFC 9494 §4.3: long-lived stale paths only to LLGR peers
        filters = policy.filters
        if filters.prefix_dependent:
            verdict = export_verdict(filters, policy.ebgp, afi, prefix, attrs, source)
            if verdict.attributes is None:
                return None
            attrs = verdict.attributes
        elif transit_blocked(filters, policy.ebgp, source):
            return None
        key = (attrs, source, policy, afi)
        try:
            exported = self._out_cache[key]
        except KeyError:
            exported = self.intern(
                export_attributes(attrs, source, policy, self.router_id, afi == Afi.IPV6)
            )
            if len(self._out_cache) > _CACHE_LIMIT:
                self._out_cache.clear()
            self._out_cache[key] = exported
        return None if exported is None else (exported, source.peer)

    # --- sending -----------------------------------------------------------------------

    def _distribute(self, group: UpdateGroup, afi: int, changes: Changes) -> None:
        """Encode the changes once for the whole group; every member gets the same bytes (less
        what it is the source of) in one write per loop tick."""
        parts: list[tuple[str, bytes, int]] = []
        for src, entries in changes.withdraw.items():
            frames = self._withdraw(group, afi, entries)
            parts.append((src, b"".join(frames), len(frames)))
        for value, entries in changes.announce.items():
            frames = self._encode(group, afi, value[0], entries)
            parts.append((value[1], b"".join(frames), len(frames)))
        pieces = Pieces.build(parts)
        # Most members are the source of nothing here: they all get the one shared buffer.
        shared = [pieces.blob] if pieces.blob else []
        special = pieces.spans.keys() | changes.member_withdraw.keys()
        high_water = self.high_water
        for address, member in group.members.items():
            if member.paused:
                member.dirty.setdefault(afi, set()).update(changes.touched)
                continue
            if address in special:
                data, count = pieces.for_member(address)
                own = changes.member_withdraw.get(address)
                if own:
                    frames = self._withdraw(group, afi, own)
                    data = [*frames, *data]
                    count += len(frames)
            else:
                data, count = shared, pieces.count
            if data:
                session = member.peer.session
                # The decision round is over: out now, with anything queued this tick.
                session.send_raw(data, count=count, flush=True)
                if session.write_buffer_size() >= high_water:
                    self._check_pressure(group, member)

    def _encode(
        self, group: UpdateGroup, afi: int, attrs: PathAttributes, entries: list[bytes]
    ) -> list[bytes]:
        if afi == Afi.IPV6 or (attrs.next_hop is not None and ":" in attrs.next_hop):
            # MP_REACH_NLRI: IPv6 routes, and IPv4 routes with an IPv6 next hop (RFC 8950).
            hop, policy = attrs.next_hop, group.policy
            # Our own global next hop goes with our link-local address on the link.
            link_local = policy.link_local if hop == policy.next_hop_v6 else None
            next_hop = wire_next_hop(hop, link_local) if hop else ()
            return encode_updates(attrs, entries, group.ctx, afi, next_hop)
        return encode_updates(attrs, entries, group.ctx, afi)

    @staticmethod
    def _withdraw(group: UpdateGroup, afi: int, entries: list[bytes]) -> list[bytes]:
        return encode_withdrawals(entries, group.ctx, afi)

    # --- slow peers --------------------------------------------------------------------

    def _check_pressure(self, group: UpdateGroup, member: Member) -> None:
        session = member.peer.session
        if member.paused or session.write_buffer_size() < self.high_water:
            return
        member.paused = True
        log.info("peer=%s event=paused buffered=%d", session.address, session.write_buffer_size())
        session.when_drained(lambda: self._resume(group, member))

    def _resume(self, group: UpdateGroup, member: Member) -> None:
        """Replay the current state of every entry that changed while the member was paused."""
        address = member.peer.session.address
        if group.members.get(address) is not member:
            return
        member.paused = False
        dirty, member.dirty = member.dirty, {}
        log.info("peer=%s event=resumed replay=%d", address, sum(len(d) for d in dirty.values()))
        for afi, entries in dirty.items():
            out = group.adj_out.get(afi, {})
            buckets: dict[Out, list[bytes]] = {}
            gone: list[bytes] = []
            for entry in entries:
                value = out.get(entry)
                if value is None or value[1] == address:
                    gone.append(entry)
                else:
                    buckets.setdefault(value, []).append(entry)
            frames = self._withdraw(group, afi, gone) if gone else []
            for value, items in buckets.items():
                frames += self._encode(group, afi, value[0], items)
            member.peer.session.send_raw(frames)
        self._check_pressure(group, member)
