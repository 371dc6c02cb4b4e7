"""/v1/campaigns on a real HTTP server (uvicorn on 127.0.0.1:0) with the real CampaignControl, its
real SQLite store and real dialer tasks; only the placing of calls is a stand-in that answers by
the callee's user part (no SIP here: the whole campaign against sipp is test_campaign_api_e2e.py).

Checks every validation refusal (field-named 422 with every bad row, nothing stored), the state
machine's transitions and 409s, results as JSON and CSV, and a shutdown that pauses a running
campaign which another control on the same file resumes without dialing anyone twice."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from voicebot.api.events import EventBus
from voicebot.api.registry import CallEntry, CallRegistry
from voicebot.api.routes import ApiContext, api_routes
from voicebot.call.outcome import CallOutcome
from voicebot.call.pipeline import AmdOptions
from voicebot.campaign.control import CampaignControl
from voicebot.campaign.errors import CampaignError
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan
from voicebot.observe.http import build_app, start_ops_server
from voicebot.telephony import Credentials

pytestmark = [pytest.mark.adapter, pytest.mark.timeout(60)]

TOKEN = "route-test-token-0123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REMINDER = Path(__file__).resolve().parents[2] / "dialplans" / "reminder.yaml"
ALL_DAY = "00:00-24:00"


class Placer:
    """Places nothing: c-busy is busy (486), everyone else answers; each call takes ``call_s``,
    or until ``gate`` is set when one is given."""

    def __init__(self, call_s: float = 0.02) -> None:
        self.call_s = call_s
        self.placed: list[str] = []
        self.gate: asyncio.Event | None = None

    async def place_call(self, uri: str, *, variables: Mapping[str, str] | None = None,
                         timeout_s: float = 60.0, credentials: Credentials | None = None,
                         amd: AmdOptions | None = None, destination: tuple[str, int] | None = None,
                         from_user: str | None = None) -> CallOutcome:
        self.placed.append(uri)
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.call_s)
        if "c-busy" in uri:
            return CallOutcome(call_id="", direction="outbound", answered=False,
                               cause="failed: 486 Busy Here", side="caller", sip_status=486)
        return CallOutcome(call_id=f"id-{len(self.placed)}", direction="outbound", answered=True,
                           cause="bye: dialplan", side="robot", answer_type="human")


def unused_place(uri: str, plan: Dialplan, variables: Mapping[str, str], timeout_s: float) -> CallEntry:
    raise AssertionError("no call is placed through /v1/calls here")


class Served:
    def __init__(self, db: Path, placer: Placer) -> None:
        self.plan = load_dialplan(REMINDER)
        self.placer = placer

        def placer_for(name: str) -> Placer:
            if name != "reminder":
                raise CampaignError(f"the campaign's dialplan {name!r} is not loaded on this instance")
            return self.placer

        self.control = CampaignControl(str(db), placer_for, poll_s=0.02)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Served, httpx.AsyncClient]]:
    s = Served(tmp_path / "campaigns.db", Placer())
    ctx = ApiContext(registry=CallRegistry(EventBus()), dialplans={"reminder": s.plan}, place=unused_place,
                     unready=lambda: None, max_calls=4, token=TOKEN, trunk=None, campaigns=s.control)
    app = build_app(CollectorRegistry(), lambda: None, extra_routes=api_routes(ctx))
    server = await start_ops_server(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            yield s, http
    finally:
        await s.control.aclose()
        await server.aclose()


def body(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "spring", "dialplan": "reminder", "window": ALL_DAY,
                            "contacts": "number,name\nsip:c-a@127.0.0.1:5070,Ann\n"
                                        "sip:c-b@127.0.0.1:5070,Bob\n"}
    base.update(over)
    return base


async def until(predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.01)


async def wait_state(http: httpx.AsyncClient, name: str, state: str,
                     timeout_s: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            campaign: dict[str, Any] = (await http.get(f"/v1/campaigns/{name}")).json()
            if campaign["state"] == state and not campaign["dialing"]:
                return campaign
            await asyncio.sleep(0.02)


@pytest.mark.parametrize(("over", "status", "field", "detail"), [
    ({"contacts": "number,name\n12ab,Ann\nsip:c-a@127.0.0.1,Bob\n+1 555 0100,C\n+15550100,D\n"}, 422,
     "contacts", "contacts:2: number '12ab' is not a phone number"),
    ({"contacts": "name\nAnn\n"}, 422, "contacts", "contacts:1: no 'number' column"),
    ({"contacts": [{"number": "sip:c-a@127.0.0.1"}, {"number": "x"}]}, 422, "contacts",
     "contacts[1].number: number 'x' is not a phone number"),
    ({"contacts": [{"number": "sip:c-a@h"}, {"number": "sip:c-a@h", "tz": "Mars/Olympus"}]}, 422,
     "contacts", "contacts[1].number: number sip:c-a@h is a duplicate of contacts[0]"),
    ({"contacts": []}, 422, "contacts", "contacts is an empty list"),
    ({"contacts": 3}, 422, "contacts", "contacts must be CSV text or a list of objects, got number"),
    ({"contacts": None}, 422, "contacts", "contacts is required"),
    ({"dialplan": "survey"}, 422, "dialplan",
     "dialplan 'survey' is not known to this instance; known: reminder"),
    ({"name": "bad name!"}, 422, "name", "name 'bad name!' may hold only letters, digits, - and _"),
    ({"timeout": 3}, 422, "timeout", "unknown field 'timeout'"),
    ({"pacing": {"max_concurrent": 0}}, 422, "pacing.max_concurrent",
     "pacing: max_concurrent must be at least 1, got 0"),
    ({"pacing": {"calls_per_s": "fast"}}, 422, "pacing.calls_per_s", "pacing.calls_per_s must be a number"),
    ({"retry": {"machine": "hangup"}}, 422, "retry.machine", "machine policy must be 'retry' or 'done'"),
    ({"retry": {"attempts": 2}}, 422, "retry.attempts", "unknown field 'retry.attempts'"),
    ({"window": "20:00-09:00"}, 422, "window", "must end after it starts"),
    ({"tz": "Mars/Olympus"}, 422, "tz", "tz 'Mars/Olympus' is not a known IANA zone"),
    ({"ring_timeout_s": 0}, 422, "ring_timeout_s", "ring_timeout_s must be 1..300 s, got 0"),
    ({"amd": "yes"}, 422, "amd", "amd must be true or false"),
    ({"webhook_url": "ftp://x"}, 422, "webhook_url", "webhook_url must be an http:// or https:// URL"),
    ({"variables": {"1x": "a"}}, 422, "variables.1x", "is not a variable name"),
    ({"contacts": "number\n+1 555 0100\n"}, 422, "trunk.proxy",
     "contact +15550100 is a phone number but the campaign has no trunk proxy"),
    ({"trunk": {"proxy": "http://x"}}, 422, "trunk.proxy", "trunk.proxy 'http://x' is not a sip: URI"),
])
async def test_bad_input_is_a_field_named_422_and_creates_nothing(
        served: tuple[Served, httpx.AsyncClient], over: dict[str, Any], status: int, field: str,
        detail: str) -> None:
    s, http = served
    reply = await http.post("/v1/campaigns", json=body(**over))
    assert reply.status_code == status, reply.text
    problem = reply.json()
    assert reply.headers["content-type"] == "application/problem+json"
    assert problem["field"] == field and detail in problem["detail"], problem
    assert (await http.get("/v1/campaigns")).json() == {"campaigns": []}
    assert s.placer.placed == []


async def test_every_bad_csv_row_is_reported_with_its_line(served: tuple[Served, httpx.AsyncClient]) -> None:
    _, http = served
    csv_text = ("number,tz,name\nsip:c-a@127.0.0.1,,A\n12ab,,B\nsip:c-c@127.0.0.1,Mars/Olympus,C\n"
                "sip:c-a@127.0.0.1,,D\n")
    reply = await http.post("/v1/campaigns", json=body(contacts=csv_text))
    assert reply.status_code == 422
    assert reply.json()["errors"] == [
        "contacts:3: number '12ab' is not a phone number (+ and 3-15 digits) or a sip: URI",
        "contacts:4: time zone 'Mars/Olympus' is not a known IANA zone (e.g. Europe/Berlin)",
        "contacts:5: number sip:c-a@127.0.0.1 is a duplicate of line 2",
    ]
    assert "(and 2 more problems: see errors)" in reply.json()["detail"]


async def test_malformed_bodies_and_a_taken_name(served: tuple[Served, httpx.AsyncClient]) -> None:
    _, http = served
    assert (await http.post("/v1/campaigns", content=b"{", headers={"Content-Type": "application/json"})
            ).status_code == 400
    assert (await http.post("/v1/campaigns", content=b"number\n1", headers={"Content-Type": "text/csv"})
            ).status_code == 415
    assert (await http.get("/v1/campaigns/nope")).status_code == 404
    assert (await http.post("/v1/campaigns/nope/start")).status_code == 404
    reply = await http.post("/v1/campaigns", json=body())
    assert reply.status_code == 201 and reply.headers["location"] == "/v1/campaigns/spring"
    assert reply.json()["state"] == "created" and reply.json()["contacts"] == 2
    reply = await http.post("/v1/campaigns", json=body())
    assert reply.status_code == 409 and reply.json()["field"] == "name"
    assert "campaign 'spring' already exists" in reply.json()["detail"]
    assert [c["id"] for c in (await http.get("/v1/campaigns")).json()["campaigns"]] == ["spring"]


async def test_transitions_and_their_409s(served: tuple[Served, httpx.AsyncClient]) -> None:
    s, http = served
    s.placer.gate = asyncio.Event()  # calls stay in progress until the gate opens
    contacts = [{"number": "sip:c-a@127.0.0.1", "variables": {"name": "Ann"}},
                {"number": "sip:c-busy@127.0.0.1", "variables": {"name": "Bea"}},
                {"number": "sip:c-c@127.0.0.1"}]
    assert (await http.post("/v1/campaigns", json=body(
        contacts=contacts, pacing={"max_concurrent": 1, "calls_per_s": 50},
        retry={"max_attempts": 1}))).status_code == 201

    async def command(name: str) -> httpx.Response:
        return await http.post(f"/v1/campaigns/spring/{name}")

    reply = await command("pause")
    assert reply.status_code == 409
    assert reply.json()["detail"] == ("campaign 'spring' is created; pause needs it running "
                                      "(it has not been started)")
    assert (await command("resume")).json()["detail"].endswith("resume needs it paused (use start)")
    reply = await command("start")
    assert reply.status_code == 200 and reply.json()["state"] == "running" and reply.json()["dialing"]
    assert (await command("start")).json()["detail"] == "campaign 'spring' is running; start needs it created"
    async def placed() -> bool:
        return bool(s.placer.placed)

    await until(placed)
    assert (await command("pause")).json()["state"] == "paused"
    assert (await command("start")).json()["detail"].endswith("start needs it created (use resume)")
    s.placer.gate.set()  # the call in progress ends while paused; nobody new is dialed

    async def recorded() -> bool:
        counts = (await http.get("/v1/campaigns/spring")).json()["counts"]
        return bool(counts == {"done:answered": 1, "pending": 2})

    await until(recorded)
    await asyncio.sleep(0.2)  # several dialer polls (20 ms) while paused
    assert s.placer.placed == ["sip:c-a@127.0.0.1"]
    assert (await command("resume")).json()["state"] == "running"
    campaign = await wait_state(http, "spring", "finished")
    assert campaign["counts"] == {"done:answered": 2, "done:busy": 1} and campaign["attempts"] == 3
    assert sorted(s.placer.placed) == ["sip:c-a@127.0.0.1", "sip:c-busy@127.0.0.1", "sip:c-c@127.0.0.1"]
    for name in ("pause", "resume", "cancel", "start"):
        reply = await command(name)
        assert reply.status_code == 409 and "campaign 'spring' is finished" in reply.json()["detail"], name

    results = (await http.get("/v1/campaigns/spring/results")).json()["results"]
    assert [(r["number"], r["final_outcome"], r["attempts"], r["variables"]) for r in results] == [
        ("sip:c-a@127.0.0.1", "answered", 1, {"name": "Ann"}),
        ("sip:c-busy@127.0.0.1", "busy", 1, {"name": "Bea"}),
        ("sip:c-c@127.0.0.1", "answered", 1, {})]
    reply = await http.get("/v1/campaigns/spring/results", headers={"Accept": "text/csv"})
    assert reply.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(reply.text)))
    assert [(r["number"], r["final_outcome"], r["last_cause"], r["var_name"]) for r in rows] == [
        ("sip:c-a@127.0.0.1", "answered", "bye: dialplan", "Ann"),
        ("sip:c-busy@127.0.0.1", "busy", "failed: 486 Busy Here", "Bea"),
        ("sip:c-c@127.0.0.1", "answered", "bye: dialplan", "")]


async def test_cancel_without_a_dialer_cancels_every_pending_contact(
        served: tuple[Served, httpx.AsyncClient]) -> None:
    s, http = served
    assert (await http.post("/v1/campaigns", json=body())).status_code == 201
    reply = await http.post("/v1/campaigns/spring/cancel")
    assert reply.json()["state"] == "cancelled" and reply.json()["counts"] == {"done:cancelled": 2}
    assert (await http.post("/v1/campaigns/spring/resume")).status_code == 409
    assert s.placer.placed == []


async def test_shutdown_pauses_and_a_restart_resumes_without_dialing_anyone_twice(tmp_path: Path) -> None:
    db = tmp_path / "campaigns.db"
    first = Served(db, Placer(call_s=0.0))
    first.placer.gate = asyncio.Event()
    from voicebot.api.campaign_schema import create_campaign_request

    req = create_campaign_request(
        body(contacts=[{"number": f"sip:c-{i}@127.0.0.1"} for i in range(4)],
             pacing={"max_concurrent": 2, "calls_per_s": 50}),
        known_dialplan=lambda name: name == "reminder", dialplans=["reminder"], trunk=None)
    await first.control.create(req.name, req.settings, req.contacts)
    await first.control.command("spring", "start")
    async def two_placed() -> bool:
        return len(first.placer.placed) == 2

    await until(two_placed)
    await first.control.stop()  # SIGTERM: paused, nobody new; the two calls in progress go on
    assert (await first.control.status("spring")).state == "paused"
    first.placer.gate.set()
    await first.control.aclose()
    assert len(first.placer.placed) == 2

    second = Served(db, Placer())
    try:
        status = await second.control.status("spring")
        assert status.state == "paused" and status.counts == {"done:answered": 2, "pending": 2}
        with pytest.raises(CampaignError, match="is paused; start needs it created"):
            await second.control.command("spring", "start")
        await second.control.command("spring", "resume")
        async def finished() -> bool:
            return (await second.control.status("spring")).state == "finished"

        await until(finished)
        assert sorted(first.placer.placed + second.placer.placed) == [
            f"sip:c-{i}@127.0.0.1" for i in range(4)]
    finally:
        await second.control.aclose()


async def test_campaign_routes_are_off_without_a_store(tmp_path: Path) -> None:
    ctx = ApiContext(registry=CallRegistry(EventBus()), dialplans={}, place=unused_place,
                     unready=lambda: None, max_calls=1, token=TOKEN)
    app = build_app(CollectorRegistry(), lambda: None, extra_routes=api_routes(ctx))
    server = await start_ops_server(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=5) as http:
            reply = await http.get("/v1/campaigns")
            assert reply.status_code == 404 and "campaigns are off on this instance" in reply.json()["detail"]
    finally:
        await server.aclose()


async def test_start_without_the_trunk_password_is_a_409_and_changes_nothing(
        served: tuple[Served, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch) -> None:
    s, http = served
    monkeypatch.delenv("VOICEBOT_TEST_TRUNK_PW", raising=False)
    reply = await http.post("/v1/campaigns", json=body(trunk={"username": "u",
                                                              "password_env": "VOICEBOT_TEST_TRUNK_PW"}))
    assert reply.status_code == 201
    reply = await http.post("/v1/campaigns/spring/start")
    assert reply.status_code == 409
    assert reply.json()["detail"] == ("the trunk's user is 'u' but $VOICEBOT_TEST_TRUNK_PW is not set (the "
                                      "password comes only from the environment)")
    campaign = (await http.get("/v1/campaigns/spring")).json()
    assert campaign["state"] == "created" and not campaign["dialing"] and s.placer.placed == []


async def test_a_dialer_that_fails_leaves_the_campaign_paused_with_its_error(
        served: tuple[Served, httpx.AsyncClient], tmp_path: Path) -> None:
    # A do-not-call file that was readable at create (the CLI and the API check) and is gone at the
    # first dial round stops the dialer.
    import dataclasses

    from voicebot.campaign.csvload import parse_contacts
    from voicebot.campaign.model import CallingWindow, CampaignSettings

    s, http = served
    missing = tmp_path / "dnc.txt"
    settings = CampaignSettings(dialplan="reminder", window=CallingWindow.parse(ALL_DAY))
    await s.control.create("cli", dataclasses.replace(settings, dnc_file=str(missing)),
                           parse_contacts("number\nsip:c-a@127.0.0.1\n"))
    assert (await http.post("/v1/campaigns/cli/start")).status_code == 200
    campaign = await wait_state(http, "cli", "paused")
    assert campaign["error"] == (f"cannot read the do-not-call list {missing}: No such file or directory; "
                                 "refusing to dial without it")
    assert s.placer.placed == []
    missing.write_text("")
    campaign = (await http.post("/v1/campaigns/cli/resume")).json()
    assert campaign["state"] == "running" and campaign["error"] is None
    assert (await wait_state(http, "cli", "finished"))["counts"] == {"done:answered": 1}


# ---- do-not-call lists over HTTP ---------------------------------------------------------------


@pytest.mark.parametrize(("over", "field", "detail"), [
    ({"dnc_file": "dnc.txt"}, "dnc_file",
     "dnc_file 'dnc.txt' must be an absolute path on the voicebot server"),
    ({"dnc_file": "/nonexistent/dnc.txt"}, "dnc_file",
     "dnc_file: cannot read the do-not-call list /nonexistent/dnc.txt: No such file or directory"),
    ({"dnc_file": "/"}, "dnc_file", "dnc_file: cannot read the do-not-call list /: Is a directory"),
    ({"dnc_file": 3}, "dnc_file", "dnc_file must be a string, got number"),
    ({"dnc_numbers": "+15550100"}, "dnc_numbers", "dnc_numbers must be a list of numbers, got string"),
    ({"dnc_numbers": ["+15550100", "12ab", 7]}, "dnc_numbers",
     "dnc_numbers[1]: '12ab' is not a phone number (+ and 3-15 digits) or a sip: URI (and 1 more problems"),
    ({"dnc_numbers": [], "dnc_file": "/etc/hostname"}, "dnc_numbers",
     "give dnc_file or dnc_numbers, not both"),
])
async def test_a_bad_do_not_call_list_is_a_field_named_422_and_creates_nothing(
        served: tuple[Served, httpx.AsyncClient], over: dict[str, Any], field: str, detail: str) -> None:
    s, http = served
    reply = await http.post("/v1/campaigns", json=body(**over))
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    assert reply.json()["field"] == field and detail in reply.json()["detail"], reply.json()
    assert (await http.get("/v1/campaigns")).json() == {"campaigns": []}
    assert not s.control.dnc_dir.exists()


async def test_numbers_on_the_inline_list_are_never_dialed(served: tuple[Served, httpx.AsyncClient]) -> None:
    s, http = served
    contacts = "number\nsip:c-a@127.0.0.1\nsip:c-b@127.0.0.1\nsip:c-c@127.0.0.1\n"
    reply = await http.post("/v1/campaigns", json=body(contacts=contacts, dnc_numbers=[
        "sip:c-b@127.0.0.1", "+1 555 0100", "+15550100"]))
    assert reply.status_code == 201, reply.text
    path = s.control.dnc_path("spring")
    assert reply.json()["dnc_file"] == str(path)
    assert path.read_text().splitlines()[1:] == ["sip:c-b@127.0.0.1", "+15550100"]  # normalized, once
    # a second create under the same name is refused and leaves the first one's list alone
    reply = await http.post("/v1/campaigns", json=body(dnc_numbers=["sip:c-a@127.0.0.1"]))
    assert reply.status_code == 409
    assert path.read_text().splitlines()[1:] == ["sip:c-b@127.0.0.1", "+15550100"]
    assert [p.name for p in s.control.dnc_dir.iterdir()] == ["spring.txt"]

    assert (await http.post("/v1/campaigns/spring/start")).status_code == 200
    campaign = await wait_state(http, "spring", "finished")
    assert campaign["counts"] == {"done:answered": 2, "done:dnc": 1}
    assert sorted(s.placer.placed) == ["sip:c-a@127.0.0.1", "sip:c-c@127.0.0.1"]
    results = {r["number"]: r for r in (await http.get("/v1/campaigns/spring/results")).json()["results"]}
    assert (results["sip:c-b@127.0.0.1"]["final_outcome"], results["sip:c-b@127.0.0.1"]["attempts"]) == (
        "dnc", 0)


async def test_a_server_side_dnc_file_is_checked_and_honoured(
        served: tuple[Served, httpx.AsyncClient], tmp_path: Path) -> None:
    s, http = served
    dnc = tmp_path / "opt-out.txt"
    dnc.write_text("# opted out by phone\nsip:c-a@127.0.0.1:5070\n")
    reply = await http.post("/v1/campaigns", json=body(dnc_file=str(dnc)))
    assert reply.status_code == 201 and reply.json()["dnc_file"] == str(dnc), reply.text
    assert (await http.post("/v1/campaigns/spring/start")).status_code == 200
    campaign = await wait_state(http, "spring", "finished")
    assert campaign["counts"] == {"done:answered": 1, "done:dnc": 1}
    assert s.placer.placed == ["sip:c-b@127.0.0.1:5070"]


async def test_patch_switches_the_list_of_a_running_campaign_from_its_next_dial_on(
        served: tuple[Served, httpx.AsyncClient], tmp_path: Path) -> None:
    s, http = served
    s.placer.gate = asyncio.Event()  # the first call stays in progress until the gate opens
    contacts = "number\nsip:c-a@127.0.0.1\nsip:c-b@127.0.0.1\nsip:c-c@127.0.0.1\n"
    assert (await http.post("/v1/campaigns", json=body(
        contacts=contacts, pacing={"max_concurrent": 1, "calls_per_s": 50}))).status_code == 201
    assert (await http.patch("/v1/campaigns/spring", json={"dnc_file": None})).json()["dnc_file"] is None
    assert (await http.post("/v1/campaigns/spring/start")).status_code == 200

    async def placed() -> bool:
        return bool(s.placer.placed)

    await until(placed)
    reply = await http.patch("/v1/campaigns/spring", json={"dnc_numbers": ["sip:c-c@127.0.0.1"]})
    assert reply.status_code == 200 and reply.json()["state"] == "running", reply.text
    assert reply.json()["dnc_file"] == str(s.control.dnc_path("spring"))
    # refusals change nothing
    for patch, status, detail in (
            ({}, 422, "nothing to change; give one of: dnc_file, dnc_numbers"),
            ({"dnc_file": "/nonexistent"}, 422, "dnc_file: cannot read the do-not-call list /nonexistent"),
            ({"dnc_numbers": None}, 422, "dnc_numbers must be a list of numbers, got null"),
            ({"dnc_file": None, "dnc_numbers": []}, 422, "give dnc_file or dnc_numbers, not both"),
            ({"window": "00:00-24:00"}, 422, "unknown field 'window'; known fields: dnc_file, dnc_numbers")):
        reply = await http.patch("/v1/campaigns/spring", json=patch)
        assert reply.status_code == status and detail in reply.json()["detail"], (patch, reply.text)
    assert (await http.patch("/v1/campaigns/nope", json={"dnc_numbers": []})).status_code == 404
    assert (await http.get("/v1/campaigns/spring")).json()["dnc_file"] == str(s.control.dnc_path("spring"))
    s.placer.gate.set()
    campaign = await wait_state(http, "spring", "finished")
    assert campaign["counts"] == {"done:answered": 2, "done:dnc": 1}
    assert s.placer.placed == ["sip:c-a@127.0.0.1", "sip:c-b@127.0.0.1"]
    reply = await http.patch("/v1/campaigns/spring", json={"dnc_numbers": []})
    assert reply.status_code == 409
    assert reply.json()["detail"] == "campaign 'spring' is finished; its do-not-call list no longer matters"

    # a stored campaign (state created) switched to a file: the store has it, a later dialer reads it
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("sip:c-b@127.0.0.1\n")
    assert (await http.post("/v1/campaigns", json=body(name="autumn", contacts=contacts))).status_code == 201
    reply = await http.patch("/v1/campaigns/autumn", json={"dnc_file": str(dnc)})
    assert reply.status_code == 200 and reply.json()["dnc_file"] == str(dnc)
    s.placer.gate = None
    s.placer.placed.clear()
    assert (await http.post("/v1/campaigns/autumn/start")).status_code == 200
    assert (await wait_state(http, "autumn", "finished"))["counts"] == {"done:answered": 2, "done:dnc": 1}
    assert sorted(s.placer.placed) == ["sip:c-a@127.0.0.1", "sip:c-c@127.0.0.1"]
