"""The command line parses and dispatches; sub-commands come from each part's cli module."""

import pytest

from voicebot.cli import build_parser, main

pytestmark = pytest.mark.unit


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("voicebot ")


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: voicebot" in capsys.readouterr().out


def test_parser_builds() -> None:
    assert build_parser().prog == "voicebot"
