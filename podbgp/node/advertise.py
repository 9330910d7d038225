"""What a node's own blocks carry when advertised: ``BGPConfiguration.spec.prefixAdvertisements``.

Calico's ``prefixAdvertisements`` attach communities to the routes a node advertises whose
prefix lies inside a given CIDR (a pool, or part of one). Here they become the path attributes a
block is originated with, so every peer — mesh, reflector or external router — sees them:
``aa:nn`` in COMMUNITIES (RFC 1997), ``aa:nn:mm`` in LARGE_COMMUNITY (RFC 8092). Pure.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from bgpd.codec.types import PathAttributes
from bgpd.policy import local_path

Advertisement = tuple[str, tuple[str, ...]]  # (cidr, community values)


def block_attributes(block: str, advertisements: Sequence[Advertisement]) -> PathAttributes:
    """The attributes ``block`` is originated with: every advertisement whose CIDR holds it
    adds its communities, in order, each once."""
    net = ipaddress.ip_network(block)
    communities: list[int] = []
    large: list[tuple[int, int, int]] = []
    for cidr, values in advertisements:
        outer = ipaddress.ip_network(cidr)
        if outer.version != net.version or not net.subnet_of(outer):  # type: ignore[arg-type]
            continue
        for value in values:
            parts = tuple(int(p) for p in value.split(":"))
            if len(parts) == 2:
                std = (parts[0] << 16) | parts[1]
                if std not in communities:
                    communities.append(std)
            elif (triple := (parts[0], parts[1], parts[2])) not in large:
                large.append(triple)
    attrs = local_path()
    if communities or large:
        attrs = dataclasses.replace(
            attrs, communities=tuple(communities), large_communities=tuple(large)
        )
    return attrs
