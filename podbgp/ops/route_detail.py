"""Every attribute of a path, as BIRD's ``show route all`` shows it, and ``/v1/routes?detail=1``:
every path the speaker holds for a prefix (not only the best), with the import filter rule that
accepted, changed or rejected it.

Built on request from the speaker's state (read-only); nothing here runs on the UPDATE path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

from bgpd.codec.types import PathAttributes, SegmentType, prefix_to_str
from bgpd.import_rib import FilteredAdjRibIn
from podbgp.ops.schema import RouteView

if TYPE_CHECKING:
    from bgpd.speaker import Peer, Speaker

# RFC 4360 §4 / RFC 7153: AS-specific route target and route origin, as BIRD writes them.
_EXT_NAMES = {(0x00, 0x02): "rt", (0x00, 0x03): "ro", (0x02, 0x02): "rt", (0x02, 0x03): "ro"}


def as_path_text(attrs: PathAttributes) -> str:
    parts: list[str] = []
    for seg_type, asns in attrs.as_path:
        text = " ".join(str(a) for a in asns)
        parts.append("{" + text + "}" if seg_type == SegmentType.AS_SET else text)
    return " ".join(parts)


def extended_community_text(value: int) -> str:
    """``rt:65000:1`` for a 2-/4-octet-AS route target (``ro:`` route origin), else hex."""
    kind, sub = value >> 56, (value >> 48) & 0xFF
    name = _EXT_NAMES.get((kind, sub))
    if name is None:
        return f"0x{value:016x}"
    if kind == 0x00:  # 2-octet AS, 4-octet local administrator
        return f"{name}:{(value >> 32) & 0xFFFF}:{value & 0xFFFFFFFF}"
    return f"{name}:{(value >> 16) & 0xFFFFFFFF}:{value & 0xFFFF}"  # 4-octet AS, 2-octet value


def attributes_view(attrs: PathAttributes) -> dict[str, Any]:
    """Every attribute of a path (the keys of :class:`~podbgp.ops.schema.RouteView`)."""
    agg = attrs.aggregator
    return {
        "nextHop": attrs.next_hop,
        "asPath": as_path_text(attrs),
        "origin": cast(Literal["igp", "egp", "incomplete"], attrs.origin.name.lower()),
        "localPref": attrs.local_pref,
        "med": attrs.med,
        "communities": [f"{c >> 16}:{c & 0xFFFF}" for c in attrs.communities],
        "largeCommunities": [f"{a}:{b}:{c}" for a, b, c in attrs.large_communities],
        "originatorId": attrs.originator_id,
        "clusterList": list(attrs.cluster_list),
        "atomicAggregate": attrs.atomic_aggregate,
        "aggregator": f"{agg.asn} {agg.address}" if agg is not None else None,
        "extendedCommunities": [extended_community_text(v) for v in attrs.extended_communities],
        "unknown": [
            {"code": u.type_code, "flags": u.flags, "value": u.value.hex()} for u in attrs.unknown
        ],
    }


def detail_routes(speaker: Speaker) -> list[RouteView]:
    """Every path of every prefix: our own, then each peer's as received, with its fate."""
    out: list[RouteView] = []
    families = {*speaker.loc_rib.best, *speaker.originated}
    for peer in speaker.peers.values():
        families |= set(_received(peer).routes)
    for afi in sorted(families):
        best = speaker.loc_rib.table(afi)
        by_prefix: dict[bytes, list[RouteView]] = {}
        for prefix, attrs in speaker.originated.get(afi, {}).items():
            chosen = best.get(prefix)
            view = _path(afi, prefix, attrs, "local", "originated")
            view["best"] = chosen is not None and chosen.source.local
            by_prefix.setdefault(prefix, []).append(view)
        for peer in speaker.peers.values():
            for prefix, view in _peer_paths(speaker, peer, afi):
                chosen = best.get(prefix)
                view["best"] = (
                    chosen is not None
                    and chosen.source.peer == peer.session.address
                    and view["policy"].startswith("accepted")
                )
                if chosen is not None and view["best"]:
                    view["reason"] = str(chosen.reason)
                by_prefix.setdefault(prefix, []).append(view)
        for prefix in sorted(by_prefix):
            out.extend(by_prefix[prefix])
    return out


def _received(peer: Peer) -> Any:
    adj = peer.adj_in
    return adj.received if isinstance(adj, FilteredAdjRibIn) else adj


def _peer_paths(speaker: Speaker, peer: Peer, afi: int) -> list[tuple[bytes, RouteView]]:
    adj = peer.adj_in
    filtered = isinstance(adj, FilteredAdjRibIn)
    table = (adj.received if isinstance(adj, FilteredAdjRibIn) else adj).routes.get(afi, {})
    add_path = afi in adj.multi
    stale = adj.stale.get(afi, set())
    out: list[tuple[bytes, RouteView]] = []
    for entry, attrs in table.items():
        prefix = entry[4:] if add_path else entry
        shown = attrs
        if filtered:
            verdict = speaker.explain_import(peer, afi, prefix, attrs)
            policy = verdict.reason
            shown = verdict.attributes or attrs
        else:
            policy = "accepted: no import filter"
        view = _path(afi, prefix, shown, peer.session.address, policy)
        view["stale"] = entry in stale
        out.append((prefix, view))
    return out


def _path(afi: int, prefix: bytes, attrs: PathAttributes, source: str, policy: str) -> RouteView:
    view = cast(RouteView, {"prefix": prefix_to_str(afi, prefix), **attributes_view(attrs)})
    view["fromPeer"] = source
    view["reason"] = ""
    view["stale"] = False
    view["policy"] = policy
    return view
