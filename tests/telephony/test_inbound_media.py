"""sipp calls in with media; what a CallLeg hands out is checked against the pcap sipp played.

The reference decode of G.711 is written here from the ITU-T G.711 segment rules, independent of
``audioop`` (which voicebot.media.g711 uses). Speech comes from espeak-ng through
voicebot.testing.speech, written as RTP with voicebot.testing.pcap.write_rtp_pcap and played by
sipp's ``play_pcap_audio``; digits come from the DTMF pcaps sipp ships.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.telephony.conftest import config
from tests.telephony.legs import next_leg, record
from tests.telephony.sipp import Info, Pause, Play, Step, run_uac, uac_scenario
from voicebot.media.frames import FrameKind
from voicebot.rtp.packet import RtpPacket
from voicebot.telephony import CallLeg, DigitReceived, LegEnded, Telephony
from voicebot.testing.pcap import read_udp, write_rtp_pcap
from voicebot.testing.speech import telephone_speech

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
                       reason="sipp and espeak-ng come from scripts/setup"),
]

SIPP_SHARE = Path("/usr/share/sip-tester")


def ulaw_reference(code: int) -> int:
    """G.711 mu-law to linear (ITU-T G.711 Table 2): bias 0x84, 3-bit segment, 4-bit mantissa."""
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - magnitude if code & 0x80 else magnitude - 0x84


def alaw_reference(code: int) -> int:
    """G.711 A-law to linear (ITU-T G.711 Table 1): even bits inverted (0x55), segment, mantissa."""
    code ^= 0x55
    segment = (code & 0x70) >> 4
    magnitude = (code & 0x0F) << 4
    magnitude += 8 if segment == 0 else 0x108
    if segment > 1:
        magnitude <<= segment - 1
    return magnitude if code & 0x80 else -magnitude


def reference_decode(pcap: Path, payload_type: int) -> bytes:
    """The pcap's audio payloads in sequence order, decoded sample by sample with the tables above."""
    packets = sorted((RtpPacket.parse(d.payload) for d in read_udp(pcap)), key=lambda p: p.sequence_number)
    table = ulaw_reference if payload_type == 0 else alaw_reference
    out = bytearray()
    for packet in packets:
        assert packet.payload_type == payload_type
        for code in packet.payload:
            out += table(code).to_bytes(2, "little", signed=True)
    return bytes(out)


def peak(pcm: bytes) -> int:
    return max((abs(int.from_bytes(pcm[i:i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)),
               default=0)


def assert_speech_exact(received: bytes, reference: bytes, leg: CallLeg) -> None:
    """The reference appears whole and unchanged; before it only digital silence (jitter-buffer
    start-up), after it only the fade-out of the last frame (concealment) and silence."""
    start = received.find(reference)
    assert start >= 0, (f"speech not found bit-exact in {len(received)} bytes received "
                        f"(reference {len(reference)} bytes); {leg.stats()}")
    assert start % 2 == 0
    assert received[:start] == bytes(start), "non-silent audio before the speech"
    tail = received[start + len(reference):]
    assert peak(tail) <= peak(reference[-320:]), "audio after the speech louder than its last frame"


@pytest.fixture
async def deep_buffer() -> AsyncIterator[Telephony]:
    """A jitter buffer deep enough (400 ms) that a stall of sipp or of this loop on the shared
    machine delays the audio instead of concealing a gap: these tests check decoding, not jitter."""
    async with Telephony(config(jitter_target_ms=400, jitter_max_ms=1000)) as tel:
        yield tel


@pytest.mark.parametrize("delivery", ["frames", "handler"])
async def test_speech_pcap_frames_are_bit_exact(deep_buffer: Telephony, tmp_path: Path,
                                                delivery: str) -> None:
    telephony = deep_buffer
    speech = telephone_speech("seven three one, please transfer me", law="ulaw")
    pcap = tmp_path / "speech.pcap"
    packets = write_rtp_pcap(pcap, speech, payload_type=0)
    scenario = uac_scenario([Play(pcap, packets * 20 + 600)])
    sipp = asyncio.create_task(run_uac(scenario, tmp_path, telephony.sip_address))
    leg = await next_leg(telephony)
    assert leg.direction == "inbound" and leg.from_uri.startswith("sip:+15550001111@")
    handled = bytearray()
    if delivery == "handler":
        leg.set_frame_handler(lambda frame: handled.extend(frame.pcm))  # installed when media starts
    await leg.answer()
    rec = await record(leg)
    result = await sipp
    assert result.returncode == 0, result.explain()
    if delivery == "handler":
        assert rec.frames == 0 and rec.frames_done  # frames() got nothing but still ended
        rec.pcm = handled
    reference = reference_decode(pcap, 0)
    # The writer pads the last packet to 20 ms; otherwise the independent decode is the input.
    assert reference[: len(speech)] == speech and not any(reference[len(speech):])
    assert_speech_exact(bytes(rec.pcm), reference, leg)
    if delivery == "frames":
        # Each frame keeps the kind the jitter buffer gave it: silence before the first packet,
        # the speech itself as received audio (nothing concealed with a 400 ms buffer).
        start = bytes(rec.pcm).find(reference)
        first, last = -(-start // 320), (start + len(speech)) // 320
        assert rec.kinds[0] is FrameKind.SILENCE
        assert set(rec.kinds[first:last]) == {FrameKind.AUDIO}
    assert rec.events == [LegEnded("bye", "remote", None, "")]
    stats = leg.stats()
    assert (stats.codec, stats.packets_received, stats.lost) == ("PCMU", packets, 0)


async def test_pcma_call_decodes_sipps_alaw_pcap(deep_buffer: Telephony, tmp_path: Path) -> None:
    telephony = deep_buffer
    pcap = SIPP_SHARE / "g711a.pcap"
    reference = reference_decode(pcap, 8)
    scenario = uac_scenario([Play(pcap, 7600)], codecs=("PCMA",))
    sipp = asyncio.create_task(run_uac(scenario, tmp_path, telephony.sip_address))
    leg = await next_leg(telephony)
    await leg.answer()
    assert leg.negotiation is not None
    assert (leg.negotiation.codec, leg.negotiation.payload_type) == ("PCMA", 8)
    rec = await record(leg)
    result = await sipp
    assert result.returncode == 0, result.explain()
    assert_speech_exact(bytes(rec.pcm), reference, leg)
    assert isinstance(rec.events[-1], LegEnded)


async def play_digits(telephony: Telephony, tmp_path: Path, names: list[str]) -> list[DigitReceived]:
    steps = [Play(SIPP_SHARE / f"dtmf_2833_{name}.pcap", 400) for name in names]
    sipp = asyncio.create_task(run_uac(uac_scenario([Pause(200), *steps]), tmp_path, telephony.sip_address))
    leg = await next_leg(telephony)
    await leg.answer()
    rec = await record(leg)
    result = await sipp
    assert result.returncode == 0, result.explain()
    assert rec.events[-1] == LegEnded("bye", "remote", None, "")
    return [e for e in rec.events if isinstance(e, DigitReceived)]


async def test_rfc4733_digits_each_reported_once(telephony: Telephony, tmp_path: Path) -> None:
    # sipp's pcaps share one SSRC and are not re-stamped on playback, so the 0 (ts 17632) comes
    # after the 5 (ts 43200) under an older timestamp: a new event all the same (marker bit).
    digits = await play_digits(telephony, tmp_path, ["1", "5", "0", "pound"])
    assert digits == [DigitReceived(d, "rfc4733") for d in ["1", "5", "0", "#"]]


async def test_info_and_rfc4733_digits_form_one_stream(telephony: Telephony, tmp_path: Path) -> None:
    """A digit sent both ways within the duplicate window is one key press; others all arrive."""
    steps: list[Step] = [Info("4"), Pause(300), Play(SIPP_SHARE / "dtmf_2833_9.pcap", 400), Pause(700),
             Info("9"), Pause(700), Play(SIPP_SHARE / "dtmf_2833_star.pcap", 80), Info("*"), Pause(300)]
    sipp = asyncio.create_task(run_uac(uac_scenario(steps), tmp_path, telephony.sip_address))
    leg = await next_leg(telephony)
    await leg.answer()
    rec = await record(leg)
    result = await sipp
    assert result.returncode == 0, result.explain()
    digits = [e for e in rec.events if isinstance(e, DigitReceived)]
    assert [d.digit for d in digits] == ["4", "9", "9", "*"]
    assert [d.source for d in digits[:3]] == ["info", "rfc4733", "info"]
    assert leg.stats().digits_duplicate == 1
