"""RFC 3264 offer/answer corners and RFC 4566 parse details beyond tests/sip/test_sdp.py.

ptime precedence and bounds, every direction attribute at media and session level, several m=
lines (rejected with port 0, unsupported transport, no usable codec), telephone-event rules, and
the answer's mirrored m-lines.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.sip.errors import SdpNegotiationError, SdpParseError
from voicebot.sip.sdp import (
    MediaDescription,
    Origin,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)

pytestmark = pytest.mark.unit

HEAD = "v=0\r\no=peer 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\n"


def sdp(*lines: str, head: str = HEAD) -> bytes:
    return (head + "".join(f"{line}\r\n" for line in lines)).encode()


# --- ptime -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("session_ptime", "media_ptime", "expected_ms"),
    [
        (None, None, 20),
        (None, "30", 30),
        ("40", None, 40),
        ("40", "30", 30),  # media level wins over session level
        (None, "10", 10),  # lower bound
        (None, "60", 60),  # upper bound
        (None, "9", 20),  # out of range: our default
        (None, "61", 20),
        (None, "abc", 20),
        (None, "20.5", 20),
        (None, "", 20),
        (None, " 30", 30),
    ],
)
def test_ptime_precedence_and_bounds(
    session_ptime: str | None, media_ptime: str | None, expected_ms: int
) -> None:
    lines = []
    if session_ptime is not None:
        lines.append(f"a=ptime:{session_ptime}")
    lines.append("m=audio 4000 RTP/AVP 0")
    if media_ptime is not None:
        lines.append(f"a=ptime:{media_ptime}")
    assert negotiate(parse_sdp(sdp(*lines))).ptime_ms == expected_ms


def test_default_ptime_is_configurable() -> None:
    assert negotiate(parse_sdp(sdp("m=audio 4000 RTP/AVP 0")), default_ptime_ms=30).ptime_ms == 30


# --- directions (RFC 3264 §6.1) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "ours", "on_hold"),
    [
        ("sendrecv", "sendrecv", False),
        ("sendonly", "recvonly", True),
        ("recvonly", "sendonly", False),
        ("inactive", "inactive", True),
    ],
)
def test_direction_at_media_and_session_level(offered: str, ours: str, on_hold: bool) -> None:
    media_level = negotiate(parse_sdp(sdp("m=audio 4000 RTP/AVP 0", f"a={offered}")))
    session_level = negotiate(parse_sdp(sdp(f"a={offered}", "m=audio 4000 RTP/AVP 0")))
    for result in (media_level, session_level):
        assert result.direction == ours
        assert result.on_hold is on_hold


def test_media_direction_overrides_session_direction() -> None:
    result = negotiate(parse_sdp(sdp("a=inactive", "m=audio 4000 RTP/AVP 0", "a=sendrecv")))
    assert result.direction == "sendrecv"
    assert not result.on_hold


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_rfc2543_hold_address_is_on_hold_whatever_the_direction(host: str) -> None:
    kind = "IP6" if ":" in host else "IP4"
    result = negotiate(parse_sdp(sdp("m=audio 4000 RTP/AVP 0", f"c=IN {kind} {host}")))
    assert result.remote_rtp_host == host
    assert result.direction == "sendrecv"
    assert result.on_hold


@pytest.mark.parametrize(
    ("offered", "answered"),
    [("sendrecv", "sendrecv"), ("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive")],
)
def test_answer_carries_the_complementary_direction(offered: str, answered: str) -> None:
    offer = parse_sdp(sdp("m=audio 4000 RTP/AVP 0", f"a={offered}"))
    answer = build_answer(offer, negotiate(offer), local_host="192.0.2.9", local_port=40000, session_id=1)
    assert answer.media[0].attribute(answered) == ""
    others = {"sendrecv", "sendonly", "recvonly", "inactive"} - {answered}
    assert all(answer.media[0].attribute(d) is None for d in others)


def test_answer_direction_can_be_forced_by_the_application() -> None:
    offer = parse_sdp(sdp("m=audio 4000 RTP/AVP 0"))
    answer = build_answer(
        offer, negotiate(offer), local_host="192.0.2.9", local_port=40000, session_id=1, direction="sendonly"
    )
    assert answer.media[0].attribute("sendonly") == ""
    assert answer.media[0].attribute("sendrecv") is None


# --- several m= lines -----------------------------------------------------------------------------


def test_rejected_audio_stream_with_port_zero_is_skipped() -> None:
    offer = parse_sdp(sdp("m=audio 0 RTP/AVP 0", "m=audio 5000 RTP/AVP 8"))
    result = negotiate(offer)
    assert (result.media_index, result.remote_rtp_port, result.codec) == (1, 5000, "PCMA")
    answer = build_answer(offer, result, local_host="192.0.2.9", local_port=40000, session_id=3)
    assert [(m.media, m.port, m.formats) for m in answer.media] == [
        ("audio", 0, ("0",)),
        ("audio", 40000, ("8",)),
    ]


@pytest.mark.parametrize("proto", ["RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udp"])
def test_streams_with_other_transports_are_skipped(proto: str) -> None:
    offer = parse_sdp(sdp(f"m=audio 4000 {proto} 0", "m=audio 5000 RTP/AVP 0"))
    assert negotiate(offer).media_index == 1


def test_transport_name_is_compared_case_insensitively() -> None:
    assert negotiate(parse_sdp(sdp("m=audio 4000 rtp/avp 0"))).remote_rtp_port == 4000


def test_stream_without_usable_codec_falls_through_to_the_next_audio_stream() -> None:
    offer = parse_sdp(
        sdp(
            "m=video 6000 RTP/AVP 31",
            "m=audio 4000 RTP/AVP 18",
            "a=rtpmap:18 G729/8000",
            "m=audio 5000 RTP/AVP 0",
            "c=IN IP4 203.0.113.5",
        )
    )
    result = negotiate(offer)
    assert (result.media_index, result.remote_rtp_host, result.remote_rtp_port) == (2, "203.0.113.5", 5000)
    answer = build_answer(offer, result, local_host="192.0.2.9", local_port=40000, session_id=3)
    # RFC 3264 §6: as many m-lines as offered, in order, unused ones with port 0 and their proto
    assert [(m.media, m.port, m.proto, m.formats) for m in answer.media] == [
        ("video", 0, "RTP/AVP", ("31",)),
        ("audio", 0, "RTP/AVP", ("18",)),
        ("audio", 40000, "RTP/AVP", ("0",)),
    ]


def test_all_streams_rejected_is_a_negotiation_error_naming_the_allowed_codecs() -> None:
    offer = parse_sdp(sdp("m=audio 0 RTP/AVP 0", "m=video 6000 RTP/AVP 31"))
    with pytest.raises(SdpNegotiationError) as info:
        negotiate(offer)
    assert str(info.value) == "no audio stream with a codec we support (PCMU/PCMA at 8000 Hz) in the SDP"
    with pytest.raises(SdpNegotiationError) as info:
        negotiate(parse_sdp(sdp("m=audio 4000 RTP/AVP 0")), codecs=("PCMA",))
    assert str(info.value) == "no audio stream with a codec we support (PCMA at 8000 Hz) in the SDP"


def test_no_connection_line_for_the_chosen_stream_names_its_index() -> None:
    head = "v=0\r\no=peer 1 1 IN IP4 198.51.100.1\r\ns=-\r\nt=0 0\r\n"
    offer = parse_sdp(sdp("m=audio 0 RTP/AVP 0", "c=IN IP4 1.1.1.1", "m=audio 4000 RTP/AVP 0", head=head))
    with pytest.raises(SdpParseError) as info:
        negotiate(offer)
    assert str(info.value) == "SDP audio stream 1 has no c= line at media or session level"


# --- codecs and telephone-event -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "rtpmaps", "pt", "codec"),
    [
        ("0", [], 0, "PCMU"),
        ("8", [], 8, "PCMA"),
        ("96", ["96 pcmu/8000"], 96, "PCMU"),  # dynamic PT, encoding name case-insensitive
        ("97", ["97 PCMA/8000/1"], 97, "PCMA"),  # channel count after the rate
        ("96 0", ["96 PCMU/16000"], 0, "PCMU"),  # wideband PCMU is not ours
        ("0 8", ["0 G729/8000"], 8, "PCMA"),  # an rtpmap re-labelling a static PT wins
        ("x 8", [], 8, "PCMA"),  # non-numeric formats are ignored
    ],
)
def test_codec_choice(formats: str, rtpmaps: list[str], pt: int, codec: str) -> None:
    lines = [f"m=audio 4000 RTP/AVP {formats}", *(f"a=rtpmap:{r}" for r in rtpmaps)]
    result = negotiate(parse_sdp(sdp(*lines)))
    assert (result.payload_type, result.codec) == (pt, codec)


@pytest.mark.parametrize(
    ("formats", "rtpmaps", "te_pt"),
    [
        ("0 101", ["101 telephone-event/8000"], 101),
        ("0 96", ["96 TELEPHONE-EVENT/8000"], 96),
        ("0", ["101 telephone-event/8000"], None),  # mapped but not offered in the m= line
        ("0 101", ["101 telephone-event/16000"], None),  # wrong clock rate for 8 kHz audio
        ("0", [], None),
    ],
)
def test_telephone_event_payload_type(formats: str, rtpmaps: list[str], te_pt: int | None) -> None:
    lines = [f"m=audio 4000 RTP/AVP {formats}", *(f"a=rtpmap:{r}" for r in rtpmaps)]
    offer = parse_sdp(sdp(*lines))
    result = negotiate(offer)
    assert result.telephone_event_pt == te_pt
    answer = build_answer(offer, result, local_host="192.0.2.9", local_port=40000, session_id=1)
    audio = answer.media[0]
    if te_pt is None:
        assert audio.formats == ("0",)
        assert audio.attribute("fmtp") is None
    else:
        assert audio.formats == ("0", str(te_pt))
        assert audio.attribute_values("rtpmap") == ["0 PCMU/8000", f"{te_pt} telephone-event/8000"]
        assert audio.attribute("fmtp") == f"{te_pt} 0-16"


def test_answer_echoes_negotiated_ptime_and_our_address() -> None:
    offer = parse_sdp(sdp("m=audio 4000 RTP/AVP 8", "a=ptime:30"))
    answer = build_answer(
        offer, negotiate(offer), local_host="192.0.2.9", local_port=40002, session_id=77, session_version=3
    )
    assert answer.origin == Origin("voicebot", "77", "3", "192.0.2.9")
    assert answer.connection == "192.0.2.9"
    assert answer.media[0].port == 40002
    assert answer.media[0].attribute("ptime") == "30"
    assert negotiate(parse_sdp(answer.serialize())).ptime_ms == 30


def test_offer_options() -> None:
    offer = build_offer(
        local_host="192.0.2.9",
        local_port=40000,
        session_id=5,
        codecs=("PCMA", "PCMU"),
        telephone_event_pt=None,
        ptime_ms=40,
        direction="inactive",
    )
    text = offer.serialize().decode()
    assert "m=audio 40000 RTP/AVP 8 0\r\n" in text
    assert "telephone-event" not in text
    assert "a=ptime:40\r\na=inactive\r\n" in text
    # the offer negotiates against itself: its first codec, our ptime, the mirrored direction
    result = negotiate(parse_sdp(offer.serialize()))
    assert (result.codec, result.ptime_ms, result.direction, result.telephone_event_pt) == (
        "PCMA",
        40,
        "inactive",
        None,
    )


# --- parsing details --------------------------------------------------------------------------------


def test_lf_only_line_endings_blank_lines_and_trailing_spaces_are_accepted() -> None:
    text = b"v=0\no=a 1 2 IN IP4 h\n\ns=call  \nc=IN IP4 10.0.0.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    parsed = parse_sdp(text)
    assert parsed.session_name == "call"
    assert parsed.origin == Origin("a", "1", "2", "h")
    assert parsed.media[0].port == 4000


def test_port_count_and_multicast_ttl_are_stripped() -> None:
    parsed = parse_sdp(sdp("m=audio 4000/2 RTP/AVP 0", "c=IN IP4 224.2.1.1/127/3"))
    assert parsed.media[0].port == 4000
    assert parsed.media[0].connection == "224.2.1.1"


def test_ipv6_connection_round_trips_with_ip6_address_type() -> None:
    head = "v=0\r\no=peer 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n"
    parsed = parse_sdp(sdp("m=audio 4000 RTP/AVP 0", "c=IN IP6 2001:db8::2", head=head))
    text = parsed.serialize().decode()
    assert "c=IN IP6 2001:db8::1\r\n" in text
    assert "c=IN IP6 2001:db8::2\r\n" in text
    assert parsed.origin.addrtype == "IP6"
    assert negotiate(parsed).remote_rtp_host == "2001:db8::2"


def test_unknown_media_level_lines_and_session_lines_are_kept() -> None:
    parsed = parse_sdp(sdp("i=info", "m=audio 4000 RTP/AVP 0", "b=AS:64", "a=rtcp:4001"))
    assert parsed.other == ("i=info",)
    assert parsed.media[0].other == ("b=AS:64",)
    assert parsed.media[0].attribute("rtcp") == "4001"
    assert parse_sdp(parsed.serialize()) == parsed


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"v=0\r\no=a 1 1 IN IP4 h\r\n\xff\r\n", "SDP is not valid UTF-8"),
        (b"", "SDP must start with v=0"),
        (b"v=1\r\no=a 1 1 IN IP4 h\r\n", "SDP must start with v=0"),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\nq=x\r\n", "SDP line 3: unknown session-level type 'q'"),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\nA=x\r\n", "SDP line 3 is not of the form <type>=<value>: 'A=x'"),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\nx\r\n", "SDP line 3 is not of the form <type>=<value>: 'x'"),
        (
            b"v=0\r\no=a 1 1 IN IP4 h\r\nm=audio 4000 RTP/AVP\r\n",
            "SDP line 3: m= needs media, port, proto and formats",
        ),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\nm=audio 65536 RTP/AVP 0\r\n", "SDP line 3: invalid media port '65536'"),
        (b"v=0\r\no=a 1 1 IN IP4 h\r\nm=audio -1 RTP/AVP 0\r\n", "SDP line 3: invalid media port '-1'"),
        (
            b"v=0\r\no=a 1 1 IN IP4 h\r\nc=IN IPX h\r\n",
            "SDP line 3: c= must be 'IN IP4|IP6 <address>', got 'IN IPX h'",
        ),
        (
            b"v=0\r\no=a 1 1 IN IP4 h\r\nc=ATM IP4 h\r\n",
            "SDP line 3: c= must be 'IN IP4|IP6 <address>', got 'ATM IP4 h'",
        ),
        (b"v=0\r\no=a 1 1 IN IP4 h x\r\n", "SDP line 2: o= needs 6 fields, got 7"),
    ],
)
def test_parse_rejects_with_line_number(data: bytes, error: str) -> None:
    with pytest.raises(SdpParseError) as info:
        parse_sdp(data)
    assert str(info.value) == error
    assert info.value.status_code == 400


def test_media_description_attribute_helpers() -> None:
    m = MediaDescription(
        "audio", 1, "RTP/AVP", ("0",), attributes=(("rtpmap", "0 PCMU/8000"), ("sendonly", None))
    )
    assert m.attribute("sendonly") == ""
    assert m.attribute("ptime") is None
    assert m.attribute_values("rtpmap") == ["0 PCMU/8000"]
    session = SessionDescription(Origin("a", "1", "1", "h"), attributes=(("tool", "x"),))
    assert session.attribute("tool") == "x"
    assert session.attribute("ptime") is None


def test_serialize_keeps_rfc4566_line_order() -> None:
    text = sdp("b=AS:64", "m=audio 4000 RTP/AVP 0", "c=IN IP4 10.0.0.2", "b=AS:64")
    out = parse_sdp(text).serialize().decode()
    lines = [line[0] for line in out.split("\r\n") if line]
    assert lines == ["v", "o", "s", "c", "b", "t", "m", "c", "b"]


def test_several_time_descriptions_keep_their_repeat_lines() -> None:
    # RFC 4566 §5: "t=" then its "r=" lines, once per time description; z= and k= after them all
    head = "v=0\r\no=peer 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 198.51.100.1\r\n"
    lines = ("t=3034423619 3042462419", "r=7d 1h 0 25h", "t=3042462419 3050462419", "r=1d 1h 0", "z=0 -1h")
    text = sdp(*lines, "m=audio 4000 RTP/AVP 0", head=head)
    parsed = parse_sdp(text)
    assert parsed.timing == "3034423619 3042462419"
    assert parsed.serialize() == text


@given(
    session_lines=st.permutations(
        [
            "i=about",
            "u=http://example.com/",
            "e=ops@example.com",
            "p=+1 555 0100",
            "b=CT:128",
            "r=7d 1h 0 25h",
            "z=2882844526 -1h",
            "k=prompt",
        ]
    ),
    media_lines=st.permutations(["i=voice", "b=AS:64", "k=prompt"]),
)
def test_serialize_puts_every_kept_line_type_in_rfc4566_order(
    session_lines: list[str], media_lines: list[str]
) -> None:
    # a peer may send its lines in any order (we parse leniently); what we write back is in §5's
    # order, and writing it again after parsing it changes nothing
    head = "v=0\r\no=peer 1 1 IN IP4 198.51.100.1\r\ns=-\r\n"
    text = sdp(
        *session_lines,
        "a=tool:x",
        "t=0 0",
        "c=IN IP4 198.51.100.1",
        "m=audio 4000 RTP/AVP 0",
        *media_lines,
        "a=ptime:20",
        "c=IN IP4 10.0.0.2",
        head=head,
    )
    parsed = parse_sdp(text)
    out = parsed.serialize().decode()
    kinds = "".join(line[0] for line in out.split("\r\n") if line)
    assert kinds == "vosiuepcbtrzkamicbka"
    assert parse_sdp(out.encode()).serialize().decode() == out


@given(
    codecs=st.permutations(["PCMU", "PCMA"]).flatmap(lambda p: st.integers(1, 2).map(lambda n: tuple(p[:n]))),
    te_pt=st.one_of(st.none(), st.integers(96, 127)),
    ptime_ms=st.integers(10, 60),
    direction=st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]),
    answerer_codecs=st.sampled_from([("PCMU", "PCMA"), ("PCMA", "PCMU"), ("PCMU",), ("PCMA",)]),
)
def test_offer_answer_round_trip_agrees_on_both_sides(
    codecs: tuple[str, ...],
    te_pt: int | None,
    ptime_ms: int,
    direction: str,
    answerer_codecs: tuple[str, ...],
) -> None:
    offer = build_offer(
        local_host="192.0.2.1",
        local_port=30000,
        session_id=1,
        codecs=codecs,
        telephone_event_pt=te_pt,
        ptime_ms=ptime_ms,
        direction=direction,
    )
    try:
        at_answerer = negotiate(parse_sdp(offer.serialize()), codecs=answerer_codecs)
    except SdpNegotiationError:
        assert not set(codecs) & set(answerer_codecs)
        return
    # the answerer takes the offerer's most preferred codec that it allows (RFC 3264 §6.1)
    assert at_answerer.codec == next(c for c in codecs if c in answerer_codecs)
    answer = build_answer(offer, at_answerer, local_host="192.0.2.2", local_port=40000, session_id=2)
    at_offerer = negotiate(parse_sdp(answer.serialize()))
    assert (at_offerer.codec, at_offerer.payload_type) == (at_answerer.codec, at_answerer.payload_type)
    assert at_offerer.telephone_event_pt == at_answerer.telephone_event_pt == te_pt
    assert at_offerer.ptime_ms == at_answerer.ptime_ms == ptime_ms
    assert (at_offerer.remote_rtp_host, at_offerer.remote_rtp_port) == ("192.0.2.2", 40000)
    assert (at_answerer.remote_rtp_host, at_answerer.remote_rtp_port) == ("192.0.2.1", 30000)
    # directions complement twice: the offerer ends up with the direction it offered
    assert at_offerer.direction == direction
