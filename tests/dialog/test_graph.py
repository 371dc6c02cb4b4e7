"""The state diagram's edges (pure): intents, captures, escalations, webhooks, and the confirm
diamonds, for the example dialplans and small plans."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.dialog.graph import ANY, confirm_node, edges, to_dot, to_mermaid
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEMO = load_dialplan(ROOT / "dialplans" / "demo.yaml")

SMALL = """
dialplan: g
start: ask
{top}
globals:
  help: {{phrases: ["help"], dtmf: "9", {help_confirm}goto: end}}
states:
  ask:
    prompt: "Yes or no?"
    {state}
    listen:
      intents:
        agree: {{builtin: "yes", dtmf: "1", goto: end}}
        disagree: {{builtin: "no", confirm: false, goto: end}}
    no_input: {{retries: 2, goto: end}}
    no_match: {{goto: end}}
  end: {{hangup: true}}
"""


def _edges(top: str = "", state: str = "", help_confirm: str = "") -> list[tuple[str, str, str]]:
    return edges(load_dialplan_text(SMALL.format(top=top, state=state, help_confirm=help_confirm)))


def test_every_edge_of_a_small_plan_in_order() -> None:
    assert _edges() == [
        ("ask", "end", "agree / 1"),
        ("ask", "end", "disagree"),
        ("ask", "end", "no input x3"),
        ("ask", "end", "no match x1"),
        ("ask", "ask?", "unsure"),
        ("ask?", "end", "yes: agree"),
        ("ask?", "end", "yes: help"),   # globals too; "disagree" turned confirming off
        ("ask?", "ask", "no"),
        (ANY, "end", "help / 9"),
    ]


@pytest.mark.parametrize(("top", "state", "help_confirm", "confirmable"), [
    ("confirm: false", "", "", []),
    ("confirm: false", "confirm: true", "", ["agree", "help"]),
    ("", "confirm: false", "confirm: true, ", ["help"]),
    ("", "", "confirm: false, ", ["agree"]),
])
def test_which_intents_a_state_may_ask_about(top: str, state: str, help_confirm: str,
                                             confirmable: list[str]) -> None:
    got = [label.removeprefix("yes: ") for src, _dst, label in _edges(top, state, help_confirm)
           if src == confirm_node("ask") and label.startswith("yes: ")]
    assert got == confirmable
    has_diamond = any(dst == confirm_node("ask") for _src, dst, _label in _edges(top, state, help_confirm))
    assert has_diamond is bool(confirmable)


def test_the_demo_asks_in_its_three_listening_states_only() -> None:
    diamonds = sorted({dst for _src, dst, label in edges(DEMO) if label == "unsure"})
    assert diamonds == ["ask_account?", "menu?", "read_balance?"]
    # The account state has no intents of its own: the globals can be guessed there, and its
    # account number is read back.
    yes = sorted(label for src, _dst, label in edges(DEMO) if src == "ask_account?" and label != "no")
    assert yes == ["yes: digits -> account", "yes: goodbye", "yes: operator"]


def test_dot_and_mermaid_draw_the_diamonds() -> None:
    dot = to_dot(DEMO)
    mermaid = to_mermaid(DEMO)
    for state in ("menu", "ask_account", "read_balance"):
        assert f'"{state}?" [label="did you say ...?", shape=diamond];' in dot
        assert f'  c_{state}{{"did you say ...?"}}' in mermaid
        assert f'  s_{state} -->|"unsure"| c_{state}' in mermaid
        assert f'  c_{state} -->|"no"| s_{state}' in mermaid
    assert dot.count("shape=diamond") == 3


REMINDER = load_dialplan(ROOT / "dialplans" / "reminder.yaml")


def test_answering_machine_branches_leave_the_answered_node() -> None:
    from voicebot.dialog.graph import ANSWERED

    assert [e for e in edges(REMINDER) if e[0] == ANSWERED] == [
        (ANSWERED, "ask", "human"),
        (ANSWERED, "voicemail", "machine"),
        (ANSWERED, "ask", "unknown"),  # no on_unknown: drawn where on_human goes
    ]
    assert edges(DEMO) == [e for e in edges(DEMO) if e[0] != ANSWERED]  # inbound plans: no such node


def test_graph_outputs_show_the_amd_branches_and_the_beep_wait() -> None:
    dot = to_dot(REMINDER)
    assert '"__answered__" [label="answered", shape=ellipse, style=dotted];' in dot
    assert '"__answered__" -> "voicemail" [label="machine", style=dotted];' in dot
    assert '"voicemail" [label="voicemail\\n(after the beep)\\n(hang up)", peripheries=2];' in dot
    mermaid = to_mermaid(REMINDER)
    assert '  answered(("answered"))' in mermaid
    assert '  answered -.->|"machine"| s_voicemail' in mermaid
    assert "answered" not in to_mermaid(DEMO)


def test_record_audio_is_shown_on_the_state() -> None:
    plan = load_dialplan_text(
        "dialplan: p\nstart: a\nstates:\n"
        "  a: {record_audio: pause, prompt: 'Key it.', goto: b}\n"
        "  b: {record_audio: resume, prompt: 'Thanks.', hangup: true}\n"
    )
    dot = to_dot(plan)
    assert '"a" [label="a\\n(recording paused)"];' in dot
    assert '"b" [label="b\\n(recording resumed)\\n(hang up)", peripheries=2];' in dot


def test_a_capture_that_reads_back_gets_the_question_node() -> None:
    plan = load_dialplan_text("""
dialplan: g
start: ask
confirm: false
states:
  ask:
    prompt: "Number?"
    listen:
      digits: {into: n, min_digits: 4, max_digits: 8, confirm: true, goto: end}
    no_input: {retries: 0, goto: end}
    no_match: {retries: 0, goto: end}
  end:
    hangup: true
""")
    got = edges(plan)
    assert ("ask", "ask?", "unsure") in got
    assert ("ask?", "end", "yes: digits -> n") in got
    assert ("ask?", "ask", "no") in got
    assert 'shape=diamond' in to_dot(plan)
