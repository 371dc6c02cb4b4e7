"""The operations endpoint of a running ``voicebot run``: /metrics moves during a real call, /healthz
answers, /readyz goes unready while the instance drains after SIGTERM (and calls still finish)."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import TRANSFER_TARGET, needs_tools
from tests.e2e.harness import DTMF_0_PCAP, Voicebot, call, explain, new_call_id, start_voicebot
from tests.e2e.test_calls import refer_to_regexp
from tests.sip.peers import SippResult

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sample(text: str, name: str) -> float:
    """The value of one metric line (exact name with labels) in the exposition text."""
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def dtmf_call(bot: Voicebot, tmp_path: Path, label: str) -> SippResult:
    return await call(bot, "caller_refer", tmp_path, call_id=new_call_id(label), timeout_s=60,
                      pcap=DTMF_0_PCAP, pause_ms=3000, refer_timeout_ms=40000, bye_timeout_ms=15000,
                      refer_to_regexp=refer_to_regexp(TRANSFER_TARGET), name=f"caller_refer_{label}")


async def test_metrics_move_during_a_call_and_readyz_drains(tmp_path: Path, tts_cache: Path) -> None:
    port = free_tcp_port()
    bot = start_voicebot(tmp_path / "bot", tts_cache=tts_cache, transfer_target=TRANSFER_TARGET,
                         extra_args=("--http-listen", f"127.0.0.1:{port}", "--grace-s", "30"))
    try:
        assert bot.ready_event.get("http") == f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            assert (await http.get("/readyz")).status_code == 200
            before = (await http.get("/metrics")).text
            assert sample(before, "voicebot_calls_active") == 0.0

            # Call 1 runs to its end: the caller keys 0 after 3 s, the robot transfers and hangs up.
            first = asyncio.create_task(dtmf_call(bot, tmp_path, "ops1"))
            active = 0.0
            for _ in range(50):
                active = sample((await http.get("/metrics")).text, "voicebot_calls_active")
                if active == 1.0:
                    break
                await asyncio.sleep(0.1)
            assert active == 1.0, "the call never showed in voicebot_calls_active"
            result = await first
            assert result.returncode == 0, explain(result, tmp_path, "caller_refer_ops1", bot)
            after = ""
            for _ in range(100):  # the pipeline writes its last record lines after the BYE
                after = (await http.get("/metrics")).text
                if sample(after, "voicebot_calls_active") == 0.0:
                    break
                await asyncio.sleep(0.1)
            assert sample(after, "voicebot_calls_active") == 0.0
            assert sample(after, 'voicebot_calls_total{direction="inbound",outcome="completed"}') == 1.0
            hangups = re.findall(r'^voicebot_hangups_total\{cause="([^"]+)",side="([^"]+)"\} 1\.0$', after,
                                 re.MULTILINE)
            assert len(hangups) == 1, after
            # SIP answers by code, recognition sessions by reason, and the embedded recognizer's own
            # counters moved with the call.
            assert sample(after, 'voicebot_sip_responses_total{code="200"}') >= 1.0, after
            assert sample(after, 'voicebot_recognizer_sessions_total{reason="start"}') == 1.0, after
            assert sample(after, 'voicebot_stt_sessions_total{code="OK"}') >= 1.0, after

            # Call 2, SIGTERM mid-call: unready at once (a balancer stops sending calls), still
            # healthy, and the running call goes on to its transfer before the process exits.
            second = asyncio.create_task(dtmf_call(bot, tmp_path, "ops2"))
            for _ in range(50):
                if sample((await http.get("/metrics")).text, "voicebot_calls_active") == 1.0:
                    break
                await asyncio.sleep(0.1)
            bot.proc.send_signal(signal.SIGTERM)
            reply = None
            for _ in range(30):
                reply = await http.get("/readyz")
                if reply.status_code == 503:
                    break
                await asyncio.sleep(0.1)
            assert reply is not None and reply.status_code == 503, reply
            assert reply.json() == {"status": "unready", "reason": "draining"}
            assert (await http.get("/healthz")).status_code == 200
            assert sample((await http.get("/metrics")).text, "voicebot_draining") == 1.0
            result = await second
            assert result.returncode == 0, explain(result, tmp_path, "caller_refer_ops2", bot)
        assert bot.proc.wait(40) == 0
    finally:
        bot.stop()
