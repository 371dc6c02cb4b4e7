"""G.711 bit-exactness against an independent reference written here from the G.711 segment tables.

The reference follows the ITU-T G.711 segment/mantissa construction (as in the classic public-domain
Sun g711.c description): mu-law on 14-bit magnitudes with bias 33, A-law on 13-bit magnitudes. It does
not call audioop, so the check is not audioop against itself.
"""

from __future__ import annotations

import struct

import pytest

from voicebot.media import g711

pytestmark = pytest.mark.unit

_ULAW_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEGMENT_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for index, end in enumerate(ends):
        if value <= end:
            return index
    return len(ends)


def ref_ulaw_decode(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def ref_alaw_decode(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    segment = (a & 0x70) >> 4
    if segment == 0:
        t += 8
    else:
        t = (t + 0x108) << (segment - 1)
    return t if a & 0x80 else -t


def ref_ulaw_encode(sample: int) -> int:
    pcm = sample >> 2  # 14-bit
    mask = 0xFF
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    pcm = min(pcm, 8159) + 33
    segment = _segment(pcm, _ULAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0F)) ^ mask


def ref_alaw_encode(sample: int) -> int:
    pcm = sample >> 3  # 13-bit
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    segment = _segment(pcm, _ALAW_SEGMENT_ENDS)
    if segment >= 8:
        return 0x7F ^ mask
    shift = 1 if segment < 2 else segment
    return ((segment << 4) | ((pcm >> shift) & 0x0F)) ^ mask


ALL_CODES = bytes(range(256))
ALL_SAMPLES = list(range(-32768, 32768))
ALL_PCM = struct.pack(f"<{len(ALL_SAMPLES)}h", *ALL_SAMPLES)


def test_ulaw_decode_all_256_codes() -> None:
    decoded = struct.unpack("<256h", g711.ulaw_to_pcm16(ALL_CODES))
    assert list(decoded) == [ref_ulaw_decode(c) for c in range(256)]


def test_alaw_decode_all_256_codes() -> None:
    decoded = struct.unpack("<256h", g711.alaw_to_pcm16(ALL_CODES))
    assert list(decoded) == [ref_alaw_decode(c) for c in range(256)]


def test_ulaw_encode_all_65536_samples() -> None:
    assert list(g711.pcm16_to_ulaw(ALL_PCM)) == [ref_ulaw_encode(s) for s in ALL_SAMPLES]


def test_alaw_encode_all_65536_samples() -> None:
    assert list(g711.pcm16_to_alaw(ALL_PCM)) == [ref_alaw_encode(s) for s in ALL_SAMPLES]


def test_known_anchor_values() -> None:
    # Sanity anchors of the reference itself, from the G.711 tables: mu-law 0xFF and A-law 0xD5 are
    # the smallest positive steps, mu-law 0x00 / A-law 0x2A the largest negative.
    assert ref_ulaw_decode(0xFF) == 0
    assert ref_ulaw_decode(0x00) == -32124
    assert ref_alaw_decode(0xD5) == 8
    assert ref_alaw_decode(0x2A) == -32256


@pytest.mark.parametrize("codec", [g711.ULAW, g711.ALAW])
def test_codec_objects_round_trip(codec: g711.G711Codec) -> None:
    encoded = codec.encode(ALL_PCM)
    assert codec.decode(encoded) == (g711.ulaw_to_pcm16(encoded) if codec is g711.ULAW
                                     else g711.alaw_to_pcm16(encoded))
    silence = codec.decode(codec.silence(4))
    assert max(abs(s) for s in struct.unpack("<4h", silence)) <= 8


def test_ulaw_fixed_points_except_negative_zero() -> None:
    # mu-law has two zeros (0xFF and 0x7F); both encode back to 0xFF.
    again = g711.pcm16_to_ulaw(g711.ulaw_to_pcm16(ALL_CODES))
    assert [c for c in range(256) if again[c] != c] == [0x7F]


def test_alaw_decode_points_are_fixed_points() -> None:
    assert g711.pcm16_to_alaw(g711.alaw_to_pcm16(ALL_CODES)) == ALL_CODES


def test_payload_type_lookup() -> None:
    assert g711.codec_for_payload_type(0) is g711.ULAW
    assert g711.codec_for_payload_type(8) is g711.ALAW
    assert g711.codec_for_payload_type(18) is None
