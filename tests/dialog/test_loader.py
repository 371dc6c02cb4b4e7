"""Dialplan loading: the examples load; every broken dialplan gives its exact errors with file:line.

Each file under ``broken/`` marks the line an error must point at with a trailing
``# error: <message>`` comment (several on one line are allowed); the test requires exactly that
set of errors, no more and no fewer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.dialog.errors import DialplanError
from voicebot.dialog.loader import load_dialplan, load_dialplan_text

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
BROKEN = sorted((Path(__file__).parent / "broken").glob("*.yaml"))
MARK = "# error: "


def expected_errors(path: Path) -> list[str]:
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if MARK in line:
            for message in line.split(MARK)[1:]:
                out.append(f"{path}:{number}: {message.strip()}")
    return sorted(out)


def test_there_is_a_broken_corpus() -> None:
    assert len(BROKEN) >= 10
    assert all(expected_errors(p) for p in BROKEN)


@pytest.mark.parametrize("path", BROKEN, ids=[p.stem for p in BROKEN])
def test_broken_dialplan_reports_every_error_with_file_and_line(path: Path) -> None:
    with pytest.raises(DialplanError) as caught:
        load_dialplan(path)
    got = sorted(str(p) for p in caught.value.problems)
    assert got == expected_errors(path)
    # The exception's message is the same lines, so a log shows them all.
    assert sorted(str(caught.value).splitlines()) == got


@pytest.mark.parametrize("name", ["demo", "reminder"])
def test_example_dialplans_load(name: str) -> None:
    plan = load_dialplan(ROOT / "dialplans" / f"{name}.yaml")
    assert plan.name == name
    assert plan.start in plan.states
    for state in plan.states.values():
        assert all(target in plan.states for target in state.targets())


def test_demo_shape() -> None:
    plan = load_dialplan(ROOT / "dialplans" / "demo.yaml")
    assert plan.variables["transfer_target"].startswith("sip:")
    assert {i.name: i.dtmf for i in plan.global_intents} == {"operator": "0", "goodbye": "#"}
    capture = plan.states["ask_account"].listen.capture  # type: ignore[union-attr]
    assert capture is not None
    assert (capture.kind, capture.terminator, capture.inter_digit_timeout_s) == ("digits", "#", 3.0)
    webhook = plan.states["lookup"].webhook
    assert webhook is not None
    assert webhook.url.source == "{balance_url}"
    assert plan.states["menu"].no_input.retries == 1  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "message"), [
    ("", "<string>:1: the file is empty; a dialplan is a YAML mapping"),
    ("a: 1\n---\nb: 2\n", "<string>:2: YAML syntax error: but found another document"),
    ("dialplan: x\n", "<string>:1: top level: missing required key 'states'"),
])
def test_degenerate_files(text: str, message: str) -> None:
    with pytest.raises(DialplanError) as caught:
        load_dialplan_text(text)
    assert message in str(caught.value).splitlines()


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(DialplanError, match=r"missing\.yaml:0: cannot read dialplan: No such file"):
        load_dialplan(tmp_path / "missing.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"dialplan: caf\xe9\n")
    with pytest.raises(DialplanError, match=r"latin1\.yaml:1: not UTF-8 text"):
        load_dialplan(bad)
