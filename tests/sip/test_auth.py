"""Digest authentication: the RFC 2617 worked example, qop=auth, and the server-side verifier."""

from __future__ import annotations

import pytest

from voicebot.sip.auth import Credentials, DigestServer, authorization, digest_response, parse_challenge
from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import parse_auth_params

pytestmark = pytest.mark.unit


def test_rfc2617_example_response() -> None:
    # RFC 2617 §3.5 (the HTTP example; the algorithm is the same for SIP).
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            password="Circle Of Life",
            realm="testrealm@host.com",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


def test_authorization_answers_challenge_with_qop_auth() -> None:
    challenge = parse_challenge('Digest realm="sipp", nonce="abc", qop="auth,auth-int", opaque="xyz"')
    value = authorization(
        challenge, Credentials("bot", "secret"), method="INVITE", uri="sip:1000@127.0.0.1", cnonce="c1"
    )
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    assert params["qop"] == "auth" and params["nc"] == "00000001" and params["opaque"] == "xyz"
    assert params["response"] == digest_response(
        algorithm="MD5",
        username="bot",
        password="secret",
        realm="sipp",
        nonce="abc",
        method="INVITE",
        uri="sip:1000@127.0.0.1",
        qop="auth",
        nc="00000001",
        cnonce="c1",
    )


def test_challenge_errors() -> None:
    with pytest.raises(SipParseError, match=r"^unsupported authentication scheme 'Basic' \(only Digest\)$"):
        parse_challenge('Basic realm="x"')
    with pytest.raises(SipParseError, match=r"^Digest challenge without realm or nonce$"):
        parse_challenge('Digest realm="x"')
    with pytest.raises(SipParseError, match=r"^server offers only qop=auth-int; we support qop=auth$"):
        authorization(
            parse_challenge('Digest realm="x", nonce="n", qop="auth-int"'),
            Credentials("u", "p"),
            method="INVITE",
            uri="sip:x",
            cnonce="c",
        )


def test_server_verifies_and_expires_nonces() -> None:
    server = DigestServer("voicebot", {"trunk": "pw"}, nonce_ttl_s=10)
    challenge = parse_challenge(server.challenge("n1", now=0.0))
    good = authorization(challenge, Credentials("trunk", "pw"), method="INVITE", uri="sip:bot@h", cnonce="x")
    assert server.verify(good, method="INVITE", now=1.0) == (True, False)
    bad = authorization(challenge, Credentials("trunk", "nope"), method="INVITE", uri="sip:bot@h", cnonce="x")
    assert server.verify(bad, method="INVITE", now=1.0) == (False, False)
    assert server.verify(good, method="INVITE", now=11.0) == (False, True)
    assert server.verify("NoOneKnowsThisScheme opaque-data=here", method="INVITE", now=1.0) == (False, False)
    assert "password" not in repr(Credentials("u", "password"))
