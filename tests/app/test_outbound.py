"""Outbound calls: the App dials a sipp UAS and runs dialplans/reminder.yaml; ``voicebot call`` as
a process (exit codes: 0 answered and finished, 1 not answered)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.app.callers import answering_scenario, free_udp_port, speech_pcap, start_callee
from tests.app.conftest import REPO, wait_outcomes
from voicebot.app import App
from voicebot.records import SyncCallRecordStore

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


async def test_reminder_call_records_the_confirmation(make_app: Callable[..., App], tmp_path: Path) -> None:
    pcap = speech_pcap(tmp_path / "yes.pcap", "Yes, I will be there", lead_ms=2000)
    sipp, port = await start_callee(answering_scenario(pcap), tmp_path)
    async with make_app(dialplan="dialplans/reminder.yaml", accept_inbound=False,
                        variables={"name": "Alice", "appointment": "on Monday at 9"}) as app:
        outcome = await asyncio.wait_for(app.place_call(f"sip:alice@127.0.0.1:{port}"), 90)
        _, stderr = await asyncio.wait_for(sipp.communicate(), 30)
        assert sipp.returncode == 0, stderr.decode(errors="replace")
        assert outcome.ok and outcome.direction == "outbound", outcome
        assert outcome.dialog is not None
        assert outcome.dialog.record == {"confirmation": "confirmed"}
        assert outcome.side == "robot" and outcome.cause == "bye: dialplan hangup"
        await wait_outcomes(app, 1)
        store = SyncCallRecordStore(app.config.records.path)
        record = store.get_call(outcome.call_id)
        store.close()
        assert record is not None and record.summary.direction == "outbound"
        assert record.summary.to_uri == f"sip:alice@127.0.0.1:{port}"
        variables = {v.name: v.value for v in record.variables}
        assert variables["confirmation"] == "confirmed" and variables["name"] == "Alice"
        assert [s.state for s in record.states] == ["ask", "confirmed"]
        assert "will be there" in record.transcript.lower()


async def test_voicebot_call_exits_1_when_nobody_answers(tmp_path: Path) -> None:
    nobody = free_udp_port()  # nothing listens there: the INVITE times out
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "--log-format", "json", "call", f"sip:bob@127.0.0.1:{nobody}",
        "--timeout-s", "2", "--records-db", str(tmp_path / "calls.db"), "--rtp-ports", "40000-40999",
        "--dialplan", str(REPO / "dialplans/reminder.yaml"),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 1, err.decode(errors="replace")[-3000:]
    assert "call not answered" in out.decode()


async def test_voicebot_call_rejects_a_bad_uri_with_exit_2(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "call", "alice@example.com", cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert "SIP-URI must start with sip: or sips:" in err.decode()


async def test_voicebot_call_interrupted_while_ringing_cancels_and_exits_1(tmp_path: Path) -> None:
    nobody = free_udp_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "--log-format", "json", "call", f"sip:bob@127.0.0.1:{nobody}",
        "--records-db", str(tmp_path / "calls.db"), "--rtp-ports", "40000-40999",
        "--dialplan", str(REPO / "dialplans/reminder.yaml"),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    while b"sip.invite.sent" not in await asyncio.wait_for(proc.stderr.readline(), 60):
        pass
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err.decode(errors="replace")[-3000:]
    assert "call not answered: cancelled" in out.decode()
