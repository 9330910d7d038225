"""``POST /v1/drain``: graceful shutdown of every session on request (RFC 8326, RFC 9003).

The one endpoint that changes state. Like every path but the kubelet probes it needs the bearer
token when the API is bound off loopback (``podbgp.ops.api``). It starts the speaker's drain —
our routes re-advertised with GRACEFUL_SHUTDOWN and LOCAL_PREF 0, ``drainTime`` seconds for
traffic to move, then Cease/Administrative Shutdown with ``message`` — and answers 202 at once;
the sessions stay down until the daemon restarts. ``podbgp drain`` is its client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bgpd.speaker import Speaker

DRAIN_PATH = "/v1/drain"
MAX_DRAIN_TIME = 3600
MAX_MESSAGE_OCTETS = 255  # RFC 9003 §2


def _answer(status: int, body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=status)


def parse_request(body: Any, drain_time: int, message: str) -> tuple[int, str] | str:
    """The drain time and message from a request body (defaults for what it leaves out), or
    the problem in words."""
    if body is None:
        return drain_time, message
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    unknown = set(body) - {"drainTime", "message"}
    if unknown:
        return f"unknown key {sorted(unknown)[0]}; expected drainTime, message"
    seconds = body.get("drainTime", drain_time)
    if isinstance(seconds, bool) or not isinstance(seconds, int):
        return f"drainTime must be an integer in 0..{MAX_DRAIN_TIME}"
    if not 0 <= seconds <= MAX_DRAIN_TIME:
        return f"drainTime must be an integer in 0..{MAX_DRAIN_TIME}"
    text = body.get("message", message)
    if not isinstance(text, str) or len(text.encode("utf-8")) > MAX_MESSAGE_OCTETS:
        return "message must be text of at most 255 UTF-8 octets (RFC 9003)"
    return seconds, text


def drain_route(
    speaker: Callable[[], Speaker | None], *, drain_time: int, message: str
) -> web.RouteDef:
    """The route; ``speaker`` returns the running speaker (None: none yet)."""
    tasks: set[asyncio.Task[None]] = set()

    async def handler(request: web.Request) -> web.Response:
        body: Any = None
        if request.can_read_body:
            try:
                body = json.loads(await request.text() or "null")
            except ValueError:
                return _answer(400, {"error": "bad request", "reason": "the body is not JSON"})
        parsed = parse_request(body, drain_time, message)
        if isinstance(parsed, str):
            return _answer(400, {"error": "bad request", "reason": parsed})
        current = speaker()
        if current is None:
            return _answer(503, {"error": "not ready", "reason": "no BGP speaker is running"})
        if current.draining:
            return _answer(409, {"error": "conflict", "reason": "already draining"})
        seconds, text = parsed
        task = asyncio.create_task(current.drain(seconds, text), name="drain")
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        peers = len(current.peers)
        return _answer(
            202, {"status": "draining", "drainTime": seconds, "message": text, "peers": peers}
        )

    return web.post(DRAIN_PATH, handler)


DRAIN_DOC: dict[str, Any] = {
    "post": {
        "summary": "Graceful shutdown of every BGP session (RFC 8326), then Cease with a "
        "shutdown message (RFC 9003); the sessions stay down until the daemon restarts",
        "operationId": "postDrain",
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "drainTime": {"type": "integer", "minimum": 0, "maximum": 3600},
                            "message": {"type": "string", "maxLength": 255},
                        },
                        "additionalProperties": False,
                    }
                }
            },
        },
        "responses": {
            "202": {"description": "draining started"},
            "400": {"description": "a bad body"},
            "409": {"description": "already draining"},
            "503": {"description": "no speaker yet"},
        },
    }
}
