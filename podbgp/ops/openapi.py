"""The OpenAPI 3.0 document of the REST API, served at ``/v1/openapi.json``.

Owns the description of every core endpoint (paths, parameters, response schemas) and builds
the document for one running application: the core paths, the extra endpoints the daemon
added (``/metrics``, ``/v1/node``, ``/v1/cluster/peers``, ... with the path items they pass
in) and, when the API requires a token, the bearer security scheme (RFC 6750) on every path but
the kubelet probes. ``tests/unit/podbgp/ops/test_api.py`` calls every documented path and checks it
answers with the documented status and top-level shape, so this file and the handlers in
``podbgp.ops.api`` cannot drift apart unnoticed. Implements no RFC itself.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import podbgp
from podbgp.ops.schema import COMPONENTS, openapi_schema

OPENAPI_VERSION = "3.0.3"
# Never behind the token: the kubelet's liveness and readiness probes send no credentials.
OPEN_PATHS = ("/healthz", "/readyz")
OPENAPI_PATH = "/v1/openapi.json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": dict(schema)}}


def _response(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": _json_content(schema)}


def _error(description: str) -> dict[str, Any]:
    return _response(description, _ref("Error"))


_STR = {"type": "string"}

# The views, described once in podbgp.ops.schema; plus the document itself.
SCHEMAS: dict[str, Any] = {name: openapi_schema(view) for name, view in COMPONENTS.items()}
SCHEMAS["OpenApi"] = {
    "type": "object",
    "required": ["openapi", "info", "paths"],
    "properties": {},
    "additionalProperties": True,
}

_ADDRESS_PARAM = {
    "name": "address",
    "in": "path",
    "required": True,
    "description": "the peer's IPv4 or IPv6 address (any spelling)",
    "schema": {**_STR, "example": "192.0.2.12"},
}


def _get(op_id: str, summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "operationId": op_id, "responses": responses, **extra}}


CORE_PATHS: dict[str, Any] = {
    "/v1/status": _get(
        "getStatus",
        "Router ID, AS, uptime and peer counts by session state",
        {"200": _response("speaker status", _ref("Status"))},
    ),
    "/v1/peers": _get(
        "listPeers",
        "Every configured BGP peer with its session state and counters",
        {"200": _response("all peers", {"type": "array", "items": _ref("Peer")})},
    ),
    "/v1/peers/{address}": _get(
        "getPeer",
        "One BGP peer",
        {
            "200": _response("the peer", _ref("Peer")),
            "400": _error("the address is not an IP address"),
            "404": _error("no peer has this address"),
        },
        parameters=[_ADDRESS_PARAM],
    ),
    "/v1/routes": _get(
        "listRoutes",
        "The Loc-RIB: the best route of every prefix and why it won",
        {
            "200": _response("best routes", {"type": "array", "items": _ref("Route")}),
            "400": _error("a filter is not a prefix or an address"),
        },
        parameters=[
            {
                "name": "prefix",
                "in": "query",
                "required": False,
                "description": "a prefix (exact match) or an address (every prefix holding it)",
                "schema": {**_STR, "example": "10.244.2.0/24"},
            },
            {
                "name": "peer",
                "in": "query",
                "required": False,
                "description": "routes learned from this peer address; 'local' for our own",
                "schema": {**_STR, "example": "192.0.2.12"},
            },
            {
                "name": "detail",
                "in": "query",
                "required": False,
                "description": "1: every path, not only the best, with the import filter rule "
                "that accepted, changed or rejected it (best, policy)",
                "schema": {"type": "string", "enum": ["0", "1", "true", "false"]},
            },
        ],
    ),
    "/healthz": _get(
        "getHealth",
        "Liveness: the process answers (never needs a token)",
        {"200": _response("alive", _ref("Health"))},
    ),
    "/readyz": _get(
        "getReady",
        "Readiness: no peers configured, or at least one Established (never needs a token)",
        {
            "200": _response("ready", _ref("Ready")),
            "503": _response("not ready, with the reason", _ref("Ready")),
        },
    ),
    OPENAPI_PATH: _get(
        "getOpenApi",
        "This document",
        {"200": _response("the OpenAPI 3 document", _ref("OpenApi"))},
    ),
}

# For the node daemon, which serves the cluster-wide view (its handler is not in podbgp.ops.api).
CLUSTER_PEERS_DOC: dict[str, Any] = _get(
    "getClusterPeers",
    "Every registered node's peers, asked from each node's API; unreachable nodes say why",
    {"200": _response("one entry per node", _ref("ClusterPeers"))},
)

_UNAUTHORIZED = {
    "description": "missing or wrong bearer token",
    "headers": {"WWW-Authenticate": {"schema": _STR}},
    "content": _json_content(_ref("Error")),
}


def extension_doc(path: str) -> dict[str, Any]:
    """A minimal path item for an extra endpoint added without documentation."""
    return _get(
        "get" + "".join(part.title() for part in path.strip("/").replace("/", "-").split("-")),
        f"{path} (added by the daemon; no schema published)",
        {"200": {"description": "the endpoint's answer"}},
    )


def build_document(
    extra_paths: Mapping[str, Mapping[str, Any]] | None = None, *, token_required: bool = False
) -> dict[str, Any]:
    """The document for an application serving the core paths plus ``extra_paths``.

    ``token_required``: every path except :data:`OPEN_PATHS` needs ``Authorization: Bearer``
    and may answer 401.
    """
    paths = copy.deepcopy(CORE_PATHS)
    for path, item in (extra_paths or {}).items():
        paths[path] = copy.deepcopy(dict(item))
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "podbgp REST API",
            "version": podbgp.__version__,
            "description": "Read-only view of a podbgp speaker: status, peers, routes, metrics.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": copy.deepcopy(SCHEMAS)},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        doc["components"]["responses"] = {"Unauthorized": _UNAUTHORIZED}
        doc["security"] = [{"bearerAuth": []}]
        for path, item in doc["paths"].items():
            for op in item.values():
                if path in OPEN_PATHS:
                    op["security"] = []  # overrides the document-wide requirement
                else:
                    op["responses"]["401"] = {"$ref": "#/components/responses/Unauthorized"}
    return doc
