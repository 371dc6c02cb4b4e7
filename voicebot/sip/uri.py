"""SIP URIs (RFC 3261 §19.1, grammar in §25.1) and opaque absolute URIs of other schemes.

``parse_uri`` validates the characters of each part (user, password, host, port, parameters,
headers) and keeps escapes as written, so ``serialize()`` round-trips byte for byte;
``unescape()`` decodes ``%XX`` where a comparison needs the real value, and ``uri_equal()`` is the
URI comparison of RFC 3261 §19.1.4 (a registrar's Contact against ours, §10.2.4).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace

from voicebot.ascii import is_digits  # RFC 5234 DIGIT
from voicebot.sip.errors import SipParseError

_ALNUM = string.ascii_letters + string.digits
# RFC 3261 §25.1: unreserved = alphanum / mark; escaped is checked separately.
_UNRESERVED = frozenset(_ALNUM + "-_.!~*'()")
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/%")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,%")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$%")
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$%=&")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*\Z")
_HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.?\Z"
)
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]\Z")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_OPAQUE_BAD = frozenset(' \t\r\n<>"')
_HEX_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3261 §25.1 reserved: an escaped reserved character is not the same as the character itself
_RESERVED = frozenset(";/?:@&=+$,")
# §19.1.4: a parameter named here that only one URI has makes the two URIs differ
_PARAMS_THAT_MUST_MATCH = frozenset({"transport", "user", "ttl", "method", "maddr"})


def unescape(text: str) -> str:
    """Decode ``%XX`` escapes (RFC 3261 §19.1.4); invalid escapes are kept as written."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and _is_hex2(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", errors="replace")


def _is_hex2(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def _check_chars(text: str, allowed: frozenset[str], what: str, uri: str) -> None:
    for ch in text:
        if ch not in allowed:
            raise SipParseError(f"invalid character {ch!r} in {what} of URI {uri!r}")
    if _ESCAPE_RE.search(text):
        raise SipParseError(f"bad %-escape in {what} of URI {uri!r}")


def is_valid_host(host: str) -> bool:
    """Hostname, IPv4 address or bracketed IPv6 reference (RFC 3261 §25.1 ``host``)."""
    return bool(_HOSTNAME_RE.match(host) or _IPV6_RE.match(host))


def is_ip_literal(host: str) -> bool:
    """True for a dotted IPv4 address or a bracketed IPv6 reference (no DNS needed)."""
    if host.startswith("["):
        return bool(_IPV6_RE.match(host))
    parts = host.split(".")
    return len(parts) == 4 and all(is_digits(p) and len(p) <= 3 and int(p) <= 255 for p in parts)


@dataclass(frozen=True, slots=True)
class SipUri:
    """``sip:`` / ``sips:`` URI; ``user``, ``password``, parameter values and ``headers`` stay escaped."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: tuple[tuple[str, str | None], ...] = ()
    headers: str | None = None
    scheme: str = "sip"

    def param(self, name: str) -> str | None:
        """Value of a URI parameter ('' when present without value, None when absent)."""
        lname = name.lower()
        for key, value in self.params:
            if key.lower() == lname:
                return "" if value is None else value
        return None

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def with_params(self, params: tuple[tuple[str, str | None], ...]) -> SipUri:
        return replace(self, params=params)

    def serialize(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        for key, value in self.params:
            parts += [";", key] if value is None else [";", key, "=", value]
        if self.headers is not None:
            parts += ["?", self.headers]
        return "".join(parts)

    def __str__(self) -> str:
        return self.serialize()


@dataclass(frozen=True, slots=True)
class OtherUri:
    """An absolute URI of a scheme we do not interpret (``tel:``, ``http:``, ``isbn:``...)."""

    scheme: str
    opaque: str

    def serialize(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def __str__(self) -> str:
        return self.serialize()


Uri = SipUri | OtherUri


def parse_uri(text: str) -> Uri:
    """Parse an absolute URI; ``sip``/``sips`` are parsed in full, other schemes kept opaque."""
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.match(scheme):
        raise SipParseError(f"URI {text!r} has no valid scheme")
    if scheme.lower() not in ("sip", "sips"):
        if not rest or any(ch in _OPAQUE_BAD for ch in rest):
            raise SipParseError(f"invalid character in URI {text!r}")
        return OtherUri(scheme=scheme, opaque=rest)
    return _parse_sip_uri(scheme.lower(), rest, text)


def _parse_sip_uri(scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    # userinfo ends at the first '@' (an '@' inside the user part must be escaped, §19.1.1)
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not user:
            raise SipParseError(f"empty user part in URI {text!r}")
        _check_chars(user, _USER_CHARS, "user part", text)
        if colon:
            _check_chars(pw, _PASSWORD_CHARS, "password", text)
            password = pw
    headers: str | None = None
    if "?" in rest:
        rest, headers = rest.split("?", 1)
        _check_chars(headers, _HEADER_CHARS, "headers", text)
    hostport, *raw_params = rest.split(";")
    if hostport.startswith("["):
        close = hostport.find("]")
        host, portpart = hostport[: close + 1], hostport[close + 1 :]
        if portpart and not portpart.startswith(":"):
            raise SipParseError(f"invalid host in URI {text!r}")
        portpart = portpart[1:] if portpart else ""
        has_port = bool(portpart) or hostport.endswith(":")
    else:
        host, colon, portpart = hostport.partition(":")
        has_port = bool(colon)
    if not host or not is_valid_host(host):
        raise SipParseError(f"invalid host {host!r} in URI {text!r}")
    port: int | None = None
    if has_port:
        if not is_digits(portpart) or len(portpart) > 5 or int(portpart) > 65535:
            raise SipParseError(f"invalid port {portpart!r} in URI {text!r}")
        port = int(portpart)
    params: list[tuple[str, str | None]] = []
    for raw in raw_params:
        name, eq, value = raw.partition("=")
        if not name:
            raise SipParseError(f"empty parameter in URI {text!r}")
        _check_chars(name, _PARAM_CHARS, "parameter name", text)
        if eq:
            if not value:
                raise SipParseError(f"parameter {name!r} has an empty value in URI {text!r}")
            _check_chars(value, _PARAM_CHARS, "parameter value", text)
            params.append((name, value))
        else:
            params.append((name, None))
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        params=tuple(params),
        headers=headers,
        scheme=scheme,
    )


def uri_equal(a: Uri, b: Uri) -> bool:
    """RFC 3261 §19.1.4 URI comparison.

    sip and sips never match; user and password compare case-sensitively, everything else
    case-insensitively, each after decoding escapes of unreserved characters; a URI with a port
    never matches one without (even 5060); ``transport``, ``user``, ``ttl``, ``method`` and ``maddr``
    must be in both or neither, other parameters only have to agree where both have them; headers
    must all be in both. Other schemes compare by scheme and opaque part as written.
    """
    if isinstance(a, OtherUri) or isinstance(b, OtherUri):
        if not (isinstance(a, OtherUri) and isinstance(b, OtherUri)):
            return False
        return a.scheme.lower() == b.scheme.lower() and a.opaque == b.opaque
    return (
        a.scheme == b.scheme
        and _escapes_normalized(a.user) == _escapes_normalized(b.user)
        and _escapes_normalized(a.password) == _escapes_normalized(b.password)
        and a.host.lower() == b.host.lower()
        and a.port == b.port
        and _params_agree(a.params, b.params)
        and _headers_of(a.headers) == _headers_of(b.headers)
    )


def _escapes_normalized(text: str | None) -> str | None:
    """Decode the escapes of characters that need none; write the rest with upper-case hex."""
    if text is None or "%" not in text:
        return text

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        if char.isascii() and char.isprintable() and char not in _RESERVED and char != "%":
            return char
        return "%" + match.group(1).upper()

    return _HEX_ESCAPE_RE.sub(one, text)


def _lowered(text: str | None) -> str | None:
    normalized = _escapes_normalized(text)
    return None if normalized is None else normalized.lower()


def _params_agree(a: tuple[tuple[str, str | None], ...], b: tuple[tuple[str, str | None], ...]) -> bool:
    ours: dict[str, str | None] = {}
    for key, value in a:
        ours.setdefault(key.lower(), _lowered(value))
    theirs: dict[str, str | None] = {}
    for key, value in b:
        theirs.setdefault(key.lower(), _lowered(value))
    for name in ours.keys() | theirs.keys():
        if name in ours and name in theirs:
            if ours[name] != theirs[name]:
                return False
        elif name in _PARAMS_THAT_MUST_MATCH:
            return False
    return True


def _headers_of(headers: str | None) -> frozenset[tuple[str, str | None]]:
    """URI headers as an unordered set: names case-insensitive, values after escape decoding."""
    if not headers:
        return frozenset()
    out: set[tuple[str, str | None]] = set()
    for item in headers.split("&"):
        name, _, value = item.partition("=")
        out.add(((_escapes_normalized(name) or "").lower(), _escapes_normalized(value)))
    return frozenset(out)
