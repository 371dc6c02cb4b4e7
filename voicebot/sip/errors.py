"""Errors of the SIP part.

A peer's malformed message raises :class:`SipParseError`; the user agent turns it into a ``400``
(or ``505``) whose reason phrase is the error message, or drops it when it was a response. The
application's misuse of the API (answering a call that is gone) raises :class:`SipStateError`.
"""

from __future__ import annotations

from voicebot.errors import VoicebotError


class SipError(VoicebotError):
    """Base class of the SIP part's errors."""


class SipParseError(SipError):
    """A peer sent a SIP message (or SDP body) that does not follow RFC 3261 / RFC 4566.

    ``status_code`` is the response a UAS should give (400, or 505 for an unsupported SIP
    version). ``reply_headers`` holds the raw Via/From/To/Call-ID/CSeq lines when the header
    section could be framed, so a response can still be addressed; ``method`` is the request
    method when the request line could be read (``None`` for responses or garbage).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        reply_headers: tuple[tuple[str, str], ...] = (),
        method: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reply_headers = reply_headers
        self.method = method


class SipStateError(SipError):
    """The application asked for something the call's state does not allow (the message says what)."""


class SdpParseError(SipParseError):
    """A peer's SDP body does not follow RFC 4566 (the user agent answers 400 with this message)."""


class SdpNegotiationError(SipError):
    """A well-formed SDP offer or answer has nothing we can use (no PCMU/PCMA audio): ``488``."""
