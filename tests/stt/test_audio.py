"""LINEAR16 decoding, WAV parsing with exact errors, and soxr resampling (one-shot and streaming)."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.stt.audio import (
    InvalidAudio,
    Linear16Stream,
    StreamResampler,
    WavAudio,
    float32_to_pcm16,
    parse_wav,
    pcm16_to_float32,
    resample,
)

pytestmark = pytest.mark.unit


def sine(freq_hz: float, rate_hz: int, duration_s: float, amplitude: float = 0.5) -> npt.NDArray[np.float32]:
    t = np.arange(int(rate_hz * duration_s)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(audio: npt.NDArray[np.float32], rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.argmax(spectrum) * rate_hz / len(audio))


def energy_above(audio: npt.NDArray[np.float32], rate_hz: int, cutoff_hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / rate_hz)
    return float(spectrum[freqs > cutoff_hz].sum() / spectrum.sum())


def wav_bytes(pcm16: bytes, rate_hz: int = 8000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate_hz)
        w.writeframes(pcm16)
    return buf.getvalue()


# ---- LINEAR16 ----


def test_pcm16_decodes_little_endian_signed_to_unit_range() -> None:
    pcm = struct.pack("<4h", 0, 16384, -32768, 32767)
    assert pcm16_to_float32(pcm).tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    assert pcm16_to_float32(pcm).dtype == np.float32


def test_pcm16_round_trip_and_clipping() -> None:
    pcm = struct.pack("<5h", 0, 1, -1, 12345, -32768)
    assert float32_to_pcm16(pcm16_to_float32(pcm)) == pcm
    assert float32_to_pcm16(np.array([2.0, -2.0], dtype=np.float32)) == struct.pack("<2h", 32767, -32768)


def test_pcm16_odd_length_is_invalid_audio() -> None:
    with pytest.raises(InvalidAudio, match="even number of bytes, got 3"):
        pcm16_to_float32(b"\x00\x01\x02")


# ---- WAV ----


@pytest.mark.parametrize("rate_hz", [8000, 11025, 16000, 44100, 48000])
def test_wav_pcm16_mono_any_rate(rate_hz: int) -> None:
    pcm = struct.pack("<3h", 1, -2, 300)
    assert parse_wav(wav_bytes(pcm, rate_hz)) == WavAudio(rate_hz, pcm)


def test_wav_skips_unknown_chunks_with_padding() -> None:
    pcm = struct.pack("<2h", 7, -7)
    plain = wav_bytes(pcm, 16000)
    # Insert an odd-sized LIST chunk (padded to even) between 'fmt ' and 'data'.
    fmt_end = 12 + 8 + 16
    extra = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"
    data = plain[:fmt_end] + extra + plain[fmt_end:]
    assert parse_wav(data) == WavAudio(16000, pcm)


def test_wav_with_unknown_data_length_takes_the_rest() -> None:
    pcm = struct.pack("<4h", 1, 2, 3, 4)
    data = bytearray(wav_bytes(pcm))
    data_pos = data.index(b"data")
    data[data_pos + 4 : data_pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    assert parse_wav(bytes(data)).pcm16 == pcm


def test_wav_extensible_pcm_is_accepted() -> None:
    pcm = struct.pack("<2h", 5, 6)
    guid_pcm = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4) + guid_pcm
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4) + pcm
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    assert parse_wav(data) == WavAudio(8000, pcm)


def _fmt_wav(tag: int, channels: int, rate: int, bits: int) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 4) + b"\x00" * 4
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"RIFF", "too short for a RIFF header"),
        (b"OggS" + b"\x00" * 40, "not a WAV file: starts with b'OggS'"),
        (b"RIFX" + b"\x00" * 40, "RIFX big-endian WAV is not supported"),
        (b"RIFF\x00\x00\x00\x00AVI " + b"\x00" * 8, "form type is b'AVI ', expected b'WAVE'"),
        (_fmt_wav(1, 2, 8000, 16), "2 channels; only mono"),
        (_fmt_wav(1, 1, 8000, 8), "8-bit samples; only 16-bit PCM"),
        (_fmt_wav(1, 1, 8000, 24), "24-bit samples"),
        (_fmt_wav(3, 1, 8000, 32), "encoding is IEEE float"),
        (_fmt_wav(7, 1, 8000, 8), "encoding is mu-law"),
        (_fmt_wav(1, 1, 1000, 16), "sample rate 1000 Hz is outside"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt ' chunk"),
        (_fmt_wav(1, 1, 8000, 16)[:36], "no 'data' chunk"),
        (b"RIFF\x10\x00\x00\x00WAVEdata\x02\x00\x00\x00\x00\x00", "'data' chunk comes before the 'fmt '"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "'fmt ' chunk is truncated"),
    ],
)
def test_bad_wav_says_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(InvalidAudio, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_wav(data)


def test_invalid_audio_is_not_retryable() -> None:
    with pytest.raises(InvalidAudio) as info:
        parse_wav(b"nope")
    assert info.value.retryable is False


# ---- resampling ----


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (48000, 16000), (44100, 16000), (16000, 8000)])
def test_resample_keeps_the_tone_and_the_duration(src: int, dst: int) -> None:
    tone = sine(440.0, src, 1.0)
    out = resample(tone, src, dst)
    assert out.dtype == np.float32
    assert abs(len(out) - dst) <= 2
    assert abs(peak_hz(out, dst) - 440.0) < 3.0


def test_upsampling_does_not_make_images() -> None:
    # 8 -> 16 kHz of a 1 kHz tone: sample repetition would put a 7 kHz image at about -15 dB.
    out = resample(sine(1000.0, 8000, 1.0), 8000, 16000)
    assert energy_above(out, 16000, 4000.0) < 1e-4
    repeated = np.repeat(sine(1000.0, 8000, 1.0), 2)
    assert energy_above(repeated, 16000, 4000.0) > 1e-2  # the check would catch a naive resampler


def test_downsampling_removes_what_cannot_be_represented() -> None:
    # 48 -> 16 kHz of a 10 kHz tone: above the new Nyquist, it must vanish, not alias to 6 kHz.
    out = resample(sine(10_000.0, 48000, 1.0), 48000, 16000)
    assert float(np.sqrt(np.mean(out[200:-200] ** 2))) < 0.01


def test_same_rate_is_identity() -> None:
    tone = sine(300.0, 16000, 0.1)
    assert np.array_equal(resample(tone, 16000, 16000), tone)


def test_streaming_resampler_matches_one_shot() -> None:
    tone = sine(440.0, 8000, 2.0) + sine(1800.0, 8000, 2.0, 0.2)
    stream = StreamResampler(8000, 16000)
    parts = [stream.process(tone[i : i + 160]) for i in range(0, len(tone), 160)]
    streamed = np.concatenate([*parts, stream.flush()])
    whole = resample(tone, 8000, 16000)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole))
    # Same filter, same output, up to float rounding (no clicks at chunk borders).
    assert float(np.max(np.abs(streamed[:n] - whole[:n]))) < 1e-3


def test_linear16_stream_handles_odd_chunk_boundaries() -> None:
    pcm = float32_to_pcm16(sine(440.0, 8000, 1.0))
    ls = Linear16Stream(8000, 16000)
    out = []
    for i in range(0, len(pcm), 333):  # odd size: every other chunk ends mid-sample
        out.append(ls.push(pcm[i : i + 333]))
    out.append(ls.flush())
    audio = np.concatenate(out)
    assert abs(len(audio) - 16000) <= 2
    assert abs(peak_hz(audio, 16000) - 440.0) < 3.0


def test_stream_resampler_rejects_use_after_flush() -> None:
    stream = StreamResampler(8000, 16000)
    stream.flush()
    assert len(stream.flush()) == 0
    with pytest.raises(RuntimeError, match="after flush"):
        stream.process(np.zeros(10, dtype=np.float32))


def test_bad_rate_is_invalid_audio() -> None:
    with pytest.raises(InvalidAudio, match="sample rate 0 Hz"):
        StreamResampler(0, 16000)


# ---- fuzz: anything a client sends gives a WavAudio or an InvalidAudio, never another exception ----


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_crash_the_parser(data: bytes) -> None:
    try:
        parsed = parse_wav(data)
    except InvalidAudio as exc:
        assert exc.message  # always says what is wrong
        return
    assert data.startswith(b"RIFF") and len(parsed.pcm16) % 2 == 0


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0, max_value=49), value=st.integers(min_value=0, max_value=255),
       cut=st.integers(min_value=0, max_value=52))
def test_mutated_wav_headers_never_crash_the_parser(position: int, value: int, cut: int) -> None:
    data = bytearray(wav_bytes(struct.pack("<4h", 1, 2, 3, 4)))
    data[position] = value
    try:
        parsed = parse_wav(bytes(data[: len(data) - cut]))
    except InvalidAudio as exc:
        assert exc.message
        return
    assert parsed.sample_rate_hz >= 4000 and len(parsed.pcm16) % 2 == 0
