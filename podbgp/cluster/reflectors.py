"""``BGPConfiguration.spec.routeReflectors``: automatic route reflectors, the setting.

Owns :class:`RouteReflectors` and its parsing. With ``mode: auto`` the cluster is a full
node-to-node mesh while it is small and elects ``count`` of its nodes as route reflectors
(RFC 4456, all with one cluster ID) once it has ``nodeThreshold`` nodes or more; it returns to
the mesh when it falls below ``nodeThreshold - hysteresis``. In between it keeps what it has,
so one node coming and going at the threshold does not flip the cluster back and forth. Who is
elected, and how the band is decided from the datastore, is :mod:`podbgp.node.election`.

Written either as the bare string ``auto`` (every default) or as a mapping::

    routeReflectors:
      mode: auto              # auto | off (off: the plain mesh, settings kept)
      nodeThreshold: 100      # switch to reflectors at this many nodes
      hysteresis: 10          # back to the mesh below nodeThreshold - hysteresis
      count: 3                # reflectors to elect
      clusterID: 244.0.0.1    # the elected reflectors' cluster ID (RFC 4456 §7)
      candidateSelector: "route-reflector == 'true'"   # preferred nodes (optional)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bgpd.configcheck import Section, check_enum, check_int, check_router_id
from podbgp.cluster.fields import check_selector
from podbgp.cluster.selector import Selector

__all__ = [
    "DEFAULT_CLUSTER_ID",
    "RouteReflectors",
    "check_mesh",
    "explicit_conflict",
    "parse_route_reflectors",
    "to_spec",
]

DEFAULT_CLUSTER_ID = "244.0.0.1"
DEFAULT_THRESHOLD = 100  # a 100-node mesh is 4,950 sessions; each node holds 99 of them
DEFAULT_COUNT = 3
MAX_NODES = 1_000_000
KEYS = ("mode", "nodeThreshold", "hysteresis", "count", "clusterID", "candidateSelector")


@dataclass(frozen=True)
class RouteReflectors:
    """The parsed setting; ``hysteresis`` None means the default, a tenth of the threshold."""

    mode: str = "auto"  # "auto" or "off"
    node_threshold: int = DEFAULT_THRESHOLD
    hysteresis: int | None = None
    count: int = DEFAULT_COUNT
    cluster_id: str = DEFAULT_CLUSTER_ID
    candidate_selector: Selector | None = None

    @property
    def auto(self) -> bool:
        return self.mode == "auto"

    @property
    def mesh_below(self) -> int:
        """Below this many nodes the cluster is a mesh whatever it was before."""
        margin = self.hysteresis if self.hysteresis is not None else self.node_threshold // 10
        return self.node_threshold - margin


def parse_route_reflectors(spec: Section) -> RouteReflectors | None:
    """``spec.routeReflectors`` of a BGPConfiguration, or None when absent.

    Raises ConfigError naming the key."""
    raw = spec.data.get("routeReflectors")
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw != "auto":
            raise spec.error("routeReflectors", "must be 'auto' or a mapping with mode: auto|off")
        return RouteReflectors()
    sec = spec.section("routeReflectors", KEYS)
    assert sec is not None
    threshold = sec.optional("nodeThreshold", check_int(2, MAX_NODES), DEFAULT_THRESHOLD)
    hysteresis = sec.optional("hysteresis", check_int(0, MAX_NODES), None)
    if hysteresis is not None and hysteresis >= threshold:
        raise sec.error("hysteresis", f"must be less than nodeThreshold ({threshold})")
    count = sec.optional("count", check_int(1, MAX_NODES), DEFAULT_COUNT)
    if count >= threshold:
        raise sec.error(
            "count", f"must be less than nodeThreshold ({threshold}): some nodes must be clients"
        )
    return RouteReflectors(
        mode=sec.required("mode", check_enum(("auto", "off"))),
        node_threshold=threshold,
        hysteresis=hysteresis,
        count=count,
        cluster_id=sec.optional("clusterID", check_router_id, DEFAULT_CLUSTER_ID),
        candidate_selector=sec.optional("candidateSelector", check_selector, None),
    )


def check_mesh(spec: Section, rr: RouteReflectors | None, mesh: bool) -> None:
    """Automatic reflectors replace the mesh above the threshold, so they need the mesh on."""
    if rr is not None and rr.auto and not mesh:
        raise spec.error(
            "routeReflectors",
            "mode auto needs nodeToNodeMeshEnabled: true (below nodeThreshold the cluster is "
            "the mesh)",
        )


def to_spec(rr: RouteReflectors) -> dict[str, Any]:
    """The canonical form stored in the datastore."""
    out: dict[str, Any] = {
        "mode": rr.mode,
        "nodeThreshold": rr.node_threshold,
        "hysteresis": rr.hysteresis,
        "count": rr.count,
        "clusterID": rr.cluster_id,
        "candidateSelector": str(rr.candidate_selector) if rr.candidate_selector else None,
    }
    return {k: v for k, v in out.items() if v is not None}


def explicit_conflict(rr: RouteReflectors | None, explicit: list[str]) -> str | None:
    """Why ``rr`` cannot be stored beside nodes with ``routeReflectorClusterID`` (named in
    ``explicit``), or None: the two ways of choosing reflectors do not mix."""
    if rr is None or not rr.auto or not explicit:
        return None
    return (
        f"mode auto cannot be combined with routeReflectorClusterID on Node/{explicit[0]}"
        " (choose reflectors by hand or automatically, not both)"
    )
