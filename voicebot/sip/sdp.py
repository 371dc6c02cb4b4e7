"""SDP (RFC 4566) parsing and serialization, and RFC 3264 offer/answer for G.711 telephony audio.

We speak PCMU (payload type 0) and PCMA (8), plus RFC 4733 telephone-event on a dynamic payload
type with ``fmtp 0-16``. ``negotiate`` reads a remote offer (or answer) and returns a
:class:`MediaNegotiation`: where to send RTP, which payload type and codec, the telephone-event
payload type, ptime and the direction *we* should use. ``build_answer`` mirrors the offer's
m-lines as RFC 3264 §6 requires (unused ones with port 0); ``build_offer`` makes our offer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from voicebot.ascii import is_digits
from voicebot.sip.errors import SdpNegotiationError, SdpParseError

STATIC_CODECS = {0: "PCMU", 8: "PCMA"}
SUPPORTED_CODECS = ("PCMU", "PCMA")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_REVERSE = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}
# RFC 4566 §5: the order of the line types at session level and within an m= section
_SESSION_ORDER = "vosiuepcbtrzkam"
_MEDIA_ORDER = "micbka"


@dataclass(frozen=True, slots=True)
class Origin:
    username: str
    session_id: str
    session_version: str
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def serialize(self) -> str:
        version = f"{self.session_id} {self.session_version}"
        return f"{self.username} {version} {self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section: its lines other than m/c/a are kept verbatim in ``other``."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()
    other: tuple[str, ...] = ()

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def attribute_values(self, name: str) -> list[str]:
        return [v or "" for k, v in self.attributes if k == name]


@dataclass(frozen=True, slots=True)
class SessionDescription:
    origin: Origin
    session_name: str = "-"
    connection: str | None = None
    timing: str = "0 0"
    attributes: tuple[tuple[str, str | None], ...] = ()
    media: tuple[MediaDescription, ...] = ()
    other: tuple[str, ...] = field(default=())

    def attribute(self, name: str) -> str | None:
        for key, value in self.attributes:
            if key == name:
                return "" if value is None else value
        return None

    def serialize(self) -> bytes:
        addrtype = "IP6" if self.connection and ":" in self.connection else "IP4"
        lines = ["v=0", f"o={self.origin.serialize()}", f"s={self.session_name}"]
        if self.connection is not None:
            lines.append(f"c=IN {addrtype} {self.connection}")
        lines.append(f"t={self.timing}")
        lines = _in_order([*lines, *self.other], _SESSION_ORDER)
        lines += [_attr(k, v) for k, v in self.attributes]
        for m in self.media:
            media_lines = [f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}"]
            if m.connection is not None:
                mtype = "IP6" if ":" in m.connection else "IP4"
                media_lines.append(f"c=IN {mtype} {m.connection}")
            lines += _in_order([*media_lines, *m.other], _MEDIA_ORDER)
            lines += [_attr(k, v) for k, v in m.attributes]
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _in_order(lines: list[str], order: str) -> list[str]:
    """Put lines in the RFC 4566 §5 order of their types; the sort is stable, so repeated types
    (two ``b=``, ``r=`` after its ``t=``) keep the order they were parsed in. Types the order does
    not name (a peer's stray line at media level) go after the known ones, before the ``a=`` lines.
    An ``r=`` ranks with ``t=``, so each time description keeps its own repeat lines."""
    known = order.replace("a", "")

    def rank(line: str) -> int:
        index = known.find("t" if line[0] == "r" else line[0])
        return len(known) if index < 0 else index

    return sorted(lines, key=rank)


def _attr(key: str, value: str | None) -> str:
    return f"a={key}" if value is None else f"a={key}:{value}"


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body (RFC 4566 §5); raise :class:`SdpParseError` naming the bad line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SdpParseError("SDP is not valid UTF-8") from None
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpParseError("SDP must start with v=0")
    origin: Origin | None = None
    session_name = "-"
    connection: str | None = None
    timing = "0 0"
    timing_seen = False  # later time descriptions (t= and its r= lines) stay in ``other``
    attributes: list[tuple[str, str | None]] = []
    other: list[str] = []
    media: list[MediaDescription] = []
    current: MediaDescription | None = None
    for number, line in enumerate(lines[1:], start=2):
        if len(line) < 2 or line[1] != "=" or not line[0].islower():
            raise SdpParseError(f"SDP line {number} is not of the form <type>=<value>: {line[:40]!r}")
        kind, value = line[0], line[2:].rstrip()
        if kind == "m":
            current = _parse_media_line(value, number)
            media.append(current)
            continue
        if kind == "c":
            addr = _parse_connection(value, number)
            if current is None:
                connection = addr
            else:
                media[-1] = _with(media[-1], connection=addr)
            continue
        if kind == "a":
            name, colon, attr_value = value.partition(":")
            item = (name, attr_value if colon else None)
            if current is None:
                attributes.append(item)
            else:
                media[-1] = _with(media[-1], attributes=(*media[-1].attributes, item))
            continue
        if current is not None:
            media[-1] = _with(media[-1], other=(*media[-1].other, line))
            continue
        if kind == "o":
            parts = value.split()
            if len(parts) != 6:
                raise SdpParseError(f"SDP line {number}: o= needs 6 fields, got {len(parts)}")
            origin = Origin(parts[0], parts[1], parts[2], parts[5], parts[3], parts[4])
        elif kind == "s":
            session_name = value
        elif kind == "t" and not timing_seen:
            timing, timing_seen = value, True
        elif kind in _SESSION_ORDER:
            other.append(line)
        else:
            raise SdpParseError(f"SDP line {number}: unknown session-level type {kind!r}")
    if origin is None:
        raise SdpParseError("SDP has no o= line")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        timing=timing,
        attributes=tuple(attributes),
        media=tuple(media),
        other=tuple(other),
    )


def _with(
    m: MediaDescription,
    *,
    connection: str | None = None,
    attributes: tuple[tuple[str, str | None], ...] | None = None,
    other: tuple[str, ...] | None = None,
) -> MediaDescription:
    return replace(
        m,
        connection=m.connection if connection is None else connection,
        attributes=m.attributes if attributes is None else attributes,
        other=m.other if other is None else other,
    )


def _parse_media_line(value: str, number: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 4:
        raise SdpParseError(f"SDP line {number}: m= needs media, port, proto and formats")
    port_text = parts[1].split("/", 1)[0]
    if not is_digits(port_text) or int(port_text) > 65535:
        raise SdpParseError(f"SDP line {number}: invalid media port {parts[1]!r}")
    return MediaDescription(media=parts[0], port=int(port_text), proto=parts[2], formats=tuple(parts[3:]))


def _parse_connection(value: str, number: int) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpParseError(f"SDP line {number}: c= must be 'IN IP4|IP6 <address>', got {value!r}")
    return parts[2].split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class MediaNegotiation:
    """What the application needs to run RTP for a call.

    ``direction`` is *our* direction (RFC 3264 §6.1): ``recvonly`` or ``inactive`` mean we must not
    send (the peer put us on hold); ``remote_rtp_host`` is ``0.0.0.0`` for RFC 2543-style hold.
    """

    remote_rtp_host: str
    remote_rtp_port: int
    payload_type: int
    codec: str
    telephone_event_pt: int | None
    ptime_ms: int
    direction: str
    media_index: int = 0

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive") or self.remote_rtp_host in ("0.0.0.0", "::")


def _rtpmaps(m: MediaDescription) -> dict[int, str]:
    out: dict[int, str] = {}
    for value in m.attribute_values("rtpmap"):
        pt, _, encoding = value.partition(" ")
        if is_digits(pt):
            out[int(pt)] = encoding.strip()
    return out


def negotiate(
    sdp: SessionDescription, *, codecs: tuple[str, ...] = SUPPORTED_CODECS, default_ptime_ms: int = 20
) -> MediaNegotiation:
    """Pick the first audio stream and the remote's most preferred codec that we also allow."""
    for index, m in enumerate(sdp.media):
        if m.media != "audio" or m.port == 0 or m.proto.upper() != "RTP/AVP":
            continue
        rtpmaps = _rtpmaps(m)
        chosen: tuple[int, str] | None = None
        for fmt in m.formats:
            if not is_digits(fmt):
                continue
            pt = int(fmt)
            encoding = rtpmaps.get(pt)
            name = encoding.split("/")[0].upper() if encoding else STATIC_CODECS.get(pt)
            rate = encoding.split("/")[1] if encoding and "/" in encoding else "8000"
            if name in codecs and rate == "8000":
                chosen = (pt, name)
                break
        if chosen is None:
            continue
        te_pt: int | None = None
        for pt, encoding in rtpmaps.items():
            if encoding.lower().startswith("telephone-event/8000") and str(pt) in m.formats:
                te_pt = pt
                break
        ptime_text = m.attribute("ptime") or sdp.attribute("ptime")
        ptime = default_ptime_ms
        if ptime_text and is_digits(ptime_text.strip()) and 10 <= int(ptime_text) <= 60:
            ptime = int(ptime_text)
        remote_direction = _direction(m.attributes) or _direction(sdp.attributes) or "sendrecv"
        host = m.connection or sdp.connection
        if host is None:
            raise SdpParseError(f"SDP audio stream {index} has no c= line at media or session level")
        return MediaNegotiation(
            remote_rtp_host=host,
            remote_rtp_port=m.port,
            payload_type=chosen[0],
            codec=chosen[1],
            telephone_event_pt=te_pt,
            ptime_ms=ptime,
            direction=_REVERSE[remote_direction],
            media_index=index,
        )
    allowed = "/".join(codecs)
    raise SdpNegotiationError(f"no audio stream with a codec we support ({allowed} at 8000 Hz) in the SDP")


def _direction(attributes: tuple[tuple[str, str | None], ...]) -> str | None:
    for key, _ in attributes:
        if key in DIRECTIONS:
            return key
    return None


def _audio_media(
    local_port: int, payload_type: int, codec: str, te_pt: int | None, ptime_ms: int, direction: str
) -> MediaDescription:
    formats = [str(payload_type)]
    attrs: list[tuple[str, str | None]] = [("rtpmap", f"{payload_type} {codec}/8000")]
    if te_pt is not None:
        formats.append(str(te_pt))
        attrs += [("rtpmap", f"{te_pt} telephone-event/8000"), ("fmtp", f"{te_pt} 0-16")]
    attrs += [("ptime", str(ptime_ms)), (direction, None)]
    return MediaDescription("audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attrs))


def build_offer(
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    codecs: tuple[str, ...] = SUPPORTED_CODECS,
    telephone_event_pt: int | None = 101,
    ptime_ms: int = 20,
    direction: str = "sendrecv",
) -> SessionDescription:
    """Our offer: every allowed codec in preference order, then telephone-event."""
    pts = {name: pt for pt, name in STATIC_CODECS.items()}
    formats = [str(pts[c]) for c in codecs]
    attrs: list[tuple[str, str | None]] = [("rtpmap", f"{pts[c]} {c}/8000") for c in codecs]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attrs += [
            ("rtpmap", f"{telephone_event_pt} telephone-event/8000"),
            ("fmtp", f"{telephone_event_pt} 0-16"),
        ]
    attrs += [("ptime", str(ptime_ms)), (direction, None)]
    media = MediaDescription("audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attrs))
    return SessionDescription(
        origin=Origin("voicebot", str(session_id), str(session_version), local_host),
        session_name="voicebot",
        connection=local_host,
        media=(media,),
    )


def build_answer(
    offer: SessionDescription,
    negotiation: MediaNegotiation,
    *,
    local_host: str,
    local_port: int,
    session_id: int,
    session_version: int = 1,
    direction: str | None = None,
) -> SessionDescription:
    """RFC 3264 §6: one m-line per offered m-line; only the negotiated audio stream has a port."""
    media: list[MediaDescription] = []
    for index, m in enumerate(offer.media):
        if index == negotiation.media_index:
            media.append(
                _audio_media(
                    local_port,
                    negotiation.payload_type,
                    negotiation.codec,
                    negotiation.telephone_event_pt,
                    negotiation.ptime_ms,
                    direction or negotiation.direction,
                )
            )
        else:
            media.append(MediaDescription(m.media, 0, m.proto, m.formats[:1] or ("0",)))
    return SessionDescription(
        origin=Origin("voicebot", str(session_id), str(session_version), local_host),
        session_name="voicebot",
        connection=local_host,
        media=tuple(media),
    )
