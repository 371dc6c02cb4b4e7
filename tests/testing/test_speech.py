"""The telephone-path test speech is byte-for-byte repeatable.

Benches and model-tier tests compare runs (before/after a change, one CPU's ISA against another);
that is only meaningful when the caller's audio is the same input every time (issue 12: sox dithered
each synthesis differently).
"""

from __future__ import annotations

import hashlib
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.media.frames import SAMPLE_RATE_HZ
from voicebot.testing.speech import telephone_path, telephone_speech, to_telephone_band

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                       reason="espeak-ng and sox are needed (scripts/setup installs them)"),
]

TEXT = "My account balance, please."


def _tone_wav(path: Path, sample_rate_hz: int = 22050) -> Path:
    """A 1 kHz tone at a low level, so any dither would show in the low bits of the result."""
    t = np.arange(sample_rate_hz) / sample_rate_hz
    x = np.round(40.0 * np.sin(2 * np.pi * 1000.0 * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(x.tobytes())
    return path


def test_two_syntheses_of_the_same_text_are_identical_bytes() -> None:
    first, second = telephone_speech(TEXT), telephone_speech(TEXT)
    assert len(first) > SAMPLE_RATE_HZ  # over half a second of 16-bit audio: real speech came out
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_the_same_text_with_line_noise_is_identical_bytes() -> None:
    first = telephone_speech(TEXT, noise_snr_db=20.0)
    assert first == telephone_speech(TEXT, noise_snr_db=20.0)
    assert first != telephone_speech(TEXT)  # the noise is there, and it is the same noise


def test_band_limiting_a_quiet_tone_adds_no_dither(tmp_path: Path) -> None:
    wav = _tone_wav(tmp_path / "tone.wav")
    runs = {to_telephone_band(wav) for _ in range(3)}
    assert len(runs) == 1
    pcm = runs.pop()
    assert len(pcm) == 2 * SAMPLE_RATE_HZ  # one second at 8 kHz
    assert telephone_path(wav) == telephone_path(wav)
