"""Errors of the control API: each one is an HTTP status and a message that names what was wrong."""

from __future__ import annotations

from voicebot.errors import VoicebotError


class ApiError(VoicebotError):
    """A request the API refuses: ``status`` (4xx/5xx), ``message`` (the RFC 9457 ``detail``) and,
    for a bad field, ``field`` (its JSON path, e.g. ``variables.name``)."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers or {}


__all__ = ["ApiError"]
