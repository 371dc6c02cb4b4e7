"""The one RIFF/WAVE reader: whole files, headers fed in pieces, exact errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voicebot.media.wav import WavAudio, WavError, WavFormat, WavHeaderReader, parse_wav

pytestmark = pytest.mark.unit


def wav(pcm: bytes, *, rate_hz: int = 8000, tag: int = 1, channels: int = 1, bits: int = 16,
        extra_chunk: bytes = b"", data_size: int | None = None) -> bytes:
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate_hz, rate_hz * block_align, block_align, bits)
    size = len(pcm) if data_size is None else data_size
    body = b"WAVE" + extra_chunk + b"fmt " + struct.pack("<I", 16) + fmt
    body += b"data" + struct.pack("<I", size) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_whole_file_skips_unknown_chunks_with_padding() -> None:
    pcm = struct.pack("<3h", 1, -2, 3)
    odd = b"LIST" + struct.pack("<I", 3) + b"abc" + b"\x00"  # odd body, one pad byte
    assert parse_wav(wav(pcm, extra_chunk=odd, rate_hz=16000)) == WavAudio(16000, pcm)


def test_placeholder_data_size_runs_to_the_end_and_odd_tail_is_dropped() -> None:
    pcm = struct.pack("<2h", 7, 8)
    assert parse_wav(wav(pcm + b"\x01", data_size=0x7FFFF000)).pcm16 == pcm


@pytest.mark.parametrize(("data", "kind", "message"), [
    (b"RIFF", "too_short", "WAV too short for a RIFF header (4 bytes)"),
    (b"RIFX" + bytes(8), "not_riff", "not a WAV file: starts with b'RIFX', expected b'RIFF' "
     "(RIFX big-endian WAV is not supported)"),
    (b"RIFF" + bytes(4) + b"AVI ", "not_wave", "RIFF form type is b'AVI ', expected b'WAVE'"),
    (b"RIFF" + bytes(4) + b"WAVE", "no_fmt", "WAV has no 'fmt ' chunk"),
    (wav(b"")[:36], "no_data", "WAV has no 'data' chunk"),
    (b"RIFF" + bytes(4) + b"WAVEdata" + bytes(4), "data_before_fmt",
     "WAV 'data' chunk comes before the 'fmt ' chunk"),
    (b"RIFF" + bytes(4) + b"WAVEfmt \x08\x00\x00\x00" + bytes(8), "fmt_truncated",
     "WAV 'fmt ' chunk is truncated (8 bytes declared)"),
    (wav(b"", tag=3, bits=32), "unsupported", "WAV encoding is IEEE float; only 16-bit PCM is supported"),
    (wav(b"", bits=8), "unsupported", "WAV has 8-bit samples; only 16-bit PCM is supported"),
    (wav(b"", channels=2), "unsupported", "WAV has 2 channels; only mono is supported"),
])
def test_errors_are_exact(data: bytes, kind: str, message: str) -> None:
    with pytest.raises(WavError) as info:
        parse_wav(data)
    assert str(info.value) == message and info.value.kind == kind


@given(st.binary(max_size=64), st.lists(st.integers(1, 9), max_size=40))
def test_header_fed_in_any_pieces_gives_what_the_whole_file_gives(pcm: bytes, cuts: list[int]) -> None:
    data = wav(pcm, rate_hz=16000)
    reader = WavHeaderReader()
    got: tuple[WavFormat, bytes] | None = None
    pos = 0
    rest = b""
    for cut in [*cuts, len(data)]:
        piece, pos = data[pos : pos + cut], pos + cut
        if got is None:
            got = reader.feed(piece)
        else:
            rest += piece
    assert got is not None
    fmt, first = got
    assert fmt == WavFormat(1, 1, 16000, 16)
    assert first + rest == pcm


def test_reader_waits_then_bounds_what_it_buffers() -> None:
    reader = WavHeaderReader(max_header_bytes=100)
    assert reader.feed(b"RIFF" + bytes(4) + b"WAVE") is None
    assert reader.feed(b"junk" + struct.pack("<I", 200) + bytes(50)) is None
    with pytest.raises(WavError, match="no 'data' chunk in the first 100 bytes"):
        reader.feed(bytes(60))


def test_reader_close_says_what_was_missing() -> None:
    reader = WavHeaderReader()
    assert reader.feed(wav(b"")[:30]) is None
    with pytest.raises(WavError, match="'fmt ' chunk is truncated"):
        reader.close()


def test_extensible_takes_the_subformat_tag() -> None:
    guid_tail = bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 16000, 2, 16, 22, 16, 4)
    body = b"WAVEfmt " + struct.pack("<I", 40) + fmt + struct.pack("<H", 3) + guid_tail + b"data" + bytes(4)
    with pytest.raises(WavError, match="WAV encoding is IEEE float"):
        parse_wav(b"RIFF" + struct.pack("<I", len(body)) + body)
    short = b"WAVEfmt " + struct.pack("<I", 18) + fmt[:18] + b"data" + bytes(4)
    with pytest.raises(WavError, match="shorter than 40 bytes"):
        parse_wav(b"RIFF" + struct.pack("<I", len(short)) + short)
