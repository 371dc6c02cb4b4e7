"""Spoken numbers to digits (English and Russian), everything else untouched."""

from __future__ import annotations

import pytest

from voicebot.stt.normalize import normalize_numbers

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        # digit strings
        ("four five six seven", "4567"),
        ("one two three four five six seven eight nine zero", "1234567890"),
        ("zero zero seven", "007"),
        ("oh five oh two", "0502"),
        ("double five", "55"),
        ("triple nine one", "9991"),
        # compounds
        ("twenty three", "23"),
        ("twenty-three", "23"),
        ("Twenty Three", "23"),
        ("thirteen", "13"),
        ("one hundred and five", "105"),
        ("five hundred and fifty five", "555"),
        ("a hundred", "100"),
        ("eleven hundred", "1100"),
        ("twenty five hundred", "2500"),
        ("seven thousand and ten", "7010"),
        ("two thousand twenty", "2020"),
        ("two million three hundred thousand", "2300000"),
        ("one million two hundred thousand three hundred and forty five", "1200345"),
        # adjacent numbers are one digit string (years, card numbers)
        ("nineteen eighty four", "1984"),
        ("twenty twenty", "2020"),
        ("twenty three forty five", "2345"),
        # Russian
        ("пять", "5"),
        ("ноль", "0"),
        ("двадцать три", "23"),
        ("сто пять", "105"),
        ("тысяча двести", "1200"),
        ("две тысячи двадцать пять", "2025"),
        ("три миллиона", "3000000"),
        ("девятьсот девяносто девять", "999"),
        ("четыре пять шесть семь", "4567"),
        ("двенадцать", "12"),
    ],
)
def test_number_words_become_digits(spoken: str, written: str) -> None:
    assert normalize_numbers(spoken) == written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # numbers inside sentences keep the words and punctuation around them
        ("My number is four five six seven.", "My number is 4567."),
        ("I want one ticket", "I want 1 ticket"),
        ("a hundred dollars", "100 dollars"),
        ("мой номер четыре пять шесть семь", "мой номер 4567"),
        ("Press two, then three.", "Press 2, then 3."),
        # punctuation between numbers separates them
        ("Five, five.", "5, 5."),
        # "and" / "a" that are not part of a number stay words
        ("three and four", "3 and 4"),
        ("one hundred and", "100 and"),
        ("five a day", "5 a day"),
        # words that merely look like numbers stay
        ("oh I see", "oh I see"),
        ("a dog", "a dog"),
        ("this one", "this one"),
        ("no one", "no one"),
        ("The one.", "The one."),
        ("double check", "double check"),
        ("hundred", "hundred"),
        ("thousands of people", "thousands of people"),
        # already-written numbers and other scripts are left alone
        ("Call 4,567 now", "Call 4,567 now"),
        ("Hello, world!", "Hello, world!"),
        ("", ""),
    ],
)
def test_sentences(text: str, expected: str) -> None:
    assert normalize_numbers(text) == expected


def test_normalizing_twice_changes_nothing_more() -> None:
    once = normalize_numbers("account twenty three forty five, pin oh oh one")
    assert once == "account 2345, pin 001"
    assert normalize_numbers(once) == once
