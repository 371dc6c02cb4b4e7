"""Understanding callers, whole calls (issue 12): sipp speaks into the real ``voicebot run`` with the
demo dialplan and the embedded Whisper recognizer (hints on, as configured by default), and the
call record shows what the robot made of it.

* A caller asks for the operator in words the dialplan does not list verbatim ("I'd like to speak
  to a real person, please": the phrase list has "a person", not with "real" inside it) and is
  transferred (REFER to the target, the record's states menu -> transfer_to_operator). If the robot
  is unsure and asks "did you say operator?", the caller's script answers "Yes." after a pause, as
  a person would; the test checks that a "yes" then followed the question.
* A caller says something unrelated ("What's the weather like today?"): no intent is taken (the
  record stays in the menu), the robot plays the menu's no-match re-prompt after the utterance.
* A caller ends the call in words no phrase list holds ("I'm all done."): the robot asks "did you
  say goodbye?" (a guess by meaning, unless the recognizer's rescoring forced a goodbye phrase onto
  the audio as a guess), and the caller's "Yes." ends the call.

The robot records the call ([recording] enabled) so the record's timeline holds each prompt's text
and each utterance. Nothing is mocked; phrasings are what a caller would say, not what decodes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TRANSFER_TARGET, needs_tools
from tests.e2e.harness import (
    Pause,
    Say,
    Voicebot,
    call,
    explain,
    new_call_id,
    sipp_messages,
    speech_pcap,
    start_voicebot,
)

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]

# dialplans/demo.yaml's menu no-match re-prompt and the confirm question's start.
NO_MATCH_PROMPT = "Sorry, I did not get that."
CONFIRM_PROMPT = "did you say operator"


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Voicebot]:
    """``voicebot run`` on the demo dialplan, recording calls so the record has the prompt timeline."""
    recordings = tmp_path_factory.mktemp("understanding-recordings")
    section = f"\n[recording]\nenabled = true\ndir = {json.dumps(str(recordings))}\n"
    robot = start_voicebot(tmp_path_factory.mktemp("understanding-bot"), tts_cache=tts_cache,
                           transfer_target=TRANSFER_TARGET, config_sections=section)
    try:
        yield robot
    finally:
        robot.stop()


def states(record: dict[str, Any]) -> list[str]:
    return [s["state"] for s in record["states"]]


def marks(record: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    recording = record.get("recording") or {}
    return [m for m in recording.get("marks", []) if m["kind"] == kind]


def refer_to_regexp(target: str) -> str:
    return re.escape(f"<{target}>").replace("<", "&lt;").replace(">", "&gt;")


def timeline(record: dict[str, Any]) -> str:
    rows = [(m["start_ms"], m["kind"], m["text"]) for k in ("prompt", "utterance") for m in marks(record, k)]
    return "\n".join(f"  {start:>7} ms {kind:<9} {text!r}" for start, kind, text in sorted(rows))


async def test_a_menu_request_not_in_the_phrase_list_is_transferred(
    bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    said = "I'd like to speak to a real person, please."
    speech = speech_pcap(pcap_cache, [Pause(2000), Say(said), Pause(9000), Say("Yes."), Pause(10000)])
    call_id = new_call_id("real-person")
    result = await call(bot, "caller_refer", tmp_path, call_id=call_id, timeout_s=90,
                        pcap=speech.path, pause_ms=0, refer_timeout_ms=60000, bye_timeout_ms=15000,
                        refer_to_regexp=refer_to_regexp(TRANSFER_TARGET))
    assert result.returncode == 0, explain(result, tmp_path, "caller_refer", bot)
    assert f"Refer-To: <{TRANSFER_TARGET}>" in sipp_messages(tmp_path, "caller_refer")
    record = bot.wait_call_ended(call_id)
    assert states(record)[:2] == ["menu", "transfer_to_operator"], (states(record), timeline(record))
    assert record["summary"]["transfer_target"] == TRANSFER_TARGET
    utterances = marks(record, "utterance")
    assert utterances and (utterances[0]["text"] or "").strip(), timeline(record)  # routed by speech
    asked = [m for m in marks(record, "prompt") if CONFIRM_PROMPT in (m["text"] or "").lower()]
    if asked:
        # The robot was unsure and asked; the transfer followed the caller's "yes" after the question.
        yes = [u for u in utterances if u["start_ms"] >= asked[0]["start_ms"] - 500
               and "yes" in (u["text"] or "").lower()]
        assert yes, f"transferred after 'did you say operator?' without a yes:\n{timeline(record)}"
    print(f"\nconfirm asked: {bool(asked)}\n{timeline(record)}")


async def test_an_off_topic_question_takes_the_no_match_path(
    bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("What's the weather like today?"), Pause(1000)])
    call_id = new_call_id("off-topic")
    # The caller listens to the answer for 14 s, then hangs up (before a second silence ends the call).
    result = await call(bot, "caller_hangup", tmp_path, call_id=call_id, timeout_s=90,
                        pcap=speech.path, pause_ms=0, hold_ms=int(speech.duration_s * 1000) + 14000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_hangup", bot)
    record = bot.wait_call_ended(call_id)
    assert states(record) == ["menu"], (states(record), timeline(record))  # no intent, no capture
    utterances = [u for u in marks(record, "utterance") if (u["text"] or "").strip()]
    assert utterances, f"nothing was recognized:\n{timeline(record)}"
    reprompts = [m for m in marks(record, "prompt") if NO_MATCH_PROMPT in (m["text"] or "")
                 and m["start_ms"] >= utterances[0]["start_ms"]]
    assert reprompts, f"no no-match re-prompt after the utterance:\n{timeline(record)}"
    assert not [m for m in marks(record, "prompt") if CONFIRM_PROMPT[:11] in (m["text"] or "").lower()], (
        f"the robot took the weather for a guess:\n{timeline(record)}")
    print(f"\n{timeline(record)}")


async def test_words_no_phrase_list_holds_are_asked_about_by_meaning(
    bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("I'm all done."), Pause(9000), Say("Yes."),
                                      Pause(15000)])
    call_id = new_call_id("all-done")
    result = await call(bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=90,
                        pcap=speech.path, pause_ms=0, bye_timeout_ms=60000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", bot)
    record = bot.wait_call_ended(call_id)
    assert states(record) == ["menu", "goodbye"], (states(record), timeline(record))
    assert record["summary"]["hangup_side"] == "robot", record["summary"]
    asked = [m for m in marks(record, "prompt") if "did you say goodbye" in (m["text"] or "").lower()]
    assert asked, f"the robot did not ask about goodbye:\n{timeline(record)}"
    understood = [e for e in bot.log_events("dialog.understood") if e.get("call_id") == call_id]
    guesses = [(e["intent"], e["decision"]) for e in understood if e["decision"] == "confirm"]
    assert guesses == [("goodbye", "confirm")], (understood, timeline(record))
    # Whisper hears these words variously ("I'm all done.", "I'm all the"); no phrase list holds them,
    # so the guess is by meaning, unless the recognizer's own rescoring forced a goodbye phrase onto
    # the audio as a guess (then by the words: the caller hears the same question).
    print(f"\nby meaning: {[e['by_meaning'] for e in understood if e['decision'] == 'confirm']}")
    print(f"\n{timeline(record)}")
