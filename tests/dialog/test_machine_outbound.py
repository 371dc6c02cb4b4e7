"""Outbound calls on the pure machine: the answering-machine branches, ``wait_for_beep`` and
``record_audio``, scripted on a fake clock (events in, commands out, no sleeps)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

REMINDER = load_dialplan(Path(__file__).parents[2] / "dialplans" / "reminder.yaml")
CALL_VARS = {"name": "Alex", "appointment": "on Monday at 9 a.m.", "clinic": "Green Street Dental"}
ASK = "play:Hello Alex, this is Green Street Dental calling to remind you"
MESSAGE = "play!:Hello Alex, this is Green Street Dental with a reminder of your appointment on Monday"
MACHINE = ("machine", "greeting 4.1 s")
TO_VOICEMAIL = [
    "record:answer_type=machine", "record:amd_reason=greeting 4.1 s", "stop:leave",
    "record:confirmation=voicemail", "mute", "timer:beep_timeout+10", "timer:beep_silence+2",
]

Step = tuple[str, Any, list[str] | None]

REMINDER_CASES: list[tuple[str, list[Step], str, dict[str, str]]] = [
    ("machine mid-prompt: the message waits for the beep", [
        ("start", CALL_VARS, [ASK, "listen"]),
        ("wait", 3, []),
        ("amd", MACHINE, TO_VOICEMAIL),
        ("vad", None, ["cancel:beep_silence"]),  # the greeting goes on
        ("wait", 5, []),
        ("beep", None, ["cancel:beep_timeout", MESSAGE]),
        ("beep", None, []),  # a second tone is not a second start
        ("done", None, ["hangup:dialplan hangup"]),
    ], "beep", {"confirmation": "voicemail"}),
    ("no beep: the message starts after 2 s of silence following the greeting", [
        ("start", CALL_VARS, None),
        ("amd", MACHINE, TO_VOICEMAIL),
        ("vad", None, ["cancel:beep_silence"]),
        ("wait", 4, []),
        ("vad_end", None, ["timer:beep_silence+2"]),
        ("wait", 1.5, []),
        ("vad", None, ["cancel:beep_silence"]),  # a pause inside the greeting is not its end
        ("vad_end", None, ["timer:beep_silence+2"]),
        ("wait", 2, ["cancel:beep_timeout", MESSAGE]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "silence", {"confirmation": "voicemail"}),
    ("a greeting that never goes quiet: the message starts at the timeout", [
        ("start", CALL_VARS, None),
        ("amd", MACHINE, TO_VOICEMAIL),
        ("vad", None, ["cancel:beep_silence"]),
        ("partial", "please leave a message", []),
        ("wait", 9.9, []),
        ("wait", 0.1, [MESSAGE]),
    ], "timeout", {"confirmation": "voicemail"}),
    ("machine after a barge-in: speech still running, so no silence timer yet", [
        ("start", CALL_VARS, [ASK, "listen"]),
        ("vad", None, ["stop", "timer:no_input+6"]),
        ("amd", MACHINE, [
            "record:answer_type=machine", "record:amd_reason=greeting 4.1 s", "cancel:no_input",
            "record:confirmation=voicemail", "mute", "timer:beep_timeout+10",
        ]),
        # A final ends the utterance: the silence counts from now.
        ("say", "you have reached the Smiths", ["timer:beep_silence+2"]),
        ("wait", 2, ["cancel:beep_timeout", MESSAGE]),
    ], "silence", {"confirmation": "voicemail"}),
]


@pytest.mark.parametrize(("name", "steps", "beep_wait", "record"), REMINDER_CASES,
                         ids=[c[0] for c in REMINDER_CASES])
def test_reminder_leaves_a_message_after_the_greeting(
    name: str, steps: list[Step], beep_wait: str, record: dict[str, str]
) -> None:
    driver = Driver(REMINDER)
    driver.run(steps)
    machine = driver.machine
    assert machine.state_name == "voicemail"
    assert machine.variables["beep_wait"] == beep_wait
    assert machine.variables["answer_type"] == "machine"
    assert machine.variables["amd_reason"] == "greeting 4.1 s"
    assert machine.record == {"answer_type": "machine", "amd_reason": "greeting 4.1 s", **record}
    assert machine.finished == any(isinstance(c, ev.Hangup) for c in driver.log)


@pytest.mark.parametrize(("result", "reason"), [("human", "short hello then silence"), ("unknown", "")])
def test_reminder_carries_on_for_a_person_or_an_unsure_judgement(result: str, reason: str) -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start", CALL_VARS, [ASK, "listen"]),
        ("amd", (result, reason), [f"record:answer_type={result}", f"record:amd_reason={reason}"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "yes", ["cancel:no_input", "record:confirmation=confirmed", "mute",
                        "play!:Thank you, your appointment on Monday at 9 a.m. is confirmed."]),
    ])
    assert driver.machine.transitions == ["ask", "confirmed"]
    assert driver.machine.record == {"answer_type": result, "amd_reason": reason, "confirmation": "confirmed"}
    # The webhook payload carries the answer type too.
    context = driver.machine.context()
    assert context["variables"]["answer_type"] == result  # type: ignore[index]


@pytest.mark.parametrize(("answer", "state"), [("1", "confirmed"), ("yes", "confirmed"),
                                              ("reschedule", "rescheduled")])
def test_a_judgement_after_the_callee_was_understood_is_only_recorded(answer: str, state: str) -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start", CALL_VARS, None),
        ("dtmf" if answer.isdigit() else "say", answer, None),
        ("amd", MACHINE, ["record:answer_type=machine", "record:amd_reason=greeting 4.1 s"]),
    ])
    assert driver.machine.state_name == state
    assert driver.machine.understood_caller


def test_a_greeting_misheard_as_an_answer_does_not_hide_the_machine() -> None:
    # The greeting's words match nothing: a re-prompt, still nobody understood; then the verdict.
    driver = Driver(REMINDER)
    driver.run([
        ("start", CALL_VARS, None),
        ("say", "please leave a message after the tone", [
            "stop", "timer:no_input+6", "cancel:no_input",
            "play:Please say yes, no, or reschedule.", "listen",
        ]),
        ("amd", MACHINE, TO_VOICEMAIL),
    ])
    assert driver.machine.state_name == "voicemail"


INTRO = """
dialplan: intro
start: intro
on_machine: {goto: vm}
states:
  intro:
    prompt: "Hello, this is the clinic."
    goto: menu
  menu:
    prompt: "Press 1 to confirm."
    listen:
      intents:
        ok: {dtmf: "1", goto: bye}
    no_input: {goto: bye}
    no_match: {goto: bye}
  vm:
    wait_for_beep: {timeout_s: 8, silence_s: 1.5}
    prompt: "Please call the clinic."
    hangup: true
  bye:
    prompt: "Bye."
    hangup: true
"""


def test_the_machine_branch_is_taken_after_an_intro_state_has_moved_on() -> None:
    driver = Driver(load_dialplan_text(INTRO))
    driver.run([
        ("start", None, ["play:Hello, this is the clinic."]),
        ("done", None, ["play:Press 1 to confirm.", "listen"]),
        ("amd", ("machine", "greeting 5 s"), [
            "record:answer_type=machine", "record:amd_reason=greeting 5 s", "stop:leave", "mute",
            "timer:beep_timeout+8", "timer:beep_silence+1.5",
        ]),
        ("amd", ("human", "late"), []),
        ("wait", 1.5, ["cancel:beep_timeout", "play:Please call the clinic."]),
    ])
    assert driver.machine.transitions == ["intro", "menu", "vm"]
    assert driver.machine.variables["answer_type"] == "machine"


def test_a_human_without_on_human_carries_on_where_it_is() -> None:
    driver = Driver(load_dialplan_text(INTRO))
    driver.run([
        ("start", None, None),
        ("done", None, None),
        ("amd", ("unknown", "too short to tell"), [
            "record:answer_type=unknown", "record:amd_reason=too short to tell",
        ]),
    ])
    assert driver.machine.state_name == "menu"


def test_only_the_first_judgement_counts() -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start", CALL_VARS, None),
        ("amd", ("human", "short hello"), None),
        ("amd", MACHINE, []),
    ])
    assert driver.machine.state_name == "ask"
    assert driver.machine.variables["answer_type"] == "human"


def test_answer_events_before_the_call_started_are_ignored() -> None:
    driver = Driver(REMINDER)
    assert driver.machine.handle(ev.AnswerClassified(1.0, "machine", "x")) == []
    assert driver.machine.handle(ev.BeepDetected(1.0)) == []
    assert driver.machine.handle(ev.SpeechEnded(1.0)) == []


def test_a_beep_outside_a_wait_changes_nothing() -> None:
    driver = Driver(REMINDER)
    driver.run([("start", CALL_VARS, None), ("beep", None, []), ("vad_end", None, [])])
    assert "beep_wait" not in driver.machine.variables


PAY = """
dialplan: pay
start: hello
on_human: {goto: card}
on_machine: {goto: vm}
on_unknown: {goto: unsure}
states:
  hello:
    prompt: "Hello?"
    listen:
      intents:
        hi: {phrases: ["hello"], goto: card}
    no_input: {goto: card}
    no_match: {goto: card}
  card:
    record_audio: pause
    prompt: "Key your card number."
    listen:
      digits: {into: card, min_digits: 4, max_digits: 4, goto: thanks}
    no_input: {goto: card_again}
    no_match: {goto: card_again}
  card_again:
    record_audio: pause
    prompt: "Once more, please."
    listen:
      digits: {into: card, min_digits: 4, max_digits: 4, goto: thanks}
    no_input: {goto: thanks}
    no_match: {goto: thanks}
  thanks:
    record_audio: resume
    prompt: "Thank you."
    hangup: true
  unsure:
    record_audio: resume
    prompt: "Sorry?"
    barge_in: false
    hangup: true
  vm:
    wait_for_beep: true
    prompt: "Please call us."
    hangup: true
"""
PAY_PLAN = load_dialplan_text(PAY)


def test_recording_pauses_for_the_card_number_and_resumes_once() -> None:
    driver = Driver(PAY_PLAN)
    driver.run([
        ("start", None, ["play:Hello?", "listen"]),
        ("amd", ("human", "hello"), [
            "record:answer_type=human", "record:amd_reason=hello", "stop:leave", "rec:pause",
            "play:Key your card number.", "listen",
        ]),
        ("done", None, ["timer:no_input+5"]),
        # card_again pauses too, but the recording is paused already: no second command.
        ("wait", 5, ["play:Once more, please.", "listen"]),
        ("done", None, ["timer:no_input+5"]),
        ("dtmf", "1234", None),
    ])
    commands = [type(c).__name__ for c in driver.log if isinstance(c, ev.PauseRecording | ev.ResumeRecording)]
    assert commands == ["PauseRecording", "ResumeRecording"]
    assert driver.machine.state_name == "thanks"
    assert not driver.machine.recording_paused


def test_on_unknown_has_its_own_branch_and_resume_without_pause_is_silent() -> None:
    driver = Driver(PAY_PLAN)
    driver.run([
        ("start", None, None),
        ("amd", ("unknown", "no speech"), [
            "record:answer_type=unknown", "record:amd_reason=no speech", "stop:leave", "mute",
            "play!:Sorry?",
        ]),
    ])
    assert driver.machine.state_name == "unsure"


def test_wait_for_beep_true_uses_the_defaults() -> None:
    driver = Driver(PAY_PLAN)
    driver.run([
        ("start", None, None),
        ("amd", ("machine", "phrase: leave a message"), [
            "record:answer_type=machine", "record:amd_reason=phrase: leave a message", "stop:leave", "mute",
            "timer:beep_timeout+10", "timer:beep_silence+2",
        ]),
        ("dtmf", "1", []),  # keys while waiting for the beep belong to no question
        ("wait", 2, ["cancel:beep_timeout", "play:Please call us."]),
    ])
    assert driver.machine.awaiting_beep is False
    assert driver.machine.variables["beep_wait"] == "silence"


def test_awaiting_beep_tells_the_application_when_to_listen_for_the_tone() -> None:
    driver = Driver(PAY_PLAN)
    driver.run([("start", None, None), ("amd", ("machine", "x"), None)])
    assert driver.machine.awaiting_beep
    driver.run([("beep", None, None)])
    assert not driver.machine.awaiting_beep


def test_answer_classified_rejects_an_unknown_result() -> None:
    message = "AnswerClassified: result 'fax' is not one of human, machine, unknown"
    with pytest.raises(ValueError, match=message):
        ev.AnswerClassified(1.0, "fax", "")  # type: ignore[arg-type]


HELD_TO_VOICEMAIL = [
    "record:answer_type=machine", "record:amd_reason=greeting 4.1 s", "cancel:answer_wait", "stop:leave",
    "record:confirmation=voicemail", "mute", "timer:beep_timeout+10", "timer:beep_silence+2",
]


@pytest.mark.parametrize("greeting", [
    "Hi, you have reached Alex. I am not available right now.",  # "right": the built-in yes
    "The person you are calling is not available.",  # "not": the built-in no
    "Sorry I missed your call, leave a message and I will call you back.",
])
def test_with_detection_a_greeting_never_answers_the_question(greeting: str) -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start_amd", CALL_VARS, ["timer:answer_wait+8", ASK, "listen"]),
        ("say", greeting, []),  # held until the judgement
        ("amd", MACHINE, HELD_TO_VOICEMAIL),
    ])
    assert driver.machine.record == {
        "answer_type": "machine", "amd_reason": "greeting 4.1 s", "confirmation": "voicemail"
    }


def test_with_detection_a_person_answering_early_is_heard_once_judged() -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start_amd", CALL_VARS, None),
        ("say", "yes", []),
        ("amd", ("human", "short hello"), [
            "record:answer_type=human", "record:amd_reason=short hello", "cancel:answer_wait",
            "stop", "timer:no_input+6",  # the held "yes" barges in now, then acts
            "cancel:no_input", "record:confirmation=confirmed", "mute", "play!:Thank you, your appointment",
        ]),
    ])
    assert driver.machine.state_name == "confirmed"


def test_with_detection_keys_are_not_held() -> None:
    driver = Driver(REMINDER)
    driver.run([("start_amd", CALL_VARS, None), ("dtmf", "2", None)])
    assert driver.machine.state_name == "cancelled"
    assert driver.machine.understood_caller


def test_without_a_judgement_held_speech_is_heard_after_the_answer_wait() -> None:
    driver = Driver(REMINDER)
    driver.run([
        ("start_amd", CALL_VARS, None),
        ("say", "reschedule please", []),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["timer:no_input+6"]),  # not silence: the caller spoke, held
        ("wait", 2, ["cancel:no_input", "record:confirmation=reschedule", "mute",
                     "play!:Thank you, someone from Green Street Dental will call you"]),
    ])
    assert driver.machine.state_name == "rescheduled"
    assert "answer_type" not in driver.machine.variables


def test_held_speech_belongs_to_the_state_it_was_said_in() -> None:
    driver = Driver(load_dialplan_text(INTRO))
    driver.run([
        ("start_amd", None, ["timer:answer_wait+8", "play:Hello, this is the clinic."]),
        ("say", "hello who is this", []),  # not listening in intro: ignored anyway
        ("done", None, ["play:Press 1 to confirm.", "listen"]),
        ("amd", ("human", "hello then silence"), [
            "record:answer_type=human", "record:amd_reason=hello then silence", "cancel:answer_wait",
        ]),
    ])
    assert driver.machine.state_name == "menu"


def test_plans_without_answer_handlers_do_not_hold() -> None:
    driver = Driver(replace(PAY_PLAN, on_answer={}))
    driver.run([("start_amd", None, ["play:Hello?", "listen"]), ("say", "hello", None)])
    assert driver.machine.state_name == "card"
