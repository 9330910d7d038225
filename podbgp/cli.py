"""``podbgp``: the command-line front door — every package's verbs, one daemon lifecycle.

Owns the verbs and their output: ``bgpd`` starts the standalone speaker, ``status`` and
``routes`` read the REST API and print ``calicoctl node status``-style tables (or the API's JSON;
``status --cluster`` the cluster-wide peer view of ``/v1/cluster/peers``), ``version`` prints the
version; each package registers its own verbs (rr, node, cluster resources, lab), and every
daemon verb runs through :func:`run_daemon` (config check, logging, asyncio). An API bound off
loopback wants a bearer token: ``--token-file`` (or
``$PODBGP_TOKEN_FILE``) names the file holding it. Exit status: 0 success, 1 the daemon is
unreachable or answered an error, 2 a usage or config error. Implements no RFC itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import podbgp
from bgpd.config import LOG_LEVELS, ConfigError, load_bgpd_config, read_token_file
from podbgp.cluster import cli as cluster_cli
from podbgp.lab import lab
from podbgp.node import cli as node_cli
from podbgp.ops.client import (
    CLUSTER_TIMEOUT,
    DEFAULT_API,
    ApiError,
    api_get,
    api_post,
    render_cluster,
    render_routes,
    render_status,
)
from rr import cli as rr_cli

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
DaemonMain = Callable[[Any], Coroutine[Any, Any, None]]

# Each package's verbs: ``register(verbs)`` adds parsers to the argparse subparsers object and
# sets either ``func`` (args -> exit status) or ``daemon`` ((load config, async main(config)),
# run by :func:`run_daemon`). Their heavy imports happen when a verb runs, not here.
VERB_REGISTRARS: tuple[Callable[[Any], None], ...] = (
    rr_cli.register,
    node_cli.register,
    cluster_cli.register,
    lab.register,
)


def setup_logging(level: str) -> None:
    """Log to stderr, one line per event; quiet at INFO (per-message detail is DEBUG)."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)


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


def cmd_drain(args: argparse.Namespace) -> int:
    """POST /v1/drain: graceful shutdown of every session (RFC 8326, RFC 9003)."""
    body: dict[str, Any] = {}
    if args.drain_time is not None:
        body["drainTime"] = args.drain_time
    if args.message is not None:
        body["message"] = args.message
    try:
        answer = api_post(args.api, "/v1/drain", body, token=_token(args))
    except ConfigError as exc:
        print(f"podbgp drain: {exc.problem}", file=sys.stderr)
        return 2
    except ApiError as exc:
        return _api_failure(exc)
    if args.output == "json":
        _print_json(answer)
    else:
        print(
            f"draining {answer.get('peers', '?')} sessions: routes carry GRACEFUL_SHUTDOWN now, "
            f"sessions close in {answer.get('drainTime', '?')} s with "
            f'"{answer.get("message", "")}"'
        )
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
    main: DaemonMain,
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


async def run_bgpd(config: Any) -> None:
    # Imported here so the CLI (status, routes, --help) works without the daemon's dependencies.
    from podbgp import daemon

    await daemon.run(config)


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
    p.set_defaults(daemon=(load_bgpd_config, run_bgpd))

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

    p = verbs.add_parser(
        "drain",
        help="gracefully shut down every BGP session",
        description=(
            "Graceful shutdown (RFC 8326) through the REST API: our routes are re-advertised "
            "with GRACEFUL_SHUTDOWN and LOCAL_PREF 0 so peers move traffic away, and after the "
            "drain time every session closes with Cease/Administrative Shutdown and a message "
            "(RFC 9003). The sessions stay down until the daemon restarts."
        ),
    )
    _add_api_options(p)
    p.add_argument("--drain-time", type=int, metavar="SECONDS", help="default: the daemon's")
    p.add_argument("--message", help="shutdown communication, at most 255 octets")
    p.set_defaults(func=cmd_drain)

    p = verbs.add_parser("version", help="print the version", description="Print the version.")
    p.set_defaults(func=cmd_version)
    for register in VERB_REGISTRARS:
        register(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    daemon: tuple[Callable[[str], Any], DaemonMain] | None = getattr(args, "daemon", None)
    if daemon is not None:
        return run_daemon(args, *daemon)
    result: int = args.func(args)
    return result
