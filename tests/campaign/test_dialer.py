"""The dialer against a fake App (an in-memory placer): the store's crash-safety, pause/cancel,
the webhook per finished contact and the export, on real SQLite and real asyncio (short delays)."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from voicebot.call.outcome import CallOutcome
from voicebot.call.pipeline import AmdOptions
from voicebot.campaign.cli import write_export
from voicebot.campaign.csvload import parse_contacts
from voicebot.campaign.dialer import INTERRUPTED_CAUSE, CampaignDialer
from voicebot.campaign.model import CallingWindow, CampaignSettings, Pacing, RetryPolicy
from voicebot.campaign.store import CampaignStore
from voicebot.dialog.runner import CallSummary
from voicebot.telephony import Credentials

pytestmark = pytest.mark.timeout(60)

CSV = "number,name\n" + "".join(f"sip:c{i}@127.0.0.1:5070,N{i}\n" for i in range(8))


class FakePlacer:
    """Answers by the URI's user: c0-c3 answer (human), c4 busy, c5 no answer, c6 404, c7 machine."""

    def __init__(self, call_s: float = 0.05) -> None:
        self.call_s = call_s
        self.placed: list[tuple[float, str, Mapping[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._placed = asyncio.Event()

    async def wait_placed(self, count: int) -> None:
        while len(self.placed) < count:
            self._placed.clear()
            await asyncio.wait_for(self._placed.wait(), 10)

    async def place_call(self, uri: str, *, variables: Mapping[str, str] | None = None,
                         timeout_s: float = 60.0, credentials: Credentials | None = None,
                         amd: AmdOptions | None = None, destination: tuple[str, int] | None = None,
                         from_user: str | None = None) -> CallOutcome:
        self.placed.append((time.monotonic(), uri, dict(variables or {})))
        self._placed.set()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.call_s)
        finally:
            self.in_flight -= 1
        user = uri.split(":")[1].split("@")[0]
        n = int(user[1:])
        if n <= 3:
            summary = CallSummary("x", ["ask", "confirmed"], {"confirmation": "confirmed"}, "hangup")
            return CallOutcome(f"call-{len(self.placed)}", "outbound", True, "bye", "robot", dialog=summary,
                               answer_type="human", amd_reason="short-greeting")
        if n == 7:
            return CallOutcome(f"call-{len(self.placed)}", "outbound", True, "bye: amd: machine", "robot",
                               answer_type="machine", amd_reason="phrase")
        status = {4: 486, 5: None, 6: 404}[n]
        return CallOutcome("", "outbound", False, f"failed: {status}", "caller", sip_status=status)


def make(tmp_path: Path, **kw: object) -> tuple[CampaignStore, CampaignSettings]:
    base: dict[str, object] = dict(
        dialplan="x.yaml", window=CallingWindow.parse("00:00-24:00"), pacing=Pacing(2, 20.0, 1),
        retry=RetryPolicy(max_attempts=2, busy_delay_s=0.1, no_answer_delay_s=0.1, machine_delay_s=0.1,
                          failed_delay_s=0.1))
    base.update(kw)
    settings = CampaignSettings(**base)  # type: ignore[arg-type]
    store = CampaignStore(tmp_path / "campaigns.db")
    store.create("spring", settings, parse_contacts(CSV, "c.csv"), now=time.time())
    return store, settings


async def test_a_campaign_runs_to_the_end_with_retries_by_outcome(tmp_path: Path) -> None:
    store, _ = make(tmp_path)
    placer = FakePlacer()
    state = await CampaignDialer(store, "spring", placer, poll_s=0.02).run()
    assert state == "finished" and store.state("spring") == "finished"
    dialed = [uri.split(":")[1].split("@")[0] for _, uri, _ in placer.placed]
    # answered and refused once; busy, no answer and machine twice (max_attempts=2)
    assert sorted(dialed) == sorted(["c0", "c1", "c2", "c3", "c6", "c4", "c4", "c5", "c5", "c7", "c7"])
    assert placer.max_in_flight <= 2
    starts = [t for t, _, _ in placer.placed]
    # token bucket (R=20/s, burst 1): j - i further calls need (j - i) / R seconds; the fake stamps
    # its own start, after the store's thread hop, so allow one call's worth and 30 ms of jitter
    assert all(starts[j] - starts[i] >= (j - i - 1) / 20 - 0.03
               for i in range(len(starts)) for j in range(i + 1, len(starts)))
    assert placer.placed[0][2]["name"] == "N0" and placer.placed[0][2]["campaign"] == "spring"
    out = io.StringIO()
    write_export(store.results("spring"), out)
    rows = out.getvalue().splitlines()
    assert rows[0] == ("number,line,status,final_outcome,attempts,answer_type,last_cause,last_call_id,"
                       "finished_at,var_name,result_confirmation")
    by_user = {r.split(",")[0].split(":")[1].split("@")[0]: r.split(",") for r in rows[1:]}
    assert by_user["c0"][2:6] == ["done", "answered", "1", "human"] and by_user["c0"][-1] == "confirmed"
    assert by_user["c4"][2:5] == ["done", "busy", "2"] and by_user["c4"][6] == "failed: 486"
    assert by_user["c5"][2:5] == ["done", "no-answer", "2"]
    assert by_user["c6"][2:5] == ["done", "refused", "1"]
    assert by_user["c7"][2:6] == ["done", "machine", "2", "machine"]
    assert len(store.attempts("spring")) == 11


async def test_an_attempt_left_dialing_by_a_crash_is_never_dialed_again_in_its_window(tmp_path: Path) -> None:
    store, _ = make(tmp_path, retry=RetryPolicy(max_attempts=3, interrupted="next-window"))
    # a previous dialer committed c0's attempt and died before the call ended
    store.begin_attempt("spring", "sip:c0@127.0.0.1:5070", 1, "sip:c0@127.0.0.1:5070", now=time.time())
    placer = FakePlacer()
    dialer = CampaignDialer(store, "spring", placer, poll_s=0.02)
    run = asyncio.ensure_future(dialer.run())
    for _ in range(200):
        await asyncio.sleep(0.02)
        if sum(1 for c in store.contact_states("spring") if c.status == "done") >= 7:
            break
    dialer.request_stop()
    assert await run == "running"
    assert "sip:c0@127.0.0.1:5070" not in [uri for _, uri, _ in placer.placed]
    [attempt] = [a for a in store.attempts("spring") if a["contact_id"] == "sip:c0@127.0.0.1:5070"]
    assert attempt["outcome"] == "interrupted" and attempt["cause"] == INTERRUPTED_CAUSE
    [c0] = [c for c in store.contact_states("spring") if c.contact_id == "sip:c0@127.0.0.1:5070"]
    assert c0.status == "pending" and c0.attempts == 1 and c0.next_at > time.time() + 60


async def test_interrupted_never_ends_the_contact(tmp_path: Path) -> None:
    store, _ = make(tmp_path, retry=RetryPolicy(max_attempts=1, interrupted="never"))
    store.begin_attempt("spring", "sip:c0@127.0.0.1:5070", 1, "sip:c0@127.0.0.1:5070", now=time.time())
    assert await CampaignDialer(store, "spring", FakePlacer(), poll_s=0.02).run() == "finished"
    [c0] = [r for r in store.results("spring") if r.number == "sip:c0@127.0.0.1:5070"]
    assert (c0.final_outcome, c0.attempts) == ("interrupted", 1)


async def test_pause_stops_new_dials_and_cancel_ends_the_campaign(tmp_path: Path) -> None:
    store, _ = make(tmp_path, pacing=Pacing(1, 20.0, 1))
    placer = FakePlacer(call_s=0.1)
    run = asyncio.ensure_future(CampaignDialer(store, "spring", placer, poll_s=0.02).run())
    await placer.wait_placed(1)
    store.set_state("spring", "paused", now=time.time())
    await asyncio.sleep(0.5)
    assert len(placer.placed) == 1  # the call in progress finished; nothing new while paused
    store.set_state("spring", "running", now=time.time())
    await placer.wait_placed(2)
    store.set_state("spring", "cancelled", now=time.time())
    assert await asyncio.wait_for(run, 5) == "cancelled"
    results = store.results("spring")
    assert [r.final_outcome for r in results].count("cancelled") == 6
    assert len(placer.placed) == 2


async def test_do_not_call_list_is_read_at_dial_time(tmp_path: Path) -> None:
    dnc = tmp_path / "dnc.txt"
    dnc.write_text("")
    store, _ = make(tmp_path, pacing=Pacing(1, 20.0, 1), dnc_file=str(dnc))
    placer = FakePlacer(call_s=0.2)
    run = asyncio.ensure_future(CampaignDialer(store, "spring", placer, poll_s=0.02).run())
    await placer.wait_placed(1)
    dnc.write_text("sip:c3@127.0.0.1:5070\n")  # opts out while c0 is being called
    assert await asyncio.wait_for(run, 20) == "finished"
    assert "sip:c3@127.0.0.1:5070" not in [uri for _, uri, _ in placer.placed]
    [c3] = [r for r in store.results("spring") if r.number == "sip:c3@127.0.0.1:5070"]
    assert (c3.final_outcome, c3.attempts) == ("dnc", 0)


async def test_webhook_per_finished_contact(tmp_path: Path) -> None:
    store, _ = make(tmp_path, webhook_url="http://127.0.0.1:9/hook")
    bodies: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(500 if len(bodies) == 1 else 204)  # the first one fails

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        assert await CampaignDialer(store, "spring", FakePlacer(), poll_s=0.02, http=http).run() == "finished"
        assert len(bodies) == 8
        assert store.unnotified("spring") and len(store.unnotified("spring")) == 1
        # the failed one is sent again when the campaign is next started
        await CampaignDialer(store, "spring", FakePlacer(), poll_s=0.02, http=http).run()
    assert len(bodies) == 8  # a finished campaign returns at once: nothing re-sent, nothing dialed
    first = bodies[0]
    assert first["campaign"] == "spring" and first["final_outcome"] in ("answered", "refused")


def test_store_reopens_at_its_schema_version(tmp_path: Path) -> None:
    store, settings = make(tmp_path)
    store.close()
    again = CampaignStore(tmp_path / "campaigns.db")
    assert again.settings("spring") == settings
    assert again.contact_states("spring")[0].contact_id == "sip:c0@127.0.0.1:5070"


async def test_an_old_interrupted_attempt_counts_its_window_from_when_it_was_placed(tmp_path: Path) -> None:
    """A dialer that crashed two days ago: its attempt's window is long gone, so the contact is due
    now (it was not dialed in *this* window), still counted as an attempt."""
    store, _ = make(tmp_path, retry=RetryPolicy(max_attempts=3, busy_delay_s=0.1, no_answer_delay_s=0.1,
                                                machine_delay_s=0.1, failed_delay_s=0.1))
    store.begin_attempt("spring", "sip:c0@127.0.0.1:5070", 1, "sip:c0@127.0.0.1:5070",
                        now=time.time() - 2 * 86400)
    placer = FakePlacer()
    assert await CampaignDialer(store, "spring", placer, poll_s=0.02).run() == "finished"
    assert [uri for _, uri, _ in placer.placed].count("sip:c0@127.0.0.1:5070") == 1
    [c0] = [r for r in store.results("spring") if r.number == "sip:c0@127.0.0.1:5070"]
    assert (c0.final_outcome, c0.attempts) == ("answered", 2)
