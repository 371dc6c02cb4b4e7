"""The intent bench's dialog side, without the model: expectations come from the dialplans, and the
bench's driver routes a transcript the way the real machine does.

If these fail, the bench's scores mean nothing; they do not depend on any recognizer output.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench" / "intent_bench.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("intent_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["intent_bench"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plans(bench: ModuleType) -> dict[str, object]:
    return {name: bench.load_dialplan(path) for name, path in bench.DIALPLANS.items()}


def test_expectations_follow_the_dialplans(bench: ModuleType, plans: dict[str, object]) -> None:
    expect = bench.expected_outcome
    assert expect(plans["demo"], "menu", "menu", "balance") == "ask_account"
    assert expect(plans["demo"], "menu", "menu", "operator") == "transfer_to_operator"  # a global
    assert expect(plans["demo"], "menu", "menu", "goodbye") == "goodbye"
    assert expect(plans["reminder"], "ask", "yesno", "confirm") == "confirmed"
    assert expect(plans["reminder"], "ask", "yesno", "cancel") == "cancelled"
    assert expect(plans["demo"], "ask_account", "digits", "4792") == "lookup:4792"
    assert expect(plans["demo"], "ask_account", "digits", "55") == "no_match"  # min_digits is 4
    assert expect(plans["demo"], "ask_account", "digits", "123456789") == "no_match"  # max is 8
    assert expect(plans["demo"], "menu", "oog", "") == "no_match"


@pytest.mark.parametrize(("plan", "state", "said", "routed"), [
    ("demo", "menu", "Balance.", "ask_account"),
    ("demo", "menu", "Operator, please.", "transfer_to_operator"),
    ("demo", "menu", "What's the weather like?", "no_match"),
    ("demo", "ask_account", "4 7 9 2", "lookup:4792"),
    ("demo", "ask_account", "12", "no_match"),
    ("demo", "ask_account", "goodbye", "goodbye"),
    ("reminder", "ask", "Yes.", "confirmed"),
    ("reminder", "ask", "No.", "cancelled"),
])
def test_driver_routes_like_the_machine(bench: ModuleType, plans: dict[str, object], plan: str, state: str,
                                        said: str, routed: str) -> None:
    reached = bench.Reached(plans[plan], state)
    assert reached.prompt  # the caller heard the state's prompt
    meaning = {"ask": "confirm" if routed == "confirmed" else "cancel"}.get(state, "")
    final = bench.FinalTranscript(now_s=reached.now_s + 1.0, text=said)
    assert reached.answer(final, meaning) == (routed, "")


def test_hints_are_the_machines_own_expectation(bench: ModuleType, plans: dict[str, object]) -> None:
    from voicebot.call.pipeline import hints_for

    reached = bench.Reached(plans["demo"], "menu")
    assert reached.machine.expectation is not None
    assert reached.hints() == hints_for(reached.machine.expectation)  # what a call sends
    menu = reached.hints()
    assert menu.mode == "menu" and "Say balance" in menu.prompt
    assert {"balance", "operator", "goodbye"} <= set(menu.phrases)
    digits = bench.Reached(plans["demo"], "ask_account").hints()
    assert (digits.mode, digits.min_digits, digits.max_digits) == ("digits", 4, 8)
    assert "account number" in digits.prompt


def test_the_first_final_with_text_decides_with_its_alternatives(
        bench: ModuleType, plans: dict[str, object]) -> None:
    case = bench.Case("menu", "demo", "menu", "balance", "balance", "ask_account", "x")
    # The top text misses, an exact alternative is acted on (the dialog weighs it 0.9).
    finals = [[("", 0.0)], [("Ballon", 0.9), ("balance", 0.85)], [("operator", 0.9)]]
    assert bench.route(plans["demo"], case, finals) == ("Ballon", "ask_account", "")
    assert bench.route(plans["demo"], case, [[("", 0.0)]]) == ("", "no_input", "")
    # Every final reaches the dialog, as in a call: a slow "I'm done, goodbye" split in two finals
    # is a no-match re-prompt, then the goodbye.
    bye = bench.Case("menu", "demo", "menu", "I'm done, goodbye", "goodbye", "goodbye", "x")
    split = [[("I'm done.", 0.0)], [("goodbye", 1.0), ("Goodbye.", 0.73)]]
    assert bench.route(plans["demo"], bye, split) == ("goodbye", "goodbye", "")
    assert bench.route(plans["demo"], bye, split[:1]) == ("I'm done.", "no_match", "")
    # A lone hypothesis carries no confidence, as in a call (voicebot.call.pipeline.final_readings).
    lone = bench.final_transcript([("balance", 0.1)], 1.0)
    assert (lone.confidence, lone.alternatives) == (None, ())
    several = bench.final_transcript([("balance", 0.9), ("", 0.5), ("valance", 0.3)], 1.0)
    assert (several.confidence, several.alternatives, several.alternative_confidences) == (
        0.9, ("valance",), (0.3,))


def test_a_guess_is_confirmed_truthfully(bench: ModuleType, plans: dict[str, object]) -> None:
    # "operate her please" is a sound-alike of operator: the dialog asks "Did you say operator?".
    meant = bench.Case("menu", "demo", "menu", "operator", "operator", "transfer_to_operator", "x")
    finals = [[("operate her please", 0.0)]]
    assert bench.route(plans["demo"], meant, finals) == ("operate her please", "transfer_to_operator", "yes")
    other = bench.Case("menu", "demo", "menu", "balance", "balance", "ask_account", "x")
    assert bench.route(plans["demo"], other, finals) == ("operate her please", "no_match", "no")
    oog = bench.Case("oog", "demo", "menu", "x", "", "no_match", "x")
    assert bench.route(plans["demo"], oog, finals) == ("operate her please", "no_match", "no")


def test_every_case_kind_and_voice_is_built(bench: ModuleType, plans: dict[str, object]) -> None:
    from voicebot.testing.voices import DEFAULT_VOICES

    cases = bench.build_cases(plans, DEFAULT_VOICES, bench.KINDS, with_human=True)
    assert {c.kind for c in cases} == set(bench.KINDS)
    assert {c.voice for c in cases} == {v.name for v in DEFAULT_VOICES} | {bench.HUMAN}
    quick = bench.quick_subset(bench._spread(cases))
    assert 30 <= len(quick) <= 45 and {c.kind for c in quick} == set(bench.KINDS)


@pytest.mark.parametrize("which", [1, 2, 3, 4])
def test_a_held_out_set_is_other_phrasings_by_other_voices(
    bench: ModuleType, plans: dict[str, object], which: int
) -> None:
    from voicebot.testing.voices import DEFAULT_VOICES, parse_voice

    def cases(n: int) -> list[Any]:
        names = bench.HELD_OUT_SETS[n].voices
        return bench.build_cases(plans, [parse_voice(v) for v in names], bench.KINDS, with_human=False,
                                 held_out=n)

    held = cases(which)
    others = bench.build_cases(plans, DEFAULT_VOICES, bench.KINDS, with_human=False)
    others += [c for n in bench.HELD_OUT_SETS if n != which for c in cases(n)]
    assert {c.kind for c in held} == set(bench.KINDS)
    assert not {c.text for c in held} & {c.text for c in others}
    assert not {c.voice for c in held} & {c.voice for c in others}
    # Every meaning leads somewhere in the dialplan (an intent's state, or no-match off-topic).
    assert all(c.expected != "no_match" for c in held if c.kind in ("menu", "yesno"))
