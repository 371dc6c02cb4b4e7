"""What a call leg reports (:meth:`~voicebot.telephony.CallLeg.events`) and its results.

These are the telephony layer's own words: the SIP and RTP layers' events are translated into them
by :class:`~voicebot.telephony.CallLeg`, so a consumer never sees two layers' names for one thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A DTMF key press, reported once, from RFC 4733 telephone-events or from a SIP INFO."""

    digit: str
    source: Literal["rfc4733", "info"]


@dataclass(frozen=True, slots=True)
class PlaybackFinished:
    """A prompt queued by :meth:`CallLeg.play` was sent to the end, or cut by flush (``interrupted``)."""

    prompt_id: int
    interrupted: bool


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """A re-INVITE changed the media: ``held`` True means the peer put us on hold (we send nothing)."""

    held: bool
    codec: str


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The leg is over; the last event of :meth:`CallLeg.events`.

    ``cause``: ``bye`` (a BYE from ``side``), ``cancelled`` (CANCEL before answer), ``rejected``,
    ``failed`` (an outbound call got a final error), ``timeout`` (no answer / no response),
    ``ack-timeout`` (our 200 was never ACKed), ``rtp-timeout`` (no RTP from the peer, we sent BYE),
    ``shutdown`` (the process stopped). ``sip_status``: the final status for legs that never connected.
    """

    cause: str
    side: Literal["local", "remote"]
    sip_status: int | None = None
    reason: str = ""


LegEvent = DigitReceived | PlaybackFinished | MediaChanged | LegEnded


@dataclass(frozen=True, slots=True)
class TransferResult:
    """Outcome of a blind transfer: the NOTIFY sipfrag's final status, or the REFER's failure."""

    status_code: int
    reason: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class LegStats:
    """RTP and jitter counters of one leg, for the call record."""

    codec: str | None
    duration_s: float
    packets_received: int
    packets_sent: int
    lost: int
    late: int
    duplicate: int
    reordered: int
    concealed_frames: int
    underruns: int
    dropped_stranger: int
    dropped_malformed: int
    frames_dropped: int  # the app did not read frames() fast enough
    digits: int
    digits_duplicate: int  # the same key reported by both RFC 4733 and INFO, counted once
    overflow_dropped: int = 0  # received audio the jitter buffer cut to keep its delay bound


__all__ = [
    "DigitReceived",
    "LegEnded",
    "LegEvent",
    "LegStats",
    "MediaChanged",
    "PlaybackFinished",
    "TransferResult",
]
