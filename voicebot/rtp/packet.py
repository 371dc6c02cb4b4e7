"""RTP and RTCP packet parsing and serialization (RFC 3550 §5.1, §6.4; RFC 5761 §4 demultiplexing).

:meth:`RtpPacket.parse` validates the fixed header (version 2), the CSRC list, the header extension
(RFC 3550 §5.3.1, skipped over and kept opaque) and the padding (the last octet counts the padding
octets including itself and must fit inside the packet). Every failure raises
:class:`~voicebot.rtp.errors.RtpPacketError` with an exact message naming the field.
:func:`is_rtcp` tells RTCP from RTP on a shared port the way RFC 5761 §4 does (second octet 192-223);
:meth:`RtcpPacket.parse` reads just enough of an RTCP compound packet (its first header) to log it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from voicebot.rtp.errors import RtpPacketError

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")

# RFC 3550 §12.1 RTCP packet types SR, RR, SDES, BYE, APP.
RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP = 200, 201, 202, 203, 204
RTCP_PACKET_TYPES = frozenset({RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_BYE, RTCP_APP})


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet. ``padding_size`` is the number of padding octets (0 = no P bit)."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding_size: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram; raises :class:`RtpPacketError` with the reason."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpPacketError(f"RTP packet too short: {size} bytes, the fixed header is 12")
        first, second, sequence_number, timestamp, ssrc = _HEADER.unpack_from(data)
        if first == 0x80:
            # Fast path for the common case: version 2, no padding, extension or CSRCs.
            return cls(second & 0x7F, sequence_number, timestamp, ssrc, bytes(data[RTP_HEADER_SIZE:]),
                       bool(second & 0x80))
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpPacketError(f"RTP version must be 2, got {version}")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F
        marker = bool(second & 0x80)
        payload_type = second & 0x7F
        offset = RTP_HEADER_SIZE
        csrc_end = offset + 4 * csrc_count
        if csrc_end > size:
            raise RtpPacketError(
                f"RTP CSRC list of {csrc_count} entries needs {4 * csrc_count} bytes, "
                f"{size - offset} remain"
            )
        csrc = struct.unpack_from(f"!{csrc_count}I", data, offset) if csrc_count else ()
        offset = csrc_end
        extension_profile: int | None = None
        extension = b""
        if has_extension:
            # RFC 3550 §5.3.1: 16-bit profile-defined value, 16-bit length in 32-bit words.
            if offset + 4 > size:
                raise RtpPacketError(
                    f"RTP header extension header needs 4 bytes, {size - offset} remain"
                )
            extension_profile, words = _EXT_HEADER.unpack_from(data, offset)
            offset += 4
            if offset + 4 * words > size:
                raise RtpPacketError(
                    f"RTP header extension of {words} words needs {4 * words} bytes, "
                    f"{size - offset} remain"
                )
            extension = bytes(data[offset : offset + 4 * words])
            offset += 4 * words
        end = size
        padding_size = 0
        if has_padding:
            # RFC 3550 §5.1: the last octet counts the padding including itself.
            padding_size = data[-1]
            if padding_size == 0:
                raise RtpPacketError("RTP padding length is 0; it must count at least its own octet")
            if padding_size > size - offset:
                raise RtpPacketError(
                    f"RTP padding length {padding_size} exceeds the {size - offset} bytes after the header"
                )
            end = size - padding_size
        return cls(
            payload_type=payload_type,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=marker,
            csrc=tuple(csrc),
            extension_profile=extension_profile,
            extension=extension,
            padding_size=padding_size,
        )

    def serialize(self) -> bytes:
        """The wire form; raises :class:`ValueError` for out-of-range fields (a caller bug)."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload_type {self.payload_type} is outside 0-127")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError(f"sequence_number {self.sequence_number} is outside 0-65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise ValueError(f"timestamp {self.timestamp} is outside 32 bits")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError(f"ssrc {self.ssrc} is outside 32 bits")
        if len(self.csrc) > 15:
            raise ValueError(f"at most 15 CSRCs fit in the header, got {len(self.csrc)}")
        if len(self.extension) % 4:
            raise ValueError(f"extension length {len(self.extension)} is not a multiple of 4")
        if not 0 <= self.padding_size <= 255:
            raise ValueError(f"padding_size {self.padding_size} is outside 0-255")
        has_extension = self.extension_profile is not None
        first = (
            (RTP_VERSION << 6)
            | (0x20 if self.padding_size else 0)
            | (0x10 if has_extension else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc)]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding_size:
            parts.append(bytes(self.padding_size - 1) + bytes((self.padding_size,)))
        return b"".join(parts)


def serialize_rtp(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """Fast path for the sender: a plain header (no CSRC, extension or padding) and the payload."""
    second = (0x80 if marker else 0) | payload_type
    return _HEADER.pack(0x80, second, sequence_number, timestamp, ssrc) + payload


def is_rtcp(data: bytes) -> bool:
    """True when a datagram is RTCP rather than RTP (RFC 5761 §4: second octet 192-223).

    RTP payload types 64-95 would collide with this range, which is why RFC 5761 forbids them
    when RTP and RTCP share a port.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """The first header of an RTCP compound packet (RFC 3550 §6.4): enough to recognize and log it."""

    packet_type: int
    count: int
    length_words: int
    ssrc: int

    @classmethod
    def parse(cls, data: bytes) -> RtcpPacket:
        size = len(data)
        if size < 8:
            raise RtpPacketError(f"RTCP packet too short: {size} bytes, the header is 8")
        first, packet_type, length_words, ssrc = struct.unpack_from("!BBHI", data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpPacketError(f"RTCP version must be 2, got {version}")
        if packet_type not in RTCP_PACKET_TYPES:
            raise RtpPacketError(f"RTCP packet type {packet_type} is not one of 200-204")
        if 4 * (length_words + 1) > size:
            raise RtpPacketError(
                f"RTCP length field says {4 * (length_words + 1)} bytes, the datagram has {size}"
            )
        return cls(packet_type=packet_type, count=first & 0x1F, length_words=length_words, ssrc=ssrc)
