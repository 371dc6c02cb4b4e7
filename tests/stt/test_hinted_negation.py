"""Menu rescoring: a phrase without the free decode's negation is only a guess (voicebot.stt.hinted)."""

from __future__ import annotations

import pytest

from voicebot.stt.hinted import drops_negation, negated, phrase_key

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("text", "expected"), [
    ("I won't be there.", True),
    ("I will not be there.", True),
    ("Nope.", True),
    ("I can't make it.", True),
    ("I never said that", True),
    ("I will be there.", False),
    ("Yes, please.", False),
    ("Another time.", False),
    ("Nothing, thanks", True),
    ("Note that", False),  # a word that begins like one is none
])
def test_negated(text: str, expected: bool) -> None:
    assert negated(phrase_key(text)) is expected


@pytest.mark.parametrize(("free", "phrase", "drops"), [
    ("I won't be there.", "i will be there", True),
    ("I will not be there.", "i will be there", True),
    ("I will not be there.", "i will", True),
    ("I won't be there.", "i won't", False),
    ("I won't be there.", "cancel it", True),  # no negation word: the dialog confirms it first
    ("I will be there.", "i can't make it", False),  # adding a negation is no drop
    ("See you then.", "see you", False),
])
def test_drops_negation(free: str, phrase: str, drops: bool) -> None:
    assert drops_negation(phrase_key(free), phrase) is drops
