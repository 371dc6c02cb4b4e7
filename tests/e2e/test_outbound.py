"""Outbound: ``voicebot call`` dials a sipp callee running dialplans/reminder.yaml; the callee answers,
says "yes" (synthesized speech from a pcap) into the reminder, and the robot records the
confirmation, says goodbye and hangs up; the process exits 0 and the call record holds the answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import REPO, Pause, Say, answer, speech_pcap, start_voicebot
from tests.sip.peers import free_udp_port

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(180)]


async def test_voicebot_call_runs_the_reminder_and_records_the_confirmation(
    tmp_path: Path, tts_cache: Path, pcap_cache: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("Yes, I will be there."), Pause(12000)])
    callee_port = free_udp_port()
    callee = asyncio.ensure_future(answer(
        "callee_answer", tmp_path, local_port=callee_port, timeout_s=90, invite_timeout_ms=60000,
        pcap=speech.path, pause_ms=0, bye_timeout_ms=60000))
    await asyncio.sleep(0.5)  # sipp binds its port (the robot's INVITE would be retransmitted anyway)
    bot = start_voicebot(tmp_path / "bot", tts_cache=tts_cache,
                         command=("call", f"sip:patient@127.0.0.1:{callee_port}"),
                         dialplan=REPO / "dialplans" / "reminder.yaml",
                         extra_args=("--json", "--var", "name=Alex", "--timeout-s", "30"), wait_ready=False)
    try:
        exit_code = await asyncio.to_thread(bot.proc.wait, 90)
    except subprocess.TimeoutExpired:
        bot.stop()
        raise AssertionError(f"voicebot call did not finish in 90 s\n{bot.log_tail()}") from None
    finally:
        bot.stop()
    result = await callee
    assert result.returncode == 0, f"{result.explain()}\n{bot.log_tail()}"
    assert exit_code == 0, bot.log_tail()
    outcome = json.loads(bot.stdout_path.read_text().strip().splitlines()[-1])
    assert outcome["answered"] and outcome["ok"], outcome
    assert outcome["record"].get("confirmation") == "confirmed", outcome

    record = bot.wait_call_ended(outcome["call_id"])
    summary = record["summary"]
    assert summary["direction"] == "outbound", summary
    assert summary["to_uri"].startswith(f"sip:patient@127.0.0.1:{callee_port}"), summary
    assert summary["hangup_side"] == "robot", summary
    assert [s["state"] for s in record["states"]] == ["ask", "confirmed"], record["states"]
    variables = {v["name"]: v["value"] for v in record["variables"]}
    assert variables.get("confirmation") == "confirmed", variables
    assert any("be there" in u["text"].lower() for u in record["utterances"]), record["utterances"]
