"""G.711 mu-law and A-law (ITU-T G.711, RFC 3551 §4.5.14 PCMU/PCMA) <-> 16-bit linear PCM.

Exact table conversions by the standard ``audioop`` module (the ``audioop-lts`` package provides the
same module on Python 3.13+). Linear PCM is signed 16-bit little-endian (native order on the
platforms we run on), one channel, 8000 Hz.
"""

from __future__ import annotations

# The standard library's audioop up to 3.12; the audioop-lts package provides the same module on 3.13+.
import audioop
from dataclasses import dataclass
from typing import Final

PCMU: Final = 0  # RFC 3551 static payload type for G.711 mu-law
PCMA: Final = 8  # RFC 3551 static payload type for G.711 A-law
CLOCK_RATE_HZ: Final = 8000


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    return audioop.ulaw2lin(ulaw, 2)


def pcm16_to_ulaw(pcm16: bytes) -> bytes:
    return audioop.lin2ulaw(pcm16, 2)


def alaw_to_pcm16(alaw: bytes) -> bytes:
    return audioop.alaw2lin(alaw, 2)


def pcm16_to_alaw(pcm16: bytes) -> bytes:
    return audioop.lin2alaw(pcm16, 2)


@dataclass(frozen=True, slots=True)
class G711Codec:
    """One G.711 law bound to its static RTP payload type and SDP encoding name."""

    payload_type: int
    encoding_name: str

    def decode(self, payload: bytes) -> bytes:
        """G.711 octets -> 16-bit linear PCM (two bytes per octet)."""
        if self.payload_type == PCMU:
            return audioop.ulaw2lin(payload, 2)
        return audioop.alaw2lin(payload, 2)

    def encode(self, pcm16: bytes) -> bytes:
        """16-bit linear PCM -> G.711 octets (one per sample)."""
        if self.payload_type == PCMU:
            return audioop.lin2ulaw(pcm16, 2)
        return audioop.lin2alaw(pcm16, 2)

    def silence(self, samples: int) -> bytes:
        """Encoded digital silence: mu-law 0xFF, A-law 0xD5 (both decode to 0 / +-8)."""
        return (b"\xff" if self.payload_type == PCMU else b"\xd5") * samples


ULAW: Final = G711Codec(PCMU, "PCMU")
ALAW: Final = G711Codec(PCMA, "PCMA")
CODECS: Final[dict[int, G711Codec]] = {PCMU: ULAW, PCMA: ALAW}


def codec_for_payload_type(payload_type: int) -> G711Codec | None:
    """The G.711 codec for a static payload type, or None if it is not PCMU (0) or PCMA (8)."""
    return CODECS.get(payload_type)
