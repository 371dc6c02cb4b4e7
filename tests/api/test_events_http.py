"""``GET /v1/events`` resumed over real HTTP (uvicorn on 127.0.0.1:0, httpx): a client that reconnects
with ``Last-Event-ID`` (or ``?last_event_id=``) gets exactly the events published while it was away,
its call filter applied, then the live ones; an id older than the replay buffer or of another
process gets an ``event: gap`` first; a malformed id is refused; the stream tells its retry delay."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client import CollectorRegistry

from voicebot.api.events import EventBus
from voicebot.api.registry import CallEntry, CallRegistry
from voicebot.api.routes import ApiContext, api_routes
from voicebot.dialog.ir import Dialplan
from voicebot.observe.http import OpsServer, build_app, start_ops_server

pytestmark = [pytest.mark.adapter, pytest.mark.timeout(30)]

TOKEN = "events-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Frame:
    event: str
    data: dict[str, object]
    id: str | None


def no_place(uri: str, plan: Dialplan, variables: Mapping[str, str], timeout_s: float) -> CallEntry:
    raise AssertionError("no call is placed here")


@asynccontextmanager
async def served(bus: EventBus) -> AsyncIterator[httpx.AsyncClient]:
    ctx = ApiContext(registry=CallRegistry(bus), dialplans={}, place=no_place,
                     unready=lambda: None, max_calls=1, token=TOKEN)
    server: OpsServer = await start_ops_server(
        build_app(CollectorRegistry(), lambda: None, extra_routes=api_routes(ctx)), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            yield http
    finally:
        bus.close()
        await server.aclose()


class Stream:
    """One open /v1/events response, read frame by frame."""

    def __init__(self, reply: httpx.Response) -> None:
        self.reply = reply
        self.lines = reply.aiter_lines()
        self.comments: list[str] = []
        self.retry: str | None = None

    async def frame(self) -> Frame:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line == "":
                if "event" in fields:
                    return Frame(fields["event"], json.loads(fields["data"]), fields.get("id"))
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            if name == "retry":
                self.retry = value
            fields[name] = value
        raise AssertionError("the stream ended")

    async def frames(self, n: int) -> list[Frame]:
        return [await self.frame() for _ in range(n)]


@asynccontextmanager
async def stream(http: httpx.AsyncClient, *, params: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
    async with http.stream("GET", "/v1/events", params=params, headers=headers) as reply:
        assert reply.status_code == 200, await reply.aread()
        yield Stream(reply)


async def test_a_client_reconnecting_with_last_event_id_gets_what_it_missed_then_live_events() -> None:
    bus = EventBus(boot_id="0f1e2d3c")
    async with served(bus) as http:
        async with stream(http) as first:
            assert first.reply.headers["x-voicebot-boot-id"] == "0f1e2d3c"
            bus.publish("started", "c-1", None, 1.0, {"to": "sip:a@127.0.0.1"})
            bus.publish("answered", "c-1", "sip-1", 2.0)
            got = await first.frames(2)
            assert first.retry == "2000" and first.comments[0] == ": subscribed"
            assert [(f.id, f.event) for f in got] == [("0f1e2d3c-1", "started"), ("0f1e2d3c-2", "answered")]
            last_id = got[-1].id
        # disconnected: these happen while nobody listens
        bus.publish("state", "c-1", "sip-1", 3.0, {"state": "ask"})
        bus.publish("utterance", "c-1", "sip-1", 4.0, {"text": "yes"})
        assert last_id is not None
        async with stream(http, headers={"Last-Event-ID": last_id}) as again:
            replayed = await again.frames(2)
            assert [(f.id, f.event, f.data["seq"]) for f in replayed] == [
                ("0f1e2d3c-3", "state", 3), ("0f1e2d3c-4", "utterance", 4)]
            bus.publish("ended", "c-1", "sip-1", 5.0, {"cause": "bye"})
            live = await again.frame()
            assert (live.id, live.event) == ("0f1e2d3c-5", "ended")


async def test_the_query_fallback_and_the_call_filter_apply_to_the_replay() -> None:
    bus = EventBus(boot_id="b0")
    async with served(bus) as http:
        bus.publish("started", "c-1", None, 1.0)
        bus.publish("started", "c-2", None, 2.0)
        bus.publish("ended", "c-1", None, 3.0)
        bus.publish("ended", "c-2", None, 4.0)
        async with stream(http, params={"call_id": "c-2", "last_event_id": "b0-0"}) as s:
            assert [(f.id, f.event) for f in await s.frames(2)] == [("b0-2", "started"), ("b0-4", "ended")]
        # a bare sequence number (the data's seq) works too; the header wins over the query
        async with stream(http, params={"last_event_id": "1"}, headers={"Last-Event-ID": "b0-3"}) as s:
            assert [f.id for f in await s.frames(1)] == ["b0-4"]


async def test_an_id_older_than_the_buffer_gets_an_explicit_gap_first() -> None:
    bus = EventBus(boot_id="b0", replay_events=3)
    async with served(bus) as http:
        for i in range(10):
            bus.publish("dtmf", "c-1", None, float(i), {"digit": str(i)})
        async with stream(http, headers={"Last-Event-ID": "b0-2"}) as s:
            gap, *rest = await s.frames(4)
            assert (gap.event, gap.id) == ("gap", None)
            assert gap.data == {"reason": "expired", "last_event_id": "b0-2", "first_id": "b0-8", "missed": 5}
            assert [f.id for f in rest] == ["b0-8", "b0-9", "b0-10"]
        # an id of a previous process: the restart is said, all this process kept is replayed
        async with stream(http, headers={"Last-Event-ID": "a9-10"}) as s:
            gap, *rest = await s.frames(4)
            assert gap.data == {"reason": "restart", "last_event_id": "a9-10", "first_id": "b0-8",
                                "missed": 7}
            assert [f.id for f in rest] == ["b0-8", "b0-9", "b0-10"]


async def test_a_malformed_id_is_refused_and_an_empty_one_is_a_fresh_start() -> None:
    bus = EventBus(boot_id="b0")
    async with served(bus) as http:
        bus.publish("started", "c-1", None, 1.0)
        reply = await http.get("/v1/events", headers={"Last-Event-ID": "yesterday"})
        assert reply.status_code == 400 and reply.json()["field"] == "Last-Event-ID"
        assert reply.json()["detail"] == (
            "Last-Event-ID: event id 'yesterday' is not <boot id>-<sequence number> or a sequence number "
            "(as the stream's id: lines give them)")
        reply = await http.get("/v1/events", params={"last_event_id": "b0-x"})
        assert reply.status_code == 422 and reply.json()["field"] == "last_event_id"
        reply = await http.get("/v1/events", params={"since": "1"})
        assert reply.status_code == 422
        assert reply.json()["detail"] == "unknown query parameter 'since'; known: call_id, last_event_id"
        async with stream(http, headers={"Last-Event-ID": ""}) as s:  # nothing replayed
            bus.publish("ended", "c-1", None, 2.0)
            assert [f.id for f in await s.frames(1)] == ["b0-2"]
