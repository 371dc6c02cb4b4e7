"""Whatever is in a dialplan file, loading it either succeeds or raises DialplanError with file:line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicebot.dialog.errors import DialplanError
from voicebot.dialog.loader import load_dialplan_text

pytestmark = pytest.mark.unit

DEMO_LINES = (Path(__file__).parents[2] / "dialplans" / "demo.yaml").read_text().splitlines()
LOCATED = re.compile(r"^demo\.yaml:\d+: \S")


def _load(text: str) -> None:
    try:
        load_dialplan_text(text, file="demo.yaml")
    except DialplanError as exc:
        assert exc.problems, "an error without problems"
        for line in str(exc).splitlines():
            assert LOCATED.match(line), line


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(DEMO_LINES) - 1), min_size=1, max_size=4))
def test_demo_with_lines_deleted(deleted: list[int]) -> None:
    _load("\n".join(line for i, line in enumerate(DEMO_LINES) if i not in set(deleted)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=len(DEMO_LINES) - 1),
    st.sampled_from(["1", "#", "yes", "- x", "{", "[]", "{a: b}", "~", "1e999", "!!binary aGk=", "*x", "&a",
                     "0.5", "-1", "true", "false", "{act_above: 2}"]),
)
def test_demo_with_a_value_replaced(index: int, value: str) -> None:
    lines = list(DEMO_LINES)
    key, sep, _old = lines[index].partition(":")
    if sep:
        lines[index] = f"{key}: {value}"
    _load("\n".join(lines))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc:-{}[]#'\"\n 1&*!|>")), max_size=120))
def test_arbitrary_text(text: str) -> None:
    _load(text)
