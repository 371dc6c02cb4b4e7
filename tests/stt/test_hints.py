"""The recognition-hints extension: wire form, bounds and exact errors (pure)."""

from __future__ import annotations

import pytest

from voicebot.stt.errors import InvalidRequest
from voicebot.stt.hints import (
    HINTS_METADATA_KEY,
    RecognitionHints,
    hints_from_metadata,
    menu_hints,
    parse_hints,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("hints", [
    RecognitionHints(),
    RecognitionHints(mode="free", prompt="Say balance or operator."),
    menu_hints("Main menu.", ["my balance", "operator", "my balance", "goodbye"]),
    RecognitionHints(mode="digits", prompt="Your account number?", min_digits=4, max_digits=8),
    RecognitionHints(mode="yesno", prompt="Did you say operator? Привет"),
])
def test_round_trip_through_metadata(hints: RecognitionHints) -> None:
    (key, value), = hints.to_metadata()
    assert key == HINTS_METADATA_KEY
    assert hints_from_metadata([("authorization", "Api-Key x"), (key.upper(), value)]) == hints


def test_menu_hints_dedupe_in_order() -> None:
    assert menu_hints("", ["b", "a", "b"]).phrases == ("b", "a")


def test_no_hints_key_means_none() -> None:
    assert hints_from_metadata([("authorization", "Bearer t"), ("x-client-request-id", "r")]) is None


@pytest.mark.parametrize(("raw", "message"), [
    (b"\xff", "is not UTF-8 JSON"),
    (b"[1]", "expected a JSON object"),
    (b'{"v":2}', "version 2 is not supported"),
    (b'{"v":1,"mode":"spell"}', "mode 'spell' is not one of free, menu, digits, yesno"),
    (b'{"v":1,"colour":"red"}', "unknown field(s) colour"),
    (b'{"v":1,"phrases":"operator"}', "phrases must be a list of strings"),
    (b'{"v":1,"mode":"digits","min_digits":6,"max_digits":4}', "need 1 <= min_digits (6) <= max_digits (4)"),
    (b'{"v":1,"min_digits":true}', "min_digits must be an integer"),
    (b'{"v":1,"phrases":[" "]}', "is empty or longer than"),
    (b'{"v":1,"prompt":"' + b"x" * 20000 + b'"}', "bytes, at most"),
])
def test_bad_hints_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match="hints: ") as info:
        parse_hints(raw)
    assert message in str(info.value)
