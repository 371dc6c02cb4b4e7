"""Webhooks against a real HTTP server on 127.0.0.1:0, and the built-in demo responder."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from voicebot.dialog.actions import WebhookClient, demo_balance, json_depth, parse_answer
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


# -- hostile servers (issue 9 items 5, 6) ------------------------------------------------------


class _HostileHandler(BaseHTTPRequestHandler):
    """A real HTTP server that misbehaves: drip-feeds, floods, or nests JSON 10000 deep."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        try:
            if self.path == "/drip":
                # One byte every 50 ms: a per-read timeout never fires, only a total deadline does.
                self._head(200, 10_000)
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.05)
            elif self.path == "/huge-declared":
                self._head(200, 50_000_000)
                self.wfile.write(b"[" * 100_000)
            elif self.path == "/huge-undeclared":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                for _ in range(100):  # 10 MB, delimited only by closing the connection
                    self.wfile.write(b" " * 100_000)
            elif self.path == "/deep":
                body = b"[" * 10_000 + b"]" * 10_000
                self._head(200, len(body))
                self.wfile.write(body)
            elif self.path == "/deep-in-variables":
                body = b'{"variables": {"a": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}"
                self._head(200, len(body))
                self.wfile.write(body)
            else:
                body = b'{"variables": {"ok": "yes"}}'
                self._head(200, len(body))
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should

    def _head(self, status: int, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.flush()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _HostileHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_a_drip_feeding_server_meets_a_total_deadline(hostile: str) -> None:
    started = time.monotonic()
    with pytest.raises(WebhookError, match=r"/drip did not answer within 0.5 s") as caught:
        await WebhookClient().call(f"{hostile}/drip", PAYLOAD, timeout_s=0.5)
    assert caught.value.retryable
    assert time.monotonic() - started < 1.5  # the server would keep dripping for 10 s


async def test_six_drip_feeding_webhooks_do_not_delay_a_seventh(hostile: str, server: str) -> None:
    # Issue 9 item 5: six stuck webhooks used to hold every worker thread for 40 s.
    client = WebhookClient()
    started = time.monotonic()
    drips = [asyncio.create_task(client.call(f"{hostile}/drip", PAYLOAD, timeout_s=2.0)) for _ in range(6)]
    await asyncio.sleep(0.3)  # all six are connected and dripping
    healthy_started = time.monotonic()
    answer = await client.call(f"{server}/ok", PAYLOAD, timeout_s=1.0)
    healthy_s = time.monotonic() - healthy_started
    assert answer.next_state == "read"
    assert healthy_s < 0.5, f"the healthy webhook took {healthy_s:.2f} s behind six stuck ones"
    results = await asyncio.gather(*drips, return_exceptions=True)
    assert all(isinstance(r, WebhookError) and "did not answer within 2 s" in r.message for r in results)
    assert time.monotonic() - started < 3.5


@pytest.mark.parametrize("path", ["/huge-declared", "/huge-undeclared"])
async def test_a_huge_answer_is_refused_without_reading_it(hostile: str, path: str) -> None:
    with pytest.raises(WebhookError, match=rf"{path} answer is larger than 65536 bytes"):
        await WebhookClient().call(f"{hostile}{path}", PAYLOAD, timeout_s=5)


@pytest.mark.parametrize(("path", "depth"), [("/deep", 10_000), ("/deep-in-variables", 5_002)])
async def test_deeply_nested_json_is_a_webhook_error_not_a_recursion_error(
    hostile: str, path: str, depth: int
) -> None:
    # Issue 9 item 6: json.loads raised RecursionError, which cut the call instead of on_error.
    message = rf"{path} answered with JSON nested {depth} levels deep; at most 32"
    with pytest.raises(WebhookError, match=message):
        await WebhookClient().call(f"{hostile}{path}", PAYLOAD, timeout_s=5)


@pytest.mark.parametrize(("body", "depth"), [
    (b"{}", 1), (b'{"a": [1, {"b": 2}]}', 3), (b'{"a": "[[[[{{{{"}', 1), (b'["\\"[["]', 1), (b"7", 0),
])
def test_json_depth_skips_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth
