"""Errors of the control API: each one is an HTTP status and a message that names what was wrong."""

from __future__ import annotations

from typing import Any

from voicebot.errors import VoicebotError


class ApiError(VoicebotError):
    """A request the API refuses: ``status`` (4xx/5xx), ``message`` (the RFC 9457 ``detail``) and,
    for a bad field, ``field`` (its JSON path, e.g. ``variables.name``); ``extra`` are more members
    of the problem (e.g. ``errors``: every bad row of a contacts list)."""

    def __init__(self, status: int, message: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.headers = headers or {}
        self.extra = extra or {}


__all__ = ["ApiError"]
