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
    assert f"{REMINDER}: ok (5 states, start 'ask')" in out


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


def test_graph_mermaid_to_file(tmp_path: Path) -> None:
    out = tmp_path / "reminder.mmd"
    assert main(["dialplan", "graph", REMINDER, "--format", "mermaid", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("flowchart LR\n")
    assert '  s_ask -->|"confirm / 1"| s_confirmed' in text
    assert '  any_listening_state -.->|"goodbye"| s_no_answer' in text


def test_graph_of_a_broken_plan_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dialplan", "graph", BROKEN]) == 1
    assert "is not a state" in capsys.readouterr().err
