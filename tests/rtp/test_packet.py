"""RTP/RTCP header parsing against golden packets and exact error messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.rtp.errors import RtpPacketError
from voicebot.rtp.packet import RtcpPacket, RtpPacket, is_rtcp, serialize_rtp

pytestmark = pytest.mark.unit

# First packet of sipp's g711a.pcap: V=2, M=1, PT=8, seq 59133, ts 240, SSRC 0xDEE0EE8F, 3 payload bytes.
GOLDEN_PCMA = bytes.fromhex("8088e6fd000000f0dee0ee8f") + b"\xd5\xd4\x55"
# V=2 P=1 X=1 CC=2, M=0 PT=0, seq 1, ts 0x01020304, SSRC 0x11223344,
# CSRCs 0xAAAAAAAA 0xBBBBBBBB, extension profile 0xBEDE with 1 word, payload "hi", 3 padding octets.
GOLDEN_FULL = (
    bytes.fromhex("b20000010102030411223344")
    + bytes.fromhex("aaaaaaaabbbbbbbb")
    + bytes.fromhex("bede0001" + "10ff0000")
    + b"hi"
    + b"\x00\x00\x03"
)


def test_parse_golden_pcma() -> None:
    packet = RtpPacket.parse(GOLDEN_PCMA)
    assert packet == RtpPacket(
        payload_type=8, sequence_number=59133, timestamp=240, ssrc=0xDEE0EE8F, payload=b"\xd5\xd4\x55",
        marker=True,
    )
    assert packet.serialize() == GOLDEN_PCMA


def test_parse_golden_with_csrc_extension_padding() -> None:
    packet = RtpPacket.parse(GOLDEN_FULL)
    assert packet.payload_type == 0
    assert not packet.marker
    assert packet.sequence_number == 1
    assert packet.timestamp == 0x01020304
    assert packet.ssrc == 0x11223344
    assert packet.csrc == (0xAAAAAAAA, 0xBBBBBBBB)
    assert packet.extension_profile == 0xBEDE
    assert packet.extension == bytes.fromhex("10ff0000")
    assert packet.payload == b"hi"
    assert packet.padding_size == 3
    assert packet.serialize() == GOLDEN_FULL


def test_fast_serializer_matches_dataclass() -> None:
    packet = RtpPacket(payload_type=0, sequence_number=65535, timestamp=0xFFFFFFFF, ssrc=7,
                       payload=b"\xff" * 160, marker=True)
    assert serialize_rtp(0, 65535, 0xFFFFFFFF, 7, b"\xff" * 160, marker=True) == packet.serialize()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "RTP packet too short: 0 bytes, the fixed header is 12"),
        (bytes.fromhex("80000001000000000000"), "RTP packet too short: 10 bytes, the fixed header is 12"),
        (bytes.fromhex("400000010000000000000001"), "RTP version must be 2, got 1"),
        (bytes.fromhex("c00000010000000000000001"), "RTP version must be 2, got 3"),
        (bytes.fromhex("820000010000000000000001") + b"\x00\x00\x00\x01",
         "RTP CSRC list of 2 entries needs 8 bytes, 4 remain"),
        (bytes.fromhex("900000010000000000000001") + b"\xbe\xde",
         "RTP header extension header needs 4 bytes, 2 remain"),
        (bytes.fromhex("900000010000000000000001") + bytes.fromhex("bede0002") + b"\x00" * 4,
         "RTP header extension of 2 words needs 8 bytes, 4 remain"),
        (bytes.fromhex("a00000010000000000000001") + b"ab\x00",
         "RTP padding length is 0; it must count at least its own octet"),
        (bytes.fromhex("a00000010000000000000001") + b"ab\x04",
         "RTP padding length 4 exceeds the 3 bytes after the header"),
    ],
)
def test_parse_errors_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(RtpPacketError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


def test_padding_filling_whole_payload_is_valid() -> None:
    packet = RtpPacket.parse(bytes.fromhex("a00000010000000000000001") + b"\x00\x00\x03")
    assert packet.payload == b""
    assert packet.padding_size == 3


def test_serialize_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="payload_type 128 is outside 0-127"):
        RtpPacket(payload_type=128, sequence_number=0, timestamp=0, ssrc=0).serialize()
    with pytest.raises(ValueError, match="sequence_number 65536"):
        RtpPacket(payload_type=0, sequence_number=65536, timestamp=0, ssrc=0).serialize()
    with pytest.raises(ValueError, match="extension length 3 is not a multiple of 4"):
        RtpPacket(payload_type=0, sequence_number=0, timestamp=0, ssrc=0, extension_profile=1,
                  extension=b"abc").serialize()


@pytest.mark.parametrize("packet_type", [200, 201, 202, 203, 204])
def test_rtcp_is_recognized(packet_type: int) -> None:
    # A receiver report with no report blocks: V=2 RC=0, length 1 (8 bytes), SSRC 0x01020304.
    data = bytes([0x80, packet_type]) + bytes.fromhex("000101020304")
    assert is_rtcp(data)
    assert RtcpPacket.parse(data) == RtcpPacket(packet_type=packet_type, count=0, length_words=1,
                                                ssrc=0x01020304)


def test_rtp_is_not_rtcp() -> None:
    assert not is_rtcp(GOLDEN_PCMA)
    assert not is_rtcp(bytes.fromhex("80e5"))  # PCMU with marker: 0x80 | 0 = 128, below 192


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("80c80001"), "RTCP packet too short: 4 bytes, the header is 8"),
        (bytes.fromhex("40c8000101020304"), "RTCP version must be 2, got 1"),
        (bytes.fromhex("80c0000101020304"), "RTCP packet type 192 is not one of 200-204"),
        (bytes.fromhex("80c9000501020304"), "RTCP length field says 24 bytes, the datagram has 8"),
    ],
)
def test_rtcp_errors_are_exact(data: bytes, message: str) -> None:
    with pytest.raises(RtpPacketError) as info:
        RtcpPacket.parse(data)
    assert str(info.value) == message


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=80))
def test_parse_raises_only_its_own_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpPacketError:
        return
    # Whatever parses re-serializes to the same bytes (padding octets other than the count are zeroed).
    again = RtpPacket.parse(packet.serialize())
    assert again == packet


@settings(max_examples=300, deadline=None)
@given(
    payload_type=st.integers(0, 127), sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF), ssrc=st.integers(0, 0xFFFFFFFF), payload=st.binary(max_size=40),
    marker=st.booleans(), csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    extension=st.one_of(st.none(), st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4])),
    padding_size=st.integers(0, 255),
)
def test_round_trip(payload_type: int, sequence_number: int, timestamp: int, ssrc: int, payload: bytes,
                    marker: bool, csrc: list[int], extension: bytes | None, padding_size: int) -> None:
    packet = RtpPacket(
        payload_type=payload_type, sequence_number=sequence_number, timestamp=timestamp, ssrc=ssrc,
        payload=payload, marker=marker, csrc=tuple(csrc),
        extension_profile=None if extension is None else 0xBEDE, extension=extension or b"",
        padding_size=padding_size,
    )
    assert RtpPacket.parse(packet.serialize()) == packet
