"""Jitter buffer: loss, reorder, duplicates, SSRC change, wrap and timestamp jumps, with exact output."""

from __future__ import annotations

import itertools
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.rtp.jitter import Frame, FrameKind, JitterBuffer, JitterConfig

pytestmark = pytest.mark.unit

SSRC = 0x1234
AUDIO, CONCEALED, SILENCE = FrameKind.AUDIO, FrameKind.CONCEALED, FrameKind.SILENCE


def pcm_for(seq: int, samples: int = 160) -> bytes:
    """A recognizable packet: sample i is (seq % 200) * 100 + i % 50 (never zero)."""
    base = (seq % 200) * 100 + 1
    return struct.pack(f"<{samples}h", *[base + i % 50 for i in range(samples)])


def samples(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def faded(last: bytes, gap_start: int, total: int = 480) -> bytes:
    """Independent statement of the concealment rule: the last frame, mirrored on even repeats (the
    first repeat is reversed), under a linear fade from 1 to 0 over ``total`` samples."""
    source = samples(last)
    if (gap_start // 160) % 2 == 0:
        source = source[::-1]
    out = [(v * (total - (gap_start + i))) // total for i, v in enumerate(source)]
    return struct.pack(f"<{len(out)}h", *out)


def make(target_delay_ms: int = 40, max_delay_ms: int = 200) -> JitterBuffer:
    return JitterBuffer(JitterConfig(target_delay_ms=target_delay_ms, max_delay_ms=max_delay_ms))


def push(jb: JitterBuffer, seq: int, ts: int | None = None, ssrc: int = SSRC,
         pcm: bytes | None = None) -> None:
    timestamp = (seq * 160 if ts is None else ts) % (1 << 32)
    jb.push(seq % 65536, timestamp, ssrc, pcm_for(seq) if pcm is None else pcm)


def kinds(frames: list[Frame]) -> list[FrameKind]:
    return [f.kind for f in frames]


def test_in_order_playout_starts_after_target_delay() -> None:
    jb = make()
    push(jb, 0)
    assert jb.pop() == Frame(SILENCE, bytes(320))  # only 20 ms buffered, target is 40 ms
    push(jb, 1)
    out = []
    for seq in range(2, 6):
        out.append(jb.pop())
        push(jb, seq)
    assert out == [Frame(AUDIO, pcm_for(s)) for s in range(0, 4)]
    stats = jb.stats()
    assert (stats.received, stats.lost, stats.late, stats.duplicate, stats.reordered) == (6, 0, 0, 0, 0)


def test_reorder_within_window() -> None:
    jb = make()
    for seq in (0, 2, 1, 3, 5, 4):
        push(jb, seq)
    assert [jb.pop() for _ in range(6)] == [Frame(AUDIO, pcm_for(s)) for s in range(6)]
    assert jb.stats().reordered == 2
    assert jb.stats().lost == 0


def test_duplicates_dropped_once_each() -> None:
    jb = make()
    for seq in (0, 1, 1, 2, 0, 2, 3):
        push(jb, seq)
    assert [jb.pop() for _ in range(4)] == [Frame(AUDIO, pcm_for(s)) for s in range(4)]
    assert jb.stats().duplicate == 3


def test_single_loss_is_concealed_with_faded_repeat() -> None:
    jb = make()
    for seq in (0, 1, 2, 4, 5):
        push(jb, seq)
    out = [jb.pop() for _ in range(6)]
    assert out[:3] == [Frame(AUDIO, pcm_for(s)) for s in range(3)]
    assert out[3] == Frame(CONCEALED, faded(pcm_for(2), 0))
    assert out[4:] == [Frame(AUDIO, pcm_for(4)), Frame(AUDIO, pcm_for(5))]
    assert jb.stats().lost == 1
    assert jb.stats().concealed_frames == 1


def test_long_gap_fades_to_silence_without_clicks() -> None:
    jb = make()
    for seq in range(3):
        push(jb, seq)
    out = [jb.pop() for _ in range(8)]
    assert kinds(out) == [AUDIO] * 3 + [CONCEALED] * 3 + [SILENCE] * 2
    last = pcm_for(2)
    assert [f.pcm for f in out[3:6]] == [faded(last, 0), faded(last, 160), faded(last, 320)]
    assert out[6].pcm == bytes(320)
    tail = samples(b"".join(f.pcm for f in out[3:6]))
    peak = max(abs(v) for v in samples(last))
    # Never louder than the last real frame, and the fade ends within one step of zero.
    assert max(abs(v) for v in tail) <= peak
    assert abs(tail[-1]) <= peak // 480 + 1
    # No step anywhere: from the last real sample into the concealment, and between repeats.
    whole = samples(last) + tail + [0] * 160
    steps = [abs(b - a) for a, b in itertools.pairwise(whole)]
    largest_step_inside_audio = max(abs(b - a) for a, b in itertools.pairwise(samples(last)))
    assert max(steps) <= largest_step_inside_audio
    assert jb.stats().underruns == 1


def test_late_packet_dropped_and_counted() -> None:
    jb = make()
    for seq in (0, 1, 2, 4, 5):
        push(jb, seq)
    out = [jb.pop() for _ in range(4)]  # seq 3 concealed
    push(jb, 3)  # arrives after its slot was played
    out += [jb.pop() for _ in range(2)]
    assert kinds(out) == [AUDIO, AUDIO, AUDIO, CONCEALED, AUDIO, AUDIO]
    assert jb.stats().late == 1
    assert jb.stats().lost == 1


def test_ssrc_change_resets_cleanly() -> None:
    jb = make()
    for seq in range(3):
        push(jb, seq)
    first = [jb.pop(), jb.pop()]
    # A new source (e.g. after a transfer) with unrelated sequence and timestamp spaces.
    new_ssrc = 0x9999
    push(jb, 40000, ts=3_000_000_000, ssrc=new_ssrc)
    push(jb, 40001, ts=3_000_000_160, ssrc=new_ssrc)
    out = [jb.pop() for _ in range(2)]
    assert first == [Frame(AUDIO, pcm_for(0)), Frame(AUDIO, pcm_for(1))]
    # The old stream's unplayed frame is dropped, the new one plays from its start.
    assert out == [Frame(AUDIO, pcm_for(40000)), Frame(AUDIO, pcm_for(40001))]
    stats = jb.stats()
    assert stats.ssrc_changes == 1
    assert (stats.lost, stats.late, stats.out_of_window) == (0, 0, 0)
    assert jb.ssrc == new_ssrc


def test_sequence_wrap() -> None:
    jb = make()
    seqs = [65533, 65534, 65535, 65536, 65537]  # 65536 -> 0 on the wire
    for seq in (seqs[0], seqs[1], seqs[3], seqs[2], seqs[4]):
        push(jb, seq, ts=seq * 160)
    assert [jb.pop() for _ in range(5)] == [Frame(AUDIO, pcm_for(s)) for s in seqs]
    stats = jb.stats()
    assert (stats.lost, stats.reordered, stats.out_of_window, stats.resyncs) == (0, 1, 0, 0)


def test_timestamp_wrap() -> None:
    jb = make()
    base = (1 << 32) - 320
    for i in range(5):
        push(jb, 100 + i, ts=base + i * 160)  # wraps to 0 at i == 2
    assert [jb.pop() for _ in range(5)] == [Frame(AUDIO, pcm_for(100 + i)) for i in range(5)]
    assert jb.stats().resyncs == 0


def test_timestamp_jump_with_continuous_sequence_resyncs_without_allocating() -> None:
    jb = make()
    for seq in range(3):
        push(jb, seq)
    out = [jb.pop(), jb.pop()]
    jump = 1_000_000_000  # about 35 hours of samples
    for seq in range(3, 6):
        push(jb, seq, ts=seq * 160 + jump)
    assert jb.buffered_ms == 60  # only the three packets, nothing for the gap
    out += [jb.pop() for _ in range(3)]
    # Packet 2 was still buffered when the stream jumped; the resync drops it and plays on.
    assert out == [Frame(AUDIO, pcm_for(s)) for s in (0, 1, 3, 4, 5)]
    assert jb.stats().resyncs == 1


def test_stray_packet_far_outside_window_is_ignored() -> None:
    jb = make()
    for seq in range(4):
        push(jb, seq)
    push(jb, 30000, ts=2_000_000_000)  # no sequence continuity: not this stream's jump
    assert [jb.pop() for _ in range(4)] == [Frame(AUDIO, pcm_for(s)) for s in range(4)]
    stats = jb.stats()
    assert (stats.out_of_window, stats.resyncs) == (1, 0)


def test_two_agreeing_packets_after_sequence_and_timestamp_jump_resync() -> None:
    jb = make()
    for seq in range(3):
        push(jb, seq)
    jb.pop()
    push(jb, 30000, ts=2_000_000_000)
    push(jb, 30001, ts=2_000_000_160)
    assert jb.stats().out_of_window == 0  # the first one was the start of the new stream
    assert jb.stats().resyncs == 1
    assert [jb.pop() for _ in range(2)] == [Frame(AUDIO, pcm_for(30000)), Frame(AUDIO, pcm_for(30001))]


def test_thirty_ms_packets_are_recut_into_twenty_ms_frames() -> None:
    jb = make(target_delay_ms=60)
    packets = [pcm_for(s, samples=240) for s in range(4)]
    for seq, pcm in enumerate(packets):
        push(jb, seq, ts=seq * 240, pcm=pcm)
    out = [jb.pop() for _ in range(6)]
    assert kinds(out) == [AUDIO] * 6
    assert b"".join(f.pcm for f in out) == b"".join(packets)


def test_burst_beyond_max_delay_skips_forward() -> None:
    jb = make(target_delay_ms=40, max_delay_ms=200)
    push(jb, 0)
    push(jb, 1)
    assert jb.pop() == Frame(AUDIO, pcm_for(0))
    for seq in range(2, 40):
        push(jb, seq)
        assert jb.buffered_ms <= 200
    out = [jb.pop() for _ in range(3)]
    stats = jb.stats()
    assert stats.overflow_dropped > 0
    assert stats.lost == 0
    # What is left is the newest audio, in order, ending with the last packet pushed.
    remaining = jb.buffered_ms // 20
    out += [jb.pop() for _ in range(remaining)]
    assert out[-1] == Frame(AUDIO, pcm_for(39))
    assert kinds(out) == [AUDIO] * len(out)
    assert stats.overflow_dropped + 1 + len(out) == 40


def test_a_backlog_allowance_keeps_what_queued_during_our_stall_and_only_that() -> None:
    jb = make(target_delay_ms=40, max_delay_ms=200)
    push(jb, 0)
    push(jb, 1)
    assert jb.pop() == Frame(AUDIO, pcm_for(0))
    jb.allow_backlog(20)  # the puller missed 20 ticks: 400 ms more may wait
    for seq in range(2, 30):  # 580 ms ahead of the playout point: within 200 + 400
        push(jb, seq)
    assert jb.stats().overflow_dropped == 0 and jb.buffered_ms == 580
    out = [jb.pop() for _ in range(29)]
    assert out == [Frame(AUDIO, pcm_for(seq)) for seq in range(1, 30)]
    jb.allow_backlog(0)  # caught up: the normal bound again
    for seq in range(30, 45):
        push(jb, seq)
    stats = jb.stats()
    assert stats.overflow_dropped > 0 and jb.buffered_ms <= 200
    assert (stats.lost, stats.out_of_window, stats.resyncs) == (0, 0, 0)


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="target_delay_ms must be a non-negative multiple of 20, got 30"):
        JitterConfig(target_delay_ms=30)
    with pytest.raises(ValueError, match=r"max_delay_ms \(60\) must be at least target_delay_ms \+ 20"):
        JitterConfig(target_delay_ms=60, max_delay_ms=60)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just(None),  # pop
            st.tuples(st.integers(0, 65535), st.integers(0, (1 << 32) - 1), st.sampled_from([1, 2]),
                      st.sampled_from([0, 80, 160, 240, 480]), st.integers(-32768, 32767)),
        ),
        max_size=120,
    )
)
def test_any_input_gives_full_frames_bounded_memory_and_no_blowup(ops: list[object]) -> None:
    jb = make()
    loudest = 0
    for op in ops:
        if op is None:
            frame = jb.pop()
            assert len(frame.pcm) == 320
            peak = max(abs(v) for v in samples(frame.pcm))
            if frame.kind is CONCEALED:
                assert peak <= loudest
            if frame.kind is SILENCE:
                assert peak == 0
        else:
            assert isinstance(op, tuple)
            seq, ts, ssrc, n, value = op
            loudest = max(loudest, abs(value))
            jb.push(seq, ts, ssrc, struct.pack("<h", value) * n)
        assert jb.buffered_packets <= jb.config.max_packets
        assert jb.buffered_ms <= 200 + 60


def test_concealing_a_voiced_frame_has_no_step_larger_than_the_voice_itself() -> None:
    # 440 Hz is 8.8 periods per 20 ms frame: repeating the frame as is would jump at each boundary.
    sine = [round(10000 * math.sin(2 * math.pi * 440 * n / 8000)) for n in range(480)]
    frames = [struct.pack("<160h", *sine[i : i + 160]) for i in (0, 160, 320)]
    jb = make()
    for seq, pcm in enumerate(frames):
        push(jb, seq, pcm=pcm)
    out = [jb.pop() for _ in range(7)]
    assert [f.kind for f in out] == [AUDIO] * 3 + [CONCEALED] * 3 + [SILENCE]
    signal = samples(b"".join(f.pcm for f in out))
    voice_step = max(abs(b - a) for a, b in itertools.pairwise(sine))
    assert max(abs(b - a) for a, b in itertools.pairwise(signal)) <= voice_step
    plain_repeat_jump = abs(sine[0] - sine[479])
    assert plain_repeat_jump > voice_step  # the click the mirrored repeat avoids


def test_late_packet_after_underrun_raises_target_by_20ms() -> None:
    jb = make(target_delay_ms=40)
    for seq in range(2):
        push(jb, seq)
    assert [jb.pop().kind for _ in range(3)] == [AUDIO, AUDIO, CONCEALED]  # ran dry: packet 2 is late
    assert jb.stats().underruns == 1
    push(jb, 2)  # exactly where playout stopped: it was delayed, not lost
    assert jb.target_delay_ms == jb.stats().target_delay_ms == 60
    # Playout now waits for 60 ms, not 40, before it restarts.
    push(jb, 3)
    assert jb.pop().kind is CONCEALED
    push(jb, 4)
    assert [jb.pop() for _ in range(3)] == [Frame(AUDIO, pcm_for(s)) for s in (2, 3, 4)]
    assert jb.stats().lost == 0


def test_sender_pause_does_not_raise_target() -> None:
    jb = make(target_delay_ms=40)
    for seq in range(2):
        push(jb, seq)
    [jb.pop() for _ in range(3)]
    push(jb, 2, ts=2 * 160 + 8000)  # resumes after a 1 s pause (silence suppression): a timestamp gap
    assert jb.target_delay_ms == 40


def test_adapted_target_is_bounded_and_decays() -> None:
    jb = make(target_delay_ms=40, max_delay_ms=120)
    seq = 0
    for round_ in range(6):  # six underruns, each resolved by a late packet
        for _ in range(jb.target_delay_ms // 20):
            push(jb, seq)
            seq += 1
        for _ in range(20):
            jb.pop()
            if jb.stats().underruns > round_:
                break
        push(jb, seq)  # late: exactly where playout ran dry
        seq += 1
    assert jb.stats().underruns == 6
    assert jb.target_delay_ms == 80  # capped at max_delay_ms - 40
    # Steady arrival for 10 s of playout gives 20 ms back.
    for _ in range(505):
        push(jb, seq)
        seq += 1
        jb.pop()
    assert jb.target_delay_ms == 60
