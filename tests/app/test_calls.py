"""Whole calls through the real pipeline: sipp calls the in-process App (real Telephony, real
embedded recognition server with Whisper base, real espeak-ng prompts, real SQLite records).

What the caller says is synthesized telephone speech played by sipp as RTP; the robot's side is
checked on the wire (sipp's scenario fails if the REFER/BYE does not come) and in the call record.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from tests.app.callers import (
    DTMF_PCAP_DIR,
    REGISTRAR_SCENARIO,
    REGISTRAR_SLOW_FIRST_ANSWER_SCENARIO,
    REGISTRAR_UNREGISTER_SCENARIO,
    run_caller,
    scenario,
    speech_pcap,
    start_callee,
)
from tests.app.conftest import TRANSFER_TARGET, wait_outcomes
from voicebot.app import App
from voicebot.records import CallRecord, SyncCallRecordStore
from voicebot.stt.server import ServerConfig, start_server
from voicebot.telephony import CallFailed, Telephony, TelephonyConfig

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def record_of(app: App, call_id: str) -> CallRecord:
    store = SyncCallRecordStore(app.config.records.path)
    try:
        record = store.get_call(call_id)
    finally:
        store.close()
    assert record is not None, f"no record for {call_id}"
    return record


async def test_saying_operator_barges_in_then_refer_and_bye_after_notify_200(
        app: App, tmp_path: Path) -> None:
    pcap = speech_pcap(tmp_path / "operator.pcap", "I would like to talk to an operator please")
    result = await run_caller(scenario(pcap, end="refer"), tmp_path, app.telephony.sip_address)
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1)
    assert outcome.ok, outcome
    assert outcome.transfer_target == TRANSFER_TARGET
    assert outcome.transfer_result == "200 OK"
    assert outcome.side == "robot" and outcome.cause == "bye: transferred"
    assert any("operator" in u.lower() for u in outcome.utterances), outcome.utterances
    # The menu (9 s, barge-in allowed) was still playing when the caller spoke at 1 s: it stopped.
    assert outcome.barge_in_ms, "the menu prompt was not interrupted"
    assert outcome.barge_in_ms[0] < 1500, outcome.barge_in_ms  # generous: a busy shared 2-core box
    assert outcome.reaction_ms and outcome.reaction_ms[0] < 5000, outcome.reaction_ms
    record = record_of(app, outcome.call_id)
    summary = record.summary
    assert summary.direction == "inbound" and summary.hangup_side == "robot"
    assert summary.transfer_target == TRANSFER_TARGET and summary.transfer_result == "200 OK"
    states = [s.state for s in record.states]
    assert states == ["menu", "transfer_to_operator"]
    assert "operator" in record.transcript.lower()
    sessions = record.stt_sessions
    # The first session opens with the call; the menu's expectation (recognition hints) opens the
    # second before the caller speaks, so the utterance is heard in the hinted session.
    assert len(sessions) == 2 and all(s.ended_at is not None for s in sessions), sessions
    reasons = {s.close_reason: s.session_id for s in sessions}
    assert set(reasons) == {"rotated", "input ended"}, sessions
    assert {u.session_id for u in record.utterances} == {reasons["input ended"]}
    variables = {v.name: v.value for v in record.variables}
    assert variables["outcome"] == "transferred"
    assert variables["transfer_target"] == TRANSFER_TARGET


async def test_rfc4733_digit_0_transfers(app: App, tmp_path: Path) -> None:
    pcap = DTMF_PCAP_DIR / "dtmf_2833_0.pcap"
    result = await run_caller(scenario(pcap, end="refer"), tmp_path, app.telephony.sip_address)
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1)
    assert outcome.ok and outcome.transfer_result == "200 OK", outcome
    record = record_of(app, outcome.call_id)
    assert [d.digit for d in record.dtmf] == ["0"]
    assert [s.state for s in record.states] == ["menu", "transfer_to_operator"]


async def test_refused_transfer_apologizes_and_hangs_up(app: App, tmp_path: Path) -> None:
    pcap = DTMF_PCAP_DIR / "dtmf_2833_0.pcap"
    text = scenario(pcap, end="refer", refer_status="SIP/2.0 486 Busy Here")
    result = await run_caller(text, tmp_path, app.telephony.sip_address)
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1)
    assert outcome.transfer_result == "failed: 486 Busy Here", outcome
    assert outcome.dialog is not None
    assert outcome.dialog.states == ["menu", "transfer_to_operator", "transfer_failed"]
    assert outcome.side == "robot" and outcome.cause == "bye: dialplan hangup"
    summary = record_of(app, outcome.call_id).summary
    assert summary.transfer_result == "failed: 486 Busy Here"


async def test_saying_goodbye_gets_goodbye_and_the_robots_bye(app: App, tmp_path: Path) -> None:
    pcap = speech_pcap(tmp_path / "goodbye.pcap", "Okay, goodbye")
    result = await run_caller(scenario(pcap, end="wait_bye"), tmp_path, app.telephony.sip_address)
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1)
    assert outcome.ok and outcome.side == "robot", outcome
    assert outcome.dialog is not None and outcome.dialog.record.get("outcome") == "goodbye"
    record = record_of(app, outcome.call_id)
    assert "goodbye" in record.transcript.lower().replace(" ", "")
    assert [s.state for s in record.states] == ["menu", "goodbye"]


async def test_caller_hangs_up_mid_prompt(app: App, tmp_path: Path) -> None:
    result = await run_caller(scenario(None, end="bye", pause_ms=1500), tmp_path, app.telephony.sip_address)
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1)
    assert outcome.ok and outcome.cause == "bye" and outcome.side == "caller", outcome
    summary = record_of(app, outcome.call_id).summary
    assert summary.hangup_cause == "bye" and summary.hangup_side == "caller"
    assert summary.answered_at is not None and summary.ended_at is not None


async def _caller() -> Telephony:
    tel = Telephony(TelephonyConfig(sip_host="127.0.0.1", sip_port=0, rtp_port_min=0, rtp_port_max=0))
    await tel.start()
    return tel


async def test_shutdown_refuses_new_calls_with_503_and_ends_running_ones(
        make_app: Callable[..., App]) -> None:
    app = make_app(grace_s=1.0)
    await app.start()
    caller = await _caller()
    try:
        leg = await caller.dial(app.contact_uri, timeout_s=10)
        serving = asyncio.ensure_future(app.serve())
        await asyncio.sleep(0.5)
        app.request_stop()
        await asyncio.sleep(0.2)
        with pytest.raises(CallFailed) as refused:
            await caller.dial(app.contact_uri, timeout_s=10)
        assert refused.value.status_code == 503
        ended = await asyncio.wait_for(leg.ended(), 15)
        assert ended.cause == "bye" and ended.side == "remote"  # the robot hung up after the grace
        await asyncio.wait_for(serving, 15)
        [outcome] = app.outcomes
        # Cut by the shutdown, and recorded as such (issue 9 item 9: it used to say "bye").
        assert (outcome.side, outcome.cause) == ("robot", "shutdown"), outcome
        record = record_of(app, outcome.call_id)
        assert (record.summary.hangup_cause, record.summary.hangup_side) == ("shutdown", "robot")
    finally:
        await caller.stop()
        await app.aclose()


async def test_a_crash_in_one_call_ends_that_call_only(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = app.prompts.open  # what a call's prompt lane asks (first audio, then the rest)

    async def open_crashing_first_call(command: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("renderer exploded")
        return await original(command)  # type: ignore[arg-type]

    monkeypatch.setattr(app.prompts, "open", open_crashing_first_call)
    caller = await _caller()
    try:
        first = await caller.dial(app.contact_uri, timeout_s=10)
        ended = await asyncio.wait_for(first.ended(), 15)
        assert ended.side == "remote"  # the robot ended the broken call
        [outcome] = await wait_outcomes(app, 1)
        assert outcome.error is not None and "renderer exploded" in outcome.error
        assert outcome.cause.startswith("error: ") and outcome.side == "robot"
        summary = record_of(app, outcome.call_id).summary
        assert "renderer exploded" in (summary.hangup_cause or "")
        # The process goes on: the next call is answered and gets its menu prompt.
        second = await caller.dial(app.contact_uri, timeout_s=10)
        heard = 0
        async for frame in second.frames():
            pcm = frame.pcm
            heard += max(abs(int.from_bytes(pcm[i:i + 2], "little", signed=True))
                         for i in range(0, len(pcm), 2)) > 1000
            if heard >= 10:
                break
        assert heard >= 10, "no prompt audio on the second call"
        second.hangup()
        await asyncio.wait_for(second.ended(), 10)
    finally:
        await caller.stop()


async def test_an_external_recognizer_endpoint_with_its_api_key(
        make_app: Callable[..., App], engine: Any, tmp_path: Path) -> None:
    server = await start_server(ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({"key-1"})),
                                engine=engine)
    try:
        endpoint = {"recognizer.mode": "endpoint", "recognizer.endpoint": f"127.0.0.1:{server.port}"}
        async with make_app(overrides=endpoint, env={"VOICEBOT_STT_API_KEY": "key-1"}) as app:
            assert app.stt_target == f"127.0.0.1:{server.port}" and app.stt_settings.api_key == "key-1"
            pcap = speech_pcap(tmp_path / "goodbye.pcap", "Okay, goodbye")
            result = await run_caller(scenario(pcap, end="wait_bye"), tmp_path, app.telephony.sip_address)
            assert result.returncode == 0, result.explain()
            [outcome] = await wait_outcomes(app, 1)
            assert outcome.ok and outcome.dialog is not None, outcome
            assert outcome.dialog.record.get("outcome") == "goodbye"
    finally:
        await server.stop(grace_s=1)


async def test_a_rejected_recognizer_key_ends_the_call_saying_why(make_app: Callable[..., App]) -> None:
    # A separate `voicebot stt-server` process, as a deployment with an external recognizer has.
    # (In-process, a grpc.aio server started on an earlier test's event loop turns this
    # UNAUTHENTICATED into INTERNAL "Internal error from Core": an artifact of one process running
    # many event loops, which voicebot itself never does.)
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voicebot.cli", "--log-level", "warning", "stt-server", "--listen",
        "127.0.0.1:0", env={**os.environ, "VOICEBOT_STT_API_KEYS": "key-1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    caller = await _caller()
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
        port = int(line.strip().rsplit(":", 1)[1])
        endpoint = {"recognizer.mode": "endpoint", "recognizer.endpoint": f"127.0.0.1:{port}"}
        async with make_app(overrides=endpoint, env={"VOICEBOT_STT_API_KEY": "wrong"}) as app:
            leg = await caller.dial(app.contact_uri, timeout_s=10)
            ended = await asyncio.wait_for(leg.ended(), 20)
            assert ended.side == "remote"
            [outcome] = await wait_outcomes(app, 1)
            assert outcome.error is not None and "UNAUTHENTICATED" in outcome.error, outcome
            summary = record_of(app, outcome.call_id).summary
            assert summary.hangup_side == "robot" and "UNAUTHENTICATED" in (summary.hangup_cause or "")
    finally:
        await caller.stop()
        server.terminate()
        await server.wait()


async def test_a_reused_call_id_gets_its_own_record(app: App, tmp_path: Path) -> None:
    text = scenario(None, end="bye", pause_ms=800)
    for run in range(2):
        result = await run_caller(text, tmp_path, app.telephony.sip_address, name=f"caller{run}",
                                  extra=("-cid_str", "reused@caller"))
        assert result.returncode == 0, result.explain()
        await wait_outcomes(app, run + 1)
    assert [o.record_id for o in app.outcomes] == ["reused@caller", "reused@caller;2"]
    for outcome in app.outcomes:
        summary = record_of(app, outcome.record_id).summary
        assert summary.hangup_cause == "bye" and summary.ended_at is not None
        assert len(record_of(app, outcome.record_id).states) == 1


async def test_registers_with_the_configured_registrar(make_app: Callable[..., App], tmp_path: Path) -> None:
    registrar, port = await start_callee(REGISTRAR_SCENARIO, tmp_path, name="registrar")
    overrides = {"sip.registrar": f"sip:127.0.0.1:{port}", "sip.register_user": "robot",
                 "sip.register_expires_s": "120"}
    async with make_app(overrides=overrides, env={"VOICEBOT_SIP_REGISTER_PASSWORD": "pw"}) as app:
        _, stderr = await asyncio.wait_for(registrar.communicate(), 30)
        assert registrar.returncode == 0, stderr.decode(errors="replace")  # challenged, then accepted
        for _ in range(100):
            if app.registered is not None:
                break
            await asyncio.sleep(0.05)
        assert app.registered is True


async def test_shutdown_removes_the_registration_with_expires_0(make_app: Callable[..., App],
                                                                tmp_path: Path) -> None:
    """A PBX must stop sending calls to an instance that is going away (issue 13)."""
    registrar, port = await start_callee(REGISTRAR_UNREGISTER_SCENARIO, tmp_path, name="registrar-bye")
    overrides = {"sip.registrar": f"sip:127.0.0.1:{port}", "sip.register_user": "robot",
                 "sip.register_expires_s": "120"}
    async with make_app(overrides=overrides, env={"VOICEBOT_SIP_REGISTER_PASSWORD": "pw"}) as app:
        for _ in range(200):
            if app.registered is not None:
                break
            await asyncio.sleep(0.05)
        assert app.registered is True
    # Leaving the block closed the app: the registrar got REGISTER with Expires: 0 and answered it.
    _, stderr = await asyncio.wait_for(registrar.communicate(), 30)
    assert registrar.returncode == 0, stderr.decode(errors="replace")


async def test_shutdown_before_the_first_register_is_answered_still_unregisters(
        make_app: Callable[..., App], tmp_path: Path) -> None:
    """The robot stops while its first REGISTER awaits an answer: it must not leave the binding
    that answer makes. The registrar URI carries a password (deprecated, RFC 3261 §19.1.1), which
    must reach no log line."""
    registrar, port = await start_callee(REGISTRAR_SLOW_FIRST_ANSWER_SCENARIO, tmp_path,
                                         name="registrar-slow")
    overrides = {"sip.registrar": f"sip:robot:uri-secret@127.0.0.1:{port}", "sip.register_user": "robot",
                 "sip.register_expires_s": "120"}
    with structlog.testing.capture_logs() as logs:
        async with make_app(overrides=overrides, env={"VOICEBOT_SIP_REGISTER_PASSWORD": "pw"}) as app:
            assert app.registered is None  # no answer yet: the registrar waits a second
    _, stderr = await asyncio.wait_for(registrar.communicate(), 30)
    assert registrar.returncode == 0, stderr.decode(errors="replace")  # challenged, then Expires: 0
    [registering] = [e for e in logs if e["event"] == "app.registering"]
    assert registering["registrar"] == f"sip:robot:***@127.0.0.1:{port}"
    assert not [e for e in logs if "uri-secret" in repr(e)]


async def test_stalls_of_the_robot_while_the_caller_speaks_do_not_cut_the_words(
        app: App, tmp_path: Path) -> None:
    # The robot's event loop blocks twice for 350 ms while sipp goes on sending "Okay, goodbye":
    # the packets that queued meanwhile arrive in bursts, and all of them must reach recognition
    # (they were cut as jitter-buffer overflow, which split the answer into no-matches).
    goodbye = speech_pcap(tmp_path / "goodbye.pcap", "Okay, goodbye")  # speech from 1.0 s
    caller = asyncio.create_task(run_caller(scenario(goodbye, end="wait_bye"), tmp_path,
                                            app.telephony.sip_address))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while app.active_calls == 0 and loop.time() < deadline:  # noqa: ASYNC110 -- a count, no event
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.2)
    time.sleep(0.35)  # noqa: ASYNC251 -- the stall under test (a blocking call, a starved process)
    await asyncio.sleep(0.15)
    time.sleep(0.35)  # noqa: ASYNC251
    result = await caller
    assert result.returncode == 0, result.explain()
    [outcome] = await wait_outcomes(app, 1, timeout_s=30)
    assert outcome.ok and outcome.cause == "bye: dialplan hangup", outcome
    assert outcome.dialog is not None and outcome.dialog.states == ["menu", "goodbye"]
    record = record_of(app, outcome.call_id)
    assert len(record.utterances) == 1, record.utterances


async def test_four_concurrent_calls_each_follow_their_own_caller(app: App, tmp_path: Path) -> None:
    operator = speech_pcap(tmp_path / "operator.pcap", "I would like to talk to an operator please")
    goodbye = speech_pcap(tmp_path / "goodbye.pcap", "Okay, goodbye")
    plans = [("op1", operator, "refer"), ("bye1", goodbye, "wait_bye"), ("op2", operator, "refer"),
             ("bye2", goodbye, "wait_bye")]
    results = await asyncio.gather(*(
        run_caller(scenario(pcap, end=end), tmp_path, app.telephony.sip_address, name=name,
                   extra=("-cid_str", f"{name}-%u@caller"))
        for name, pcap, end in plans))
    for result in results:
        assert result.returncode == 0, result.explain()
    outcomes = {o.call_id.split("-")[0]: o for o in await wait_outcomes(app, 4, timeout_s=30)}
    assert sorted(outcomes) == ["bye1", "bye2", "op1", "op2"]
    for name in ("op1", "op2"):
        o = outcomes[name]
        assert o.ok and o.transfer_result == "200 OK" and o.cause == "bye: transferred", o
        assert o.dialog is not None and o.dialog.states == ["menu", "transfer_to_operator"]
    for name in ("bye1", "bye2"):
        o = outcomes[name]
        assert o.ok and o.transfer_target is None and o.cause == "bye: dialplan hangup", o
        assert o.dialog is not None and o.dialog.states == ["menu", "goodbye"]
    for o in outcomes.values():
        record = record_of(app, o.call_id)
        assert len(record.utterances) == 1 and record.summary.status == "ended"
