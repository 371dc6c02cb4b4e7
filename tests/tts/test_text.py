"""Text normalization for speech: table-driven, one row per reading rule."""

from __future__ import annotations

import pytest

from voicebot.tts.text import (
    cardinal,
    clock_time,
    first_clause_split,
    normalize_for_speech,
    ordinal,
    year,
)

pytestmark = pytest.mark.unit

NORMALIZED = [
    # money
    ("$1,234.50", "one thousand two hundred thirty-four dollars and fifty cents"),
    ("$1", "one dollar"),
    ("$1.01", "one dollar and one cent"),
    ("$0.99", "ninety-nine cents"),
    ("$5.00", "five dollars"),
    ("$.5", "fifty cents"),
    ("€20", "twenty euros"),
    ("£3.01", "three pounds and one penny"),
    ("pay $12 today", "pay twelve dollars today"),
    ("$", "$"),
    # dates
    ("2026-12-06", "December sixth, twenty twenty-six"),
    ("2000-01-01", "January first, two thousand"),
    ("1999-11-22", "November twenty-second, nineteen ninety-nine"),
    ("1905-03-31", "March thirty-first, nineteen oh five"),
    # times
    ("14:30", "two thirty PM"),
    ("09:05", "nine oh five AM"),
    ("9:05 am", "nine oh five AM"),
    ("12:15 PM", "twelve fifteen PM"),
    ("7:00 p.m.", "seven PM"),
    ("12:00", "twelve noon"),
    ("00:00", "twelve midnight"),
    ("23:59", "eleven fifty-nine PM"),
    ("00:30", "twelve thirty AM"),
    # digit strings
    ("account number 12345678", "account number one two three four five six seven eight"),
    ("code 0420", "code zero four two zero"),
    ("call 555-123-4567", "call five five five, one two three, four five six seven"),
    ("card 4111 1111 1111 1111", "card four one one one, one one one one, one one one one, one one one one"),
    # other numbers
    ("5%", "five percent"),
    ("2.5 %", "two point five percent"),
    ("3.75", "three point seven five"),
    ("-7", "minus seven"),
    ("21st", "twenty-first"),
    ("2nd", "second"),
    ("11th", "eleventh"),
    ("103rd", "one hundred third"),
    ("21th", "twenty-first"),  # a typo: the number says which ordinal is meant
    ("1,000,000", "one million"),
    ("room 101", "room one hundred one"),
    ("I have 3 cats and 42 dogs.", "I have three cats and forty-two dogs."),
    ("Version 3.5.", "Version three point five."),
    # whole prompts
    ("Your balance is $1,234.50 as of 2026-12-06 at 14:30.",
     "Your balance is one thousand two hundred thirty-four dollars and fifty cents as of "
     "December sixth, twenty twenty-six at two thirty PM."),
    ("Say one for sales, two for support.", "Say one for sales, two for support."),
]


@pytest.mark.parametrize(("text", "spoken"), NORMALIZED)
def test_normalize_for_speech(text: str, spoken: str) -> None:
    assert normalize_for_speech(text) == spoken


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (13, "thirteen"), (20, "twenty"), (45, "forty-five"), (100, "one hundred"),
    (101, "one hundred one"), (999, "nine hundred ninety-nine"), (1000, "one thousand"),
    (1_002_003, "one million two thousand three"), (10**12, "one trillion"), (-3, "minus three"),
])
def test_cardinal(n: int, words: str) -> None:
    assert cardinal(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (1, "first"), (2, "second"), (3, "third"), (5, "fifth"), (8, "eighth"), (9, "ninth"),
    (12, "twelfth"), (20, "twentieth"), (31, "thirty-first"), (100, "one hundredth"),
])
def test_ordinal(n: int, words: str) -> None:
    assert ordinal(n) == words


@pytest.mark.parametrize(("n", "words"), [
    (2026, "twenty twenty-six"), (2000, "two thousand"), (2007, "two thousand seven"),
    (1999, "nineteen ninety-nine"), (1900, "nineteen hundred"), (1905, "nineteen oh five"),
    (2010, "twenty ten"), (800, "eight hundred"),
])
def test_year(n: int, words: str) -> None:
    assert year(n) == words


@pytest.mark.parametrize(("hour", "minute", "meridiem", "words"), [
    (14, 30, None, "two thirty PM"), (0, 5, None, "twelve oh five AM"), (12, 0, None, "twelve noon"),
    (24, 0, None, "twelve midnight"), (3, 0, "PM", "three PM"), (11, 45, "AM", "eleven forty-five AM"),
])
def test_clock_time(hour: int, minute: int, meridiem: str | None, words: str) -> None:
    assert clock_time(hour, minute, meridiem) == words


@pytest.mark.parametrize("text", ["2026-13-01", "2026-02-30", "25:00", "13:30 pm"])
def test_impossible_dates_and_times_are_not_read_as_dates_or_times(text: str) -> None:
    spoken = normalize_for_speech(text)
    for word in ("January", "February", "AM", "PM", "noon", "midnight"):
        assert word not in spoken


@pytest.mark.parametrize(("text", "head", "rest"), [
    ("Hello.", "Hello.", ""),
    ("Your balance is one thousand two hundred dollars, as of today. Bye.",
     "Your balance is one thousand two hundred dollars,", "as of today. Bye."),
    # no clause boundary within 40 characters: the last phrase boundary there (before "of")
    ("Thank you for calling the support line of the example company and have a nice day.",
     "Thank you for calling the support line", "of the example company and have a nice day."),
    ("Thank you for calling the support line and have a nice day.",
     "Thank you for calling the support line", "and have a nice day."),
    ("Hi, your order, number one two three, ships today.", "Hi, your order, number one two three,",
     "ships today."),
    ("Averyveryverylongwordwithoutanybreaksatallwhatsoever in it.",
     "Averyveryverylongwordwithoutanybreaksatallwhatsoever in it.", ""),
    # before a number read digit by digit (not inside it), not after a two-word head ("The balance")
    ("The balance of account seven eight seven zero seven two one four is sixty-two thousand three "
     "hundred sixty dollars and eighty cents.",
     "The balance of account",
     "seven eight seven zero seven two one four is sixty-two thousand three hundred sixty dollars and "
     "eighty cents."),
    # no boundary within 40 characters nor a clause within 80: the last phrase boundary within 80
    ("Supercalifragilisticexpialidocious words everywhere is what we said today.",
     "Supercalifragilisticexpialidocious words everywhere", "is what we said today."),
])
def test_first_clause_split(text: str, head: str, rest: str) -> None:
    assert first_clause_split(text) == (head, rest)
    if rest:
        assert f"{head} {rest}" == text  # nothing lost, nothing added
