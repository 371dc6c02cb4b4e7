"""Whole calls into ``voicebot run``: sipp calls on 127.0.0.1, speaks synthesized speech or RFC 4733
DTMF, and the real robot (SIP user agent, RTP, embedded Whisper recognizer, demo dialplan, records)
answers, understands and acts: REFER to the transfer target, BYE, paced prompts, a call record.

The caller speaks 2 s into the greeting (the menu allows barge-in), so each call takes seconds, not
the greeting's length. Nothing here is mocked; failures carry sipp's error log, the SIP messages
sipp saw and the robot's log tail.
"""

from __future__ import annotations

import itertools
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import TRANSFER_TARGET, needs_tools
from tests.e2e.harness import (
    DTMF_0_PCAP,
    Capture,
    Pause,
    RtpSeen,
    Say,
    Voicebot,
    call,
    explain,
    flows,
    new_call_id,
    sipp_messages,
    sound_runs,
    speech_pcap,
)

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(180)]


def texts(record: dict[str, Any]) -> list[str]:
    return [u["text"].lower() for u in record["utterances"]]


def states(record: dict[str, Any]) -> list[str]:
    return [s["state"] for s in record["states"]]


def refer_to_regexp(target: str) -> str:
    return re.escape(f"<{target}>").replace("<", "&lt;").replace(">", "&gt;")


async def test_saying_operator_gets_refer_then_bye_after_notify_200(
    demo_bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("Let me talk to an operator, please."), Pause(10000)])
    call_id = new_call_id("operator")
    result = await call(demo_bot, "caller_refer", tmp_path, call_id=call_id, timeout_s=60,
                        pcap=speech.path, pause_ms=0, refer_timeout_ms=40000, bye_timeout_ms=15000,
                        refer_to_regexp=refer_to_regexp(TRANSFER_TARGET))
    assert result.returncode == 0, explain(result, tmp_path, "caller_refer", demo_bot)
    messages = sipp_messages(tmp_path, "caller_refer")
    assert f"Refer-To: <{TRANSFER_TARGET}>" in messages
    # the robot hangs up only after the NOTIFY reported the transfer's 200 OK (RFC 3515 §2.4.5)
    assert messages.index("NOTIFY sip:") < messages.rindex("BYE sip:")
    record = demo_bot.wait_call_ended(call_id)
    summary = record["summary"]
    assert any("operator" in t for t in texts(record)), record["utterances"]
    assert summary["transfer_target"] == TRANSFER_TARGET
    assert "200" in (summary["transfer_result"] or ""), summary
    assert summary["hangup_side"] == "robot", summary
    assert states(record)[:1] == ["menu"] and "transfer_to_operator" in states(record), states(record)
    assert record["stt_sessions"], "the call used no recognizer session"


async def test_saying_goodbye_gets_goodbye_prompt_and_bye(
    demo_bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("No thanks, goodbye."), Pause(10000)])
    call_id = new_call_id("goodbye")
    with Capture(tmp_path / "rtp.pcap", demo_bot.rtp_ports) as capture:
        result = await call(demo_bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=60,
                            pcap=speech.path, pause_ms=0, bye_timeout_ms=40000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", demo_bot)
    record = demo_bot.wait_call_ended(call_id)
    assert any("goodbye" in t.replace(" ", "").replace("-", "") for t in texts(record)), record["utterances"]
    assert states(record) == ["menu", "goodbye"], states(record)
    assert record["summary"]["hangup_side"] == "robot", record["summary"]
    # The goodbye prompt was spoken: after the caller's speech, the robot sent audible RTP.
    (port, flow), *_ = flows(capture.datagrams(), demo_bot.rtp_ports).items()
    caller_sound = [p for p in flow["caller"] if p.rms > 300]
    assert caller_sound, f"no caller speech reached robot port {port}"
    spoken_after = [p for p in flow["robot"] if p.time_s > caller_sound[-1].time_s and p.rms > 300]
    assert len(spoken_after) >= 40, "the robot said nothing (>= 0.8 s) after the caller's goodbye"


async def test_rfc4733_digit_0_transfers(demo_bot: Voicebot, tmp_path: Path) -> None:
    call_id = new_call_id("dtmf0")
    result = await call(demo_bot, "caller_refer", tmp_path, call_id=call_id, timeout_s=60,
                        pcap=DTMF_0_PCAP, pause_ms=2500, refer_timeout_ms=40000, bye_timeout_ms=15000,
                        refer_to_regexp=refer_to_regexp(TRANSFER_TARGET))
    assert result.returncode == 0, explain(result, tmp_path, "caller_refer", demo_bot)
    record = demo_bot.wait_call_ended(call_id)
    assert [d["digit"] for d in record["dtmf"]] == ["0"], record["dtmf"]
    assert "transfer_to_operator" in states(record), states(record)
    assert record["summary"]["transfer_target"] == TRANSFER_TARGET


def assert_paced(run: list[RtpSeen]) -> None:
    """One prompt's packets: consecutive sequence numbers, +160 timestamps, sent every 20 ms."""
    seqs = [p.sequence_number for p in run]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs)), "sequence gap"
    stamps = [p.timestamp for p in run]
    assert all((b - a) & 0xFFFFFFFF == 160 for a, b in itertools.pairwise(stamps)), "timestamp step"
    gaps_ms = [(b.time_s - a.time_s) * 1000 for a, b in itertools.pairwise(run)]
    # Generous margins for a busy shared 2-core machine: the median gap is the 20 ms ptime and the
    # prompt takes its real-time length (n packets x 20 ms), not a burst and not a crawl.
    assert 17 <= statistics.median(gaps_ms) <= 23, f"median gap {statistics.median(gaps_ms):.1f} ms"
    span_ms = (run[-1].time_s - run[0].time_s) * 1000
    expected_ms = (len(run) - 1) * 20
    assert 0.9 * expected_ms <= span_ms <= 1.15 * expected_ms + 200, (span_ms, expected_ms)


async def test_silence_twice_hangs_up_and_prompts_arrive_as_20ms_rtp(
    demo_bot: Voicebot, tmp_path: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(45000)])
    call_id = new_call_id("silence")
    with Capture(tmp_path / "rtp.pcap", demo_bot.rtp_ports) as capture:
        result = await call(demo_bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=90,
                            pcap=speech.path, pause_ms=0, bye_timeout_ms=75000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", demo_bot)
    record = demo_bot.wait_call_ended(call_id)
    assert states(record) == ["menu", "goodbye"], states(record)
    assert record["utterances"] == [], record["utterances"]
    assert record["summary"]["hangup_side"] == "robot", record["summary"]

    (_, flow), *_ = flows(capture.datagrams(), demo_bot.rtp_ports).items()
    robot = [p for p in flow["robot"] if p.payload_type == 0]
    assert robot, "no PCMU RTP from the robot"
    # Greeting, "Sorry, I did not hear anything...", "Thank you for calling. Goodbye.": three audible
    # prompts separated by the 6 s no-input timeouts.
    prompts = [r for r in sound_runs([p for p in robot if p.rms > 300], gap_s=1.5) if len(r) >= 25]
    assert len(prompts) == 3, [(round(r[0].time_s - robot[0].time_s, 2), len(r)) for r in prompts]
    for prompt in prompts:
        first, last = robot.index(prompt[0]), robot.index(prompt[-1])
        assert_paced(robot[first : last + 1])
