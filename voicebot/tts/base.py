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

from voicebot.media import resample as media_resample
from voicebot.media.frames import SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES

PROMPT_SAMPLE_RATE_HZ = SAMPLE_RATE_HZ
PROMPT_SAMPLE_WIDTH_BYTES = SAMPLE_WIDTH_BYTES


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
    """Resample 16-bit mono PCM to the prompt rate (:func:`voicebot.media.resample.resample_pcm16`)."""
    return media_resample.resample_pcm16(pcm, from_rate_hz, to_rate_hz)
