"""SIP URI grammar (RFC 3261 §19.1, §25.1): character classes per part, escapes, params, headers.

``parse_uri`` keeps escapes as written so serialization is byte-exact; ``unescape`` is what a
§19.1.4 comparison must apply first (``sip:%61lice@h`` and ``sip:alice@h`` name the same user).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.sip.errors import SipParseError
from voicebot.sip.uri import OtherUri, SipUri, is_ip_literal, is_valid_host, parse_uri, unescape, uri_equal

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sip:h", SipUri(host="h")),
        ("SIP:h", SipUri(host="h")),
        ("sips:a@h:5061", SipUri(host="h", user="a", port=5061, scheme="sips")),
        ("sip:a:pw@h", SipUri(host="h", user="a", password="pw")),
        ("sip:a:@h", SipUri(host="h", user="a", password="")),
        ("sip:+1-555;phone-context=x@h", SipUri(host="h", user="+1-555;phone-context=x")),
        ("sip:%61lice@h", SipUri(host="h", user="%61lice")),
        ("sip:a@[2001:db8::1]:5060", SipUri(host="[2001:db8::1]", user="a", port=5060)),
        ("sip:a@[::1]", SipUri(host="[::1]", user="a")),
        ("sip:h.example.com.", SipUri(host="h.example.com.")),
        ("sip:h;lr", SipUri(host="h", params=(("lr", None),))),
        (
            "sip:h;transport=udp;maddr=[::1];TTL=15",
            SipUri(host="h", params=(("transport", "udp"), ("maddr", "[::1]"), ("TTL", "15"))),
        ),
        ("sip:h?Subject=hi&Priority=urgent", SipUri(host="h", headers="Subject=hi&Priority=urgent")),
        ("sip:h;x=1?a=b", SipUri(host="h", params=(("x", "1"),), headers="a=b")),
        ("sip:h:0", SipUri(host="h", port=0)),
        ("sip:h:65535", SipUri(host="h", port=65535)),
    ],
)
def test_parse_sip_uri_accepts(text: str, expected: SipUri) -> None:
    assert parse_uri(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "sip:h",
        "sips:a:pw@h:5061;transport=tcp;lr?Subject=x",
        "sip:%61lice@h",
        "sip:a@[2001:db8::1]:5060;maddr=[::1]",
        "sip:+1;phone-context=x@h;user=phone",
    ],
)
def test_sip_uri_serializes_byte_for_byte(text: str) -> None:
    uri = parse_uri(text)
    assert uri.serialize() == text
    assert str(uri) == text


def test_scheme_is_lower_cased_but_other_parts_are_kept() -> None:
    uri = parse_uri("SIPS:Alice@Example.COM;Transport=TCP")
    assert uri == SipUri(host="Example.COM", user="Alice", params=(("Transport", "TCP"),), scheme="sips")
    assert uri.serialize() == "sips:Alice@Example.COM;Transport=TCP"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("alice@h", "URI 'alice@h' has no valid scheme"),
        (":h", "URI ':h' has no valid scheme"),
        ("1sip:h", "URI '1sip:h' has no valid scheme"),
        ("sip:@h", "empty user part in URI 'sip:@h'"),
        ("sip:a b@h", "invalid character ' ' in user part of URI 'sip:a b@h'"),
        ("sip:a%4@h", "bad %-escape in user part of URI 'sip:a%4@h'"),
        ("sip:a%zz@h", "bad %-escape in user part of URI 'sip:a%zz@h'"),
        ("sip:a:p;w@h", "invalid character ';' in password of URI 'sip:a:p;w@h'"),
        ("sip:h?a=<b>", "invalid character '<' in headers of URI 'sip:h?a=<b>'"),
        ("sip:", "invalid host '' in URI 'sip:'"),
        ("sip:a@", "invalid host '' in URI 'sip:a@'"),
        ("sip:bad_host", "invalid host 'bad_host' in URI 'sip:bad_host'"),
        ("sip:-h", "invalid host '-h' in URI 'sip:-h'"),
        ("sip:[::1]x", "invalid host in URI 'sip:[::1]x'"),
        ("sip:[zz]", "invalid host '[zz]' in URI 'sip:[zz]'"),
        ("sip:h:", "invalid port '' in URI 'sip:h:'"),
        ("sip:[::1]:", "invalid port '' in URI 'sip:[::1]:'"),
        ("sip:h:65536", "invalid port '65536' in URI 'sip:h:65536'"),
        ("sip:h:005060", "invalid port '005060' in URI 'sip:h:005060'"),
        ("sip:h:-1", "invalid port '-1' in URI 'sip:h:-1'"),
        ("sip:h;", "empty parameter in URI 'sip:h;'"),
        ("sip:h;=1", "empty parameter in URI 'sip:h;=1'"),
        ("sip:h;x=", "parameter 'x' has an empty value in URI 'sip:h;x='"),
        ("sip:h;x y", "invalid character ' ' in parameter name of URI 'sip:h;x y'"),
        ('sip:h;x=a"b', "invalid character '\"' in parameter value of URI 'sip:h;x=a\"b'"),
        ("sip:h;x=%g0", "bad %-escape in parameter value of URI 'sip:h;x=%g0'"),
    ],
)
def test_parse_sip_uri_rejects(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert str(info.value) == error


@pytest.mark.parametrize(
    ("text", "scheme", "opaque"),
    [
        ("tel:+1-201-555-0123", "tel", "+1-201-555-0123"),
        ("TEL:+1", "TEL", "+1"),
        ("http://example.com/a?b=c", "http", "//example.com/a?b=c"),
        ("urn:service:sos", "urn", "service:sos"),
        ("isbn:0-19-853453-1", "isbn", "0-19-853453-1"),
    ],
)
def test_other_schemes_are_opaque(text: str, scheme: str, opaque: str) -> None:
    uri = parse_uri(text)
    assert uri == OtherUri(scheme, opaque)
    assert uri.serialize() == text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("tel:", "invalid character in URI 'tel:'"),
        ("tel:+1 555", "invalid character in URI 'tel:+1 555'"),
        ("http://a/<b>", "invalid character in URI 'http://a/<b>'"),
        ('mailto:"x"@y', "invalid character in URI 'mailto:\"x\"@y'"),
    ],
)
def test_other_schemes_reject_characters_that_cannot_appear_in_an_absolute_uri(text: str, error: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert str(info.value) == error


def test_param_lookup_is_case_insensitive_and_distinguishes_flag_from_absent() -> None:
    uri = parse_uri("sip:h;LR;Transport=TCP")
    assert isinstance(uri, SipUri)
    assert uri.param("lr") == ""
    assert uri.param("transport") == "TCP"
    assert uri.param("maddr") is None
    assert uri.with_params((("lr", None),)).serialize() == "sip:h;lr"


@pytest.mark.parametrize(
    ("escaped", "plain"),
    [
        ("%61lice", "alice"),
        ("%41%42", "AB"),
        ("a%2", "a%2"),  # too short: kept as written
        ("a%zz", "a%zz"),
        ("%25", "%"),
        ("%e2%82%ac", "\u20ac"),  # UTF-8 multi-byte sequence
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_unescape(escaped: str, plain: str) -> None:
    assert unescape(escaped) == plain


def test_comparison_after_unescape_matches_rfc3261_19_1_4_examples() -> None:
    # §19.1.4: "sip:%61lice@atlanta.com;transport=TCP" is equivalent to "sip:alice@AtLanTa.CoM;Transport=tcp"
    a = parse_uri("sip:%61lice@atlanta.com;transport=TCP")
    b = parse_uri("sip:alice@AtLanTa.CoM;Transport=tcp")
    assert isinstance(a, SipUri) and isinstance(b, SipUri)
    assert a.user_unescaped == b.user_unescaped == "alice"
    assert a.host.lower() == b.host.lower()
    assert (a.param("transport") or "").lower() == (b.param("transport") or "").lower()
    # while the user part itself is case-sensitive: ALICE is a different user
    c = parse_uri("sip:ALICE@atlanta.com")
    assert isinstance(c, SipUri)
    assert c.user_unescaped != a.user_unescaped
    assert SipUri(host="h").user_unescaped is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # the equivalent pairs of RFC 3261 §19.1.4
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        # and ours: escape case, flag parameters, other schemes
        ("sip:bob@h;x=%6a", "sip:bob@h;X=J"),
        ("sip:bob@h?to=a%3a", "sip:bob@h?to=a%3A"),
        ("sip:bob@h;lr", "sip:bob@h;lr"),
        ("tel:+1-201-555-0123", "TEL:+1-201-555-0123"),
    ],
)
def test_uri_equal_rfc3261_19_1_4_equivalent(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        # the non-equivalent pairs of RFC 3261 §19.1.4
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
        # and ours: scheme, password, an escaped reserved character, the must-match parameters
        ("sip:bob@h", "sips:bob@h"),
        ("sip:bob:pw@h", "sip:bob:PW@h"),
        ("sip:bob@h", "sip:bob:pw@h"),
        ("sip:a%3Bb@h", "sip:a;b@h"),
        ("sip:bob@h;user=phone", "sip:bob@h"),
        ("sip:bob@h;ttl=1", "sip:bob@h"),
        ("sip:bob@h;method=INVITE", "sip:bob@h"),
        ("sip:bob@h;maddr=239.0.0.1", "sip:bob@h"),
        ("sip:bob@h;lr", "sip:bob@h;lr=on"),
        ("sip:bob@h?a=1", "sip:bob@h?a=2"),
        ("tel:+1-201-555-0123", "sip:+1-201-555-0123@h"),
        ("tel:+1-201-555-0123", "tel:+1-201-555-0124"),
    ],
)
def test_uri_equal_rfc3261_19_1_4_not_equivalent(a: str, b: str) -> None:
    left, right = parse_uri(a), parse_uri(b)
    assert not uri_equal(left, right)
    assert not uri_equal(right, left)


@given(st.text(min_size=1, max_size=20))
def test_percent_encoding_any_text_then_unescape_returns_it(text: str) -> None:
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return
    escaped = "".join(f"%{b:02X}" for b in raw)
    uri = parse_uri(f"sip:{escaped}@h")
    assert isinstance(uri, SipUri)
    assert uri.user == escaped
    assert uri.user_unescaped == text


@pytest.mark.parametrize(
    ("host", "valid", "literal"),
    [
        ("example.com", True, False),
        ("a", True, False),
        ("a-b.c", True, False),
        ("example.com.", True, False),
        ("192.0.2.1", True, True),
        ("256.0.0.1", True, False),  # a valid hostname, but not an IPv4 literal
        ("1.2.3", True, False),
        ("[::1]", True, True),
        ("[2001:db8::1]", True, True),
        ("[::ffff:192.0.2.1]", True, True),
        ("::1", False, False),
        ("-a.com", False, False),
        ("a-.com", False, False),
        ("a..b", False, False),
        ("a_b", False, False),
        ("", False, False),
        ("[g::1]", False, False),
    ],
)
def test_host_classification(host: str, valid: bool, literal: bool) -> None:
    assert is_valid_host(host) is valid
    assert is_ip_literal(host) is literal


_user = st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,?/]{1,10}", fullmatch=True)
_host = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True)
_pname = st.from_regex(r"[a-z]{1,6}", fullmatch=True)
_pvalue = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9\-_.]{1,6}", fullmatch=True))


@given(
    st.sampled_from(["sip", "sips"]),
    st.one_of(st.none(), _user),
    _host,
    st.one_of(st.none(), st.integers(0, 65535)),
    st.lists(st.tuples(_pname, _pvalue), max_size=3),
    st.one_of(st.none(), st.from_regex(r"[a-z]{1,5}=[a-z0-9]{1,5}", fullmatch=True)),
)
def test_sip_uri_round_trip(
    scheme: str,
    user: str | None,
    host: str,
    port: int | None,
    params: list[tuple[str, str | None]],
    headers: str | None,
) -> None:
    uri = SipUri(host=host, user=user, port=port, params=tuple(params), headers=headers, scheme=scheme)
    assert parse_uri(uri.serialize()) == uri
