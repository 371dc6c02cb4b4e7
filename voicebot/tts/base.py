"""What every prompt source produces and the seam a synthesizer plugs into.

Prompts leave this package as :class:`PcmAudio`: 16-bit signed little-endian mono PCM at 8 kHz,
the rate G.711 carries (RFC 3551 §4.5.14), so the call pipeline only has to encode and packetize.
:class:`PromptSynthesizer` is a ``typing.Protocol`` so a cloud TTS can replace the embedded
espeak-ng engine without touching the dialog engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import soxr

PROMPT_SAMPLE_RATE_HZ = 8000
PROMPT_SAMPLE_WIDTH_BYTES = 2


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """16-bit signed little-endian mono PCM at ``sample_rate_hz``."""

    pcm: bytes
    sample_rate_hz: int = PROMPT_SAMPLE_RATE_HZ

    @property
    def sample_count(self) -> int:
        return len(self.pcm) // PROMPT_SAMPLE_WIDTH_BYTES

    @property
    def duration_s(self) -> float:
        return self.sample_count / self.sample_rate_hz

    def peak(self) -> int:
        """Largest absolute sample value (0 for silence)."""
        if not self.pcm:
            return 0
        samples = np.frombuffer(self.pcm, dtype="<i2").astype(np.int32)
        return int(np.abs(samples).max())


class PromptSynthesizer(Protocol):
    """Turns prompt text into 8 kHz 16-bit mono PCM.

    ``engine_id`` names the engine and its version; caches key on it so an engine upgrade never
    serves audio made by the old one.
    """

    @property
    def engine_id(self) -> str: ...

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio: ...


def resample_pcm16(pcm: bytes, from_rate_hz: int, to_rate_hz: int = PROMPT_SAMPLE_RATE_HZ) -> bytes:
    """Resample 16-bit mono PCM with libsoxr (a band-limited resampler, so no aliasing)."""
    if from_rate_hz == to_rate_hz or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2")
    out = soxr.resample(samples, from_rate_hz, to_rate_hz, quality="HQ")
    clipped = np.clip(np.asarray(out, dtype=np.float64), -32768, 32767)
    return clipped.astype("<i2").tobytes()
