"""The read-only REST API (aiohttp): status, peers and the Loc-RIB as JSON.

Owns the HTTP surface described in DESIGN.md §1 ("REST API and metrics"): ``/v1/status``,
``/v1/peers``, ``/v1/peers/{address}``, ``/v1/routes`` (``?prefix=``, ``?peer=``), ``/healthz``
and ``/readyz``. It reads snapshots through the :class:`SpeakerView` protocol and never changes
state. Every answer, errors included, is JSON; no answer ever carries a password or a token.
Implements no RFC itself; the data it shows follows RFC 4271 (FSM states, path attributes).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from enum import Enum
from typing import Any, Protocol

from aiohttp import web

from bgpd.configcheck import FieldError, check_prefix

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Defence in depth: the speaker's snapshots should never hold secrets, but a key with one of
# these names is dropped from every answer whatever its nesting.
_SECRET_NAMES = ("password", "token", "secret")


class SpeakerView(Protocol):
    """Read-only snapshots the speaker offers to the API (plain JSON-able dicts).

    ``status()``: routerId, asNumber, uptimeSeconds, peers {state: count} (and nodeName where
    there is one). ``peers()``: one dict per peer (address, asNumber, type, state, since, info,
    holdTime, keepaliveTime, capabilities, prefixes{received,accepted,advertised},
    messages{sent,received}). ``routes()``: one dict per Loc-RIB route (prefix, nextHop, asPath,
    origin, localPref, med, communities, fromPeer, reason, stale).
    """

    def status(self) -> dict[str, Any]: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def routes(self) -> list[dict[str, Any]]: ...


VIEW_KEY = web.AppKey("view", SpeakerView)


def redact(value: Any) -> Any:
    """A copy of ``value`` without any mapping key that names a secret."""
    if isinstance(value, dict):
        return {
            k: redact(v)
            for k, v in value.items()
            if not any(str(k).lower().endswith(name) for name in _SECRET_NAMES)
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    """Serialise the few non-JSON types a snapshot may reasonably contain."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value if isinstance(value.value, int | str) else value.name
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    return str(value)  # addresses and networks print as their canonical text


def _json(data: Any, status: int = 200) -> web.Response:
    text = json.dumps(redact(data), default=_json_default)
    return web.json_response(text=text, status=status)


def _error(status: int, error: str, reason: str) -> web.Response:
    return _json({"error": error, "reason": reason}, status=status)


def _parse_ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _same_ip(a: Any, b: IpAddress) -> bool:
    return isinstance(a, str) and _parse_ip(a) == b


# --- handlers ---------------------------------------------------------------------------------


async def _status(request: web.Request) -> web.Response:
    return _json(request.app[VIEW_KEY].status())


async def _peers(request: web.Request) -> web.Response:
    return _json(request.app[VIEW_KEY].peers())


async def _peer(request: web.Request) -> web.Response:
    text = request.match_info["address"]
    addr = _parse_ip(text)
    if addr is None:
        return _error(400, "bad request", f"{text!r} is not an IP address")
    for peer in request.app[VIEW_KEY].peers():
        if _same_ip(peer.get("address"), addr):
            return _json(peer)
    return _error(404, "not found", f"no peer with address {addr}")


def _prefix_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """``?prefix=``: a CIDR prefix matches exactly; a bare address matches every route
    whose prefix contains it. Raises FieldError on anything else."""
    if "/" in text:
        want = ipaddress.ip_network(check_prefix(text))
        return lambda route: _route_net(route) == want
    addr = _parse_ip(text)
    if addr is None:
        raise FieldError(f"{text!r} is neither an IP prefix nor an IP address")

    def contains(route: dict[str, Any]) -> bool:
        net = _route_net(route)
        return net is not None and net.version == addr.version and addr in net

    return contains


def _route_net(route: dict[str, Any]) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(str(route.get("prefix")), strict=False)
    except ValueError:
        return None


def _peer_filter(text: str) -> Callable[[dict[str, Any]], bool]:
    """``?peer=``: routes learned from that neighbour; ``local`` selects our own prefixes."""
    if text == "local":
        return lambda route: route.get("fromPeer") in (None, "", "local")
    addr = _parse_ip(text)
    if addr is None:
        raise FieldError(f"{text!r} is not an IP address (or 'local')")
    return lambda route: _same_ip(route.get("fromPeer"), addr)


async def _routes(request: web.Request) -> web.Response:
    tests: list[Callable[[dict[str, Any]], bool]] = []
    try:
        if "prefix" in request.query:
            tests.append(_prefix_filter(request.query["prefix"]))
        if "peer" in request.query:
            tests.append(_peer_filter(request.query["peer"]))
    except FieldError as exc:
        return _error(400, "bad request", str(exc))
    routes = request.app[VIEW_KEY].routes()
    return _json([r for r in routes if all(test(r) for test in tests)])


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    # Ready with no peers configured, or when at least one is Established: one dead peer out of
    # many must not take a node out of service.
    peers = request.app[VIEW_KEY].peers()
    established = sum(1 for p in peers if p.get("state") == "Established")
    body = {"peers": len(peers), "established": established}
    if not peers or established:
        return _json({"status": "ready", **body})
    reason = f"no peer is Established (0 of {len(peers)})"
    return _json({"status": "not ready", "reason": reason, **body}, status=503)


# --- application ------------------------------------------------------------------------------


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths, wrong methods and handler crashes answer in JSON too."""
    log.debug("api request method=%s path=%s", request.method, request.path_qs)
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return _error(404, "not found", f"no such endpoint: {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        resp = _error(405, "method not allowed", f"{request.method} {request.path}: use {allowed}")
        resp.headers["Allow"] = allowed
        return resp
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("api handler failed path=%s", request.path)
        return _error(500, "internal error", type(exc).__name__)


def make_app(view: SpeakerView, routes: Iterable[web.AbstractRouteDef] = ()) -> web.Application:
    """The API application reading from ``view``; ``routes`` adds endpoints (e.g. /metrics)."""
    app = web.Application(middlewares=[_json_errors])
    app[VIEW_KEY] = view
    app.add_routes(
        [
            web.get("/v1/status", _status),
            web.get("/v1/peers", _peers),
            web.get("/v1/peers/{address}", _peer),
            web.get("/v1/routes", _routes),
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            *routes,
        ]
    )
    return app


async def start_api(
    view: SpeakerView, host: str, port: int, routes: Iterable[web.AbstractRouteDef] = ()
) -> web.AppRunner:
    """Serve the API on ``host:port`` inside the running loop; ``await runner.cleanup()`` stops
    it. ``runner.addresses`` tells the bound port when ``port`` is 0."""
    # No access log: the API is polled and must keep INFO quiet; requests are logged at DEBUG.
    runner = web.AppRunner(make_app(view, routes), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("api listening host=%s port=%s", host, port)
    return runner
