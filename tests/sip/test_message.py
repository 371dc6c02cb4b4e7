"""Parser and serializer: compact forms, folding, lists, quoting, escapes, framing, exact errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import (
    Headers,
    parse_auth_params,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from voicebot.sip.message import Request, Response, make_response, parse_message
from voicebot.sip.uri import OtherUri, SipUri, parse_uri, unescape

pytestmark = pytest.mark.unit

INVITE = (
    b"INVITE sip:bot@127.0.0.1:5060 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: Bot <sip:bot@127.0.0.1>\r\n"
    b'f: "Alice \\"A\\"" <sip:+15551234@10.0.0.1>;tag=1928301774\r\n'
    b"i: a84b4c76e66710@pc33\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:alice@10.0.0.1:5062>\r\n"
    b"c: application/sdp\r\n"
    b"Supported:\r\n"
    b"l: 4\r\n\r\n"
    b"v=0\r\nTRAILING"
)


def test_compact_forms_and_body_framing() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.call_id == "a84b4c76e66710@pc33"
    assert msg.cseq.seq == 314159 and msg.cseq.method == "INVITE"
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert msg.top_via.rport == ""
    assert msg.top_via.port == 5062
    assert msg.from_addr.display_name == 'Alice "A"'
    assert msg.from_addr.tag == "1928301774"
    assert msg.to_addr.tag is None
    assert msg.content_type == "application/sdp"
    assert msg.headers.get("supported") == ""
    # Octets past Content-Length are discarded.
    assert msg.body == b"v=0\r"


def test_serialize_uses_full_names_and_recomputes_content_length() -> None:
    msg = parse_message(INVITE)
    wire = msg.serialize()
    assert b"\r\nVia: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK776asdhds;rport\r\n" in wire
    assert b"\r\nContent-Length: 4\r\n\r\nv=0\r" in wire
    again = parse_message(wire)
    assert again == msg


def test_folded_lines_and_lws_everywhere() -> None:
    data = (
        b"OPTIONS sip:u@example.com SIP/2.0\r\n"
        b"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=\r\n z9hG4bK30239 ,"
        b" SIP/2.0/TCP h2;branch=z9hG4bKx\r\n"
        b"TO :\r\n sip:u@example.com ;   tag    = 1918\r\n"
        b"from: caller<sip:c@example.com>;tag=3\r\n"
        b"Call-ID: x@y\r\ncseq: 0009\r\n  OPTIONS\r\n\r\n"
    )
    msg = parse_message(data)
    vias = msg.vias
    assert [v.host for v in vias] == ["192.0.2.2", "h2"]
    assert vias[0].branch == "z9hG4bK30239"
    assert vias[1].transport == "TCP"
    assert msg.to_addr.tag == "1918"
    assert msg.from_addr.display_name == "caller"
    assert msg.cseq.seq == 9


def test_repeated_and_comma_headers_are_one_list() -> None:
    headers = Headers.of(("Allow", "INVITE, ACK"), ("allow", "BYE"), ("k", "timer,replaces"))
    assert headers.values("Allow") == ["INVITE", "ACK", "BYE"]
    assert headers.values("Supported") == ["timer", "replaces"]
    assert split_commas('"a, b" <sip:x@y>, <sip:z@w;p=1,2>') == ['"a, b" <sip:x@y>', "<sip:z@w;p=1,2>"]


def test_uri_parts_escapes_and_round_trip() -> None:
    text = "sip:I%20have%20spaces:pw@example.net:5070;transport=udp;lr?Subject=hi"
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert uri.user_unescaped == "I have spaces"
    assert uri.password == "pw"
    assert uri.port == 5070
    assert uri.param("transport") == "udp"
    assert uri.param("lr") == ""
    assert uri.headers == "Subject=hi"
    assert uri.serialize() == text
    assert unescape("n%61me=v%61lue%25%34%31") == "name=value%41"
    semi = parse_uri("sip:user;par=u%40example.net@example.com")
    assert isinstance(semi, SipUri) and semi.user == "user;par=u%40example.net" and semi.host == "example.com"
    v6 = parse_uri("sip:[2001:db8::1]:5060")
    assert isinstance(v6, SipUri) and v6.host == "[2001:db8::1]" and v6.port == 5060
    other = parse_uri("tel:+15551234")
    assert other == OtherUri("tel", "+15551234")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sip:user@exa mple.com", "invalid host 'exa mple.com' in URI 'sip:user@exa mple.com'"),
        ("sip:a%zzb@example.com", "bad %-escape in user part of URI 'sip:a%zzb@example.com'"),
        ("sip:u@example.com:99999", "invalid port '99999' in URI 'sip:u@example.com:99999'"),
        ("sip:u@example.com;;lr", "empty parameter in URI 'sip:u@example.com;;lr'"),
        ("<sip:u@h>", "URI '<sip:u@h>' has no valid scheme"),
        ("sip:@h", "empty user part in URI 'sip:@h'"),
    ],
)
def test_uri_errors_are_exact(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.message == message


def test_name_addr_forms() -> None:
    a = parse_name_addr(
        '"J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8'.replace("\r\n", "")
    )
    assert a.display_name == 'J Rosenberg \\"'
    assert a.tag == "98asjd8"
    b = parse_name_addr("sip:+19725552222@gw1.example.net;unknownparam")
    # In addr-spec form the parameters belong to the header, not the URI.
    assert isinstance(b.uri, SipUri) and b.uri.params == ()
    assert b.params == (("unknownparam", None),)
    c = parse_name_addr("<sip:+19725552222@gw1.example.net;unknownparam>")
    assert isinstance(c.uri, SipUri) and c.uri.params == (("unknownparam", None),)
    assert c.params == ()
    assert parse_name_addr(a.serialize()) == a


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Bell, Alexander <sip:a@b>", "invalid display name 'Bell, Alexander' in From (quote it)"),
        ('"Mr. J <sip:a@b>', "unterminated quoted string in '\"Mr. J <sip:a@b>'"),
        ("< sip:a@b >", "whitespace inside <> in From: '< sip:a@b >'"),
        ("<sip:a@b>;;", "empty parameter in From: '<sip:a@b>;;'"),
        ("sip:a@b?x=y", "URI with '?' or ',' must be in <> in From: 'sip:a@b?x=y'"),
        ("<sip:a@b", "missing '>' in From: '<sip:a@b'"),
        ("<sip:a@b> junk", "unexpected 'j' after From: '<sip:a@b> junk'"),
    ],
)
def test_name_addr_errors_are_exact(value: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_name_addr(value, "From")
    assert info.value.message == message


def test_via_and_cseq_errors() -> None:
    with pytest.raises(SipParseError, match=r"^empty element in Via: 'SIP/2.0/UDP h;branch=z9hG4bKa,,'$"):
        parse_via("SIP/2.0/UDP h;branch=z9hG4bKa,,")
    with pytest.raises(SipParseError, match=r"^expected '/' after 'SIP' in Via: 'SIP 2.0/UDP h'$"):
        parse_via("SIP 2.0/UDP h")
    with pytest.raises(SipParseError, match=r"^CSeq number 2147483648 is larger than 2\*\*31-1$"):
        parse_cseq("2147483648 INVITE")
    with pytest.raises(SipParseError, match=r"^CSeq must be a number and a method, got 'INVITE'$"):
        parse_cseq("INVITE")
    via = parse_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa;received=[2001:db8::2]")[0]
    assert via.host == "[2001:db8::1]" and via.received == "[2001:db8::2]"
    assert parse_via(via.serialize())[0] == via


def test_auth_params() -> None:
    scheme, params = parse_auth_params(
        'Digest realm="atlanta.com", qop="auth,auth-int", nonce="ea9c", algorithm=MD5'
    )
    assert scheme == "Digest"
    assert params == {"realm": "atlanta.com", "qop": "auth,auth-int", "nonce": "ea9c", "algorithm": "MD5"}


BASE = (
    "{start}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
    "Call-ID: x\r\nCSeq: 1 {method}\r\n{extra}\r\n{body}"
)


@pytest.mark.parametrize(
    ("start", "method", "extra", "body", "status", "message"),
    [
        (
            "OPTIONS sip:a@b SIP/2.0",
            "OPTIONS",
            "Content-Length: 10\r\n",
            "abc",
            400,
            "Content-Length 10 is larger than the 3 body bytes received",
        ),
        (
            "OPTIONS sip:a@b SIP/2.0",
            "OPTIONS",
            "Content-Length: x\r\n",
            "",
            400,
            "Content-Length 'x' is not a non-negative number",
        ),
        (
            "OPTIONS sip:a@b SIP/2.0",
            "INVITE",
            "",
            "",
            400,
            "CSeq method INVITE does not match the request method OPTIONS",
        ),
        (
            "OPTIONS sip:a@b SIP/3.0",
            "OPTIONS",
            "",
            "",
            505,
            "SIP version SIP/3.0 is not supported (only SIP/2.0)",
        ),
        (
            "OPTIONS  sip:a@b SIP/2.0",
            "OPTIONS",
            "",
            "",
            400,
            "malformed request line: expected 'METHOD SP Request-URI SP SIP/2.0' with single spaces",
        ),
        (
            "OPTIONS sip:a@b SIP/2.0",
            "OPTIONS",
            "Max-Forwards: 256\r\n",
            "",
            400,
            "Max-Forwards '256' is not a number from 0 to 255",
        ),
        ("OPTIONS sip:a@b SIP/2.0", "OPTIONS", "Call-ID: y\r\n", "", 400, "more than one Call-ID header"),
        (
            "OPTIONS sip:a@b SIP/2.0",
            "OPTIONS",
            "bad header\r\n",
            "",
            400,
            "malformed header line 'bad header'",
        ),
        ("OPTIONS sip:a@b?x=1 SIP/2.0", "OPTIONS", "", "", 400, "Request-URI must not contain headers ('?')"),
    ],
)
def test_request_errors_carry_status_and_reply_headers(
    start: str, method: str, extra: str, body: str, status: int, message: str
) -> None:
    data = BASE.format(start=start, method=method, extra=extra, body=body).encode()
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.message == message
    assert info.value.status_code == status
    assert info.value.method == "OPTIONS"
    assert [n for n, _ in info.value.reply_headers][:5] == ["Via", "From", "To", "Call-ID", "CSeq"]


def test_response_parse_and_errors() -> None:
    data = BASE.format(start="SIP/2.0 180 Ringing", method="INVITE", extra="", body="").encode()
    resp = parse_message(data)
    assert isinstance(resp, Response) and resp.status_code == 180 and resp.reason == "Ringing"
    assert parse_message(resp.serialize()).serialize() == resp.serialize()
    with pytest.raises(SipParseError, match=r"^malformed status line 'SIP/2.0 4294967301 x'$"):
        parse_message(data.replace(b"180 Ringing", b"4294967301 x"))
    with pytest.raises(SipParseError, match=r"^status code 999 is outside 100-699$"):
        parse_message(data.replace(b"180 Ringing", b"999 x"))
    with pytest.raises(SipParseError, match=r"^missing Via header$"):
        parse_message(data.replace(b"Via:", b"Xia:"))
    with pytest.raises(SipParseError, match=r"^empty message$"):
        parse_message(b"\r\n\r\n")
    with pytest.raises(SipParseError, match=r"^header section is not valid UTF-8 \(byte 40\)$"):
        parse_message(data[:40] + b"\xff" + data[41:])


def test_make_response_copies_dialog_headers_and_adds_tag() -> None:
    req = parse_message(INVITE)
    assert isinstance(req, Request)
    resp = make_response(req, 180, to_tag="abc", extra=(("Contact", "<sip:bot@127.0.0.1>"),))
    parsed = parse_message(resp.serialize())
    assert isinstance(parsed, Response)
    assert parsed.to_addr.tag == "abc"
    assert parsed.from_addr.tag == "1928301774"
    assert parsed.headers.get("Via") == req.headers.get("Via")
    assert parsed.cseq == req.cseq and parsed.call_id == req.call_id
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to_addr.tag is None


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert exc.message and exc.status_code in (400, 505)
        return
    wire = msg.serialize()
    assert parse_message(wire).serialize() == wire


_FRAGMENTS = [
    "INVITE",
    " ",
    "sip:",
    "a@b",
    "SIP/2.0",
    "\r\n",
    "Via:",
    "SIP/2.0/UDP",
    "h",
    ";",
    "branch=",
    "z9hG4bK",
    ",",
    "<",
    ">",
    '"',
    "\\",
    "From:",
    "To:",
    "Call-ID:",
    "CSeq:",
    "1",
    "tag=",
    "l:",
    "Content-Length:",
    "%",
    "%4",
    ":",
    "=",
    "?",
    "[",
    "]",
    "\t",
    "Contact:",
    "*",
    "SIP/2.0 200 OK",
    "0",
    "99999999999",
]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60))
def test_fuzz_sip_shaped_text_raises_only_sip_parse_error(parts: list[str]) -> None:
    data = "".join(parts).encode()
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        assert exc.message
        return
    # Whatever parses must serialize and parse back to the same message.
    wire = msg.serialize()
    assert parse_message(wire).serialize() == wire


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=len(INVITE)))
def test_fuzz_mutated_invite_raises_only_sip_parse_error(noise: bytes, at: int) -> None:
    data = INVITE[:at] + noise + INVITE[at + len(noise) :]
    try:
        msg = parse_message(data)
        # validated headers must also be readable through the accessors
        assert msg.vias and msg.call_id and msg.cseq.seq >= 0
        _ = (msg.from_addr, msg.to_addr, msg.contacts)
    except SipParseError as exc:
        assert exc.message
