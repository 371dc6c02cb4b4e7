"""sipp plays a pcap written by voicebot.testing.pcap into an RtpStream; the speech arrives bit-exact.

A minimal UAS scenario answers a hand-written INVITE whose SDP points at the stream, then runs
``play_pcap_audio`` on our pcap of synthesized speech. This checks the pcap writer against the real
consumer (sipp) and the receive path against a real sender. The SIP here is a fixture only.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.sip.peers import free_media_port, free_udp_port
from voicebot.media.g711 import ALAW, ULAW
from voicebot.rtp.dtmf import DtmfEnded, DtmfEventReceived
from voicebot.rtp.jitter import FrameKind, JitterConfig
from voicebot.rtp.packet import RtpPacket
from voicebot.rtp.session import SessionConfig
from voicebot.rtp.udp import MediaClock, PortAllocator, RtpPortRange, RtpStream
from voicebot.testing.pcap import read_udp, write_rtp_pcap
from voicebot.testing.speech import telephone_speech

pytestmark = [
    pytest.mark.adapter,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
                       reason="sipp and espeak-ng come from scripts/setup"),
]

SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer and play a pcap">
  <recv request="INVITE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
    ]]>
  </send>
  <recv request="ACK" />
  <nop>
    <action>
      <exec play_pcap_audio="{pcap}"/>
    </action>
  </nop>
  <recv request="BYE" />
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


def request(method: str, sipp_port: int, our_port: int, cseq: int, body: str = "") -> bytes:
    headers = [
        f"{method} sip:bot@127.0.0.1:{sipp_port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{our_port};branch=z9hG4bK-rtp-{method.lower()}-{cseq}",
        "Max-Forwards: 70",
        f"From: <sip:test@127.0.0.1:{our_port}>;tag=rtptest",
        f"To: <sip:bot@127.0.0.1:{sipp_port}>" + (";tag=x" if method != "INVITE" else ""),
        "Call-ID: rtp-play-pcap@127.0.0.1",
        f"CSeq: {cseq if method != 'ACK' else 1} {method}",
        f"Contact: <sip:test@127.0.0.1:{our_port}>",
    ]
    if body:
        headers.append("Content-Type: application/sdp")
    headers.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


class SippPeer:
    """sipp as a UAS that answers our INVITE and plays one pcap to the stream's port."""

    def __init__(self, tmp_path: Path, pcap: Path) -> None:
        self.tmp_path = tmp_path
        self.pcap = pcap
        self.sipp_port, self.media_port = free_udp_port(), free_media_port()
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind(("127.0.0.1", 0))
        self.our_port = self.sip.getsockname()[1]
        self.process: asyncio.subprocess.Process | None = None

    async def call(self, rtp_port: int) -> None:
        (self.tmp_path / "uas.xml").write_text(SCENARIO.format(pcap=self.pcap))
        self.process = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(self.tmp_path / "uas.xml"), "-i", "127.0.0.1", "-p", str(self.sipp_port),
            "-mp", str(self.media_port), "-m", "1", "-timeout", "60s", "-nostdin", "-trace_err",
            "-error_file", str(self.tmp_path / "errors.log"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.tmp_path,
        )
        sdp = (f"v=0\r\no=test 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
               f"a=rtpmap:101 telephone-event/8000\r\n")
        loop = asyncio.get_running_loop()
        answer = b""
        self.sip.settimeout(0.5)
        for _ in range(20):  # sipp may still be starting: retransmit the INVITE like Timer A would
            self.sip.sendto(request("INVITE", self.sipp_port, self.our_port, 1, sdp),
                            ("127.0.0.1", self.sipp_port))
            try:
                answer = await loop.run_in_executor(None, self.sip.recv, 65535)
                break
            except TimeoutError:
                continue
        assert answer.startswith(b"SIP/2.0 200"), answer[:200]
        self.sip.sendto(request("ACK", self.sipp_port, self.our_port, 1), ("127.0.0.1", self.sipp_port))

    async def hang_up(self) -> None:
        self.sip.sendto(request("BYE", self.sipp_port, self.our_port, 2), ("127.0.0.1", self.sipp_port))
        self.sip.close()
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def receive_audio(stream: RtpStream, samples: int, timeout_s: float) -> bytes:
    audio = b""

    async def read() -> None:
        nonlocal audio
        async for frame in stream.frames():
            if frame.kind is FrameKind.AUDIO:
                audio += frame.pcm
                if len(audio) >= samples * 2:
                    return

    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise AssertionError(f"only {len(audio)} of {samples * 2} bytes of audio arrived; "
                             f"{stream.stats().session}") from None
    return audio


async def open_stream(clock: MediaClock) -> tuple[RtpStream, int]:
    # A deep buffer: sipp and this process share two busy cores, and a stall of either longer than
    # the default 200 ms would (correctly) drop audio; these tests check decoding, not that policy.
    config = SessionConfig(symmetric_latching=True,
                           jitter=JitterConfig(target_delay_ms=60, max_delay_ms=3000))
    stream = RtpStream(clock, PortAllocator(RtpPortRange("127.0.0.1", 0, 0)), config)
    _, rtp_port = await stream.open()
    return stream, rtp_port


async def test_sipp_play_pcap_audio_arrives_bit_exact(tmp_path: Path) -> None:
    speech = telephone_speech("one two three four", law="ulaw")
    pcap = tmp_path / "speech.pcap"
    packets = write_rtp_pcap(pcap, speech, payload_type=0)
    clock = MediaClock()
    stream, rtp_port = await open_stream(clock)
    peer = SippPeer(tmp_path, pcap)
    try:
        await peer.call(rtp_port)
        stream.set_remote(("127.0.0.1", peer.media_port), payload_type=0)
        audio = await receive_audio(stream, len(speech) // 2, packets * 0.02 + 15)
        expected = ULAW.decode(ULAW.encode(speech))
        assert audio[: len(expected)] == expected
        stats = stream.stats().session
        assert stats.jitter.lost == 0
        assert stats.latched_address is None and stats.dropped_stranger == 0  # sipp sends from its SDP port
    finally:
        await peer.hang_up()
        await stream.close()
        clock.stop()


async def test_sipp_shipped_pcma_pcap_decodes_exactly(tmp_path: Path) -> None:
    shipped = Path("/usr/share/sip-tester/g711a.pcap")
    reference = b"".join(ALAW.decode(RtpPacket.parse(d.payload).payload) for d in read_udp(shipped))
    clock = MediaClock()
    stream, rtp_port = await open_stream(clock)
    peer = SippPeer(tmp_path, shipped)
    try:
        await peer.call(rtp_port)
        stream.set_remote(("127.0.0.1", peer.media_port), payload_type=8)
        audio = await receive_audio(stream, len(reference) // 2, 15)
        assert audio[: len(reference)] == reference
    finally:
        await peer.hang_up()
        await stream.close()
        clock.stop()


async def test_sipp_shipped_dtmf_pcap_reports_digit_once(tmp_path: Path) -> None:
    clock = MediaClock()
    stream, rtp_port = await open_stream(clock)
    peer = SippPeer(tmp_path, Path("/usr/share/sip-tester/dtmf_2833_9.pcap"))
    try:
        await peer.call(rtp_port)
        stream.set_remote(("127.0.0.1", peer.media_port), payload_type=0, telephone_event_pt=101)
        seen: list[object] = []

        async def read() -> None:
            async for event in stream.events():
                if isinstance(event, (DtmfEventReceived, DtmfEnded)):
                    seen.append(event)
                if isinstance(event, DtmfEnded):
                    return

        await asyncio.wait_for(read(), 10)
        await asyncio.sleep(0.2)  # any duplicate report would arrive now
        seen.extend(e for e in stream.session.events() if isinstance(e, (DtmfEventReceived, DtmfEnded)))
        assert [(type(e).__name__, e.digit) for e in seen] == [("DtmfEventReceived", "9"), ("DtmfEnded", "9")]
    finally:
        await peer.hang_up()
        await stream.close()
        clock.stop()
