"""The declarative low-confidence path: "Did you say ...?" with demo.yaml, on the fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")

WELCOME = "play:Welcome to the voice bot demo."
ASK = "play:Please say or key in your account number, then press pound."
XFER = "play!:Transferring you to an operator."
BYE = "play!:Thank you for calling. Goodbye."
DID_OPERATOR = "play:Sorry, did you say operator? Please say yes or no."
DID_BALANCE = "play:Sorry, did you say balance? Please say yes or no."
NO_MATCH = "play:Sorry, I did not get that. Say balance, operator, or goodbye."
MENU: list[tuple[str, Any, list[str] | None]] = [
    ("start", None, [WELCOME, "listen"]), ("done", None, ["timer:no_input+6"]),
]

CASES: list[tuple[str, list[tuple[str, Any, list[str] | None]], str]] = [
    ("yes acts on the guess", [
        *MENU,
        ("say", "operate her please", ["cancel:no_input", DID_OPERATOR, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "Yes.", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
    ], "transfer_to_operator"),
    ("saying the thing again counts as yes", [
        *MENU,
        ("say", "Barrens", ["cancel:no_input", DID_BALANCE, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "balance", ["cancel:no_input", ASK, "listen"]),
    ], "ask_account"),
    ("no is a no-match of the state: its re-prompt, and the menu's expectation again", [
        *MENU,
        ("say", "operate her please", ["cancel:no_input", DID_OPERATOR, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "No.", ["cancel:no_input", NO_MATCH, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "balance", ["cancel:no_input", ASK, "listen"]),
    ], "ask_account"),
    ("no, and what the caller wants instead", [
        *MENU,
        ("say", "Barrens", ["cancel:no_input", DID_BALANCE, "listen"]),
        ("say", "no, an operator", ["stop", "timer:no_input+6", "cancel:no_input",
                                    "record:outcome=transferred", "mute", XFER]),
    ], "transfer_to_operator"),
    ("barge-in: yes while the question plays", [
        *MENU,
        ("say", "operate her please", ["cancel:no_input", DID_OPERATOR, "listen"]),
        ("say", "yeah", ["stop", "timer:no_input+6", "cancel:no_input", "record:outcome=transferred", "mute",
                         XFER]),
    ], "transfer_to_operator"),
    ("silence re-asks once, then is the state's no-input", [
        *MENU,
        ("say", "operate her please", None),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, [DID_OPERATOR]),  # the same question: the expectation has not changed
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["play:Sorry, I did not hear anything.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["record:outcome=goodbye", "mute", BYE]),
    ], "goodbye"),
    ("an unclear answer re-asks once, then is the state's no-match", [
        *MENU,
        ("say", "operate her please", None),
        ("done", None, None),
        ("say", "pizza", ["cancel:no_input", DID_OPERATOR]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "hmm", ["cancel:no_input", NO_MATCH, "listen"]),
    ], "menu"),
    ("yes and no at once is no answer: asked again", [
        *MENU,
        ("say", "operate her please", None),
        ("done", None, None),
        ("say", "yes, no, wait", ["cancel:no_input", DID_OPERATOR]),
    ], "menu"),
    ("not sure is not yes", [
        *MENU,
        ("say", "operate her please", None),
        ("done", None, None),
        ("say", "I'm not sure", ["cancel:no_input", NO_MATCH, "listen"]),
    ], "menu"),
    ("a key during the question answers the menu", [
        *MENU,
        ("say", "operate her please", None),
        ("done", None, None),
        ("dtmf", "1", ["listen", "cancel:no_input", ASK, "listen"]),
    ], "ask_account"),
    ("a guess of a global while an account is asked for", [
        *MENU,
        ("dtmf", "1", None),
        ("done", None, ["timer:no_input+8"]),
        ("say", "operate her", ["cancel:no_input", DID_OPERATOR, "listen"]),
        ("done", None, ["timer:no_input+8"]),
        ("say", "one two three four", ["cancel:no_input", "mute", "play!:One moment please.",
                                       "webhook:builtin:demo-balance"]),
    ], "lookup"),
    ("goodbye needs more certainty: a gapped phrase is asked about", [
        *MENU,
        ("say", "that's really just all", [
            "cancel:no_input", "play:Sorry, did you say goodbye, to end the call? Please say yes or no.",
            "listen",
        ]),
        ("say", "yes", ["stop", "timer:no_input+6", "cancel:no_input", "record:outcome=goodbye", "mute",
                        BYE]),
    ], "goodbye"),
]


@pytest.mark.parametrize(("name", "steps", "final_state"), CASES, ids=[c[0] for c in CASES])
def test_confirm(name: str, steps: list[tuple[str, Any, list[str] | None]], final_state: str) -> None:
    driver = Driver(DEMO)
    driver.run(steps)
    assert driver.machine.state_name == final_state


def test_the_question_expects_yes_or_no_and_names_the_guess() -> None:
    driver = Driver(DEMO)
    driver.run([*MENU, ("say", "operate her please", None)])
    expectation = driver.machine.expectation
    assert expectation is not None
    assert expectation.mode == "yesno"
    assert expectation.prompt == "Sorry, did you say operator? Please say yes or no."
    assert "yes" in expectation.phrases and "no" in expectation.phrases
    assert driver.machine.variables["guess"] == "operator"
    driver.run([("say", "no", None)])
    assert driver.machine.expectation is not None and driver.machine.expectation.mode == "menu"
    assert "guess" not in driver.machine.variables


def test_an_alternative_of_the_recognizer_is_acted_on_when_sure() -> None:
    driver = Driver(DEMO)
    driver.run(MENU)
    driver.feed(ev.FinalTranscript(driver.now_s, "4th Heaven I'm 2", alternatives=("an operator",)))
    assert driver.machine.state_name == "transfer_to_operator"


def test_an_unsure_alternative_is_asked_about() -> None:
    driver = Driver(DEMO)
    driver.run(MENU)
    driver.feed(ev.FinalTranscript(driver.now_s, "mumble", confidence=0.4, alternatives=("balance",),
                                   alternative_confidences=(0.6,)))
    assert driver.machine.state_name == "menu"
    assert driver.machine.variables["guess"] == "balance"


PLAN = """
dialplan: c
start: menu
confirm: {act_above: 0.95}
globals:
  operator: {phrases: ["operator"], confirm: false, goto: done}
states:
  menu:
    prompt: "Say balance."
    confirm:
      prompt: "You want {guess}, right?"
      retries: 0
    listen:
      intents:
        balance: {phrases: ["balance"], confirm: {say: "your balance"}, goto: done}
        pay: {phrases: ["pay my bill"], confirm: {act_above: 0.5}, goto: done}
    no_input: {retries: 0, goto: done}
    no_match: {retries: 3, goto: done}
  done:
    hangup: true
"""

QUIET = """
dialplan: q
start: quiet
states:
  quiet:
    prompt: "Say balance."
    confirm: false
    listen:
      intents:
        balance: {phrases: ["balance"], goto: done}
    no_input: {retries: 0, goto: done}
    no_match: {retries: 3, goto: done}
  done:
    hangup: true
"""


def test_settings_per_dialplan_state_and_intent() -> None:
    plan = load_dialplan_text(PLAN)
    driver = Driver(plan)
    driver.run([("start", None, None), ("done", None, None)])
    # State prompt, intent's say; retries 0: one unclear answer ends the question.
    driver.run([("say", "Barrens", ["cancel:no_input", "play:You want your balance, right?", "listen"])])
    driver.run([("say", "pizza", ["stop", "timer:no_input+5", "cancel:no_input", "play:Say balance.",
                                  "listen"])])
    # Intent confirm: false -> a guess of the operator is a no-match, never acted on nor asked.
    driver.run([("say", "opperator", ["stop", "timer:no_input+5", "cancel:no_input", "play:Say balance."])])
    assert driver.machine.state_name == "menu"
    # The intent's own act_above (0.5) acts on a two-word gap; the dialplan's 0.95 would ask.
    driver.run([("say", "pay all of my bill", None)])
    assert driver.machine.state_name == "done"


def test_confirm_false_on_a_state_turns_guesses_into_no_matches() -> None:
    driver = Driver(load_dialplan_text(QUIET))
    driver.run([("start", None, None), ("done", None, None)])
    driver.run([("say", "Barrens", ["cancel:no_input", "play:Say balance."])])
    assert driver.machine.state_name == "quiet"
    assert driver.machine.last_understanding is not None
    assert driver.machine.last_understanding.decision == "reject"
