"""Adj-RIB-Out and UPDATE generation (RFC 4271 §9.2): from Loc-RIB changes to bytes on the wire.

For each Established peer and each changed prefix: may the best path go there (``may_advertise``),
with which attributes (``export_attributes``), and did that change from what the peer already has
(the peer's Adj-RIB-Out)? Announcements are grouped by attribute set so many prefixes share one
UPDATE, encoded once per group. Attribute sets are interned so identity checks are cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bgpd.codec.messages import encode_end_of_rib, encode_updates, encode_withdrawals
from bgpd.codec.types import Afi, PathAttributes, Safi
from bgpd.policy import export_attributes, may_advertise
from bgpd.rib import Best

if TYPE_CHECKING:
    from bgpd.speaker import Peer, Speaker

log = logging.getLogger("podbgp.export")

_CACHE_LIMIT = 100_000


class Exporter:
    def __init__(self, speaker: Speaker) -> None:
        self.speaker = speaker
        self.adj_out: dict[str, dict[int, dict[bytes, PathAttributes]]] = {}
        self._interned: dict[PathAttributes, PathAttributes] = {}
        self._out_cache: dict[tuple[object, ...], PathAttributes | None] = {}

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

    def forget(self, peer: Peer) -> None:
        self.adj_out.pop(peer.session.address, None)

    def advertised_count(self, peer: Peer) -> int:
        tables = self.adj_out.get(peer.session.address, {})
        return sum(len(t) for t in tables.values())

    # --- export ------------------------------------------------------------------------

    def export(self, afi: int, prefixes: list[bytes]) -> None:
        for peer in self.speaker.peers.values():
            if peer.generation and peer.policy is not None:
                self._export_to(peer, afi, prefixes)

    def send_full_table(self, peer: Peer, *, refresh: bool = False) -> None:
        """Send the whole Loc-RIB to a peer that just came up (or asked for a refresh)."""
        self.adj_out[peer.session.address] = {}
        neg = peer.negotiated
        if neg is None:
            return
        for afi, safi in neg.families:
            if safi != Safi.UNICAST:
                continue
            self._export_to(peer, afi, list(self.speaker.loc_rib.table(afi)))
            if neg.graceful_restart is not None and not refresh:
                peer.session.send_raw([encode_end_of_rib(afi, safi)])

    def _export_to(self, peer: Peer, afi: int, prefixes: Iterable[bytes]) -> None:
        neg = peer.negotiated
        if neg is None or (afi, Safi.UNICAST) not in neg.families:
            return
        tables = self.adj_out.setdefault(peer.session.address, {})
        out = tables.setdefault(afi, {})
        loc = self.speaker.loc_rib.table(afi)
        groups: dict[PathAttributes, list[bytes]] = {}
        withdrawn: list[bytes] = []
        for prefix in prefixes:
            best = loc.get(prefix)
            attrs = self._outbound(best, peer, afi) if best is not None else None
            old = out.get(prefix)
            if attrs is None:
                if old is not None:
                    del out[prefix]
                    withdrawn.append(prefix)
            elif old is not attrs:
                out[prefix] = attrs
                group = groups.get(attrs)
                if group is None:
                    groups[attrs] = [prefix]
                else:
                    group.append(prefix)
        self._send(peer, afi, groups, withdrawn)

    def _outbound(self, best: Best, peer: Peer, afi: int) -> PathAttributes | None:
        policy = peer.policy
        assert policy is not None
        if not may_advertise(best.source, peer.session.address, policy):
            return None
        key = (best.attrs, best.source, policy, afi)
        try:
            return self._out_cache[key]
        except KeyError:
            pass
        attrs = self.intern(
            export_attributes(
                best.attrs, best.source, policy, self.speaker.config.router_id, afi == Afi.IPV6
            )
        )
        if len(self._out_cache) > _CACHE_LIMIT:
            self._out_cache.clear()
        self._out_cache[key] = attrs
        return attrs

    def _send(
        self,
        peer: Peer,
        afi: int,
        groups: dict[PathAttributes, list[bytes]],
        withdrawn: list[bytes],
    ) -> None:
        session = peer.session
        ctx = session.codec_context()
        frames: list[bytes] = []
        if withdrawn:
            frames.extend(encode_withdrawals(withdrawn, ctx, afi))
        for attrs, prefixes in groups.items():
            if afi == Afi.IPV6:
                next_hop = (attrs.next_hop,) if attrs.next_hop else ()
                frames.extend(encode_updates(attrs, prefixes, ctx, afi, next_hop))
            else:
                frames.extend(encode_updates(attrs, prefixes, ctx, afi))
        if frames:
            session.send_raw(frames)
