"""Spoken digits the recognizer writes in other forms than ASCII 0-9. ``str.isdigit`` takes '²'
(superscript two), which ``int()`` refuses: a transcript "4²" in a number state raised ValueError
out of the dialog machine. '١' (Arabic-Indic one) and '𝟙' are decimal digits: read as 1."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dialog.script import Driver
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan_text

pytestmark = pytest.mark.unit

PLAN = load_dialplan_text("""
dialplan: unicode-digits
start: account
states:
  account:
    prompt: "Your account number?"
    listen:
      digits: {into: account, min_digits: 1, max_digits: 8, goto: age}
    no_input: {retries: 0, goto: age}
    no_match: {retries: 0, goto: age}
  age:
    prompt: "Your age?"
    listen:
      number: {into: age, min_digits: 1, max_digits: 3, goto: done}
    no_input: {retries: 0, goto: done}
    no_match: {retries: 0, goto: done}
  done:
    hangup: true
""")


def started(plan: Dialplan = PLAN) -> Driver:
    driver = Driver(plan)
    driver.run([("start", None, None), ("done", None, None)])
    assert driver.machine.state_name == "account"
    return driver


@pytest.mark.parametrize(("said", "account"), [
    ("4 5 1 2", "4512"), ("١٢٣٤", "1234"), ("𝟙𝟚", "12"), ("٤ five ٦", "456"),
])
def test_decimal_digits_of_any_script_are_captured_in_ascii(said: str, account: str) -> None:
    driver = started()
    driver.act("say", said)
    assert driver.machine.variables["account"] == account
    assert driver.machine.state_name == "age"


@pytest.mark.parametrize("said", ["4²", "²", "four ²", "1 2 ³", "¹²³"])
def test_superscripts_are_no_answer_not_a_crash(said: str) -> None:
    driver = started()
    driver.act("say", said)  # the account: no match, on to the age
    assert "account" not in driver.machine.variables
    driver.run([("done", None, None)])
    driver.act("say", said)  # the age: int() would have raised here
    assert "age" not in driver.machine.variables
    assert driver.machine.state_name == "done"


WORDS = st.sampled_from(["one", "two", "four", "double", "no", "oh", "4", "12", "²", "³", "¹", "١",
                         "٤٥", "𝟙", "½", "Ⅻ", "①", "operator", ",", "-"])


@settings(max_examples=200, deadline=None)
@given(st.lists(WORDS, min_size=1, max_size=6), st.lists(WORDS, min_size=1, max_size=6))
def test_any_spoken_answer_captures_ascii_digits_or_nothing(first: list[str], second: list[str]) -> None:
    driver = started()
    driver.act("say", " ".join(first))
    driver.run([("done", None, None)])
    if driver.machine.state_name == "age":
        driver.act("say", " ".join(second))
    for name in ("account", "age"):
        value = driver.machine.variables.get(name)
        assert value is None or (value.isascii() and value.isdigit()), (name, value)
