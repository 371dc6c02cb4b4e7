"""The synthetic callers of the intent bench and the line-noise helper.

Every voice engine must give non-silent 8 kHz telephone audio of a length that fits the text and
the rate; the noise helper must hit the requested SNR (measured independently here) within 0.5 dB.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from voicebot.media.frames import SAMPLE_RATE_HZ
from voicebot.testing.speech import active_power, add_line_noise, silence
from voicebot.testing.voices import DEFAULT_VOICES, Voice, parse_voice

pytestmark = pytest.mark.unit

TEXT = "please check my account balance"  # five words


def _rms(pcm16: bytes) -> float:
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


@pytest.mark.parametrize("voice", [
    Voice("espeak", "en-us", 175), Voice("espeak", "en-gb-scotland", 130), Voice("espeak", "en-029", 210),
    Voice("piper", "joe", 1.0), Voice("piper", "joe", 1.25),
    Voice("flite", "slt", 1.0), Voice("flite", "awb", 1.1), Voice("flite", "kal16", 0.9),
], ids=lambda v: v.name)
def test_voice_gives_audible_8khz_speech_of_plausible_length(voice: Voice) -> None:
    pcm = voice.telephone(TEXT)
    assert len(pcm) % 2 == 0
    duration_s = len(pcm) / 2 / SAMPLE_RATE_HZ
    # Five words: between 100 and 300 words per minute with a little lead-in/out.
    assert 1.0 <= duration_s <= 4.5, duration_s
    assert _rms(pcm) > 300.0  # about -40 dBFS: speech, not silence or dither


def test_slower_rate_gives_longer_audio() -> None:
    fast = Voice("espeak", "en-us", 210).telephone(TEXT)
    slow = Voice("espeak", "en-us", 130).telephone(TEXT)
    assert len(slow) > 1.3 * len(fast)
    joe_fast = Voice("piper", "joe", 0.8).telephone(TEXT)
    joe_slow = Voice("piper", "joe", 1.25).telephone(TEXT)
    assert len(joe_slow) > 1.2 * len(joe_fast)
    rms_fast = Voice("flite", "rms", 0.8).telephone(TEXT)
    rms_slow = Voice("flite", "rms", 1.2).telephone(TEXT)
    assert len(rms_slow) > 1.3 * len(rms_fast)


def test_voice_names_round_trip() -> None:
    for voice in (*DEFAULT_VOICES, Voice("flite", "awb", 1.0), Voice("flite", "slt", 1.05)):
        assert parse_voice(voice.name) == voice


@pytest.mark.parametrize("bad", ["en-us@175", "espeak:en-us", "piper:amy@1.0", "espeak:en-us@fast",
                                 "flite:bob@1.0", "flite:slt@0", "festival:kal@1.0"])
def test_parse_voice_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="voice"):
        parse_voice(bad)


def _tone(duration_s: float, amplitude: float = 8000.0, freq_hz: float = 1000.0) -> bytes:
    t = np.arange(int(duration_s * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return np.round(amplitude * np.sin(2 * math.pi * freq_hz * t)).astype("<i2").tobytes()


def _measured_snr_db(clean: bytes, noisy: bytes, signal_power: float) -> float:
    noise = np.frombuffer(noisy, dtype="<i2").astype(np.float64) - np.frombuffer(clean, dtype="<i2")
    return 10 * math.log10(signal_power / float(np.mean(noise * noise)))


@pytest.mark.parametrize("snr_db", [10.0, 20.0, 30.0])
def test_noise_on_a_tone_has_the_requested_snr(snr_db: float) -> None:
    clean = _tone(2.0)
    noisy = add_line_noise(clean, snr_db, seed="tone")
    # A full-scale sine of amplitude A has power A^2 / 2, every frame active.
    assert abs(_measured_snr_db(clean, noisy, 8000.0**2 / 2) - snr_db) < 0.5


def test_noise_on_speech_with_silence_refers_to_the_speech() -> None:
    speech = Voice("espeak", "en-us", 175).telephone(TEXT)
    clean = silence(1000) + speech + silence(1000)
    noisy = add_line_noise(clean, 20.0, seed="speech")
    assert abs(_measured_snr_db(clean, noisy, active_power(speech)) - 20.0) < 0.5
    # The silence is no longer silent: the noise runs through the whole line.
    assert _rms(noisy[:8000]) > 0.0


def test_noise_is_reproducible_per_seed_and_band_limited() -> None:
    clean = _tone(1.0)
    a = add_line_noise(clean, 20.0, seed="x")
    assert a == add_line_noise(clean, 20.0, seed="x")
    assert a != add_line_noise(clean, 20.0, seed="y")
    noise = np.frombuffer(a, dtype="<i2").astype(np.float64) - np.frombuffer(clean, dtype="<i2")
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(len(noise), 1 / SAMPLE_RATE_HZ)
    out_of_band = spectrum[(freqs < 250) | (freqs > 3450)].sum()
    assert out_of_band < 0.01 * spectrum.sum()


def test_silent_input_stays_silent() -> None:
    assert add_line_noise(silence(500), 20.0) == silence(500)
