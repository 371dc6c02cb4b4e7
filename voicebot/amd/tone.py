"""Beep detection for answering machines: a single steady tone, found with the Goertzel algorithm.

A voicemail "beep" is one sinusoid, typically 400-2100 Hz, lasting 150 ms to over a second. Speech
and music spread their energy over many frequencies, a beep puts almost all of it in one. Each 20
ms frame is checked against a bank of Goertzel filters every 25 Hz across the band; a frame is
*tonal* when the strongest filter holds at least ``min_purity`` of the frame's energy and the frame
is loud enough. A beep is ``min_beep_ms`` of consecutive tonal frames within one frequency
neighbourhood (the tone may drift a little). Pure: PCM in, results out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from voicebot.media.frames import SAMPLE_RATE_HZ

BEEP_LOW_HZ = 350.0
BEEP_HIGH_HZ = 2200.0
BEEP_STEP_HZ = 25.0


@dataclass(frozen=True, slots=True)
class Tone:
    frequency_hz: float
    purity: float  # share of the frame's energy at that frequency, 0..1
    level_dbfs: float


@dataclass(frozen=True, slots=True)
class BeepDetected:
    start_ms: int  # on the detector's timeline (ms of audio fed before the beep began)
    end_ms: int
    frequency_hz: float


class ToneAnalyzer:
    """Goertzel filter bank over a fixed frame length."""

    def __init__(self, frame_samples: int, *, low_hz: float = BEEP_LOW_HZ, high_hz: float = BEEP_HIGH_HZ,
                 step_hz: float = BEEP_STEP_HZ, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.frame_samples = frame_samples
        self.frequencies = np.arange(low_hz, high_hz + step_hz / 2, step_hz)
        n = np.arange(frame_samples)
        # Windowed complex exponentials: the Goertzel output for every frequency as one matrix product.
        window = np.hanning(frame_samples)
        self._basis = (window * np.exp(-2j * math.pi * np.outer(self.frequencies, n) / sample_rate_hz))
        self._window_energy = float(np.sum(window ** 2))

    def analyze(self, pcm16: bytes) -> Tone:
        samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
        if samples.size != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} samples, got {samples.size}")
        total = float(np.sum(samples ** 2))
        if total <= 0.0:
            return Tone(0.0, 0.0, -120.0)
        power = np.abs(self._basis @ samples) ** 2
        best = int(np.argmax(power))
        # A pure sinusoid of amplitude A gives |X|^2 = (A * sum(w) / 2)^2 and total energy ~ N A^2 / 2;
        # normalise so a clean tone scores ~1 and broadband sound scores low.
        purity = float(power[best] * 2.0 / (self._window_energy * total))
        rms = math.sqrt(total / samples.size)
        level = 20.0 * math.log10(max(rms, 1e-9) / 32768.0)
        return Tone(float(self.frequencies[best]), min(purity, 1.0), level)


class BeepDetector:
    """Feed 20 ms frames; :meth:`feed` returns a :class:`BeepDetected` once per beep, at its end."""

    def __init__(self, *, frame_ms: int = 20, min_beep_ms: int = 160, min_purity: float = 0.6,
                 min_level_dbfs: float = -40.0, max_drift_hz: float = 60.0) -> None:
        self.frame_ms = frame_ms
        self.min_beep_ms = min_beep_ms
        self.min_purity = min_purity
        self.min_level_dbfs = min_level_dbfs
        self.max_drift_hz = max_drift_hz
        self._analyzer = ToneAnalyzer(SAMPLE_RATE_HZ * frame_ms // 1000)
        self._position_ms = 0
        self._run_start_ms: int | None = None
        self._run_freqs: list[float] = []

    @property
    def in_tone(self) -> bool:
        return self._run_start_ms is not None and len(self._run_freqs) * self.frame_ms >= self.min_beep_ms

    def feed(self, pcm16: bytes) -> BeepDetected | None:
        tone = self._analyzer.analyze(pcm16)
        at = self._position_ms
        self._position_ms += self.frame_ms
        tonal = tone.purity >= self.min_purity and tone.level_dbfs >= self.min_level_dbfs
        if tonal and self._run_freqs and abs(tone.frequency_hz - self._run_freqs[0]) > self.max_drift_hz:
            ended = self._end_run(at)
            self._start_run(at, tone.frequency_hz)
            return ended
        if tonal:
            if self._run_start_ms is None:
                self._start_run(at, tone.frequency_hz)
            else:
                self._run_freqs.append(tone.frequency_hz)
            return None
        return self._end_run(at)

    def _start_run(self, at: int, frequency_hz: float) -> None:
        self._run_start_ms = at
        self._run_freqs = [frequency_hz]

    def _end_run(self, at: int) -> BeepDetected | None:
        found = None
        if self._run_start_ms is not None and len(self._run_freqs) * self.frame_ms >= self.min_beep_ms:
            freqs = sorted(self._run_freqs)
            found = BeepDetected(self._run_start_ms, at, freqs[len(freqs) // 2])
        self._run_start_ms = None
        self._run_freqs = []
        return found
