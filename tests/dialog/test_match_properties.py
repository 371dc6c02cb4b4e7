"""Properties of the matcher, on generated utterances: a simulated caller reads digit strings the
ways people and recognizers write them, and phrases are buried in generated filler."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.dialog.match import (
    GAP_PENALTY,
    MAX_GAP,
    collapse_repeats,
    normalize,
    parse_digits,
    phrase_score,
)

pytestmark = pytest.mark.unit

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEENS = ("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
         "nineteen")
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def _pair(two: str) -> str:
    """A two-digit group as said: "47" -> "forty seven", "13" -> "thirteen", "05" -> "oh five"."""
    tens, units = int(two[0]), int(two[1])
    if tens == 0:
        return f"oh {WORDS[units]}"
    if tens == 1:
        return TEENS[units]
    return TENS[tens] if units == 0 else f"{TENS[tens]} {WORDS[units]}"


@st.composite
def spoken_digit_strings(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, one way to say or write them)."""
    digits = draw(st.text(alphabet="0123456789", min_size=4, max_size=8))
    style = draw(st.sampled_from(["words", "oh", "double", "pairs", "dashes", "commas", "spaced", "mixed"]))
    if style == "words":
        said = " ".join(WORDS[int(d)] for d in digits)
    elif style == "oh":
        said = " ".join("oh" if d == "0" else WORDS[int(d)] for d in digits)
    elif style == "double":
        parts: list[str] = []
        i = 0
        while i < len(digits):
            if i + 1 < len(digits) and digits[i] == digits[i + 1]:
                parts.append(f"double {WORDS[int(digits[i])]}")
                i += 2
            else:
                parts.append(WORDS[int(digits[i])])
                i += 1
        said = " ".join(parts)
    elif style == "pairs":
        # Pairs starting with 1-9 tens, single digits otherwise: "forty seven ninety two". A pair
        # ending in 0 ("twenty") followed by a single digit would be heard as one number
        # ("twenty, one" is 21 to anyone), so a caller does not say it that way.
        parts = []
        i = 0
        while i < len(digits):
            if i + 1 < len(digits) and digits[i] != "0" and digits[i + 1] != "0" and draw(st.booleans()):
                parts.append(_pair(digits[i:i + 2]))
                i += 2
            else:
                parts.append(WORDS[int(digits[i])])
                i += 1
        said = ", ".join(parts)
    elif style == "dashes":
        said = "-".join(digits) + "."
    elif style == "commas":
        said = ",".join(digits)
    elif style == "spaced":
        said = " ".join(digits)
    else:
        said = " ".join(d if draw(st.booleans()) else WORDS[int(d)] for d in digits)
    lead = draw(st.sampled_from(["", "my account number is ", "um, ", "it's ", "so "]))
    tail = draw(st.sampled_from(["", " please", ", thanks... uh", " and that is it"]))
    return digits, lead + said + tail.replace("thanks... uh", "uh")


@settings(max_examples=300, deadline=None)
@given(spoken_digit_strings())
def test_every_way_of_saying_digits_reads_back_the_digits(case: tuple[str, str]) -> None:
    digits, said = case
    assert parse_digits(said).digits == digits, said


@settings(max_examples=200, deadline=None)
@given(spoken_digit_strings(), spoken_digit_strings(), st.sampled_from(["no", "sorry", "I mean", "actually"]))
def test_a_correction_as_long_as_what_it_corrects_replaces_it(
    first: tuple[str, str], second: tuple[str, str], marker: str
) -> None:
    wrong, said_wrong = first
    right, said_right = second
    said = f"{said_wrong}, {marker}, {said_right}"
    expected = right if len(right) >= len(wrong) else wrong[:len(wrong) - len(right)] + right
    assert parse_digits(said).digits == expected, said


FILLER = st.sampled_from(["um", "really", "uh", "just", "the", "please", "like", "well", "now"])
PHRASES = ["a person", "my balance", "talk to someone", "check my balance", "operator", "hang up"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PHRASES), st.lists(FILLER, max_size=4), st.lists(FILLER, max_size=4))
def test_a_phrase_said_verbatim_anywhere_scores_one(phrase: str, before: list[str], after: list[str]) -> None:
    said = normalize(" ".join([*before, phrase, *after]))
    assert phrase_score(said, normalize(phrase)) == 1.0


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([p for p in PHRASES if " " in p]), st.data())
def test_filler_inside_a_phrase_costs_a_fixed_penalty_per_word(phrase: str, data: st.DataObject) -> None:
    words = phrase.split()
    at = data.draw(st.integers(min_value=1, max_value=len(words) - 1))
    fillers = st.sampled_from(["um", "really", "uh", "just"])
    gap = data.draw(st.lists(fillers, min_size=1, max_size=MAX_GAP + 2))
    said = normalize(" ".join([*words[:at], *gap, *words[at:]]))
    score = phrase_score(said, normalize(phrase))
    if len(gap) <= MAX_GAP:
        assert score == pytest.approx(GAP_PENALTY ** len(gap))
    else:
        assert score == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["no", "matter", "bye", "my", "balance", "1", "yes"]), max_size=10))
def test_collapsing_repeats_is_idempotent_and_never_adds_words(tokens: list[str]) -> None:
    once = collapse_repeats(tokens)
    assert collapse_repeats(once) == once
    assert len(once) <= len(tokens)
    assert set(once) == set(tokens)
    assert all(once[i:i + 1] != once[i + 1:i + 2] for i in range(len(once) - 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.sampled_from(PHRASES))
def test_scores_are_confidences(text: str, phrase: str) -> None:
    assert 0.0 <= phrase_score(normalize(text), normalize(phrase)) <= 1.0
    spoken = parse_digits(text)
    assert spoken.confidence in (0.0, 0.7, 1.0)
    assert spoken.digits.isdigit() or spoken.digits == ""
