"""The confirm question where the state's own intents are yes/no (reminder.yaml), in free-text and
digit states, with type-ahead, and the expectations a whole conversation sends."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.expect import Expectation
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEMO = load_dialplan(ROOT / "dialplans" / "demo.yaml")
REMINDER = load_dialplan(ROOT / "dialplans" / "reminder.yaml")


def _reminder() -> Driver:
    driver = Driver(REMINDER)
    driver.run([("start", None, None), ("done", None, None)])
    return driver


def test_yes_to_did_you_say_reschedule_reschedules_and_does_not_confirm_the_appointment() -> None:
    driver = _reminder()
    driver.act("say", "let's reschedual")  # a sound-alike of "reschedule": asked about
    assert driver.machine.variables.get("guess") == "reschedule"
    driver.act("done")
    driver.act("say", "yes")  # answers the question; the state's own "yes" intent is not meant
    assert driver.machine.state_name == "rescheduled"
    assert driver.machine.record == {"confirmation": "reschedule"}


def test_no_to_did_you_say_reschedule_asks_again_and_does_not_cancel() -> None:
    driver = _reminder()
    driver.act("say", "let's reschedual")
    driver.act("done")
    driver.act("say", "no")
    assert driver.machine.state_name == "ask"
    assert driver.machine.record == {}
    driver.act("done")
    driver.act("say", "yes I'll be there")
    assert driver.machine.state_name == "confirmed"


def test_the_default_question_when_a_dialplan_sets_none() -> None:
    driver = _reminder()
    commands = [c for c, _ in driver.act("say", "let's reschedual")]
    prompts = [c.text for c in commands if isinstance(c, ev.PlayPrompt)]
    assert prompts == ["Did you say reschedule? Please say yes or no."]


TEXT_PLAN = """
dialplan: t
start: name
globals:
  operator: {phrases: ["operator"], goto: done}
states:
  name:
    prompt: "Your name?"
    listen:
      text: {into: name, goto: done}
    no_input: {retries: 0, goto: done}
  done:
    record: {name: "{name}"}
    hangup: true
variables:
  name: ""
"""


@pytest.mark.parametrize(("said", "name"), [
    ("Operetta Jones", "Operetta Jones"),   # a sound-alike of a global is a name here, not a question
    ("Ada Lovelace. Ada Lovelace.", "Ada Lovelace"),  # the recognizer's repetition, once
    ("operator", ""),                       # a sure global still wins over free text
])
def test_free_text_states_capture_guesses(said: str, name: str) -> None:
    driver = Driver(load_dialplan_text(TEXT_PLAN))
    driver.run([("start", None, None), ("say", said, None)])
    assert driver.machine.state_name == "done"
    assert driver.machine.record == {"name": name}


PIN_PLAN = """
dialplan: p
start: pin
globals:
  operator: {phrases: ["operator"], goto: done}
states:
  pin:
    prompt: "Your PIN?"
    confirm: {prompt: "Did you want {guess}?", barge_in: false}
    listen:
      number: {into: pin, min_digits: 4, max_digits: 4, goto: done}
    no_input: {retries: 0, goto: done}
    no_match: {retries: 2, goto: done}
  done:
    record: {pin: "{pin}"}
    hangup: true
variables:
  pin: ""
"""


def test_keys_typed_during_a_question_without_barge_in_answer_the_state() -> None:
    driver = Driver(load_dialplan_text(PIN_PLAN))
    driver.run([
        ("start", None, None), ("done", None, None),
        ("say", "opperator", ["cancel:no_input", "play!:Did you want operator?", "mute"]),
        ("dtmf", "0042", []),  # kept: the question has no barge-in
        ("done", None, None),
    ])
    assert driver.machine.state_name == "done"
    assert driver.machine.record == {"pin": "42"}  # a number: leading zeros dropped
    assert "guess" not in driver.machine.variables


def test_spoken_digits_and_their_alternatives_in_a_number_state() -> None:
    driver = Driver(load_dialplan_text(PIN_PLAN))
    driver.run([("start", None, None), ("done", None, None)])
    driver.feed(ev.FinalTranscript(driver.now_s, "for five", alternatives=("four five six seven",)))
    assert driver.machine.record == {"pin": "4567"}


def _expectations(driver: Driver) -> list[Expectation]:
    return [c.expectation for c in driver.log if isinstance(c, ev.StartListening)]


def test_a_whole_conversation_sends_what_each_moment_expects() -> None:
    driver = Driver(DEMO)
    driver.run([
        ("start", None, None), ("done", None, None),
        ("say", "pizza", None), ("done", None, None),            # re-prompt: new prompt text
        ("say", "operate her please", None), ("done", None, None),  # the question: yes/no
        ("say", "no", None), ("done", None, None),               # back to the menu, its re-prompt
        ("say", "balance", None), ("done", None, None),          # the account: digits
    ])
    got = [(e.mode, e.prompt.split(".")[0]) for e in _expectations(driver)]
    assert got == [
        ("menu", "Welcome to the voice bot demo"),
        ("menu", "Sorry, I did not get that"),
        ("yesno", "Sorry, did you say operator? Please say yes or no"),
        ("menu", "Sorry, I did not get that"),
        ("digits", "Please say or key in your account number, then press pound"),
    ]
    driver.run([("say", "1 2 3 4", None)])
    assert driver.machine.expectation is None  # the lookup does not listen
