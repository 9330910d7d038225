"""What the speaker's policy settings make of each peer's session.

A session's filters are its BGPFilters, RFC 8212 (``ebgpRequiresPolicy``, from the speaker's
config) and, for an ``owned_only`` peer, the prefixes the cluster owns (owned here). From them
come the import decision for paths as they arrive, the words the API shows for a session that
passes nothing, and a peer's import run again over its kept Adj-RIB-In when they change. Before
the filters, every received path goes through the import processing (``received``).
:mod:`bgpd.policy_filters` evaluates; the speaker owns the peers, the RIBs and the decision.
"""

from __future__ import annotations

from collections.abc import Callable

from bgpd import shutdown
from bgpd.bgpfilter import IPNetwork
from bgpd.bgpfilter_eval import Verdict
from bgpd.codec.types import PathAttributes
from bgpd.import_rib import FilteredAdjRibIn, ImportDecision
from bgpd.peer import Peer
from bgpd.peerspec import PeerSpec, SpeakerConfig
from bgpd.policy import import_path
from bgpd.policy_filters import SessionFilters, import_verdict

Intern = Callable[[PathAttributes | None], PathAttributes | None]


class SessionPolicies:
    """``config``: the speaker's configuration now (its AS and RFC 8212 switch); ``intern``: the
    speaker's path interning, so an accepted path is shared like any other."""

    def __init__(self, config: Callable[[], SpeakerConfig], intern: Intern) -> None:
        self._config = config
        self._intern = intern
        self.owned: tuple[IPNetwork, ...] = ()  # for peers with owned_only (a node's pools)

    def ebgp(self, peer: Peer) -> bool:
        """The session's kind: as negotiated once up, else as configured."""
        if peer.source is not None:
            return peer.source.ebgp
        return self.configured_ebgp(peer.spec)

    def configured_ebgp(self, spec: PeerSpec) -> bool:
        return spec.asn != (spec.local_asn or self._config().asn)

    def received(self, peer: Peer, attrs: PathAttributes) -> PathAttributes | None:
        """A path as it arrives from an Established peer, before its filters: a loop through
        our own AS dropped (None), the rest of import processing done (``bgpd.policy``:
        LOCAL_PREF, reflection attributes; RFC 8326's GRACEFUL_SHUTDOWN), interned."""
        assert peer.source is not None
        config = self._config()
        local_asn = peer.spec.local_asn or config.asn
        if local_asn != config.asn and any(config.asn in a for _t, a in attrs.as_path):
            return None  # a loop through our own AS, whatever AS this session presents
        path = import_path(
            attrs,
            local_asn=local_asn,
            router_id=config.router_id,
            ebgp=peer.source.ebgp,
            cluster_id=config.cluster_id,
        )
        return self._intern(shutdown.on_import(path))  # GRACEFUL_SHUTDOWN: LOCAL_PREF 0

    def of(self, spec: PeerSpec) -> SessionFilters:
        """The filters a peer configured so has now."""
        return SessionFilters(
            filters=spec.filters,
            ebgp_requires_policy=self._config().ebgp_requires_policy,
            owned=self.owned if spec.owned_only else None,
        )

    def filters_import(self, spec: PeerSpec) -> bool:
        """Does a peer configured so (before its session says more) filter what it sends us?"""
        return self.of(spec).filters_import(self.configured_ebgp(spec))

    def blocked(self, peer: Peer) -> list[str]:
        """Why this peer's session passes nothing in some direction (RFC 8212), in words."""
        return self.of(peer.spec).blocked(self.ebgp(peer))

    def explain_import(self, peer: Peer, afi: int, prefix: bytes, attrs: PathAttributes) -> Verdict:
        """What the peer's import policy makes of a received path (for the API's detail)."""
        return import_verdict(self.of(peer.spec), self.ebgp(peer), afi, prefix, attrs)

    def import_decision(self, peer: Peer) -> ImportDecision:
        """The peer's import filters as one call per path: the accepted path, interned, or None."""
        policy, ebgp, intern = self.of(peer.spec), self.ebgp(peer), self._intern

        def decide(afi: int, prefix: bytes, attrs: PathAttributes) -> PathAttributes | None:
            return intern(import_verdict(policy, ebgp, afi, prefix, attrs).attributes)

        return decide

    def reimport(self, peer: Peer) -> dict[int, list[bytes]]:
        """Run the peer's import again over what it sent (its filters changed); the prefixes
        whose accepted path changed, by family. A peer that filters nothing keeps what it sent
        as its Adj-RIB-In, one that filters gets a filtered view over it (and back)."""
        adj = peer.adj_in
        if self.filters_import_now(peer):
            if not isinstance(adj, FilteredAdjRibIn):
                adj = peer.adj_in = FilteredAdjRibIn.wrap(adj)
            return adj.reimport(self.import_decision(peer))
        if isinstance(adj, FilteredAdjRibIn):
            changed = adj.reimport(lambda _afi, _prefix, attrs: attrs)
            peer.adj_in = adj.received  # nothing filters: what was received is what counts
            return changed
        return {}

    def filters_import_now(self, peer: Peer) -> bool:
        """Does the peer's session, as it is now, filter what it sends us?"""
        return self.of(peer.spec).filters_import(self.ebgp(peer))
