"""More INFO DTMF and sipfrag forms: every RFC 4733 event mapping, spacing, case, odd bytes."""

from __future__ import annotations

import pytest

from voicebot.sip.bodies import DTMF_DIGITS, InfoDigit, SipfragStatus, parse_dtmf_info, parse_sipfrag_status
from voicebot.sip.errors import SipParseError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("event", "digit"), [("10", "*"), ("11", "#"), ("12", "A"), ("13", "B"), ("14", "C"), ("15", "D")]
)
def test_every_rfc4733_event_number_maps_to_its_key(event: str, digit: str) -> None:
    assert parse_dtmf_info("application/dtmf-relay", f"Signal={event}\r\n".encode()) == InfoDigit(digit, None)


@pytest.mark.parametrize("digit", sorted(DTMF_DIGITS))
def test_every_key_is_accepted_in_both_formats(digit: str) -> None:
    assert parse_dtmf_info(
        "application/dtmf-relay", f"Signal={digit}\r\nDuration=100\r\n".encode()
    ) == InfoDigit(digit, 100)
    assert parse_dtmf_info("application/dtmf", digit.encode()) == InfoDigit(digit, None)


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        (None, b"Signal=3", InfoDigit("3", None)),  # no Content-Type: read as dtmf-relay
        ("application/dtmf-relay", b"SIGNAL=a\nDURATION=250", InfoDigit("A", 250)),
        ("application/dtmf-relay", b"Duration=80\r\nSignal=9\r\n", InfoDigit("9", 80)),  # order is free
        ("application/dtmf-relay", b"Signal=1\r\nSignal=2\r\n", InfoDigit("2", None)),  # the last one counts
        ("application/dtmf-relay", b"Signal=4\r\nDuration=-5\r\n", InfoDigit("4", None)),
        ("application/dtmf", b"11", InfoDigit("#", None)),
    ],
)
def test_dtmf_info_variants(ctype: str | None, body: bytes, expected: InfoDigit) -> None:
    assert parse_dtmf_info(ctype, body) == expected


@pytest.mark.parametrize(
    ("ctype", "body", "message"),
    [
        ("application/dtmf-relay", b"", "Bad Request: invalid DTMF signal None"),
        ("application/dtmf-relay", b"Signal=\r\n", "Bad Request: invalid DTMF signal ''"),
        (
            "application/dtmf-relay",
            b"Signal=16\r\n",
            "Bad Request: invalid DTMF signal '16'",
        ),  # flash is no key
        ("application/dtmf", b"", "Bad Request: invalid DTMF signal ''"),
        ("application/dtmf", b"\xff", "Bad Request: invalid DTMF signal '\ufffd'"),
    ],
)
def test_dtmf_info_rejects(ctype: str, body: bytes, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_dtmf_info(ctype, body)
    assert str(info.value) == message
    assert info.value.status_code == 400


def test_long_bad_signal_is_cut_to_a_reason_phrase() -> None:
    with pytest.raises(SipParseError) as info:
        parse_dtmf_info("application/dtmf", b"9" * 500)
    assert len(str(info.value)) == 160


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\r\n  SIP/2.0 180 Ringing\r\n", SipfragStatus(180, "Ringing")),
        (b"sip/2.0 486 Busy Here", SipfragStatus(486, "Busy Here")),
        (b"SIP/2.0 603 Decline: not now", SipfragStatus(603, "Decline: not now")),
    ],
)
def test_sipfrag_variants(body: bytes, expected: SipfragStatus) -> None:
    assert parse_sipfrag_status(body) == expected
