"""Digits mode's pure parts: reading a constrained reading as digits, and its confidence scales."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.stt.hinted import (
    DIGIT_WORDS,
    DIGITS_MIN_LOGPROB,
    DIGITS_REJECT_MARGIN,
    DIGITS_REJECTED_CONFIDENCE,
    digits_confidence,
    loops_one_word,
    margin_confidence,
    read_digits,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "digits"), [
    ("Four- seven- nine two.", "4792"),
    ("Double four, one- nine.", "4419"),
    ("Two-oh-oh-seven-six.", "20076"),
    ("Three one double zero.", "3100"),
    ("triple nine one", "9991"),
    ("O, five", "05"),
    ("4-7-9-2", "4792"),
    ("Double 419.", "4419"),       # a numeral group after "double": its first digit is doubled
    ("1 2 3 4 5.", "12345"),
    ("", ""),
    (", . -", ""),
    ("double", ""),                # nothing said after it
    ("My account number is 6251.", ""),  # any other word: not a constrained reading
    ("Four for", ""),
])
def test_read_digits(text: str, digits: str) -> None:
    assert read_digits(text) == digits


@settings(deadline=None)  # the shared machine's load, not the code, sets the time
@given(st.lists(st.sampled_from(sorted(DIGIT_WORDS)), min_size=1, max_size=8),
       st.sampled_from([" ", ", ", "-", ". "]))
def test_digit_words_read_one_digit_each(words: list[str], separator: str) -> None:
    text = separator.join(w.capitalize() if i == 0 else w for i, w in enumerate(words)) + "."
    assert read_digits(text) == "".join(DIGIT_WORDS[w] for w in words)


def test_digits_confidence_scale() -> None:
    assert digits_confidence(0.0) == 1.0
    assert digits_confidence(DIGITS_MIN_LOGPROB) == 0.5
    assert digits_confidence(DIGITS_MIN_LOGPROB / 2) == 0.75
    # Below the threshold a reading stays under what the dialog acts on (0.4 for the first text).
    assert digits_confidence(DIGITS_MIN_LOGPROB - 0.01) <= DIGITS_REJECTED_CONFIDENCE < 0.4
    assert digits_confidence(-100.0) == 0.0


def test_margin_confidence_scale() -> None:
    assert margin_confidence(0.0) == 1.0
    assert margin_confidence(1.5) == 1.0  # more likely than the free decode
    assert margin_confidence(DIGITS_REJECT_MARGIN) == 0.5
    assert margin_confidence(DIGITS_REJECT_MARGIN - 0.01) <= DIGITS_REJECTED_CONFIDENCE


@settings(deadline=None)
@given(st.floats(min_value=-20, max_value=0), st.floats(min_value=-20, max_value=0))
def test_confidences_are_monotonic(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert digits_confidence(low) <= digits_confidence(high)
    assert margin_confidence(low) <= margin_confidence(high)


@pytest.mark.parametrize(("text", "loops"), [
    ("Oh, oh, oh, oh, oh, oh.", True),
    ("One, one, one, one", True),
    ("Oh, oh, oh.", False),            # three is an account number's "oh oh oh"
    ("Four four four one.", False),
    ("Double four, double four.", False),
    ("4 4 4 4", True),
    ("", False),
])
def test_loops_one_word(text: str, loops: bool) -> None:
    assert loops_one_word(text) is loops
