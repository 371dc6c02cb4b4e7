"""The REGISTER client's refresh timing, auth retries, unREGISTER and §10.2.8 interval rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.sip.auth import Credentials
from voicebot.sip.events import RegistrationChanged
from voicebot.sip.headers import parse_auth_params
from voicebot.sip.message import Request, make_response
from voicebot.sip.registration import (
    MAX_AUTH_ATTEMPTS,
    MAX_BACKOFF_S,
    MAX_INTERVAL_RETRIES,
    RegistrationClient,
    RegistrationResult,
)
from voicebot.sip.uri import SipUri, parse_uri

pytestmark = pytest.mark.unit

REG_ID = "r9@10.0.0.2"
OUR_CONTACT = "<sip:voicebot@10.0.0.2:5060>"


def client(credentials: Credentials | None = None, expires_s: int = 600) -> RegistrationClient:
    return RegistrationClient(
        registration_id=REG_ID,
        registrar=SipUri(host="pbx.example"),
        aor="sip:100@pbx.example",
        destination=("192.0.2.1", 5060),
        credentials=credentials,
        expires_s=expires_s,
        local_tag="lt",
        contact=OUR_CONTACT,
        user_agent="voicebot/1",
        retry_after_s=30.0,
    )


def send(reg: RegistrationClient, n: int) -> Request:
    request, failure = reg.next_request(via=f"SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKr{n}", cnonce=f"cn{n}")
    assert failure is None and request is not None
    return request


def test_every_register_shares_call_id_and_from_tag_and_counts_cseq() -> None:
    reg = client()
    first, second = send(reg, 1), send(reg, 2)
    for n, request in enumerate((first, second), start=1):
        assert request.method == "REGISTER"
        assert request.uri.serialize() == "sip:pbx.example"
        assert request.call_id == REG_ID
        assert (request.cseq.seq, request.cseq.method) == (n, "REGISTER")
        assert request.from_addr.tag == "lt"
        assert request.from_addr.uri.serialize() == request.to_addr.uri.serialize() == "sip:100@pbx.example"
        assert request.to_addr.tag is None
        assert request.headers.get("Contact") == OUR_CONTACT
        assert request.headers.get("Expires") == "600"
        assert request.headers.get("User-Agent") == "voicebot/1"
        assert request.top_via.branch == f"z9hG4bKr{n}"


@pytest.mark.parametrize(
    ("extra", "granted_s", "refresh_in_s"),
    [
        ((("Contact", f"{OUR_CONTACT};expires=120"),), 120, 60.0),
        ((("Contact", f"{OUR_CONTACT};EXPIRES=80"),), 80, 40.0),
        ((("Expires", "300"),), 300, 150.0),
        ((("Contact", f"{OUR_CONTACT};expires=90"), ("Expires", "300")), 90, 45.0),  # Contact wins (§10.2.4)
        ((("Contact", f"{OUR_CONTACT};expires=soon"), ("Expires", "100")), 100, 50.0),
        ((("Expires", "never"),), 600, 300.0),  # unusable: what we asked for
        ((), 600, 300.0),
        ((("Expires", "6"),), 6, 5.0),  # at least 5 s ahead
        ((("Expires", "1"),), 1, 5.0),
    ],
)
def test_refresh_at_half_the_granted_expiry(
    extra: tuple[tuple[str, str], ...], granted_s: int, refresh_in_s: float
) -> None:
    reg = client()
    request = send(reg, 1)
    result = reg.on_response(make_response(request, 200, extra=extra), 1000.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, True, 200, granted_s))
    assert reg.refresh_at == 1000.0 + refresh_in_s
    assert reg.deadline() == reg.refresh_at
    # the refresh clears the deadline until its answer comes
    send(reg, 2)
    assert reg.deadline() is None


def test_provisional_response_changes_nothing() -> None:
    reg = client()
    request = send(reg, 1)
    assert reg.on_response(make_response(request, 100), 1.0) == RegistrationResult(None)
    assert reg.refresh_at is None and reg.active and not reg.finished


@pytest.mark.parametrize(
    ("code", "challenge_header", "answer_header"),
    [(401, "WWW-Authenticate", "Authorization"), (407, "Proxy-Authenticate", "Proxy-Authorization")],
)
def test_challenge_is_answered_in_the_next_register(
    code: int, challenge_header: str, answer_header: str
) -> None:
    reg = client(Credentials("100", "pw"))
    first = send(reg, 1)
    challenge = make_response(
        first, code, extra=((challenge_header, 'Digest realm="pbx", nonce="n1", qop="auth"'),)
    )
    assert reg.on_response(challenge, 0.0) == RegistrationResult(None, send_again=True)
    second = send(reg, 2)
    assert second.cseq.seq == 2
    params = parse_auth_params(second.headers.get(answer_header) or "")[1]
    assert (params["nonce"], params["uri"], params["cnonce"]) == ("n1", "sip:pbx.example", "cn2")
    # a challenge answers one REGISTER only: the refresh after success starts without credentials
    reg.on_response(make_response(second, 200), 1.0)
    assert send(reg, 3).headers.get(answer_header) is None


def test_repeated_challenges_give_up_after_max_auth_attempts_then_reset_on_success() -> None:
    reg = client(Credentials("100", "pw"))
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    for n in range(1, MAX_AUTH_ATTEMPTS + 1):
        request = send(reg, n)
        assert reg.on_response(make_response(request, 401, extra=challenge), float(n)).send_again
    request = send(reg, 9)
    result = reg.on_response(make_response(request, 401, extra=challenge), 10.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, 401, 0))
    assert reg.refresh_at == 40.0
    # the retry starts over: a fresh challenge is answered again, and so after a success
    request = send(reg, 10)
    assert reg.on_response(make_response(request, 401, extra=challenge), 41.0).send_again
    request = send(reg, 11)
    assert reg.on_response(make_response(request, 200), 42.0).event == RegistrationChanged(
        REG_ID, True, 200, 600
    )
    request = send(reg, 12)
    assert reg.on_response(make_response(request, 401, extra=challenge), 400.0).send_again


def test_challenge_without_credentials_is_a_failure_with_retry() -> None:
    reg = client()
    request = send(reg, 1)
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    result = reg.on_response(make_response(request, 407, extra=challenge), 5.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, 407, 0))
    assert reg.refresh_at == 35.0


def test_timeout_reports_408_and_retries_after_retry_after() -> None:
    reg = client()
    send(reg, 1)
    assert reg.on_timeout(7.0) == RegistrationChanged(REG_ID, False, 408, 0)
    assert reg.deadline() == 37.0


def test_unregister_sends_expires_zero_and_finishes_on_2xx() -> None:
    reg = client()
    request = send(reg, 1)
    reg.on_response(make_response(request, 200), 0.0)
    assert reg.deadline() == 300.0
    reg.unregister()
    assert reg.deadline() is None and not reg.active and not reg.finished
    bye = send(reg, 2)
    assert bye.headers.get("Expires") == "0"
    assert bye.headers.get("Contact") == OUR_CONTACT
    # the registrar's Expires on the answer does not revive the binding
    result = reg.on_response(make_response(bye, 200, extra=(("Expires", "3600"),)), 1.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, 200, 0))
    assert reg.finished and reg.deadline() is None


def test_unregister_timeout_is_retried() -> None:
    reg = client()
    reg.unregister()
    send(reg, 1)
    assert reg.on_timeout(2.0) == RegistrationChanged(REG_ID, False, 408, 0)
    assert reg.deadline() == 32.0
    assert send(reg, 2).headers.get("Expires") == "0"


def test_failure_of_a_refresh_reports_unregistered_and_retries() -> None:
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    result = reg.on_response(make_response(send(reg, 2), 503), 300.0)
    assert result.event == RegistrationChanged(REG_ID, False, 503, 0)
    assert reg.refresh_at == 330.0


def test_423_raises_expires_to_min_expires() -> None:
    reg = client(expires_s=60)
    request = send(reg, 1)
    reg.on_response(make_response(request, 423, extra=(("Min-Expires", "3600"),)), 0.0)
    retry = send(reg, 2)
    assert retry.headers.get("Expires") == "3600"


def test_granted_expiry_is_read_from_our_own_contact() -> None:
    reg = client()
    request = send(reg, 1)
    ok = make_response(
        request,
        200,
        extra=(("Contact", f"<sip:desk-phone@10.0.0.9>;expires=3600, {OUR_CONTACT};expires=60"),),
    )
    assert reg.on_response(ok, 0.0).event == RegistrationChanged(REG_ID, True, 200, 60)
    assert reg.refresh_at == 30.0


def test_423_retry_is_sent_at_once_and_the_raised_expiry_sticks() -> None:
    reg = client(expires_s=60)
    request = send(reg, 1)
    result = reg.on_response(make_response(request, 423, extra=(("Min-Expires", " 3600 "),)), 0.0)
    assert result == RegistrationResult(None, send_again=True)
    assert reg.deadline() is None and reg.active and not reg.finished
    retry = send(reg, 2)
    assert (retry.cseq.seq, retry.headers.get("Expires")) == (2, "3600")
    assert reg.on_response(make_response(retry, 200), 1.0).event == RegistrationChanged(
        REG_ID, True, 200, 3600
    )
    # the registrar's minimum holds for every refresh, not just the retry
    assert send(reg, 3).headers.get("Expires") == "3600"


def test_423_after_a_challenge_and_a_challenge_after_423_are_both_answered() -> None:
    reg = client(Credentials("100", "pw"), expires_s=60)
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    first = send(reg, 1)
    assert reg.on_response(make_response(first, 401, extra=challenge), 0.0).send_again
    second = send(reg, 2)
    assert second.headers.get("Authorization") is not None
    assert reg.on_response(make_response(second, 423, extra=(("Min-Expires", "300"),)), 0.1).send_again
    third = send(reg, 3)
    assert third.headers.get("Expires") == "300" and third.headers.get("Authorization") is None
    assert reg.on_response(make_response(third, 401, extra=challenge), 0.2).send_again
    fourth = send(reg, 4)
    assert fourth.headers.get("Expires") == "300" and fourth.headers.get("Authorization") is not None
    assert reg.on_response(make_response(fourth, 200), 0.3).event == RegistrationChanged(
        REG_ID, True, 200, 300
    )


@pytest.mark.parametrize(
    ("min_expires", "why"),
    [
        (None, "without a usable Min-Expires (got None)"),
        ("soon", "without a usable Min-Expires (got 'soon')"),
        ("\u00b2", "without a usable Min-Expires (got '\u00b2')"),
        ("4294967296", "without a usable Min-Expires (got '4294967296')"),
        ("60", "with Min-Expires 60 s, not above the 60 s we asked for"),
        ("30", "with Min-Expires 30 s, not above the 60 s we asked for"),
    ],
)
def test_423_without_a_usable_min_expires_abandons_the_registration(
    min_expires: str | None, why: str
) -> None:
    reg = client(expires_s=60)
    request = send(reg, 1)
    extra = () if min_expires is None else (("Min-Expires", min_expires),)
    result = reg.on_response(make_response(request, 423, extra=extra), 5.0)
    # sending the same REGISTER again would be refused again: no retry, and the log says why
    assert result == RegistrationResult(
        RegistrationChanged(
            REG_ID,
            False,
            423,
            0,
            f"registration abandoned: 423 Interval Too Brief {why}; the registrar is at fault",
        )
    )
    assert reg.finished and reg.deadline() is None


def test_423_that_keeps_raising_its_minimum_is_abandoned_after_max_interval_retries() -> None:
    reg = client(expires_s=60)
    for n in range(1, MAX_INTERVAL_RETRIES + 1):
        request = send(reg, n)
        raised = (("Min-Expires", str(60 * 2**n)),)
        assert reg.on_response(make_response(request, 423, extra=raised), float(n)).send_again
        assert reg.expires_s == 60 * 2**n
    request = send(reg, 9)
    last = 60 * 2 ** (MAX_INTERVAL_RETRIES + 1)
    result = reg.on_response(make_response(request, 423, extra=(("Min-Expires", str(last)),)), 9.0)
    assert result.event == RegistrationChanged(
        REG_ID,
        False,
        423,
        0,
        f"registration abandoned: 423 Interval Too Brief {MAX_INTERVAL_RETRIES + 1} times in a row, "
        f"last asking for {last} s; the registrar is at fault",
    )
    assert reg.finished


def test_423_retries_are_counted_per_attempt_not_per_registration() -> None:
    reg = client(expires_s=60)
    minimum = 60
    for n in range(1, 2 * MAX_INTERVAL_RETRIES + 2, 2):
        # each round: one 423 (raise), then the registrar accepts; the next round starts afresh
        minimum *= 2
        request = send(reg, n)
        assert reg.on_response(
            make_response(request, 423, extra=(("Min-Expires", str(minimum)),)), 0.0
        ).send_again
        request = send(reg, n + 1)
        assert reg.on_response(make_response(request, 200), 0.0).event == RegistrationChanged(
            REG_ID, True, 200, minimum
        )


@pytest.mark.parametrize(
    ("extra", "granted_s"),
    [
        # ours written with an escape and another case of host: still ours by §19.1.4
        (
            (
                (
                    "Contact",
                    "<sip:desk-phone@10.0.0.9>;expires=3600, <sip:%76oicebot@10.0.0.2:5060>;expires=45",
                ),
            ),
            45,
        ),
        # another binding of the AOR, then ours; order does not matter
        (
            (("Contact", f"{OUR_CONTACT};expires=70"), ("Contact", "<sip:desk-phone@10.0.0.9>;expires=3600")),
            70,
        ),
        # ours listed without a usable expires: the Expires header, not another device's binding
        ((("Contact", f"<sip:desk-phone@10.0.0.9>;expires=30, {OUR_CONTACT}"), ("Expires", "500")), 500),
        ((("Contact", f"<sip:desk-phone@10.0.0.9>;expires=30, {OUR_CONTACT};expires=\u00b2"),), 600),
        # our Contact rewritten by the registrar (NAT): the shortest binding listed, the header included
        ((("Contact", "<sip:voicebot@203.0.113.7:40000>;expires=120"), ("Expires", "3600")), 120),
        ((("Contact", "<sip:voicebot@203.0.113.7:40000>;expires=120"), ("Expires", "90")), 90),
        ((("Contact", "<sip:a@10.0.0.9>;expires=3600, <sip:b@10.0.0.8>;expires=300"),), 300),
        # not ours: a URI without the port is another binding (§19.1.4), as is one with a transport
        ((("Contact", "<sip:voicebot@10.0.0.2>;expires=3600, <sip:x@10.0.0.3>;expires=200"),), 200),
        ((("Contact", "<sip:voicebot@10.0.0.2:5060;transport=tcp>;expires=100"), ("Expires", "400")), 100),
        ((("Expires", "\u00b2"),), 600),
        ((("Expires", "4294967296"),), 600),
    ],
)
def test_granted_expiry_is_ours_else_the_header_else_the_shortest_listed(
    extra: tuple[tuple[str, str], ...], granted_s: int
) -> None:
    reg = client()
    request = send(reg, 1)
    assert reg.on_response(make_response(request, 200, extra=extra), 0.0).event == RegistrationChanged(
        REG_ID, True, 200, granted_s
    )


@pytest.mark.parametrize(
    ("code", "retry_after", "retry_in_s"),
    [
        (503, "120", 120.0),
        (503, "120 (maintenance);duration=3600", 120.0),
        (500, "45", 45.0),
        (480, "60", 60.0),
        (503, "5", 30.0),  # never sooner than our own retry_after_s
        (503, "0", 30.0),
        (503, "soon", 30.0),
        (503, "\u00b2", 30.0),
        (503, None, 30.0),
    ],
)
def test_failed_register_is_retried_no_sooner_than_retry_after(
    code: int, retry_after: str | None, retry_in_s: float
) -> None:
    # §20.33 / §21.5.4: Retry-After says when the registrar expects to be back
    reg = client()
    request = send(reg, 1)
    extra = () if retry_after is None else (("Retry-After", retry_after),)
    result = reg.on_response(make_response(request, code, extra=extra), 100.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, code, 0))
    assert reg.refresh_at == 100.0 + retry_in_s


def test_unregister_waits_for_the_register_in_flight_then_goes_at_once() -> None:
    # §10.2: no new REGISTER for a binding before the previous one got its final response
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    refresh = send(reg, 2)
    assert reg.in_flight
    reg.unregister()
    assert reg.in_flight and not reg.finished
    # the refresh's 200 is not the unREGISTER's: the binding is still there, so the Expires: 0 goes now
    result = reg.on_response(make_response(refresh, 200), 300.0)
    assert result == RegistrationResult(None, send_again=True)
    assert not reg.finished and not reg.in_flight
    bye = send(reg, 3)
    assert bye.headers.get("Expires") == "0"
    assert reg.on_response(make_response(bye, 200), 300.1).event == RegistrationChanged(REG_ID, False, 200, 0)
    assert reg.finished


@pytest.mark.parametrize("outcome", [401, 503, "timeout"])
def test_unregister_after_a_failed_or_lost_register_in_flight_still_goes_at_once(outcome: int | str) -> None:
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    refresh = send(reg, 2)
    reg.unregister()
    if outcome == "timeout":
        assert reg.on_timeout(332.0) == RegistrationChanged(REG_ID, False, 408, 0)
        assert reg.deadline() == 332.0
    else:
        result = reg.on_response(make_response(refresh, int(outcome)), 301.0)
        assert result == RegistrationResult(
            RegistrationChanged(REG_ID, False, int(outcome), 0), send_again=True
        )
    assert send(reg, 3).headers.get("Expires") == "0"


def test_unregister_with_nothing_in_flight_is_sent_by_the_caller_at_once() -> None:
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    assert not reg.in_flight
    reg.unregister()
    assert send(reg, 2).headers.get("Expires") == "0"


@pytest.mark.parametrize(
    ("credentials", "challenges"),
    [
        (Credentials("100", "pw", realm="other"), ('Digest realm="pbx", nonce="n"',)),
        (Credentials("100", "pw"), ('Digest realm="pbx", nonce="n", qop="auth-int"',)),
        (Credentials("100", "pw"), ('Digest realm="pbx", nonce="n", algorithm=SHA-512-256-sess-x',)),
        (Credentials("100", "pw"), ("Basic realm=pbx",)),
        (Credentials("100", "pw"), ()),
    ],
)
def test_a_challenge_we_cannot_answer_is_a_failure_retried_later(
    credentials: Credentials, challenges: tuple[str, ...]
) -> None:
    # once left the client with no deadline at all: the REGISTER was never sent and never retried
    reg = client(credentials)
    request = send(reg, 1)
    extra = tuple(("WWW-Authenticate", c) for c in challenges)
    result = reg.on_response(make_response(request, 401, extra=extra), 10.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, 401, 0))
    assert reg.deadline() == 40.0 and not reg.in_flight
    # the retry starts fresh, without the unanswerable challenge
    assert send(reg, 2).headers.get("Authorization") is None


def test_one_answerable_challenge_among_several_is_enough() -> None:
    reg = client(Credentials("100", "pw", realm="pbx"))
    request = send(reg, 1)
    extra = (
        ("WWW-Authenticate", 'Digest realm="elsewhere", nonce="x"'),
        ("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),
    )
    assert reg.on_response(make_response(request, 401, extra=extra), 0.0).send_again
    params = parse_auth_params(send(reg, 2).headers.get("Authorization") or "")[1]
    assert (params["realm"], params["nonce"]) == ("pbx", "n")


def test_unregister_refused_for_good_finishes_the_client() -> None:
    # a 4xx to the Expires: 0 will not change on a retry; the binding lapses at its expiry anyway
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    reg.unregister()
    result = reg.on_response(make_response(send(reg, 2), 403), 10.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, 403, 0))
    assert reg.finished and reg.deadline() is None


@pytest.mark.parametrize(
    ("code", "retry_after", "retry_at"), [(503, None, 40.0), (500, "100", 110.0), (408, None, 40.0)]
)
def test_unregister_that_the_registrar_could_not_handle_now_is_retried(
    code: int, retry_after: str | None, retry_at: float
) -> None:
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    reg.unregister()
    extra = () if retry_after is None else (("Retry-After", retry_after),)
    result = reg.on_response(make_response(send(reg, 2), code, extra=extra), 10.0)
    assert result == RegistrationResult(RegistrationChanged(REG_ID, False, code, 0))
    assert not reg.finished and reg.deadline() == retry_at
    assert send(reg, 3).headers.get("Expires") == "0"


@pytest.mark.parametrize("outcome", [503, "timeout"])
def test_unregister_is_not_retried_past_the_end_of_the_binding(outcome: int | str) -> None:
    # granted 600 s at 0.0: a retry at 590 + 30 s would find nothing left to remove
    reg = client()
    reg.on_response(make_response(send(reg, 1), 200), 0.0)
    reg.unregister()
    request = send(reg, 2)
    if outcome == "timeout":
        assert reg.on_timeout(590.0) == RegistrationChanged(REG_ID, False, 408, 0)
    else:
        reg.on_response(make_response(request, int(outcome)), 590.0)
    assert reg.finished and reg.deadline() is None


def test_request_uri_drops_the_registrars_userinfo_and_headers() -> None:
    # §10.2: 'The "userinfo" and "@" components of the SIP URI MUST NOT be present'
    registrar = parse_uri("sip:100:secret@pbx.example:5080;transport=udp?subject=x")
    assert isinstance(registrar, SipUri)
    reg = RegistrationClient(
        registration_id=REG_ID,
        registrar=registrar,
        aor="sip:100@pbx.example",
        destination=("192.0.2.1", 5080),
        credentials=Credentials("100", "pw"),
        expires_s=600,
        local_tag="lt",
        contact=OUR_CONTACT,
        user_agent="voicebot/1",
        retry_after_s=30.0,
    )
    first = send(reg, 1)
    assert first.uri.serialize() == "sip:pbx.example:5080;transport=udp"
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    reg.on_response(make_response(first, 401, extra=challenge), 0.0)
    params = parse_auth_params(send(reg, 2).headers.get("Authorization") or "")[1]
    assert params["uri"] == "sip:pbx.example:5080;transport=udp"


ANSWERS = st.sampled_from(
    [
        (200, ()),
        (200, (("Contact", f"{OUR_CONTACT};expires=30"),)),
        (401, (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)),
        (407, (("Proxy-Authenticate", 'Digest realm="pbx", nonce="n", qop="auth"'),)),
        (401, (("WWW-Authenticate", 'Digest realm="elsewhere", nonce="n"'),)),
        (423, (("Min-Expires", "900"),)),
        (423, (("Min-Expires", "7200"),)),
        (423, ()),
        (403, ()),
        (408, ()),
        (503, (("Retry-After", "90"),)),
        (500, ()),
        (100, ()),
    ]
)
STEPS = st.lists(
    st.one_of(ANSWERS, st.sampled_from(["timeout", "unregister", "timer"])), min_size=1, max_size=30
)


@given(steps=STEPS, with_credentials=st.booleans())
def test_the_client_is_never_stalled_and_never_has_two_registers_in_flight(
    steps: list[object], with_credentials: bool
) -> None:
    # driven the way the user agent drives it; after every step the client is finished, waiting
    # for the answer to exactly one REGISTER, or has a deadline to send the next one
    reg = client(Credentials("100", "pw", realm="pbx") if with_credentials else None)
    now = 0.0
    n = 0
    pending: Request | None = None

    def send_now() -> None:
        nonlocal n, pending
        assert pending is None, "a second REGISTER while one is in flight (§10.2)"
        n += 1
        pending = send(reg, n)

    send_now()
    for step in steps:
        now += 1.0
        if step == "unregister":
            if reg.finished or not reg.active:
                continue
            reg.unregister()
            if not reg.in_flight:
                send_now()
        elif step == "timer":
            deadline = reg.deadline()
            if deadline is None:
                continue
            now = max(now, deadline)
            send_now()
        elif pending is not None:
            if step == "timeout":
                pending = None
                reg.on_timeout(now)
            else:
                assert isinstance(step, tuple)
                code, extra = step
                result = reg.on_response(make_response(pending, code, extra=extra), now)
                if code >= 200:
                    pending = None
                if result.send_again:
                    send_now()
        assert reg.in_flight == (pending is not None)
        assert reg.finished or reg.in_flight or reg.deadline() is not None, (step, vars(reg))
        if reg.finished:
            assert reg.deadline() is None and not reg.in_flight
            return


def test_consecutive_failures_back_off_exponentially_up_to_max_backoff_and_reset_on_success() -> None:
    # RFC 5626 §4.5's shape (base * 2**(failures-1), capped): a wrong password is not tried twice
    # every 30 s forever, which is what gets an address banned by the registrar's intrusion filter
    reg = client(Credentials("100", "pw"))
    challenge = (("WWW-Authenticate", 'Digest realm="pbx", nonce="n"'),)
    delays: list[float] = []
    now = 0.0
    n = 0
    for failure in range(9):
        for _ in range(MAX_AUTH_ATTEMPTS):
            n += 1
            assert reg.on_response(make_response(send(reg, n), 401, extra=challenge), now).send_again
        n += 1
        request = send(reg, n)
        if failure == 4:
            assert reg.on_timeout(now).status_code == 408
        else:
            assert reg.on_response(make_response(request, 401, extra=challenge), now).event is not None
        assert reg.refresh_at is not None
        delays.append(reg.refresh_at - now)
        now = reg.refresh_at
    assert delays == [30.0, 60.0, 120.0, 240.0, 480.0, 960.0, MAX_BACKOFF_S, MAX_BACKOFF_S, MAX_BACKOFF_S]
    n += 1
    reg.on_response(make_response(send(reg, n), 200), now)
    n += 1
    reg.on_response(make_response(send(reg, n), 503), now + 300.0)
    assert reg.refresh_at == now + 300.0 + 30.0


def test_retry_after_longer_than_the_backoff_wins_and_a_long_retry_after_s_is_not_capped() -> None:
    reg = client()
    reg.on_response(make_response(send(reg, 1), 503, extra=(("Retry-After", "7200"),)), 0.0)
    assert reg.refresh_at == 7200.0
    slow = RegistrationClient(
        registration_id=REG_ID,
        registrar=SipUri(host="pbx.example"),
        aor="sip:100@pbx.example",
        destination=("192.0.2.1", 5060),
        credentials=None,
        expires_s=600,
        local_tag="lt",
        contact=OUR_CONTACT,
        user_agent="voicebot/1",
        retry_after_s=3600.0,
    )
    for n in range(1, 4):
        slow.on_response(make_response(send(slow, n), 503), 0.0)
        assert slow.refresh_at == 3600.0
