"""The one RIFF/WAVE reader: whole files, and headers that arrive in pieces or with placeholder sizes.

A WAV file is a RIFF container (Microsoft/IBM "Multimedia Programming Interface and Data
Specifications 1.0", 1991): ``RIFF`` <size> ``WAVE`` followed by chunks of ``id`` + little-endian
``size`` + body, each body padded to an even length. The ``fmt `` chunk (at least 16 bytes; 40 for
``WAVE_FORMAT_EXTENSIBLE``, whose sub-format GUID starts with the real format tag) must come
before ``data``.

Two readers share one chunk walk:

- :func:`parse_wav` takes a complete file and returns its 16-bit mono PCM. A ``data`` chunk whose
  declared size runs past the end (written before the length was known, as streaming recorders and
  espeak-ng on a pipe do) extends to the end of the bytes.
- :class:`WavHeaderReader` is fed bytes as they arrive (a recognition stream, a subprocess pipe)
  and returns the format and the first PCM bytes once the ``data`` chunk starts; everything after
  that is PCM. It checks structure only, so each caller states its own format limits.

Errors are :class:`WavError` with an exact message and a ``kind`` a caller can map to its own
wording (a recognizer names the request field, a synthesizer names the engine).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, Literal

WAVE_FORMAT_PCM: Final = 0x0001
WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
WAVE_FORMAT_ALAW: Final = 0x0006
WAVE_FORMAT_MULAW: Final = 0x0007
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE

_FORMAT_NAMES: Final = {
    WAVE_FORMAT_IEEE_FLOAT: "IEEE float", WAVE_FORMAT_ALAW: "A-law", WAVE_FORMAT_MULAW: "mu-law",
}

WavErrorKind = Literal[
    "too_short", "not_riff", "not_wave", "fmt_truncated", "data_before_fmt", "no_fmt", "no_data",
    "header_too_long", "unsupported",
]


class WavError(ValueError):
    """Bytes that are not a usable WAV file; ``str()`` is the exact reason, ``kind`` its class."""

    def __init__(self, message: str, kind: WavErrorKind) -> None:
        super().__init__(message)
        self.kind: WavErrorKind = kind


@dataclass(frozen=True, slots=True)
class WavFormat:
    """The ``fmt `` chunk; ``format_tag`` is the sub-format's tag for ``WAVE_FORMAT_EXTENSIBLE``."""

    format_tag: int
    channels: int
    sample_rate_hz: int
    bits_per_sample: int

    @property
    def format_name(self) -> str:
        if self.format_tag == WAVE_FORMAT_PCM:
            return "PCM"
        return _FORMAT_NAMES.get(self.format_tag, f"format {self.format_tag:#06x}")


@dataclass(frozen=True, slots=True)
class WavAudio:
    sample_rate_hz: int
    pcm16: bytes  # 16-bit signed little-endian mono

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // self.sample_rate_hz


def _parse_fmt(body: bytes) -> WavFormat:
    tag, channels, rate, _byte_rate, _block_align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise WavError(
                "WAV WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is shorter than 40 bytes", "fmt_truncated"
            )
        # The first two bytes of the sub-format GUID (KSDATAFORMAT_SUBTYPE_*) carry the format tag.
        (tag,) = struct.unpack_from("<H", body, 24)
    return WavFormat(tag, channels, rate, bits)


def _walk(buf: bytes, *, final: bool) -> tuple[WavFormat, int, int] | None:
    """(format, data offset, declared data size) once the ``data`` header is in ``buf``.

    Not ``final``: None while more bytes could complete the header. ``final``: the bytes are all
    there is, so a missing piece is an error.
    """
    if len(buf) < 12:
        if final:
            raise WavError(f"WAV too short for a RIFF header ({len(buf)} bytes)", "too_short")
        return None
    if buf[:4] != b"RIFF":
        hint = " (RIFX big-endian WAV is not supported)" if buf[:4] == b"RIFX" else ""
        raise WavError(f"not a WAV file: starts with {buf[:4]!r}, expected b'RIFF'{hint}", "not_riff")
    if buf[8:12] != b"WAVE":
        raise WavError(f"RIFF form type is {buf[8:12]!r}, expected b'WAVE'", "not_wave")
    fmt: WavFormat | None = None
    offset = 12
    while offset + 8 <= len(buf):
        chunk_id = buf[offset : offset + 4]
        (size,) = struct.unpack_from("<I", buf, offset + 4)
        body = offset + 8
        if chunk_id == b"data":
            if fmt is None:
                raise WavError("WAV 'data' chunk comes before the 'fmt ' chunk", "data_before_fmt")
            return fmt, body, size
        if body + size > len(buf):
            if chunk_id == b"fmt " and (final or size < 16):
                raise WavError(f"WAV 'fmt ' chunk is truncated ({size} bytes declared)", "fmt_truncated")
            break
        if chunk_id == b"fmt ":
            if size < 16:
                raise WavError(f"WAV 'fmt ' chunk is truncated ({size} bytes declared)", "fmt_truncated")
            fmt = _parse_fmt(buf[body : body + size])
        offset = body + size + (size & 1)  # chunk bodies are padded to an even length
    if not final:
        return None
    if fmt is None:
        raise WavError("WAV has no 'fmt ' chunk", "no_fmt")
    raise WavError("WAV has no 'data' chunk", "no_data")


def check_pcm16_mono(fmt: WavFormat) -> None:
    """Raise :class:`WavError` unless the format is 16-bit linear PCM, one channel."""
    if fmt.format_tag != WAVE_FORMAT_PCM:
        raise WavError(f"WAV encoding is {fmt.format_name}; only 16-bit PCM is supported", "unsupported")
    if fmt.bits_per_sample != 16:
        raise WavError(
            f"WAV has {fmt.bits_per_sample}-bit samples; only 16-bit PCM is supported", "unsupported"
        )
    if fmt.channels != 1:
        raise WavError(f"WAV has {fmt.channels} channels; only mono is supported", "unsupported")


def parse_wav(data: bytes) -> WavAudio:
    """A complete WAV file holding 16-bit PCM mono at any rate -> its samples.

    A truncated last sample (odd byte count) is dropped, not an error.
    """
    found = _walk(data, final=True)
    assert found is not None  # final=True either finds the data chunk or raises
    fmt, start, size = found
    check_pcm16_mono(fmt)
    body = data[start : start + size]
    if len(body) % 2:
        body = body[:-1]
    return WavAudio(fmt.sample_rate_hz, body)


class WavHeaderReader:
    """Incremental header reader: buffers until the ``data`` chunk starts.

    ``feed`` returns None until then, and then (format, the PCM bytes that came with the header);
    the caller treats every later byte as PCM (the ``data`` size is not trusted: streamed WAVs carry
    placeholders). ``max_header_bytes`` bounds what is buffered while waiting.
    """

    def __init__(self, *, max_header_bytes: int | None = None) -> None:
        self._buf = b""
        self._max_header_bytes = max_header_bytes

    def feed(self, data: bytes) -> tuple[WavFormat, bytes] | None:
        self._buf += data
        found = _walk(self._buf, final=False)
        if found is None:
            if self._max_header_bytes is not None and len(self._buf) > self._max_header_bytes:
                raise WavError(
                    f"no 'data' chunk in the first {self._max_header_bytes} bytes", "header_too_long"
                )
            return None
        fmt, start, _size = found
        pcm = self._buf[start:]
        self._buf = b""
        return fmt, pcm

    def close(self) -> None:
        """End of input before the ``data`` chunk: raise the error that says what was missing."""
        _walk(self._buf, final=True)
