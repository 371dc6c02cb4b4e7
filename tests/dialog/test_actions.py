"""Webhooks against a real HTTP server on 127.0.0.1:0, and the built-in demo responder."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from voicebot.dialog.actions import WebhookClient, demo_balance, parse_answer
from voicebot.dialog.errors import WebhookError

pytestmark = pytest.mark.adapter


class _Handler(BaseHTTPRequestHandler):
    # path -> (status, body, delay_s)
    routes: ClassVar[dict[str, tuple[int, bytes, float]]] = {}
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        type(self).received.append({"path": self.path, "body": body, "type": self.headers["Content-Type"]})
        status, answer, delay_s = self.routes[self.path]
        time.sleep(delay_s)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.routes = {
        "/ok": (200, json.dumps({"variables": {"balance": 12.5, "vip": True}, "next": "read"}).encode(), 0.0),
        "/empty": (204, b"", 0.0),
        "/boom": (500, b'{"error": "db down"}', 0.0),
        "/notjson": (200, b"<html>hi</html>", 0.0),
        "/slow": (200, b"{}", 1.5),
    }
    _Handler.received = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


PAYLOAD = {"call_id": "c1", "variables": {"account": "1234"}}


async def test_success_sets_variables_and_next_state(server: str) -> None:
    answer = await WebhookClient().call(f"{server}/ok", PAYLOAD, timeout_s=5)
    assert dict(answer.variables) == {"balance": "12.5", "vip": "true"}
    assert answer.next_state == "read"
    assert _Handler.received == [{"path": "/ok", "body": PAYLOAD, "type": "application/json"}]


async def test_empty_answer_is_success_without_changes(server: str) -> None:
    answer = await WebhookClient().call(f"{server}/empty", PAYLOAD, timeout_s=5)
    assert dict(answer.variables) == {} and answer.next_state is None


async def test_http_error_is_a_webhook_error(server: str) -> None:
    with pytest.raises(WebhookError, match=r"/boom answered HTTP 500 Internal Server Error") as caught:
        await WebhookClient().call(f"{server}/boom", PAYLOAD, timeout_s=5)
    assert caught.value.retryable


async def test_non_json_answer_is_a_webhook_error(server: str) -> None:
    with pytest.raises(WebhookError, match=r"/notjson answered with invalid JSON"):
        await WebhookClient().call(f"{server}/notjson", PAYLOAD, timeout_s=5)


async def test_timeout(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"/slow did not answer within 0.3 s"):
        await WebhookClient().call(f"{server}/slow", PAYLOAD, timeout_s=0.3)
    # Generous: the point is that we did not wait for the 1.5 s answer.
    assert time.monotonic() - started < 1.4


async def test_connection_refused() -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago and has no listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(WebhookError, match=rf"webhook http://127.0.0.1:{port}/x failed: "):
        await WebhookClient().call(f"http://127.0.0.1:{port}/x", PAYLOAD, timeout_s=2)


async def test_builtin_demo_balance() -> None:
    client = WebhookClient()
    first = await client.call("builtin:demo-balance", PAYLOAD, timeout_s=1)
    again = await client.call("builtin:demo-balance", PAYLOAD, timeout_s=1)
    assert first == again  # stable per account
    assert first.next_state is None
    assert first.variables["account_spoken"] == "1 2 3 4"
    dollars, cents = first.variables["balance"].split(".")
    assert first.variables["balance_spoken"] == f"{int(dollars)} dollars and {int(cents)} cents"
    unknown = await client.call("builtin:demo-balance", {"variables": {"account": "9876"}}, timeout_s=1)
    assert unknown.next_state == "unknown_account"
    with pytest.raises(WebhookError, match="no built-in webhook 'nope'"):
        await client.call("builtin:nope", PAYLOAD, timeout_s=1)
    with pytest.raises(WebhookError, match="needs a digit 'account'"):
        demo_balance({"variables": {}})


@pytest.mark.parametrize(("body", "message"), [
    (b"[1, 2]", "answered with JSON list; expected an object"),
    (b'{"vars": {}}', "answer has unknown keys ['vars']"),
    (b'{"variables": [1]}', "'variables' must be an object"),
    (b'{"variables": {"a b": 1}}', "'a b' is not a variable name"),
    (b'{"variables": {"a": {"b": 1}}}', "variable 'a' must be a string or number"),
    (b'{"next": 3}', "'next' must be a state name"),
])
def test_bad_answers(body: bytes, message: str) -> None:
    with pytest.raises(WebhookError) as caught:
        parse_answer(body, "http://h/x")
    assert message in caught.value.message


@pytest.mark.parametrize("url", ["", "ftp://example.com/x", "http://"])
async def test_a_url_that_renders_to_nonsense_is_a_webhook_error(url: str) -> None:
    with pytest.raises(WebhookError, match=r"is not http:// or https://"):
        await WebhookClient().call(url, PAYLOAD, timeout_s=1)
