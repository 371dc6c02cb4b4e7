"""Errors of the RTP plane.

A malformed datagram from the peer raises :class:`RtpPacketError` (the peer is at fault; the session
counts and drops it). A bad argument from the application raises :class:`RtpUsageError`. Running
out of local ports raises :class:`RtpPortsExhausted`, which is retryable once calls hang up.
"""

from __future__ import annotations

from voicebot.errors import VoicebotError


class RtpError(VoicebotError):
    """Base of every error raised by :mod:`voicebot.rtp`."""


class RtpPacketError(RtpError):
    """A datagram is not a valid RTP/RTCP/telephone-event packet; the message says which field."""


class RtpUsageError(RtpError):
    """The application called the RTP API with an invalid argument or in the wrong state."""


class RtpPortsExhausted(RtpError):
    """Every even port of the configured RTP port range is in use (or not bindable)."""

    retryable = True
