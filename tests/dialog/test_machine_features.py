"""Features the example dialplans do not use: free text, numbers, set, audio prompts, loops."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan_text

pytestmark = pytest.mark.unit

FEATURES = """
dialplan: features
start: name
variables:
  greeting: "Hi"
globals:
  operator: {phrases: ["operator"], dtmf: "0", goto: done}
states:
  name:
    prompt: "Say your name."
    listen:
      timeout_s: 4
      text: {into: caller_name, goto: age}
    no_input: {retries: 0, goto: done}
  age:
    set:
      greeting: "{greeting}, {caller_name}"
    prompt: "{greeting}. How old are you?"
    barge_in: false
    listen:
      number: {into: age, min_digits: 1, max_digits: 3, terminator: "*", goto: done}
    no_input: {retries: 2, goto: done}
    no_match: {retries: 0, goto: done}
  done:
    record:
      summary: "{caller_name}/{age}"
    hangup: true
"""


def test_free_text_is_captured_and_set_builds_on_it() -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    driver.run([
        ("start", None, ["play:Say your name.", "listen"]),
        ("done", None, ["timer:no_input+4"]),
        ("say", "  Ada Lovelace. ", ["cancel:no_input", "play!:Hi, Ada Lovelace. How old are you?", "mute"]),
        ("say", "ignored while the prompt plays", []),
        ("done", None, ["listen", "timer:no_input+5"]),
        ("say", "thirty six", ["cancel:no_input", "record:summary=Ada Lovelace/36", "mute",
                               "hangup:dialplan hangup"]),
    ])
    assert driver.machine.variables["caller_name"] == "Ada Lovelace"
    assert driver.machine.variables["age"] == "36"


@pytest.mark.parametrize(("how", "value"), [
    (("say", "one hundred and five"), "105"), (("say", "42"), "42"), (("dtmf", "042*"), "42"),
    (("say", "twenty three"), "23"), (("dtmf", "7*"), "7"),
])
def test_numbers_spoken_or_keyed(how: tuple[str, str], value: str) -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    driver.run([("start", None, None), ("done", None, None), ("say", "Bo", None), ("done", None, None)])
    driver.act(*how)
    assert driver.machine.state_name == "done"
    assert driver.machine.variables["age"] == value


def test_globals_work_in_a_number_state_but_digits_win_over_global_dtmf() -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    driver.run([("start", None, None), ("done", None, None), ("say", "Bo", None), ("done", None, None)])
    driver.act("dtmf", "0")  # a digit of the age, not the operator
    assert driver.machine.state_name == "age"
    driver.act("say", "operator")
    assert driver.machine.state_name == "done"


def test_a_global_handler_is_not_free_text() -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    driver.run([("start", None, None), ("dtmf", "0", None)])
    assert driver.machine.state_name == "done"
    assert "caller_name" not in driver.machine.variables


def test_absurdly_long_goto_chains_hang_up_instead_of_running_on() -> None:
    # Silent loops are rejected at load (broken/silent_loop.yaml); a 150-state chain is not a loop.
    states = "".join(f"  s{i}: {{goto: s{i + 1}}}\n" for i in range(150)) + "  s150: {hangup: true}\n"
    driver = Driver(load_dialplan_text(f"dialplan: chain\nstart: s0\nstates:\n{states}"))
    commands = [c for c, _ in driver.act("start")]
    assert isinstance(commands[-1], ev.Hangup)
    assert commands[-1].reason == "more than 100 state changes without waiting for the caller at 's100'"
    assert driver.machine.finished


def test_transfer_without_on_error_hangs_up_when_refused() -> None:
    plan = load_dialplan_text("""
dialplan: t
start: x
states:
  x: {transfer: "sip:agent@example.com"}
""")
    driver = Driver(plan)
    driver.run([
        ("start", None, ["transfer:sip:agent@example.com"]),
        ("xfer_fail", "480 Temporarily Unavailable", ["hangup:transfer failed: 480 Temporarily Unavailable"]),
    ])
    assert driver.machine.variables["transfer_error"] == "480 Temporarily Unavailable"


def test_audio_file_prompts_play_by_path(tmp_path: Path) -> None:
    wav = tmp_path / "hello.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x10" * 1600)
    plan = load_dialplan_text("""
dialplan: a
start: x
states:
  x: {audio: hello.wav, barge_in: false, hangup: true}
""", base_dir=tmp_path)
    driver = Driver(plan)
    driver.run([("start", None, [f"play!:{wav.resolve()}"]), ("done", None, ["hangup:dialplan hangup"])])
    assert plan.audio_files() == [wav.resolve()]


def test_events_before_the_call_starts_are_ignored() -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    assert driver.act("say", "hello") == []
    assert driver.act("dtmf", "1") == []
    assert driver.machine.state_name is None


def test_a_second_call_started_is_ignored() -> None:
    driver = Driver(load_dialplan_text(FEATURES))
    driver.act("start")
    assert driver.act("start") == []
    assert driver.machine.transitions == ["name"]
