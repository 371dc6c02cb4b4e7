"""Minimal libpcap reader and writer for RTP test fixtures.

:func:`read_udp` yields the UDP datagrams of a classic pcap file (micro- or nanosecond, either byte
order; Ethernet with optional 802.1Q tags, Linux cooked capture, raw IP or BSD loopback; IPv4 and
IPv6), which is enough to replay sipp's shipped ``g711a.pcap`` and ``dtmf_2833_*.pcap``.
:func:`write_rtp_pcap` writes 16-bit 8 kHz PCM as 20 ms G.711 RTP packets (continuous sequence
numbers and timestamps, marker on the first) in an Ethernet/IPv4/UDP pcap that sipp's
``play_pcap_audio`` action can send.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from voicebot.media.frames import BYTES_PER_FRAME, split_frames
from voicebot.media.g711 import codec_for_payload_type
from voicebot.rtp.packet import serialize_rtp

_MAGIC_US = 0xA1B2C3D4
_MAGIC_NS = 0xA1B23C4D
LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL = 0, 1, 101, 113
Address = tuple[str, int]


class PcapFormatError(ValueError):
    """The file is not a classic pcap file this reader understands; the message says why."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    time_s: float
    src: Address
    dst: Address
    payload: bytes


def read_udp(path: str | Path) -> Iterator[UdpDatagram]:
    """Every UDP datagram in a pcap file, in file order; other packets are skipped."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise PcapFormatError(f"{path}: {len(data)} bytes is too short for a pcap global header")
    for order in ("<", ">"):
        (magic,) = struct.unpack_from(order + "I", data)
        if magic in (_MAGIC_US, _MAGIC_NS):
            break
    else:
        raise PcapFormatError(f"{path}: not a classic pcap file (pcapng is not supported)")
    divisor = 1e9 if magic == _MAGIC_NS else 1e6
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    offset = 24
    while offset + 16 <= len(data):
        seconds, fraction, captured, _ = record.unpack_from(data, offset)
        offset += 16
        frame = data[offset : offset + captured]
        offset += captured
        datagram = _udp_from_frame(frame, linktype, seconds + fraction / divisor)
        if datagram is not None:
            yield datagram


def _udp_from_frame(frame: bytes, linktype: int, time_s: float) -> UdpDatagram | None:
    if linktype == LINKTYPE_ETHERNET:
        pos, ethertype = 14, struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
        while ethertype in (0x8100, 0x88A8) and len(frame) >= pos + 4:  # 802.1Q / 802.1ad tags
            ethertype = struct.unpack_from("!H", frame, pos + 2)[0]
            pos += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        pos, ethertype = 16, struct.unpack_from("!H", frame, 14)[0] if len(frame) >= 16 else 0
    elif linktype == LINKTYPE_RAW:
        pos, ethertype = 0, {4: 0x0800, 6: 0x86DD}.get(frame[0] >> 4 if frame else 0, 0)
    elif linktype == LINKTYPE_NULL:
        pos, ethertype = 4, {4: 0x0800, 6: 0x86DD}.get(frame[4] >> 4 if len(frame) > 4 else 0, 0)
    else:
        raise PcapFormatError(f"link type {linktype} is not supported (Ethernet, SLL, raw IP, loopback)")
    if ethertype == 0x0800 and len(frame) >= pos + 20:
        header_len = (frame[pos] & 0x0F) * 4
        if frame[pos + 9] != 17:
            return None
        src_ip = str(ipaddress.IPv4Address(frame[pos + 12 : pos + 16]))
        dst_ip = str(ipaddress.IPv4Address(frame[pos + 16 : pos + 20]))
        pos += header_len
    elif ethertype == 0x86DD and len(frame) >= pos + 40:
        if frame[pos + 6] != 17:
            return None  # extension headers before UDP are not followed
        src_ip = str(ipaddress.IPv6Address(frame[pos + 8 : pos + 24]))
        dst_ip = str(ipaddress.IPv6Address(frame[pos + 24 : pos + 40]))
        pos += 40
    else:
        return None
    if len(frame) < pos + 8:
        return None
    src_port, dst_port, length = struct.unpack_from("!HHH", frame, pos)
    payload = frame[pos + 8 : pos + max(length, 8)]
    return UdpDatagram(time_s, (src_ip, src_port), (dst_ip, dst_port), payload)


def _ipv4_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_udp(path: str | Path, datagrams: Iterable[UdpDatagram]) -> None:
    """Write IPv4 UDP datagrams as an Ethernet pcap (UDP checksum 0 = not computed, RFC 768)."""
    out = [struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    for ident, d in enumerate(datagrams):
        udp = struct.pack("!HHHH", d.src[1], d.dst[1], 8 + len(d.payload), 0) + d.payload
        ip = bytearray(struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0,
            ipaddress.IPv4Address(d.src[0]).packed, ipaddress.IPv4Address(d.dst[0]).packed,
        ))
        ip[10:12] = struct.pack("!H", _ipv4_checksum(bytes(ip)))
        frame = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(ip) + udp
        seconds = int(d.time_s)
        micros = round((d.time_s - seconds) * 1e6)
        out.append(struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame)
    Path(path).write_bytes(b"".join(out))


def rtp_from_pcm(pcm16: bytes, *, payload_type: int = 0, ssrc: int = 0x5EED0001, sequence_number: int = 1000,
                 timestamp: int = 160_000, ptime_ms: int = 20) -> list[bytes]:
    """16-bit 8 kHz PCM -> G.711 RTP packets of ``ptime_ms`` (tail padded with silence)."""
    codec = codec_for_payload_type(payload_type)
    if codec is None:
        raise ValueError(f"payload_type must be 0 (PCMU) or 8 (PCMA), got {payload_type}")
    if ptime_ms % 20 or ptime_ms <= 0:
        raise ValueError(f"ptime_ms must be a positive multiple of 20, got {ptime_ms}")
    per_packet = BYTES_PER_FRAME * ptime_ms // 20
    if per_packet == BYTES_PER_FRAME:
        chunks = split_frames(pcm16)
    else:
        chunks = [pcm16[i : i + per_packet].ljust(per_packet, b"\x00")
                  for i in range(0, len(pcm16), per_packet)]
    samples_per_packet = per_packet // 2
    return [
        serialize_rtp(
            payload_type, (sequence_number + index) & 0xFFFF,
            (timestamp + index * samples_per_packet) & 0xFFFFFFFF, ssrc, codec.encode(chunk),
            marker=index == 0,
        )
        for index, chunk in enumerate(chunks)
    ]


def write_rtp_pcap(path: str | Path, pcm16: bytes, *, payload_type: int = 0, ptime_ms: int = 20,
                   src: Address = ("127.0.0.1", 6000), dst: Address = ("127.0.0.1", 7000),
                   ssrc: int = 0x5EED0001) -> int:
    """Write PCM as paced G.711 RTP in a pcap for sipp ``play_pcap_audio``; returns the packet count."""
    packets = rtp_from_pcm(pcm16, payload_type=payload_type, ssrc=ssrc, ptime_ms=ptime_ms)
    write_udp(path, (UdpDatagram(i * ptime_ms / 1000, src, dst, p) for i, p in enumerate(packets)))
    return len(packets)
