"""SDP parse/serialize and RFC 3264 offer/answer for PCMU/PCMA + telephone-event."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.errors import SdpNegotiationError, SdpParseError
from voicebot.sip.sdp import build_answer, build_offer, negotiate, parse_sdp

pytestmark = pytest.mark.unit

OFFER = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:30\r\n"
    b"m=video 51372 RTP/AVP 31\r\na=rtpmap:31 H261/90000\r\n"
)


def test_parse_and_round_trip() -> None:
    sdp = parse_sdp(OFFER)
    assert sdp.origin.username == "alice" and sdp.connection == "10.0.0.1"
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert sdp.media[0].formats == ("18", "8", "0", "101")
    assert sdp.media[0].attribute("ptime") == "30"
    assert parse_sdp(sdp.serialize()) == sdp


def test_negotiate_picks_remote_preference_we_support() -> None:
    result = negotiate(parse_sdp(OFFER))
    assert (result.remote_rtp_host, result.remote_rtp_port) == ("10.0.0.1", 49170)
    assert (result.payload_type, result.codec) == (8, "PCMA")
    assert result.telephone_event_pt == 101
    assert result.ptime_ms == 30
    assert result.direction == "sendrecv" and not result.on_hold
    only_pcmu = negotiate(parse_sdp(OFFER), codecs=("PCMU",))
    assert (only_pcmu.payload_type, only_pcmu.codec) == (0, "PCMU")


def test_media_level_connection_and_hold_forms() -> None:
    sendonly = OFFER.replace(b"a=ptime:30\r\n", b"a=ptime:30\r\nc=IN IP4 10.9.9.9\r\na=sendonly\r\n")
    result = negotiate(parse_sdp(sendonly))
    assert result.remote_rtp_host == "10.9.9.9"
    assert result.direction == "recvonly" and result.on_hold
    legacy = negotiate(parse_sdp(OFFER.replace(b"c=IN IP4 10.0.0.1", b"c=IN IP4 0.0.0.0")))
    assert legacy.on_hold and legacy.direction == "sendrecv"
    inactive = negotiate(parse_sdp(OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n")))
    assert inactive.direction == "inactive" and inactive.on_hold


def test_answer_mirrors_m_lines_and_complements_direction() -> None:
    offer = parse_sdp(OFFER.replace(b"a=ptime:30\r\n", b"a=ptime:30\r\na=sendonly\r\n"))
    result = negotiate(offer)
    answer = build_answer(offer, result, local_host="192.0.2.9", local_port=40000, session_id=7)
    again = parse_sdp(answer.serialize())
    assert len(again.media) == 2
    assert again.media[1].port == 0
    audio = again.media[0]
    assert audio.port == 40000 and audio.formats == ("8", "101")
    assert audio.attribute_values("rtpmap") == ["8 PCMA/8000", "101 telephone-event/8000"]
    assert audio.attribute("fmtp") == "101 0-16"
    assert audio.attribute("recvonly") == ""
    assert again.connection == "192.0.2.9"
    # The offerer reads our answer back to the same codec.
    back = negotiate(again)
    assert (back.payload_type, back.telephone_event_pt, back.direction) == (8, 101, "sendonly")


def test_offer_lists_codecs_and_events() -> None:
    offer = build_offer(local_host="127.0.0.1", local_port=30000, session_id=1, codecs=("PCMA", "PCMU"))
    m = parse_sdp(offer.serialize()).media[0]
    assert m.formats == ("8", "0", "101")
    assert m.attribute("sendrecv") == ""


def test_no_supported_codec_is_a_negotiation_error() -> None:
    g729 = OFFER.replace(b"RTP/AVP 18 8 0 101", b"RTP/AVP 18 101")
    with pytest.raises(SdpNegotiationError) as info:
        negotiate(parse_sdp(g729))
    assert info.value.message == "no audio stream with a codec we support (PCMU/PCMA at 8000 Hz) in the SDP"
    wideband = OFFER.replace(b"RTP/AVP 18 8 0 101", b"RTP/AVP 96").replace(
        b"a=rtpmap:18 G729/8000", b"a=rtpmap:96 PCMU/16000"
    )
    with pytest.raises(SdpNegotiationError):
        negotiate(parse_sdp(wideband))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"o=x 1 1 IN IP4 h\r\n", "SDP must start with v=0"),
        (b"v=0\r\ns=-\r\n", "SDP has no o= line"),
        (b"v=0\r\no=x 1 1 IN IP4\r\n", "SDP line 2: o= needs 6 fields, got 5"),
        (
            b"v=0\r\no=x 1 1 IN IP4 h\r\nm =video 1 RTP/AVP 0\r\n",
            "SDP line 3 is not of the form <type>=<value>: 'm =video 1 RTP/AVP 0'",
        ),
        (b"v=0\r\no=x 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n", "SDP line 3: invalid media port 'x'"),
        (
            b"v=0\r\no=x 1 1 IN IP4 h\r\nc=IN IP4\r\n",
            "SDP line 3: c= must be 'IN IP4|IP6 <address>', got 'IN IP4'",
        ),
        (
            b"v=0\r\no=x 1 1 IN IP4 h\r\nm=audio 5 RTP/AVP 0\r\n",
            "SDP audio stream 0 has no c= line at media or session level",
        ),
    ],
)
def test_parse_errors_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(SdpParseError) as info:
        negotiate(parse_sdp(data))
    assert info.value.message == message


_SDP_FRAGMENTS = [
    "v=0\r\n",
    "o=x 1 1 IN IP4 h\r\n",
    "s=-\r\n",
    "c=IN IP4 10.0.0.1\r\n",
    "t=0 0\r\n",
    "m=audio 4000 RTP/AVP ",
    "0",
    "8",
    "101",
    " ",
    "\r\n",
    "a=rtpmap:",
    "101 telephone-event/8000",
    "a=ptime:",
    "20",
    "a=sendonly\r\n",
    "c=IN IP6 ::1\r\n",
    "m=video 0 RTP/AVP 31\r\n",
    "=",
    "x",
    "\xe9",
    "a=fmtp:101 0-16\r\n",
    "65536",
    "-1",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_SDP_FRAGMENTS), max_size=40))
def test_fuzz_sdp_raises_only_its_own_errors(parts: list[str]) -> None:
    try:
        sdp = parse_sdp("".join(parts).encode())
        negotiate(sdp)
    except (SdpParseError, SdpNegotiationError) as exc:
        assert exc.message
        return
    assert parse_sdp(sdp.serialize()).serialize() == sdp.serialize()
