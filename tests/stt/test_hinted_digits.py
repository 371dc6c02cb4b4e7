"""Digits mode's pure parts: reading a constrained reading as digits, and its confidence scales."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.stt.hinted import (
    DIGIT_WORDS,
    DIGITS_MIN_LOGPROB,
    DIGITS_POSTERIOR_POINTS,
    DIGITS_REJECT_MARGIN,
    DIGITS_REJECTED_CONFIDENCE,
    carrier_prefix,
    digit_posteriors,
    digits_confidence,
    loops_one_word,
    margin_confidence,
    posterior_confidence,
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
    # Number words, read in pairs as the server's text normalization reads them.
    ("Forty-seven ninety-two.", "4792"),
    ("twelve thirty-four", "1234"),
    ("Fifty-one eighty.", "5180"),
    ("One hundred five, two.", "1052"),
    ("Ten, zero, three.", "1003"),
    ("Two oh oh seven six.", "20076"),
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


def test_digit_posteriors_share_the_beam_between_strings() -> None:
    # Two readings spell 4792 (as words and in pairs), one 4782, one loops, one is no digit string.
    readings = [("Four, seven, nine, two.", -1.0), ("Forty-seven ninety-two.", -2.0),
                ("Four, seven, eight, two.", -1.5), ("Oh, oh, oh, oh, oh.", -3.0), ("", -2.5)]
    found = digit_posteriors(readings, 4, 8)
    weights = [math.exp(lp) for _t, lp in readings]
    assert [r.digits for r in found] == ["4792", "4782"]
    assert found[0].text == "Four, seven, nine, two."  # the likeliest way it was written
    assert found[0].posterior == pytest.approx((weights[0] + weights[1]) / sum(weights))
    assert found[1].posterior == pytest.approx(weights[2] / sum(weights))


def test_digit_posteriors_put_the_expected_length_first() -> None:
    found = digit_posteriors([("One, two, three.", -0.1), ("One, two, three, four.", -3.0)], 4, 8)
    assert [r.digits for r in found] == ["1234", "123"]  # a likelier string that is too short is last
    assert digit_posteriors([("Double.", -0.5)], 4, 8) == []
    assert digit_posteriors([], 4, 8) == []


def test_posterior_confidence_scale() -> None:
    for posterior, confidence in DIGITS_POSTERIOR_POINTS:
        assert posterior_confidence(posterior) == pytest.approx(confidence)
    # Acted on by the dialog (0.64 and more) only from the sure posterior; read back from 0.4.
    assert posterior_confidence(0.89) < 0.64 <= posterior_confidence(0.9)
    assert posterior_confidence(0.39) < 0.4 <= posterior_confidence(0.4)
    assert posterior_confidence(1.5) == 1.0
    assert posterior_confidence(-1.0) == 0.0


@settings(deadline=None)
@given(st.floats(min_value=0, max_value=1), st.floats(min_value=0, max_value=1))
def test_posterior_confidence_is_monotonic(a: float, b: float) -> None:
    low, high = sorted((a, b))
    assert posterior_confidence(low) <= posterior_confidence(high)


PROMPT = "Please say or key in your account number, then press pound."


@pytest.mark.parametrize(("free", "prefix"), [
    ("My account number is 6251.", "My account number is"),
    ("My account number is 6 to 51.", "My account number is"),  # the digits need not parse
    ("It is 4182.", "It is"),
    ("Account number 7, 7, 7, 2, 9.", "Account number"),      # words of the prompt
    ("My count number is 6251.", "My count number is"),       # near misses: a weak first syllable lost,
    ("The count number 7, 7, 2, 9.", "The count number"),     # (Piper's "account", both measured)
    ("My acount numbers 1 2 3 4", "My acount numbers"),       # or one letter off
    ("Mark out number 26251.", ""),                           # "mark" and "out" are neither
    ("Um, it's four one eight two.", "Um, it's"),
    ("4792", ""),                                             # no words before the number
    ("Heaven 03381.", ""),                                    # a misheard "seven": no carrier
    ("And then there are three, three, eight, one.", ""),
    ("It been 4182.", ""),                                    # one unknown word is enough
    ("My dog is called Rex.", ""),                            # no number follows
    ("Operator.", ""),
    ("", ""),
])
def test_carrier_prefix(free: str, prefix: str) -> None:
    assert carrier_prefix(free, PROMPT) == prefix


def test_carrier_prefix_takes_the_prompt_words_as_carriers() -> None:
    assert carrier_prefix("Card ending 4 4 1 9.", "") == ""
    assert carrier_prefix("Card ending 4 4 1 9.", "Say the last four digits of the card, the card ending.") \
        == "Card ending"


@pytest.mark.parametrize("free", ["For 7 9 2.", "Two 4 7 9.", "It's a 0215.", "Then 4 1 8 2.",
                                  "Tree 4 1 8 2.", "Hone 4 1 8 2."])
def test_carrier_prefix_never_takes_a_misheard_digit(free: str) -> None:
    # Words of the prompt count as carriers, but not digit words or what a digit is misheard as.
    assert carrier_prefix(free, "Press or say one for sales, two for support, then press pound.") == ""
