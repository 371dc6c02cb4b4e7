"""Header grammar (RFC 3261 §7.3, §20, §25.1): every structured parser's accepted and rejected forms.

Each rejected form asserts the exact message a peer would read in our 400 reason phrase.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Scanner,
    Via,
    canonical_name,
    format_params,
    get_param,
    is_token,
    parse_auth_params,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_via,
    quote,
    set_param,
    split_commas,
)
from voicebot.sip.uri import OtherUri, SipUri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("v", "Via"),
        ("V", "Via"),
        ("i", "Call-ID"),
        ("call-id", "Call-ID"),
        ("CALL-ID", "Call-ID"),
        ("cseq", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("mime-version", "MIME-Version"),
        ("k", "Supported"),
        ("x", "Session-Expires"),
        ("X-Custom-Thing", "X-Custom-Thing"),
        ("x-custom-thing", "x-custom-thing"),
    ],
)
def test_canonical_name(written: str, canonical: str) -> None:
    assert canonical_name(written) == canonical


def test_headers_lookup_ignores_case_and_compact_form_and_keeps_order() -> None:
    h = Headers.of(("v", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("X-Foo", "1"), ("x-foo", "2"))
    assert h.items[0] == ("Via", "SIP/2.0/UDP a")
    assert h.get_all("VIA") == ["SIP/2.0/UDP a", "SIP/2.0/UDP b"]
    assert h.get("v") == "SIP/2.0/UDP a"
    # unknown names compare case-insensitively too
    assert h.get_all("X-FOO") == ["1", "2"]
    assert h.count("x-foo") == 2
    assert "x-Foo" in h
    assert "Route" not in h
    assert 5 not in h
    assert h.get("Route") is None


def test_headers_values_splits_comma_lists_over_all_lines() -> None:
    h = Headers.of(("Allow", "INVITE, ACK"), ("Allow", "BYE,,CANCEL"))
    assert h.values("allow") == ["INVITE", "ACK", "BYE", "CANCEL"]
    assert h.count("Allow") == 2


def test_headers_without_plus_replaced() -> None:
    h = Headers.of(("Via", "a"), ("To", "t"), ("v", "b"), ("From", "f"))
    assert h.without("v", "from").items == (("To", "t"),)
    assert h.plus(("l", "0")).items[-1] == ("Content-Length", "0")
    # replaced puts the new lines where the first old one was and drops the rest
    assert h.replaced("VIA", ["x", "y"]).items == (("Via", "x"), ("Via", "y"), ("To", "t"), ("From", "f"))
    # a header not present goes to the end
    assert h.replaced("Route", ["<sip:p>"]).items[-1] == ("Route", "<sip:p>")
    # the original is untouched (frozen)
    assert h.get_all("Via") == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a, b ,c", ["a", "b", "c"]),
        ('"Doe, John" <sip:j@h>, <sip:k@h>', ['"Doe, John" <sip:j@h>', "<sip:k@h>"]),
        ("<sip:a@h;x=1,2>, <sip:b@h>", ["<sip:a@h;x=1,2>", "<sip:b@h>"]),
        (r'"a \" , b" <sip:x@h>, c', [r'"a \" , b" <sip:x@h>', "c"]),
        ("a,,b", ["a", "b"]),
        (",", []),
    ],
)
def test_split_commas(value: str, parts: list[str]) -> None:
    assert split_commas(value) == parts


def test_split_commas_keep_empty_reports_empty_elements() -> None:
    assert split_commas("a,,b", keep_empty=True) == ["a", "", "b"]
    assert split_commas('"x" <sip:a@h>,', keep_empty=True) == ['"x" <sip:a@h>', ""]


@pytest.mark.parametrize(
    ("text", "ok"), [("INVITE", True), ("a.b-c!%*_+`'~", True), ("", False), ("a b", False), ("a@b", False)]
)
def test_is_token(text: str, ok: bool) -> None:
    assert is_token(text) is ok


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=30))
def test_quote_round_trips_through_the_scanner(text: str) -> None:
    sc = Scanner(quote(text))
    assert sc.quoted() == text
    assert sc.at_end()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("abc", "expected a quoted string in 'abc'"),
        ('"abc', "unterminated quoted string in '\"abc'"),
        ('"abc\\', "unterminated quoted string in '\"abc\\\\'"),
    ],
)
def test_scanner_quoted_errors(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        Scanner(text).quoted()
    assert str(info.value) == error


def test_scanner_accept_restores_position_when_separator_absent() -> None:
    sc = Scanner("  ;  x")
    assert not sc.accept("=")
    assert sc.pos == 0
    assert sc.accept(";")
    assert sc.peek() == "x"


def test_scanner_token_error_names_what_and_where() -> None:
    with pytest.raises(SipParseError) as info:
        Scanner("").token("a method")
    assert str(info.value) == "expected a method, found 'end of value' in ''"


@pytest.mark.parametrize(
    ("text", "params"),
    [
        (";a", (("a", None),)),
        (" ; a = 1 ;B", (("a", "1"), ("B", None))),
        (';x="q;uoted, v"', (("x", '"q;uoted, v"'),)),
        (";maddr=[::1]", (("maddr", "[::1]"),)),
        (";received=192.0.2.1:5060", (("received", "192.0.2.1:5060"),)),
        ("", ()),
    ],
)
def test_parse_params_accepts(text: str, params: tuple[tuple[str, str | None], ...]) -> None:
    sc = Scanner(text)
    assert parse_params(sc, "Test") == params
    assert sc.at_end()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (";", "empty parameter in Test: ';'"),
        (";;a", "empty parameter in Test: ';;a'"),
        (";a=", "expected a value for parameter 'a' in Test, found 'end of value' in ';a='"),
        (";=1", "expected a parameter name in Test, found '=' in ';=1'"),
        (';a="x', "unterminated quoted string in ';a=\"x'"),
    ],
)
def test_parse_params_rejects(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_params(Scanner(text), "Test")
    assert str(info.value) == error


def test_param_helpers() -> None:
    params = (("Tag", "1"), ("lr", None))
    assert get_param(params, "tag") == "1"
    assert get_param(params, "LR") == ""
    assert get_param(params, "x") is None
    # set_param replaces case-insensitively and moves the parameter to the end
    assert set_param(params, "tag", "2") == (("lr", None), ("tag", "2"))
    assert format_params((("a", None), ("b", "2"))) == ";a;b=2"


@pytest.mark.parametrize(
    ("value", "display", "uri", "params"),
    [
        ("<sip:a@h>", None, "sip:a@h", ()),
        ("sip:a@h;tag=1", None, "sip:a@h", (("tag", "1"),)),
        ("Bob <sip:b@h>;tag=x", "Bob", "sip:b@h", (("tag", "x"),)),
        ("  Bob   Smith   <sip:b@h>", "Bob Smith", "sip:b@h", ()),
        ('"Bob \\"B\\"" <sip:b@h>', 'Bob "B"', "sip:b@h", ()),
        ('"" <sip:b@h>', "", "sip:b@h", ()),
        ('"Doe, J"<sip:b@h> ; tag = 7', "Doe, J", "sip:b@h", (("tag", "7"),)),
        # parameters inside <> belong to the URI, outside to the header
        ("<sip:b@h;transport=tcp>;expires=60", None, "sip:b@h;transport=tcp", (("expires", "60"),)),
        ("<sip:b@h?Subject=x>", None, "sip:b@h?Subject=x", ()),
        ("<tel:+1-555-0100>", None, "tel:+1-555-0100", ()),
    ],
)
def test_parse_name_addr_accepts(
    value: str, display: str | None, uri: str, params: tuple[tuple[str, str | None], ...]
) -> None:
    addr = parse_name_addr(value, "To")
    assert addr.display_name == display
    assert addr.uri.serialize() == uri
    assert addr.params == params


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("Bob, Jr <sip:b@h>", "invalid display name 'Bob, Jr' in To (quote it)"),
        ("<sip:b@h", "missing '>' in To: '<sip:b@h'"),
        ("< sip:b@h>", "whitespace inside <> in To: '< sip:b@h>'"),
        ('"Bob" sip:b@h', "missing '<' after the display name in To: '\"Bob\" sip:b@h'"),
        ("", "empty To"),
        ("sip:b@h?x=1", "URI with '?' or ',' must be in <> in To: 'sip:b@h?x=1'"),
        ("<sip:b@h>;tag=1 junk", "unexpected 'j' after To: '<sip:b@h>;tag=1 junk'"),
        ("<sip:b@h>;", "empty parameter in To: '<sip:b@h>;'"),
        ("<nocolon>", "URI 'nocolon' has no valid scheme"),
    ],
)
def test_parse_name_addr_rejects(value: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_name_addr(value, "To")
    assert str(info.value) == error


def test_name_addr_tag_and_serialize() -> None:
    addr = parse_name_addr('"A \\"q\\"" <sip:a@h>;x=1', "From")
    assert addr.tag is None
    tagged = addr.with_tag("abc")
    assert tagged.tag == "abc"
    assert tagged.serialize() == '"A \\"q\\"" <sip:a@h>;x=1;tag=abc'
    assert parse_name_addr(tagged.serialize(), "From") == tagged
    assert str(NameAddr(SipUri(host="h"))) == "<sip:h>"


@given(
    st.text(alphabet=st.characters(exclude_categories=("Cs", "Cc")), max_size=20),
    st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
)
def test_name_addr_round_trip(display: str, user: str, tag: str) -> None:
    addr = NameAddr(SipUri(host="example.com", user=user), display or None, (("tag", tag),))
    assert parse_name_addr(addr.serialize(), "From") == addr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1",
            Via("UDP", "10.0.0.1", 5060, (("branch", "z9hG4bK1"),)),
        ),
        ("SIP / 2.0 / udp host.example", Via("UDP", "host.example")),
        ("SIP/2.0/TCP [2001:db8::1]:5061;rport", Via("TCP", "[2001:db8::1]", 5061, (("rport", None),))),
        (
            "SIP/2.0/UDP h ; received = 1.2.3.4 ; rport = 7",
            Via("UDP", "h", None, (("received", "1.2.3.4"), ("rport", "7"))),
        ),
        ("SIP/3.0/UDP h", Via("UDP", "h", protocol="SIP/3.0")),
    ],
)
def test_parse_via_accepts(value: str, expected: Via) -> None:
    assert parse_via(value) == [expected]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("SIP 2.0/UDP h", "expected '/' after 'SIP' in Via: 'SIP 2.0/UDP h'"),
        ("SIP/2.0 UDP h", "expected '/' after the version in Via: 'SIP/2.0 UDP h'"),
        ("SIP/2.0/UDP", "invalid sent-by host '' in Via: 'SIP/2.0/UDP'"),
        ("SIP/2.0/UDP bad_host", "invalid sent-by host 'bad_host' in Via: 'SIP/2.0/UDP bad_host'"),
        ("SIP/2.0/UDP [::1", "unterminated IPv6 reference in Via: 'SIP/2.0/UDP [::1'"),
        ("SIP/2.0/UDP h:70000", "invalid port '70000' in Via: 'SIP/2.0/UDP h:70000'"),
        ("SIP/2.0/UDP h:x1", "invalid port 'x1' in Via: 'SIP/2.0/UDP h:x1'"),
        ("SIP/2.0/UDP h other", "unexpected 'o' after Via: 'SIP/2.0/UDP h other'"),
        ("SIP/2.0/UDP a,,SIP/2.0/UDP b", "empty element in Via: 'SIP/2.0/UDP a,,SIP/2.0/UDP b'"),
        ("/2.0/UDP h", "expected the protocol name in Via, found '/' in '/2.0/UDP h'"),
    ],
)
def test_parse_via_rejects(value: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_via(value)
    assert str(info.value) == error


def test_via_list_properties_and_round_trip() -> None:
    top, second = parse_via("SIP/2.0/UDP a:1;branch=z9hG4bKx;rport, SIP/2.0/TCP b;received=9.9.9.9")
    assert (top.branch, top.rport, top.received, top.sent_by) == ("z9hG4bKx", "", None, "a:1")
    assert (second.branch, second.rport, second.received, second.sent_by) == (None, None, "9.9.9.9", "b")
    stamped = top.with_param("rport", "5062").with_param("received", "192.0.2.9")
    assert stamped.serialize() == "SIP/2.0/UDP a:1;branch=z9hG4bKx;rport=5062;received=192.0.2.9"
    assert parse_via(str(stamped)) == [stamped]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1 INVITE", CSeq(1, "INVITE")),
        ("  0\tACK ", CSeq(0, "ACK")),
        ("2147483647 FOO", CSeq(2**31 - 1, "FOO")),
    ],
)
def test_parse_cseq_accepts(value: str, expected: CSeq) -> None:
    assert parse_cseq(value) == expected
    assert parse_cseq(expected.serialize()) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("INVITE", "CSeq must be a number and a method, got 'INVITE'"),
        ("1 INVITE x", "CSeq must be a number and a method, got '1 INVITE x'"),
        ("-1 INVITE", "CSeq must be a number and a method, got '-1 INVITE'"),
        ("2147483648 INVITE", "CSeq number 2147483648 is larger than 2**31-1"),
        ("1 IN@VITE", "CSeq method 'IN@VITE' is not a token"),
        ("", "CSeq must be a number and a method, got ''"),
    ],
)
def test_parse_cseq_rejects(value: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_cseq(value)
    assert str(info.value) == error


def test_parse_auth_params_accepts_lws_and_unquotes() -> None:
    scheme, params = parse_auth_params(
        'Digest  Realm = "a\\"b" ,nonce="n",  algorithm=SHA-256 , uri="sip:x@y", qop=auth, nc=00000001'
    )
    assert scheme == "Digest"
    assert params == {
        "realm": 'a"b',
        "nonce": "n",
        "algorithm": "SHA-256",
        "uri": "sip:x@y",
        "qop": "auth",
        "nc": "00000001",
    }
    # unquoted values may carry '/', ':' and '@'
    assert parse_auth_params("Digest uri=sip:a@b/c")[1] == {"uri": "sip:a@b/c"}
    assert parse_auth_params("Basic") == ("Basic", {})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (
            'Digest realm="a" nonce="b"',
            "expected ',' between parameters of Digest credentials: 'Digest realm=\"a\" nonce=\"b\"'",
        ),
        ("Digest realm", "parameter 'realm' has no value in Digest credentials"),
        ('Digest realm="a', "unterminated quoted string in 'Digest realm=\"a'"),
        ("", "expected an authentication scheme, found 'end of value' in ''"),
        ("Digest realm=", "expected a value for 'realm', found 'end of value' in 'Digest realm='"),
    ],
)
def test_parse_auth_params_rejects(value: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_auth_params(value)
    assert str(info.value) == error


def test_other_uri_in_name_addr_is_kept_opaque() -> None:
    addr = parse_name_addr("<urn:service:sos>", "Contact")
    assert addr.uri == OtherUri("urn", "service:sos")
