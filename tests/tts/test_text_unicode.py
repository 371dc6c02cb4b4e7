"""Text normalization on any text: prompt text carries caller- and webhook-provided variables, so
it must never raise, whatever characters or lengths they bring.

``str.isdigit`` takes '²' (superscript two), which ``int`` refuses; the rules' ``\\d`` takes '١'
(Arabic-Indic one), which ``int`` reads as 1; ``int`` refuses more than 4300 digits by default."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.tts.text import digits, normalize_for_speech

pytestmark = pytest.mark.unit

# what the rules look at (digits of several kinds, separators, currency, suffixes), to reach them
# more often than arbitrary unicode text does
NUMBERISH = st.text(alphabet=st.sampled_from("0123456789٠١٢٣٤٥٦٧٨٩²³¹½𝟙٫,.-:%$€£ apmstndrh\u00a0"),
                    max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), NUMBERISH))
def test_normalization_never_raises_and_keeps_letters(text: str) -> None:
    spoken = normalize_for_speech(text)
    assert isinstance(spoken, str)
    # every rule needs a decimal digit: text without one is said as written
    if not any(c.isdecimal() for c in text):
        assert spoken == text


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_digits_reads_every_decimal_and_only_those(text: str) -> None:
    spoken = digits(text)
    assert len(spoken.split()) == sum(c.isdecimal() for c in text)


@pytest.mark.parametrize(("text", "spoken"), [
    ("x²", "x²"),  # a superscript is not a number to read: left as text
    ("2²", "two²"),
    ("12345²", "one two three four five²"),
    ("¹²³", "¹²³"),
    ("١٢٣", "one hundred twenty-three"),  # decimal digits of another script are digits (as \d says)
    ("٠١٢٣٤", "zero one two three four"),
])
def test_unicode_digits_are_read_or_left_as_text(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


def test_digits_skips_non_decimal_digits() -> None:
    assert digits("2²٣") == "two three"


@pytest.mark.parametrize(("text", "nines", "ending"), [
    ("$" + "9" * 5000, 5000, " dollars"),
    ("9" * 5000 + "%", 5000, " percent"),
    ("9" * 5000 + "th", 5000, "nine"),
    ("9" * 5000 + ".5", 5000, " point five"),
    ("$" + "9" * 5000 + ".25", 5000, " dollars and twenty-five cents"),
])
def test_numbers_longer_than_int_converts_are_read_digit_by_digit(text: str, nines: int, ending: str) -> None:
    spoken = normalize_for_speech(text)
    assert spoken.split().count("nine") == nines
    assert spoken.endswith(ending)


def test_a_comma_grouped_number_too_long_for_int_is_read_digit_by_digit() -> None:
    spoken = normalize_for_speech("1," + ",".join(["000"] * 2000))
    assert spoken.split() == ["one"] + ["zero"] * 6000
