"""Graceful BGP session shutdown (RFC 8326) and the shutdown communication (RFC 9003).

Before a planned stop, a speaker re-advertises its routes with the GRACEFUL_SHUTDOWN community
and LOCAL_PREF 0, so its peers move traffic to other paths while the sessions still stand;
after a drain time it closes them with Cease/Administrative Shutdown carrying a message saying
why (RFC 9003). A receiver gives any path carrying GRACEFUL_SHUTDOWN LOCAL_PREF 0 (RFC 8326
§4.1), which makes it lose to every normal path. Pure attribute rules; the speaker does the rest.
"""

from __future__ import annotations

import dataclasses

from bgpd.codec.types import PathAttributes

GRACEFUL_SHUTDOWN = 0xFFFF0000  # RFC 8326 well-known community 65535:0
LOWEST_PREF = 0


def drained(attrs: PathAttributes) -> PathAttributes:
    """Our own path as advertised while draining: GRACEFUL_SHUTDOWN and LOCAL_PREF 0."""
    communities = attrs.communities
    if GRACEFUL_SHUTDOWN not in communities:
        communities = (*communities, GRACEFUL_SHUTDOWN)
    return dataclasses.replace(attrs, communities=communities, local_pref=LOWEST_PREF)


def on_import(attrs: PathAttributes | None) -> PathAttributes | None:
    """RFC 8326 §4.1: a received path with GRACEFUL_SHUTDOWN gets LOCAL_PREF 0."""
    if attrs is None or GRACEFUL_SHUTDOWN not in attrs.communities:
        return attrs
    return dataclasses.replace(attrs, local_pref=LOWEST_PREF)
