"""The runner on an outbound call with the fake pipeline: the detector's judgement, the beep and
the recording pause reach the machine and come back as CallControl calls, on a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.dialog.fakes import FakeCall, FakeClock, TextRenderer, until
from voicebot.dialog.loader import load_dialplan, load_dialplan_text
from voicebot.dialog.runner import DialogRunner

pytestmark = pytest.mark.adapter

REMINDER = load_dialplan(Path(__file__).parents[2] / "dialplans" / "reminder.yaml")
VARS = {"name": "Alex", "appointment": "on Monday", "clinic": "the clinic"}


def make(plan: object) -> tuple[DialogRunner, FakeCall, FakeClock]:
    call, clock = FakeCall(), FakeClock()
    runner = DialogRunner(plan, call, TextRenderer(), clock=clock)  # type: ignore[arg-type]
    call.runner = runner
    return runner, call, clock


async def test_a_machine_gets_its_message_after_the_beep_not_over_the_greeting() -> None:
    runner, call, clock = make(REMINDER)
    task = asyncio.create_task(runner.run(call_id="c1", variables=VARS))
    await until(lambda: len(call.queue) == 1)
    clock.advance(3.0)
    runner.answer_classified("machine", "greeting longer than 3 s")
    await until(lambda: runner.machine.awaiting_beep)
    runner.speech_started()  # the greeting goes on
    # Only the 10 s timeout is left: speech cancelled the 2 s silence timer.
    await until(lambda: clock.deadlines() == [clock.now_s() + 10.0])
    assert call.queue == []  # the reminder was stopped, nothing plays over the greeting
    assert call.log[2:] == [
        "record:answer_type=machine", "record:amd_reason=greeting longer than 3 s", "stop",
        "record:confirmation=voicemail", "mute",
    ]
    assert runner.barge_in_latencies_ms == []  # leaving the state is not a barge-in
    clock.advance(4.0)  # the greeting goes on past its silence_s: still waiting
    await asyncio.sleep(0.01)
    assert call.queue == []
    runner.beep_detected()
    await until(lambda: len(call.queue) == 1)
    assert call.queue[0][1].startswith("Hello Alex, this is the clinic with a reminder")
    call.finish_prompts()
    summary = await asyncio.wait_for(task, 5)
    assert summary.states == ["ask", "voicemail"]
    assert summary.record == {
        "answer_type": "machine", "amd_reason": "greeting longer than 3 s", "confirmation": "voicemail"
    }
    assert runner.machine.variables["beep_wait"] == "beep"


async def test_silence_after_the_greeting_starts_the_message_on_the_injected_clock() -> None:
    runner, call, clock = make(REMINDER)
    task = asyncio.create_task(runner.run(variables=VARS))
    await until(lambda: len(call.queue) == 1)
    runner.speech_started()
    runner.answer_classified("machine", "phrase: leave a message")
    await until(lambda: runner.machine.awaiting_beep)
    clock.advance(2.5)
    runner.speech_ended()
    await until(lambda: clock.now_s() + 2.0 in clock.deadlines())
    clock.advance(1.9)
    await asyncio.sleep(0.01)
    assert call.queue == []
    clock.advance(0.2)
    await until(lambda: len(call.queue) == 1)
    call.finish_prompts()
    await asyncio.wait_for(task, 5)
    assert runner.machine.variables["beep_wait"] == "silence"


PAY = """
dialplan: pay
start: card
states:
  card:
    record_audio: pause
    prompt: "Key your card number."
    listen:
      digits: {into: card, min_digits: 4, max_digits: 4, goto: thanks}
    no_input: {goto: thanks}
    no_match: {goto: thanks}
  thanks:
    record_audio: resume
    prompt: "Thank you."
    hangup: true
"""


async def test_record_audio_pauses_and_resumes_through_call_control() -> None:
    runner, call, _clock = make(load_dialplan_text(PAY))
    task = asyncio.create_task(runner.run())
    await until(lambda: len(call.queue) == 1)
    assert call.log[0] == "recording:paused"  # before the prompt that asks for the number
    for key in "4242":
        runner.dtmf(key)
    await until(lambda: "recording:resumed" in call.log)
    call.finish_prompts()
    await asyncio.wait_for(task, 5)
    paused, resumed = call.log.index("recording:paused"), call.log.index("recording:resumed")
    assert paused < resumed < call.log.index("play:Thank you.")
    assert call.log.count("recording:paused") == call.log.count("recording:resumed") == 1


async def test_with_answer_detection_the_greeting_is_held_and_dropped_for_a_machine() -> None:
    runner, call, clock = make(REMINDER)
    task = asyncio.create_task(runner.run(variables=VARS, answer_detection=True))
    await until(lambda: len(call.queue) == 1)
    runner.final("The person you are calling is not available.")  # would cancel the appointment
    clock.advance(2.0)
    runner.answer_classified("machine", "phrase: not available")
    await until(lambda: runner.machine.awaiting_beep)
    runner.beep_detected()
    await until(lambda: len(call.queue) == 1)
    call.finish_prompts()
    summary = await asyncio.wait_for(task, 5)
    assert summary.states == ["ask", "voicemail"]
    assert summary.record["confirmation"] == "voicemail"
    assert clock.deadlines() == []  # the answer wait and the beep timers were all cancelled
