"""The sans-IO REGISTER client on its own: challenge, refresh, failure retry and unREGISTER."""

from __future__ import annotations

import pytest

from voicebot.sip.auth import Credentials
from voicebot.sip.events import RegistrationChanged
from voicebot.sip.message import Request, Response, make_response
from voicebot.sip.registration import RegistrationClient
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit


def client(credentials: Credentials | None = None) -> RegistrationClient:
    return RegistrationClient(
        registration_id="r1@10.0.0.2",
        registrar=SipUri(host="192.0.2.1"),
        aor="sip:100@192.0.2.1",
        destination=("192.0.2.1", 5060),
        credentials=credentials,
        expires_s=600,
        local_tag="t1",
        contact="<sip:voicebot@10.0.0.2:5060>",
        user_agent="voicebot",
        retry_after_s=30,
    )


def request_of(reg: RegistrationClient, n: int) -> Request:
    request, failure = reg.next_request(via=f"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{n}", cnonce="c")
    assert failure is None and request is not None
    return request


def test_challenge_then_refresh_at_half_the_granted_time() -> None:
    reg = client(Credentials("100", "pw"))
    first = request_of(reg, 1)
    assert (first.cseq.seq, first.headers.get("Expires")) == (1, "600")
    assert first.headers.get("Authorization") is None
    challenge = make_response(first, 401, extra=(("WWW-Authenticate", 'Digest realm="pbx", nonce="n1"'),))
    result = reg.on_response(challenge, 0.0)
    assert result.event is None and result.send_again
    second = request_of(reg, 2)
    assert second.cseq.seq == 2 and 'nonce="n1"' in (second.headers.get("Authorization") or "")
    ok = make_response(second, 200, extra=(("Contact", "<sip:voicebot@10.0.0.2:5060>;expires=120"),))
    result = reg.on_response(ok, 10.0)
    assert result.event == RegistrationChanged("r1@10.0.0.2", True, 200, 120)
    assert reg.deadline() == 70.0


def test_failure_retries_after_retry_after_and_unregister_finishes() -> None:
    reg = client()
    first = request_of(reg, 1)
    result = reg.on_response(make_response(first, 403), 5.0)
    assert result.event == RegistrationChanged("r1@10.0.0.2", False, 403, 0) and reg.refresh_at == 35.0
    assert reg.on_timeout(40.0) == RegistrationChanged("r1@10.0.0.2", False, 408, 0)
    reg.unregister()
    bye = request_of(reg, 2)
    assert bye.headers.get("Expires") == "0" and reg.deadline() is None
    result = reg.on_response(make_response(bye, 200), 41.0)
    assert result.event == RegistrationChanged("r1@10.0.0.2", False, 200, 0) and reg.finished


def test_unanswerable_challenge_is_reported() -> None:
    reg = client(Credentials("100", "pw", realm="other"))
    first = request_of(reg, 1)
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    # reported with the challenge itself, and retried later like any failure (not left without a deadline)
    result = reg.on_response(make_response(first, 401, extra=challenge), 0.0)
    assert result.event == RegistrationChanged("r1@10.0.0.2", False, 401, 0) and not result.send_again
    assert reg.deadline() == 30.0
    assert isinstance(make_response(first, 200), Response)
