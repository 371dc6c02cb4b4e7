"""Scripted conversations with dialplans/reminder.yaml (outbound appointment reminder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dialog.script import Driver
from voicebot.dialog.loader import load_dialplan

pytestmark = pytest.mark.unit

REMINDER = load_dialplan(Path(__file__).parents[2] / "dialplans" / "reminder.yaml")
CALL_VARS = {"name": "Alex", "appointment": "on Monday at 9 a.m.", "clinic": "Green Street Dental"}
ASK = (
    "play:Hello Alex, this is Green Street Dental calling to remind you of your appointment "
    "on Monday at 9 a.m."
)

Step = tuple[str, Any, list[str] | None]
OPEN: list[Step] = [("start", CALL_VARS, [ASK, "listen"]), ("done", None, ["timer:no_input+6"])]

CASES: list[tuple[str, list[Step], str, dict[str, str]]] = [
    ("yes confirms and records it", [
        *OPEN,
        ("say", "Yes, I'll be there.", [
            "cancel:no_input", "record:confirmation=confirmed", "mute",
            "play!:Thank you, your appointment on Monday at 9 a.m. is confirmed. Goodbye.",
        ]),
        ("partial", "thanks", []),  # the goodbye has no barge-in
        ("done", None, ["hangup:dialplan hangup"]),
    ], "confirmed", {"confirmation": "confirmed"}),
    ("no cancels", [
        *OPEN,
        ("say", "No.", ["cancel:no_input", "record:confirmation=cancelled", "mute",
                        "play!:Thank you, we have cancelled your appointment. Goodbye."]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "cancelled", {"confirmation": "cancelled"}),
    ("reschedule", [
        *OPEN,
        ("say", "Can we do another time?", [
            "cancel:no_input", "record:confirmation=reschedule", "mute",
            "play!:Thank you, someone from Green Street Dental will call you to find a new time. Goodbye.",
        ]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "rescheduled", {"confirmation": "reschedule"}),
    ("barge-in on the question, then DTMF 1", [
        ("start", CALL_VARS, [ASK, "listen"]),
        ("dtmf", "1", ["stop", "timer:no_input+6", "cancel:no_input", "record:confirmation=confirmed", "mute",
                       "play!:Thank you, your appointment"]),
    ], "confirmed", {"confirmation": "confirmed"}),
    ("two silences: no answer recorded", [
        *OPEN,
        ("wait", 6, [
            "play:Sorry, I did not hear you. Will you come to your appointment on Monday at 9 a.m.?",
            "listen",
        ]),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["record:confirmation=no answer", "mute", "play!:We will try again later. Goodbye."]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "no_answer", {"confirmation": "no answer"}),
    ("three unclear answers: no answer recorded", [
        *OPEN,
        ("say", "maybe", ["cancel:no_input", "play:Please say yes, no, or reschedule.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        # The same re-prompt again: the expectation is unchanged, so no new StartListening.
        ("say", "hmm, what?", ["cancel:no_input", "play:Please say yes, no, or reschedule."]),
        ("partial", "I", ["stop", "timer:no_input+6"]),
        ("say", "I don't understand", ["cancel:no_input", "record:confirmation=no answer", "mute",
                                       "play!:We will try again later."]),
    ], "no_answer", {"confirmation": "no answer"}),
    ("an unclear answer, then yes", [
        *OPEN,
        ("say", "who is this", None),
        ("done", None, None),
        ("say", "yeah sure", None),
    ], "confirmed", {"confirmation": "confirmed"}),
    ("goodbye anywhere ends the call", [
        *OPEN,
        ("say", "bye", [
            "cancel:no_input", "record:confirmation=no answer", "mute", "play!:We will try again later."
        ]),
    ], "no_answer", {"confirmation": "no answer"}),
]


@pytest.mark.parametrize(("name", "steps", "final_state", "record"), CASES, ids=[c[0] for c in CASES])
def test_reminder_conversation(
    name: str, steps: list[Step], final_state: str, record: dict[str, str]
) -> None:
    driver = Driver(REMINDER)
    driver.run(steps)
    assert driver.machine.state_name == final_state
    assert driver.machine.record == record


@pytest.mark.parametrize(("said", "key", "state"), [
    ("yes", "1", "confirmed"), ("Yeah.", "1", "confirmed"), ("Sure, see you then", "1", "confirmed"),
    ("Okay.", "1", "confirmed"), ("That's right", "1", "confirmed"),
    ("no", "2", "cancelled"), ("Nope.", "2", "cancelled"), ("I can't make it", "2", "cancelled"),
    # A yes-phrase ("i will", "i can") negated after its auxiliary is a no (it confirmed once).
    ("I will not be there.", "2", "cancelled"), ("I won't be there.", "2", "cancelled"),
    ("I can not make it", "2", "cancelled"),
    ("reschedule", "3", "rescheduled"), ("No, I need to reschedule.", "3", "rescheduled"),
    ("could we move it to another day", "3", "rescheduled"),
])
def test_answers_spoken_or_keyed_are_the_same(said: str, key: str, state: str) -> None:
    by_voice, by_key = Driver(REMINDER), Driver(REMINDER)
    by_voice.run([*OPEN, ("say", said, None)])
    by_key.run([*OPEN, ("dtmf", key, None)])
    assert by_voice.machine.state_name == by_key.machine.state_name == state
    assert by_voice.machine.record == by_key.machine.record


def test_defaults_fill_the_prompt_when_the_application_sets_nothing() -> None:
    driver = Driver(REMINDER)
    commands = driver.act("start")
    from voicebot.dialog.events import PlayPrompt

    prompt = next(c for c, _ in commands if isinstance(c, PlayPrompt))
    assert prompt.text is not None
    assert prompt.text.startswith("Hello there, this is the clinic calling to remind you of your appointment "
                                  "tomorrow at 10 a.m.")
