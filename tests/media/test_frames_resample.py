"""20 ms framing helpers and soxr resampling to and from 8 kHz."""

from __future__ import annotations

import math

import numpy as np
import pytest

from voicebot.media import frames
from voicebot.media.resample import Float32StreamResampler, StreamResampler, resample_float32, resample_pcm16

pytestmark = pytest.mark.unit


def test_frame_constants() -> None:
    assert frames.SAMPLES_PER_FRAME == 160
    assert frames.BYTES_PER_FRAME == 320
    assert len(frames.SILENCE_FRAME) == 320
    assert not any(frames.SILENCE_FRAME)
    assert frames.samples_for_ms(30) == 240
    assert frames.duration_ms(bytes(800)) == 50.0


def test_split_frames_pads_or_drops_the_tail() -> None:
    pcm = bytes(range(256)) * 3  # 768 bytes = 2 frames + 128 bytes
    padded = frames.split_frames(pcm)
    assert [len(f) for f in padded] == [320, 320, 320]
    assert padded[2] == pcm[640:] + bytes(192)
    assert frames.split_frames(pcm, pad=False) == [pcm[:320], pcm[320:640]]
    with pytest.raises(ValueError, match="even length, got 3 bytes"):
        frames.split_frames(b"abc")


def test_assembler_reframes_odd_chunks() -> None:
    pcm = bytes((i * 7) % 256 for i in range(1000))
    assembler = frames.FrameAssembler()
    out: list[bytes] = []
    for start in range(0, len(pcm), 98):
        out.extend(assembler.push(pcm[start : start + 98]))
    assert out == [pcm[0:320], pcm[320:640], pcm[640:960]]
    assert assembler.pending_bytes == 40
    assert assembler.flush() == pcm[960:] + bytes(280)
    assert assembler.flush() is None


def _tone(freq_hz: float, rate_hz: int, seconds: float, amplitude: float = 8000.0) -> bytes:
    n = int(rate_hz * seconds)
    t = np.arange(n) / rate_hz
    return (amplitude * np.sin(2 * math.pi * freq_hz * t)).astype("<i2").tobytes()


def _dominant_hz(pcm16: bytes, rate_hz: int) -> float:
    x = np.frombuffer(pcm16, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate_hz / len(x))


@pytest.mark.parametrize("rate_hz", [16000, 22050, 24000, 44100, 48000])
def test_resample_to_8k_keeps_length_and_pitch(rate_hz: int) -> None:
    out = resample_pcm16(_tone(440.0, rate_hz, 1.0), rate_hz, 8000)
    assert abs(len(out) // 2 - 8000) <= 1
    assert abs(_dominant_hz(out, 8000) - 440.0) < 3.0


def test_resample_removes_content_above_new_nyquist() -> None:
    out = resample_pcm16(_tone(6000.0, 16000, 1.0), 16000, 8000)
    rms = float(np.sqrt(np.mean(np.frombuffer(out, dtype="<i2").astype(float) ** 2)))
    assert rms < 50  # the 6 kHz tone (rms ~5657 before) cannot exist at 8 kHz


def test_upsample_from_8k() -> None:
    out = resample_pcm16(_tone(1000.0, 8000, 0.5), 8000, 16000)
    assert len(out) // 2 == 8000
    assert abs(_dominant_hz(out, 16000) - 1000.0) < 5.0


def test_stream_resampler_matches_length_of_whole_buffer() -> None:
    pcm = _tone(300.0, 48000, 0.5)
    stream = StreamResampler(48000, 8000)
    out = b"".join(stream.process(pcm[i : i + 1922]) for i in range(0, len(pcm), 1922)) + stream.flush()
    assert len(out) == len(resample_pcm16(pcm, 48000, 8000))
    assert abs(_dominant_hz(out, 8000) - 300.0) < 3.0


def test_resample_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="from_rate_hz 0 Hz is outside"):
        resample_pcm16(b"\x00\x00", 0, 8000)
    with pytest.raises(ValueError, match="even length, got 1 bytes"):
        resample_pcm16(b"\x00", 16000, 8000)
    assert resample_pcm16(b"\x01\x02", 8000, 8000) == b"\x01\x02"


def test_overshoot_saturates_instead_of_wrapping() -> None:
    # A full-scale square wave rings past full scale after band-limiting (Gibbs); int16 must clip.
    square = np.tile(np.r_[np.full(50, 32767), np.full(50, -32768)], 100).astype("<i2")
    out = np.frombuffer(resample_pcm16(square.tobytes(), 22050, 8000), dtype="<i2")
    assert out.max() == 32767 and out.min() == -32768
    middle = out[100:-100]
    # Wrapped overshoot would show up as full-scale jumps of the opposite sign inside a half period.
    assert int(np.abs(np.diff(middle.astype(np.int32))).max()) < 65535


def test_float32_stream_equals_whole_signal_and_stays_float32() -> None:
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    stream = Float32StreamResampler(8000, 16000)
    pieces = [stream.process(signal[i : i + 333]) for i in range(0, len(signal), 333)]
    streamed = np.concatenate([*pieces, stream.flush()])
    whole = resample_float32(signal, 8000, 16000)
    assert streamed.dtype == np.float32 and whole.dtype == np.float32
    assert len(streamed) == len(whole) == 16000
    assert np.allclose(streamed, whole, atol=1e-4)
    with pytest.raises(RuntimeError, match="after flush"):
        stream.process(signal)


def test_prompts_and_the_recognizer_share_this_resampler() -> None:
    from voicebot.stt.audio import resample
    from voicebot.tts.base import resample_pcm16 as prompt_resample

    pcm = _tone(440.0, 22050, 0.2)
    assert prompt_resample(pcm, 22050) == resample_pcm16(pcm, 22050, 8000)
    signal = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    assert np.array_equal(resample(signal, 22050, 16000), resample_float32(signal, 22050, 16000))
