"""Parsing espeak-ng's streamed WAV, and audio-file prompts of any common rate and layout."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.tts import AudioFileError, AudioPromptStore, PcmAudio, SynthesisError, load_wav
from voicebot.tts.espeak import parse_streamed_wav

pytestmark = pytest.mark.unit


def streamed_wav(pcm: bytes, rate_hz: int = 22050) -> bytes:
    """A WAV header as espeak-ng writes it to a pipe: placeholder sizes (it cannot seek back)."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate_hz, rate_hz * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", 0x7FFFF000) + pcm


def test_parse_streamed_wav_ignores_placeholder_sizes() -> None:
    pcm = bytes(range(200))
    assert parse_streamed_wav(streamed_wav(pcm)) == (22050, pcm)
    assert parse_streamed_wav(streamed_wav(pcm + b"\x01")) == (22050, pcm + b"\x01"[:0])


@pytest.mark.parametrize(("data", "message"), [
    (b"", "did not write a WAV file"),
    (b"RIFX\x00\x00\x00\x00WAVE", "did not write a WAV file"),
    (b"RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00", "'data' chunk comes before the 'fmt ' chunk"),
    (b"RIFF\x00\x00\x00\x00WAVE", "espeak-ng WAV has no 'fmt ' chunk"),
    (streamed_wav(b"")[:36], "espeak-ng WAV has no 'data' chunk"),
    (streamed_wav(b"").replace(b"\x01\x00\x01\x00", b"\x03\x00\x01\x00", 1), "wrote format 3, 1 channel"),
])
def test_parse_streamed_wav_errors(data: bytes, message: str) -> None:
    with pytest.raises(SynthesisError, match=message):
        parse_streamed_wav(data)


def tone(rate_hz: int, seconds: float, freq_hz: float = 1000.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate_hz * seconds)) / rate_hz
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def write(path: Path, signal: np.ndarray, rate_hz: int, *, channels: int = 1, width: int = 2) -> Path:
    frames = np.repeat(signal[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        data = (frames * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        data = (frames * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = (frames * (2**23 - 1)).astype("<i4")
        data = b"".join(int(v).to_bytes(4, "little", signed=True)[:3] for v in ints)
    else:
        data = (frames * (2**31 - 1)).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate_hz)
        w.writeframes(data)
    return path


def dominant_hz(audio: PcmAudio) -> float:
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * audio.sample_rate_hz / len(samples))


@pytest.mark.parametrize(("rate_hz", "channels", "width"), [
    (8000, 1, 2), (16000, 1, 2), (22050, 1, 2), (44100, 2, 2), (48000, 2, 2), (11025, 1, 1),
    (48000, 1, 3), (32000, 2, 4),
])
def test_any_common_wav_becomes_8khz_16bit_mono(
    tmp_path: Path, rate_hz: int, channels: int, width: int
) -> None:
    path = write(tmp_path / "p.wav", tone(rate_hz, 0.5), rate_hz, channels=channels, width=width)
    audio = load_wav(path)
    assert audio.sample_rate_hz == 8000
    assert audio.duration_s == pytest.approx(0.5, abs=0.002)
    assert dominant_hz(audio) == pytest.approx(1000, abs=5)
    assert audio.peak() == pytest.approx(16384, rel=0.08)  # level kept (half scale)


def test_content_above_4khz_is_filtered_not_aliased(tmp_path: Path) -> None:
    # A 6 kHz tone at 48 kHz would alias to 2 kHz if decimated naively; a real resampler drops it.
    path = write(tmp_path / "hi.wav", tone(48000, 0.5, freq_hz=6000), 48000)
    audio = load_wav(path)
    # Ignore the filter's start-up and tail transients (the tone starts and stops abruptly).
    middle = np.frombuffer(audio.pcm, dtype="<i2")[400:-400].astype(np.float64)
    assert float(np.sqrt(np.mean(middle**2))) < 100  # the 1 kHz test tone above is ~11600 RMS


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match=r"nope\.wav: audio prompt file not found"):
        load_wav(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"ID3 this is an mp3")
    with pytest.raises(AudioFileError, match=r"junk\.wav: not a PCM WAV file"):
        load_wav(junk)


def test_store_loads_each_file_once(tmp_path: Path) -> None:
    path = write(tmp_path / "p.wav", tone(16000, 0.2), 16000)
    store = AudioPromptStore()
    first = store.load(path)
    assert store.load(tmp_path / "." / "p.wav") is first
    assert store.get(path) is first
    assert len(store) == 1
    with pytest.raises(AudioFileError, match="was not loaded with its dialplan"):
        store.get(tmp_path / "other.wav")
