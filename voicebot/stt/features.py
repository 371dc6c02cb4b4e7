"""Whisper's feature front end, done our own way for short telephone utterances.

The 80-bin log-mel spectrogram with the same maths as Whisper's ``log_mel_spectrogram`` (periodic
Hann window, n_fft 400, hop 160 at 16 kHz, Slaney mel filters, log10 clamped to 8 below the peak,
scaled by (x + 4) / 4; an optional high shelf, HIGH_SHELF_DB, off by default),
computed over a window of max(ceil(duration) + 2 s, 8 s) instead of a padded 30 s one; the token
budget for that much audio; long audio cut into pieces at quiet moments; and the voiced span and
loudness measures the engine (:mod:`voicebot.stt.model`) uses to skip silence and to place words.
Pure numpy: no model, no I/O (docs/stt-engine.md has the measurements).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt

from voicebot.stt.engine import WordTiming

Float32Array = npt.NDArray[np.float32]

SAMPLE_RATE_HZ = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
FRAMES_PER_S = SAMPLE_RATE_HZ // HOP_LENGTH  # 100 mel frames per second
ENCODER_FRAMES_PER_S = FRAMES_PER_S // 2  # the encoder's conv stem halves the time resolution

MIN_WINDOW_S = 8
TAIL_PAD_S = 2
MAX_WINDOW_S = 30  # the encoder's positional embedding covers 30 s
MAX_TEXT_TOKENS = 448  # the decoder's context, prompt included
MAX_SEGMENT_S = 28  # longer input is decoded in pieces of at most this
SEGMENT_SEARCH_S = 3  # ... cut at the quietest moment of their last 3 s
TOKENS_PER_S = 8
EXTRA_TOKENS = 10
# An optional gentle high shelf on the power spectrum before the mel filters: 0 dB up to 1 kHz,
# rising linearly (in dB) to the gain at 3 kHz and flat above, folded into the mel filter weights
# (no cost per frame). Off by default: +6 dB looked better on finals decoded alone (menu 106 vs
# 102 of 115 synthetic) but through the real server (bench/intent_bench.py) it routed 189 of 229
# against 190 and accepted one more off-topic answer (docs/stt-engine.md, "Input conditioning").
HIGH_SHELF_DB = 0.0
SHELF_START_HZ = 1000.0
SHELF_FULL_HZ = 3000.0


def _hz_to_mel(freq_hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale (librosa's default, which Whisper's filters were built with)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(
        freq_hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(freq_hz, 1e-10) / min_log_hz) / logstep,
        freq_hz / f_sp,
    )


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@functools.cache
def mel_filters(n_mels: int = N_MELS) -> npt.NDArray[np.float32]:
    """Triangular Slaney-normalized mel filters, shape [n_mels, n_fft // 2 + 1], 0..8 kHz."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, N_FFT // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE_HZ / 2.0)), n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    return weights.astype(np.float32)


def high_shelf_gain(freq_hz: npt.NDArray[np.float64], gain_db: float) -> npt.NDArray[np.float64]:
    """Power gain of the high shelf at ``freq_hz``: 1 below SHELF_START_HZ, ``gain_db`` (as a power
    ratio) from SHELF_FULL_HZ up, linear in dB between."""
    ramp = np.clip((freq_hz - SHELF_START_HZ) / (SHELF_FULL_HZ - SHELF_START_HZ), 0.0, 1.0)
    return np.asarray(10.0 ** (gain_db * ramp / 10.0), dtype=np.float64)


@functools.cache
def shelved_mel_filters(n_mels: int, high_shelf_db: float) -> npt.NDArray[np.float32]:
    """:func:`mel_filters` with the high shelf applied to every FFT bin they weigh."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, N_FFT // 2 + 1)
    weights = mel_filters(n_mels) * high_shelf_gain(fft_hz, high_shelf_db)[None, :]
    return weights.astype(np.float32)


@functools.cache
def _hann_window() -> npt.NDArray[np.float64]:
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic, as torch.hann_window


def log_mel_spectrogram(
    audio: Float32Array, n_frames: int, n_mels: int = N_MELS, high_shelf_db: float = 0.0
) -> Float32Array:
    """Whisper's log-mel features of ``audio`` zero-padded (or cut) to ``n_frames`` frames of 10 ms,
    with a high shelf of ``high_shelf_db`` (0: Whisper's own features exactly)."""
    n_samples = n_frames * HOP_LENGTH
    signal = np.zeros(n_samples, dtype=np.float64)
    used = min(len(audio), n_samples)
    signal[:used] = audio[:used]
    half = N_FFT // 2
    padded = np.pad(signal, (half, half), mode="reflect")  # STFT center=True
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n_frames]
    power = np.abs(np.fft.rfft(windows * _hann_window(), axis=1)) ** 2
    filters = shelved_mel_filters(n_mels, high_shelf_db) if high_shelf_db else mel_filters(n_mels)
    mel: Float32Array = filters @ power.T.astype(np.float32)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    out: Float32Array = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return out


def window_s(duration_s: float, min_window_s: int = MIN_WINDOW_S) -> int:
    """The analysis window for an utterance: max(ceil(duration) + 2 s, 8 s), at most 30 s."""
    return int(min(MAX_WINDOW_S, max(math.ceil(duration_s) + TAIL_PAD_S, min_window_s)))


def max_new_tokens(duration_s: float) -> int:
    return math.ceil(duration_s * TOKENS_PER_S) + EXTRA_TOKENS


def segments(samples: Float32Array) -> list[tuple[int, int]]:
    """Cut audio into pieces of at most MAX_SEGMENT_S, each ending at the quietest 20 ms frame of
    its last SEGMENT_SEARCH_S seconds, so a cut rarely falls inside a word."""
    frame = SAMPLE_RATE_HZ // 50
    longest = MAX_SEGMENT_S * SAMPLE_RATE_HZ
    search = SEGMENT_SEARCH_S * SAMPLE_RATE_HZ
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(samples) - start > longest:
        lo = start + longest - search
        n = search // frame
        energy = np.square(samples[lo : lo + n * frame].reshape(n, frame)).mean(axis=1)
        cut = lo + (int(np.argmin(energy)) + 1) * frame
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(samples)))
    return pieces

def voiced_span_ms(samples: Float32Array) -> tuple[int, int]:
    """From the first to the last 10 ms frame within 30 dB of the loudest one."""
    frame = SAMPLE_RATE_HZ // 100
    n = len(samples) // frame
    if n == 0:
        return 0, len(samples) * 1000 // SAMPLE_RATE_HZ
    energy = np.square(samples[: n * frame].reshape(n, frame)).mean(axis=1)
    voiced = np.nonzero(energy > energy.max() * 1e-3)[0]
    if not len(voiced):
        return 0, n * 10
    return int(voiced[0]) * 10, int(voiced[-1]) * 10 + 10


def loudest_frame_rms(samples: Float32Array) -> float:
    frame = SAMPLE_RATE_HZ // 50
    n = max(1, len(samples) // frame)
    padded = np.zeros(n * frame, dtype=np.float32)
    used = min(len(samples), n * frame)
    padded[:used] = samples[:used]
    return float(np.sqrt(np.square(padded.reshape(n, frame)).mean(axis=1).max()))


def spread_words(text: str, samples: Float32Array) -> tuple[WordTiming, ...]:
    """Estimate word times: the voiced span (frames within 30 dB of the peak) split by characters."""
    tokens = text.split()
    if not tokens:
        return ()
    start_ms, end_ms = voiced_span_ms(samples)
    weights = np.array([len(t) + 1 for t in tokens], dtype=np.float64)
    bounds = start_ms + np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * (end_ms - start_ms)
    return tuple(
        WordTiming(t, int(bounds[i]), int(bounds[i + 1])) for i, t in enumerate(tokens)
    )


__all__ = [
    "ENCODER_FRAMES_PER_S", "EXTRA_TOKENS", "FRAMES_PER_S", "HIGH_SHELF_DB", "HOP_LENGTH", "MAX_SEGMENT_S",
    "MAX_TEXT_TOKENS", "MAX_WINDOW_S", "MIN_WINDOW_S", "N_FFT", "N_MELS", "SAMPLE_RATE_HZ",
    "SEGMENT_SEARCH_S", "SHELF_FULL_HZ", "SHELF_START_HZ", "TAIL_PAD_S", "TOKENS_PER_S", "Float32Array",
    "high_shelf_gain", "log_mel_spectrogram", "loudest_frame_rms", "max_new_tokens", "mel_filters",
    "segments", "shelved_mel_filters", "spread_words", "voiced_span_ms", "window_s",
]
