"""``podbgp status`` / ``routes`` / ``version`` against a real API server on loopback, with and
without a bearer token, and ``status --cluster`` against a served ``/v1/cluster/peers`` answer.

The server is the real ``podbgp.ops.api`` application started with ``start_api``; the speaker behind
it is a small in-test ``SpeakerView`` with fixed data so the tables can be golden-tested. The fake
is allowed here because the real speaker -> views -> API -> CLI path is covered by a later
real-speaker test. The CLI's blocking HTTP client runs in a worker thread while the server runs on
the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import podbgp
from podbgp.cli import main
from podbgp.ops.api import start_api
from podbgp.ops.client import format_as_path, format_duration, format_since, render_table

REPO = Path(__file__).resolve().parents[3]

STATUS = {
    "routerId": "192.0.2.11",
    "asNumber": 64512,
    "uptimeSeconds": 303,
    "peers": {"Established": 1, "Active": 1},
}
PEERS = [
    {
        "address": "192.0.2.12",
        "asNumber": 64512,
        "type": "global",
        "state": "Established",
        "since": "2024-05-01T12:00:00Z",
        "info": "",
        "prefixes": {"received": 3, "accepted": 2, "advertised": 1},
    },
    {
        "address": "2001:db8::2",
        "asNumber": 64513,
        "type": "mesh",
        "state": "Active",
        "since": "2024-05-01T14:30:05+02:00",
        "info": "Connection refused",
        "prefixes": {"received": 0, "accepted": 0, "advertised": 0},
    },
]
ROUTES = [
    {
        "prefix": "10.244.1.0/24",
        "nextHop": "192.0.2.11",
        "asPath": "",
        "fromPeer": "local",
        "reason": "only path",
        "stale": False,
    },
    {
        "prefix": "10.244.2.0/24",
        "nextHop": "192.0.2.12",
        "asPath": "",
        "fromPeer": "192.0.2.12",
        "reason": "lowest router ID",
        "stale": False,
    },
    {
        "prefix": "10.244.3.0/24",
        "nextHop": "192.0.2.13",
        "asPath": "64513 {64514 64515}",
        "fromPeer": "192.0.2.13",
        "reason": "only path",
        "stale": True,
    },
]

STATUS_TABLE = """\
podbgp is running (router ID 192.0.2.11, AS 64512, up 5m3s)

BGP sessions
+--------------+-------------------+-------------+----------------------+--------------------+
| PEER ADDRESS |     PEER TYPE     |    STATE    |        SINCE         |        INFO        |
+--------------+-------------------+-------------+----------------------+--------------------+
| 192.0.2.12   | global            | Established | 2024-05-01T12:00:00Z |                    |
| 2001:db8::2  | node-to-node mesh | Active      | 2024-05-01T12:30:05Z | Connection refused |
+--------------+-------------------+-------------+----------------------+--------------------+

Prefixes
+--------------+----------+----------+------------+
| PEER ADDRESS | RECEIVED | ACCEPTED | ADVERTISED |
+--------------+----------+----------+------------+
| 192.0.2.12   | 3        | 2        | 1          |
| 2001:db8::2  | 0        | 0        | 0          |
+--------------+----------+----------+------------+
"""

ROUTES_TABLE = """\
+---------------+------------+---------------------+------------+-------------------+
|    PREFIX     |  NEXT HOP  |       AS PATH       |    FROM    |      REASON       |
+---------------+------------+---------------------+------------+-------------------+
| 10.244.1.0/24 | 192.0.2.11 |                     | local      | only path         |
| 10.244.2.0/24 | 192.0.2.12 |                     | 192.0.2.12 | lowest router ID  |
| 10.244.3.0/24 | 192.0.2.13 | 64513 {64514 64515} | 192.0.2.13 | only path (stale) |
+---------------+------------+---------------------+------------+-------------------+
"""


class FixedView:
    """Fixed snapshots standing in for the speaker (see the module docstring)."""

    def __init__(self, peers: list[dict[str, Any]]) -> None:
        self.peer_list = peers

    def status(self) -> dict[str, Any]:
        return STATUS

    def peers(self) -> list[dict[str, Any]]:
        return self.peer_list

    def routes(self, detail: bool = False) -> list[dict[str, Any]]:
        return ROUTES


@pytest.fixture
def view() -> FixedView:
    return FixedView(PEERS)


@pytest.fixture
async def api(view: FixedView) -> AsyncIterator[str]:
    runner = await start_api(view, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def run_main(*argv: str) -> int:
    # The CLI blocks on urllib; the server needs this loop free, so the CLI gets a thread.
    return await asyncio.wait_for(asyncio.to_thread(main, list(argv)), timeout=30)


async def test_status_table(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("status", "--api", api) == 0
    out, err = capsys.readouterr()
    assert out == STATUS_TABLE
    assert err == ""


async def test_status_json(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("status", "--api", api, "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == {"status": STATUS, "peers": PEERS}


async def test_status_without_peers(
    api: str, view: FixedView, capsys: pytest.CaptureFixture[str]
) -> None:
    view.peer_list = []
    assert await run_main("status", "--api", api + "/") == 0
    assert capsys.readouterr().out == (
        "podbgp is running (router ID 192.0.2.11, AS 64512, up 5m3s)\n\nNo peers configured.\n"
    )


async def test_routes_table(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("routes", "--api", api) == 0
    assert capsys.readouterr().out == ROUTES_TABLE


async def test_routes_json_with_filters(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("routes", "--api", api, "-o", "json", "--peer", "192.0.2.12", "--prefix", "10.244.2.9")
    assert await run_main(*args) == 0
    assert json.loads(capsys.readouterr().out) == [ROUTES[1]]


async def test_routes_none_match(api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("routes", "--api", api, "--prefix", "10.9.0.0/16") == 0
    assert capsys.readouterr().out == "No routes.\n"


async def test_routes_bad_filter_reports_api_error(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main("routes", "--api", api, "--prefix", "pods") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "podbgp API error: /v1/routes: HTTP 400: 'pods' is neither an IP prefix nor an IP address\n"
    )


def free_port() -> int:
    # Bind then close: nothing listens on the port afterwards, so connecting is refused.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("verb", ["status", "routes"])
async def test_unreachable_api_exits_1(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await run_main(verb, "--api", url) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"podbgp is not running: cannot reach {url}: [Errno 111] Connection refused\n"


async def test_status_in_a_real_process(api: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PODBGP_API": api}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "podbgp",
        "status",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert (proc.returncode, err.decode()) == (0, "")
    assert out.decode() == STATUS_TABLE


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out == f"podbgp {podbgp.__version__}\n"


@pytest.mark.parametrize("verb", [[], ["bgpd"], ["status"], ["routes"], ["version"]])
def test_help_on_every_verb(verb: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*verb, "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: podbgp {' '.join(verb)}".rstrip())


def test_bgpd_requires_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bgpd"])
    assert info.value.code == 2
    assert "the following arguments are required: -c/--config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (303, "5m3s"), (3600, "1h0m0s"), (90061, "1d1h1m1s"), (-4, "0s")],
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z"),
        ("2024-05-01T00:30:00.123+01:00", "2024-04-30T23:30:00Z"),
        (None, "-"),
        ("yesterday", "yesterday"),
    ],
)
def test_format_since(value: Any, text: str) -> None:
    assert format_since(value) == text


def test_format_as_path_from_lists() -> None:
    assert format_as_path([64513, [64514, 64515], 64516]) == "64513 {64514 64515} 64516"
    assert format_as_path([]) == ""


def test_render_table_centres_headers() -> None:
    assert render_table(["A", "LONG"], [["wide cell", "x"]]) == (
        "+-----------+------+\n"
        "|     A     | LONG |\n"
        "+-----------+------+\n"
        "| wide cell | x    |\n"
        "+-----------+------+"
    )


# --- bearer token ----------------------------------------------------------------------------

TOKEN = "cli-t0ken_value"


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
async def secured_api(view: FixedView, token_file: str) -> AsyncIterator[str]:
    runner = await start_api(view, "127.0.0.1", 0, token_file=token_file)
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_status_with_token_file(
    secured_api: str, token_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main("status", "--api", secured_api, "--token-file", token_file) == 0
    assert capsys.readouterr().out == STATUS_TABLE


async def test_token_file_from_environment(
    secured_api: str, token_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PODBGP_TOKEN_FILE": token_file}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "podbgp", "routes", "--api", secured_api, "-o", "json",
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert (proc.returncode, err.decode()) == (0, "")
    assert json.loads(out) == ROUTES


async def test_missing_token_is_an_api_error(
    secured_api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main("status", "--api", secured_api) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "podbgp API error: /v1/status: HTTP 401: missing bearer token (send Authorization: "
        "Bearer <token>) (pass the API token with --token-file or $PODBGP_TOKEN_FILE)\n"
    )


async def test_wrong_token_is_refused_and_not_echoed(
    secured_api: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token\n")
    assert await run_main("routes", "--api", secured_api, "--token-file", str(wrong)) == 1
    out, err = capsys.readouterr()
    assert "HTTP 401: invalid bearer token" in err
    assert "not-the-token" not in out + err


@pytest.mark.parametrize("verb", ["status", "routes"])
async def test_unreadable_token_file_exits_2(
    verb: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    url = f"http://127.0.0.1:{free_port()}"
    assert await run_main(verb, "--api", url, "--token-file", str(missing)) == 2
    assert capsys.readouterr().err == (
        f"podbgp {verb}: cannot read token file {missing}: No such file or directory\n"
    )


async def test_status_names_the_node(
    api: str, view: FixedView, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(STATUS, "nodeName", "node-1")
    view.peer_list = []
    assert await run_main("status", "--api", api) == 0
    assert capsys.readouterr().out.startswith("podbgp is running on node-1 (router ID 192.0.2.11,")


# --- the cluster view ------------------------------------------------------------------------

CLUSTER = {
    "nodes": [
        {
            "name": "node-1",
            "apiAddress": "http://192.0.2.11:9179",
            "reachable": True,
            "error": None,
            "peers": [PEERS[0]],
        },
        {
            "name": "node-2",
            "apiAddress": "http://192.0.2.12:9179",
            "reachable": True,
            "error": None,
            "peers": [],
        },
        {
            "name": "node-3",
            "apiAddress": "http://198.51.100.13:9179",
            "reachable": False,
            "error": "timed out after 3s",
            "peers": [],
        },
    ]
}

CLUSTER_TABLE = """\
podbgp cluster view from {api}: 3 nodes, 2 reachable

BGP sessions
+--------+--------------+-----------+-------------+----------------------+----------+
|  NODE  | PEER ADDRESS | PEER TYPE |    STATE    |        SINCE         |   INFO   |
+--------+--------------+-----------+-------------+----------------------+----------+
| node-1 | 192.0.2.12   | global    | Established | 2024-05-01T12:00:00Z |          |
| node-2 | -            | -         | -           | -                    | no peers |
+--------+--------------+-----------+-------------+----------------------+----------+

Unreachable nodes
+--------+---------------------------+--------------------+
|  NODE  |        API ADDRESS        |       ERROR        |
+--------+---------------------------+--------------------+
| node-3 | http://198.51.100.13:9179 | timed out after 3s |
+--------+---------------------------+--------------------+
"""


@pytest.fixture
async def cluster_api(view: FixedView) -> AsyncIterator[str]:
    async def cluster_peers(request: web.Request) -> web.Response:
        return web.json_response(CLUSTER)

    runner = await start_api(
        view, "127.0.0.1", 0, routes=[web.get("/v1/cluster/peers", cluster_peers)]
    )
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_status_cluster_table(cluster_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("status", "--cluster", "--api", cluster_api) == 0
    assert capsys.readouterr().out == CLUSTER_TABLE.format(api=cluster_api)


async def test_status_cluster_json(cluster_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_main("status", "--cluster", "--api", cluster_api, "-o", "json") == 0
    assert json.loads(capsys.readouterr().out) == CLUSTER


async def test_status_cluster_on_a_plain_speaker(
    api: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_main("status", "--cluster", "--api", api) == 1
    assert capsys.readouterr().err == (
        "podbgp API error: /v1/cluster/peers: HTTP 404: no such endpoint: /v1/cluster/peers "
        "(the cluster view is served by `podbgp node`)\n"
    )


async def test_status_cluster_unreachable_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert await run_main("status", "--cluster", "--api", url) == 1
    assert capsys.readouterr().err.startswith(f"podbgp is not running: cannot reach {url}")


@pytest.mark.parametrize(
    ("datastore", "line"),
    [
        (
            {"type": "etcd", "description": "http://192.0.2.2:2379", "connected": True,
             "synced": True, "lastError": "old news"},
            "Datastore etcd http://192.0.2.2:2379: connected, synced",
        ),
        (
            {"type": "etcd", "description": "http://192.0.2.2:2379", "connected": False,
             "synced": True, "lastError": "connection refused"},
            "Datastore etcd http://192.0.2.2:2379: not connected (last error: connection refused)",
        ),
        (
            {"type": "file", "description": "/etc/podbgp/cluster", "connected": True,
             "synced": False, "lastError": None},
            "Datastore file /etc/podbgp/cluster: connected, not synced yet",
        ),
    ],
)  # fmt: skip
async def test_status_shows_the_nodes_datastore(
    api: str,
    view: FixedView,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    datastore: dict[str, Any],
    line: str,
) -> None:
    monkeypatch.setitem(STATUS, "datastore", datastore)
    view.peer_list = []
    assert await run_main("status", "--api", api) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [
        "podbgp is running (router ID 192.0.2.11, AS 64512, up 5m3s)",
        line,
    ]


def test_status_shows_bfd_sessions_of_the_peers_that_have_one() -> None:
    from podbgp.ops.client import render_status

    status = {"routerId": "192.0.2.1", "asNumber": 64512, "uptimeSeconds": 5}
    bfd = {"state": "Down", "mode": "single-hop", "port": 3784, "txInterval": 1000.0,
           "rxInterval": 300.0, "detectTime": None, "diagnostic": "ControlDetectionTimeExpired",
           "remoteDiagnostic": "NoDiagnostic", "flaps": 1}  # fmt: skip
    peers = [
        {"address": "192.0.2.2", "type": "mesh", "state": "Idle", "bfd": bfd},
        {"address": "192.0.2.3", "type": "mesh", "state": "Established"},
    ]
    text = render_status(status, peers)
    section = text.split("BFD sessions\n", 1)[1]
    assert "BFD STATE" in section and "DETECT MS" in section
    row = next(line for line in section.splitlines() if "192.0.2.2" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["192.0.2.2", "Down", "single-hop :3784", "1000/300", "-",
                     "ControlDetectionTimeExpired", "1"]  # fmt: skip
    assert "192.0.2.3" not in section
    assert "BFD sessions" not in render_status(status, peers[1:])


def test_status_shows_a_dual_stack_nodes_addresses() -> None:
    from podbgp.ops.client import render_status

    status = {"nodeName": "n1", "routerId": "192.0.2.11", "asNumber": 64512, "uptimeSeconds": 5,
              "addresses": ["192.0.2.11/24", "2001:db8::11/64"]}  # fmt: skip
    lines = render_status(status, []).splitlines()
    assert lines[1] == "Addresses 192.0.2.11/24, 2001:db8::11/64"
