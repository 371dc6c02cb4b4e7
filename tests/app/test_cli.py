"""``voicebot run`` as the README runs it: a process that prints where to call, logs ``app.ready``,
answers calls, and stops cleanly on SIGTERM; bad flags and dialplans fail fast with exit code 2."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.app.callers import run_caller, scenario
from tests.app.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

CALL_LINE = re.compile(r"^voicebot: call (sip:bot@127\.0\.0\.1:(\d+))$")


async def voicebot(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "--log-format", "json", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def test_run_prints_where_to_call_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "calls.db"
    proc = await voicebot("run", "--sip-listen", "127.0.0.1:0", "--rtp-ports", "40000-40999",
                          "--records-db", str(db), "--dialplan", str(REPO / "dialplans/demo.yaml"),
                          "--grace-s", "1", cwd=tmp_path)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
        match = CALL_LINE.match(line)
        assert match, line
        port = int(match.group(2))
        result = await run_caller(scenario(None, end="bye", pause_ms=1000), tmp_path, ("127.0.0.1", port))
        assert result.returncode == 0, result.explain()
        await asyncio.sleep(1.0)  # the call's record is closed right after the BYE
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    events = [json.loads(x) for x in err.decode().splitlines() if x.startswith("{")]
    names = [e["event"] for e in events]
    assert "app.ready" in names and names[-1] == "app.stopped"
    ready = next(e for e in events if e["event"] == "app.ready")
    assert ready["contact"] == match.group(1)
    summaries = [e for e in events if e["event"] == "call.summary"]
    assert len(summaries) == 1 and summaries[0]["cause"] == "bye" and summaries[0]["side"] == "caller"
    # Every line of the call carries its call_id; the app's own lines do not.
    call_id = summaries[0]["call_id"]
    assert all(e.get("call_id") == call_id for e in events if e["event"].startswith(("call.", "dialog.")))
    assert "call_id" not in ready
    listing = await voicebot("calls", "--records-db", str(db), "list", "--json", cwd=tmp_path)
    out, _ = await listing.communicate()
    [row] = [json.loads(x) for x in out.decode().splitlines()]
    assert row["call_id"] == call_id and row["hangup_side"] == "caller" and row["status"] == "ended"


async def test_run_with_a_broken_dialplan_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("dialplan: x\nstart: a\nstates:\n  a:\n    promt: hi\n    hangup: true\n")
    proc = await voicebot("run", "--sip-listen", "127.0.0.1:0", "--dialplan", str(broken),
                          "--records-db", str(tmp_path / "calls.db"), cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert f"voicebot run: {broken}:5: state 'a': unknown key 'promt'" in err.decode()


@pytest.mark.parametrize(("flags", "message"), [
    (("--sip-listen", "localhost"), "--sip-listen: expected HOST:PORT, got 'localhost' (no port)"),
    (("--rtp-ports", "20-10"), "[rtp] ports"),
    (("--transfer-target", "operator"), "[dialog] transfer_target must be a sip: or sips: URI"),
    (("--var", "novalue"), "--var expects NAME=VALUE, got 'novalue'"),
])
async def test_run_rejects_bad_flags_with_exit_2(tmp_path: Path, flags: tuple[str, ...],
                                                 message: str) -> None:
    proc = await voicebot("run", *flags, cwd=tmp_path)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2, err.decode()
    assert message in err.decode()


async def test_run_on_a_busy_sip_port_exits_2_saying_so(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        proc = await voicebot("run", "--sip-listen", f"127.0.0.1:{port}", "--records-db",
                              str(tmp_path / "calls.db"), cwd=tmp_path)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert f"voicebot run: cannot listen for SIP on 127.0.0.1:{port}: Address already in use" in err.decode()
