"""What each state expects (StartListening.expectation) and the FinalTranscript n-best fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.expect import MAX_DIGITS, MAX_PHRASES, Expectation, expectation_for
from voicebot.dialog.ir import Capture, Intent, Listen
from voicebot.dialog.loader import load_dialplan
from voicebot.dialog.understand import Hypothesis

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEMO = load_dialplan(ROOT / "dialplans" / "demo.yaml")
REMINDER = load_dialplan(ROOT / "dialplans" / "reminder.yaml")
GLOBALS = ("operator", "agent", "an agent", "a person", "human", "representative", "talk to someone",
           "speak to someone", "talk to somebody", "speak to somebody", "put me through", "someone",
           "somebody",
           "goodbye", "good bye", "bye", "bye bye", "hang up", "that's all", "nothing else", "end the call",
           "i'm finished")


def _listening(driver: Driver) -> list[ev.StartListening]:
    return [c for c in driver.log if isinstance(c, ev.StartListening)]


def test_the_menu_expects_its_phrases_and_the_globals_with_the_prompt_heard() -> None:
    driver = Driver(DEMO)
    driver.act("start")
    [start] = _listening(driver)
    assert start.expectation == Expectation(
        mode="menu",
        prompt=("Welcome to the voice bot demo. Say balance to hear your account balance, operator to "
                "speak with a person, or goodbye to end the call. You can also press 1, 0, or the pound "
                "key."),
        phrases=("balance", "account balance", "my balance", "check my balance", "how much", "money",
                 *GLOBALS),
    )


def test_the_account_state_expects_4_to_8_digits() -> None:
    driver = Driver(DEMO)
    driver.run([("start", None, None), ("dtmf", "1", None)])
    expectation = _listening(driver)[-1].expectation
    assert (expectation.mode, expectation.min_digits, expectation.max_digits) == ("digits", 4, 8)
    assert expectation.prompt == "Please say or key in your account number, then press pound."
    assert expectation.phrases == GLOBALS


def test_variables_are_substituted_in_the_prompt() -> None:
    driver = Driver(REMINDER)
    driver.act("start", {"name": "Ada", "appointment": "on Monday", "clinic": "Dr Who"})
    expectation = _listening(driver)[-1].expectation
    assert expectation.prompt.startswith(
        "Hello Ada, this is Dr Who calling to remind you of your appointment on Monday.")
    assert expectation.mode == "menu"  # reschedule is not a yes/no answer
    assert "i'll be there" in expectation.phrases and "yes" in expectation.phrases


def _intent(name: str, builtin: str | None = None, texts: tuple[str, ...] = ()) -> Intent:
    return Intent(name, (), frozenset(), None, "x", texts=texts, builtin=builtin)


def test_modes() -> None:
    yes, no = _intent("y", "yes", ("yes",)), _intent("n", "no", ("no",))
    assert expectation_for(Listen((yes, no), None, 5.0), (), "Ok?").mode == "yesno"
    later = _intent("other", None, ("later",))
    assert expectation_for(Listen((yes, later), None, 5.0), (), "").mode == "menu"
    text = Capture("text", "name", "x")
    assert expectation_for(Listen((), text, 5.0), (), "Your name?").mode == "free"
    asking = expectation_for(Listen((yes,), None, 5.0), (), "", confirming=True, yes_no=("yes", "no"))
    assert asking.mode == "yesno"


def test_bounds_match_the_recognition_hints() -> None:
    many = _intent("many", None, (*(f"phrase {i}" for i in range(300)), "x" * 201, "phrase 1"))
    digits = Capture("digits", "pin", "x", min_digits=40, max_digits=64)
    expectation = expectation_for(Listen((many,), digits, 5.0), (), "word " * 400)
    assert len(expectation.phrases) == MAX_PHRASES
    assert len(set(expectation.phrases)) == MAX_PHRASES
    assert all(len(p) <= 200 for p in expectation.phrases)
    assert len(expectation.prompt) <= 1000
    assert expectation.max_digits == MAX_DIGITS
    assert 1 <= expectation.min_digits <= expectation.max_digits
    field_names = [f.name for f in dataclasses.fields(Expectation)]
    assert field_names == ["mode", "prompt", "phrases", "min_digits", "max_digits"]


def test_final_transcript_n_best() -> None:
    final = ev.FinalTranscript(1.0, "4th Heaven", alternatives=("4 7 9 2", "for seven"), confidence=0.4,
                               alternative_confidences=(0.3, 0.2))
    assert final.hypotheses() == (Hypothesis("4th Heaven", 0.4), Hypothesis("4 7 9 2", 0.3),
                                  Hypothesis("for seven", 0.2))
    two = ev.FinalTranscript(1.0, "a", alternatives=("b",))
    assert two.hypotheses() == (Hypothesis("a"), Hypothesis("b"))
    assert ev.FinalTranscript(1.0, "a").hypotheses() == (Hypothesis("a"),)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alternatives": ("b",), "alternative_confidences": (0.1, 0.2)},
     "FinalTranscript: 2 alternative_confidences for 1 alternatives"),
    ({"confidence": 1.5}, r"FinalTranscript: confidence 1.5 is outside \[0, 1\]"),
    ({"alternatives": ("b",), "alternative_confidences": (-0.1,)},
     r"FinalTranscript: confidence -0.1 is outside \[0, 1\]"),
])
def test_final_transcript_rejects_inconsistent_confidences(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ev.FinalTranscript(1.0, "a", **kwargs)  # type: ignore[arg-type]


def test_a_final_with_only_empty_hypotheses_is_noise() -> None:
    driver = Driver(DEMO)
    driver.run([("start", None, None), ("done", None, None)])
    commands = driver.feed(ev.FinalTranscript(driver.now_s, "", alternatives=(" ",)))
    assert [type(c) for c in commands] == [ev.CancelTimer, ev.SetTimer]
    assert driver.machine.state_name == "menu"


def test_commands_and_events_are_frozen_values() -> None:
    assert ev.StartListening() == ev.StartListening(Expectation())
    assert ev.StartListening().expectation.mode == "free"
    final = ev.FinalTranscript(1.0, "a", alternatives=("b",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        final.text = "c"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Expectation().mode = "menu"  # type: ignore[misc]


def test_a_yes_no_state_expects_yes_or_no() -> None:
    from voicebot.dialog.loader import load_dialplan_text

    plan = load_dialplan_text("""
dialplan: yn
start: q
globals:
  operator: {phrases: ["operator"], goto: e}
states:
  q:
    prompt: "Shall we call you back, {caller}?"
    listen:
      intents:
        agree: {builtin: "yes", goto: e}
        refuse: {builtin: "no", goto: e}
    no_input: {goto: e}
    no_match: {goto: e}
  e: {hangup: true}
""")
    driver = Driver(plan)
    driver.act("start")
    expectation = _listening(driver)[-1].expectation
    assert expectation.mode == "yesno"
    assert expectation.prompt == "Shall we call you back, +15551230000?"
    assert expectation.phrases[0] == "yes" and expectation.phrases[-1] == "operator"
    assert "no" in expectation.phrases
