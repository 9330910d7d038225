"""The REST API's client: GET with a bearer token, and the tables the CLI prints.

Tables in the style of ``calicoctl node status``; times and AS paths formatted for people. Used by
the CLI verbs (``status``, ``routes``, ``get``, ``ipam show``) and the lab. Implements no RFC.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

DEFAULT_API = "http://127.0.0.1:9179"
API_TIMEOUT = 5.0  # seconds; a local API that takes longer is as good as down
# The cluster view asks every node in turn (each bounded by the node daemon), so it may take
# longer than one local answer.
CLUSTER_TIMEOUT = 30.0

PEER_TYPES = {
    "mesh": "node-to-node mesh",
    "global": "global",
    "node": "node specific",
    "rr-client": "rr client",
    "route-reflector": "route reflector",
}


class ApiError(Exception):
    """The API could not be reached or answered with an error; ``str()`` says why."""

    def __init__(self, why: str, reachable: bool) -> None:
        super().__init__(why)
        self.reachable = reachable


# --- talking to the API -----------------------------------------------------------------------


def api_get(
    base: str,
    path: str,
    query: dict[str, str] | None = None,
    *,
    token: str | None = None,
    timeout: float = API_TIMEOUT,
) -> Any:
    """GET ``base + path`` and decode the JSON body; raises :class:`ApiError`.

    ``token`` goes in an ``Authorization: Bearer`` header (RFC 6750), never in the URL, so it
    cannot end up in an error message or a server's request log.
    """
    return api_request(base, path, query, token=token, timeout=timeout)


def api_post(
    base: str, path: str, body: Any, *, token: str | None = None, timeout: float = API_TIMEOUT
) -> Any:
    """POST ``body`` as JSON to ``base + path``; the decoded answer. Raises :class:`ApiError`."""
    return api_request(base, path, token=token, timeout=timeout, body=body)


def api_request(
    base: str,
    path: str,
    query: dict[str, str] | None = None,
    *,
    token: str | None = None,
    timeout: float = API_TIMEOUT,
    body: Any = None,
) -> Any:
    """GET (or, with ``body``, POST as JSON) and decode the JSON answer."""
    url = base.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        request = urllib.request.Request(url, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        why = f"{path}: HTTP {exc.code}: {_error_reason(exc)}"
        if exc.code == 401:
            why += " (pass the API token with --token-file or $PODBGP_TOKEN_FILE)"
        raise ApiError(why, reachable=True) from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach {base}: {exc.reason}", reachable=False) from None
    except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
        raise ApiError(f"cannot reach {base}: {exc}", reachable=False) from None
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(f"{path}: answer is not JSON", reachable=True) from None


def _error_reason(exc: urllib.error.HTTPError) -> str:
    try:
        data = json.loads(exc.read())
        return str(data.get("reason") or data.get("error") or exc.reason)
    except (ValueError, AttributeError, OSError):
        return str(exc.reason)


# --- rendering --------------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A bordered text table: headers centred, cells left-aligned (calicoctl's look)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    lines = [
        rule,
        "| " + " | ".join(centred(h, w) for h, w in zip(headers, widths, strict=True)) + " |",
        rule,
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    if rows:
        lines.append(rule)
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """``303`` -> ``5m3s``; days first for long uptimes (``1d2h0m5s``)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return "".join(f"{n}{unit}" for n, unit in parts)


def format_since(value: Any) -> str:
    """An ISO 8601 timestamp shown in UTC to the second; anything else as given."""
    if not value:
        return "-"
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_as_path(value: Any) -> str:
    """AS numbers separated by spaces; an AS_SET (a nested list) in braces."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return "" if value is None else str(value)
    return " ".join(
        "{" + " ".join(map(str, item)) + "}" if isinstance(item, list) else str(item)
        for item in value
    )


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _session_row(peer: dict[str, Any]) -> list[str]:
    return [
        _cell(peer.get("address")),
        PEER_TYPES.get(str(peer.get("type")), _cell(peer.get("type"))),
        _cell(peer.get("state")),
        format_since(peer.get("since")),
        str(peer.get("info") or ""),
    ]


def _datastore_line(ds: dict[str, Any]) -> str:
    """``podbgp node``'s datastore health in one line (absent for a plain speaker)."""
    where = " ".join(str(ds[k]) for k in ("type", "description") if ds.get(k))
    if ds.get("synced") and ds.get("connected", True):
        state = "connected, synced"
    elif ds.get("connected"):
        state = "connected, not synced yet"
    else:
        state = "not connected"
    if ds.get("lastError") and state != "connected, synced":
        state += f" (last error: {ds['lastError']})"
    return f"Datastore {where}: {state}"


def render_status(status: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    where = f" on {status['nodeName']}" if status.get("nodeName") else ""
    head = (
        f"podbgp is running{where} (router ID {status.get('routerId', '?')}, "
        f"AS {status.get('asNumber', '?')}, up {format_duration(status.get('uptimeSeconds', 0))})"
    )
    if status.get("addresses"):
        head += "\nAddresses " + ", ".join(map(str, status["addresses"]))
    datastore = status.get("datastore")
    if isinstance(datastore, dict):
        head += "\n" + _datastore_line(datastore)
    if status.get("reflection"):
        head += f"\nRoute reflection: {status['reflection']}"
    if not peers:
        return head + "\n\nNo peers configured."
    session_rows = [_session_row(p) for p in peers]
    prefix_rows = []
    for p in peers:
        prefixes = p.get("prefixes") or {}
        prefix_rows.append(
            [_cell(p.get("address"))]
            + [_cell(prefixes.get(k)) for k in ("received", "accepted", "advertised")]
        )
    sessions = render_table(["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"], session_rows)
    counts = render_table(["PEER ADDRESS", "RECEIVED", "ACCEPTED", "ADVERTISED"], prefix_rows)
    text = f"{head}\n\nBGP sessions\n{sessions}\n\nPrefixes\n{counts}"
    bfd_rows = [_bfd_row(p) for p in peers if isinstance(p.get("bfd"), dict)]
    if bfd_rows:
        headers = ["PEER ADDRESS", "BFD STATE", "MODE", "TX/RX MS", "DETECT MS", "DIAG", "FLAPS"]
        text += "\n\nBFD sessions\n" + render_table(headers, bfd_rows)
    return text


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):g}"


def _bfd_row(peer: dict[str, Any]) -> list[str]:
    bfd: dict[str, Any] = peer["bfd"]
    diag = str(bfd.get("diagnostic") or "")
    remote = str(bfd.get("remoteDiagnostic") or "")
    if remote and remote != "NoDiagnostic":
        diag = f"{diag} (peer: {remote})"
    return [
        _cell(peer.get("address")),
        _cell(bfd.get("state")),
        f"{_cell(bfd.get('mode'))} :{_cell(bfd.get('port'))}",
        f"{_ms(bfd.get('txInterval'))}/{_ms(bfd.get('rxInterval'))}",
        _ms(bfd.get("detectTime")),
        diag,
        _cell(bfd.get("flaps")),
    ]


def render_cluster(api: str, view: dict[str, Any]) -> str:
    """The ``/v1/cluster/peers`` answer: every node's sessions, then the nodes not reached."""
    nodes = [n for n in view.get("nodes") or [] if isinstance(n, dict)]
    reached = [n for n in nodes if n.get("reachable")]
    head = f"podbgp cluster view from {api}: {len(nodes)} nodes, {len(reached)} reachable"
    rows = []
    for node in reached:
        name = _cell(node.get("name"))
        peers = node.get("peers") or []
        if not peers:
            rows.append([name, "-", "-", "-", "-", "no peers"])
        rows.extend([name, *_session_row(p)] for p in peers)
    parts = [head]
    if rows:
        headers = ["NODE", "PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"]
        parts.append("BGP sessions\n" + render_table(headers, rows))
    down = [
        [_cell(n.get("name")), _cell(n.get("apiAddress")), str(n.get("error") or "unreachable")]
        for n in nodes
        if not n.get("reachable")
    ]
    if down:
        parts.append("Unreachable nodes\n" + render_table(["NODE", "API ADDRESS", "ERROR"], down))
    return "\n\n".join(parts)


def render_routes(routes: list[dict[str, Any]]) -> str:
    if not routes:
        return "No routes."
    rows = []
    for r in routes:
        reason = str(r.get("reason") or "")
        if r.get("stale"):
            reason = f"{reason} (stale)" if reason else "stale"
        origin = r.get("fromPeer") or "local"
        rows.append(
            [
                _cell(r.get("prefix")),
                _cell(r.get("nextHop")),
                format_as_path(r.get("asPath")),
                str(origin),
                reason,
            ]
        )
    return render_table(["PREFIX", "NEXT HOP", "AS PATH", "FROM", "REASON"], rows)


# --- verbs ------------------------------------------------------------------------------------
