"""Audio formats on the recognition path: LINEAR16 bytes, WAV files, and resampling to the engine rate.

SpeechKit v3 sends raw ``LINEAR16_PCM`` (16-bit signed little-endian, mono, at the rate the client
declares) or a ``WAV`` container. Everything becomes float32 in [-1, 1) at the engine's rate
(16 kHz for Whisper) through soxr, a band-limited resampler: repeating or dropping samples would
fold aliases into the speech band and cost accuracy. :class:`Linear16Stream` does this per session
in chunks of any length, keeping both a half-sample byte remainder and the resampler's filter state
across chunks, so streaming output equals decoding the whole stream at once. The WAV reader and the
resampler are the shared ones in :mod:`voicebot.media`; this module adds the recognizer's rate
limits and its error type.

A malformed or unsupported WAV raises :class:`InvalidAudio` with a message that names what is
wrong, so the server can answer ``INVALID_ARGUMENT`` and the client can fix its request.
"""

from __future__ import annotations

import numpy as np

from voicebot.errors import VoicebotError
from voicebot.media import wav
from voicebot.media.resample import Float32Array, Float32StreamResampler, resample_float32
from voicebot.media.wav import WavAudio

__all__ = [
    "MAX_RATE_HZ", "MIN_RATE_HZ", "Float32Array", "InvalidAudio", "Linear16Stream", "StreamResampler",
    "WavAudio", "check_rate", "float32_to_pcm16", "parse_wav", "pcm16_to_float32", "resample",
]

MIN_RATE_HZ = 4000
MAX_RATE_HZ = 192_000


class InvalidAudio(VoicebotError):
    """The client sent audio we cannot decode; the message says what is wrong with it."""


def check_rate(sample_rate_hz: int) -> None:
    if not MIN_RATE_HZ <= sample_rate_hz <= MAX_RATE_HZ:
        raise InvalidAudio(
            f"sample rate {sample_rate_hz} Hz is outside the supported {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz"
        )


def pcm16_to_float32(pcm16: bytes) -> Float32Array:
    """16-bit signed little-endian mono PCM -> float32 in [-1, 1)."""
    if len(pcm16) % 2:
        raise InvalidAudio(f"LINEAR16 audio must have an even number of bytes, got {len(pcm16)}")
    samples = np.frombuffer(pcm16, dtype="<i2")
    return (samples.astype(np.float32) / 32768.0).astype(np.float32, copy=False)


def float32_to_pcm16(audio: Float32Array) -> bytes:
    """float32 in [-1, 1] -> 16-bit signed little-endian PCM, clipping what is outside."""
    scaled = np.clip(np.rint(audio * 32768.0), -32768, 32767).astype("<i2")
    return bytes(scaled.tobytes())


def resample(audio: Float32Array, from_rate_hz: int, to_rate_hz: int) -> Float32Array:
    """Resample a whole signal with soxr (high quality, linear phase)."""
    check_rate(from_rate_hz)
    check_rate(to_rate_hz)
    return resample_float32(audio, from_rate_hz, to_rate_hz)


def parse_wav(data: bytes) -> WavAudio:
    """Parse a RIFF/WAVE file holding 16-bit PCM mono at any rate (:func:`voicebot.media.wav.parse_wav`).

    A ``data`` chunk whose declared size runs past the end (a WAV header written before the length
    was known, as streaming recorders do) is taken to extend to the end of the bytes.
    """
    try:
        audio = wav.parse_wav(data)
    except wav.WavError as exc:
        raise InvalidAudio(str(exc)) from None
    check_rate(audio.sample_rate_hz)
    return audio


class StreamResampler(Float32StreamResampler):
    """Stateful soxr resampler for one stream of float32 mono audio, rates checked as a client's."""

    def __init__(self, from_rate_hz: int, to_rate_hz: int) -> None:
        check_rate(from_rate_hz)
        check_rate(to_rate_hz)
        super().__init__(from_rate_hz, to_rate_hz)


class Linear16Stream:
    """LINEAR16 chunks of any byte length at ``sample_rate_hz`` -> float32 at ``target_rate_hz``."""

    def __init__(self, sample_rate_hz: int, target_rate_hz: int) -> None:
        self.sample_rate_hz = sample_rate_hz
        self.target_rate_hz = target_rate_hz
        self._resampler = StreamResampler(sample_rate_hz, target_rate_hz)
        self._odd_byte = b""

    def push(self, chunk: bytes) -> Float32Array:
        data = self._odd_byte + chunk
        cut = len(data) - len(data) % 2
        self._odd_byte = data[cut:]
        return self._resampler.process(pcm16_to_float32(data[:cut]))

    def flush(self) -> Float32Array:
        # A dangling odd byte is half a sample: nothing can be made of it.
        self._odd_byte = b""
        return self._resampler.flush()
