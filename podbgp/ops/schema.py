"""The JSON views of the REST API, described once: as ``TypedDict`` s.

Each view the API answers with (status, peer, route, readiness, the cluster peer view, errors)
is a ``TypedDict`` here. The same classes type the code that builds the views
(:mod:`podbgp.ops.views`), are read by the metrics collector (:mod:`podbgp.ops.metrics`), and are
turned into the OpenAPI document's component schemas by :func:`openapi_schema` — so the handler,
the metrics and the published document cannot describe a view three different ways.

Field documentation rides along with ``Annotated[T, Doc(...)]``; ``NotRequired`` marks a key a
view may leave out; ``X | None`` is a nullable field; ``Literal`` an enumeration.
"""

# No ``from __future__ import annotations`` here: TypedDict must see NotRequired itself
# (with string annotations, Python 3.11 counts every key as required).
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NotRequired, TypedDict, Union

PeerType = Literal["mesh", "global", "node", "rr-client", "route-reflector"]
SessionState = Literal["Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established"]


@dataclass(frozen=True)
class Doc:
    """A field's description (and example) in the published schema."""

    text: str = ""
    example: object = None
    format: str | None = None


class ErrorView(TypedDict):
    error: Annotated[str, Doc(example="not found")]
    reason: Annotated[str, Doc(example="no peer with address 192.0.2.99")]


class DatastoreView(TypedDict):
    type: Annotated[str, Doc("etcd or file")]
    description: str
    connected: bool
    synced: bool
    lastError: str | None
    lastErrorAt: str | None
    lastSyncAt: str | None


class StatusView(TypedDict):
    nodeName: NotRequired[str | None]
    routerId: Annotated[str | None, Doc(example="192.0.2.11")]
    asNumber: Annotated[int | None, Doc(example=64512)]
    uptimeSeconds: int
    peers: Annotated[dict[str, int], Doc("number of peers in each session state")]
    routes: NotRequired[Annotated[int, Doc("best routes in the Loc-RIB")]]
    addresses: NotRequired[
        Annotated[list[str], Doc("the node's addresses, IPv4 first", example=["192.0.2.11/24"])]
    ]
    datastore: NotRequired[DatastoreView]
    reflection: NotRequired[
        Annotated[
            str,
            Doc(
                "the node's part in route reflection: mesh, reflector or client, elected or "
                "explicit",
                example="elected route reflector, cluster ID 244.0.0.1 (2 of 5 nodes)",
            ),
        ]
    ]


class PrefixCounts(TypedDict):
    received: int
    accepted: int
    stale: NotRequired[int]
    advertised: int


class MessageCounts(TypedDict):
    sent: int
    received: int
    sentByType: NotRequired[dict[str, int]]
    receivedByType: NotRequired[dict[str, int]]


class PrefixLimitView(TypedDict):
    limit: int
    warningThreshold: Annotated[int, Doc("percent of the limit that logs a warning")]
    restartAfter: Annotated[
        int, Doc("seconds until a stopped session starts again; 0 = stays down")
    ]
    warning: Annotated[bool, Doc("past the warning threshold in some family")]
    timesReached: Annotated[int, Doc("sessions ended by the limit (Cease 6/1, RFC 4486)")]
    reached: Annotated[str, Doc("why the session is held down by the limit, else empty")]


class UpdateErrorsView(TypedDict):
    treatAsWithdraw: Annotated[int, Doc("UPDATEs whose routes were withdrawn (RFC 7606 §2)")]
    attributesDiscarded: Annotated[int, Doc("attributes dropped, routes kept (RFC 7606 §2)")]
    ownNextHop: Annotated[int, Doc("routes ignored: NEXT_HOP is our address (RFC 4271 §6.3)")]
    lastReason: str


BfdState = Literal["AdminDown", "Down", "Init", "Up"]


class BfdPacketCounts(TypedDict):
    sent: int
    received: int
    dropped: Annotated[int, Doc("received for this session but failing a check (TTL)")]
    sendErrors: int


class BfdView(TypedDict):
    """The peer's BFD session (RFC 5880; single hop RFC 5881, multihop RFC 5883)."""

    state: BfdState
    remoteState: BfdState
    mode: Annotated[Literal["single-hop", "multihop"], Doc("as configured")]
    port: Annotated[int, Doc("UDP port in use: 3784 single hop, 4784 multihop (the peer's)")]
    localAddress: str
    minRx: Annotated[int, Doc("configured Required Min RX Interval, ms")]
    minTx: Annotated[int, Doc("configured Desired Min TX Interval, ms")]
    multiplier: Annotated[int, Doc("configured Detect Mult")]
    txInterval: Annotated[float | None, Doc("negotiated transmit interval, ms")]
    rxInterval: Annotated[float, Doc("negotiated receive interval, ms")]
    detectTime: Annotated[float | None, Doc("negotiated detection time, ms")]
    diagnostic: Annotated[
        str, Doc("our diagnostic (RFC 5880 §4.1)", example="ControlDetectionTimeExpired")
    ]
    remoteDiagnostic: str
    flaps: Annotated[int, Doc("times the session left Up")]
    upSince: Annotated[str | None, Doc(format="date-time")]
    packets: BfdPacketCounts


class PeerView(TypedDict):
    address: Annotated[str, Doc(example="192.0.2.12")]
    asNumber: int
    type: PeerType
    description: NotRequired[str]
    state: SessionState
    since: Annotated[str, Doc("last state change", format="date-time")]
    info: Annotated[str, Doc("why the session is down (empty when up)")]
    holdTime: NotRequired[int]
    keepaliveTime: NotRequired[int | None]
    routerId: NotRequired[str | None]
    capabilities: NotRequired[list[str]]
    interface: NotRequired[
        Annotated[str, Doc("unnumbered peer: the link; address is its link-local address there")]
    ]
    families: NotRequired[
        Annotated[
            dict[str, str | None],
            Doc(
                "per negotiated family (ipv4, ipv6), the next hop we announce on the session "
                "(an IPv6 one for ipv4 when Extended Next Hop, RFC 8950, is negotiated; null: "
                "our routes of that family do not go out)"
            ),
        ]
    ]
    prefixes: PrefixCounts
    messages: MessageCounts
    flaps: NotRequired[Annotated[int, Doc("times the session left Established")]]
    policy: NotRequired[
        Annotated[list[str], Doc("why routing policy passes nothing in a direction (RFC 8212)")]
    ]
    maxPrefixes: NotRequired[PrefixLimitView | None]
    updateErrors: NotRequired[UpdateErrorsView]
    bfd: NotRequired[
        Annotated[
            BfdView,
            Doc(
                "present while a BFD session runs for the peer: from the start when the "
                "source address is known, else from the first Established session"
            ),
        ]
    ]


class UnknownAttributeView(TypedDict):
    code: int
    flags: Annotated[int, Doc("the attribute's flag octet as received")]
    value: Annotated[str, Doc("the value in hex")]


class RouteView(TypedDict):
    prefix: Annotated[str, Doc(example="10.244.2.0/24")]
    nextHop: str | None
    asPath: Annotated[str, Doc("AS numbers; an AS_SET in braces")]
    origin: NotRequired[Literal["igp", "egp", "incomplete"]]
    localPref: NotRequired[int | None]
    med: NotRequired[int | None]
    communities: NotRequired[list[str]]
    largeCommunities: NotRequired[list[str]]
    originatorId: NotRequired[str | None]
    clusterList: NotRequired[list[str]]
    atomicAggregate: NotRequired[bool]
    aggregator: NotRequired[Annotated[str | None, Doc("AS and address", example="65001 10.0.0.1")]]
    extendedCommunities: NotRequired[
        Annotated[list[str], Doc("RFC 4360; rt:/ro: for AS-specific ones, else hex")]
    ]
    unknown: NotRequired[list[UnknownAttributeView]]
    best: NotRequired[Annotated[bool, Doc("?detail=1: this path is the Loc-RIB's best")]]
    policy: NotRequired[
        Annotated[
            str, Doc("?detail=1: the import filter rule that accepted, changed or rejected it")
        ]
    ]
    fromPeer: Annotated[str, Doc("peer address, or 'local' for our own")]
    reason: Annotated[str, Doc("why this path won the decision process")]
    stale: bool


class HealthView(TypedDict):
    status: Literal["ok"]


class ReadyView(TypedDict):
    status: Literal["ready", "not ready"]
    reason: NotRequired[str]
    peers: int
    established: int


class ClusterNodeView(TypedDict):
    name: Annotated[str, Doc(example="node-2")]
    apiAddress: Annotated[str | None, Doc(example="http://192.0.2.12:9179")]
    reachable: bool
    error: Annotated[str | None, Doc("why the node could not be asked")]
    peers: list[PeerView]


class ClusterPeersView(TypedDict):
    nodes: list[ClusterNodeView]


class FelixMetrics(TypedDict, total=False):
    """felix's part of ``/metrics`` (see :mod:`podbgp.ops.metrics`)."""

    routes_programmed: dict[str, int]
    reconcile_runs: int
    reconcile_errors: int
    last_reconcile_timestamp: float | None
    # UPDATE received -> kernel acknowledged: ([(upper bound s, cumulative count)...], sum s)
    update_to_kernel: tuple[list[tuple[float, int]], float]


class DatastoreMetrics(TypedDict, total=False):
    """The datastore's part of ``/metrics`` (see :mod:`podbgp.ops.metrics`)."""

    connected: bool
    synced: bool
    errors: int
    blocks_owned: int
    block_allocations: int
    block_allocation_errors: int
    watch_events: int


# The views published as OpenAPI component schemas, under these names.
COMPONENTS: dict[str, type] = {
    "Error": ErrorView,
    "Status": StatusView,
    "Datastore": DatastoreView,
    "Peer": PeerView,
    "Bfd": BfdView,
    "Route": RouteView,
    "Health": HealthView,
    "Ready": ReadyView,
    "ClusterNode": ClusterNodeView,
    "ClusterPeers": ClusterPeersView,
}
_NAMES = {cls: name for name, cls in COMPONENTS.items()}


def openapi_schema(view: type) -> dict[str, Any]:
    """The OpenAPI 3.0 object schema of a ``TypedDict`` view."""
    hints = typing.get_type_hints(view, include_extras=True)
    required: frozenset[str] = view.__required_keys__  # type: ignore[attr-defined]
    props = {key: _field_schema(hint) for key, hint in hints.items()}
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = [k for k in hints if k in required]
    return out


def _field_schema(hint: Any) -> dict[str, Any]:
    doc: Doc | None = None
    origin = typing.get_origin(hint)
    if origin is NotRequired or origin is typing.Required:
        return _field_schema(typing.get_args(hint)[0])
    if origin is Annotated:
        base, *meta = typing.get_args(hint)
        doc = next((m for m in meta if isinstance(m, Doc)), None)
        schema = _field_schema(base)
        if doc is not None:
            if doc.text:
                schema["description"] = doc.text
            if doc.example is not None:
                schema["example"] = doc.example
            if doc.format is not None:
                schema["format"] = doc.format
        return schema
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            schema = _field_schema(args[0])
        else:
            schema = {"anyOf": [_field_schema(a) for a in args]}
        if len(args) < len(typing.get_args(hint)):
            schema["nullable"] = True
        return schema
    if origin is Literal:
        values = list(typing.get_args(hint))
        return {"type": _scalar(type(values[0])), "enum": values}
    if origin is list:
        return {"type": "array", "items": _field_schema(typing.get_args(hint)[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _field_schema(typing.get_args(hint)[1])}
    if isinstance(hint, type) and typing.is_typeddict(hint):
        name = _NAMES.get(hint)
        return {"$ref": f"#/components/schemas/{name}"} if name else openapi_schema(hint)
    return {"type": _scalar(hint)}


def _scalar(cls: Any) -> str:
    names = {str: "string", int: "integer", bool: "boolean", float: "number"}
    if cls not in names:
        raise TypeError(f"no OpenAPI type for {cls!r}")
    return names[cls]
