"""Sample-rate conversion of 16-bit mono PCM to and from the 8 kHz telephone rate, with soxr.

:func:`resample_pcm16` converts a whole buffer (prompts from TTS at 16/22.05/24/48 kHz -> 8 kHz, or
8 kHz -> 16 kHz for a recognizer). :class:`StreamResampler` converts a stream chunk by chunk with
the filter state carried over, so chunk boundaries add no clicks. :func:`resample_float32` and
:class:`Float32StreamResampler` do the same for float32 signals (the recognizer's input).

Every conversion goes through libsoxr, a band-limited resampler: repeating or dropping samples would
fold everything above the new Nyquist frequency back into the speech band. This is the only
resampler in the package; prompts (``voicebot.tts``) and the recognizer (``voicebot.stt.audio``)
call it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

Float32Array = npt.NDArray[np.float32]


def _check_rate(name: str, rate_hz: int) -> None:
    if not 1000 <= rate_hz <= 384_000:
        raise ValueError(f"{name} {rate_hz} Hz is outside 1000-384000 Hz")


def resample_pcm16(pcm16: bytes, from_rate_hz: int, to_rate_hz: int, *, quality: str = "HQ") -> bytes:
    """Resample a whole buffer of signed 16-bit mono PCM; same rate returns the input unchanged."""
    _check_rate("from_rate_hz", from_rate_hz)
    _check_rate("to_rate_hz", to_rate_hz)
    if len(pcm16) % 2:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm16)} bytes")
    if from_rate_hz == to_rate_hz or not pcm16:
        return pcm16
    samples = np.frombuffer(pcm16, dtype="<i2")
    # soxr works in int16 here and saturates (clips) overshoot instead of wrapping.
    out = soxr.resample(samples, from_rate_hz, to_rate_hz, quality=quality)
    return np.asarray(out, dtype="<i2").tobytes()


def resample_float32(audio: Float32Array, from_rate_hz: int, to_rate_hz: int) -> Float32Array:
    """Resample a whole float32 mono signal (high quality, linear phase); same rate is a no-op."""
    _check_rate("from_rate_hz", from_rate_hz)
    _check_rate("to_rate_hz", to_rate_hz)
    if from_rate_hz == to_rate_hz:
        return audio.astype(np.float32, copy=False)
    out = soxr.resample(audio.astype(np.float32, copy=False), from_rate_hz, to_rate_hz, quality="HQ")
    return np.asarray(out, dtype=np.float32)


class StreamResampler:
    """Chunked resampling of a 16-bit mono stream; call :meth:`flush` once at the end."""

    def __init__(self, from_rate_hz: int, to_rate_hz: int, *, quality: str = "HQ") -> None:
        _check_rate("from_rate_hz", from_rate_hz)
        _check_rate("to_rate_hz", to_rate_hz)
        self.from_rate_hz = from_rate_hz
        self.to_rate_hz = to_rate_hz
        self._stream = soxr.ResampleStream(from_rate_hz, to_rate_hz, 1, dtype="int16", quality=quality)

    def process(self, pcm16: bytes) -> bytes:
        if len(pcm16) % 2:
            raise ValueError(f"16-bit PCM must have an even length, got {len(pcm16)} bytes")
        out = self._stream.resample_chunk(np.frombuffer(pcm16, dtype="<i2"))
        return np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> bytes:
        out = self._stream.resample_chunk(np.zeros(0, dtype="<i2"), last=True)
        return np.asarray(out, dtype="<i2").tobytes()


class Float32StreamResampler:
    """Stateful resampler for one stream of float32 mono audio; same rate passes through."""

    def __init__(self, from_rate_hz: int, to_rate_hz: int) -> None:
        _check_rate("from_rate_hz", from_rate_hz)
        _check_rate("to_rate_hz", to_rate_hz)
        self.from_rate_hz = from_rate_hz
        self.to_rate_hz = to_rate_hz
        self._stream = (
            None
            if from_rate_hz == to_rate_hz
            else soxr.ResampleStream(from_rate_hz, to_rate_hz, 1, dtype="float32", quality="HQ")
        )
        self._ended = False

    def process(self, audio: Float32Array) -> Float32Array:
        if self._ended:
            raise RuntimeError("StreamResampler.process() after flush()")
        if self._stream is None:
            return audio.astype(np.float32, copy=False)
        out = self._stream.resample_chunk(np.ascontiguousarray(audio, dtype=np.float32))
        return np.asarray(out, dtype=np.float32)

    def flush(self) -> Float32Array:
        """End of stream: the samples still inside the resampler's filter."""
        if self._ended:
            return np.zeros(0, dtype=np.float32)
        self._ended = True
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        return np.asarray(out, dtype=np.float32)
