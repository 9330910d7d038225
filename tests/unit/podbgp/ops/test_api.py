"""The REST API over a real aiohttp server on loopback: every endpoint, filters, JSON errors,
the OpenAPI document against the handlers, bearer-token access, and the config's ``api`` section.

The speaker side is a small in-test ``SpeakerView`` returning fixed snapshots. That fake is
deliberate: this file tests the HTTP layer (routing, filters, errors, redaction); the path from
a real speaker through ``podbgp.ops.views`` to this API is covered by the speaker's loopback tests.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bgpd.config import ApiConfig, ConfigError, load_bgpd_config
from podbgp.ops.api import OPENAPI_KEY, VIEW_KEY, make_app, redact, start_api


def _peer(address: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "address": address,
        "asNumber": 64512,
        "type": "global",
        "state": state,
        "since": "2024-05-01T12:00:00Z",
        "info": "",
        "holdTime": 90,
        "keepaliveTime": 30,
        "capabilities": ["4-octet-as"],
        "prefixes": {"received": 1, "accepted": 1, "advertised": 1},
        "messages": {"sent": 10, "received": 12},
        **extra,
    }


ROUTES = [
    {
        "prefix": "10.244.0.0/16",
        "nextHop": "192.0.2.13",
        "asPath": "64513",
        "fromPeer": "192.0.2.13",
        "reason": "only path",
        "stale": False,
    },
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
        "prefix": "2001:db8:2::/48",
        "nextHop": "2001:db8::2",
        "asPath": "64513",
        "fromPeer": "2001:db8::2",
        "reason": "only path",
        "stale": True,
    },
]


class FakeView:
    """Fixed snapshots; ``peer_list`` and ``fail`` are changed by individual tests."""

    def __init__(self) -> None:
        self.peer_list = [
            _peer("192.0.2.12", "Established"),
            _peer("2001:db8::2", "Active", info="Connection refused"),
        ]
        self.fail = False

    def status(self) -> dict[str, Any]:
        if self.fail:
            raise RuntimeError("speaker snapshot failed")
        return {
            "routerId": "192.0.2.11",
            "asNumber": 64512,
            "uptimeSeconds": 303,
            "peers": {"Established": 1, "Active": 1},
        }

    def peers(self) -> list[dict[str, Any]]:
        return self.peer_list

    def routes(self, detail: bool = False) -> list[dict[str, Any]]:
        self.detail = detail
        return ROUTES


@pytest.fixture
def view() -> FakeView:
    return FakeView()


@pytest.fixture
async def client(view: FakeView) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(view), host="127.0.0.1")) as c:
        yield c


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    resp = await client.get(path)
    assert resp.status == status
    assert resp.content_type == "application/json"
    return await resp.json()


async def test_status(client: TestClient[Any, Any], view: FakeView) -> None:
    assert await get_json(client, "/v1/status") == view.status()


async def test_app_holds_the_view(view: FakeView) -> None:
    assert make_app(view)[VIEW_KEY] is view


async def test_peers(client: TestClient[Any, Any], view: FakeView) -> None:
    assert await get_json(client, "/v1/peers") == view.peer_list


async def test_one_peer(client: TestClient[Any, Any], view: FakeView) -> None:
    assert await get_json(client, "/v1/peers/192.0.2.12") == view.peer_list[0]
    # Any spelling of the same IPv6 address finds the peer.
    assert await get_json(client, "/v1/peers/2001:DB8:0::2") == view.peer_list[1]


async def test_unknown_peer_is_404_json(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/v1/peers/192.0.2.99", status=404)
    assert body == {"error": "not found", "reason": "no peer with address 192.0.2.99"}


async def test_peer_not_an_address_is_400(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/v1/peers/peer-one", status=400)
    assert body == {"error": "bad request", "reason": "'peer-one' is not an IP address"}


async def test_routes(client: TestClient[Any, Any]) -> None:
    assert await get_json(client, "/v1/routes") == ROUTES


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        ("prefix=10.244.1.0/24", [1]),
        ("prefix=10.244.0.0/16", [0]),
        ("prefix=10.244.9.0/24", []),
        ("prefix=10.244.1.7", [0, 1]),  # every route containing the address
        ("prefix=2001:db8:2::9", [3]),
        ("prefix=2001:DB8:2::/48", [3]),
        ("peer=192.0.2.12", [2]),
        ("peer=2001:db8:0::2", [3]),
        ("peer=local", [1]),
        ("peer=192.0.2.13&prefix=10.244.2.0/24", []),
        ("peer=192.0.2.13&prefix=10.244.0.1", [0]),
    ],
)
async def test_route_filters(client: TestClient[Any, Any], query: str, indexes: list[int]) -> None:
    assert await get_json(client, f"/v1/routes?{query}") == [ROUTES[i] for i in indexes]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("prefix=10.244.1.7/24", "host bits are set; did you mean 10.244.1.0/24?"),
        ("prefix=10.244.1.0/40", "must be an IP prefix in CIDR form, like 10.244.1.0/24"),
        ("prefix=pods", "'pods' is neither an IP prefix nor an IP address"),
        ("peer=node-2", "'node-2' is not an IP address (or 'local')"),
    ],
)
async def test_bad_route_filter_is_400(
    client: TestClient[Any, Any], query: str, reason: str
) -> None:
    body = await get_json(client, f"/v1/routes?{query}", status=400)
    assert body == {"error": "bad request", "reason": reason}


async def test_healthz(client: TestClient[Any, Any]) -> None:
    assert await get_json(client, "/healthz") == {"status": "ok"}


async def test_ready_with_one_established_of_two(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/readyz")
    assert body == {"status": "ready", "peers": 2, "established": 1}


async def test_ready_with_no_peers(client: TestClient[Any, Any], view: FakeView) -> None:
    view.peer_list = []
    assert await get_json(client, "/readyz") == {"status": "ready", "peers": 0, "established": 0}


async def test_not_ready_when_no_peer_established(
    client: TestClient[Any, Any], view: FakeView
) -> None:
    view.peer_list = [_peer("192.0.2.12", "Active"), _peer("192.0.2.13", "Connect")]
    body = await get_json(client, "/readyz", status=503)
    assert body == {
        "status": "not ready",
        "reason": "no peer is Established (0 of 2)",
        "peers": 2,
        "established": 0,
    }


async def test_unknown_path_is_404_json(client: TestClient[Any, Any]) -> None:
    body = await get_json(client, "/v2/peers", status=404)
    assert body == {"error": "not found", "reason": "no such endpoint: /v2/peers"}


async def test_wrong_method_is_405_json(client: TestClient[Any, Any]) -> None:
    resp = await client.post("/v1/peers", json={})
    assert resp.status == 405
    assert resp.headers["Allow"] == "GET, HEAD"
    assert await resp.json() == {
        "error": "method not allowed",
        "reason": "POST /v1/peers: use GET, HEAD",
    }


async def test_handler_failure_is_500_json(client: TestClient[Any, Any], view: FakeView) -> None:
    view.fail = True
    body = await get_json(client, "/v1/status", status=500)
    assert body == {"error": "internal error", "reason": "RuntimeError"}


async def test_secrets_never_leave_the_api(client: TestClient[Any, Any], view: FakeView) -> None:
    view.peer_list = [
        _peer(
            "192.0.2.12",
            "Established",
            password="hunter2",
            auth={"md5Password": "hunter2", "Token": "t0k3n", "keyId": 1},
        )
    ]
    for path in ("/v1/peers", "/v1/peers/192.0.2.12"):
        resp = await client.get(path)
        text = await resp.text()
        assert "hunter2" not in text and "t0k3n" not in text
        assert "password" not in text.lower() and "token" not in text.lower()
    body = await get_json(client, "/v1/peers/192.0.2.12")
    assert body["auth"] == {"keyId": 1}
    assert body["address"] == "192.0.2.12"


def test_redact_walks_lists_and_dicts() -> None:
    data = {"a": [{"password": "x", "b": ({"apiToken": "y", "c": 1},)}], "secret": "z"}
    assert redact(data) == {"a": [{"b": [{"c": 1}]}]}


async def test_non_json_values_are_rendered(client: TestClient[Any, Any], view: FakeView) -> None:
    view.peer_list = [
        _peer(
            "192.0.2.12",
            "Established",
            since=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            routerId=ipaddress.ip_address("192.0.2.12"),
            families=frozenset({"ipv6", "ipv4"}),
        )
    ]
    body = await get_json(client, "/v1/peers/192.0.2.12")
    assert body["since"] == "2024-05-01T12:00:00+00:00"
    assert body["routerId"] == "192.0.2.12"
    assert body["families"] == ["ipv4", "ipv6"]


async def test_start_api_serves_on_loopback(view: FakeView) -> None:
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="podbgp_up 1\n")

    runner = await start_api(view, "127.0.0.1", 0, routes=[web.get("/metrics", metrics)])
    try:
        host, port = runner.addresses[0][:2]
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"http://{host}:{port}/v1/status") as resp:
                assert resp.status == 200
                assert (await resp.json())["routerId"] == "192.0.2.11"
            async with session.get(f"http://{host}:{port}/metrics") as resp:
                assert await resp.text() == "podbgp_up 1\n"
    finally:
        await runner.cleanup()


async def test_start_api_port_in_use_raises(view: FakeView) -> None:
    first = await start_api(view, "127.0.0.1", 0)
    try:
        port = first.addresses[0][1]
        with pytest.raises(OSError):
            await start_api(view, "127.0.0.1", port)
    finally:
        await first.cleanup()


# --- ready checks added by a daemon ----------------------------------------------------------


async def test_extra_ready_check_makes_not_ready(view: FakeView) -> None:
    waiting: list[str | None] = ["datastore not synced"]
    app = make_app(view, ready_checks=[lambda: waiting[0]])
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        body = await get_json(c, "/readyz", status=503)
        assert body == {
            "status": "not ready",
            "reason": "datastore not synced",
            "peers": 2,
            "established": 1,
        }
        waiting[0] = None
        assert (await get_json(c, "/readyz"))["status"] == "ready"


# --- the OpenAPI document matches the handlers ----------------------------------------------

TOKEN = "t0k3n-Abc_123.xyz~+/="


def write_token(tmp_path: Path, token: str = TOKEN, name: str = "token") -> str:
    path = tmp_path / name
    path.write_text(token + "\n")
    path.chmod(0o600)
    return str(path)


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check_shape(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> None:
    """Top-level type and required keys (and those of array items) as the document says."""
    schema = resolve(doc, schema)
    kind = schema.get("type")
    if kind == "object":
        assert isinstance(value, dict), where
        missing = set(schema.get("required", ())) - set(value)
        assert not missing, f"{where}: missing {missing}"
    elif kind == "array":
        assert isinstance(value, list), where
        for i, item in enumerate(value):
            check_shape(doc, schema["items"], item, f"{where}[{i}]")
    elif kind == "string":
        assert isinstance(value, str), where


# (path template, status) -> how to make the API answer with that status.
NOT_READY = [_peer("192.0.2.12", "Active")]
CASES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/status", "200"): {"url": "/v1/status"},
    ("/v1/peers", "200"): {"url": "/v1/peers"},
    ("/v1/peers/{address}", "200"): {"url": "/v1/peers/192.0.2.12"},
    ("/v1/peers/{address}", "400"): {"url": "/v1/peers/not-an-ip"},
    ("/v1/peers/{address}", "404"): {"url": "/v1/peers/192.0.2.99"},
    ("/v1/routes", "200"): {"url": "/v1/routes?prefix=10.244.1.7"},
    ("/v1/routes", "400"): {"url": "/v1/routes?peer=nobody"},
    ("/healthz", "200"): {"url": "/healthz"},
    ("/readyz", "200"): {"url": "/readyz"},
    ("/readyz", "503"): {"url": "/readyz", "peers": NOT_READY},
    ("/v1/openapi.json", "200"): {"url": "/v1/openapi.json"},
    ("/metrics", "200"): {"url": "/metrics"},
    ("/v1/extension", "200"): {"url": "/v1/extension"},
}


async def _extension(request: web.Request) -> web.Response:
    return web.json_response({"extension": True})


def full_app(view: FakeView, token_file: str | None = None) -> web.Application:
    """The API as a daemon builds it: core paths, /metrics, and an undocumented extension."""
    from prometheus_client.registry import CollectorRegistry

    from podbgp.ops.api import BearerToken
    from podbgp.ops.metrics import METRICS_DOC, metrics_route, register_collector

    registry = CollectorRegistry()
    register_collector(registry, view)
    return make_app(
        view,
        [metrics_route(registry), web.get("/v1/extension", _extension)],
        docs={"/metrics": METRICS_DOC},
        token=BearerToken(token_file) if token_file else None,
    )


def documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, status)
        for path, item in doc["paths"].items()
        for status in item["get"]["responses"]
        if status != "401"
    }


@pytest.mark.parametrize("with_token", [False, True])
async def test_every_documented_path_answers_as_documented(
    view: FakeView, tmp_path: Path, with_token: bool
) -> None:
    token_file = write_token(tmp_path) if with_token else None
    headers = {"Authorization": f"Bearer {TOKEN}"} if with_token else {}
    async with TestClient(TestServer(full_app(view, token_file), host="127.0.0.1")) as c:
        doc = await (await c.get("/v1/openapi.json", headers=headers)).json()
        assert doc["openapi"].startswith("3.")
        # Every documented answer has a case here, and every case is documented.
        assert documented(doc) == set(CASES)
        for (path, status), case in sorted(CASES.items()):
            view.peer_list = case.get("peers", FakeView().peer_list)
            resp = await c.get(case["url"], headers=headers)
            assert str(resp.status) == status, (path, status, await resp.text())
            spec = doc["paths"][path]["get"]["responses"][status]
            content = spec.get("content", {})
            if "application/json" in content:
                assert resp.content_type == "application/json", path
                schema = content["application/json"]["schema"]
                check_shape(doc, schema, await resp.json(), f"{path} {status}")
            elif "text/plain" in content:
                assert resp.content_type == "text/plain", path
            if with_token and path not in ("/healthz", "/readyz"):
                refused = await c.get(case["url"])
                assert refused.status == 401
                assert "401" in doc["paths"][path]["get"]["responses"]
                unauthorized = resolve(doc, doc["paths"][path]["get"]["responses"]["401"])
                schema = unauthorized["content"]["application/json"]["schema"]
                check_shape(doc, schema, await refused.json(), f"{path} 401")


async def test_document_lists_exactly_the_routes_served(view: FakeView) -> None:
    app = full_app(view)
    served = {
        r.resource.canonical
        for r in app.router.routes()
        if r.method == "GET" and r.resource is not None
    }
    doc = app[OPENAPI_KEY]
    assert served == set(doc["paths"])
    assert doc["paths"]["/v1/extension"]["get"]["summary"].startswith("/v1/extension")
    assert "security" not in doc  # no token: nothing to declare


async def test_document_declares_bearer_auth(view: FakeView, tmp_path: Path) -> None:
    doc = full_app(view, write_token(tmp_path))[OPENAPI_KEY]
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
    }
    assert doc["security"] == [{"bearerAuth": []}]
    for probe in ("/healthz", "/readyz"):
        assert doc["paths"][probe]["get"]["security"] == []
    assert TOKEN not in json.dumps(doc)


# --- bearer token ----------------------------------------------------------------------------


@pytest.fixture
async def secured(
    view: FakeView, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Path]]:
    token_file = write_token(tmp_path)
    async with TestClient(TestServer(full_app(view, token_file), host="127.0.0.1")) as c:
        yield c, Path(token_file)


@pytest.mark.parametrize(
    ("headers", "reason", "challenge"),
    [
        ({}, "missing bearer token (send Authorization: Bearer <token>)", 'Bearer realm="podbgp"'),
        (
            {"Authorization": "Bearer wrong-token"},
            "invalid bearer token",
            'Bearer realm="podbgp", error="invalid_token"',
        ),
        (
            {"Authorization": f"Basic {TOKEN}"},
            "the Authorization header must use the Bearer scheme",
            'Bearer realm="podbgp"',
        ),
        (
            {"Authorization": f"Bearer {TOKEN}x"},
            "invalid bearer token",
            'Bearer realm="podbgp", error="invalid_token"',
        ),
    ],
)
async def test_refused_without_the_token(
    secured: tuple[TestClient[Any, Any], Path],
    headers: dict[str, str],
    reason: str,
    challenge: str,
) -> None:
    client, _ = secured
    for path in ("/v1/status", "/v1/peers/192.0.2.12", "/metrics", "/v1/openapi.json", "/nope"):
        resp = await client.get(path, headers=headers)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == challenge
        assert await resp.json() == {"error": "unauthorized", "reason": reason}


async def test_token_accepted_and_probes_open(secured: tuple[TestClient[Any, Any], Path]) -> None:
    client, _ = secured
    auth = {"Authorization": f"bearer {TOKEN}"}  # the scheme name is case-insensitive
    assert (await client.get("/v1/status", headers=auth)).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    # With the token, an unknown path is the usual JSON 404.
    resp = await client.get("/nope", headers=auth)
    assert resp.status == 404
    assert (await resp.json())["error"] == "not found"


async def test_token_rotation(secured: tuple[TestClient[Any, Any], Path]) -> None:
    client, token_file = secured
    token_file.write_text("rotated-token-2\n")
    os.utime(token_file, ns=(1, 1))  # a distinct mtime even on a coarse-grained clock
    assert (
        await client.get("/v1/status", headers={"Authorization": f"Bearer {TOKEN}"})
    ).status == 401
    ok = await client.get("/v1/status", headers={"Authorization": "Bearer rotated-token-2"})
    assert ok.status == 200
    # A rewrite that holds no valid token is ignored: the last good token stays.
    token_file.write_text("not a token\n")
    os.utime(token_file, ns=(2, 2))
    ok = await client.get("/v1/status", headers={"Authorization": "Bearer rotated-token-2"})
    assert ok.status == 200


async def test_tokens_never_logged_or_echoed(
    secured: tuple[TestClient[Any, Any], Path], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = secured
    caplog.set_level(logging.DEBUG)
    texts = []
    for auth in (f"Bearer {TOKEN}", "Bearer guessed-token-zz", ""):
        for path in ("/v1/status", "/v1/peers", "/nope", "/metrics", "/v1/openapi.json"):
            resp = await client.get(path, headers={"Authorization": auth} if auth else {})
            texts.append(await resp.text())
    assert "api-unauthorized" in caplog.text
    for secret in (TOKEN, "guessed-token-zz"):
        assert secret not in caplog.text
        assert not any(secret in text for text in texts)


async def test_start_api_refuses_off_loopback_without_token(view: FakeView) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.11", "node-1.example"):
        with pytest.raises(ValueError, match=f"the API on {host} needs a bearer token"):
            await start_api(view, host, 0)


async def test_start_api_with_unreadable_token_file(view: FakeView, tmp_path: Path) -> None:
    with pytest.raises(OSError, match="cannot read token file"):
        await start_api(view, "127.0.0.1", 0, token_file=str(tmp_path / "missing"))


async def test_start_api_with_token_on_loopback(view: FakeView, tmp_path: Path) -> None:
    runner = await start_api(view, "127.0.0.1", 0, token_file=write_token(tmp_path))
    try:
        host, port = runner.addresses[0][:2]
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get(f"http://{host}:{port}/v1/status") as resp:
                assert resp.status == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with session.get(f"http://{host}:{port}/v1/status", headers=headers) as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()


# --- the api section of the config -----------------------------------------------------------

HEAD = "asNumber: 64512\nrouterId: 192.0.2.11\n"


def load(tmp_path: Path, api: str) -> Any:
    path = tmp_path / "bgpd.yaml"
    path.write_text(HEAD + api)
    return load_bgpd_config(str(path)).api


def config_error(tmp_path: Path, api: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, api)
    return str(info.value)


def test_config_token_file(tmp_path: Path) -> None:
    token_file = write_token(tmp_path)
    api = load(tmp_path, f"api: {{listen: '0.0.0.0:9179', tokenFile: {token_file}}}\n")
    assert api == ApiConfig("0.0.0.0", 9179, token_file)
    assert not api.loopback
    assert TOKEN not in repr(api)
    # A token may guard a loopback API too.
    assert load(tmp_path, f"api: {{tokenFile: {token_file}}}\n") == ApiConfig(
        "127.0.0.1", 9179, token_file
    )


@pytest.mark.parametrize("listen", ["127.0.0.1:9179", "127.31.4.5:9179", "[::1]:9179",
                                    "localhost:9179"])  # fmt: skip
def test_config_loopback_needs_no_token(tmp_path: Path, listen: str) -> None:
    api = load(tmp_path, f"api: {{listen: '{listen}'}}\n")
    assert api.loopback and api.token_file is None


@pytest.mark.parametrize("listen", ["0.0.0.0:9179", "[::]:9179", "192.0.2.11:9179",
                                    "node-1.example:9179"])  # fmt: skip
def test_config_off_loopback_requires_token(tmp_path: Path, listen: str) -> None:
    path = tmp_path / "bgpd.yaml"
    assert config_error(tmp_path, f"api: {{listen: '{listen}'}}\n") == (
        f"{path}: api.tokenFile: required when api.listen is not a loopback address ({listen})"
    )


def test_config_token_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "bgpd.yaml"
    missing = tmp_path / "missing"
    assert config_error(tmp_path, f"api: {{tokenFile: {missing}}}\n") == (
        f"{path}: api.tokenFile: cannot read token file {missing}: No such file or directory"
    )
    empty = write_token(tmp_path, "", "empty")
    assert config_error(tmp_path, f"api: {{tokenFile: {empty}}}\n") == (
        f"{path}: api.tokenFile: token file {empty} is empty"
    )
    spaced = write_token(tmp_path, "two words", "spaced")
    assert config_error(tmp_path, f"api: {{tokenFile: {spaced}}}\n") == (
        f"{path}: api.tokenFile: token file {spaced} must hold one token of letters, digits "
        "and -._~+/ (then =)"
    )
    assert config_error(tmp_path, "api: {tokenFile: 7}\n") == (
        f"{path}: api.tokenFile: must be the path of a file holding the API token"
    )
    assert config_error(tmp_path, "api: {listen: '127.0.0.1:1', token: x}\n") == (
        f"{path}: api.token: unknown key; expected one of listen, tokenFile"
    )
    # The token's value never appears in an error (here: one with a space inside).
    assert "two words" not in config_error(tmp_path, f"api: {{tokenFile: {spaced}}}\n")
