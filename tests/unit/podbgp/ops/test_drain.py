"""``POST /v1/drain`` against a real in-process speaker: validation, 202 and the drain itself,
409 when already draining, 503 without a speaker, the token off loopback, the OpenAPI entry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bgpd.shutdown import GRACEFUL_SHUTDOWN
from bgpd.speaker import PeerSpec, Speaker, SpeakerConfig
from podbgp.ops.api import BearerToken, make_app
from podbgp.ops.drain import DRAIN_DOC, DRAIN_PATH, drain_route, parse_request
from podbgp.ops.views import SpeakerViews


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, (30, "bye")),
        ({}, (30, "bye")),
        ({"drainTime": 0, "message": "now"}, (0, "now")),
        ([], "the body must be a JSON object"),
        ({"drain": 1}, "unknown key drain; expected drainTime, message"),
        ({"drainTime": True}, "drainTime must be an integer in 0..3600"),
        ({"drainTime": 3601}, "drainTime must be an integer in 0..3600"),
        ({"message": "x" * 256}, "message must be text of at most 255 UTF-8 octets (RFC 9003)"),
    ],
)
def test_parse_request(body: Any, expected: object) -> None:
    assert parse_request(body, 30, "bye") == expected


async def test_drain_endpoint(tmp_path: Any) -> None:
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"))
    await speaker.start()
    speaker.add_peer(PeerSpec("192.0.2.2", 64512, passive=True))
    speaker.originate("10.244.1.0/24")
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    app = make_app(
        SpeakerViews(speaker),
        [drain_route(lambda: speaker, drain_time=30, message="bye")],
        docs={DRAIN_PATH: DRAIN_DOC},
        token=BearerToken(str(token_file)),
    )
    auth = {"Authorization": "Bearer s3cret"}
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            assert (await client.post(DRAIN_PATH)).status == 401
            bad = await client.post(DRAIN_PATH, json={"drainTime": -1}, headers=auth)
            assert bad.status == 400
            resp = await client.post(
                DRAIN_PATH, json={"drainTime": 0, "message": "m"}, headers=auth
            )
            assert resp.status == 202
            assert await resp.json() == {
                "status": "draining", "drainTime": 0, "message": "m", "peers": 1,
            }  # fmt: skip
            assert speaker.draining
            again = await client.post(DRAIN_PATH, headers=auth)
            assert again.status == 409
            for _ in range(100):
                await asyncio.sleep(0.01)
                if speaker.peers["192.0.2.2"].session.fsm.last_error:
                    break
            stopped = speaker.peers["192.0.2.2"].session.fsm.last_error
            assert stopped == 'Stopped (Cease/Administrative shutdown: "m")'  # RFC 9003
            (attrs,) = speaker.originated[1].values()
            assert attrs.local_pref == 0 and GRACEFUL_SHUTDOWN in attrs.communities
            doc = await (await client.get("/v1/openapi.json", headers=auth)).json()
            assert doc["paths"][DRAIN_PATH]["post"]["operationId"] == "postDrain"
    finally:
        await speaker.stop(graceful=False)


async def test_no_speaker_yet() -> None:
    speaker = Speaker(SpeakerConfig(asn=64512, router_id="192.0.2.1"))
    app = make_app(SpeakerViews(speaker), [drain_route(lambda: None, drain_time=1, message="m")])
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post(DRAIN_PATH)
        assert resp.status == 503
        assert (await resp.json())["reason"] == "no BGP speaker is running"
