"""The order in which a final is read when several things match, on a state with intents, a digit
capture and globals, and with keyed digits already collected."""

from __future__ import annotations

import pytest

from voicebot.dialog.ir import Listen
from voicebot.dialog.loader import load_dialplan_text
from voicebot.dialog.understand import Hypothesis, Understanding, understand

pytestmark = pytest.mark.unit

PLAN = load_dialplan_text("""
dialplan: p
start: code
globals:
  operator: {phrases: ["operator", "agent"], goto: done}
  repeat: {phrases: ["repeat that", "say again"], goto: code}
states:
  code:
    prompt: "Key or say your 4 digit code, or say skip."
    listen:
      intents:
        skip: {phrases: ["skip", "skip it", "no code"], goto: done}
        help: {phrases: ["help me", "what code"], goto: done}
      digits: {into: code, min_digits: 4, max_digits: 4, goto: done}
    no_input: {goto: done}
    no_match: {goto: done}
  done: {hangup: true}
""")
LISTEN = PLAN.states["code"].listen
assert LISTEN is not None


def _read(*texts: str, keyed: str = "", listen: Listen = LISTEN) -> Understanding:
    return understand([Hypothesis(t) for t in texts], listen, PLAN.global_intents, keyed_digits=keyed)


def _summary(found: Understanding) -> tuple[str, str, str]:
    what = found.intent.name if found.intent is not None else found.digits or found.text
    return found.kind, found.decision, what


@pytest.mark.parametrize(("texts", "keyed", "reading"), [
    # a sure state intent beats everything
    (("skip it, operator",), "", ("intent", "act", "skip")),
    (("skip", "1 2 3 4"), "", ("intent", "act", "skip")),
    # valid digits beat a sure global
    (("1 2 3 4",), "", ("digits", "act", "1234")),
    (("operator", "1 2 3 4"), "", ("digits", "act", "1234")),
    # a sure global beats digits of the wrong length...
    (("operator",), "", ("intent", "act", "operator")),
    (("1 2 3", "agent"), "", ("intent", "act", "operator")),
    # ...which beat a guess (the machine then counts a no-match)
    (("1 2 3", "opperator"), "", ("digits", "act", "123")),
    # keyed digits count towards the length
    (("three four",), "12", ("digits", "act", "34")),
    (("three four five",), "12", ("digits", "act", "345")),  # 5 in all: the machine's no-match
    # guesses: the more confident wins, the state's on a tie
    (("skipp",), "", ("intent", "confirm", "skip")),
    (("opperator",), "", ("intent", "confirm", "operator")),
    (("repeat that please",), "", ("intent", "act", "repeat")),
    (("pizza",), "", ("none", "reject", "")),
])
def test_precedence(texts: tuple[str, ...], keyed: str, reading: tuple[str, str, str]) -> None:
    assert _summary(_read(*texts, keyed=keyed)) == reading


def test_the_hypothesis_that_matched_is_reported() -> None:
    found = _read("4th Heaven", "pizza", "1 2 3 4")
    assert (found.kind, found.hypothesis, found.confidence) == ("digits", 2, 0.9)


def test_a_strict_reading_beats_a_lenient_one_of_a_better_hypothesis() -> None:
    found = _read("1 2 3 4 I made", "1 2 3 5")
    assert (found.digits, found.hypothesis) == ("1235", 1)  # 0.9 beats 0.7
    assert _read("1 2 3 4 I made").confidence == 0.7


def test_text_capture_takes_the_best_text() -> None:
    text = load_dialplan_text("""
dialplan: t
start: t
states:
  t:
    listen:
      text: {into: said, goto: e}
    no_input: {goto: e}
  e: {hangup: true}
""")
    listen = text.states["t"].listen
    assert listen is not None
    found = understand([Hypothesis("Grace Hopper."), Hypothesis("grace hopper")], listen, ())
    assert (found.kind, found.text) == ("text", "Grace Hopper")
