"""No media and no dialplan before the caller's ACK (issue 9 item 4), over real UDP on 127.0.0.1.

An attacker's INVITE whose SDP ``c=`` names a third party, answered and never ACKed, used to make
the robot play a whole call's prompts there (a reflection amplifier) and the record say
"answered". Now ``CallLeg.answer()`` returns only once the ACK confirmed the call; without one the
leg ends as ``ack-timeout`` (64*T1; T1 is shortened here) and nothing was ever sent.
"""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

from tests.telephony.conftest import config
from tests.telephony.legs import RtpCapture, next_leg
from voicebot.telephony import Telephony

pytestmark = [pytest.mark.adapter, pytest.mark.timeout(60)]


def invite(sip_port: int, local_port: int, media_port: int, call_id: str) -> bytes:
    sdp = ("v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           f"m=audio {media_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n")
    return (f"INVITE sip:bot@127.0.0.1:{sip_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            f"From: <sip:attacker@127.0.0.1>;tag=a1\r\nTo: <sip:bot@127.0.0.1>\r\nCall-ID: {call_id}\r\n"
            f"CSeq: 1 INVITE\r\nContact: <sip:attacker@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


async def test_an_invite_that_is_never_acked_gets_no_media_and_ends_as_ack_timeout() -> None:
    victim = await RtpCapture.open()  # the third party the SDP points at
    async with Telephony(config(sip_t1_s=0.05)) as telephony:  # Timer H = 64*T1 = 3.2 s
        host, sip_port = telephony.sip_address
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        attacker.bind(("127.0.0.1", 0))
        attacker.setblocking(False)
        try:
            attacker.sendto(invite(sip_port, attacker.getsockname()[1], victim.port, "noack@x"),
                            (host, sip_port))
            leg = await next_leg(telephony)
            answered = asyncio.ensure_future(leg.answer())
            await asyncio.sleep(1.0)
            assert not answered.done(), "answer() returned before any ACK: media and the dialplan would start"
            # The app would play its greeting as soon as answer() returns; nothing may have gone out.
            await asyncio.wait_for(answered, 10)
            ended = await asyncio.wait_for(leg.ended(), 10)
            assert ended.cause == "ack-timeout", ended
            await asyncio.sleep(0.3)
            assert victim.packets == [], f"{len(victim.packets)} RTP packets reflected to the third party"
        finally:
            attacker.close()
            if victim.transport is not None:
                victim.transport.close()
