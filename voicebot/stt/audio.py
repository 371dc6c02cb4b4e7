"""Audio formats on the recognition path: LINEAR16 bytes, WAV files, and resampling to the engine rate.

SpeechKit v3 sends raw ``LINEAR16_PCM`` (16-bit signed little-endian, mono, at the rate the client
declares) or a ``WAV`` container. Everything becomes float32 in [-1, 1) at the engine's rate
(16 kHz for Whisper) through soxr, a band-limited resampler: repeating or dropping samples would
fold aliases into the speech band and cost accuracy. :class:`Linear16Stream` does this per session
in chunks of any length, keeping both a half-sample byte remainder and the resampler's filter state
across chunks, so streaming output equals decoding the whole stream at once.

A malformed or unsupported WAV raises :class:`InvalidAudio` with a message that names what is
wrong, so the server can answer ``INVALID_ARGUMENT`` and the client can fix its request.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import soxr

from voicebot.errors import VoicebotError

Float32Array = npt.NDArray[np.float32]

MIN_RATE_HZ = 4000
MAX_RATE_HZ = 192_000

# WAVE format tags (Microsoft RIFF spec): plain PCM and WAVE_FORMAT_EXTENSIBLE.
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The first two bytes of the KSDATAFORMAT_SUBTYPE_PCM GUID carry the PCM format tag.
_PCM_SUBFORMAT_TAG = _WAVE_FORMAT_PCM


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
    if from_rate_hz == to_rate_hz:
        return audio.astype(np.float32, copy=False)
    out = soxr.resample(audio.astype(np.float32, copy=False), from_rate_hz, to_rate_hz, quality="HQ")
    return np.asarray(out, dtype=np.float32)


@dataclass(frozen=True, slots=True)
class WavAudio:
    sample_rate_hz: int
    pcm16: bytes  # 16-bit signed little-endian mono

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // self.sample_rate_hz


def parse_wav(data: bytes) -> WavAudio:
    """Parse a RIFF/WAVE file holding 16-bit PCM mono at any rate.

    A ``data`` chunk whose declared size runs past the end (a WAV header written before the length
    was known, as streaming recorders do) is taken to extend to the end of the bytes.
    """
    if len(data) < 12:
        raise InvalidAudio(f"WAV too short for a RIFF header ({len(data)} bytes)")
    if data[:4] != b"RIFF":
        magic = data[:4]
        hint = " (RIFX big-endian WAV is not supported)" if magic == b"RIFX" else ""
        raise InvalidAudio(f"not a WAV file: starts with {magic!r}, expected b'RIFF'{hint}")
    if data[8:12] != b"WAVE":
        raise InvalidAudio(f"RIFF form type is {data[8:12]!r}, expected b'WAVE'")
    fmt: tuple[int, int, int, int] | None = None  # format tag, channels, rate, bits
    offset = 12
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body_start = offset + 8
        if chunk_id == b"fmt ":
            if size < 16 or body_start + size > len(data):
                raise InvalidAudio(f"WAV 'fmt ' chunk is truncated ({size} bytes declared)")
            tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from(
                "<HHIIHH", data, body_start
            )
            if tag == _WAVE_FORMAT_EXTENSIBLE:
                if size < 40:
                    raise InvalidAudio("WAV WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is shorter than 40 bytes")
                (tag,) = struct.unpack_from("<H", data, body_start + 24)
                if tag != _PCM_SUBFORMAT_TAG:
                    raise InvalidAudio(f"WAV extensible sub-format {tag:#06x} is not PCM")
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise InvalidAudio("WAV 'data' chunk comes before the 'fmt ' chunk")
            tag, channels, rate, bits = fmt
            if tag != _WAVE_FORMAT_PCM:
                name = {3: "IEEE float", 6: "A-law", 7: "mu-law"}.get(tag, f"format {tag:#06x}")
                raise InvalidAudio(f"WAV encoding is {name}; only 16-bit PCM is supported")
            if bits != 16:
                raise InvalidAudio(f"WAV has {bits}-bit samples; only 16-bit PCM is supported")
            if channels != 1:
                raise InvalidAudio(f"WAV has {channels} channels; only mono is supported")
            check_rate(rate)
            body = data[body_start : body_start + size]
            if len(body) % 2:
                body = body[:-1]  # a truncated last sample is dropped, not an error
            return WavAudio(rate, body)
        # RIFF chunks are padded to an even length.
        offset = body_start + size + (size & 1)
    if fmt is None:
        raise InvalidAudio("WAV has no 'fmt ' chunk")
    raise InvalidAudio("WAV has no 'data' chunk")


class StreamResampler:
    """Stateful soxr resampler for one stream of float32 mono audio."""

    def __init__(self, from_rate_hz: int, to_rate_hz: int) -> None:
        check_rate(from_rate_hz)
        check_rate(to_rate_hz)
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
