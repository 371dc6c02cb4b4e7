"""Digest authentication beyond tests/sip/test_auth.py: algorithm variants (RFC 7616 / RFC 8760
vectors), no-qop responses, nc formatting, stale, 401 vs 407 re-sends, and the server's nonce book."""

from __future__ import annotations

import hashlib

import pytest

from voicebot.sip.auth import (
    Challenge,
    Credentials,
    DigestServer,
    authorization,
    authorized_request,
    digest_response,
    parse_challenge,
)
from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import Headers, parse_auth_params
from voicebot.sip.message import Request, make_response
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        # RFC 7616 §3.9.1: the same request answered with MD5 and with SHA-256
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            password="Circle of Life",
            realm="http-auth@example.org",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_no_qop_response_is_rfc2069_form() -> None:
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("bob:pbx:pw")
    ha2 = md5("REGISTER:sip:pbx.example")
    expected = md5(f"{ha1}:n0:{ha2}")
    got = digest_response(
        algorithm="MD5",
        username="bob",
        password="pw",
        realm="pbx",
        nonce="n0",
        method="REGISTER",
        uri="sip:pbx.example",
        qop=None,
        nc="ignored",
        cnonce="ignored",
    )
    assert got == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('Digest realm="r", nonce="n"', Challenge("r", "n")),
        ('digest realm="r", nonce="n", algorithm=md5', Challenge("r", "n", "MD5")),
        ('Digest realm="r", nonce="n", algorithm=sha-256', Challenge("r", "n", "SHA-256")),
        ('Digest realm="r", nonce="n", qop="auth-int, AUTH"', Challenge("r", "n", qop=("auth-int", "auth"))),
        ('Digest realm="r", nonce="n", qop=auth', Challenge("r", "n", qop=("auth",))),
        ('Digest realm="r", nonce="n", stale=TRUE', Challenge("r", "n", stale=True)),
        ('Digest realm="r", nonce="n", stale=false', Challenge("r", "n", stale=False)),
        ('Digest realm="r", nonce="n", opaque=""', Challenge("r", "n", opaque="")),
        ('Digest realm="", nonce=""', Challenge("", "")),
    ],
)
def test_parse_challenge_accepts(value: str, expected: Challenge) -> None:
    assert parse_challenge(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            'Digest realm="r", nonce="n", algorithm=MD5-sess',
            "unsupported digest algorithm 'MD5-SESS' (MD5 or SHA-256)",
        ),
        (
            'Digest realm="r", nonce="n", algorithm=SHA-512-256',
            "unsupported digest algorithm 'SHA-512-256' (MD5 or SHA-256)",
        ),
        ('Digest nonce="n"', "Digest challenge without realm or nonce"),
        ('Bearer realm="r"', "unsupported authentication scheme 'Bearer' (only Digest)"),
        (
            'Digest realm="r" nonce="n"',
            "expected ',' between parameters of Digest credentials: 'Digest realm=\"r\" nonce=\"n\"'",
        ),
    ],
)
def test_parse_challenge_rejects(value: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_challenge(value)
    assert str(info.value) == error


def test_authorization_without_qop_omits_nc_and_cnonce() -> None:
    value = authorization(
        Challenge("pbx", "n0"), Credentials("bob", "pw"), method="REGISTER", uri="sip:pbx", cnonce="c"
    )
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    assert set(params) == {"username", "realm", "nonce", "uri", "response", "algorithm"}
    assert params["response"] == digest_response(
        algorithm="MD5",
        username="bob",
        password="pw",
        realm="pbx",
        nonce="n0",
        method="REGISTER",
        uri="sip:pbx",
        qop=None,
    )


@pytest.mark.parametrize(
    ("nc", "text"), [(1, "00000001"), (2, "00000002"), (255, "000000ff"), (2**32 - 1, "ffffffff")]
)
def test_nonce_count_is_eight_hex_digits_and_enters_the_response(nc: int, text: str) -> None:
    challenge = Challenge("pbx", "n0", qop=("auth",))
    value = authorization(
        challenge, Credentials("bob", "pw"), method="INVITE", uri="sip:x@pbx", cnonce="c", nc=nc
    )
    params = parse_auth_params(value)[1]
    assert params["nc"] == text
    assert params["response"] == digest_response(
        algorithm="MD5",
        username="bob",
        password="pw",
        realm="pbx",
        nonce="n0",
        method="INVITE",
        uri="sip:x@pbx",
        qop="auth",
        nc=text,
        cnonce="c",
    )


def test_sha256_challenge_is_answered_with_sha256() -> None:
    challenge = parse_challenge('Digest realm="pbx", nonce="n", algorithm=SHA-256, qop="auth"')
    params = parse_auth_params(
        authorization(challenge, Credentials("bob", "pw"), method="INVITE", uri="sip:x@pbx", cnonce="c")
    )[1]
    assert params["algorithm"] == "SHA-256"
    assert len(params["response"]) == 64


def test_credentials_with_quotes_are_escaped_in_the_header() -> None:
    value = authorization(
        Challenge('p"x', "n"), Credentials('a"b\\c', "pw"), method="BYE", uri="sip:h", cnonce="c"
    )
    params = parse_auth_params(value)[1]
    assert params["username"] == 'a"b\\c'
    assert params["realm"] == 'p"x'


def _invite() -> Request:
    return Request(
        "INVITE",
        SipUri(host="pbx.example", user="200"),
        Headers.of(
            ("Via", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1"),
            ("From", "<sip:bot@pbx.example>;tag=f"),
            ("To", "<sip:200@pbx.example>"),
            ("Call-ID", "c@10.0.0.2"),
            ("CSeq", "1 INVITE"),
            ("Authorization", "Digest stale-old"),
        ),
    )


@pytest.mark.parametrize(
    ("code", "challenge_header", "answer_header"),
    [(401, "WWW-Authenticate", "Authorization"), (407, "Proxy-Authenticate", "Proxy-Authorization")],
)
def test_authorized_request_401_vs_407(code: int, challenge_header: str, answer_header: str) -> None:
    invite = _invite()
    resp = make_response(
        invite, int(code), extra=((challenge_header, 'Digest realm="pbx", nonce="n", qop="auth"'),)
    )
    again = authorized_request(
        invite, resp, Credentials("bot", "pw"), cseq=2, via="SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2", cnonce="c"
    )
    assert again is not None
    assert again.cseq.seq == 2 and again.cseq.method == "INVITE"
    assert again.top_via.branch == "z9hG4bK2"
    answers = again.headers.get_all(answer_header)
    assert len(answers) == 1
    params = parse_auth_params(answers[0])[1]
    assert (params["realm"], params["nonce"], params["uri"]) == ("pbx", "n", "sip:200@pbx.example")
    # the other header keeps whatever it had; ours replaces any earlier answer
    other = "Proxy-Authorization" if answer_header == "Authorization" else "Authorization"
    expected_other = [] if other == "Proxy-Authorization" else ["Digest stale-old"]
    assert again.headers.get_all(other) == expected_other


def test_authorized_request_answers_every_usable_challenge_and_skips_the_rest() -> None:
    invite = _invite()
    resp = make_response(
        invite,
        407,
        extra=(
            ("Proxy-Authenticate", 'Digest realm="edge", nonce="e1"'),
            ("Proxy-Authenticate", 'Digest realm="core", nonce="c1", algorithm=MD5-sess'),
            ("Proxy-Authenticate", 'Digest realm="core2", nonce="c2", qop="auth-int"'),
            ("Proxy-Authenticate", 'Digest realm="core3", nonce="c3", qop="auth"'),
        ),
    )
    again = authorized_request(
        invite, resp, Credentials("bot", "pw"), cseq=2, via="SIP/2.0/UDP h;branch=z9hG4bK9", cnonce="c"
    )
    assert again is not None
    realms = [parse_auth_params(v)[1]["realm"] for v in again.headers.get_all("Proxy-Authorization")]
    assert realms == ["edge", "core3"]


def test_authorized_request_respects_the_credentials_realm() -> None:
    invite = _invite()
    resp = make_response(
        invite,
        401,
        extra=(
            ("WWW-Authenticate", 'Digest realm="a", nonce="1"'),
            ("WWW-Authenticate", 'Digest realm="b", nonce="2"'),
        ),
    )
    only_b = authorized_request(
        invite,
        resp,
        Credentials("u", "p", realm="b"),
        cseq=2,
        via="SIP/2.0/UDP h;branch=z9hG4bKb",
        cnonce="c",
    )
    assert only_b is not None
    assert [parse_auth_params(v)[1]["realm"] for v in only_b.headers.get_all("Authorization")] == ["b"]
    none = authorized_request(
        invite,
        resp,
        Credentials("u", "p", realm="c"),
        cseq=2,
        via="SIP/2.0/UDP h;branch=z9hG4bKc",
        cnonce="c",
    )
    assert none is None
    no_challenge = authorized_request(
        invite, make_response(invite, 401), Credentials("u", "p"), cseq=2, via="v", cnonce="c"
    )
    assert no_challenge is None


# --- DigestServer ---------------------------------------------------------------------------------


def _answer(
    server_value: str, *, user: str = "trunk", password: str = "pw", method: str = "INVITE", nc: int = 1
) -> str:
    return authorization(
        parse_challenge(server_value),
        Credentials(user, password),
        method=method,
        uri="sip:bot@h",
        cnonce="cn",
        nc=nc,
    )


def test_server_challenge_text_and_stale_flag() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"})
    assert server.challenge("n1", 0.0) == 'Digest realm="voicebot", nonce="n1", algorithm=MD5, qop="auth"'
    stale = server.challenge("n2", 0.0, stale=True)
    assert stale.endswith(", stale=true")
    assert parse_challenge(stale).stale


def test_server_nonce_lifetime_boundaries() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"}, nonce_ttl_s=10)
    value = _answer(server.challenge("n1", 100.0))
    assert server.verify(value, method="INVITE", now=110.0) == (True, False)  # exactly at expiry: still valid
    assert server.verify(value, method="INVITE", now=110.001) == (False, True)  # expired: stale, re-challenge
    # the expired nonce is forgotten: a further try is just unknown, not stale
    assert server.verify(value, method="INVITE", now=110.002) == (False, False)


def test_server_accepts_later_nonce_counts_on_the_same_nonce() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"})
    challenge = server.challenge("n1", 0.0)
    assert server.verify(_answer(challenge, nc=1), method="INVITE", now=1.0) == (True, False)
    assert server.verify(_answer(challenge, nc=2, method="BYE"), method="BYE", now=2.0) == (True, False)


@pytest.mark.parametrize(
    ("user", "password", "method"),
    [
        ("nobody", "pw", "INVITE"),  # unknown user
        ("trunk", "wrong", "INVITE"),
        ("trunk", "pw", "BYE"),  # the response is bound to the method
    ],
)
def test_server_rejects_wrong_user_password_or_method(user: str, password: str, method: str) -> None:
    server = DigestServer("voicebot", {"trunk": "pw"})
    value = _answer(server.challenge("n1", 0.0), user=user, password=password)
    assert server.verify(value, method=method, now=1.0) == (False, False)


@pytest.mark.parametrize(
    "value",
    [
        'Digest username="trunk", realm="other", nonce="n1", uri="sip:bot@h", response="x"',
        'Digest username="trunk", realm="voicebot", nonce="never-issued", uri="sip:bot@h", response="x"',
        'Digest username="trunk", realm="voicebot", nonce="n1", uri="sip:bot@h", '
        'response="x", algorithm=MD5-sess',
        "Basic dHJ1bms6cHc=",
        'Digest realm="voicebot" nonce="n1"',
        "",
    ],
)
def test_server_rejects_without_stale(value: str) -> None:
    server = DigestServer("voicebot", {"trunk": "pw"})
    server.challenge("n1", 0.0)
    assert server.verify(value, method="INVITE", now=1.0) == (False, False)


def test_server_verifies_sha256_answers() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"})
    server.challenge("n1", 0.0)
    challenge = Challenge("voicebot", "n1", algorithm="SHA-256", qop=("auth",))
    value = authorization(challenge, Credentials("trunk", "pw"), method="INVITE", uri="sip:bot@h", cnonce="c")
    assert server.verify(value, method="INVITE", now=1.0) == (True, False)


def test_server_forgets_the_oldest_nonce_beyond_max_nonces() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"}, max_nonces=2)
    first = server.challenge("n1", 0.0)
    second = server.challenge("n2", 1.0)
    third = server.challenge("n3", 2.0)
    assert server.verify(_answer(first), method="INVITE", now=3.0) == (False, False)
    assert server.verify(_answer(second), method="INVITE", now=3.0) == (True, False)
    assert server.verify(_answer(third), method="INVITE", now=3.0) == (True, False)
