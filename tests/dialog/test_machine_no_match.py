"""Off-topic callers take the no-match path through the whole machine, and the question's own
silences and unclear answers escalate like the state's."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.dialog.script import Driver
from tests.dialog.test_understand import OFF_TOPIC
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")


@pytest.mark.parametrize("said", OFF_TOPIC)
def test_an_off_topic_caller_is_re_prompted_in_the_menu(said: str) -> None:
    driver = Driver(DEMO)
    driver.run([("start", None, None), ("done", None, None)])
    prompts = [c.text for c, _ in driver.act("say", said) if isinstance(c, ev.PlayPrompt)]
    assert prompts == ["Sorry, I did not get that. Say balance, operator, or goodbye."]
    assert driver.machine.transitions == ["menu"]
    assert "guess" not in driver.machine.variables


def test_three_off_topic_answers_escalate_as_the_dialplan_says() -> None:
    driver = Driver(DEMO)
    driver.run([("start", None, None), ("done", None, None)])
    for said in OFF_TOPIC[:3]:
        driver.act("say", said)
        driver.act("done")
    assert driver.machine.state_name == "transfer_to_operator"


PLAN = """
dialplan: q
start: menu
confirm: {retries: 0}
states:
  menu:
    listen:
      intents:
        balance: {phrases: ["balance"], goto: done}
    no_input: {retries: 1, goto: gone}
    no_match: {retries: 0, goto: gone}
  done: {hangup: true}
  gone: {hangup: true}
"""


def test_a_state_without_prompt_asks_and_re_arms_after_no() -> None:
    driver = Driver(load_dialplan_text(PLAN))
    driver.run([
        ("start", None, ["listen", "timer:no_input+5"]),
        ("say", "Barrens", ["cancel:no_input", "play:Did you say balance? Please say yes or no.", "listen"]),
        ("done", None, ["timer:no_input+5"]),
        ("say", "no", ["cancel:no_input", "mute", "hangup:dialplan hangup"]),  # no_match retries 0
    ])
    assert driver.machine.state_name == "gone"


def test_silence_after_the_question_with_no_retries_is_the_states_no_input() -> None:
    driver = Driver(load_dialplan_text(PLAN))
    driver.run([
        ("start", None, None),
        ("say", "Barrens", None),
        ("done", None, ["timer:no_input+5"]),
        # The question's retries are 0: the silence is the state's first no-input, which
        # re-arms (the state has no prompt to repeat) with the state's own expectation.
        ("wait", 5, ["listen", "timer:no_input+5"]),
        ("wait", 5, ["mute", "hangup:dialplan hangup"]),
    ])
    assert driver.machine.state_name == "gone"
    assert "guess" not in driver.machine.variables


PROMPTED = """
dialplan: q
start: menu
states:
  menu:
    prompt: "Say balance."
    listen:
      intents:
        balance: {phrases: ["balance"], goto: done}
    no_input: {retries: 1, goto: gone, prompt: "Sorry, I did not hear you."}
    no_match: {retries: 0, goto: gone}
  done: {hangup: true}
  gone: {hangup: true}
"""


def test_speech_whose_final_is_late_is_not_taken_for_silence() -> None:
    """A busy recognizer may answer seconds after the caller stopped: the no-input time running out
    meanwhile must not re-prompt over the answer (call_bench at 4 calls: the re-prompt's new
    recognition session re-decoded the same words and misheard them)."""
    driver = Driver(load_dialplan_text(PROMPTED))
    driver.run([
        ("start", None, None),
        ("done", None, None),
        ("vad", None, ["cancel:no_input", "timer:no_input+5"]),
        ("vad_end", None, []),
        ("wait", 5, ["timer:no_input+5"]),  # the caller spoke, the final is still out: no re-prompt
        ("say", "balance", None),
    ])
    assert driver.machine.state_name == "done"


def test_speech_that_never_gets_a_final_ends_in_no_input_after_one_more_wait() -> None:
    driver = Driver(load_dialplan_text(PROMPTED))
    driver.run([
        ("start", None, None),
        ("done", None, None),
        ("vad", None, None),
        ("wait", 5, ["timer:no_input+5"]),  # the one extra wait for the recognizer
        ("wait", 5, ["play:Sorry, I did not hear you.", "listen"]),  # then it is the first no-input
    ])
    assert driver.machine.state_name == "menu"


def test_a_final_clears_the_wait_so_later_silence_counts_at_once() -> None:
    driver = Driver(load_dialplan_text(PROMPTED))
    driver.run([
        ("start", None, None),
        ("done", None, None),
        ("vad", None, None),
        ("say", "", None),  # the recognizer heard nothing it could write
        ("wait", 5, ["play:Sorry, I did not hear you.", "listen"]),
    ])
