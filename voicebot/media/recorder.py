"""Streamed WAV writing for call recordings: bounded memory, playable after a crash.

A :class:`StreamingWavWriter` appends 16-bit PCM to a RIFF/WAVE file through a small OS-buffered
file and, every ``sync_every_frames`` sample frames (one second by default), flushes the data and
rewrites the two RIFF sizes (the ``RIFF`` chunk size at offset 4 and the ``data`` chunk size at
offset 40) to cover it. A process killed at any moment (SIGKILL, OOM) therefore leaves a file whose
header describes at most the data that is on disk: any WAV reader plays it up to the last sync.
Memory per writer is the file buffer plus nothing that grows with the call.

:func:`interleave` makes one stereo frame of two mono ones (left, right) and :func:`wav_header` is
the canonical 44-byte PCM header (RIFF, ``fmt `` with WAVE_FORMAT_PCM, ``data``).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from voicebot.errors import VoicebotError

HEADER_BYTES = 44
# RIFF sizes are 32-bit: a call longer than this (about 37 h stereo at 8 kHz) stops growing.
MAX_DATA_BYTES = 0xFFFFFFFF - HEADER_BYTES + 8


class RecordingError(VoicebotError):
    """A recording file could not be written; the message names the file and the OS error."""


def wav_header(*, channels: int, sample_rate_hz: int, data_bytes: int, sample_width: int = 2) -> bytes:
    """The 44-byte header of a PCM WAV file holding ``data_bytes`` of sample data."""
    block_align = channels * sample_width
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", 36 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, sample_rate_hz, sample_rate_hz * block_align, block_align,
        sample_width * 8,
        b"data", data_bytes,
    )


def interleave(left: bytes, right: bytes) -> bytes:
    """One stereo 16-bit frame from two mono ones of the same length."""
    if len(left) != len(right):
        raise ValueError(f"channels differ in length: left {len(left)} bytes, right {len(right)} bytes")
    out = np.empty(len(left), dtype="<i2")
    out[0::2] = np.frombuffer(left, dtype="<i2")
    out[1::2] = np.frombuffer(right, dtype="<i2")
    return out.tobytes()


class StreamingWavWriter:
    """A 16-bit PCM WAV file written as the call goes; see the module docstring.

    ``sync_every_frames``: sample frames between header rewrites (default: one second of audio).
    ``fsync``: also ask the OS to put each sync on disk (survives power loss, costs an fsync/s).
    """

    def __init__(self, path: Path, *, channels: int, sample_rate_hz: int = 8000,
                 sync_every_frames: int | None = None, fsync: bool = False,
                 buffer_bytes: int = 16384) -> None:
        self.path = path
        self.channels = channels
        self.sample_rate_hz = sample_rate_hz
        self._block_align = 2 * channels
        self._sync_every_bytes = (sync_every_frames or sample_rate_hz) * self._block_align
        self._fsync = fsync
        self.data_bytes = 0  # written to the file object (may still sit in its buffer)
        self.synced_bytes = 0  # covered by the header on disk
        self._since_sync = 0
        self._closed = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: BinaryIO = open(path, "wb", buffering=buffer_bytes)  # noqa: SIM115 (owned, closed in close())
            self._file.write(wav_header(channels=channels, sample_rate_hz=sample_rate_hz, data_bytes=0))
            self._file.flush()
        except OSError as exc:
            raise RecordingError(f"cannot write recording {path}: {exc.strerror or exc}") from exc

    @property
    def frames_written(self) -> int:
        return self.data_bytes // self._block_align

    @property
    def duration_ms(self) -> int:
        return self.frames_written * 1000 // self.sample_rate_hz

    def write(self, pcm: bytes) -> None:
        """Append whole sample frames (``channels`` x 16-bit each); syncs when a second is due."""
        if self._closed:
            raise RecordingError(f"recording {self.path} is closed")
        if len(pcm) % self._block_align:
            raise RecordingError(f"recording {self.path}: {len(pcm)} bytes is not a whole number of "
                                 f"{self.channels}-channel 16-bit sample frames")
        room = MAX_DATA_BYTES - self.data_bytes
        if len(pcm) > room:
            pcm = pcm[: room - room % self._block_align]
        if not pcm:
            return
        try:
            self._file.write(pcm)
        except OSError as exc:
            raise RecordingError(f"cannot write recording {self.path}: {exc.strerror or exc}") from exc
        self.data_bytes += len(pcm)
        self._since_sync += len(pcm)
        if self._since_sync >= self._sync_every_bytes:
            self.sync()

    def sync(self) -> None:
        """Flush the data, then rewrite the header to cover it (data first: the header never claims
        more than the file holds)."""
        if self._closed:
            return
        try:
            self._file.flush()
            end = self._file.tell()
            self._file.seek(4)
            self._file.write(struct.pack("<I", 36 + self.data_bytes))
            self._file.seek(40)
            self._file.write(struct.pack("<I", self.data_bytes))
            self._file.seek(end)
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise RecordingError(f"cannot write recording {self.path}: {exc.strerror or exc}") from exc
        self.synced_bytes = self.data_bytes
        self._since_sync = 0

    def close(self) -> None:
        if self._closed:
            return
        error: RecordingError | None = None
        try:
            self.sync()
        except RecordingError as exc:
            error = exc
        self._closed = True
        try:
            self._file.close()  # flushes what the buffer still holds; the fd is closed either way
        except OSError as exc:
            error = error or RecordingError(f"cannot write recording {self.path}: {exc.strerror or exc}")
        if error is not None:
            raise error


__all__ = ["HEADER_BYTES", "RecordingError", "StreamingWavWriter", "interleave", "wav_header"]
