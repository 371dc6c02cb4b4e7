"""UAS admission on its own: the order of checks and the exact refusals."""

from __future__ import annotations

import pytest

from voicebot.errors import ConfigError
from voicebot.sip.admission import Admission, Offer, Refusal
from voicebot.sip.config import UaConfig
from voicebot.sip.message import Request, parse_message

pytestmark = pytest.mark.unit


def request(body: bytes = b"", ctype: str = "application/sdp") -> Request:
    raw = (
        "INVITE sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n"
        "From: <sip:a@10.0.0.1>;tag=1\r\nTo: <sip:bot@10.0.0.2>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    message = parse_message(raw)
    assert isinstance(message, Request)
    return message


def test_capacity_order_and_counts() -> None:
    config = UaConfig(max_calls=3, max_calls_per_source=1, per_source_exempt=(), max_unconfirmed_calls=3)
    adm = Admission(config)
    assert adm.check_capacity(("198.51.100.1", 5060), 0) is None
    adm.admitted("c1", ("198.51.100.1", 5060))
    assert adm.check_capacity(("198.51.100.1", 5060), 1) == Refusal(
        503, "per_source", "Busy: too many calls from this address", (("Retry-After", "30"),)
    )
    assert adm.check_capacity(("198.51.100.2", 5060), 1) is None
    assert adm.check_capacity(("198.51.100.2", 5060), 3) == Refusal(
        503, "busy", "Busy: max calls reached", (("Retry-After", "30"),)
    )
    adm.confirmed("c1")
    assert adm.unconfirmed_calls == 0 and adm.calls_from("198.51.100.1") == 1
    adm.released("c1")
    adm.released("c1")  # twice is harmless
    assert adm.calls_from("198.51.100.1") == 0


def test_offer_and_content_refusals() -> None:
    adm = Admission(UaConfig())
    assert adm.check_content(request(b"x", "text/plain")) == Refusal(
        415, "content", extra=(("Accept", "application/sdp"),)
    )
    assert adm.check_offer(request()) == Offer(None, None)
    bad = adm.check_offer(request(b"v=0\r\n"))
    assert isinstance(bad, Refusal) and bad.status_code == 400
    assert (bad.reason or "").startswith("Malformed SDP: ")


def test_config_is_validated_with_the_field_name() -> None:
    with pytest.raises(ConfigError) as info:
        UaConfig(max_calls_per_source=-1).validate()
    assert info.value.message == "sip.max_calls_per_source: must be 0 (off) or more, got -1"
