"""20 ms framing of 16-bit 8 kHz PCM: the unit the jitter buffer, recognizer feed and sender share.

One frame is 20 ms = 160 samples = 320 bytes of signed 16-bit little-endian mono PCM at 8000 Hz
(RFC 3551 §4.5: G.711's default packetization interval is 20 ms).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

SAMPLE_RATE_HZ: Final = 8000
FRAME_MS: Final = 20
SAMPLE_WIDTH_BYTES: Final = 2
SAMPLES_PER_FRAME: Final = SAMPLE_RATE_HZ * FRAME_MS // 1000  # 160
BYTES_PER_FRAME: Final = SAMPLES_PER_FRAME * SAMPLE_WIDTH_BYTES  # 320
SILENCE_FRAME: Final = bytes(BYTES_PER_FRAME)


def samples_for_ms(duration_ms: int, sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    return sample_rate_hz * duration_ms // 1000


def duration_ms(pcm16: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    return len(pcm16) / SAMPLE_WIDTH_BYTES * 1000 / sample_rate_hz


def split_frames(pcm16: bytes, *, pad: bool = True) -> list[bytes]:
    """Cut PCM into 320-byte frames; the tail is padded with silence (or dropped if ``pad`` is False)."""
    if len(pcm16) % SAMPLE_WIDTH_BYTES:
        raise ValueError(f"16-bit PCM must have an even length, got {len(pcm16)} bytes")
    frames = [pcm16[i : i + BYTES_PER_FRAME] for i in range(0, len(pcm16), BYTES_PER_FRAME)]
    if frames and len(frames[-1]) < BYTES_PER_FRAME:
        if pad:
            frames[-1] = frames[-1] + bytes(BYTES_PER_FRAME - len(frames[-1]))
        else:
            frames.pop()
    return frames


class FrameAssembler:
    """Collects PCM chunks of any size and hands out whole 20 ms frames in order."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def push(self, pcm16: bytes) -> Iterator[bytes]:
        self._pending += pcm16
        while len(self._pending) >= BYTES_PER_FRAME:
            frame = bytes(self._pending[:BYTES_PER_FRAME])
            del self._pending[:BYTES_PER_FRAME]
            yield frame

    def flush(self) -> bytes | None:
        """The incomplete tail padded with silence to one frame, or None if nothing is pending."""
        if not self._pending:
            return None
        frame = bytes(self._pending) + bytes(BYTES_PER_FRAME - len(self._pending))
        self._pending.clear()
        return frame

    @property
    def pending_bytes(self) -> int:
        return len(self._pending)


class FrameKind(enum.Enum):
    """Where a received frame's samples came from (the jitter buffer decides)."""

    AUDIO = "audio"  # every sample came from received packets
    CONCEALED = "concealed"  # some or all samples are the faded repeat of the last frame
    SILENCE = "silence"  # nothing to play (before the first packet, or after a long gap)


@dataclass(frozen=True, slots=True)
class Frame:
    """One 20 ms frame of 16-bit 8 kHz mono PCM (always 320 bytes) and its kind; what the jitter
    buffer plays out and a call leg hands on to recognition."""

    kind: FrameKind
    pcm: bytes
