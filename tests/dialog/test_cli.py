"""``voicebot dialplan check`` and ``voicebot dialplan graph``."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.cli import main

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
DEMO = str(ROOT / "dialplans" / "demo.yaml")
REMINDER = str(ROOT / "dialplans" / "reminder.yaml")
BROKEN = str(Path(__file__).parent / "broken" / "missing_target.yaml")


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "check", DEMO, REMINDER]) == 0
    out = capsys.readouterr().out
    assert f"{DEMO}: ok (9 states, start 'menu')" in out
    assert f"{REMINDER}: ok (6 states, start 'ask')" in out


def test_check_broken_prints_every_problem_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "check", DEMO, BROKEN]) == 1
    captured = capsys.readouterr()
    errors = captured.err.splitlines()
    assert errors == [
        f"{BROKEN}:9: state 'menu' listen intent 'balance': goto 'ask_acount' is not a state "
        "(did you mean 'ask_account'?)",
        f"{BROKEN}:11: state 'menu' no_match: goto 'operater' is not a state (did you mean 'operator'?)",
        f"{BROKEN}:12: state 'ask_account' is unreachable from start state 'menu'",
    ]
    assert "demo.yaml: ok" in captured.out


def test_graph_dot_names_every_state_and_edge(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "graph", DEMO]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith('digraph "demo" {')
    for state in ("menu", "ask_account", "lookup", "read_balance", "goodbye", "transfer_to_operator"):
        assert f'"{state}" [' in dot
    assert '"menu" -> "ask_account" [label="balance / 1"];' in dot
    assert '"__any_listening_state__" -> "goodbye" [label="goodbye / #", style=dashed];' in dot
    assert '"lookup" -> "lookup_failed" [label="webhook error"];' in dot
    # The low-confidence path: unsure -> "did you say ...?" -> yes: intent / no.
    assert '"menu?" [label="did you say ...?", shape=diamond];' in dot
    assert '"menu" -> "menu?" [label="unsure"];' in dot
    assert '"menu?" -> "ask_account" [label="yes: balance"];' in dot
    assert '"menu?" -> "transfer_to_operator" [label="yes: operator"];' in dot
    assert '"menu?" -> "menu" [label="no"];' in dot
    assert '"lookup?"' not in dot  # a webhook state asks nothing


def test_graph_without_confirm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "quiet.yaml"
    plan.write_text("""
dialplan: quiet
start: menu
confirm: false
states:
  menu:
    prompt: "Press 1."
    listen:
      intents:
        one: {phrases: ["one please"], dtmf: "1", goto: bye}
        two: {phrases: ["two please"], confirm: true, goto: bye}
    no_input: {goto: bye}
    no_match: {goto: bye}
  bye: {hangup: true}
""")
    assert main(["dialplan", "graph", str(plan), "--format", "mermaid"]) == 0
    text = capsys.readouterr().out
    assert '  c_menu{"did you say ...?"}' in text
    assert '  c_menu -->|"yes: two"| s_bye' in text
    assert '"yes: one"' not in text  # the dialplan turned confirming off; only "two" turns it on


def test_graph_mermaid_to_file(tmp_path: Path) -> None:
    out = tmp_path / "reminder.mmd"
    assert main(["dialplan", "graph", REMINDER, "--format", "mermaid", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("flowchart LR\n")
    assert '  s_ask -->|"confirm / 1"| s_confirmed' in text
    assert '  any_listening_state -.->|"goodbye"| s_no_answer' in text
    assert '  s_ask -->|"unsure"| c_ask' in text


def test_graph_of_a_broken_plan_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "graph", BROKEN]) == 1
    assert "is not a state" in capsys.readouterr().err
