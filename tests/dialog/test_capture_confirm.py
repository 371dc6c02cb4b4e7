"""A digit capture that reads the number back ("I heard 4 7 9 2. Is that right?") before storing a
guess: the dialog machine on the fake clock, and the loader's checks of the setting."""

from __future__ import annotations

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.errors import DialplanError
from voicebot.dialog.loader import load_dialplan_text

pytestmark = pytest.mark.unit

PLAN = """
dialplan: readback
start: ask
states:
  ask:
    prompt: "Your account number?"
    listen:
      digits:
        into: account
        min_digits: 4
        max_digits: 8
        terminator: "#"
        confirm:
          prompt: "I heard {guess}. Is that right?"
        goto: done
      intents:
        operator: {phrases: ["operator"], goto: human}
    no_input: {retries: 1, goto: human}
    no_match: {retries: 2, prompt: "Please say it again.", goto: human}
  human:
    hangup: true
  done:
    prompt: "Thanks."
    hangup: true
"""
READ_BACK = "play:I heard 4 7 9 2. Is that right?"
START = [("start", None, None), ("done", None, None)]


def driver(plan: str = PLAN) -> Driver:
    d = Driver(load_dialplan_text(plan))
    d.run(START)
    return d


def final(d: Driver, text: str, confidence: float | None = None, *alternatives: tuple[str, float]) -> None:
    d.feed(ev.FinalTranscript(
        d.now_s, text, alternatives=tuple(t for t, _ in alternatives), confidence=confidence,
        alternative_confidences=tuple(c for _, c in alternatives),
    ))


def test_an_unsure_number_is_read_back_and_yes_stores_it() -> None:
    d = driver()
    final(d, "4792", 0.6)  # 0.6 / 0.8 = 0.75 < act_above 0.8
    assert d.machine.state_name == "ask" and "account" not in d.machine.variables
    assert d.machine.variables["guess"] == "4 7 9 2"
    expectation = d.machine.expectation
    assert expectation is not None and expectation.mode == "yesno"
    assert expectation.prompt == "I heard 4 7 9 2. Is that right?"
    final(d, "Yes.")
    assert d.machine.state_name == "done"
    assert d.machine.variables["account"] == "4792"
    assert "guess" not in d.machine.variables


def test_no_is_a_no_match_and_nothing_is_stored() -> None:
    d = driver()
    final(d, "4792", 0.6)
    commands = d.feed(ev.FinalTranscript(d.now_s, "No."))
    assert any(isinstance(c, ev.PlayPrompt) and c.text == "Please say it again." for c in commands)
    assert d.machine.state_name == "ask"
    assert "account" not in d.machine.variables and "guess" not in d.machine.variables
    final(d, "4793", 0.95)  # said again, surely: stored without a question
    assert d.machine.variables["account"] == "4793"


def test_saying_the_number_again_instead_of_yes_is_read_as_the_answer() -> None:
    d = driver()
    final(d, "4792", 0.6)
    final(d, "four seven nine three", 0.9)
    assert d.machine.state_name == "done" and d.machine.variables["account"] == "4793"


def test_a_sure_number_is_stored_at_once() -> None:
    d = driver()
    final(d, "4792", 0.9)
    assert d.machine.state_name == "done" and d.machine.variables["account"] == "4792"


def test_two_readings_of_one_final_are_read_back_even_when_sure() -> None:
    """The recognizer heard two different valid numbers: acting on either would be a guess."""
    d = driver()
    final(d, "4412", 0.95, ("Double 4-1-9.", 0.9))
    assert d.machine.state_name == "ask"
    assert d.machine.variables["guess"] == "4 4 1 2"
    final(d, "no")
    assert "account" not in d.machine.variables


def test_keyed_digits_are_never_read_back_and_join_a_spoken_guess() -> None:
    d = driver()
    for key in "4792#":
        d.feed(ev.DtmfReceived(d.now_s, key))
    assert d.machine.state_name == "done" and d.machine.variables["account"] == "4792"
    d = driver()
    for key in "47":
        d.feed(ev.DtmfReceived(d.now_s, key))
    final(d, "9 2", 0.6)
    assert d.machine.variables["guess"] == "4 7 9 2"
    final(d, "yes please")
    assert d.machine.variables["account"] == "4792"


def test_silence_asks_again_then_counts_as_the_states_no_input() -> None:
    d = driver()
    final(d, "4792", 0.6)
    d.run([("done", None, None)])  # the question played
    commands = d.act("wait", 6)
    assert any(isinstance(c, ev.PlayPrompt) and c.text == READ_BACK[5:] for c, _ in commands)
    d.run([("done", None, None), ("wait", 6, None)])
    assert "guess" not in d.machine.variables and "account" not in d.machine.variables
    assert d.machine.state_name == "ask"  # the state's own no-input: its prompt again


def test_another_intent_instead_of_an_answer_is_taken() -> None:
    d = driver()
    final(d, "4792", 0.6)
    final(d, "no, operator", 0.9)
    assert d.machine.state_name == "human"


def test_without_confirm_a_capture_acts_as_before() -> None:
    plain = PLAN.replace('        confirm:\n          prompt: "I heard {guess}. Is that right?"\n', "")
    d = driver(plain)
    final(d, "4792", 0.6)
    assert d.machine.state_name == "done" and d.machine.variables["account"] == "4792"
    d = driver(PLAN.replace('        confirm:\n          prompt: "I heard {guess}. Is that right?"\n',
                            "        confirm: false\n"))
    final(d, "4412", 0.95, ("Double 4-1-9.", 0.9))
    assert d.machine.variables["account"] == "4412"


def test_confirm_true_uses_the_states_question() -> None:
    plan = PLAN.replace('        confirm:\n          prompt: "I heard {guess}. Is that right?"\n',
                        "        confirm: {act_above: 0.99}\n")
    d = driver(plan)
    final(d, "4792", 0.7)  # 0.875: sure enough for the default 0.8, not for this capture's 0.99
    assert d.machine.variables["guess"] == "4 7 9 2"
    expectation = d.machine.expectation
    assert expectation is not None and expectation.prompt == "Did you say 4 7 9 2? Please say yes or no."


@pytest.mark.parametrize(("snippet", "message"), [
    ("        confirm: {act_above: 0.4, reject_below: 0.6}\n", "reject_below 0.6 is more than act_above 0.4"),
    ("        confirm: {say: x}\n", "say"),
    ("        confirm: maybe\n", "'confirm' (true, false or settings)"),
])
def test_a_broken_capture_confirm_is_a_load_error_with_its_line(snippet: str, message: str) -> None:
    plan = PLAN.replace('        confirm:\n          prompt: "I heard {guess}. Is that right?"\n', snippet)
    with pytest.raises(DialplanError) as err:
        load_dialplan_text(plan)
    assert message in str(err.value)
    assert ":13:" in str(err.value) or "line 13" in str(err.value)


def test_a_text_capture_has_no_confirm() -> None:
    plan = """
dialplan: t
start: ask
states:
  ask:
    prompt: "Your name?"
    listen:
      text: {into: name, confirm: true, goto: done}
  done:
    hangup: true
"""
    with pytest.raises(DialplanError) as err:
        load_dialplan_text(plan)
    assert "confirm" in str(err.value)
