"""sipp as a real peer on 127.0.0.1: calls in (CANCEL, BYE both ways, hold, INFO DTMF, codecs,
OPTIONS) and answers our calls (after 401/407 digest challenges, REFER with NOTIFY sipfrag)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebot.sip.auth import Credentials
from voicebot.sip.config import UaConfig
from voicebot.sip.events import (
    CallProgressed,
    CallTerminated,
    Event,
    InfoDtmfReceived,
    RemoteMediaChanged,
    TransferProgressed,
)
from voicebot.sip.headers import parse_auth_params
from voicebot.sip.udp import Call, CallFailed, IncomingCall, SipEndpoint

from .peers import free_udp_port, run_sipp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    ep = SipEndpoint(UaConfig(local_host="127.0.0.1", local_port=0))
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


async def answer_next(ep: SipEndpoint, rtp_port: int | None = None) -> IncomingCall:
    call = await ep.next_call(timeout_s=10)
    call.ringing()
    call.answer("127.0.0.1", rtp_port or free_udp_port())
    await call.established(timeout_s=10)
    return call


async def test_sipp_call_answered_and_sipp_hangs_up(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_bye", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    assert call.from_uri.startswith("sip:+15550001111@127.0.0.1")
    assert call.from_display == "SIPp Caller"
    assert call.negotiation is not None and call.negotiation.codec == "PCMU"
    assert call.negotiation.telephone_event_pt == 101
    ended = await call.ended(timeout_s=10)
    assert ended.cause == "remote_bye"
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_voicebot_hangs_up(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_wait_bye", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    call.hangup()
    assert (await call.ended(timeout_s=10)).cause == "local_bye"
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_cancel_before_answer_gets_487_and_no_200(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_cancel", tmp_path, remote=endpoint.local_address))
    call = await endpoint.next_call(timeout_s=10)
    call.ringing()
    ended = await call.ended(timeout_s=10)
    assert (ended.cause, ended.status_code) == ("cancelled", 487)
    result = await sipp  # the scenario fails on any unexpected 200
    assert result.returncode == 0, result.explain()


async def test_options(endpoint: SipEndpoint, tmp_path: Path) -> None:
    result = await run_sipp("uac_options", tmp_path, remote=endpoint.local_address)
    assert result.returncode == 0, result.explain()


async def test_reinvite_hold_and_unhold(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_hold", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    changes = []
    async for event in call.events():
        if isinstance(event, RemoteMediaChanged):
            changes.append(event.negotiation)
        if isinstance(event, CallTerminated):
            break
    assert [(n.direction, n.on_hold) for n in changes] == [("recvonly", True), ("sendrecv", False)]
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_info_dtmf(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_info", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    digits = [e.digit async for e in call.events() if isinstance(e, InfoDtmfReceived)]
    assert digits == ["5", "#"]
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_pcma_only_offer(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_pcma", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    assert call.negotiation is not None
    assert (call.negotiation.codec, call.negotiation.payload_type, call.negotiation.telephone_event_pt) == (
        "PCMA",
        8,
        None,
    )
    await call.ended(timeout_s=10)
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_codecless_offer_gets_488(endpoint: SipEndpoint, tmp_path: Path) -> None:
    result = await run_sipp("uac_nocodec", tmp_path, remote=endpoint.local_address)
    assert result.returncode == 0, result.explain()
    with pytest.raises(TimeoutError):
        await endpoint.next_call(timeout_s=0.2)


@pytest.mark.parametrize("challenge", [401, 407])
async def test_outbound_call_through_digest_challenge(
    endpoint: SipEndpoint, tmp_path: Path, challenge: int
) -> None:
    port = free_udp_port()
    log_file = tmp_path / "sipp.log"
    extra = ("-trace_logs", "-log_file", str(log_file))
    sipp = asyncio.create_task(run_sipp(f"uas_auth{challenge}", tmp_path, local_port=port, extra=extra))
    await asyncio.sleep(0.3)  # let sipp bind; our INVITE retransmits anyway
    call = await endpoint.invite(
        f"sip:callee@127.0.0.1:{port}",
        local_rtp_port=free_udp_port(),
        credentials=Credentials("bot", "s3cret"),
    )
    # sipp answers only when its verifyauth accepts our Authorization / Proxy-Authorization
    negotiation = await call.answered(timeout_s=15)
    assert negotiation is not None and (negotiation.codec, negotiation.telephone_event_pt) == ("PCMA", 101)
    progress = [e async for e in _drain(call) if isinstance(e, CallProgressed)]
    assert [p.status_code for p in progress] == [180]
    call.hangup()
    assert (await call.ended(timeout_s=10)).cause == "local_bye"
    result = await sipp
    assert result.returncode == 0, result.explain()
    if challenge == 407:
        # sipp cannot verify Proxy-Authorization itself: recompute RFC 2617 digest here.
        line = next(x for x in log_file.read_text().splitlines() if "PROXY-AUTHORIZATION" in x)
        _, params = parse_auth_params(line.split("PROXY-AUTHORIZATION", 1)[1].strip())
        assert (params["realm"], params["nonce"], params["qop"], params["opaque"]) == (
            "sipp.example",
            "4f6b1c2d3e5a",
            "auth",
            "op1",
        )

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5("bot:sipp.example:s3cret")
        ha2 = md5(f"INVITE:{params['uri']}")
        expected = md5(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")
        assert params["response"] == expected
        assert params["uri"] == f"sip:callee@127.0.0.1:{port}"


async def test_outbound_call_with_wrong_password_fails(endpoint: SipEndpoint, tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp("uas_auth401", tmp_path, local_port=port))
    await asyncio.sleep(0.3)
    call = await endpoint.invite(
        f"sip:callee@127.0.0.1:{port}",
        local_rtp_port=free_udp_port(),
        credentials=Credentials("bot", "wrong"),
    )
    with pytest.raises(CallFailed) as info:
        await call.answered(timeout_s=15)
    assert info.value.status_code == 403
    await sipp


async def test_refer_blind_transfer_reports_notify_results(endpoint: SipEndpoint, tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp("uas_refer", tmp_path, local_port=port))
    await asyncio.sleep(0.3)
    call = await endpoint.invite(f"sip:callee@127.0.0.1:{port}", local_rtp_port=free_udp_port())
    await call.answered(timeout_s=15)
    result = await call.refer("sip:agent@127.0.0.1:5099", timeout_s=15)
    assert (result.status_code, result.reason, result.final) == (200, "OK", True)
    seen = [(e.status_code, e.final) async for e in _drain(call) if isinstance(e, TransferProgressed)]
    assert seen == [(202, False), (100, False), (200, True)]
    call.hangup()
    await call.ended(timeout_s=10)
    sipp_result = await sipp
    assert sipp_result.returncode == 0, sipp_result.explain()


async def _drain(call: Call) -> AsyncIterator[Event]:
    """Events already queued on the call, without waiting for more."""
    while True:
        try:
            yield await call.next_event(timeout_s=0.05)
        except TimeoutError:
            return


async def test_concurrent_calls_from_sipp(tmp_path: Path) -> None:
    """Bounded load: 100 calls at 50/s, each held 2 s, so about 100 are up at once."""
    established = 0

    async def on_call(call: IncomingCall) -> None:
        nonlocal established
        call.answer("127.0.0.1", 20000)
        await call.established(timeout_s=15)
        established += 1
        await call.ended(timeout_s=15)

    config = UaConfig(max_calls=250, rate_limit_per_s=200, rate_limit_burst=200)
    async with SipEndpoint(config, on_call=on_call) as ep:
        result = await run_sipp(
            "uac_load",
            tmp_path,
            remote=ep.local_address,
            calls=100,
            timeout_s=40,
            extra=("-r", "50", "-l", "150", "-d", "2000"),
        )
        assert result.returncode == 0, result.explain()
        assert established == 100
        assert ep.ua.active_calls == 0


async def test_register_with_digest_to_sipp_registrar(endpoint: SipEndpoint, tmp_path: Path) -> None:
    port = free_udp_port()
    sipp = asyncio.create_task(run_sipp("uas_register", tmp_path, local_port=port))
    await asyncio.sleep(0.3)
    reg_id = endpoint.register(
        f"sip:127.0.0.1:{port}", aor=f"sip:100@127.0.0.1:{port}", credentials=Credentials("100", "pbxpw")
    )
    for _ in range(100):
        if reg_id in endpoint.registrations:
            break
        await asyncio.sleep(0.05)
    state = endpoint.registrations[reg_id]
    assert (state.registered, state.status_code, state.expires_s) == (True, 200, 60)
    result = await sipp
    assert result.returncode == 0, result.explain()
