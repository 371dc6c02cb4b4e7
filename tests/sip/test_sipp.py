"""sipp as a real peer on 127.0.0.1: calls in, CANCEL, BYE both ways, hold, INFO DTMF, codecs, OPTIONS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebot.sip.udp import IncomingCall, SipEndpoint
from voicebot.sip.useragent import CallEnded, DtmfReceived, MediaChanged, UaConfig

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
        if isinstance(event, MediaChanged):
            changes.append(event.negotiation)
        if isinstance(event, CallEnded):
            break
    assert [(n.direction, n.on_hold) for n in changes] == [("recvonly", True), ("sendrecv", False)]
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_info_dtmf(endpoint: SipEndpoint, tmp_path: Path) -> None:
    sipp = asyncio.create_task(run_sipp("uac_info", tmp_path, remote=endpoint.local_address))
    call = await answer_next(endpoint)
    digits = [e.digit async for e in call.events() if isinstance(e, DtmfReceived)]
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
