"""INFO DTMF and NOTIFY sipfrag decoders: the accepted forms and the exact refusals."""

from __future__ import annotations

import pytest

from voicebot.sip.bodies import InfoDigit, SipfragStatus, parse_dtmf_info, parse_sipfrag_status
from voicebot.sip.errors import SipParseError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", InfoDigit("5", 160)),
        ("application/dtmf-relay", b"signal = #\nduration=x\n", InfoDigit("#", None)),
        ("application/dtmf-relay", b"Signal=11\r\n", InfoDigit("#", None)),  # RFC 4733 event number
        ("application/dtmf-relay", b"Signal=d\r\n", InfoDigit("D", None)),
        ("application/dtmf", b" 7\r\n", InfoDigit("7", None)),
    ],
)
def test_dtmf_info_forms(ctype: str, body: bytes, expected: InfoDigit) -> None:
    assert parse_dtmf_info(ctype, body) == expected


@pytest.mark.parametrize(
    ("ctype", "body", "message"),
    [
        ("application/dtmf-relay", b"Duration=160\r\n", "Bad Request: invalid DTMF signal None"),
        ("application/dtmf-relay", b"Signal=E\r\n", "Bad Request: invalid DTMF signal 'E'"),
        ("application/dtmf", b"55", "Bad Request: invalid DTMF signal '55'"),
    ],
)
def test_dtmf_info_refusals(ctype: str, body: bytes, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_dtmf_info(ctype, body)
    assert info.value.message == message


def test_sipfrag_status_line() -> None:
    assert parse_sipfrag_status(b"SIP/2.0 200 OK\r\n") == SipfragStatus(200, "OK")
    assert parse_sipfrag_status(b"SIP/2.0 100\r\n") == SipfragStatus(100, "")
    assert parse_sipfrag_status(b"SIP/2.0 503 Service Unavailable\r\nRetry-After: 5\r\n") == SipfragStatus(
        503, "Service Unavailable"
    )
    for bad in (b"", b"hello", b"SIP/2.0 OK", b"HTTP/1.1 200 OK"):
        with pytest.raises(SipParseError) as info:
            parse_sipfrag_status(bad)
        assert info.value.message == "Bad Request: NOTIFY body is not a message/sipfrag"
