"""UAS admission checks one by one: access (403 / 401 with stale), content (415 / 406), capacity
(unconfirmed caps, exempt proxies, trunks), offer (400 / 488) and the request rate bucket."""

from __future__ import annotations

import pytest

from voicebot.sip.admission import Admission, Offer, Refusal
from voicebot.sip.auth import Credentials, authorization, parse_challenge
from voicebot.sip.config import UaConfig
from voicebot.sip.headers import Headers
from voicebot.sip.message import Request
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit

TRUNK = ("203.0.113.10", 5060)
STRANGER = ("198.51.100.7", 5060)
PROXY = ("127.0.0.1", 5080)
RETRY = (("Retry-After", "30"),)
OFFER = (
    b"v=0\r\no=a 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 0\r\n"
)


def invite(*extra: tuple[str, str], body: bytes = b"") -> Request:
    return Request(
        "INVITE",
        SipUri(host="10.0.0.2", user="bot"),
        Headers.of(
            ("Via", "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1"),
            ("From", "<sip:a@198.51.100.7>;tag=1"),
            ("To", "<sip:bot@10.0.0.2>"),
            ("Call-ID", "c1"),
            ("CSeq", "1 INVITE"),
            *extra,
        ),
        body=body,
    )


# --- access --------------------------------------------------------------------------------------


def test_open_user_agent_admits_everyone() -> None:
    adm = Admission(UaConfig())
    assert adm.check_access(invite(), STRANGER, 0.0, "n") is None
    assert not adm.trusted(STRANGER)  # no trunk networks: nobody is a trunk


def test_trunk_networks_without_users_forbid_other_sources() -> None:
    adm = Admission(UaConfig(allowed_networks=("203.0.113.0/24",)))
    assert adm.trusted(TRUNK)
    assert adm.check_access(invite(), TRUNK, 0.0, "n") is None
    assert adm.check_access(invite(), STRANGER, 0.0, "n") == Refusal(
        403, "access", "Forbidden: source address not allowed"
    )


def test_digest_users_are_challenged_then_admitted_and_trunks_skip_the_challenge() -> None:
    adm = Admission(UaConfig(allowed_networks=("203.0.113.0/24",), inbound_users=(("alice", "pw"),)))
    assert adm.check_access(invite(), TRUNK, 0.0, "n0") is None
    refusal = adm.check_access(invite(), STRANGER, 0.0, "n1")
    assert refusal == Refusal(
        401,
        "access",
        extra=(("WWW-Authenticate", 'Digest realm="voicebot", nonce="n1", algorithm=MD5, qop="auth"'),),
    )
    answer = authorization(
        parse_challenge(refusal.extra[0][1]),
        Credentials("alice", "pw"),
        method="INVITE",
        uri="sip:bot@10.0.0.2",
        cnonce="c",
    )
    assert adm.check_access(invite(("Authorization", answer)), STRANGER, 1.0, "n2") is None
    wrong = authorization(
        parse_challenge(refusal.extra[0][1]),
        Credentials("alice", "no"),
        method="INVITE",
        uri="sip:bot@10.0.0.2",
        cnonce="c",
    )
    again = adm.check_access(invite(("Authorization", wrong)), STRANGER, 1.0, "n3")
    assert again is not None and again.status_code == 401
    assert "stale" not in again.extra[0][1]


def test_expired_nonce_is_rechallenged_with_stale_true() -> None:
    adm = Admission(UaConfig(inbound_users=(("alice", "pw"),)))
    refusal = adm.check_access(invite(), STRANGER, 0.0, "n1")
    assert refusal is not None
    answer = authorization(
        parse_challenge(refusal.extra[0][1]),
        Credentials("alice", "pw"),
        method="INVITE",
        uri="sip:bot@10.0.0.2",
        cnonce="c",
    )
    late = adm.check_access(invite(("Authorization", answer)), STRANGER, 10_000.0, "n2")
    assert late == Refusal(
        401,
        "access",
        extra=(
            (
                "WWW-Authenticate",
                'Digest realm="voicebot", nonce="n2", algorithm=MD5, qop="auth", stale=true',
            ),
        ),
    )


def test_any_of_several_authorization_headers_may_succeed() -> None:
    adm = Admission(UaConfig(inbound_users=(("alice", "pw"),), auth_realm="pbx"))
    refusal = adm.check_access(invite(), STRANGER, 0.0, "n1")
    assert refusal is not None
    good = authorization(
        parse_challenge(refusal.extra[0][1]),
        Credentials("alice", "pw"),
        method="INVITE",
        uri="sip:bot@10.0.0.2",
        cnonce="c",
    )
    request = invite(
        ("Authorization", 'Digest realm="elsewhere", nonce="x", response="y"'), ("Authorization", good)
    )
    assert adm.check_access(request, STRANGER, 1.0, "n2") is None


# --- content -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "body", "status"),
    [
        ((), b"", None),
        ((("Content-Type", "application/sdp"),), OFFER, None),
        ((("Content-Type", "Application/SDP; charset=utf-8"),), OFFER, None),
        ((("Content-Type", "multipart/mixed;boundary=x"),), b"--x", 415),
        ((), b"v=0", 415),  # a body without Content-Type
        ((("Content-Type", "text/plain"),), b"", None),  # no body: the type does not matter
        ((("Accept", "application/sdp"),), b"", None),
        ((("Accept", "text/html, application/*;q=0.5"),), b"", None),
        ((("Accept", "*/*"),), b"", None),
        ((("Accept", "text/html"), ("Accept", "APPLICATION/SDP")), b"", None),
        ((("Accept", "text/html"),), b"", 406),
        ((("Accept", ""),), b"", 406),  # an empty Accept accepts nothing (RFC 3261 §20.1)
    ],
)
def test_check_content(extra: tuple[tuple[str, str], ...], body: bytes, status: int | None) -> None:
    refusal = Admission.check_content(invite(*extra, body=body))
    if status is None:
        assert refusal is None
    else:
        assert refusal == Refusal(status, "content", extra=(("Accept", "application/sdp"),))


# --- capacity ------------------------------------------------------------------------------------


def test_unconfirmed_per_source_cap_lifts_on_ack() -> None:
    adm = Admission(UaConfig(max_unconfirmed_per_source=2, max_calls_per_source=0))
    adm.admitted("c1", STRANGER)
    adm.admitted("c2", STRANGER)
    assert adm.check_capacity(STRANGER, 2) == Refusal(
        503, "per_source", "Busy: too many unconfirmed calls from this address", RETRY
    )
    adm.confirmed("c1")
    assert adm.check_capacity(STRANGER, 2) is None
    assert adm.unconfirmed_calls == 1
    assert adm.calls_from(STRANGER[0]) == 2


def test_global_unconfirmed_cap_applies_across_sources_but_not_to_trunks() -> None:
    adm = Admission(
        UaConfig(
            max_calls=10, max_unconfirmed_calls=2, allowed_networks=("203.0.113.0/24", "198.51.100.0/24")
        )
    )
    # both sources are trunks here: never counted as unconfirmed
    adm.admitted("t1", TRUNK)
    assert adm.unconfirmed_calls == 0
    adm2 = Admission(UaConfig(max_calls=10, max_unconfirmed_calls=2, max_unconfirmed_per_source=0))
    adm2.admitted("a", ("198.51.100.1", 1))
    adm2.admitted("b", ("198.51.100.2", 1))
    assert adm2.check_capacity(("198.51.100.3", 1), 2) == Refusal(
        503, "unconfirmed", "Busy: too many unconfirmed calls", RETRY
    )
    adm2.released("a")
    assert adm2.check_capacity(("198.51.100.3", 1), 1) is None


def test_unconfirmed_cap_defaults_to_half_of_max_calls() -> None:
    assert UaConfig(max_calls=10).unconfirmed_cap == 5
    assert UaConfig(max_calls=1).unconfirmed_cap == 1
    assert UaConfig(max_calls=10, max_unconfirmed_calls=7).unconfirmed_cap == 7


def test_local_proxy_is_exempt_from_per_source_limits_but_not_from_max_calls() -> None:
    adm = Admission(
        UaConfig(max_calls=5, max_calls_per_source=1, max_unconfirmed_per_source=1, max_unconfirmed_calls=3)
    )
    adm.admitted("p1", PROXY)
    adm.admitted("p2", PROXY)
    assert adm.calls_from(PROXY[0]) == 2
    assert adm.check_capacity(PROXY, 2) is None
    # the global unconfirmed cap is checked before the exemption: a proxy relays untrusted callers
    adm.admitted("p3", PROXY)
    assert adm.check_capacity(PROXY, 3) == Refusal(
        503, "unconfirmed", "Busy: too many unconfirmed calls", RETRY
    )
    assert adm.check_capacity(PROXY, 5) == Refusal(503, "busy", "Busy: max calls reached", RETRY)


def test_trunk_skips_every_cap_except_max_calls() -> None:
    adm = Admission(UaConfig(max_calls=3, max_calls_per_source=1, allowed_networks=("203.0.113.0/24",)))
    adm.admitted("t1", TRUNK)
    adm.admitted("t2", TRUNK)
    assert adm.check_capacity(TRUNK, 2) is None
    assert adm.check_capacity(TRUNK, 3) == Refusal(503, "busy", "Busy: max calls reached", RETRY)


def test_zero_limits_switch_the_per_source_caps_off() -> None:
    adm = Admission(UaConfig(max_calls_per_source=0, max_unconfirmed_per_source=0, max_unconfirmed_calls=50))
    for n in range(20):
        adm.admitted(f"c{n}", STRANGER)
    assert adm.check_capacity(STRANGER, 20) is None


def test_release_of_unknown_or_repeated_call_ids_keeps_counts_exact() -> None:
    adm = Admission(UaConfig())
    adm.released("never")
    adm.confirmed("never")
    adm.admitted("c1", STRANGER)
    adm.released("c1")
    adm.released("c1")
    assert (adm.unconfirmed_calls, adm.calls_from(STRANGER[0])) == (0, 0)
    assert adm.check_capacity(STRANGER, 0) is None


# --- offer ---------------------------------------------------------------------------------------


def test_check_offer_negotiates_with_the_configured_codecs() -> None:
    adm = Admission(UaConfig(codecs=("PCMU",), ptime_ms=30))
    result = adm.check_offer(invite(("Content-Type", "application/sdp"), body=OFFER))
    assert isinstance(result, Offer)
    assert result.negotiation is not None
    assert (result.negotiation.codec, result.negotiation.payload_type, result.negotiation.ptime_ms) == (
        "PCMU",
        0,
        30,
    )
    assert result.sdp is not None and result.sdp.origin.username == "a"


def test_check_offer_without_common_codec_is_488_with_a_warning() -> None:
    adm = Admission(UaConfig())
    g722 = OFFER.replace(b"RTP/AVP 8 0", b"RTP/AVP 9")
    assert adm.check_offer(invite(body=g722)) == Refusal(
        488,
        "sdp",
        extra=(
            (
                "Warning",
                '304 voicebot "no audio stream with a codec we support (PCMU/PCMA at 8000 Hz) in the SDP"',
            ),
        ),
    )


def test_check_offer_malformed_is_400_with_the_parse_error_truncated_to_160() -> None:
    adm = Admission(UaConfig())
    assert adm.check_offer(invite(body=b"v=0\r\no=short\r\n")) == Refusal(
        400, "sdp", "Malformed SDP: SDP line 2: o= needs 6 fields, got 1"
    )
    long_line = b"v=0\r\no=a 1 1 IN IP4 h\r\nc=IN IP4" + b" x" * 150 + b"\r\n"
    refusal = adm.check_offer(invite(body=long_line))
    assert isinstance(refusal, Refusal)
    assert refusal.reason is not None and len(refusal.reason) == 160
    assert refusal.reason.startswith(
        "Malformed SDP: SDP line 3: c= must be 'IN IP4|IP6 <address>', got 'IN IP4 x x"
    )


# --- request rate ---------------------------------------------------------------------------------


def test_rate_bucket_per_source_and_trunks_unlimited() -> None:
    adm = Admission(
        UaConfig(rate_limit_per_s=1.0, rate_limit_burst=2.0, allowed_networks=("203.0.113.0/24",))
    )
    assert adm.allow_request(STRANGER, 0.0)
    assert adm.allow_request(STRANGER, 0.0)
    assert adm.over_limit(STRANGER, 0.0)  # the burst is spent; asking spends nothing
    assert not adm.allow_request(STRANGER, 0.0)
    assert not adm.over_limit(("198.51.100.8", 1), 0.0)  # another source has its own bucket
    assert adm.allow_request(STRANGER, 1.0)  # one token back after a second
    for _ in range(100):
        assert adm.allow_request(TRUNK, 0.0)
    assert not adm.over_limit(TRUNK, 0.0)
