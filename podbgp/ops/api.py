"""The read-only REST API (aiohttp): status, peers and the Loc-RIB as JSON, and its access rule.

Owns the HTTP surface described in DESIGN.md §1 ("REST API and metrics"): ``/v1/status``,
``/v1/peers``, ``/v1/peers/{address}``, ``/v1/routes`` (``?prefix=``, ``?peer=``), ``/healthz``,
``/readyz`` and ``/v1/openapi.json`` (built by :mod:`podbgp.ops.openapi`), plus the endpoints a
daemon adds (``/metrics`` from :mod:`podbgp.ops.metrics`, ``/v1/node``, ...). It reads snapshots
through the :class:`SpeakerView` protocol and never changes state. Every answer, errors included, is
JSON (``/metrics`` excepted); no answer or log line ever carries a password or a token.

Access: bound to loopback, the API is open. Bound anywhere else, it requires a bearer token
(RFC 6750 §2.1, ``Authorization: Bearer <token>``) read from a file; the kubelet probes
``/healthz`` and ``/readyz`` stay open. Data shown follows RFC 4271 (FSM states, attributes).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from bgpd.config import is_loopback_host, read_token_file
from bgpd.configcheck import FieldError, check_prefix
from podbgp.ops import openapi
from podbgp.ops.schema import PeerView, RouteView, StatusView

if TYPE_CHECKING:
    from bgpd.config import ApiConfig

log = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Extra readiness condition (e.g. "datastore synced"): None when ready, else the reason.
ReadyCheck = Callable[[], str | None]

# Defence in depth: the speaker's snapshots should never hold secrets, but a key with one of
# these names is dropped from every answer whatever its nesting.
_SECRET_NAMES = ("password", "token", "secret")


class SpeakerView(Protocol):
    """Read-only snapshots the speaker offers to the API, in the views of podbgp.ops.schema."""

    def status(self) -> StatusView: ...

    def peers(self) -> list[PeerView]: ...

    def routes(self, detail: bool = False) -> list[RouteView]: ...


class BearerToken:
    """The API's bearer token, read from a file and re-read when the file changes, so a token
    can be rotated (a Kubernetes Secret update, a new file) without restarting the daemon.

    A changed file that holds no valid token is logged and ignored: the last good token stays.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._token = read_token_file(path)  # OSError / ValueError: refuse to start
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def current(self) -> str:
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp  # one reload attempt (and at most one log line) per change
            try:
                self._token = read_token_file(self.path)
            except (OSError, ValueError) as exc:
                log.warning("event=token-reload-failed keeping=previous problem=%s", exc)
            else:
                log.info("event=token-reloaded file=%s", self.path)
        return self._token

    def refusal(self, authorization: str | None) -> str | None:
        """None when ``authorization`` carries the token, else why the request is refused."""
        if not authorization:
            return "missing bearer token (send Authorization: Bearer <token>)"
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return "the Authorization header must use the Bearer scheme"
        # Constant-time comparison: the answer's timing must not reveal a token's prefix.
        if not hmac.compare_digest(presented.strip().encode(), self.current().encode()):
            return "invalid bearer token"
        return None


VIEW_KEY = web.AppKey("view", SpeakerView)
TOKEN_KEY = web.AppKey("token", BearerToken)
READY_KEY = web.AppKey("ready_checks", tuple)
OPENAPI_KEY = web.AppKey("openapi", dict)


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


def _prefix_filter(text: str) -> Callable[[RouteView], bool]:
    """``?prefix=``: a CIDR prefix matches exactly; a bare address matches every route
    whose prefix contains it. Raises FieldError on anything else."""
    if "/" in text:
        want = ipaddress.ip_network(check_prefix(text))
        return lambda route: _route_net(route) == want
    addr = _parse_ip(text)
    if addr is None:
        raise FieldError(f"{text!r} is neither an IP prefix nor an IP address")

    def contains(route: RouteView) -> bool:
        net = _route_net(route)
        return net is not None and net.version == addr.version and addr in net

    return contains


def _route_net(route: RouteView) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(route["prefix"], strict=False)
    except ValueError:
        return None


def _peer_filter(text: str) -> Callable[[RouteView], bool]:
    """``?peer=``: routes learned from that neighbour; ``local`` selects our own prefixes."""
    if text == "local":
        return lambda route: route.get("fromPeer") in (None, "", "local")
    addr = _parse_ip(text)
    if addr is None:
        raise FieldError(f"{text!r} is not an IP address (or 'local')")
    return lambda route: _same_ip(route.get("fromPeer"), addr)


async def _routes(request: web.Request) -> web.Response:
    tests: list[Callable[[RouteView], bool]] = []
    try:
        if "prefix" in request.query:
            tests.append(_prefix_filter(request.query["prefix"]))
        if "peer" in request.query:
            tests.append(_peer_filter(request.query["peer"]))
    except FieldError as exc:
        return _error(400, "bad request", str(exc))
    detail = request.query.get("detail", "0")
    if detail not in ("0", "1", "true", "false"):
        return _error(400, "bad request", f"detail={detail!r}: expected 0 or 1")
    routes = request.app[VIEW_KEY].routes(detail=detail in ("1", "true"))
    return _json([r for r in routes if all(test(r) for test in tests)])


async def _healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    # Ready with no peers configured, or when at least one is Established: one dead peer out of
    # many must not take a node out of service. A daemon adds its own conditions (datastore
    # synced) as ready checks, which come first.
    peers = request.app[VIEW_KEY].peers()
    established = sum(1 for p in peers if p.get("state") == "Established")
    body = {"peers": len(peers), "established": established}
    reasons = [r for r in (check() for check in request.app[READY_KEY]) if r]
    if peers and not established:
        reasons.append(f"no peer is Established (0 of {len(peers)})")
    if not reasons:
        return _json({"status": "ready", **body})
    return _json({"status": "not ready", "reason": "; ".join(reasons), **body}, status=503)


async def _openapi(request: web.Request) -> web.Response:
    return _json(request.app[OPENAPI_KEY])


# --- application ------------------------------------------------------------------------------


@web.middleware
async def _bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: with a token configured, only the probes answer without it (unknown paths
    included, so an unauthenticated client learns nothing about the API)."""
    token = request.app.get(TOKEN_KEY)
    if token is None or request.path in openapi.OPEN_PATHS:
        return await handler(request)
    refusal = token.refusal(request.headers.get("Authorization"))
    if refusal is None:
        return await handler(request)
    # The presented credentials are never logged, only that a request was refused and why.
    log.info("event=api-unauthorized remote=%s path=%s", request.remote, request.path)
    resp = _error(401, "unauthorized", refusal)
    challenge = 'Bearer realm="podbgp"'
    if refusal == "invalid bearer token":
        challenge += ', error="invalid_token"'  # RFC 6750 §3.1
    resp.headers["WWW-Authenticate"] = challenge
    return resp


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


def make_app(
    view: SpeakerView,
    routes: Iterable[web.AbstractRouteDef] = (),
    *,
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    token: BearerToken | None = None,
    ready_checks: Iterable[ReadyCheck] = (),
) -> web.Application:
    """The API application reading from ``view``.

    ``routes`` adds endpoints (``/metrics``, ``/v1/node``, ...), and ``docs`` their OpenAPI path
    items by path (an extra route without one gets a minimal entry, so the document always
    lists every path served). ``token``: require it on every path but the probes.
    ``ready_checks``: extra ``/readyz`` conditions.
    """
    extra = list(routes)
    app = web.Application(middlewares=[_bearer_auth, _json_errors])
    app[VIEW_KEY] = view
    app[READY_KEY] = tuple(ready_checks)
    if token is not None:
        app[TOKEN_KEY] = token
    extra_docs = {path: item for path, item in (docs or {}).items()}
    for route in extra:
        path = getattr(route, "path", None)
        if isinstance(path, str) and path not in extra_docs:
            extra_docs[path] = openapi.extension_doc(path)
    app[OPENAPI_KEY] = openapi.build_document(extra_docs, token_required=token is not None)
    app.add_routes(
        [
            web.get("/v1/status", _status),
            web.get("/v1/peers", _peers),
            web.get("/v1/peers/{address}", _peer),
            web.get("/v1/routes", _routes),
            web.get("/healthz", _healthz),
            web.get("/readyz", _readyz),
            web.get(openapi.OPENAPI_PATH, _openapi),
            *extra,
        ]
    )
    return app


async def start_api(
    view: SpeakerView,
    host: str,
    port: int,
    routes: Iterable[web.AbstractRouteDef] = (),
    *,
    token_file: str | None = None,
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    ready_checks: Iterable[ReadyCheck] = (),
) -> web.AppRunner:
    """Serve the API on ``host:port`` inside the running loop; ``await runner.cleanup()`` stops
    it. ``runner.addresses`` tells the bound port when ``port`` is 0.

    ``token_file`` is required unless ``host`` is a loopback address (ValueError otherwise);
    an unreadable or empty token file raises OSError / ValueError before anything listens.
    """
    if token_file is None and not is_loopback_host(host):
        raise ValueError(f"the API on {host} needs a bearer token: set api.tokenFile")
    token = BearerToken(token_file) if token_file is not None else None
    if token_file is not None and os.stat(token_file).st_mode & 0o004:
        log.warning("event=token-file-world-readable file=%s", token_file)
    app = make_app(view, routes, docs=docs, token=token, ready_checks=ready_checks)
    # No access log: the API is polled and must keep INFO quiet; requests are logged at DEBUG.
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("api listening host=%s port=%s token=%s", host, port, token is not None)
    return runner


async def serve_api(
    view: SpeakerView,
    config: ApiConfig,
    routes: Iterable[web.AbstractRouteDef] = (),
    *,
    docs: Mapping[str, Mapping[str, Any]] | None = None,
    ready_checks: Iterable[ReadyCheck] = (),
) -> web.AppRunner:
    """:func:`start_api` for a validated ``api`` config section (bgpd, node and rr alike)."""
    return await start_api(
        view,
        config.host,
        config.port,
        routes,
        token_file=config.token_file,
        docs=docs,
        ready_checks=ready_checks,
    )
