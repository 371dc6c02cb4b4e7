"""Normalization and matching of utterances."""

from __future__ import annotations

import pytest

from voicebot.dialog.ir import Intent
from voicebot.dialog.match import (
    FILLER_WORDS,
    FUNCTION_SWAP,
    collapse_repeated_text,
    collapse_repeats,
    digits_in,
    match_dtmf,
    match_intent,
    normalize,
    parse_digits,
    phrase_score,
    tokenize,
)

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
    # A compound pronoun written as two words is one word, before "one" can become a number.
    ("talk to some one", ("talk", "to", "someone")),
    ("is any body there", ("is", "anybody", "there")),
    ("no one", ("no", "1")),
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


def test_a_negated_keyword_is_not_said() -> None:
    done = _intent("done", keywords=("finished",))
    assert match_intent(normalize("I'm not finished"), [done]) is None
    assert match_intent(normalize("I never finished it"), [done]) is None
    assert match_intent(normalize("no, I'm finished"), [done]) is not None  # "no" answers; it negates nothing
    someone = _intent("operator", keywords=("someone",))
    assert match_intent(normalize("I don't need to speak to someone"), [someone]) is None
    assert match_intent(normalize("I don't know, someone please"), [someone]) is not None


@pytest.mark.parametrize(("said", "phrase", "hit"), [
    ("my balances", "balance", True), ("balanced", "balance", True), ("agents", "agent", True),
    ("operators please", "operator", True), ("good bye", "goodbye", True), ("goodbye", "good bye", True),
    ("byebye", "bye bye", True), ("notable", "not", False), ("nope", "no", False),
    ("yesterday", "yes", False),
    ("balancing", "balance", False), ("agent007", "agent", False), ("bye", "good bye", False),
])
def test_inflections_and_split_words(said: str, phrase: str, hit: bool) -> None:
    intent = _intent("x", phrase)
    found = match_intent(normalize(said), [intent])
    assert (found is not None) is hit
    if found is not None:
        assert found.confidence >= 0.9  # sure enough to act on


@pytest.mark.parametrize(("said", "phrase", "low", "high"), [
    # Filler words inside a phrase: bounded gap, a small penalty per word.
    ("I want to talk to a real person", "a person", 0.9, 0.93),
    ("check my account balance", "my balance", 0.9, 0.93),
    ("check my current account balance", "my balance", 0.84, 0.85),
    ("talk to, um, someone", "talk to someone", 0.9, 0.93),
    ("my balance", "my balance", 1.0, 1.0),
    # Sound-alikes, alone or joined from two words: guesses.
    ("operate her please", "operator", 0.7, 0.75),
    ("Good boy.", "goodbye", 0.7, 0.75),
    ("Barrens", "balance", 0.5, 0.7),
    ("check my Barrens", "check my balance", 0.5, 0.7),  # one guessed word makes the phrase a guess
    # A function word heard as another: a guess, confirmed before acting.
    ("on course", "of course", FUNCTION_SWAP, FUNCTION_SWAP),
    ("talk to the person", "a person", FUNCTION_SWAP, FUNCTION_SWAP),
    ("and up please", "hang up", 0.5, 0.75),          # no h, a stop heard as its neighbour
    ("let me talk to you man", "human", 0.7, 0.75),   # two words joined, no h
])
def test_phrase_scores(said: str, phrase: str, low: float, high: float) -> None:
    assert low <= phrase_score(normalize(said), normalize(phrase)) <= high


@pytest.mark.parametrize(("said", "phrase"), [
    ("my account is not in balance", "my balance"),   # more than three words apart
    ("that's not all", "that's all"),                 # a negation is never skipped
    ("person a", "a person"),                         # order matters
    ("I'm not sure", "sure"),                         # negated right before: not said
    ("I will not be there", "i will"),                # negated right after its auxiliary
    ("I can not make it", "i can"),
    ("I will never make it", "i will"),
    ("please don't transfer me", "transfer me"),
    ("it isn't my balance", "my balance"),
    ("balance", "my balance"),                        # every word is needed
    ("", "operator"),
    # Filler and politeness words stand for themselves only (issue 12: "please" ~ "balance" made
    # every unrecognized "... please" a "did you say balance?").
    ("please", "balance"),
    ("hurry up please", "balance"),
    ("thanks", "thanks a lot"),
    # A function word may stand for another, never for nothing, and only beside enough content.
    ("course", "of course"),
    ("see it", "see you"),
    ("it isn't the balance", "my balance"),
    # A negation reaches over words that lead up to what it negates (want, need, to, the, ...).
    ("I don't want a person", "a person"),
    ("not the balance", "balance"),
    ("I don't want to check my balance", "my balance"),
    ("I do not need to speak to someone", "speak to someone"),
    ("please don't hang up", "hang up"),
    # A negation is never a skipped word inside a phrase, whatever its spelling ("...n't").
    ("that doesn't work for me", "that works"),
    ("that isn't right", "that's right"),
    ("not all right", "all right"),
    ("not all right", "right"),
])
def test_phrases_that_do_not_occur(said: str, phrase: str) -> None:
    assert phrase_score(normalize(said), normalize(phrase)) == 0.0


@pytest.mark.parametrize(("said", "phrase"), [
    ("no, my balance", "my balance"),   # "no" answers a question; it does not negate what follows
    ("it's not", "not"),                # a phrase that is itself a negation
    ("not now, my balance", "my balance"),
    ("yes I will", "i will"),           # an auxiliary at the end of what was said
    ("I will, see you then", "i will"),  # and one followed by other words
    ("sure not a problem", "sure"),     # only a phrase ending in an auxiliary is negated after it
    # Any other word between ends the negation's reach.
    ("I don't know, operator", "operator"),
    ("why don't you put me through", "put me through"),
    ("I don't know, can I get an agent", "an agent"),
    ("I do not want to wait, give me a person", "a person"),
])
def test_negation_reaches_no_further_than_its_bridge_words(said: str, phrase: str) -> None:
    assert phrase_score(normalize(said), normalize(phrase)) == 1.0


def test_the_surer_match_wins_then_the_longer_phrase() -> None:
    operator = _intent("operator", "operator", "a person")
    balance = _intent("balance", "balance", "my balance")
    found = match_intent(normalize("operate her, my balance"), [operator, balance])
    assert found is not None and found.intent is balance and found.confidence == 1.0
    found = match_intent(normalize("a real person"), [operator, balance])
    assert found is not None and found.intent is operator and found.length == 2


@pytest.mark.parametrize(("text", "tokens"), [
    ("No matter. No matter.", ("no", "matter")),
    ("bye bye", ("bye",)),
    ("yes yes yes", ("yes",)),
    ("my balance my balance please", ("my", "balance", "please")),
    ("operator", ("operator",)),
    ("a b a", ("a", "b", "a")),
])
def test_repeated_ngrams_collapse(text: str, tokens: tuple[str, ...]) -> None:
    assert collapse_repeats(normalize(text)) == tokens


@pytest.mark.parametrize(("text", "once"), [
    ("No matter. No matter.", "No matter"),
    ("Ada Lovelace. Ada Lovelace. Ada Lovelace.", "Ada Lovelace"),
    ("Ada Lovelace", "Ada Lovelace"),
    ("New York, New Jersey", "New York, New Jersey"),
])
def test_repeated_text_collapses(text: str, once: str) -> None:
    assert collapse_repeated_text(text) == once


def test_a_repeated_short_utterance_matches_as_said_once() -> None:
    no_matter = _intent("never_mind", "no matter")
    found = match_intent(normalize("No matter. No matter."), [no_matter])
    assert found is not None and found.confidence == 1.0


@pytest.mark.parametrize(("text", "digits", "confidence"), [
    ("oh four five six", "0456", 1.0),
    ("five oh oh one", "5001", 1.0),
    ("double four", "44", 1.0),
    ("double oh seven", "007", 1.0),
    ("triple nine one", "9991", 1.0),
    ("Double 419.", "4419", 1.0),                  # Whisper writes the digits after "double" as a group
    ("3 1 double 0.", "3100", 1.0),
    ("Two oh, oh seven, six.", "20076", 1.0),
    ("forty seven ninety two", "4792", 1.0),
    ("twelve thirty four", "1234", 1.0),
    ("twenty twenty four", "2024", 1.0),
    ("twenty zero one", "2001", 1.0),            # a tens word does not swallow a zero
    ("four five, no, four six", "46", 1.0),
    ("1 2 3 sorry 1 2 4", "124", 1.0),
    ("4 7 9 2, no, 9 3", "4793", 1.0),           # a shorter correction replaces the last digits
    ("1 2 3 4, I mean, 5 6 7 8 9", "56789", 1.0),  # a longer one replaces them all
    ("no, it's 1 2 3 4", "1234", 1.0),
    ("1 2 3 4, no", "", 0.0),                      # taken back, nothing instead: ask again
    ("3-1-0-0", "3100", 1.0),
    ("4,7,9,2", "4792", 1.0),
    ("4, 7, 9, 2.", "4792", 1.0),
    ("one two for three", "1243", 1.0),            # "for" next to digits
    ("3-1-0-0 I made.", "3100", 0.7),              # two trailing words after 3+ digits: a guess
    ("1 2 3 4 and that is it", "1234", 1.0),       # filler only
    ("My count number is 6251.", "6251", 0.7),     # a misheard carrier phrase: a guess
    ("In my account number, in six, two, five, one.", "6251", 0.7),
    ("call me at 1 2 3 4 please", "", 0.0),        # three words before the digits
    ("room 1 2", "", 0.0),                         # a word before fewer than three digits
    ("in 1 2 3 4 we made", "", 0.0),               # more than two words around them in all
    ("number one", "1", 1.0),                      # filler only: any length, the capture checks it
    ("1 2 3 4 is my old one from home", "", 0.0),  # more than two other words
    ("one for the money", "", 0.0),
    ("for you", "", 0.0),
    ("1 2 cats 3 4", "", 0.0),
    ("I-8-7-6-I-4-3-2", "", 0.0),                 # a carrier word between digits: a misheard digit
    ("4 7 the 9 2", "", 0.0),
    ("4 7 um 9 2", "4792", 1.0),                   # a hesitation may sit between digits
    ("2 dash 5 and 6", "256", 1.0),
    ("four five, sorry, I mean four six", "46", 1.0),  # carrier words inside a correction
    ("operator", "", 0.0),
])
def test_spoken_digits(text: str, digits: str, confidence: float) -> None:
    spoken = parse_digits(text)
    assert (spoken.digits, spoken.confidence) == (digits, confidence)
    assert digits_in(text) == digits


@pytest.mark.parametrize("filler", sorted(FILLER_WORDS))
def test_a_filler_word_matches_only_itself(filler: str) -> None:
    for phrase in ("balance", "operator", "goodbye", "hang up", "agent", "human", "yes", "nope"):
        assert phrase_score((filler,), normalize(phrase)) == 0.0
    assert phrase_score((filler,), (filler,)) == 1.0
