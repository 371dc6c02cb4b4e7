"""Guesses by meaning in voicebot.dialog.understand: when they are made, what they may decide.

The similarity here is a table (the real model's closeness is tested in tests/test_meaning.py and
tests/dialog/test_machine_meaning.py): these tests pin the dialog's rules around it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import pytest

from voicebot.dialog.ir import Confirm, Listen
from voicebot.dialog.loader import load_dialplan, load_dialplan_text
from voicebot.dialog.understand import MEANING_MIN_SIMILARITY, NOTHING, Hypothesis, understand

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")


class Table:
    """Cosine ``close`` between a said text and one phrase, 0 for every other pair; counts calls."""

    def __init__(self, said: str, phrase: str, close: float) -> None:
        self.said, self.phrase, self.close = said, phrase, close
        self.calls = 0

    def similarities(self, text: str, phrases: Sequence[str]) -> list[float]:
        self.calls += 1
        return [self.close if (text, p) == (self.said, self.phrase) else 0.0 for p in phrases]


def _listen(state: str = "menu") -> Listen:
    listen = DEMO.states[state].listen
    assert listen is not None
    return listen


def test_a_close_meaning_is_a_guess_to_confirm_never_an_act() -> None:
    # However close: the embedding cannot hear a negation or a misheard word; the caller settles it.
    for close in (MEANING_MIN_SIMILARITY, 0.8, 0.999):
        found = understand([Hypothesis("i'm all done")], _listen(), DEMO.global_intents,
                           similarity=Table("i'm all done", "that's all", close))
        assert (found.kind, found.decision) == ("intent", "confirm")
        assert found.intent is not None and found.intent.name == "goodbye"
        assert found.is_global and found.by_meaning
        assert found.confidence == pytest.approx(close)


def test_below_the_threshold_is_no_match() -> None:
    found = understand([Hypothesis("i'm all done")], _listen(), DEMO.global_intents,
                       similarity=Table("i'm all done", "that's all", MEANING_MIN_SIMILARITY - 0.01))
    assert found == NOTHING


@pytest.mark.parametrize("said", ["i'm not finished", "i can't hear you", "nothing for now", "no idea"])
def test_a_negated_utterance_is_never_guessed_by_meaning(said: str) -> None:
    table = Table(said, "i'm finished", 0.9)
    assert understand([Hypothesis(said)], _listen(), DEMO.global_intents, similarity=table) == NOTHING
    assert table.calls == 0


def test_a_phrase_match_is_not_second_guessed() -> None:
    table = Table("check my balance", "goodbye", 0.99)
    found = understand([Hypothesis("check my balance")], _listen(), DEMO.global_intents, similarity=table)
    assert (found.decision, found.intent and found.intent.name, found.by_meaning) == ("act", "balance", False)
    assert table.calls == 0


def test_a_sound_alike_guess_comes_before_a_guess_by_meaning() -> None:
    table = Table("operate her please", "goodbye", 0.99)
    found = understand([Hypothesis("operate her please")], _listen(), DEMO.global_intents, similarity=table)
    assert (found.decision, found.intent and found.intent.name) == ("confirm", "operator")
    assert table.calls == 0


def test_with_confirming_off_a_guess_by_meaning_is_a_no_match() -> None:
    listen = dataclasses.replace(_listen(), confirm=Confirm(enabled=False))
    found = understand([Hypothesis("i'm all done")], listen, DEMO.global_intents,
                       similarity=Table("i'm all done", "that's all", 0.9))
    assert (found.kind, found.decision) == ("intent", "reject")


def test_free_text_is_what_was_said_not_a_guess() -> None:
    plan = load_dialplan_text(
        "dialplan: t\nstart: s\nglobals:\n  out: {phrases: [goodbye], goto: done}\nstates:\n"
        "  s:\n    prompt: Your name?\n    listen:\n      text: {into: name, goto: done}\n"
        "    no_input: {retries: 0, goto: done}\n"
        "  done:\n    hangup: true\n", file="t.yaml")
    listen = plan.states["s"].listen
    assert listen is not None
    found = understand([Hypothesis("I'm all done")], listen, plan.global_intents,
                       similarity=Table("i'm all done", "goodbye", 0.9))
    assert (found.kind, found.text) == ("text", "I'm all done")


def test_in_a_digits_state_the_globals_are_guessed_when_no_digits_were_said() -> None:
    found = understand([Hypothesis("is anyone real there")], _listen("ask_account"), DEMO.global_intents,
                       similarity=Table("is anyone real there", "someone", 0.7))
    assert (found.decision, found.intent and found.intent.name) == ("confirm", "operator")
    found = understand([Hypothesis("1 2 3 4")], _listen("ask_account"), DEMO.global_intents,
                       similarity=Table("1 2 3 4", "human", 0.9))
    assert (found.kind, found.digits) == ("digits", "1234")


def test_the_closest_intent_wins_and_every_hypothesis_is_compared() -> None:
    class Two:
        def similarities(self, text: str, phrases: Sequence[str]) -> list[float]:
            scores = {("what have i got left", "balance"): 0.6, ("i'm all done", "that's all"): 0.8}
            return [scores.get((text, p), 0.0) for p in phrases]

    found = understand([Hypothesis("What have I got left?"), Hypothesis("I'm all done")], _listen(),
                       DEMO.global_intents, similarity=Two())
    assert (found.intent and found.intent.name, found.hypothesis) == ("goodbye", 1)


def test_without_a_similarity_nothing_changes() -> None:
    assert understand([Hypothesis("i'm all done")], _listen(), DEMO.global_intents) == NOTHING


def test_a_no_set_apart_at_the_start_answers_the_question_and_is_left_out() -> None:
    # Held-out set 4, every voice: "No, that's it." after the menu; the matcher reads "no" so too.
    table = Table("that's it", "that's all", 0.59)
    found = understand([Hypothesis("No, that's it.")], _listen(), DEMO.global_intents, similarity=table)
    reading = (found.decision, found.intent and found.intent.name, found.by_meaning)
    assert reading == ("confirm", "goodbye", True)
    # Without the comma "no" may negate what follows ("no idea", "no problem"): never embedded.
    table = Table("idea", "that's all", 0.9)
    assert understand([Hypothesis("No idea.")], _listen(), DEMO.global_intents, similarity=table) == NOTHING
    assert table.calls == 0
    # A negation after the "no," still rules the guess out.
    table = Table("i'm not finished", "i'm finished", 0.9)
    said = [Hypothesis("No, I'm not finished.")]
    found = understand(said, _listen(), DEMO.global_intents, similarity=table)
    assert found == NOTHING and table.calls == 0
