"""The contract with the recognizer: every expectation the machine sends converts field by field
into ``voicebot.stt.hints.RecognitionHints`` (the application's job) and survives its wire form.

The dialog package never imports the stt package; this test does, to keep the two in step.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.expect import Expectation
from voicebot.dialog.loader import load_dialplan
from voicebot.stt.hints import RecognitionHints, parse_hints

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
PLANS = [load_dialplan(ROOT / "dialplans" / "demo.yaml"), load_dialplan(ROOT / "dialplans" / "reminder.yaml")]
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("say"), st.sampled_from(["balance", "operate her please", "no", "yes", "Barrens",
                                               "1 2 3 4", "pizza", "let's reschedual", "another time"])),
    st.tuples(st.just("dtmf"), st.sampled_from(["1", "0", "2", "12345678"])),
    st.tuples(st.just("done"), st.none()),
    st.tuples(st.just("wait"), st.sampled_from([3, 9])),
), max_size=12)


def to_hints(expectation: Expectation) -> RecognitionHints:
    """What the application does: the same field names, one by one."""
    return RecognitionHints(**{f.name: getattr(expectation, f.name) for f in dataclasses.fields(expectation)})


def test_the_field_names_are_the_hints_field_names() -> None:
    assert [f.name for f in dataclasses.fields(Expectation)] == [
        f.name for f in dataclasses.fields(RecognitionHints)]
    assert to_hints(Expectation()) == RecognitionHints()


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([0, 1]), ACTIONS)
def test_every_expectation_sent_is_valid_hints(plan_index: int, actions: list[tuple[str, object]]) -> None:
    driver = Driver(PLANS[plan_index])
    driver.act("start")
    for action, arg in actions:
        driver.act(action, arg)
    sent = [c.expectation for c in driver.log if isinstance(c, ev.StartListening)]
    assert sent
    for expectation in sent:
        hints = to_hints(expectation)  # raises if a field is out of the hints' bounds
        back = parse_hints(hints.to_json())
        assert (back.mode, back.prompt, back.phrases) == (hints.mode, hints.prompt, hints.phrases)
        if hints.mode == "digits":  # the digit bounds travel only in digits mode
            assert back == hints
