"""The asyncio adapter on real 127.0.0.1 sockets: the RFC 4475 corpus over UDP, two endpoints
calling each other, and a scanner flood that must not starve a real call."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicebot.sip.config import UaConfig
from voicebot.sip.events import InfoDtmfReceived, RemoteMediaChanged
from voicebot.sip.message import Response, parse_message
from voicebot.sip.transaction import TimerConfig
from voicebot.sip.udp import Call, CallFailed, IncomingCall, SipEndpoint

from .peers import free_udp_port, run_sipp
from .test_rfc4475 import CORPUS, EXPECTED

pytestmark = [pytest.mark.adapter, pytest.mark.timeout(90)]


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    # force_rport: the torture messages' Vias name example.com hosts on port 5060; answering
    # to the source port keeps every response on this test's own socket.
    ep = SipEndpoint(UaConfig(local_host="127.0.0.1", local_port=0, force_rport=True, rate_limit_burst=200))
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


async def _recv_all(
    sock: socket.socket, wait_s: float, until: bytes | None = None, call_id: bytes | None = None
) -> list[bytes]:
    """Datagrams arriving within ``wait_s``; stop early at one that starts with ``until`` (of ``call_id``)."""
    loop = asyncio.get_running_loop()
    out: list[bytes] = []
    deadline = loop.time() + wait_s
    while (left := deadline - loop.time()) > 0:
        try:
            out.append(await asyncio.wait_for(loop.sock_recv(sock, 65535), left))
        except TimeoutError:
            break
        if until is not None and out[-1].startswith(until) and _call_id(out[-1]) == call_id:
            break
    return out


def _status(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


def _call_id(data: bytes) -> bytes | None:
    match = re.search(rb"(?im)^(?:call-id|i)[ \t]*:[ \t]*(\S+)", data)
    return match.group(1) if match else None


async def test_torture_corpus_over_udp_then_a_normal_call(endpoint: SipEndpoint, tmp_path: Path) -> None:
    rejected: list[str] = []

    async def app() -> None:
        async for call in endpoint.incoming():
            rejected.append(call.call_id)
            call.reject(480)

    app_task = asyncio.create_task(app())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        for name in sorted(EXPECTED):
            data = (CORPUS / f"{name}.dat").read_bytes()
            await loop.sock_sendto(sock, data, endpoint.local_address)
            _, expected = EXPECTED[name]
            final = b"SIP/2.0 480" if expected == "call" else f"SIP/2.0 {expected} ".encode()
            got = await _recv_all(
                sock, 2.0 if expected is not None else 0.1, until=final, call_id=_call_id(data)
            )
            # earlier calls' 480s are retransmitted (nobody ACKs them here): keep this message's
            codes = [_status(d) for d in got if _call_id(d) == _call_id(data)]
            if expected is None:
                assert codes == [], name
            elif expected == "call":
                assert codes[:2] == [100, 480], name
            else:
                assert codes and codes[-1] == expected, (name, codes)
    finally:
        sock.close()
    assert len(rejected) == sum(1 for _, what in EXPECTED.values() if what == "call")
    app_task.cancel()
    # ... and the UA still answers a real call from sipp.
    sipp = asyncio.create_task(run_sipp("uac_bye", tmp_path, remote=endpoint.local_address))
    call = await endpoint.next_call(timeout_s=10)
    call.answer("127.0.0.1", free_udp_port())
    await call.established(timeout_s=10)
    assert (await call.ended(timeout_s=10)).cause == "remote_bye"
    result = await sipp
    assert result.returncode == 0, result.explain()


async def test_two_endpoints_call_each_other() -> None:
    answered: list[IncomingCall] = []

    async def on_call(call: IncomingCall) -> None:
        answered.append(call)
        call.ringing()
        call.answer("127.0.0.1", 41000)

    async with (
        SipEndpoint(UaConfig(user="bot"), on_call=on_call) as callee,
        SipEndpoint(UaConfig(user="caller")) as caller,
    ):
        host, port = callee.local_address
        call = await caller.invite(f"sip:bot@{host}:{port}", local_rtp_port=42000)
        negotiation = await call.answered(timeout_s=10)
        assert negotiation is not None and negotiation.remote_rtp_port == 41000
        inbound = answered[0]
        assert inbound.negotiation is not None and inbound.negotiation.remote_rtp_port == 42000
        await inbound.established(timeout_s=10)
        inbound.send_dtmf_info("7")
        assert await _next_of(call, InfoDtmfReceived) == InfoDtmfReceived(call.call_id, "7", 160)
        call.update_media(local_rtp_port=42002)  # re-INVITE: the caller moved its RTP port
        moved = await _next_of(inbound, RemoteMediaChanged)
        assert isinstance(moved, RemoteMediaChanged) and moved.negotiation.remote_rtp_port == 42002
        own = await _next_of(call, RemoteMediaChanged)  # the answer to our own re-INVITE
        assert isinstance(own, RemoteMediaChanged) and own.negotiation.direction == "sendrecv"
        inbound.hold()
        held = await _next_of(call, RemoteMediaChanged)
        assert isinstance(held, RemoteMediaChanged) and held.negotiation.direction == "recvonly"
        call.hangup()
        ended = await inbound.ended(timeout_s=10)
        assert ended.cause == "remote_bye"
        assert (await call.ended(timeout_s=10)).cause == "local_bye"


async def _next_of(call: Call, kind: type) -> object:
    while True:
        event = await call.next_event(timeout_s=10)
        if isinstance(event, kind):
            return event


async def test_scanner_flood_does_not_starve_a_real_call() -> None:
    config = UaConfig(rate_limit_per_s=10, rate_limit_burst=20)
    async with SipEndpoint(config, bind_host="127.0.0.1") as ep:
        scanner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        scanner.bind(("127.0.0.2", 0))  # another loopback address: another source IP
        scanner.setblocking(False)
        loop = asyncio.get_running_loop()
        sport = scanner.getsockname()[1]
        try:
            for n in range(300):
                via = f"SIP/2.0/UDP 127.0.0.2:{sport};branch=z9hG4bKscan{n};rport"
                msg = (
                    f"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
                    f"From: <sip:scan@127.0.0.2>;tag={n}\r\nTo: <sip:100@127.0.0.1>\r\nCall-ID: scan{n}\r\n"
                    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                )
                await loop.sock_sendto(scanner, msg.encode(), ep.local_address)
            answers = await _recv_all(scanner, 0.5)
        finally:
            scanner.close()
        assert 20 <= len(answers) <= 40  # the burst, plus what refilled while sending
        assert all(isinstance(parse_message(a), Response) for a in answers)
        # every scanner datagram that reached the UA was either answered or counted as limited
        # (the kernel may drop some of a 300-packet burst before the UA sees them)
        stats = ep.ua.stats
        assert stats.rate_limited + len(answers) == stats.datagrams_in
        assert stats.rate_limited >= 100
        async with SipEndpoint(UaConfig(user="caller")) as caller:
            host, port = ep.local_address
            call = await caller.invite(f"sip:bot@{host}:{port}", local_rtp_port=42000)
            inbound = await ep.next_call(timeout_s=5)
            inbound.answer("127.0.0.1", 41000)
            await call.answered(timeout_s=5)
            call.hangup()
            await inbound.ended(timeout_s=5)


async def test_outbound_failures_raise_call_failed() -> None:
    fast = TimerConfig(t1_s=0.02)  # Timer B = 64*T1 = 1.28 s

    async def busy(call: IncomingCall) -> None:
        call.reject(486)

    async with (
        SipEndpoint(UaConfig(user="bot"), on_call=busy) as callee,
        SipEndpoint(UaConfig(user="caller", timers=fast)) as caller,
    ):
        host, port = callee.local_address
        rejected = await caller.invite(f"sip:bot@{host}:{port}", local_rtp_port=42000)
        with pytest.raises(CallFailed) as info:
            await rejected.answered(timeout_s=5)
        assert info.value.status_code == 486 and info.value.retryable
        dead = await caller.invite(f"sip:nobody@127.0.0.1:{free_udp_port()}", local_rtp_port=42002)
        with pytest.raises(CallFailed) as info:
            await dead.answered(timeout_s=10)
        assert info.value.status_code == 408
        assert (await dead.ended()).cause == "timeout"
