"""Hostile traffic over real loopback sockets (issue 9 items 2 and 3): a second source address
(127.0.0.2) squats call slots or floods BYEs while a real caller and a prober keep working."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from voicebot.sip.config import UaConfig
from voicebot.sip.udp import IncomingCall, SipEndpoint

pytestmark = [pytest.mark.adapter, pytest.mark.timeout(60)]

SDP = "v=0\r\no=a 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"


def invite(port: int, n: int) -> bytes:
    return (
        f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bKsq{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.2>;tag=s{n}\r\nTo: <sip:bot@127.0.0.1>\r\n"
        f"Call-ID: squat{n}@127.0.0.2\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.2:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def bye(port: int, n: int) -> bytes:
    return (
        f"BYE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bKb{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.2>;tag=b{n}\r\nTo: <sip:bot@127.0.0.1>;tag=gone\r\n"
        f"Call-ID: flood{n}@127.0.0.2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def options(port: int, n: int) -> bytes:
    return (
        f"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:{port};branch=z9hG4bKo{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:p@127.0.0.3>;tag=o{n}\r\nTo: <sip:bot@127.0.0.1>\r\n"
        f"Call-ID: probe{n}@127.0.0.3\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def udp_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def answer_all(call: IncomingCall) -> None:
    call.answer("127.0.0.1", 20000)
    await call.ended()


async def test_a_squatting_source_leaves_slots_for_other_callers() -> None:
    # max_calls 6: before the per-source limits, 6 unACKed INVITEs from one address took every slot
    config = UaConfig(local_host="127.0.0.1", local_port=0, max_calls=6, per_source_exempt=())
    async with (
        SipEndpoint(config, on_call=answer_all) as bot,
        SipEndpoint(UaConfig(local_host="127.0.0.1", local_port=0, user="caller")) as caller,
    ):
        squatter = udp_socket("127.0.0.2")
        loop = asyncio.get_running_loop()
        try:
            port = squatter.getsockname()[1]
            for n in range(8):
                await loop.sock_sendto(squatter, invite(port, n), bot.local_address)
            await asyncio.sleep(0.3)
            assert bot.ua.admission.calls_from("127.0.0.2") == 2  # two unACKed calls, then 503s
            assert bot.ua.stats.per_source_rejected == 6
            call = await caller.invite(
                "sip:bot@127.0.0.1", local_rtp_port=20002, destination=bot.local_address
            )
            await call.answered(timeout_s=2)
            call.hangup()
            await call.ended(timeout_s=2)
        finally:
            squatter.close()


async def test_bye_flood_leaves_no_state_and_options_stay_fast() -> None:
    async with SipEndpoint(UaConfig(local_host="127.0.0.1", local_port=0)) as bot:
        attacker, prober = udp_socket("127.0.0.2"), udp_socket("127.0.0.3")
        loop = asyncio.get_running_loop()
        latencies_ms: list[float] = []

        async def flood() -> None:
            port = attacker.getsockname()[1]
            for n in range(1000):  # 1000 BYEs/s for 1 s, to dialogs that do not exist
                await loop.sock_sendto(attacker, bye(port, n), bot.local_address)
                if n % 10 == 9:
                    await asyncio.sleep(0.01)

        async def probe() -> None:
            port = prober.getsockname()[1]
            for n in range(10):
                start = time.perf_counter()
                await loop.sock_sendto(prober, options(port, n), bot.local_address)
                answer = await asyncio.wait_for(loop.sock_recv(prober, 65535), 1.0)
                assert answer.startswith(b"SIP/2.0 200 ")
                assert b"X-Voicebot-Load: 0/100" in answer
                latencies_ms.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.1)

        try:
            await asyncio.gather(flood(), probe())
        finally:
            attacker.close()
            prober.close()
        stats = bot.ua.stats
        assert stats.rate_limited > 800 and stats.stateless_481 < 200
        assert bot.ua.live_transactions == len(latencies_ms)  # the OPTIONS' own, none for the BYEs
        assert sorted(latencies_ms)[len(latencies_ms) // 2] < 50, latencies_ms


async def test_draining_endpoint_answers_options_with_503() -> None:
    async with SipEndpoint(UaConfig(local_host="127.0.0.1", local_port=0, max_calls=16)) as bot:
        prober = udp_socket("127.0.0.3")
        loop = asyncio.get_running_loop()
        port = prober.getsockname()[1]
        try:
            await loop.sock_sendto(prober, options(port, 1), bot.local_address)
            ready = await asyncio.wait_for(loop.sock_recv(prober, 65535), 2.0)
            bot.set_draining(True)
            await loop.sock_sendto(prober, options(port, 2), bot.local_address)
            draining = await asyncio.wait_for(loop.sock_recv(prober, 65535), 2.0)
        finally:
            prober.close()
        assert ready.startswith(b"SIP/2.0 200 ") and b"X-Voicebot-Load: 0/16\r\n" in ready
        assert draining.startswith(b"SIP/2.0 503 Service Unavailable: draining\r\n")
        assert b"Retry-After: 30\r\n" in draining and b"X-Voicebot-Load: 0/16\r\n" in draining
