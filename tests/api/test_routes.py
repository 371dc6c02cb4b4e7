"""The /v1 routes on a real HTTP server (uvicorn on 127.0.0.1:0) with a real registry and bus; the
application's side is a stand-in that records what it was asked to dial (no SIP here: the whole
call is tests/api/test_api_e2e.py). Checks what the e2e cannot cheaply: the capacity and draining
refusals, the state rules of hang-up and transfer, a stream that outlives nothing at shutdown, the
API off without a token, and no-auth mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from voicebot.api.events import EventBus
from voicebot.api.registry import CallEntry, CallRegistry
from voicebot.api.routes import ApiContext, api_off_routes, api_routes
from voicebot.call.outcome import CallOutcome
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan
from voicebot.observe.http import OpsServer, build_app, start_ops_server

pytestmark = pytest.mark.adapter

TOKEN = "route-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REMINDER = Path(__file__).resolve().parents[2] / "dialplans" / "reminder.yaml"


@dataclass
class Stand:
    """The application's side: dials nothing, keeps what it was asked."""

    registry: CallRegistry = field(default_factory=lambda: CallRegistry(EventBus()))
    placed: list[tuple[str, str, dict[str, str], float]] = field(default_factory=list)
    unready: str | None = None

    def place(self, uri: str, plan: Dialplan, variables: Mapping[str, str], timeout_s: float) -> CallEntry:
        self.placed.append((uri, plan.name, dict(variables), timeout_s))
        return self.registry.add("outbound", from_uri="sip:bot@127.0.0.1", to_uri=uri, dialplan=plan.name)


async def serve(stand: Stand, *, token: str | None = TOKEN, max_calls: int = 2) -> OpsServer:
    plan = load_dialplan(REMINDER)
    ctx = ApiContext(registry=stand.registry, dialplans={"reminder": plan}, place=stand.place,
                     unready=lambda: stand.unready, max_calls=max_calls, token=token,
                     trunk="sip:trunk.example.com")
    return await start_ops_server(build_app(CollectorRegistry(), lambda: None, extra_routes=api_routes(ctx)),
                                  "127.0.0.1", 0)


async def test_place_list_get_and_the_refusals_that_change_nothing() -> None:
    stand = Stand()
    server = await serve(stand, max_calls=1)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            reply = await http.post("/v1/calls", json={"dialplan": "reminder", "to": "+1 555 0100",
                                                       "variables": {"name": "Alex"}})
            assert reply.status_code == 202, reply.text
            assert stand.placed == [("sip:+15550100@trunk.example.com", "reminder", {"name": "Alex"}, 60.0)]
            call_id = reply.json()["id"]
            assert (await http.get("/v1/calls")).json()["calls"][0]["id"] == call_id
            assert (await http.get(reply.headers["location"])).json()["status"] == "dialing"

            # At the limit: 503 with Retry-After, nothing dialed.
            reply = await http.post("/v1/calls", json={"dialplan": "reminder", "to": "sip:b@127.0.0.1"})
            assert reply.status_code == 503 and reply.headers["retry-after"] == "5"
            assert "at its call limit (1 calls" in reply.json()["detail"]
            # Transfer of a call still dialing: 409.
            reply = await http.post(f"/v1/calls/{call_id}/transfer", json={"target": "sip:op@127.0.0.1"})
            assert reply.status_code == 409 and "is dialing; only an answered call" in reply.json()["detail"]
            # A bad hang-up body is refused before anything happens.
            reply = await http.post(f"/v1/calls/{call_id}/hangup", content=b"x",
                                    headers={"Content-Type": "text/x"})
            assert reply.status_code == 415
            entry = stand.registry.get(call_id)
            assert entry is not None and not entry.ended
            entry.finish(cause="bye", side="caller")

            stand.unready = "draining"
            reply = await http.post("/v1/calls", json={"dialplan": "reminder", "to": "sip:b@127.0.0.1"})
            assert reply.status_code == 503
            assert reply.json()["detail"] == "this instance takes no new calls now: draining"
            assert len(stand.placed) == 1
    finally:
        await server.aclose()


async def test_an_open_event_stream_does_not_hold_the_server_at_shutdown() -> None:
    stand = Stand()
    server = await serve(stand)
    async with (httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http,
                http.stream("GET", "/v1/events", params={"call_id": "c-none"}) as reply):
        assert reply.status_code == 200
        lines = reply.aiter_lines()
        assert await anext(lines) == ": subscribed"
        # The owner ends the streams (App.aclose does: registry.aclose), then the server stops.
        await stand.registry.aclose()
        rest = [line async for line in lines]
        assert rest == ["retry: 2000", ""]
    started = asyncio.get_running_loop().time()
    await server.aclose()
    assert asyncio.get_running_loop().time() - started < 2


async def test_without_a_token_the_api_is_off_and_says_how_to_turn_it_on() -> None:
    server = await start_ops_server(build_app(CollectorRegistry(), lambda: None,
                                              extra_routes=api_off_routes("set VOICEBOT_API_TOKEN")),
                                    "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            for method, path in (("GET", "/v1/calls"), ("POST", "/v1/calls"), ("GET", "/v1/events")):
                reply = await http.request(method, path, headers=AUTH)
                assert reply.status_code == 404
                assert reply.json()["detail"] == ("the control API is off on this instance: "
                                                  "set VOICEBOT_API_TOKEN")
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.aclose()


async def test_no_auth_mode_serves_without_a_header() -> None:
    stand = Stand()
    server = await serve(stand, token=None)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            assert (await http.get("/v1/calls")).json() == {"calls": []}
    finally:
        await server.aclose()


class SlowTransfer:
    """A running call whose REFER takes until ``done`` is set."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.targets: list[str] = []
        self.hangups: list[str] = []

    async def hangup(self, reason: str) -> None:
        self.hangups.append(reason)

    async def transfer(self, uri: str) -> None:
        self.targets.append(uri)
        await self.done.wait()


async def test_transfer_rules_on_an_answered_call() -> None:
    stand = Stand()
    server = await serve(stand)
    handle = SlowTransfer()
    entry = stand.registry.add("inbound", from_uri="sip:c@127.0.0.1", to_uri="sip:bot@127.0.0.1",
                               dialplan="reminder", sip_call_id="sip-1")
    outcome = CallOutcome("sip-1", "inbound", True, "bye: transferred", "robot")
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            with entry.running("sip-1", handle, lambda: outcome):
                entry.publish("answered")
                reply = await http.post("/v1/calls/sip-1/transfer", json={"target": "sip:op@127.0.0.1"})
                assert reply.status_code == 202 and reply.json()["transfer"] == {
                    "target": "sip:op@127.0.0.1", "result": "requested"}
                reply = await http.post(f"/v1/calls/{entry.id}/transfer", json={"target": "sip:b@127.0.0.1"})
                assert reply.status_code == 409
                assert reply.json()["detail"] == (f"call {entry.id} is already being transferred to "
                                                  "sip:op@127.0.0.1")
                await asyncio.sleep(0.05)
                assert handle.targets == ["sip:op@127.0.0.1"]  # the second request reached nothing
                reply = await http.post("/v1/calls/sip-1/hangup")
                assert reply.status_code == 202 and handle.hangups == ["api"]
            reply = await http.post("/v1/calls/sip-1/transfer", json={"target": "sip:op@127.0.0.1"})
            assert reply.status_code == 409 and reply.json()["detail"] == (
                f"call {entry.id} has already ended (bye: transferred)")
    finally:
        await server.aclose()


async def test_a_chunked_body_over_the_limit_is_413_while_reading() -> None:
    stand = Stand()
    server = await serve(stand)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"dialplan": "reminder", "to": "sip:a@127.0.0.1", "variables": {"pad": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}}'

    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            reply = await http.post("/v1/calls", content=chunks(),
                                    headers={"Content-Type": "application/json"})
            assert reply.status_code == 413
            assert reply.json()["detail"] == "the body is larger than 16384 bytes"
            assert stand.placed == []
    finally:
        await server.aclose()
