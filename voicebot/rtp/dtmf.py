"""RFC 4733 telephone-events: payload codec, a receiver that reports each digit once, and a sender.

Theory of operation
-------------------
All packets of one event carry the RTP timestamp of the event's start (RFC 4733 §2.5.1.2), a
growing ``duration`` and, at the end, the E bit; the end packet is sent three times (§2.5.1.4).
:class:`DtmfReceiver` therefore keys an event by its timestamp: the first packet of a new
timestamp reports :class:`DtmfEventReceived` (so the dialog reacts at once), the first end packet
reports :class:`DtmfEnded` with the duration, and every other packet of that event (updates,
end retransmissions, late reordered copies) is ignored. A new timestamp with the same event code,
no marker and the previous event not ended is the continuation of a long event (§2.5.2.3), not a
new digit. A packet with the marker bit after the current event has ended always starts a new
event, even under the same or an older timestamp, because replayed captures (sipp's
``play_pcap_audio``) reuse their recorded timestamps. Hook flash (event 16) and events above 16 are
counted and ignored.

:func:`dtmf_payloads` plans the sending side: one list of payloads per packet time, the first to
be sent with the marker bit, the last holding the three end packets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from voicebot.rtp.errors import RtpPacketError, RtpUsageError

DIGITS: Final = "0123456789*#ABCD"  # event codes 0-15 (RFC 4733 §3.2)
EVENT_FLASH: Final = 16
_PAYLOAD = struct.Struct("!BBH")
CLOCK_RATE_HZ: Final = 8000


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 §2.3). ``duration`` is in timestamp units."""

    event: int
    end: bool
    volume: int
    duration: int

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < 4:
            raise RtpPacketError(f"telephone-event payload must be at least 4 bytes, got {len(payload)}")
        # RFC 4733 §2.5.1.6 allows several events in one packet (redundancy); the first is current.
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def serialize(self) -> bytes:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event {self.event} is outside 0-255")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume {self.volume} is outside 0-63")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration {self.duration} is outside 0-65535")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class DtmfEventReceived:
    """A DTMF digit started (reported once per event, at its first packet)."""

    digit: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class DtmfEnded:
    """A DTMF digit ended; ``duration_ms`` from the end packet (or the last update seen)."""

    digit: str
    duration_ms: int
    timestamp: int


DtmfEvent = DtmfEventReceived | DtmfEnded


def event_code(digit: str) -> int:
    """The RFC 4733 event code of a DTMF digit; raises :class:`RtpUsageError` for anything else."""
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise RtpUsageError(f"DTMF digit must be one of 0-9 * # A-D, got {digit!r}")
    return code


class DtmfReceiver:
    """Turns a stream of telephone-event packets into one start and one end report per digit."""

    def __init__(self) -> None:
        self._timestamp: int | None = None
        self._event: int | None = None
        self._ended = True
        self._last_duration = 0
        self.flash = 0  # hook flashes seen (ignored)
        self.unknown = 0  # events above 16 seen (ignored)

    def receive(self, timestamp: int, marker: bool, payload: bytes) -> list[DtmfEvent]:
        """Feed one telephone-event packet; raises :class:`RtpPacketError` for a short payload."""
        event = TelephoneEvent.parse(payload)
        out: list[DtmfEvent] = []
        # The M bit after the current event has ended starts a new event whatever its timestamp:
        # replayed captures (sipp's play_pcap_audio) repeat or go back in timestamp between digits.
        new_press = marker and self._ended and not event.end
        if self._timestamp is not None and not new_press:
            step = (timestamp - self._timestamp) % (1 << 32)
            if step == 0:
                if event.event != self._event:
                    return out  # a different event under the same timestamp: not ours to guess
                self._last_duration = max(self._last_duration, event.duration)
                if event.end and not self._ended:
                    self._ended = True
                    out.extend(self._ended_report(event.duration))
                return out
            if step >= 1 << 31:
                return out  # older than the current event: a late copy
            if event.event == self._event and not self._ended and not marker:
                # RFC 4733 §2.5.2.3: a long event continues under a new timestamp.
                self._timestamp = timestamp
                self._last_duration = event.duration
                if event.end:
                    self._ended = True
                    out.extend(self._ended_report(event.duration))
                return out
            if not self._ended:
                # The previous event's end packets were all lost: close it with what we saw.
                out.extend(self._ended_report(self._last_duration))
        self._timestamp = timestamp
        self._event = event.event
        self._ended = event.end
        self._last_duration = event.duration
        if event.event < len(DIGITS):
            out.append(DtmfEventReceived(DIGITS[event.event], timestamp))
            if event.end:
                out.extend(self._ended_report(event.duration))
        elif event.event == EVENT_FLASH:
            self.flash += 1
        else:
            self.unknown += 1
        return out

    def _ended_report(self, duration: int) -> list[DtmfEvent]:
        if self._event is None or self._event >= len(DIGITS) or self._timestamp is None:
            return []
        return [DtmfEnded(DIGITS[self._event], duration * 1000 // CLOCK_RATE_HZ, self._timestamp)]


def dtmf_payloads(digit: str, *, duration_ms: int = 100, volume: int = 10,
                  ptime_ms: int = 20) -> list[list[bytes]]:
    """Telephone-event payloads to send, one list per packet time (RFC 4733 §2.5.1).

    All share the RTP timestamp of the first; the first packet gets the marker bit; durations grow
    by one packet time; the last packet time holds the end packet three times.
    """
    code = event_code(digit)
    if not 40 <= duration_ms <= 8000:
        raise RtpUsageError(f"DTMF duration_ms must be 40-8000, got {duration_ms}")
    if not 0 <= volume <= 63:
        raise RtpUsageError(f"DTMF volume must be 0-63 (dBm0 below zero), got {volume}")
    step = CLOCK_RATE_HZ * ptime_ms // 1000
    packets = max(2, -(-duration_ms // ptime_ms))
    plan = [[TelephoneEvent(code, False, volume, k * step).serialize()] for k in range(1, packets)]
    end = TelephoneEvent(code, True, volume, packets * step).serialize()
    plan.append([end, end, end])
    return plan
