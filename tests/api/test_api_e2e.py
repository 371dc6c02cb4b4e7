"""The control API of a running ``voicebot run``, with a real HTTP client (httpx) on 127.0.0.1.

One robot (dialplans/reminder.yaml, VOICEBOT_API_TOKEN set) serves the module: /v1 refuses requests
without the token or with a wrong one; a call placed with POST /v1/calls reaches a sipp callee,
its events (started, answered, state, utterance) arrive on the /v1/events stream, a hang-up through
the API ends it with the API's cause (in the stream, in GET /v1/calls/{id} and in the call record);
and every kind of bad input gets its 4xx with a message naming the problem while nothing is dialed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import (
    REPO,
    Pause,
    Say,
    Voicebot,
    answer,
    call,
    explain,
    new_call_id,
    speech_pcap,
    start_voicebot,
)
from tests.e2e.test_calls import refer_to_regexp
from tests.sip.peers import free_udp_port

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]

TOKEN = "test-token-" + "0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Voicebot]:
    port = free_tcp_port()
    robot = start_voicebot(tmp_path_factory.mktemp("api-bot"), tts_cache=tts_cache,
                           dialplan=REPO / "dialplans" / "reminder.yaml",
                           extra_args=("--http-listen", f"127.0.0.1:{port}"),
                           env={"VOICEBOT_API_TOKEN": TOKEN})
    try:
        yield robot
    finally:
        robot.stop()


@contextlib.asynccontextmanager
async def client(bot: Voicebot, *, auth: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    base = bot.ready_event["http"]
    async with httpx.AsyncClient(base_url=base, timeout=10, headers=AUTH if auth else None) as http:
        yield http


class EventStream:
    """A /v1/events subscriber collecting parsed events in a task."""

    def __init__(self, http: httpx.AsyncClient, params: dict[str, str] | None = None) -> None:
        self.http = http
        self.params = params
        self.events: list[dict[str, Any]] = []
        self.names: list[str] = []
        self.ids: list[str] = []  # the SSE id of each of events
        self._subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> EventStream:
        self.task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _read(self) -> None:
        async with self.http.stream("GET", "/v1/events", params=self.params, timeout=None) as reply:
            assert reply.status_code == 200, await reply.aread()
            assert reply.headers["content-type"].startswith("text/event-stream")
            name, data, event_id = "", "", ""
            async for line in reply.aiter_lines():
                if line.startswith(": subscribed"):
                    self._subscribed.set()
                elif line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif line.startswith("id: "):
                    event_id = line[4:]
                elif line == "" and name:
                    self.names.append(name)
                    self.events.append(json.loads(data))
                    self.ids.append(event_id)
                    name, data, event_id = "", "", ""
                    self._changed.set()

    async def wait_for(self, call_id: str, kind: str, timeout_s: float = 60) -> dict[str, Any]:
        async def found() -> dict[str, Any]:
            while True:
                for event in self.events:
                    if call_id in (event["call_id"], event["sip_call_id"]) and event["type"] == kind:
                        return event
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(found(), timeout_s)
        except TimeoutError:
            raise AssertionError(
                f"no {kind!r} event for {call_id} in {timeout_s} s; got {self.events}") from None


async def test_v1_needs_the_token_and_ops_endpoints_do_not(bot: Voicebot) -> None:
    async with client(bot, auth=False) as http:
        for method, path in (("GET", "/v1/calls"), ("POST", "/v1/calls"), ("GET", "/v1/events"),
                             ("GET", "/v1/openapi.json"), ("GET", "/v1/calls/c-0"), ("GET", "/v1/nope")):
            reply = await http.request(method, path)
            assert reply.status_code == 401, (method, path, reply.text)
            assert reply.headers["www-authenticate"] == 'Bearer realm="voicebot"'
            assert reply.headers["content-type"] == "application/problem+json"
            assert "Authorization: Bearer" in reply.json()["detail"]
        for header in (f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"Basic {TOKEN}", TOKEN):
            reply = await http.get("/v1/calls", headers={"Authorization": header})
            assert reply.status_code == 401, (header, reply.text)
        reply = await http.get("/v1/calls", headers={"Authorization": f"Bearer {TOKEN}x"})
        assert 'error="invalid_token"' in reply.headers["www-authenticate"]
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        assert "voicebot_calls_active" in (await http.get("/metrics")).text
    async with client(bot) as http:
        reply = await http.get("/v1/calls")
        assert reply.status_code == 200 and reply.json() == {"calls": []}
        spec = (await http.get("/v1/openapi.json")).json()
        assert spec["openapi"] == "3.1.0" and "/calls/{call_id}/hangup" in spec["paths"]


async def test_place_a_call_watch_its_events_and_hang_it_up(bot: Voicebot, tmp_path: Path,
                                                            pcap_cache: Path) -> None:
    speech = speech_pcap(pcap_cache, [Pause(1500), Say("Hello, who is calling please?"), Pause(20000)])
    callee_port = free_udp_port()
    callee = asyncio.ensure_future(answer(
        "callee_answer", tmp_path, local_port=callee_port, timeout_s=90, invite_timeout_ms=30000,
        pcap=speech.path, pause_ms=0, bye_timeout_ms=60000))
    await asyncio.sleep(0.5)  # sipp binds its port
    try:
        async with client(bot) as http, EventStream(http) as stream:
            reply = await http.post("/v1/calls", json={
                "dialplan": "reminder", "to": f"sip:patient@127.0.0.1:{callee_port}",
                "variables": {"name": "Alex"}, "timeout_s": 20})
            assert reply.status_code == 202, reply.text
            call = reply.json()
            call_id = call["id"]
            assert reply.headers["location"] == f"/v1/calls/{call_id}"
            assert call["status"] == "dialing" and call["direction"] == "outbound"
            assert call["dialplan"] == "reminder" and call["to"] == f"sip:patient@127.0.0.1:{callee_port}"

            started = await stream.wait_for(call_id, "started")
            assert started["data"]["dialplan"] == "reminder"
            await stream.wait_for(call_id, "answered", 30)
            state = await stream.wait_for(call_id, "state", 30)
            assert state["data"]["state"] == "ask"
            utterance = await stream.wait_for(call_id, "utterance", 60)
            assert utterance["data"]["text"].strip(), utterance
            sip_call_id = utterance["sip_call_id"]
            assert sip_call_id

            listed = (await http.get("/v1/calls")).json()["calls"]
            assert [c["id"] for c in listed] == [call_id]
            assert listed[0]["status"] == "answered" and listed[0]["sip_call_id"] == sip_call_id

            reply = await http.post(f"/v1/calls/{call_id}/hangup", json={"reason": "test over"})
            assert reply.status_code == 202, reply.text
            ended = await stream.wait_for(call_id, "ended", 30)
            assert ended["data"]["cause"] == "bye: api: test over", ended
            assert ended["data"]["side"] == "robot" and ended["data"]["answered"] is True

            # The stream kept the order of what happened on the call.
            kinds = [e["type"] for e in stream.events if e["call_id"] == call_id]
            assert kinds[:2] == ["started", "answered"] and kinds[-1] == "ended", kinds
            seqs = [e["seq"] for e in stream.events]
            assert seqs == sorted(seqs)

            for key in (call_id, sip_call_id):  # either id finds the call
                got = (await http.get(f"/v1/calls/{key}")).json()
                assert got["id"] == call_id and got["status"] == "ended", got
            assert got["outcome"]["cause"] == "bye: api: test over"
            assert got["states"][0] == "ask"
            assert got["utterances"] and got["utterances"][0]["text"] == utterance["data"]["text"]
            assert got["answered_at"] is not None and got["ended_at"] >= got["answered_at"]
            assert (await http.get("/v1/calls")).json() == {"calls": []}
            again = await http.post(f"/v1/calls/{call_id}/hangup")
            assert again.status_code == 409 and "already ended" in again.json()["detail"]

            # A client that lost its stream after `started` gets the rest of the call back when it
            # reconnects with the id it last saw (the instance's replay buffer, [http] events_replay).
            started_id = stream.ids[stream.events.index(started)]
            replayed: list[dict[str, Any]] = []
            async with (asyncio.timeout(10),
                        http.stream("GET", "/v1/events", params={"call_id": call_id},
                                    headers={"Last-Event-ID": started_id}) as reply):
                assert started_id.startswith(reply.headers["x-voicebot-boot-id"] + "-")
                async for line in reply.aiter_lines():
                    if line.startswith("data: "):
                        replayed.append(json.loads(line[6:]))
                        if replayed[-1]["type"] == "ended":
                            break
            assert replayed == [e for e in stream.events if e["call_id"] == call_id][1:]
        result = await callee
        assert result.returncode == 0, f"{result.explain()}\n{bot.log_tail()}"
        record = await asyncio.to_thread(bot.wait_call_ended, sip_call_id)
        assert record["summary"]["hangup_cause"] == "bye: api: test over", record["summary"]
        assert record["summary"]["hangup_side"] == "robot"
    finally:
        callee.cancel()


BAD_REQUESTS: list[tuple[str, str, dict[str, Any], int, str | None, str]] = [
    # (method, path, httpx kwargs, status, field, a part of the detail)
    ("POST", "/v1/calls", {"json": {"dialplan": "nope", "to": "sip:x@127.0.0.1:{port}"}}, 422, "dialplan",
     "dialplan 'nope' is not known to this instance; known: reminder"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:@@"}}, 422, "to",
     "to is not a valid SIP URI"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "call me maybe"}}, 422, "to",
     "to must be a sip: URI or a phone number"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "+1 555 0100"}}, 422, "to",
     "this instance has no trunk"),
    ("POST", "/v1/calls", {"json": {"to": "sip:x@127.0.0.1:{port}"}}, 422, "dialplan",
     "dialplan is required"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder"}}, 422, "to", "to is required"),
    ("POST", "/v1/calls", {"json": {"dialplan": 7, "to": "sip:x@127.0.0.1:{port}"}}, 422, "dialplan",
     "dialplan must be a string, got number"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}",
                                    "timeout_s": "9"}},
     422, "timeout_s", "timeout_s must be a number of seconds, got string"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}", "timeout_s": 0}},
     422, "timeout_s", "timeout_s must be 1..300 s, got 0"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}",
                                    "variables": {"name": 3}}}, 422, "variables.name",
     "variables.name must be a string, got number"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}", "variables": []}},
     422, "variables", "variables must be an object of strings, got array"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}", "timeout": 5}},
     422, "timeout", "unknown field 'timeout'"),
    ("POST", "/v1/calls", {"json": ["reminder"]}, 422, None, "the body must be a JSON object, got array"),
    ("POST", "/v1/calls", {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
     400, None,
     "the body is not valid JSON"),
    ("POST", "/v1/calls", {"content": b'{"dialplan": "reminder"}', "headers": {"Content-Type": "text/plain"}},
     415, None, "send Content-Type: application/json (got 'text/plain')"),
    ("POST", "/v1/calls", {"json": {"dialplan": "reminder", "to": "sip:x@127.0.0.1:{port}",
                                    "variables": {"pad": "x" * 20000}}}, 413, None, "at most 16384"),
    ("GET", "/v1/calls/c-0000000000000000", {}, 404, None, "no call with id 'c-0000000000000000'"),
    ("POST", "/v1/calls/c-0000000000000000/hangup", {}, 404, None, "no call with id"),
    ("POST", "/v1/calls/c-0000000000000000/transfer", {"json": {"target": "sip:op@127.0.0.1"}}, 404, None,
     "no call with id"),
    ("DELETE", "/v1/calls", {}, 405, None, "not allowed"),
    ("GET", "/v1/campaign", {}, 404, None, "no such API path"),
    ("GET", "/v1/campaigns", {}, 404, None, "campaigns are off on this instance: set [http] campaigns_db"),
    ("GET", "/v1/events", {"params": {"callid": "x"}}, 422, "callid", "unknown query parameter 'callid'"),
]


async def test_bad_input_gets_a_4xx_naming_the_problem_and_dials_nobody(bot: Voicebot) -> None:
    # The callee a wrong request would reach: it must receive nothing.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    port = sink.getsockname()[1]
    try:
        async with client(bot) as http, EventStream(http) as stream:
            for method, path, kwargs, status, field, detail in BAD_REQUESTS:
                if "json" in kwargs:
                    text = json.dumps(kwargs["json"]).replace("{port}", str(port))
                    kwargs = {**kwargs, "json": json.loads(text)}
                reply = await http.request(method, path, **kwargs)
                assert reply.status_code == status, (method, path, kwargs, reply.text)
                body = reply.json()
                assert reply.headers["content-type"] == "application/problem+json", reply.headers
                assert body["status"] == status and detail in body["detail"], (detail, body)
                assert body.get("field") == field, body
            await asyncio.sleep(1.0)
            assert (await http.get("/v1/calls")).json() == {"calls": []}
            assert stream.events == []  # not even a 'started'
        with pytest.raises(BlockingIOError):
            sink.recv(65535)
    finally:
        sink.close()


TRANSFER_TARGET = "sip:operator@127.0.0.1:5099"


async def test_an_inbound_call_is_listed_and_transferred_through_the_api(bot: Voicebot, tmp_path: Path,
                                                                        pcap_cache: Path) -> None:
    quiet = speech_pcap(pcap_cache, [Pause(20000)])
    sip_call_id = new_call_id("api-transfer")
    async with client(bot) as http, EventStream(http) as stream:
        caller = asyncio.ensure_future(call(
            bot, "caller_refer", tmp_path, call_id=sip_call_id, timeout_s=60, pcap=quiet.path, pause_ms=0,
            refer_timeout_ms=40000, bye_timeout_ms=15000, refer_to_regexp=refer_to_regexp(TRANSFER_TARGET)))
        try:
            started = await stream.wait_for(sip_call_id, "started", 20)
            assert started["data"]["direction"] == "inbound" and started["data"]["dialplan"] == "reminder"
            call_id = started["call_id"]
            await stream.wait_for(call_id, "answered", 20)
            listed = (await http.get("/v1/calls")).json()["calls"]
            assert [(c["id"], c["sip_call_id"], c["direction"]) for c in listed] == [
                (call_id, sip_call_id, "inbound")]

            bad = await http.post(f"/v1/calls/{call_id}/transfer", json={"target": "operator"})
            assert bad.status_code == 422 and bad.json()["field"] == "target"
            reply = await http.post(f"/v1/calls/{sip_call_id}/transfer", json={"target": TRANSFER_TARGET})
            assert reply.status_code == 202, reply.text

            ended = await stream.wait_for(call_id, "ended", 40)
            assert ended["data"]["cause"] == "bye: transferred", ended
            transfers = [e["data"] for e in stream.events
                         if e["call_id"] == call_id and e["type"] == "transfer"]
            assert transfers[0] == {"target": TRANSFER_TARGET, "result": "requested"}
            assert transfers[-1]["target"] == TRANSFER_TARGET and transfers[-1]["result"].startswith("200")
            result = await caller
            assert result.returncode == 0, explain(result, tmp_path, "caller_refer", bot)
        finally:
            caller.cancel()
