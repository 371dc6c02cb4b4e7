"""A recognizer pool: one of two ``voicebot stt-server``s dies mid-call, the other takes over.

Two ``voicebot stt-server`` processes (the real model) and ``voicebot run --stt-endpoint A,B``
(issue 13: a recognizer pool with gRPC round-robin and health checking). Once the caller's first
sentence is final, the test SIGKILLs the recognizer serving the call's session and does *not*
restart it: the call's next sentences are recognized by the other recognizer (its log has the
sessions of those utterances, started after the kill), and the caller's "goodbye" still ends the
call through the dialplan.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import DIALPLANS, Pause, Say, call, explain, new_call_id, speech_pcap, start_voicebot
from tests.e2e.test_recognizer_restart import SttServer, free_tcp_port

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(300)]

FIRST = "Please check the weather for tomorrow morning."
SECOND = "I would like to pay my electricity bill."


def session_starts(server: SttServer) -> dict[str, datetime]:
    """Every session the server started: our session id (its user_request_id) -> when (UTC)."""
    found: dict[str, datetime] = {}
    for log in server.workdir.glob("stt-server-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "stt.session.started" in line:
                event = json.loads(line)
                found[str(event.get("user_request_id"))] = datetime.fromisoformat(event["timestamp"])
    return found


def sessions_served(server: SttServer) -> set[str]:
    return set(session_starts(server))


async def test_one_recognizer_of_two_killed_mid_call(
    tmp_path: Path, tts_cache: Path, pcap_cache: Path
) -> None:
    key = secrets.token_urlsafe(24)
    key_file = tmp_path / "stt-keys.txt"
    key_file.write_text(key + "\n")
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(SttServer(tmp_path / name, free_tcp_port(), key_file))
    bot = None
    try:
        await asyncio.gather(*(asyncio.to_thread(s.start) for s in servers))
        pool = ",".join(f"127.0.0.1:{s.port}" for s in servers)
        bot = await asyncio.to_thread(
            start_voicebot, tmp_path / "bot", tts_cache=tts_cache, dialplan=DIALPLANS / "dictation.yaml",
            stt_endpoint=pool, env={"VOICEBOT_STT_API_KEY": key})
        speech = speech_pcap(pcap_cache, [Pause(1000), Say(FIRST), Pause(4000), Say(SECOND), Pause(3000),
                                          Say("Goodbye."), Pause(8000)])
        call_id = new_call_id("sttpool")
        caller = asyncio.ensure_future(call(
            bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=speech.duration_s + 40, pcap=speech.path,
            pause_ms=0, bye_timeout_ms=int((speech.duration_s + 30) * 1000)))
        deadline = time.monotonic() + 30
        while not bot.log_events("call.final"):
            assert time.monotonic() < deadline, f"no final for the first sentence\n{bot.log_tail()}"
            assert not caller.done(), caller.result().explain()
            await asyncio.sleep(0.2)
        # The recognizer with the call's latest session holds it now (a dialplan question with
        # hints may already have moved it to a new session, on either recognizer).
        never = datetime.min.replace(tzinfo=UTC)
        dead = max(servers, key=lambda s: max(session_starts(s).values(), default=never))
        survivor = next(s for s in servers if s is not dead)
        dead.kill()
        killed_at = datetime.now(UTC)
        result = await caller
        assert result.returncode == 0, explain(result, tmp_path, "caller_bye", bot)
        record = bot.wait_call_ended(call_id)
    finally:
        if bot is not None:
            bot.stop()
        for server in servers:
            server.stop()

    texts = [u["text"].lower() for u in record["utterances"]]
    sessions = [u["session_id"] for u in record["utterances"]]
    report = f"utterances {texts}; sessions {record['stt_sessions']}"
    assert len(texts) == 3, report
    assert {"weather", "tomorrow", "morning"} & set(re.findall(r"[a-z]+", texts[0])), report
    assert {"electricity", "bill", "like", "would"} & set(re.findall(r"[a-z]+", texts[1])), report
    assert "goodbye" in texts[2].replace(" ", ""), report
    # The sentences after the kill were recognized by the other recognizer, in sessions opened after it.
    survivor_starts = session_starts(survivor)
    for session_id in sessions[1:]:
        assert session_id in survivor_starts and survivor_starts[session_id] > killed_at, report
    assert record["summary"]["hangup_side"] == "robot", report
    # Failover as the survivor saw it: from the kill to the call's first session there.
    failover_s = (min(t for t in survivor_starts.values() if t > killed_at) - killed_at).total_seconds()
    print(f"\nfailover: kill -> session started on the surviving stt-server in {failover_s * 1000:.0f} ms")
    assert 0 <= failover_s < 5, report
    assert [s["state"] for s in record["states"]][-1] == "done", report
