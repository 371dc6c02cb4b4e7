"""RtpSession core: two sessions pumped against each other in memory, no sockets, no sleeps."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.media.g711 import ALAW, ULAW
from voicebot.rtp.dtmf import DtmfEnded, DtmfEventReceived, TelephoneEvent
from voicebot.rtp.errors import RtpUsageError
from voicebot.rtp.jitter import FrameKind
from voicebot.rtp.packet import RtpPacket
from voicebot.rtp.session import (
    PlayoutFinished,
    RemoteLatched,
    RemoteMedia,
    RtpSession,
    SessionConfig,
)

pytestmark = pytest.mark.unit

A_ADDR = ("127.0.0.1", 20000)
B_ADDR = ("127.0.0.1", 20002)
STRANGER = ("127.0.0.1", 31337)


def tone(frames: int, start: int = 0) -> bytes:
    """Deterministic non-silent PCM: a sawtooth, ``frames`` x 20 ms."""
    count = frames * 160
    return struct.pack(f"<{count}h", *[((start + i) * 173) % 16000 - 8000 for i in range(count)])


def pair(config_b: SessionConfig | None = None, **remote: object) -> tuple[RtpSession, RtpSession]:
    a = RtpSession(ssrc=0xAAAA, sequence_number=65530, timestamp=0xFFFFFE00)
    b = RtpSession(config_b, ssrc=0xBBBB, sequence_number=100, timestamp=5000)
    a.set_remote(RemoteMedia(B_ADDR, **remote))  # type: ignore[arg-type]
    b.set_remote(RemoteMedia(A_ADDR, **remote))  # type: ignore[arg-type]
    return a, b


def run(a: RtpSession, b: RtpSession, ticks: int) -> tuple[list[RtpPacket], list[tuple[FrameKind, bytes]]]:
    """Tick both for ``ticks`` x 20 ms, delivering A's packets to B; returns A's packets and B's frames."""
    sent, frames = [], []
    for _ in range(ticks):
        for datagram in a.tick():
            sent.append(RtpPacket.parse(datagram))
            b.receive_datagram(datagram, A_ADDR)
        b.tick()
        frame = b.pull_frame()
        frames.append((frame.kind, frame.pcm))
    return sent, frames


def test_prompt_arrives_exactly_as_g711_round_trip() -> None:
    a, b = pair()
    pcm = tone(10)
    prompt_id = a.play(pcm)
    _, frames = run(a, b, 14)
    audio = b"".join(pcm for kind, pcm in frames if kind is FrameKind.AUDIO)
    assert audio[: len(pcm)] == ULAW.decode(ULAW.encode(pcm))
    assert [k for k, _ in frames[:2]] == [FrameKind.SILENCE, FrameKind.SILENCE]  # 40 ms target delay
    assert PlayoutFinished(prompt_id, interrupted=False) in a.events()


def test_sequence_and_timestamp_continue_across_prompts_and_idle() -> None:
    a, b = pair()
    a.play(tone(2))
    first, _ = run(a, b, 5)  # 2 prompt frames + 3 comfort silence
    a.play(tone(2, start=7))
    second, _ = run(a, b, 3)
    packets = first + second
    seqs = [p.sequence_number for p in packets]
    assert seqs == [(65530 + i) % 65536 for i in range(8)]  # wraps through 0
    assert [p.timestamp for p in packets] == [(0xFFFFFE00 + 160 * i) % (1 << 32) for i in range(8)]
    assert [p.marker for p in packets] == [True, False, False, False, False, True, False, False]
    assert {p.ssrc for p in packets} == {0xAAAA}
    assert [p.payload for p in packets[2:5]] == [ULAW.silence(160)] * 3


def test_without_comfort_silence_idle_sends_nothing_but_time_runs() -> None:
    a = RtpSession(SessionConfig(comfort_silence=False), ssrc=1, sequence_number=10, timestamp=0)
    a.set_remote(RemoteMedia(B_ADDR))
    assert a.tick() == [] and a.tick() == []
    a.play(tone(1))
    (datagram,) = a.tick()
    packet = RtpPacket.parse(datagram)
    assert (packet.sequence_number, packet.timestamp, packet.marker) == (10, 320, True)
    assert a.tick() == []


def test_flush_stops_prompt_within_one_packet() -> None:
    a, b = pair()
    first = a.play(tone(50))
    second = a.play(tone(50))
    before, _ = run(a, b, 3)
    assert a.flush() == 2
    after, _ = run(a, b, 2)
    assert all(p.payload != ULAW.silence(160) for p in before)
    assert [p.payload for p in after] == [ULAW.silence(160)] * 2
    assert a.events() == [PlayoutFinished(first, True), PlayoutFinished(second, True)]
    assert not a.playing
    assert a.queued_ms == 0


def test_stranger_packets_are_dropped_and_counted() -> None:
    a, b = pair()
    a.play(tone(5))
    datagrams = [a.tick()[0] for _ in range(5)]
    for d in datagrams:
        b.receive_datagram(d, STRANGER)
    assert b.stats().dropped_stranger == 5
    assert b.stats().packets_received == 0
    assert all(b.pull_frame().kind is FrameKind.SILENCE for _ in range(5))


def sender(ssrc: int = 3, seq: int = 0) -> RtpSession:
    """A peer that sends comfort silence (valid PCMU) every tick, whoever it is."""
    a = RtpSession(SessionConfig(unverified_send_limit_ms=0), ssrc=ssrc, sequence_number=seq, timestamp=0)
    a.set_remote(RemoteMedia(B_ADDR))
    return a


def latching(**config: int) -> RtpSession:
    b = RtpSession(SessionConfig(symmetric_latching=True, **config), ssrc=2, sequence_number=0, timestamp=0)
    b.set_remote(RemoteMedia(SDP_ADDR))  # the private address the caller put in its SDP
    return b


SDP_ADDR = ("10.0.0.5", 5000)
NAT = ("127.0.0.1", 40000)


def test_nat_phone_latches_after_a_run_of_valid_packets_from_one_ssrc() -> None:
    # The phone's SDP says 10.x but its packets come from the NAT's public address.
    b = latching()
    a = sender()
    b.receive_datagram(b"\x00garbage", STRANGER)  # not valid RTP: counted, does not start a run
    b.receive_datagram(RtpPacket(18, 0, 0, 9, b"x").serialize(), STRANGER)  # G.729 not negotiated
    for _ in range(4):
        b.receive_datagram(a.tick()[0], NAT)
        assert b.send_address == SDP_ADDR and b.events() == []
    b.receive_datagram(a.tick()[0], NAT)  # the fifth in a row
    assert b.events() == [RemoteLatched(NAT)]
    assert b.send_address == NAT
    b.receive_datagram(a.tick()[0], NAT)
    stats = b.stats()
    assert (stats.packets_received, stats.dropped_stranger, stats.latches) == (2, 4, 1)
    assert (stats.dropped_malformed, stats.dropped_payload_type) == (1, 1)
    assert stats.latched_address == NAT
    # A re-INVITE with a new address resets the latch.
    b.set_remote(RemoteMedia(("192.168.1.11", 5002)))
    assert b.send_address == ("192.168.1.11", 5002)


def test_latch_run_needs_one_ssrc_and_consecutive_sequence_numbers() -> None:
    b = latching()
    one, two = sender(ssrc=7), sender(ssrc=8, seq=1000)
    for _ in range(10):  # two streams from one address, interleaved: never a run of five
        b.receive_datagram(one.tick()[0], NAT)
        b.receive_datagram(two.tick()[0], NAT)
    gappy = sender(ssrc=9)
    for _ in range(10):  # every other packet lost: never consecutive
        gappy.tick()
        b.receive_datagram(gappy.tick()[0], NAT)
    assert b.send_address == SDP_ADDR and b.events() == []
    assert b.stats().dropped_stranger == 30 and b.stats().packets_received == 0


def test_a_sprayer_cannot_take_a_call_whose_caller_sends_from_its_sdp_address() -> None:
    # Issue 9 item 1: an attacker sprays valid PCMU at the port; the caller sends from its SDP address.
    b = latching()
    caller, attacker = sender(ssrc=1), sender(ssrc=666)
    for _ in range(50):
        b.receive_datagram(caller.tick()[0], SDP_ADDR)
        for _ in range(6):  # a burst longer than the latch run between two of the caller's packets
            b.receive_datagram(attacker.tick()[0], STRANGER)
        b.tick()
    assert b.events() == [] and b.send_address == SDP_ADDR
    stats = b.stats()
    assert (stats.packets_received, stats.dropped_stranger, stats.latches) == (50, 300, 0)


def test_the_sdp_address_wins_the_latch_back_from_an_early_sprayer() -> None:
    b = latching()
    caller, attacker = sender(ssrc=1), sender(ssrc=666)
    for _ in range(5):  # before the caller's first packet the attacker completes a run
        b.receive_datagram(attacker.tick()[0], STRANGER)
    assert b.events() == [RemoteLatched(STRANGER)]
    b.receive_datagram(caller.tick()[0], SDP_ADDR)
    assert b.events() == [RemoteLatched(SDP_ADDR)]
    assert b.send_address == SDP_ADDR
    for _ in range(20):
        b.receive_datagram(attacker.tick()[0], STRANGER)
        b.receive_datagram(caller.tick()[0], SDP_ADDR)
        b.tick()
    assert b.send_address == SDP_ADDR and b.events() == []


def test_relatch_after_the_peer_went_quiet_nat_rebinding() -> None:
    b = latching(relatch_quiet_ms=200)
    old, new = sender(ssrc=1), sender(ssrc=1, seq=500)
    for _ in range(5):
        b.receive_datagram(old.tick()[0], NAT)
        b.tick()
    assert b.events() == [RemoteLatched(NAT)]
    rebound = ("127.0.0.1", 40002)
    for _ in range(5):  # the old mapping is still sending: refused
        b.receive_datagram(new.tick()[0], rebound)
        b.receive_datagram(old.tick()[0], NAT)
        b.tick()
    assert b.send_address == NAT
    for _ in range(10):  # 200 ms without a packet from the old mapping
        b.tick()
    for _ in range(5):
        b.receive_datagram(new.tick()[0], rebound)
    assert b.events() == [RemoteLatched(rebound)]
    assert b.send_address == rebound


def test_without_latching_only_the_sdp_address_is_accepted() -> None:
    b = RtpSession(ssrc=2, sequence_number=0, timestamp=0)
    b.set_remote(RemoteMedia(SDP_ADDR))
    a = sender()
    for _ in range(20):
        b.receive_datagram(a.tick()[0], NAT)
    assert b.send_address == SDP_ADDR
    assert (b.stats().dropped_stranger, b.stats().packets_received) == (20, 0)


def test_sending_stops_to_an_address_that_never_sent_a_valid_packet() -> None:
    # Issue 9 item 4: an SDP pointing at a third party must not get a whole call's audio.
    b = RtpSession(SessionConfig(unverified_send_limit_ms=1000), ssrc=2, sequence_number=0, timestamp=0)
    b.set_remote(RemoteMedia(SDP_ADDR))
    b.play(tone(200))
    sent = sum(len(b.tick()) for _ in range(200))
    assert sent == 50  # 1000 ms of 20 ms packets, then nothing
    assert b.stats().send_suppressed == 150
    b.receive_datagram(sender().tick()[0], SDP_ADDR)  # the peer speaks: it is real, send again
    assert len(b.tick()) == 1
    # A re-INVITE to a new address must prove itself again; RTCP, or comfort noise (payload type 13,
    # not negotiated) from a phone with silence suppression, is proof enough; a stranger's is not.
    b.set_remote(RemoteMedia(("10.0.0.6", 5000)))
    assert sum(len(b.tick()) for _ in range(100)) == 50
    b.receive_datagram(RtpPacket(13, 1, 160, 9, b"\x40").serialize(), STRANGER)
    assert b.tick() == []
    b.receive_datagram(RtpPacket(13, 1, 160, 9, b"\x40").serialize(), ("10.0.0.6", 5000))
    assert len(b.tick()) == 1
    b.set_remote(RemoteMedia(("10.0.0.7", 5000)))
    for _ in range(60):
        b.tick()
    b.receive_datagram(bytes([0x80, 200]) + bytes(26), ("10.0.0.7", 5000))  # an RTCP sender report
    assert len(b.tick()) == 1


def test_a_peer_that_sends_is_never_capped() -> None:
    a, b = pair(SessionConfig(unverified_send_limit_ms=100))
    b_sent = 0
    for _ in range(100):
        for datagram in a.tick():
            b.receive_datagram(datagram, A_ADDR)
        b_sent += len(b.tick())
    assert b_sent == 100 and b.stats().send_suppressed == 0


def test_garbage_and_rtcp_do_not_break_the_stream() -> None:
    a, b = pair()
    pcm = tone(8)
    a.play(pcm)
    audio = b""
    for i in range(12):
        for datagram in a.tick():
            b.receive_datagram(datagram, A_ADDR)
        b.receive_datagram(bytes([i]) * (i + 3), A_ADDR)  # garbage from the right address
        b.receive_datagram(bytes.fromhex("80c8000101020304"), A_ADDR)  # RTCP SR header
        frame = b.pull_frame()
        if frame.kind is FrameKind.AUDIO:
            audio += frame.pcm
    assert audio[: len(pcm)] == ULAW.decode(ULAW.encode(pcm))
    stats = b.stats()
    assert stats.dropped_malformed == 12
    assert stats.rtcp_ignored == 12
    assert b.last_error is not None and b.last_error.startswith("RTP ")


def test_dtmf_round_trip_and_timing() -> None:
    a, b = pair()
    a.play(tone(1))
    a.send_dtmf("5")
    packets, _ = run(a, b, 8)
    # ticks 0-4: the event (start, 3 updates, 3 x end) pre-empts the prompt; tick 5: the prompt's
    # frame as a new talkspurt; ticks 6-7: comfort silence.
    dtmf = [p for p in packets if p.payload_type == 101]
    assert packets[: len(dtmf)] == dtmf
    assert len(dtmf) == 4 + 3
    assert {p.timestamp for p in dtmf} == {0xFFFFFE00}
    assert [p.marker for p in dtmf] == [True] + [False] * 6
    assert TelephoneEvent.parse(dtmf[-1].payload) == TelephoneEvent(5, True, 10, 800)
    seqs = [p.sequence_number for p in packets]
    assert seqs == [(65530 + i) % 65536 for i in range(len(packets))]
    after = packets[len(dtmf)]
    assert (after.payload_type, after.marker, after.payload) == (0, True, ULAW.encode(tone(1)))
    assert after.timestamp == (0xFFFFFE00 + 5 * 160) % (1 << 32)
    events = b.events()
    assert events == [DtmfEventReceived("5", dtmf[0].timestamp), DtmfEnded("5", 100, dtmf[0].timestamp)]


def test_send_dtmf_needs_negotiated_telephone_event() -> None:
    a, _ = pair(telephone_event_pt=None)
    with pytest.raises(RtpUsageError) as info:
        a.send_dtmf("1")
    assert str(info.value) == "cannot send DTMF: the peer did not negotiate telephone-event"
    b, _ = pair()
    with pytest.raises(RtpUsageError, match="got 'Z'"):
        b.send_dtmf("Z")


def test_hold_stops_sending_and_unhold_continues_sequence() -> None:
    a, b = pair()
    a.play(tone(10))
    first, _ = run(a, b, 2)
    a.set_remote(RemoteMedia(B_ADDR, send=False))
    held, _ = run(a, b, 3)
    a.set_remote(RemoteMedia(B_ADDR))
    resumed, _ = run(a, b, 2)
    assert held == []
    assert [p.sequence_number for p in first + resumed] == [65530, 65531, 65532, 65533]
    assert resumed[0].timestamp == (0xFFFFFE00 + 5 * 160) % (1 << 32)


def test_ptime_40_sends_two_frames_per_packet() -> None:
    a, b = pair(ptime_ms=40)
    pcm = tone(6)
    a.play(pcm)
    packets, frames = run(a, b, 12)
    assert [len(p.payload) for p in packets] == [320] * 6
    assert [(p.timestamp - packets[0].timestamp) % (1 << 32) for p in packets] == [320 * i for i in range(6)]
    audio = b"".join(pcm for kind, pcm in frames if kind is FrameKind.AUDIO)
    assert audio[: len(pcm)] == ULAW.decode(ULAW.encode(pcm))


def test_pcma_is_sent_and_decoded() -> None:
    a, b = pair(payload_type=8)
    pcm = tone(4)
    a.play(pcm)
    packets, frames = run(a, b, 8)
    assert {p.payload_type for p in packets} == {8}
    assert packets[0].payload == ALAW.encode(pcm[:320])
    audio = b"".join(pcm for kind, pcm in frames if kind is FrameKind.AUDIO)
    assert audio[: len(pcm)] == ALAW.decode(ALAW.encode(pcm))


def test_prompt_queue_is_bounded_and_counts_drops() -> None:
    a = RtpSession(SessionConfig(max_queued_ms=100), ssrc=1, sequence_number=0, timestamp=0)
    a.play(tone(10))  # 200 ms
    assert a.queued_ms == 100
    assert a.stats().prompt_ms_dropped == 100
    with pytest.raises(RtpUsageError, match="got 3 bytes"):
        a.play(b"abc")


def test_nothing_accepted_or_sent_before_remote_is_known() -> None:
    a = RtpSession(ssrc=1, sequence_number=0, timestamp=0)
    a.play(tone(2))
    assert a.tick() == []
    a.receive_datagram(RtpPacket(0, 1, 160, 5, b"\xff" * 160).serialize(), B_ADDR)
    assert a.stats().dropped_no_remote == 1
    with pytest.raises(RtpUsageError, match="payload_type must be 0 \\(PCMU\\) or 8 \\(PCMA\\), got 18"):
        RemoteMedia(B_ADDR, payload_type=18)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=40), st.sampled_from([A_ADDR, STRANGER])), max_size=30))
def test_any_datagrams_are_counted_never_raised(datagrams: list[tuple[bytes, tuple[str, int]]]) -> None:
    for latching in (False, True):
        b = RtpSession(SessionConfig(symmetric_latching=latching), ssrc=2, sequence_number=0, timestamp=0)
        b.set_remote(RemoteMedia(A_ADDR))
        for data, source in datagrams:
            b.receive_datagram(data, source)
            assert len(b.pull_frame().pcm) == 320
        s = b.stats()
        accounted = (s.packets_received + s.dropped_stranger + s.dropped_malformed + s.dropped_payload_type
                     + s.rtcp_ignored)
        assert accounted == len(datagrams)  # every datagram lands in exactly one counter
