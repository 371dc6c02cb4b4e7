"""Campaigns through the control API of a running ``voicebot run`` (real HTTP client, real SIP).

One robot (the campaign tests' notice dialplan, VOICEBOT_API_TOKEN and VOICEBOT_HTTP_CAMPAIGNS_DB
set) and three sipp UAS callees on 127.0.0.1 (a person who says "Hello?", a busy line, a phone
nobody answers). Bad input gets its 4xx and creates nothing; a campaign of four contacts is created
with JSON, started, paused and resumed while it dials, and runs to its end inside the robot; its
results (JSON and CSV) match what the callees saw, its calls are in /v1/calls; cancel of a created
campaign and every impossible transition is refused with a 409; and SIGTERM leaves a running
campaign paused with no attempt unresolved.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_api_e2e import AUTH, TOKEN, free_tcp_port
from tests.campaign.test_campaign_e2e import calls_seen, start_uas, stop_uas
from tests.e2e.conftest import needs_tools
from tests.e2e.harness import Pause, Say, speech_pcap, start_voicebot

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(300)]

NOTICE = Path(__file__).resolve().parents[1] / "campaign" / "dialplans" / "notice.yaml"


def user_of(number: str) -> str:
    return number.split(":")[1].split("@")[0]


async def wait_for(http: httpx.AsyncClient, name: str, state: str,
                   timeout_s: float = 120.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            campaign: dict[str, Any] = (await http.get(f"/v1/campaigns/{name}")).json()
            if campaign["state"] == state and not campaign["dialing"]:
                return campaign
            await asyncio.sleep(0.2)


async def first_attempt(http: httpx.AsyncClient, name: str) -> None:
    async with asyncio.timeout(30):
        while True:
            if (await http.get(f"/v1/campaigns/{name}")).json()["attempts"] >= 1:
                return
            await asyncio.sleep(0.05)


async def test_a_campaign_created_started_paused_resumed_and_finished_through_the_api(
        tmp_path: Path, tts_cache: Path, pcap_cache: Path) -> None:
    hello = speech_pcap(pcap_cache, [Pause(300), Say("Hello?"), Pause(9000)])
    human = await start_uas("uas_human", tmp_path, pcap=hello.path)
    busy = await start_uas("uas_busy", tmp_path)
    silent = await start_uas("uas_no_answer", tmp_path)
    uas_all = (human, busy, silent)
    db = tmp_path / "bot" / "campaigns.db"
    bot = start_voicebot(tmp_path / "bot", tts_cache=tts_cache, dialplan=NOTICE,
                         extra_args=("--http-listen", f"127.0.0.1:{free_tcp_port()}"),
                         env={"VOICEBOT_API_TOKEN": TOKEN, "VOICEBOT_HTTP_CAMPAIGNS_DB": str(db)})
    try:
        async with httpx.AsyncClient(base_url=bot.ready_event["http"], timeout=10, headers=AUTH) as http:
            contacts = [{"number": f"sip:h1@127.0.0.1:{human.port}", "variables": {"name": "Ann"}},
                        {"number": f"sip:b1@127.0.0.1:{busy.port}", "variables": {"name": "Bea"}},
                        {"number": f"sip:n1@127.0.0.1:{silent.port}"},
                        {"number": f"sip:h2@127.0.0.1:{human.port}", "variables": {"name": "Dan"}}]
            spec: dict[str, Any] = {
                "name": "wave", "dialplan": "notice", "contacts": contacts, "window": "00:00-24:00",
                "pacing": {"max_concurrent": 2, "calls_per_s": 2},
                "retry": {"max_attempts": 2, "busy_delay_s": 2, "no_answer_delay_s": 2, "machine": "done"},
                "ring_timeout_s": 3}

            # bad input: a 4xx naming the problem, nothing created, nobody dialed
            no_auth = await http.get("/v1/campaigns", headers={"Authorization": ""})
            assert no_auth.status_code == 401
            bad_csv = {**spec, "contacts": f"number,name\n12ab,X\nsip:h1@127.0.0.1:{human.port},Y\n"}
            for bad, status, detail in (
                    (bad_csv, 422, "contacts:2: number '12ab' is not a phone number"),
                    ({**spec, "dialplan": "survey"}, 422, "dialplan 'survey' is not known"),
                    ({**spec, "pacing": {"max_concurrent": 0}}, 422, "max_concurrent must be at least 1"),
                    ({k: v for k, v in spec.items() if k != "name"}, 422, "name is required")):
                reply = await http.post("/v1/campaigns", json=bad)
                assert reply.status_code == status and detail in reply.json()["detail"], reply.text
            assert (await http.get("/v1/campaigns")).json() == {"campaigns": []}
            assert (await http.post("/v1/campaigns/wave/start")).status_code == 404

            # cancel of a created campaign, then nothing moves it again
            reply = await http.post("/v1/campaigns", json={**spec, "name": "never"})
            assert reply.status_code == 201
            assert (await http.post("/v1/campaigns/never/cancel")).json()["counts"] == {"done:cancelled": 4}
            reply = await http.post("/v1/campaigns/never/start")
            assert reply.status_code == 409
            assert reply.json()["detail"] == "campaign 'never' is cancelled; start needs it created"

            # the campaign: create, start, pause while it dials, resume, run to its end
            reply = await http.post("/v1/campaigns", json=spec)
            assert reply.status_code == 201, reply.text
            assert (await http.post("/v1/campaigns/wave/resume")).status_code == 409
            reply = await http.post("/v1/campaigns/wave/start")
            assert reply.status_code == 200 and reply.json()["state"] == "running", reply.text
            await first_attempt(http, "wave")
            reply = await http.post("/v1/campaigns/wave/pause")
            assert reply.status_code == 200 and reply.json()["state"] == "paused"
            assert (await http.post("/v1/campaigns/wave/pause")).status_code == 409
            await asyncio.sleep(1.0)  # an attempt the dialer had begun as the pause came is counted
            paused_attempts = (await http.get("/v1/campaigns/wave")).json()["attempts"]
            await asyncio.sleep(2.5)  # paused: calls in progress finish, nobody new is dialed
            assert (await http.get("/v1/campaigns/wave")).json()["attempts"] == paused_attempts < 6
            assert (await http.post("/v1/campaigns/wave/resume")).json()["state"] == "running"
            campaign = await wait_for(http, "wave", "finished")
            assert campaign["counts"] == {"done:answered": 2, "done:busy": 1, "done:no-answer": 1}, campaign
            assert campaign["attempts"] == 6 and campaign["error"] is None
            assert (await http.post("/v1/campaigns/wave/cancel")).status_code == 409

            results = (await http.get("/v1/campaigns/wave/results")).json()["results"]
            table = {user_of(r["number"]): r for r in results}
            assert [user_of(r["number"]) for r in results] == ["h1", "b1", "n1", "h2"]
            for user in ("h1", "h2"):
                row = table[user]
                assert (row["final_outcome"], row["attempts"], row["answer_type"]) == ("answered", 1, "human")
                assert row["result"] == {"delivered": "yes"}, row
                # the campaign's calls are the API's calls too
                call = (await http.get(f"/v1/calls/{row['last_call_id']}")).json()
                assert call["dialplan"] == "notice" and call["status"] == "ended", call
            assert (table["b1"]["final_outcome"], table["b1"]["attempts"]) == ("busy", 2)
            assert table["b1"]["last_cause"].startswith("failed: 486")
            assert (table["n1"]["final_outcome"], table["n1"]["attempts"]) == ("no-answer", 2)
            reply = await http.get("/v1/campaigns/wave/results", headers={"Accept": "text/csv"})
            rows = list(csv.DictReader(io.StringIO(reply.text)))
            assert [(user_of(r["number"]), r["final_outcome"], r["attempts"], r["var_name"])
                    for r in rows] == [
                ("h1", "answered", "1", "Ann"), ("b1", "busy", "2", "Bea"), ("n1", "no-answer", "2", ""),
                ("h2", "answered", "1", "Dan")]
            # what the callees saw is what the results say: one INVITE per attempt
            await asyncio.sleep(0.5)
            invites = Counter(s.user for uas in uas_all for s in calls_seen(uas.log))
            assert invites == {"h1": 1, "b1": 2, "n1": 2, "h2": 1}, invites

            # SIGTERM while a campaign dials: it is left paused, its attempts resolved
            reply = await http.post("/v1/campaigns", json={
                **spec, "name": "late", "contacts": [{"number": f"sip:n{i}@127.0.0.1:{silent.port}"}
                                                     for i in range(2, 5)]})
            assert reply.status_code == 201
            assert (await http.post("/v1/campaigns/late/start")).status_code == 200
            await first_attempt(http, "late")
        assert bot.stop(timeout_s=30) == 0, bot.log_tail()
    finally:
        bot.stop()
        for uas in uas_all:
            await stop_uas(uas)
    with sqlite3.connect(db) as conn:
        state = conn.execute("SELECT state FROM campaigns WHERE campaign_id = 'late'").fetchone()
        assert state == ("paused",)
        assert conn.execute("SELECT COUNT(*) FROM attempts WHERE status = 'dialing'").fetchone() == (0,)
        pending = conn.execute("SELECT COUNT(*) FROM contacts WHERE campaign_id = 'late' "
                               "AND status = 'pending'")
        assert pending.fetchone()[0] >= 1
    stopped = bot.log_events("campaign.paused_for_shutdown")
    assert [e["campaign"] for e in stopped] == ["late"], stopped
