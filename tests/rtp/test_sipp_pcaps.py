"""sipp's shipped RTP captures through our parser, DTMF receiver, G.711 decoder and jitter buffer."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pytest

from tests.media.test_g711 import ref_alaw_decode, ref_ulaw_decode
from voicebot.media.g711 import ALAW, ULAW
from voicebot.rtp.dtmf import DtmfEnded, DtmfEventReceived, DtmfReceiver
from voicebot.rtp.jitter import FrameKind, JitterBuffer
from voicebot.rtp.packet import RtpPacket
from voicebot.testing.pcap import UdpDatagram, read_udp, rtp_from_pcm, write_rtp_pcap, write_udp

pytestmark = pytest.mark.unit

SIPP = Path("/usr/share/sip-tester")
DIGIT_FILES = {str(d): f"dtmf_2833_{d}.pcap" for d in range(10)} | {"#": "dtmf_2833_pound.pcap",
                                                                    "*": "dtmf_2833_star.pcap"}
needs_sipp = pytest.mark.skipif(not SIPP.is_dir(), reason="sip-tester is not installed (scripts/setup)")


@needs_sipp
@pytest.mark.parametrize(("digit", "name"), sorted(DIGIT_FILES.items()))
def test_sipp_dtmf_pcap_decodes_each_digit_once(digit: str, name: str) -> None:
    rx = DtmfReceiver()
    events = []
    for datagram in read_udp(SIPP / name):
        packet = RtpPacket.parse(datagram.payload)
        assert packet.payload_type == 101
        events += rx.receive(packet.timestamp, packet.marker, packet.payload)
    assert [type(e) for e in events] == [DtmfEventReceived, DtmfEnded]
    assert events[0].digit == events[1].digit == digit
    assert isinstance(events[1], DtmfEnded)
    assert events[1].duration_ms == 280  # end packets carry duration 2240 at 8 kHz


@needs_sipp
def test_sipp_g711a_pcap_decodes_exactly_through_the_jitter_buffer() -> None:
    datagrams = list(read_udp(SIPP / "g711a.pcap"))
    packets = [RtpPacket.parse(d.payload) for d in datagrams]
    assert len(packets) == 236
    assert {p.payload_type for p in packets} == {8}
    assert all(len(p.payload) == 240 for p in packets)  # 30 ms packets
    seqs = [p.sequence_number for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
    reference = b"".join(
        struct.pack(f"<{len(p.payload)}h", *(ref_alaw_decode(c) for c in p.payload)) for p in packets
    )
    jb = JitterBuffer()
    frames = []
    # Replay on the capture's own clock: packets arrive every 30 ms, the media clock pulls every 20 ms.
    start_s = datagrams[0].time_s
    pending = list(zip(datagrams, packets, strict=True))
    tick = 0
    while pending or jb.buffered_packets:
        now_s = start_s + tick * 0.020
        while pending and pending[0][0].time_s <= now_s:
            p = pending.pop(0)[1]
            jb.push(p.sequence_number, p.timestamp, p.ssrc, ALAW.decode(p.payload))
        frames.append(jb.pop())
        tick += 1
    audio = [f for f in frames if f.kind is FrameKind.AUDIO]
    leading = len(frames) - len(audio)
    assert leading <= 5  # the target delay, then nothing but audio
    assert [f.kind for f in frames[leading:]] == [FrameKind.AUDIO] * len(audio)
    played = b"".join(f.pcm for f in audio)
    assert played == reference[: len(played)]
    assert len(played) == len(reference)  # 236 * 240 samples = 354 frames, nothing lost
    assert jb.stats().lost == 0


def test_rtp_from_pcm_numbers_packets_continuously() -> None:
    pcm = struct.pack("<800h", *[(i * 37) % 20000 - 10000 for i in range(800)])  # 100 ms
    packets = [RtpPacket.parse(p) for p in rtp_from_pcm(pcm, payload_type=0, sequence_number=65534,
                                                          timestamp=0xFFFFFF00)]
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2]
    assert [p.timestamp for p in packets] == [0xFFFFFF00, 0xFFFFFFA0, 0x40, 0xE0, 0x180]
    assert [p.marker for p in packets] == [True, False, False, False, False]
    decoded = b"".join(ULAW.decode(p.payload) for p in packets)
    assert decoded == b"".join(struct.pack("<h", ref_ulaw_decode(c)) for c in ULAW.encode(pcm))


def test_written_pcap_reads_back(tmp_path: Path) -> None:
    pcm = struct.pack("<1000h", *[(i * 91) % 30000 - 15000 for i in range(1000)])
    path = tmp_path / "speech.pcap"
    count = write_rtp_pcap(path, pcm, payload_type=8, src=("127.0.0.1", 6000), dst=("127.0.0.1", 7000))
    datagrams = list(read_udp(path))
    assert count == len(datagrams) == 7  # 1000 samples -> 6 full frames + a padded tail
    assert [round(d.time_s, 3) for d in datagrams] == [i * 0.02 for i in range(7)]
    assert {(d.src, d.dst) for d in datagrams} == {(("127.0.0.1", 6000), ("127.0.0.1", 7000))}
    decoded = b"".join(ALAW.decode(RtpPacket.parse(d.payload).payload) for d in datagrams)
    assert decoded[:2000] == ALAW.decode(ALAW.encode(pcm))
    assert decoded[2000:] == ALAW.decode(ALAW.silence(120))


def test_write_udp_checksums_ipv4_header(tmp_path: Path) -> None:
    path = tmp_path / "one.pcap"
    write_udp(path, [UdpDatagram(1.5, ("10.0.0.1", 1), ("10.0.0.2", 2), b"xyz")])
    raw = path.read_bytes()
    ip_header = raw[24 + 16 + 14 : 24 + 16 + 14 + 20]
    words = struct.unpack("!10H", ip_header)
    total = sum(words)
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # a valid header sums to all ones
    assert list(read_udp(path)) == [UdpDatagram(1.5, ("10.0.0.1", 1), ("10.0.0.2", 2), b"xyz")]
