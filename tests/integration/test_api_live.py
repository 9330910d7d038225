"""The REST API, /metrics, `podbgp status` and sd_notify against real `podbgp bgpd` processes.

A pair of speakers peers over loopback addresses (127.x.y.1 and .2, MD5-protected) and the first
also has a passive peer that never connects, so the API shows one Established and one Active
session. Auth is checked where it applies, on an API bound to 0.0.0.0: inside a network
namespace this test creates, queried from a second namespace over a veth (and from the server's
own loopback), never from the host namespace.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from podbgp.ops.metrics import exported_names
from tests.support.netns import NetnsFactory, netns_socket, wait_until
from tests.support.podbgp import REPO, PodbgpSpeaker, wait_for

PID = os.getpid()
# Fixed-width octets (three digits each) keep the golden table's column widths stable.
NET = f"127.{100 + PID % 100}.{100 + (PID // 100) % 100}"
BGP_PORT = 20000 + (PID + 7919) % 20000
PASSWORD = "md5-Pa55word-live"
A, B, C = f"{NET}.1", f"{NET}.2", f"{NET}.3"


def config(me: str, router_id: str, peers: list[dict[str, Any]], blocks: list[str]) -> dict:
    return {
        "asNumber": 64512,
        "routerId": router_id,
        "listen": {"address": me, "port": BGP_PORT},
        "api": {"listen": f"{me}:9179"},
        "gracefulRestart": {"enabled": False},
        "logLevel": "debug",  # the secrets check reads the most talkative logs
        "peers": peers,
        "originate": blocks,
    }


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodbgpSpeaker, PodbgpSpeaker]]:
    tmp = tmp_path_factory.mktemp("api_live")
    a_peers = [
        {"address": B, "asNumber": 64512, "port": BGP_PORT, "sourceAddress": A,
         "password": PASSWORD, "holdTime": 30, "description": "speaker b"},
        {"address": C, "asNumber": 64512, "passive": True, "description": "never connects"},
    ]  # fmt: skip
    # b waits for a to connect: with one connecting side there is no connection collision
    # (RFC 4271 §6.8), whose resolution can cost a freshly Established session a flap.
    b_peers = [{"address": A, "asNumber": 64512, "passive": True, "password": PASSWORD,
                "holdTime": 30}]  # fmt: skip
    a = PodbgpSpeaker(tmp, "a", config(A, "192.0.2.1", a_peers, ["10.244.1.0/24"]))
    b = PodbgpSpeaker(tmp, "b", config(B, "192.0.2.2", b_peers, ["10.244.2.0/24", "10.244.3.0/24"]))
    try:
        a.start()
        b.start()
        wait_for(lambda: a.peer_state(B) == "Established", 30, what="a-b session")
        wait_for(lambda: b.peer_state(A) == "Established", 30, what="b-a session")
        wait_for(lambda: len(a.route_prefixes()) == 3, 15, what="b's blocks at a")
        wait_for(lambda: len(b.route_prefixes()) == 3, 15, what="a's block at b")
        yield a, b
    finally:
        a.stop()
        b.stop()


def fetch(url: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) — error statuses included."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get_content_type(), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type(), exc.read().decode()


def test_every_endpoint(pair: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    a, _ = pair
    status = a.get("/v1/status")
    assert (status["routerId"], status["asNumber"], status["routes"]) == ("192.0.2.1", 64512, 3)
    assert status["peers"] == {"Established": 1, "Active": 1}
    peers = {p["address"]: p for p in a.get("/v1/peers")}
    assert set(peers) == {B, C}
    assert peers[C]["state"] == "Active" and peers[C]["description"] == "never connects"
    b_peer = a.get(f"/v1/peers/{B}")
    assert b_peer == peers[B] | {"since": b_peer["since"], "messages": b_peer["messages"]}
    assert b_peer["state"] == "Established"
    assert b_peer["prefixes"] == {"received": 2, "accepted": 2, "stale": 0, "advertised": 1}
    assert (b_peer["holdTime"], b_peer["keepaliveTime"]) == (30, 10)
    assert b_peer["messages"]["receivedByType"]["update"] >= 1
    routes = {r["prefix"]: r for r in a.get("/v1/routes")}
    assert set(routes) == {"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}
    assert (
        routes["10.244.2.0/24"]["fromPeer"] == B and routes["10.244.1.0/24"]["fromPeer"] == "local"
    )
    assert [r["prefix"] for r in a.get(f"/v1/routes?peer={B}&prefix=10.244.3.9")] == [
        "10.244.3.0/24"
    ]
    assert [r["prefix"] for r in a.get("/v1/routes?peer=local")] == ["10.244.1.0/24"]
    assert a.get("/healthz") == {"status": "ok"}
    assert a.get("/readyz") == {"status": "ready", "peers": 2, "established": 1}
    assert "/metrics" in a.get("/v1/openapi.json")["paths"]


@pytest.mark.parametrize(
    ("path", "method", "status", "body"),
    [
        ("/v1/peers/192.0.2.99", "GET", 404,
         {"error": "not found", "reason": "no peer with address 192.0.2.99"}),
        ("/v1/peers/node-2", "GET", 400,
         {"error": "bad request", "reason": "'node-2' is not an IP address"}),
        ("/v1/routes?prefix=10.244.1.1/24", "GET", 400,
         {"error": "bad request", "reason": "host bits are set; did you mean 10.244.1.0/24?"}),
        ("/v1/routes?peer=b", "GET", 400,
         {"error": "bad request", "reason": "'b' is not an IP address (or 'local')"}),
        ("/v2/status", "GET", 404,
         {"error": "not found", "reason": "no such endpoint: /v2/status"}),
        ("/v1/peers", "DELETE", 405,
         {"error": "method not allowed", "reason": "DELETE /v1/peers: use GET, HEAD"}),
    ],
)  # fmt: skip
def test_errors_are_json(
    pair: tuple[PodbgpSpeaker, PodbgpSpeaker], path: str, method: str, status: int, body: dict
) -> None:
    a, _ = pair
    got_status, content_type, text = fetch(a.api_url + path, method)
    assert (got_status, content_type) == (status, "application/json")
    assert json.loads(text) == body


def test_documented_paths_answer_live(pair: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    a, _ = pair
    doc = a.get("/v1/openapi.json")
    assert set(doc["paths"]["/v1/drain"]) == {"post"}  # the one state-changing endpoint
    for path, item in doc["paths"].items():
        if "get" not in item:
            continue  # POST /v1/drain would drain the pair; tests/unit/podbgp/ops/test_drain.py
        status, content_type, text = fetch(a.api_url + path.replace("{address}", B))
        responses = item["get"]["responses"]
        assert str(status) in responses, (path, status)
        content = responses[str(status)].get("content", {})
        if "application/json" in content:
            assert content_type == "application/json"
            schema = content["application/json"]["schema"]
            if "$ref" in schema:
                schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            value = json.loads(text)
            assert isinstance(value, dict if schema["type"] == "object" else list), path
            if isinstance(value, dict):
                assert set(schema.get("required", ())) <= set(value), path
        else:
            assert content_type == "text/plain", path


def test_metrics_scrape(pair: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    a, _ = pair
    status, content_type, text = fetch(a.api_url + "/metrics")
    assert (status, content_type) == (200, "text/plain")
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    names = {s.name for s in samples}
    assert names <= set(exported_names())
    for s in samples:
        assert set(s.labels) <= {"peer", "peer_type", "message_type", "source"}, s
        assert not any("/" in v for v in s.labels.values()), s

    def one(name: str, **labels: str) -> float:
        [v] = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
        return v

    assert one("podbgp_bgp_session_up", peer=B, peer_type="global") == 1
    assert one("podbgp_bgp_session_state", peer=B) == 6
    assert one("podbgp_bgp_session_up", peer=C) == 0
    assert one("podbgp_bgp_session_state", peer=C) == 3
    assert one("podbgp_bgp_prefixes_accepted", peer=B) == 2
    assert one("podbgp_bgp_prefixes_advertised", peer=B) == 1
    assert one("podbgp_bgp_loc_rib_routes") == 3
    assert one("podbgp_bgp_messages_received_total", peer=B, message_type="update") >= 1
    assert one("podbgp_bgp_session_flaps_total", peer=B) == 0


STATUS_GOLDEN = """\
podbgp is running (router ID 192.0.2.1, AS 64512, up <T>)

BGP sessions
+---------------+-----------+-------------+----------------------+------+
| PEER ADDRESS  | PEER TYPE |    STATE    |        SINCE         | INFO |
+---------------+-----------+-------------+----------------------+------+
| 127.NNN.NNN.2 | global    | Established | YYYY-MM-DDTHH:MM:SSZ |      |
| 127.NNN.NNN.3 | global    | Active      | YYYY-MM-DDTHH:MM:SSZ |      |
+---------------+-----------+-------------+----------------------+------+

Prefixes
+---------------+----------+----------+------------+
| PEER ADDRESS  | RECEIVED | ACCEPTED | ADVERTISED |
+---------------+----------+----------+------------+
| 127.NNN.NNN.2 | 2        | 2        | 1          |
| 127.NNN.NNN.3 | 0        | 0        | 0          |
+---------------+----------+----------+------------+
"""


def normalise(text: str) -> str:
    text = text.replace(NET, "127.NNN.NNN")
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "YYYY-MM-DDTHH:MM:SSZ", text)
    return re.sub(r"up (\d+d)?(\d+h)?(\d+m)?\d+s\)", "up <T>)", text, count=1)


def podbgp(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PODBGP_TOKEN_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "podbgp", *argv],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO,
    )  # fmt: skip


def test_status_golden(pair: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    a, _ = pair
    proc = podbgp("status", "--api", a.api_url)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert normalise(proc.stdout) == STATUS_GOLDEN
    proc = podbgp("status", "--api", a.api_url, "-o", "json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["status"]["routerId"] == "192.0.2.1"
    assert [p["address"] for p in doc["peers"]] == [B, C]


def test_status_exits_1_when_the_daemon_is_gone(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind((f"{NET}.9", 0))
        url = f"http://{NET}.9:{s.getsockname()[1]}"
    proc = podbgp("status", "--api", url)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"podbgp is not running: cannot reach {url}")


def test_no_secret_in_logs_or_answers(pair: tuple[PodbgpSpeaker, PodbgpSpeaker]) -> None:
    a, b = pair
    answers = [
        fetch(a.api_url + path)[2]
        for path in ("/v1/status", "/v1/peers", f"/v1/peers/{B}", "/v1/routes", "/metrics",
                     "/v1/openapi.json", "/readyz")
    ]  # fmt: skip
    answers.append(podbgp("status", "--api", a.api_url, "-o", "json").stdout)
    for text in (*answers, a.log(), b.log()):
        assert PASSWORD not in text
    assert "event=established" in a.log()  # the log is there and was written at debug level


# --- process lifetime: sd_notify, start failures, config errors ------------------------------


def lone_config(tmp_path: Path, api: str | None, **extra: Any) -> str:
    path = tmp_path / "lone.yaml"
    cfg = {
        "asNumber": 64512,
        "routerId": "192.0.2.9",
        "listen": {"address": f"{NET}.8", "port": BGP_PORT},
        "api": {"listen": api},
        **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_systemd_ready_watchdog_stopping(tmp_path: Path) -> None:
    notify_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(notify_path)
    sock.settimeout(20)
    env = {**os.environ, "PYTHONPATH": str(REPO), "NOTIFY_SOCKET": notify_path,
           "WATCHDOG_USEC": "400000"}  # fmt: skip
    cfg = lone_config(tmp_path, f"{NET}.8:9179")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podbgp", "bgpd", "-c", cfg],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sock.recv(4096).decode() == "READY=1\nSTATUS=0 peers configured"
        # The API answers once READY is sent.
        assert fetch(f"http://{NET}.8:9179/healthz")[0] == 200
        assert sock.recv(4096).decode() == "WATCHDOG=1"
        assert sock.recv(4096).decode() == "WATCHDOG=1"
        proc.send_signal(signal.SIGTERM)
        messages = []
        while (message := sock.recv(4096).decode()) != "STOPPING=1":
            messages.append(message)
        assert set(messages) <= {"WATCHDOG=1"}
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "event=stopping" in err
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_api_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind((f"{NET}.8", 0))
        busy.listen()
        cfg = lone_config(tmp_path, f"{NET}.8:{busy.getsockname()[1]}")
        proc = subprocess.run(
            [sys.executable, "-m", "podbgp", "bgpd", "-c", cfg],
            capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
    assert proc.returncode == 1
    [line] = [ln for ln in proc.stderr.splitlines() if "ERROR" in ln]
    assert "event=start-failed" in line and "address already in use" in line
    assert "Traceback" not in proc.stderr


def test_off_loopback_api_without_token_is_a_config_error(tmp_path: Path) -> None:
    cfg = lone_config(tmp_path, "0.0.0.0:9179")
    proc = podbgp("bgpd", "-c", cfg)
    assert proc.returncode == 2
    assert proc.stderr == (
        f"{cfg}: api.tokenFile: required when api.listen is not a loopback address (0.0.0.0:9179)\n"
    )


# --- bearer token on an API bound to 0.0.0.0, inside namespaces ------------------------------

SERVER, CLIENT = "198.51.100.1", "198.51.100.2"
TOKEN = "live-T0ken_abc.def~ghi"


def http_get(ns: str, host: str, path: str, token: str | None = None) -> tuple[int, Any]:
    """GET over a socket made inside ``ns`` (this process stays in the host namespace)."""
    sock = netns_socket(ns)
    sock.settimeout(5)
    try:
        sock.connect((host, 9179))
        conn = http.client.HTTPConnection(host, 9179, timeout=5)
        conn.sock = sock  # already connected, from inside the namespace
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode()
        ctype = resp.getheader("Content-Type", "")
    finally:
        sock.close()
    return resp.status, json.loads(body) if ctype.startswith("application/json") else body


@pytest.mark.netns
def test_token_required_when_bound_off_loopback(
    netns_factory: NetnsFactory, tmp_path: Path
) -> None:
    server = netns_factory.namespace("s")
    client = netns_factory.namespace("c")
    netns_factory.veth(server, client, [f"{SERVER}/24"], [f"{CLIENT}/24"])
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    cfg = tmp_path / "server.yaml"
    cfg.write_text(yaml.safe_dump({
        "asNumber": 64512, "routerId": "192.0.2.1", "logLevel": "debug",
        "listen": {"address": SERVER, "port": 179},
        "api": {"listen": "0.0.0.0:9179", "tokenFile": str(token_file)},
        "peers": [{"address": CLIENT, "asNumber": 64512, "passive": True, "password": PASSWORD}],
    }))  # fmt: skip
    log = tmp_path / "server.log"
    netns_factory.popen(server, [sys.executable, "-m", "podbgp", "bgpd", "-c", str(cfg)], log)

    def healthy() -> bool:
        return http_get(client, SERVER, "/healthz") == (200, {"status": "ok"})

    wait_until(healthy, timeout=30)
    # The probes stay open; readiness: the one passive peer is not Established.
    assert http_get(client, SERVER, "/readyz")[0] == 503
    for path in ("/v1/status", "/v1/peers", "/metrics", "/v1/openapi.json", "/nope"):
        status, body = http_get(client, SERVER, path)
        assert status == 401, path
        assert body["error"] == "unauthorized"
        assert http_get(client, SERVER, path, "wrong-token")[0] == 401
    # Bound to 0.0.0.0, the token is needed whichever address the client uses, loopback too.
    assert http_get(server, "127.0.0.1", "/v1/status")[0] == 401
    status, body = http_get(server, "127.0.0.1", "/v1/status", TOKEN)
    assert (status, body["routerId"]) == (200, "192.0.2.1")
    status, peer = http_get(client, SERVER, f"/v1/peers/{CLIENT}", TOKEN)
    assert (status, peer["state"]) == (200, "Active")
    status, metrics = http_get(client, SERVER, "/metrics", TOKEN)
    assert status == 200 and "podbgp_bgp_session_state" in metrics
    status, doc = http_get(client, SERVER, "/v1/openapi.json", TOKEN)
    assert doc["security"] == [{"bearerAuth": []}]

    # The CLI from the client namespace: with the token file, and without.
    argv = [sys.executable, "-m", "podbgp", "status", "--api", f"http://{SERVER}:9179"]
    ok = netns_factory.run(client, *argv, "--token-file", str(token_file), timeout=60)
    assert ok.stdout.startswith("podbgp is running (router ID 192.0.2.1, AS 64512, up ")
    refused = netns_factory.run(client, *argv, check=False, timeout=60)
    assert refused.returncode == 1
    assert "HTTP 401: missing bearer token" in refused.stderr

    outputs = [ok.stdout, ok.stderr, refused.stderr, json.dumps(doc), metrics, json.dumps(peer)]
    for text in (*outputs, log.read_text()):
        assert TOKEN not in text and PASSWORD not in text
    assert "event=api-unauthorized" in log.read_text()
