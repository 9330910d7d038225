"""``podbgp``: the command-line front door (argparse verbs, logging setup, API client tables).

Owns the verbs and their output: ``bgpd`` starts the standalone speaker, ``status`` and
``routes`` read the REST API and print ``calicoctl node status``-style tables (or the API's JSON;
``status --cluster`` the cluster-wide peer view of ``/v1/cluster/peers``), ``version`` prints the
version. An API bound off loopback wants a bearer token: ``--token-file`` (or
``$PODBGP_TOKEN_FILE``) names the file holding it. Exit status: 0 success, 1 the daemon is
unreachable or answered an error, 2 a usage or config error. Implements no RFC itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import podbgp
from bgpd.config import LOG_LEVELS, ConfigError, load_bgpd_config, read_token_file

DEFAULT_API = "http://127.0.0.1:9179"
API_TIMEOUT = 5.0  # seconds; a local API that takes longer is as good as down
# The cluster view asks every node in turn (each bounded by the node daemon), so it may take
# longer than one local answer.
CLUSTER_TIMEOUT = 30.0
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# Modules that add verbs: each has ``register(verbs)`` taking the argparse subparsers object and
# setting ``func`` (args -> exit status) on its parsers. Listed explicitly, imported on use.
VERB_MODULES: tuple[str, ...] = ("rr.cli", "podbgp.cluster.cli", "podbgp.lab.lab")

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


def setup_logging(level: str) -> None:
    """Log to stderr, one line per event; quiet at INFO (per-message detail is DEBUG)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)


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
    url = base.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        request = urllib.request.Request(url, headers=headers)
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
    datastore = status.get("datastore")
    if isinstance(datastore, dict):
        head += "\n" + _datastore_line(datastore)
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
    return f"{head}\n\nBGP sessions\n{sessions}\n\nPrefixes\n{counts}"


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


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _token(args: argparse.Namespace) -> str | None:
    """The token from ``--token-file``; raises ConfigError naming the option."""
    if not args.token_file:
        return None
    try:
        return read_token_file(args.token_file)
    except (OSError, ValueError) as exc:
        raise ConfigError("--token-file", "", str(exc)) from None


def cmd_status(args: argparse.Namespace) -> int:
    try:
        token = _token(args)
    except ConfigError as exc:
        print(f"podbgp status: {exc.problem}", file=sys.stderr)
        return 2
    if args.cluster:
        return _cluster_status(args, token)
    try:
        status = api_get(args.api, "/v1/status", token=token)
        peers = api_get(args.api, "/v1/peers", token=token)
    except ApiError as exc:
        return _api_failure(exc)
    if args.output == "json":
        _print_json({"status": status, "peers": peers})
    else:
        print(render_status(status, peers))
    return 0


def _cluster_status(args: argparse.Namespace, token: str | None) -> int:
    try:
        view = api_get(args.api, "/v1/cluster/peers", token=token, timeout=CLUSTER_TIMEOUT)
    except ApiError as exc:
        if exc.reachable and "HTTP 404" in str(exc):
            exc = ApiError(f"{exc} (the cluster view is served by `podbgp node`)", True)
        return _api_failure(exc)
    if args.output == "json":
        _print_json(view)
    else:
        print(render_cluster(args.api, view))
    return 0


def cmd_routes(args: argparse.Namespace) -> int:
    query = {k: v for k, v in (("prefix", args.prefix), ("peer", args.peer)) if v is not None}
    try:
        routes = api_get(args.api, "/v1/routes", query, token=_token(args))
    except ConfigError as exc:
        print(f"podbgp routes: {exc.problem}", file=sys.stderr)
        return 2
    except ApiError as exc:
        return _api_failure(exc)
    if args.output == "json":
        _print_json(routes)
    else:
        print(render_routes(routes))
    return 0


def _api_failure(exc: ApiError) -> int:
    if exc.reachable:
        print(f"podbgp API error: {exc}", file=sys.stderr)
    else:
        print(f"podbgp is not running: {exc}", file=sys.stderr)
    return 1


def run_daemon(
    args: argparse.Namespace,
    load: Callable[[str], Any],
    main: Callable[[Any], Coroutine[Any, Any, None]],
) -> int:
    """The shape of every daemon verb: load and validate ``args.config`` (a bad one: its one
    line on stderr, exit 2), set up logging, run ``main(config)`` until stopped."""
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    setup_logging(args.log_level or config.log_level)
    # Ctrl-C is the normal way to stop a foreground daemon, not an error.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(config))
    return 0


def cmd_bgpd(args: argparse.Namespace) -> int:
    # Imported here so the CLI (status, routes, --help) works without the daemon's dependencies.
    from podbgp import daemon

    return run_daemon(args, load_bgpd_config, daemon.run)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"podbgp {podbgp.__version__}")
    return 0


def _add_api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        default=os.environ.get("PODBGP_API", DEFAULT_API),
        metavar="URL",
        help=f"REST API base URL (default: $PODBGP_API or {DEFAULT_API})",
    )
    parser.add_argument(
        "--token-file",
        default=os.environ.get("PODBGP_TOKEN_FILE") or None,
        metavar="FILE",
        help="file holding the API's bearer token, for an API bound off loopback "
        "(default: $PODBGP_TOKEN_FILE)",
    )
    parser.add_argument(
        "-o", "--output", choices=("table", "json"), default="table", help="output format"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="podbgp", description="BGP route distribution for Kubernetes-style pod networks."
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser(
        "bgpd",
        help="run the standalone BGP speaker",
        description=(
            "Run the standalone BGP speaker: static peers and originated prefixes from YAML, "
            "the REST API, no datastore and no kernel routes."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="bgpd YAML config")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="override the config's logLevel")
    p.set_defaults(func=cmd_bgpd)

    p = verbs.add_parser(
        "status",
        help="show BGP sessions",
        description=(
            "Show the speaker's BGP sessions and prefix counts, read from its REST API. "
            "Exit status 1 when the daemon cannot be reached."
        ),
    )
    _add_api_options(p)
    p.add_argument(
        "--cluster",
        action="store_true",
        help="every node's sessions, gathered by this node's daemon (podbgp node)",
    )
    p.set_defaults(func=cmd_status)

    p = verbs.add_parser(
        "routes",
        help="show the Loc-RIB",
        description=("Show the best route for each prefix (the Loc-RIB), read from the REST API."),
    )
    _add_api_options(p)
    p.add_argument("--prefix", help="only this prefix, or the prefixes containing this address")
    p.add_argument("--peer", help="only routes learned from this peer address ('local': ours)")
    p.set_defaults(func=cmd_routes)

    p = verbs.add_parser("version", help="print the version", description="Print the version.")
    p.set_defaults(func=cmd_version)
    for module_name in VERB_MODULES:
        importlib.import_module(module_name).register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
