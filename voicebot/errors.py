"""The root of voicebot's own exceptions.

Every package has an ``errors.py`` whose exceptions derive from :class:`VoicebotError`, so a
caller can tell voicebot's failures (with a message that says who is at fault and what to do)
from bugs. ``retryable`` says whether the same operation may succeed if tried again later.
"""

from __future__ import annotations


class VoicebotError(Exception):
    """Base class of every error voicebot raises on purpose."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(VoicebotError):
    """The operator's configuration is invalid; the message names the field."""
