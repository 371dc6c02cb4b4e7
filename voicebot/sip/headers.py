"""SIP header fields (RFC 3261 §7.3, §20, grammar in §25.1).

``Headers`` is an ordered, case-insensitive multi-map that keeps every header line as written
(after unfolding) under its canonical name, so compact forms (``v``, ``i``, ``l``...) and repeated
headers both work. The structured values the user agent relies on (Via, name-addr From/To/
Contact, CSeq, parameters, comma lists) are parsed here by a small scanner that allows linear
white space wherever the grammar does (``SWS`` / ``LWS`` around ``;``, ``=``, ``/`` and ``:``).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from voicebot.ascii import is_digits
from voicebot.sip.errors import SipParseError
from voicebot.sip.uri import OtherUri, SipUri, Uri, is_valid_host, parse_uri

# RFC 3261 §7.3.3 and the IANA registry: compact form -> full name.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Allow-Events",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Event",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Reason",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Subscription-State",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Session-Expires",
        "Identity",
        "Identity-Info",
        "P-Asserted-Identity",
        "Privacy",
        "Diversion",
    )
}
_KNOWN_NAMES = frozenset(_CANONICAL.values()) | frozenset(COMPACT_FORMS.values())
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
_TOKEN_CLASS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{_TOKEN_CLASS}]+")
_WS = " \t"


@functools.lru_cache(maxsize=8)
def _token_re(extra: str) -> re.Pattern[str]:
    return re.compile(f"[{_TOKEN_CLASS}{re.escape(extra)}]+")


def canonical_name(name: str) -> str:
    """Full, canonically capitalised header name; unknown names are kept as written."""
    lower = name.lower()
    if lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    return _CANONICAL.get(lower, name)


def is_token(text: str) -> bool:
    return bool(text) and all(ch in TOKEN_CHARS for ch in text)


@dataclass(frozen=True, slots=True)
class Headers:
    """Header lines in order as ``(canonical name, value)``; lookups ignore case."""

    items: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, *pairs: tuple[str, str]) -> Headers:
        return cls(tuple((canonical_name(n), v) for n, v in pairs))

    def get(self, name: str) -> str | None:
        """The first value of ``name`` or None."""
        for v in self._matching(name):
            return v
        return None

    def get_all(self, name: str) -> list[str]:
        """Every line's value of ``name`` (not split at commas)."""
        return list(self._matching(name))

    def _matching(self, name: str) -> Iterator[str]:
        cname = canonical_name(name)
        if cname in _KNOWN_NAMES:
            # stored names went through canonical_name too, so known names compare exactly
            return (v for n, v in self.items if n == cname)
        key = cname.lower()
        return (v for n, v in self.items if n.lower() == key)

    def values(self, name: str) -> list[str]:
        """Every element of a comma-list header over all its lines (RFC 3261 §7.3.1)."""
        out: list[str] = []
        for line in self.get_all(name):
            out.extend(split_commas(line))
        return out

    def count(self, name: str) -> int:
        return len(self.get_all(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def without(self, *names: str) -> Headers:
        keys = {canonical_name(n).lower() for n in names}
        return Headers(tuple((n, v) for n, v in self.items if n.lower() not in keys))

    def plus(self, *pairs: tuple[str, str]) -> Headers:
        return Headers(self.items + tuple((canonical_name(n), v) for n, v in pairs))

    def replaced(self, name: str, values: Iterable[str]) -> Headers:
        """Replace every line of ``name`` by ``values`` at the position of the first one (or the end)."""
        key = canonical_name(name).lower()
        new = [(canonical_name(name), v) for v in values]
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self.items:
            if n.lower() == key:
                if not placed:
                    out.extend(new)
                    placed = True
                continue
            out.append((n, v))
        if not placed:
            out.extend(new)
        return Headers(tuple(out))


class Scanner:
    """Cursor over one header value: tokens, quoted strings, separators with optional LWS."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def accept(self, ch: str) -> bool:
        """Consume ``ch`` with LWS either side (SWS ch SWS) when it comes next."""
        save = self.pos
        self.skip_ws()
        if self.peek() == ch:
            self.pos += 1
            self.skip_ws()
            return True
        self.pos = save
        return False

    def token(self, what: str, extra: str = "") -> str:
        pattern = _TOKEN_RE if not extra else _token_re(extra)
        match = pattern.match(self.text, self.pos)
        if match is None:
            found = self.peek() or "end of value"
            raise SipParseError(f"expected {what}, found {found!r} in {self.text!r}")
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        """A quoted-string (RFC 3261 §25.1); returns the unquoted, unescaped text."""
        if self.peek() != '"':
            raise SipParseError(f"expected a quoted string in {self.text!r}")
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                if self.pos + 1 >= len(self.text):
                    break
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise SipParseError(f"unterminated quoted string in {self.text!r}")

    def rest(self) -> str:
        value = self.text[self.pos :]
        self.pos = len(self.text)
        return value


def quote(text: str) -> str:
    """Make a quoted-string, escaping backslash and double quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_commas(value: str, *, keep_empty: bool = False) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    if '"' not in value and "<" not in value:
        parts = [v.strip() for v in value.split(",")]
        return parts if keep_empty else [v for v in parts if v]
    out: list[str] = []
    depth = 0
    in_quote = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return out if keep_empty else [v for v in out if v]


Params = tuple[tuple[str, str | None], ...]


def parse_params(sc: Scanner, what: str) -> Params:
    """``*( SEMI generic-param )`` with LWS allowed around ``;`` and ``=`` (values keep quotes)."""
    params: list[tuple[str, str | None]] = []
    while sc.accept(";"):
        if sc.at_end() or sc.peek() in ";,":
            raise SipParseError(f"empty parameter in {what}: {sc.text!r}")
        name = sc.token(f"a parameter name in {what}")
        if sc.accept("="):
            if sc.peek() == '"':
                start = sc.pos
                sc.quoted()
                params.append((name, sc.text[start : sc.pos]))
            else:
                params.append((name, sc.token(f"a value for parameter {name!r} in {what}", extra=":[]")))
        else:
            params.append((name, None))
    return tuple(params)


def get_param(params: Params, name: str) -> str | None:
    lname = name.lower()
    for key, value in params:
        if key.lower() == lname:
            return "" if value is None else value
    return None


def set_param(params: Params, name: str, value: str | None) -> Params:
    lname = name.lower()
    kept = [(k, v) for k, v in params if k.lower() != lname]
    return (*kept, (name, value))


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _end_of_element(sc: Scanner, what: str) -> None:
    sc.skip_ws()
    if not sc.at_end():
        raise SipParseError(f"unexpected {sc.peek()!r} after {what}: {sc.text!r}")


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``name-addr`` or ``addr-spec`` with header parameters: From, To, Contact, Route, Refer-To."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=set_param(self.params, "tag", tag))

    def serialize(self) -> str:
        display = f"{quote(self.display_name)} " if self.display_name else ""
        return f"{display}<{self.uri.serialize()}>{format_params(self.params)}"

    def __str__(self) -> str:
        return self.serialize()


def parse_name_addr(value: str, what: str = "header") -> NameAddr:
    """Parse one From/To/Contact/Route element (RFC 3261 §20.10 and §25.1)."""
    sc = Scanner(value.strip(_WS))
    display: str | None = None
    if sc.peek() == '"':
        display = sc.quoted()
        sc.skip_ws()
    elif "<" in sc.text:
        # display-name = *(token LWS); a comma or other separator makes the header invalid.
        raw = sc.text[: sc.text.index("<")]
        words = raw.split()
        for word in words:
            if not is_token(word):
                raise SipParseError(f"invalid display name {raw.strip()!r} in {what} (quote it)")
        display = " ".join(words) or None
        sc.pos = len(raw)
    if sc.peek() == "<":
        close = sc.text.find(">", sc.pos)
        if close < 0:
            raise SipParseError(f"missing '>' in {what}: {value!r}")
        inner = sc.text[sc.pos + 1 : close]
        if inner != inner.strip(_WS):
            raise SipParseError(f"whitespace inside <> in {what}: {value!r}")
        uri = parse_uri(inner)
        sc.pos = close + 1
    else:
        if display is not None:
            raise SipParseError(f"missing '<' after the display name in {what}: {value!r}")
        start = sc.pos
        while not sc.at_end() and sc.peek() not in ";" + _WS:
            sc.pos += 1
        spec = sc.text[start : sc.pos]
        if not spec:
            raise SipParseError(f"empty {what}")
        if "?" in spec or "," in spec:
            # RFC 3261 §20.10: such a URI must be enclosed in angle brackets.
            raise SipParseError(f"URI with '?' or ',' must be in <> in {what}: {value!r}")
        uri = parse_uri(spec)
    params = parse_params(sc, what)
    _end_of_element(sc, what)
    return NameAddr(uri=uri, display_name=display, params=params)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 §20.42, §18.2.1; rport from RFC 3581)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return get_param(self.params, "received")

    @property
    def rport(self) -> str | None:
        """'' when present without a value (a request asking for it), None when absent."""
        return get_param(self.params, "rport")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=set_param(self.params, name, value))

    def serialize(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{format_params(self.params)}"

    def __str__(self) -> str:
        return self.serialize()


def parse_via(value: str) -> list[Via]:
    """All Via elements of one header line (a comma list)."""
    elements = split_commas(value, keep_empty=True)
    if not all(elements):
        raise SipParseError(f"empty element in Via: {value!r}")
    return [_parse_via_element(e) for e in elements]


@functools.lru_cache(maxsize=1024)
def _parse_via_element(value: str) -> Via:
    # Cached: one message's top Via is read for matching, stamping and addressing (five parses of
    # the same text per request, the largest cost of a flood datagram); Via is frozen, so sharing
    # the parsed value is safe.
    sc = Scanner(value)
    name = sc.token("the protocol name in Via")
    if not sc.accept("/"):
        raise SipParseError(f"expected '/' after {name!r} in Via: {value!r}")
    version = sc.token("the protocol version in Via")
    if not sc.accept("/"):
        raise SipParseError(f"expected '/' after the version in Via: {value!r}")
    transport = sc.token("the transport in Via")
    sc.skip_ws()
    start = sc.pos
    if sc.peek() == "[":
        close = sc.text.find("]", sc.pos)
        if close < 0:
            raise SipParseError(f"unterminated IPv6 reference in Via: {value!r}")
        sc.pos = close + 1
    else:
        while not sc.at_end() and sc.peek() not in ":;" + _WS:
            sc.pos += 1
    host = sc.text[start : sc.pos]
    if not host or not is_valid_host(host):
        raise SipParseError(f"invalid sent-by host {host!r} in Via: {value!r}")
    port: int | None = None
    if sc.accept(":"):
        digits = sc.token("a port in Via")
        if not is_digits(digits) or int(digits) > 65535:
            raise SipParseError(f"invalid port {digits!r} in Via: {value!r}")
        port = int(digits)
    params = parse_params(sc, "Via")
    _end_of_element(sc, "Via")
    return Via(transport=transport.upper(), host=host, port=port, params=params, protocol=f"{name}/{version}")


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): a sequence number below 2**31 and the method."""

    seq: int
    method: str

    def serialize(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not is_digits(parts[0]):
        raise SipParseError(f"CSeq must be a number and a method, got {value!r}")
    seq = int(parts[0])
    if seq >= 2**31:
        raise SipParseError(f"CSeq number {parts[0]} is larger than 2**31-1")
    if not is_token(parts[1]):
        raise SipParseError(f"CSeq method {parts[1]!r} is not a token")
    return CSeq(seq=seq, method=parts[1])


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """``scheme param=value, ...`` of WWW-Authenticate / Authorization (RFC 3261 §25.1).

    Parameter names are lower-cased, quoted values are unquoted.
    """
    sc = Scanner(value.strip(_WS))
    scheme = sc.token("an authentication scheme")
    params: dict[str, str] = {}
    sc.skip_ws()
    first = True
    while not sc.at_end():
        if not first and not sc.accept(","):
            raise SipParseError(f"expected ',' between parameters of {scheme} credentials: {value!r}")
        first = False
        sc.skip_ws()
        name = sc.token(f"a parameter name in {scheme} credentials").lower()
        if not sc.accept("="):
            raise SipParseError(f"parameter {name!r} has no value in {scheme} credentials")
        params[name] = sc.quoted() if sc.peek() == '"' else sc.token(f"a value for {name!r}", extra="/:@")
        sc.skip_ws()
    return scheme, params


def sip_uri_of(addr: NameAddr) -> SipUri | None:
    return addr.uri if isinstance(addr.uri, SipUri) else None


__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Headers",
    "NameAddr",
    "OtherUri",
    "Params",
    "Scanner",
    "SipUri",
    "Via",
    "canonical_name",
    "format_params",
    "get_param",
    "is_token",
    "parse_auth_params",
    "parse_cseq",
    "parse_name_addr",
    "parse_params",
    "parse_via",
    "quote",
    "set_param",
    "split_commas",
]
