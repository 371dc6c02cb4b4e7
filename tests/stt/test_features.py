"""The feature front end's high shelf (voicebot.stt.features): pure numpy, no model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from voicebot.stt.features import (
    N_FFT,
    SAMPLE_RATE_HZ,
    SHELF_FULL_HZ,
    SHELF_START_HZ,
    high_shelf_gain,
    log_mel_spectrogram,
    mel_filters,
    shelved_mel_filters,
)


def _tone(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.1) -> npt.NDArray[np.float32]:
    t = np.arange(int(SAMPLE_RATE_HZ * seconds)) / SAMPLE_RATE_HZ
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_shelf_gain_is_flat_below_its_start_full_above_and_monotonic_between() -> None:
    freq_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, 801)
    gain_db = 10 * np.log10(high_shelf_gain(freq_hz, 6.0))
    assert np.allclose(gain_db[freq_hz <= SHELF_START_HZ], 0.0)
    assert np.allclose(gain_db[freq_hz >= SHELF_FULL_HZ], 6.0)
    assert np.all(np.diff(gain_db) >= 0)
    middle = (SHELF_START_HZ + SHELF_FULL_HZ) / 2
    assert 10 * np.log10(high_shelf_gain(np.array([middle]), 6.0))[0] == pytest.approx(3.0)


def test_zero_shelf_is_whispers_own_features() -> None:
    audio = _tone(440.0) + _tone(3000.0)
    assert np.array_equal(log_mel_spectrogram(audio, 100), log_mel_spectrogram(audio, 100, high_shelf_db=0.0))
    assert np.allclose(shelved_mel_filters(80, 0.0), mel_filters(80))


def test_shelf_raises_a_high_tone_against_a_low_one_by_its_gain() -> None:
    # Two tones of equal level: with a 6 dB shelf, the 3.2 kHz band gains 6 dB against the
    # 500 Hz band. Features are log10 power scaled by 1/4 (Whisper's (x + 4) / 4).
    audio = _tone(500.0) + _tone(3200.0)
    plain = log_mel_spectrogram(audio, 100)
    shelved = log_mel_spectrogram(audio, 100, high_shelf_db=6.0)
    filters = mel_filters(80)
    fft_hz = np.linspace(0, SAMPLE_RATE_HZ / 2, N_FFT // 2 + 1)
    centres_hz = (filters * fft_hz).sum(axis=1) / filters.sum(axis=1)
    low, high = int(np.argmin(abs(centres_hz - 500))), int(np.argmin(abs(centres_hz - 3200)))
    frames = slice(10, 90)
    low_change = (shelved[low, frames] - plain[low, frames]).mean()
    high_change = (shelved[high, frames] - plain[high, frames]).mean()
    assert low_change == pytest.approx(0.0, abs=1e-3)
    assert high_change == pytest.approx(6.0 / 10 / 4, abs=0.01)


def test_shelf_leaves_silence_and_the_feature_shape_alone() -> None:
    silence = np.zeros(SAMPLE_RATE_HZ, dtype=np.float32)
    shelved = log_mel_spectrogram(silence, 100, high_shelf_db=6.0)
    assert shelved.shape == (80, 100)
    assert np.array_equal(shelved, log_mel_spectrogram(silence, 100))
