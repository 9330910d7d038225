"""The REST API over a real aiohttp server on loopback: every endpoint, filters, JSON errors.

The speaker side is a small in-test ``SpeakerView`` returning fixed snapshots. That fake is
deliberate: this file tests the HTTP layer (routing, filters, errors, redaction); the path from
a real speaker through ``bgpd.views`` to this API is covered by the speaker's loopback tests.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bgpd.api import VIEW_KEY, make_app, redact, start_api


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

    def routes(self) -> list[dict[str, Any]]:
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
