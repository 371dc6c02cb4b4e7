"""A request's Content-Length on the API's own ASGI app (no server in front): one that is not ASCII
digits is a 400 with a reason, never a 500 from ``int()``.

uvicorn's h11 refuses such a header itself; this is the app's own check, for any server in front
(HTTP header bytes arrive decoded as latin-1, where 0xB2 is '²', which ``str.isdigit`` takes and
``int()`` refuses)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from voicebot.api.events import EventBus
from voicebot.api.registry import CallEntry, CallRegistry
from voicebot.api.routes import ApiContext, api_routes
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan
from voicebot.observe.http import build_app

pytestmark = pytest.mark.unit

TOKEN = "read-body-test-token"
REMINDER = Path(__file__).resolve().parents[2] / "dialplans" / "reminder.yaml"
BODY = b'{"dialplan": "reminder", "to": "sip:a@127.0.0.1"}'


def api_client(placed: list[str]) -> httpx.AsyncClient:
    registry = CallRegistry(EventBus())

    def place(uri: str, plan: Dialplan, variables: Mapping[str, str], timeout_s: float) -> CallEntry:
        placed.append(uri)
        return registry.add("outbound", from_uri="sip:bot@127.0.0.1", to_uri=uri, dialplan=plan.name)

    ctx = ApiContext(registry=registry, dialplans={"reminder": load_dialplan(REMINDER)}, place=place,
                     unready=lambda: None, max_calls=2, token=TOKEN, trunk="sip:trunk.example.com")
    app = build_app(CollectorRegistry(), lambda: None, extra_routes=api_routes(ctx))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test",
                             headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})


@pytest.mark.parametrize("length", [b"\xb2", b"4\xb2", b"\xb9\xb2\xb3", b"-1", b"0x10", b"12, 12", b""])
async def test_a_content_length_that_is_not_ascii_digits_is_400(length: bytes) -> None:
    placed: list[str] = []
    async with api_client(placed) as http:
        reply = await http.post("/v1/calls", content=BODY, headers={"Content-Length": length})
    assert reply.status_code == 400, reply.text
    shown = repr(length.decode("latin-1"))
    assert reply.json()["detail"] == f"Content-Length {shown} is not a number of bytes (RFC 9110 §8.6)"
    assert placed == []


async def test_an_ascii_content_length_is_read_as_before() -> None:
    placed: list[str] = []
    async with api_client(placed) as http:
        reply = await http.post("/v1/calls", content=BODY, headers={"Content-Length": str(len(BODY))})
        assert reply.status_code == 202, reply.text
        big = await http.post("/v1/calls", content=BODY, headers={"Content-Length": "99999"})
        assert big.status_code == 413
        assert big.json()["detail"] == "the body is 99999 bytes; at most 16384 are accepted"
    assert placed == ["sip:a@127.0.0.1"]
