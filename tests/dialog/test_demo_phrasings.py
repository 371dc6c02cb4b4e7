"""How callers put the demo's menu choices, mostly not verbatim in demo.yaml, through the machine.

Each case is a whole turn on the fake clock: the menu is heard, the caller says it, and the state
the machine enters is checked, so matching, thresholds, confirm and the dialplan work together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")
TARGET = {"operator": "transfer_to_operator", "balance": "ask_account", "goodbye": "goodbye"}

SURE = {
    "operator": [
        "I'd like to speak to a human being", "can I get a representative", "get me an agent please",
        "connect me to a real person", "I want to speak to somebody", "let me talk to someone please",
        "put me through to an operator", "can I talk to a live person", "I need a human",
        "transfer me to an agent", "Operator. Operator.", "agents",
        # Held-out set 1 of the intent bench, heard right and missed by the lists (issue 12).
        "Put me through to someone.", "Is there somebody I can talk to?",
    ],
    "balance": [
        "I'd like to check my balance", "what's my balance", "how much money do I have", "check balance",
        "my account balance please", "what is my current balance", "I want to know my balance",
        "how much is in my account", "balances",
    ],
    "goodbye": [
        "that's all thanks", "nothing else thank you", "bye for now", "goodbye then", "I want to hang up",
        "no that's all", "okay bye", "I'm done, goodbye", "Good-bye!",
        "I'm finished.", "Please end the call.",
    ],
}
GUESSED = {
    "operator": ["operate her please", "opperator", "the operate her"],
    "balance": ["Barrens", "Ballon.", "check my Barrens"],
    "goodbye": ["Good boy.", "that's um really all",
                # "bye" written as its homophone (the intent bench's held-out sets, eighth round).
                "I have to go by.", "By then.", "Okay, by.", "I'm going to buy."],
}


def _menu() -> Driver:
    driver = Driver(DEMO)
    driver.run([("start", None, None), ("done", None, None)])
    return driver


@pytest.mark.parametrize(("intent", "said"), [(i, s) for i, says in SURE.items() for s in says])
def test_sure_phrasings_act_at_once(intent: str, said: str) -> None:
    driver = _menu()
    driver.act("say", said)
    assert driver.machine.state_name == TARGET[intent]


@pytest.mark.parametrize("said", [
    "I'm not finished yet", "don't end the call", "nobody", "I'm not going to hang up.",
    "I'm not going to buy.",
])
def test_negated_or_other_words_are_no_goodbye_or_operator(said: str) -> None:
    driver = _menu()
    driver.act("say", said)
    assert driver.machine.state_name == "menu"
    assert driver.machine.expectation is not None and driver.machine.expectation.mode == "menu"  # not asked


@pytest.mark.parametrize(("intent", "said"), [(i, s) for i, says in GUESSED.items() for s in says])
def test_guesses_are_confirmed_first(intent: str, said: str) -> None:
    driver = _menu()
    driver.act("say", said)
    assert driver.machine.state_name == "menu"
    assert driver.machine.expectation is not None and driver.machine.expectation.mode == "yesno"
    driver.act("done")
    driver.act("say", "yes please")
    assert driver.machine.state_name == TARGET[intent]


@pytest.mark.parametrize(("intent", "said"), [(i, s) for i, says in GUESSED.items() for s in says])
def test_a_guess_denied_is_never_acted_on(intent: str, said: str) -> None:
    driver = _menu()
    driver.act("say", said)
    driver.act("done")
    driver.act("say", "no")
    assert driver.machine.state_name == "menu"
    assert driver.machine.transitions == ["menu"]


@pytest.mark.parametrize(("top", "alternatives", "state"), [
    ("4th Heaven I'm 2", ("an operator please",), "transfer_to_operator"),
    ("My account, ma'er, l'en, please.", ("my account balance please",), "ask_account"),
    ("No matter. No matter.", ("good bye",), "goodbye"),
])
def test_the_recognizers_alternatives_rescue_a_misheard_top_result(
    top: str, alternatives: tuple[str, ...], state: str
) -> None:
    driver = _menu()
    driver.feed(ev.FinalTranscript(driver.now_s, top, alternatives=alternatives))
    assert driver.machine.state_name == state


@pytest.mark.parametrize(("said", "account"), [
    ("four seven nine two", "4792"), ("forty seven ninety two", "4792"), ("3-1-0-0", "3100"),
    ("4,7,9,2", "4792"), ("oh four double seven", "0477"),
    ("four five six seven, no, four five six eight", "4568"),
    ("1 2 3 4 sorry 1 2 3 5", "1235"), ("my account number is double two triple three", "22333"),
])
def test_spoken_account_numbers(said: str, account: str) -> None:
    driver = _menu()
    driver.run([("dtmf", "1", None), ("done", None, None), ("say", said, None)])
    assert driver.machine.state_name == "lookup"
    assert driver.machine.variables["account"] == account


@pytest.mark.parametrize(("said", "account"), [
    ("3-1-0-0 I made.", "3100"),                  # words after the digits: a guess
    (("4412", "Double 4-1-9."), "4412"),          # two readings of one final
])
def test_an_unsure_account_number_is_read_back_first(said: str | tuple[str, ...], account: str) -> None:
    driver = _menu()
    driver.run([("dtmf", "1", None), ("done", None, None), ("say", said, None)])
    assert driver.machine.state_name == "ask_account"
    assert driver.machine.variables["guess"] == " ".join(account)
    driver.run([("done", None, None), ("say", "yes", None)])
    assert driver.machine.state_name == "lookup"
    assert driver.machine.variables["account"] == account


@pytest.mark.parametrize("said", [
    "four five six", "one two three four five six seven eight nine", "1 2 3 4, no",
])
def test_account_numbers_outside_4_to_8_digits_are_asked_again(said: str) -> None:
    driver = _menu()
    driver.run([("dtmf", "1", None), ("done", None, None), ("say", said, None)])
    assert driver.machine.state_name == "ask_account"
    assert "account" not in driver.machine.variables or driver.machine.variables["account"] == ""


def test_keyed_and_spoken_digits_make_one_number() -> None:
    driver = _menu()
    driver.run([("dtmf", "1", None), ("done", None, None), ("dtmf", "12", None), ("say", "three four", None)])
    assert driver.machine.state_name == "lookup"
    assert driver.machine.variables["account"] == "1234"
