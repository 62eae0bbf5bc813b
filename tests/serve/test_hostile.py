"""Hostile clients: a body that never finishes, a shutdown with such a client connected, and
bodies the API cannot read (a lone surrogate, bytes that are not UTF-8, JSON nested 30,000
deep). Each is answered in one sentence, within a stated time, and the server carries on."""

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_app import shared_app

from poetry_lm.serve.server import running

ROOT = Path(__file__).resolve().parents[2]
DENGGAO = "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
# headers that promise 200 bytes of body, and the first 10 of them
STALLED = (
    b"POST /api/score HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    b'Content-Length: 200\r\n\r\n{"text": "'
)
# the routes that take a body, each with a body it accepts but for the field under test
POSTS = {
    "/api/generate": {},
    "/api/score": {"text": DENGGAO},
    "/api/check": {"text": DENGGAO},
    "/api/rewrite": {"text": DENGGAO, "line": 0},
}
# a string field of each route
FIELD = {
    "/api/generate": "starts",
    "/api/score": "text",
    "/api/check": "text",
    "/api/rewrite": "text",
}
# every string a route reads, a lone surrogate in each ("\udfff" in JSON)
LONE = "月\udfff"
SURROGATES = [
    ("/api/generate", "starts", [LONE], "starts.0"),
    ("/api/generate", "form", LONE, "form"),
    ("/api/generate", "acrostic", LONE, "acrostic"),
    ("/api/generate", "keywords", [LONE], "keywords.0"),
    ("/api/generate", "title", LONE, "title"),
    ("/api/generate", "prime", LONE, "prime"),
    ("/api/generate", "script", LONE, "script"),
    ("/api/score", "text", LONE, "text"),
    ("/api/check", "text", LONE, "text"),
    ("/api/rewrite", "text", LONE, "text"),
    ("/api/rewrite", "script", LONE, "script"),
]


@pytest.fixture(scope="module")
def app():
    return shared_app()


pytestmark = pytest.mark.filterwarnings("ignore:.*httpx2")


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def send_json(client, path, content):
    return client.post(path, content=content, headers={"content-type": "application/json"})


def read_until_closed(sock) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout if not)."""
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return answer


def exchange(app, sent: bytes, read_timeout: float) -> tuple[bytes, float]:
    """``sent`` to a real uvicorn server serving ``app`` with ``read_timeout``, then silence →
    everything it answers before it closes the connection, and the seconds that took."""
    default, app.state.read_timeout = app.state.read_timeout, read_timeout
    try:
        with running(app) as url:
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(sent)
                start = time.monotonic()
                answer = read_until_closed(sock)
                return answer, time.monotonic() - start
    finally:
        app.state.read_timeout = default


def test_a_client_gone_quiet_mid_body_is_answered_408_and_its_connection_closed(app):
    """Headers and 10 of 200 promised bytes, then nothing: a real uvicorn server answers 408
    once the read time limit has passed, and closes the connection."""
    answer, took = exchange(app, STALLED, 0.5)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"the body was not sent within 0.5 s" in answer and b"connection: close" in answer
    assert 0.4 < took < 3


@pytest.mark.parametrize(
    "sent, answered",
    [
        (b"", 0),  # connected, then silent
        (b"POST /api/check HTTP/1.1\r\nHost: a\r\nContent-Le", 0),  # a head sent in part
        # a whole request answered, then the next one's head begun and left
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHo", 1),
    ],
    ids=["silent", "part-of-a-head", "after-a-request"],
)
def test_a_client_that_never_finishes_its_head_is_closed_after_the_read_timeout(
    app, sent, answered
):
    """uvicorn closes only idle keep-alive connections: a head begun and never finished held
    the connection for ever. HeadDeadline closes it after read_timeout seconds."""
    answer, took = exchange(app, sent, 0.5)
    assert answer.count(b"HTTP/1.1 200") == answered, answer
    assert 0.4 < took < 3, took


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


def connect_when_up(proc, port: int, seconds: float = 120) -> socket.socket:
    """A connection to the server ``proc`` starts, once it listens."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except ConnectionRefusedError:
            time.sleep(0.2)
    raise AssertionError(f"the server did not listen on port {port} within {seconds} s")


# a batch that decodes for seconds: 32 七律 of 4 candidates each (128 rows)
LONG_BATCH = json.dumps({"starts": ["月"] * 16, "n": 2, "form": "七律", "best_of": 4}).encode()
DECODING = (
    b"POST /api/generate HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    + f"Content-Length: {len(LONG_BATCH)}\r\n\r\n".encode()
    + LONG_BATCH
)


@pytest.mark.parametrize("sent", [STALLED, DECODING], ids=["stalled-mid-body", "decoding"])
def test_sigterm_with_a_request_in_flight_exits_within_the_shutdown_timeout(sent):
    """A client stalled mid-body (the read limit far off), or a batch of seconds decoding, does
    not hold a shutdown: SIGTERM cuts the request off after --shutdown-timeout and the process
    exits (the decoding thread, a daemon, is not waited for)."""
    port = free_port()
    command = [sys.executable, "-m", "poetry_lm", "serve", "--port", str(port)]
    options = ["--read-timeout", "60", "--shutdown-timeout", "1"]
    proc = subprocess.Popen([*command, *options], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        with connect_when_up(proc, port) as sock:
            sock.sendall(sent)
            time.sleep(0.5)  # the request is in the app: waiting for its body, or decoding
            proc.send_signal(signal.SIGTERM)
            start = time.monotonic()
            proc.wait(timeout=15)
            took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 4, took
    assert "Traceback" not in proc.stderr.read()


@pytest.mark.parametrize("path, field, value, named", SURROGATES)
def test_a_lone_surrogate_is_a_422_naming_the_field(client, path, field, value, named):
    body = json.dumps({**POSTS[path], field: value})  # ensure_ascii: "\udfff" stays escaped
    assert "\\udfff" in body
    r = send_json(client, path, body)
    assert r.status_code == 422, r.text
    assert (
        r.json()["detail"] == f"{named}: a lone surrogate (\\ud800 to \\udfff) is not a character"
    )


@pytest.mark.parametrize("path", POSTS)
def test_a_body_not_utf8_or_nested_30000_deep_is_a_422_and_the_server_carries_on(client, path):
    field = FIELD[path]
    latin1 = json.dumps(POSTS[path] | {field: "café"}, ensure_ascii=False).encode("latin-1")
    r = send_json(client, path, latin1)
    assert r.status_code == 422, r.text
    at = latin1.index("é".encode("latin-1"))
    assert r.json()["detail"] == f"the body is not UTF-8 text (byte {at} is 0xe9)"
    for deep in ("[" * 30_000 + "]" * 30_000, f'{{"{field}": ' + "[" * 30_000 + "]" * 30_000 + "}"):
        r = send_json(client, path, deep)
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == "the body nests arrays and objects more than 32 deep"
    # as deep as the limit is JSON like any other: its field is refused by its type
    r = send_json(client, path, f'{{"{field}": ' + "[" * 31 + "]" * 31 + "}")
    assert r.status_code == 422 and r.json()["detail"].startswith(field), r.text
    assert client.get("/healthz").status_code == 200
    assert send_json(client, path, json.dumps(POSTS[path])).status_code == 200
