"""SIP requests and responses: parsing, validation and serialization (RFC 3261 §7, §18.3, §8.2.6).

``parse_message`` frames one UDP datagram (start line, unfolded header lines, body cut to
Content-Length) and validates everything a user agent relies on: a single well-formed Via
list, From, To, Call-ID, CSeq matching the method, Max-Forwards, Content-Length, Contact, Date.
Anything wrong raises :class:`SipParseError` whose message names the fault; for requests the
error carries the raw lines needed to address a ``400``. ``serialize()`` always writes the
full header names and a Content-Length that matches the body.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from voicebot.ascii import is_digits
from voicebot.sip.errors import SipParseError
from voicebot.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    canonical_name,
    is_token,
    parse_cseq,
    parse_name_addr,
    parse_via,
    split_commas,
)
from voicebot.sip.uri import SipUri, Uri, parse_uri

SIP_VERSION = "SIP/2.0"
_VERSION_RE = re.compile(r"SIP/\d+\.\d+\Z", re.IGNORECASE | re.ASCII)
_STATUS_RE = re.compile(r"(SIP/\d+\.\d+) (\d{3})(?: (.*))?\Z", re.IGNORECASE | re.DOTALL | re.ASCII)
# rfc1123-date (RFC 3261 §20.17): the zone must be GMT.
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT\Z"
)
_MEDIA_TYPE_RE = re.compile(
    r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+/[!#$%&'*+\-.^_`|~0-9A-Za-z]+\s*(;.*)?\Z", re.DOTALL
)
# Headers that may appear at most once (RFC 3261 §7.3.1: only comma-list headers may repeat).
_SINGLETONS = ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Content-Length", "Content-Type", "Expires")
_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")
REPLY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    600: "Busy Everywhere",
    603: "Decline",
}


class _MessageMixin:
    """Accessors shared by requests and responses; each parses its header on demand."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def vias(self) -> list[Via]:
        out: list[Via] = []
        for line in self.headers.get_all("Via"):
            out.extend(parse_via(line))
        return out

    @property
    def top_via(self) -> Via:
        line = self.headers.get("Via")
        if line is None:
            raise SipParseError("missing Via header")
        return parse_via(line)[0]

    @property
    def call_id(self) -> str:
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self.headers.get("CSeq") or "")

    @property
    def from_addr(self) -> NameAddr:
        return parse_name_addr(self.headers.get("From") or "", "From")

    @property
    def to_addr(self) -> NameAddr:
        return parse_name_addr(self.headers.get("To") or "", "To")

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, "Contact") for v in self.headers.values("Contact") if v != "*"]

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-cased (``application/sdp``)."""
        value = self.headers.get("Content-Type")
        return None if value is None else value.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class Request(_MessageMixin):
    method: str
    uri: Uri
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def with_headers(self, headers: Headers) -> Request:
        return replace(self, headers=headers)

    def serialize(self) -> bytes:
        start = f"{self.method} {self.uri.serialize()} {self.version}"
        return _serialize(start, self.headers, self.body)


@dataclass(frozen=True, slots=True)
class Response(_MessageMixin):
    status_code: int
    reason: str
    headers: Headers
    body: bytes = b""
    version: str = SIP_VERSION

    def serialize(self) -> bytes:
        return _serialize(f"{self.version} {self.status_code} {self.reason}", self.headers, self.body)


Message = Request | Response


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    lines.extend(f"{name}: {value}" for name, value in headers if name != "Content-Length")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def parse_message(data: bytes) -> Message:
    """Parse and validate one SIP message received in a UDP datagram (RFC 3261 §7, §18.3)."""
    head, body = _split_head(data)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not valid UTF-8 (byte {exc.start})") from None
    lines = re.split(r"\r?\n", text)
    start_line = lines[0]
    if not start_line:
        raise SipParseError("empty start line")
    headers, line_error = _parse_header_lines(lines[1:])
    reply = tuple((n, v) for n, v in headers if n in REPLY_HEADERS)
    if start_line[:4].upper() == "SIP/":
        if line_error is not None:
            raise SipParseError(line_error)
        return _parse_response(start_line, headers, body)
    method = start_line.split(" ", 1)[0]
    try:
        if line_error is not None:
            raise SipParseError(line_error)
        return _parse_request(start_line, headers, body)
    except SipParseError as exc:
        raise SipParseError(
            exc.message,
            status_code=exc.status_code,
            reply_headers=reply,
            method=method if is_token(method) else None,
        ) from None


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    crlf = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data.rstrip(b"\r\n"), b""


def _parse_header_lines(lines: list[str]) -> tuple[Headers, str | None]:
    """Unfolded header lines, and the first framing error (kept so a 400 can still be addressed)."""
    unfolded: list[str] = []
    error: str | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not unfolded:
                error = error or "continuation line before the first header"
                continue
            # RFC 3261 §7.3.1: a folded line is equivalent to one SP.
            unfolded[-1] = unfolded[-1].rstrip(" \t") + " " + line.strip(" \t")
        else:
            unfolded.append(line)
    items: list[tuple[str, str]] = []
    for line in unfolded:
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not is_token(name):
            error = error or f"malformed header line {line[:60]!r}"
            continue
        items.append((canonical_name(name), value.strip(" \t")))
    return Headers(tuple(items)), error


def _parse_request(start_line: str, headers: Headers, body: bytes) -> Request:
    parts = start_line.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError(
            "malformed request line: expected 'METHOD SP Request-URI SP SIP/2.0' with single spaces"
        )
    method, raw_uri, version = parts
    if not is_token(method):
        raise SipParseError(f"method {method!r} is not a token")
    if not _VERSION_RE.match(version):
        raise SipParseError(f"malformed SIP version {version!r} in the request line")
    try:
        uri = parse_uri(raw_uri)
    except SipParseError as exc:
        raise SipParseError(f"invalid Request-URI: {exc.message}") from None
    if isinstance(uri, SipUri) and uri.headers is not None:
        raise SipParseError("Request-URI must not contain headers ('?')")
    _validate_headers(headers)
    if version.upper() != SIP_VERSION:
        raise SipParseError(f"SIP version {version} is not supported (only SIP/2.0)", status_code=505)
    cseq = parse_cseq(headers.get("CSeq") or "")
    if cseq.method != method:
        raise SipParseError(f"CSeq method {cseq.method} does not match the request method {method}")
    return Request(
        method=method, uri=uri, headers=headers, body=_frame_body(headers, body), version=SIP_VERSION
    )


def _parse_response(start_line: str, headers: Headers, body: bytes) -> Response:
    match = _STATUS_RE.match(start_line)
    if match is None:
        raise SipParseError(f"malformed status line {start_line[:60]!r}")
    version, code, reason = match.group(1), match.group(2), match.group(3) or ""
    status = int(code)
    if not 100 <= status <= 699:
        raise SipParseError(f"status code {status} is outside 100-699")
    _validate_headers(headers)
    return Response(
        status_code=status,
        reason=reason,
        headers=headers,
        body=_frame_body(headers, body),
        version=version.upper(),
    )


def _validate_headers(headers: Headers) -> None:
    for name in _SINGLETONS:
        if headers.count(name) > 1:
            raise SipParseError(f"more than one {name} header")
    for name in _MANDATORY:
        if name not in headers:
            raise SipParseError(f"missing {name} header")
    for line in headers.get_all("Via"):
        parse_via(line)
    parse_name_addr(headers.get("From") or "", "From")
    parse_name_addr(headers.get("To") or "", "To")
    call_id = headers.get("Call-ID") or ""
    if not call_id or any(ch.isspace() for ch in call_id):
        raise SipParseError(f"invalid Call-ID {call_id!r}")
    parse_cseq(headers.get("CSeq") or "")
    max_forwards = headers.get("Max-Forwards")
    if max_forwards is not None and (not is_digits(max_forwards) or int(max_forwards) > 255):
        raise SipParseError(f"Max-Forwards {max_forwards!r} is not a number from 0 to 255")
    for name in ("Contact", "Route", "Record-Route"):
        for element in headers.values(name):
            if name == "Contact" and element == "*":
                continue
            parse_name_addr(element, name)
    expires = headers.get("Expires")
    if expires is not None and (not is_digits(expires) or int(expires) >= 2**32):
        raise SipParseError(f"Expires {expires[:20]!r} is not a number of seconds below 2**32")
    date = headers.get("Date")
    if date is not None and not _DATE_RE.match(date):
        raise SipParseError(f"Date {date!r} is not an RFC 1123 date in GMT")
    content_type = headers.get("Content-Type")
    if content_type is not None and not _MEDIA_TYPE_RE.match(content_type):
        raise SipParseError(f"malformed Content-Type {content_type!r}")
    for name in ("Require", "Supported", "Proxy-Require", "Allow"):
        for element in headers.values(name):
            if not is_token(element):
                raise SipParseError(f"{name} element {element!r} is not a token")


def _frame_body(headers: Headers, body: bytes) -> bytes:
    length = headers.get("Content-Length")
    if length is None:
        # Over UDP the body runs to the end of the datagram (RFC 3261 §18.3).
        return body
    if not is_digits(length):
        raise SipParseError(f"Content-Length {length!r} is not a non-negative number")
    size = int(length)
    if size > len(body):
        raise SipParseError(f"Content-Length {size} is larger than the {len(body)} body bytes received")
    # Octets past Content-Length are discarded (RFC 3261 §18.3).
    return body[:size]


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6: Via, From, To (+tag), Call-ID, CSeq copied
    (and Record-Route for dialog-creating INVITE responses, §12.1.1)."""
    items: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "To" and to_tag is not None and status_code > 100:
            to = parse_name_addr(value, "To")
            if to.tag is None:
                value = f"{value};tag={to_tag}"
        if name in REPLY_HEADERS:
            items.append((name, value))
        elif name == "Record-Route" and 100 < status_code < 300 and request.method == "INVITE":
            # §12.1.1: a dialog-creating response carries the request's Record-Route, in order
            items.append((name, value))
    headers = Headers(tuple(items)).plus(*extra)
    return Response(
        status_code=status_code,
        reason=reason if reason is not None else REASON_PHRASES.get(status_code, "Unknown"),
        headers=headers,
        body=body,
    )


def make_raw_response(
    reply_headers: tuple[tuple[str, str], ...],
    status_code: int,
    reason: str,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    """A response to a request that failed validation, from its raw Via/From/To/Call-ID/CSeq lines."""
    headers = Headers(reply_headers).plus(*extra)
    return Response(status_code=status_code, reason=reason, headers=headers).serialize()


def split_list(value: str | None) -> list[str]:
    return [] if value is None else split_commas(value)


def parse_request_uri(text: str) -> Uri:
    return parse_uri(text)
