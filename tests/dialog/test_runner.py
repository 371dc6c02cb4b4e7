"""The async runner with a fake pipeline: whole dialogs, timers on a fake clock, barge-in, webhooks."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.dialog.fakes import FakeCall, FakeClock, TextRenderer, until
from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.loader import load_dialplan, load_dialplan_text
from voicebot.dialog.runner import CallSummary, DialogRunner, LoopClock
from voicebot.errors import VoicebotError

pytestmark = pytest.mark.adapter

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")


def make(plan: Any = DEMO, clock: Any = None) -> tuple[DialogRunner, FakeCall, FakeClock | Any]:
    call = FakeCall()
    clock = clock if clock is not None else FakeClock()
    runner = DialogRunner(plan, call, TextRenderer(), clock=clock)
    call.runner = runner
    return runner, call, clock


def plays(call: FakeCall) -> list[str]:
    return [entry for entry in call.log if entry.startswith("play:")]


async def test_balance_by_dtmf_through_the_builtin_webhook_then_goodbye() -> None:
    runner, call, _clock = make()
    task = asyncio.create_task(runner.run(call_id="c1", caller="+1555"))
    await until(lambda: len(call.queue) == 1)
    assert call.log == ["listen", "play:" + call.queue[0][1]]
    assert call.queue[0][1].startswith("Welcome to the voice bot demo.")
    call.finish_prompts()
    runner.dtmf("1")
    await until(lambda: len(call.queue) == 1)
    for key in "1234#":
        runner.dtmf(key)
    await until(lambda: any(p.startswith("play:The balance of account 1 2 3 4 is ") for p in plays(call)))
    call.finish_prompts()
    await until(lambda: runner.machine.listening and not runner.machine.prompt_playing)
    runner.dtmf("#")
    await until(lambda: call.queue and call.queue[-1][1] == "Thank you for calling. Goodbye.")
    call.finish_prompts()
    summary: CallSummary = await asyncio.wait_for(task, 5)
    assert summary.states == ["menu", "ask_account", "lookup", "read_balance", "goodbye"]
    assert summary.record == {"balance_account": "1234", "outcome": "goodbye"}
    assert summary.end_reason == "dialplan hangup"
    assert call.log[-1] == "hangup:dialplan hangup"
    assert "stop" in call.log  # the first account key barged in on the "Please say..." prompt


async def test_no_input_timers_run_on_the_injected_clock() -> None:
    runner, call, clock = make()
    task = asyncio.create_task(runner.run())
    await until(lambda: len(call.queue) == 1)
    call.finish_prompts()
    await until(lambda: runner.machine._timers != {})
    clock.advance(5.9)
    await asyncio.sleep(0.01)
    assert len(plays(call)) == 1  # not yet
    clock.advance(0.2)
    await until(lambda: len(plays(call)) == 2)
    assert plays(call)[1] == "play:Sorry, I did not hear anything. Say balance, operator, or goodbye."
    call.finish_prompts()
    await until(lambda: runner.machine._timers != {})
    clock.advance(6.1)
    await until(lambda: call.queue and call.queue[-1][1] == "Thank you for calling. Goodbye.")
    call.finish_prompts()
    summary = await asyncio.wait_for(task, 5)
    assert summary.states == ["menu", "goodbye"]


async def test_barge_in_stops_the_prompt_quickly_and_reports_latency() -> None:
    runner, call, _ = make(clock=LoopClock())
    task = asyncio.create_task(runner.run())
    await until(lambda: len(call.queue) == 1)
    runner.partial("bal")
    await until(lambda: "stop" in call.log)
    assert call.queue == []
    assert len(runner.barge_in_latencies_ms) == 1
    # The budget for the whole pipeline is 300 ms; the runner's share must be a small part of it
    # even on a busy shared machine.
    assert 0 <= runner.barge_in_latencies_ms[0] < 300
    runner.final("balance")
    await until(lambda: runner.machine.state_name == "ask_account")
    runner.call_ended()
    summary = await asyncio.wait_for(task, 5)
    assert summary.end_reason == "hangup"
    assert len(summary.barge_in_latencies_ms) == 1


async def test_speech_started_barges_in_before_any_text() -> None:
    runner, call, _ = make()
    task = asyncio.create_task(runner.run())
    await until(lambda: len(call.queue) == 1)
    runner.speech_started()
    await until(lambda: "stop" in call.log)
    runner.call_ended()
    await asyncio.wait_for(task, 5)


async def test_caller_hangup_ends_the_run_and_cancels_timers() -> None:
    runner, call, clock = make()
    task = asyncio.create_task(runner.run())
    await until(lambda: len(call.queue) == 1)
    call.finish_prompts()
    await until(lambda: runner.machine._timers != {})
    runner.call_ended("caller hung up")
    summary = await asyncio.wait_for(task, 5)
    assert summary.end_reason == "caller hung up"
    assert not any(entry.startswith("hangup") for entry in call.log)
    clock.advance(60)  # nothing left to fire
    await asyncio.sleep(0.01)
    assert len(plays(call)) == 1


async def test_refused_transfer_goes_to_the_dialplans_error_state() -> None:
    runner, call, _ = make()
    call.transfer_error = "REFER answered 403 Forbidden"
    task = asyncio.create_task(runner.run(variables={"transfer_target": "sip:desk@127.0.0.1:5099"}))
    await until(lambda: len(call.queue) == 1)
    runner.dtmf("0")
    await until(lambda: call.queue and call.queue[-1][1] == "Transferring you to an operator.")
    call.finish_prompts()
    await until(lambda: call.queue and call.queue[-1][1].startswith("Sorry, no operator is available."))
    call.finish_prompts()
    summary = await asyncio.wait_for(task, 5)
    assert "transfer:sip:desk@127.0.0.1:5099" in call.log
    assert summary.states[-1] == "transfer_failed"


class _Boom(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"error": "db down"}).encode()
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Boom)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/balance"
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_failing_http_webhook_leads_to_the_error_state(failing_server: str) -> None:
    runner, call, _ = make()
    task = asyncio.create_task(runner.run(variables={"balance_url": failing_server}))
    await until(lambda: len(call.queue) == 1)
    runner.final("balance")
    await until(lambda: runner.machine.state_name == "ask_account")
    runner.final("one two three four")
    await until(lambda: runner.machine.state_name == "lookup_failed", timeout_s=10)
    assert runner.machine.record["lookup_error"] == (
        f"webhook {failing_server} answered HTTP 503 Service Unavailable"
    )
    await until(lambda: call.queue[-1][1].startswith("Sorry, the account service is not available"))
    call.finish_prompts()  # "One moment" and the apology
    await until(lambda: runner.machine.state_name == "transfer_to_operator")
    runner.call_ended()
    await asyncio.wait_for(task, 5)


class _BrokenRenderer(TextRenderer):
    async def render(self, prompt: PlayPrompt) -> bytes:
        raise VoicebotError("espeak-ng exited with 1")


async def test_a_prompt_that_cannot_be_rendered_does_not_wedge_the_call() -> None:
    plan = load_dialplan_text('dialplan: x\nstart: a\nstates:\n  a: {prompt: "Hi", hangup: true}\n')
    call = FakeCall()
    runner = DialogRunner(plan, call, _BrokenRenderer(), clock=FakeClock())
    call.runner = runner
    summary = await asyncio.wait_for(runner.run(), 5)
    assert call.log == ["hangup:dialplan hangup"]
    assert summary.end_reason == "dialplan hangup"
