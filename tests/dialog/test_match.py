"""Normalization and matching of utterances."""

from __future__ import annotations

import pytest

from voicebot.dialog.ir import Intent
from voicebot.dialog.match import digits_in, match_dtmf, match_intent, normalize, tokenize

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "tokens"), [
    ("Operator, please.", ("operator", "please")),
    ("GOOD-BYE!", ("good", "bye")),
    ("I can't   hear you…", ("i", "can't", "hear", "you")),
    ("one two three four", ("1", "2", "3", "4")),
    ("twenty three", ("23",)),
    ("one hundred and five", ("105",)),
    ("five thousand two hundred", ("5200",)),
    ("twenty twenty four", ("20", "24")),
    ("nineteen eighty four", ("19", "84")),
    ("five oh one", ("5", "0", "1")),
    ("oh no", ("oh", "no")),
    ("and then one", ("and", "then", "1")),
    ("", ()),
])
def test_normalize(text: str, tokens: tuple[str, ...]) -> None:
    assert normalize(text) == tokens


@pytest.mark.parametrize(("text", "digits"), [
    ("1234", "1234"), ("1, 2, 3, 4.", "1234"), ("one two three four", "1234"),
    ("My account number is 4 5 6 7", "4567"), ("um, five five five, one two", "55512"),
    ("double five one", "551"), ("triple seven", "777"), ("twelve thirty four", "1234"),
    ("operator", ""), ("one for the money", ""), ("", ""),
])
def test_digits_in(text: str, digits: str) -> None:
    assert digits_in(text) == digits


def _intent(name: str, *phrases: str, dtmf: str | None = None, keywords: tuple[str, ...] = ()) -> Intent:
    return Intent(name, tuple(normalize(p) for p in phrases), frozenset(keywords), dtmf, name)


def test_longest_phrase_wins_then_declaration_order() -> None:
    no = _intent("no", "no")
    reschedule = _intent("reschedule", "reschedule", "another time")
    assert match_intent(normalize("no, another time please"), [no, reschedule]).intent is reschedule  # type: ignore[union-attr]
    assert match_intent(normalize("no reschedule"), [reschedule, no]).intent is reschedule  # type: ignore[union-attr]
    assert match_intent(normalize("no reschedule"), [no, reschedule]).intent is no  # type: ignore[union-attr]
    assert match_intent(normalize("maybe"), [no, reschedule]) is None


def test_phrases_match_whole_words_only() -> None:
    no = _intent("no", "no")
    assert match_intent(tokenize("I don't know"), [no]) is None
    assert match_intent(tokenize("nobody"), [no]) is None


def test_keywords_and_dtmf() -> None:
    money = _intent("money", keywords=("cash",), dtmf="1")
    assert match_intent(normalize("show me the cash"), [money]) is not None
    assert match_dtmf("1", [money]) is money
    assert match_dtmf("2", [money]) is None


@pytest.mark.parametrize(("said", "phrase", "hit"), [
    ("my balances", "balance", True), ("balanced", "balance", True), ("agents", "agent", True),
    ("operators please", "operator", True), ("good bye", "goodbye", True), ("goodbye", "good bye", True),
    ("byebye", "bye bye", True), ("notable", "not", False), ("nope", "no", False),
    ("yesterday", "yes", False),
    ("balancing", "balance", False), ("agent007", "agent", False), ("bye", "good bye", False),
])
def test_inflections_and_split_words(said: str, phrase: str, hit: bool) -> None:
    intent = _intent("x", phrase)
    assert (match_intent(normalize(said), [intent]) is not None) is hit
