"""Decoders for the small in-dialog bodies the user agent understands, as pure functions.

* SIP INFO digits: ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160`` lines, the de-facto
  Cisco format) and ``application/dtmf`` (the digit alone); RFC 4733 event numbers 10-15 are
  mapped to ``* # A B C D``.
* NOTIFY ``message/sipfrag`` (RFC 3420) status line of a REFER subscription (RFC 3515 §2.4.5).

Each raises :class:`~voicebot.sip.errors.SipParseError` with the reason phrase the user agent
answers (400) when the body is not what it claims to be.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.ascii import is_digits
from voicebot.sip.errors import SipParseError

DTMF_DIGITS = frozenset("0123456789*#ABCD")
DTMF_INFO_TYPES = ("application/dtmf-relay", "application/dtmf")
_DTMF_EVENT_DIGITS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


@dataclass(frozen=True, slots=True)
class InfoDigit:
    digit: str  # one of DTMF_DIGITS
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class SipfragStatus:
    status_code: int
    reason: str


def parse_dtmf_info(content_type: str | None, body: bytes) -> InfoDigit:
    """The digit of an INFO body of one of :data:`DTMF_INFO_TYPES`."""
    text = body.decode("utf-8", errors="replace")
    digit: str | None = None
    duration: int | None = None
    if content_type == "application/dtmf":
        digit = text.strip()
    else:
        for line in text.splitlines():
            name, _, value = line.partition("=")
            name, value = name.strip().lower(), value.strip()
            if name == "signal":
                digit = value
            elif name == "duration" and is_digits(value):
                duration = int(value)
    digit = _DTMF_EVENT_DIGITS.get(digit or "", digit)
    if digit is None or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
        raise SipParseError(f"Bad Request: invalid DTMF signal {digit!r}"[:160])
    return InfoDigit(digit.upper(), duration)


def parse_sipfrag_status(body: bytes) -> SipfragStatus:
    """The status line that opens a ``message/sipfrag`` body (``SIP/2.0 200 OK``)."""
    first_line = body.decode("utf-8", errors="replace").strip().splitlines()[:1]
    parts = first_line[0].split(" ", 2) if first_line else []
    if len(parts) < 2 or not parts[0].upper().startswith("SIP/") or not is_digits(parts[1]):
        raise SipParseError("Bad Request: NOTIFY body is not a message/sipfrag")
    return SipfragStatus(int(parts[1]), parts[2] if len(parts) > 2 else "")
