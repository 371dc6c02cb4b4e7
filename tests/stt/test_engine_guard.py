"""The repetition/hallucination guard (voicebot.stt.guard): pure text rules, no model."""

from __future__ import annotations

import pytest

from voicebot.stt.guard import collapse_repeats, compression_ratio, looks_degenerate, spoken_units

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "collapsed"),
    [
        ("No matter. No matter.", "No matter."),  # the example
        ("Thank you. Thank you. Thank you.", "Thank you."),
        ("Human. Human.", "Human."),  # measured: one "human" (espeak) came back twice
        ("5, 5. 5, 5.", "5, 5."),  # measured: beam 2 on the recording "five five"
        ("Hello, how are you? Hello, how are you?", "Hello, how are you?"),
        ("Check my balance. check my balance.", "check my balance."),  # case and punctuation ignored
        ("I want the the the the balance", "I want the balance"),  # a one-word loop, 4 times
        ("Operator please. Operator please. Operator please. Goodbye.", "Operator please. Goodbye."),
    ],
)
def test_repeated_sentences_and_loops_are_said_once(text: str, collapsed: str) -> None:
    assert collapse_repeats(text) == collapsed
    assert looks_degenerate(text)


@pytest.mark.parametrize(
    "text",
    [
        "no, no",  # real speech repeats short words
        "bye bye",
        "very very good",
        "four five four five",  # an account number
        "4 5 4 5 4 5 4 5",  # digits are left to the digit logic (a loop there is re-decoded)
        "double five double five",
        "My account number is 4567.",
        "Please connect me to the billing department.",
        "",
    ],
)
def test_ordinary_speech_is_left_alone(text: str) -> None:
    assert collapse_repeats(text) == text
    assert not looks_degenerate(text)


@pytest.mark.parametrize(
    "text",
    [
        "My account, ma'er, l'l'l'l'l, please.",  # the looping syllable
        "hahahahahaha",
        "5 5 5 5 5 5 5 5 5 5 5 5 5",  # ran into the token cap (flag below)
    ],
)
def test_degenerate_greedy_results_ask_for_the_beam_fallback(text: str) -> None:
    assert looks_degenerate(text, hit_token_cap=True)


def test_a_letter_stutter_is_degenerate_but_a_repeated_digit_is_not() -> None:
    assert looks_degenerate("My account, ma'er, l'l'l'l'l, please.")
    assert not looks_degenerate("My PIN is 5555.")
    assert not looks_degenerate("5 5 5 5 5 5 5 5 5 5 5 5 5")  # only the token cap marks this one


def test_compression_ratio_flags_long_repetitive_text_only() -> None:
    looped = "I am calling about my bill and " * 6
    assert compression_ratio(looped) > 2.4
    assert looks_degenerate(looped)
    ordinary = "And Mr. John Dashwood had then leisure to consider how much there might be prudently."
    assert compression_ratio(ordinary) < 2.4
    assert compression_ratio("") == 0.0


def test_more_spoken_units_than_the_audio_can_hold_is_a_loop() -> None:
    # Measured: one second of "five five" (a human recording) came back as thirteen fives.
    loop = "5 5 5 5 5 5 5 5 5 5 5 5 5"
    assert spoken_units(loop) == 13 and spoken_units("My PIN is 4792.") == 7
    assert looks_degenerate(loop, voiced_s=1.2)
    assert not looks_degenerate("5 5", voiced_s=1.2)
    assert not looks_degenerate("4 7 9 2 1 0 0 5", voiced_s=2.5)  # 3.2 digits a second: a fast caller
    assert not looks_degenerate("Go forward ten meters.", voiced_s=1.5)
    assert not looks_degenerate("5 5 5 5 5 5", voiced_s=0.2)  # too little audio to judge a rate
