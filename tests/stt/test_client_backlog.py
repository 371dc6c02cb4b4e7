"""Issue 5, client side: audio that arrives while gRPC has not taken the previous message joins it.

One message per 20 ms frame per call is what the loop must carry when all is well; after a stall
the backlog of N calls x 50 messages per second is what kept the server behind real time. Audio
queued behind an untaken message now grows that message (up to ``backlog_chunk_max_ms``), so the
backlog after a stall is a few messages per call, and nothing changes while gRPC keeps up.
"""

from __future__ import annotations

import asyncio

import pytest

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.client import ClientSettings, RecognitionStream, SessionWindow, _Session

pytestmark = pytest.mark.unit

FRAME = b"\x01\x00" * 160  # 20 ms at 8 kHz


def stream_with_session(**settings: int) -> tuple[RecognitionStream, _Session]:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", **settings))  # type: ignore[arg-type]
    session = _Session("s1", SessionWindow(0), asyncio.Queue(), confirmed=True)
    stream._sessions.add(session)
    stream._active = session
    return stream, session


def queued(session: _Session) -> list[pb.StreamingRequest]:
    out = []
    while not session.requests.empty():
        item = session.requests.get_nowait()
        assert isinstance(item, pb.StreamingRequest)
        out.append(item)
    return out


async def take(stream: RecognitionStream, session: _Session) -> pb.StreamingRequest:
    """What gRPC does: take the next request from the stream's request iterator."""
    item = await anext(aiter(stream._requests(session)))
    assert isinstance(item, pb.StreamingRequest)
    return item


async def test_frames_queued_behind_an_untaken_message_join_it_up_to_the_backlog_limit() -> None:
    stream, session = stream_with_session(backlog_chunk_max_ms=100)
    for _ in range(12):  # 240 ms while gRPC takes nothing
        stream._accept_audio(FRAME)
    sent = queued(session)
    assert [len(r.chunk.data) // 16 for r in sent] == [100, 100, 40]
    assert b"".join(r.chunk.data for r in sent) == FRAME * 12
    assert session.audio_ms == 240 and session.data_bytes == 12 * len(FRAME)


async def test_a_message_gRPC_has_taken_is_never_grown() -> None:
    stream, session = stream_with_session()
    stream._accept_audio(FRAME)
    first = await take(stream, session)
    stream._accept_audio(FRAME)  # gRPC keeps up: one message per frame, as before
    second = await take(stream, session)
    assert len(first.chunk.data) == len(FRAME) and len(second.chunk.data) == len(FRAME)
    assert first is not second


async def test_silence_and_audio_do_not_merge_and_the_order_is_kept() -> None:
    stream, session = stream_with_session()
    stream._accept_audio(FRAME)
    stream._send_silence(session, 300)
    stream._send_silence(session, 200)
    stream._accept_audio(FRAME)
    kinds = [(r.WhichOneof("Event"), len(r.chunk.data) // 16 or r.silence_chunk.duration_ms)
             for r in queued(session)]
    assert kinds == [("chunk", 20), ("silence_chunk", 500), ("chunk", 20)]


async def test_nothing_joins_a_half_closed_stream() -> None:
    stream, session = stream_with_session()
    stream._accept_audio(FRAME)
    stream._half_close(session)
    assert session.unsent_tail is None
    first = session.requests.get_nowait()
    assert isinstance(first, pb.StreamingRequest) and len(first.chunk.data) == len(FRAME)
    assert session.requests.get_nowait() is None
