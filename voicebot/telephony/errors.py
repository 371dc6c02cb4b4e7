"""Errors of the telephony layer (one root: :class:`~voicebot.errors.VoicebotError`)."""

from __future__ import annotations

from voicebot.errors import VoicebotError


class TelephonyError(VoicebotError):
    """The application used a call leg wrongly (the message says what to do instead)."""


__all__ = ["TelephonyError"]
