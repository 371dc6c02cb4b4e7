"""Issue 5, client side: audio that arrives while gRPC has not taken the previous message joins it.

One message per 20 ms frame per call is what the loop must carry when all is well; after a stall
the backlog of N calls x 50 messages per second is what kept the server behind real time. Audio
queued behind an untaken message now grows that message (up to ``backlog_chunk_max_ms``), so the
backlog after a stall is a few messages per call, and nothing changes while gRPC keeps up.

The transport here is the test: it takes requests with ``StreamCore.next_request`` (what the
adapter's request iterator does when gRPC asks for the next message), or takes none (stalled).
"""

from __future__ import annotations

import pytest

from voicebot.stt.stream import (
    ClientSettings,
    HalfClose,
    OpenSession,
    Request,
    SendAudio,
    SendSilence,
    StreamCore,
    Transmit,
)

pytestmark = pytest.mark.unit

FRAME = b"\x01\x00" * 160  # 20 ms at 8 kHz


def started(**settings: int) -> tuple[StreamCore, str]:
    core = StreamCore(ClientSettings(target="127.0.0.1:1", **settings))  # type: ignore[arg-type]
    (opened,) = core.start(0.0)
    assert isinstance(opened, OpenSession)
    return core, opened.session_id


def take_all(core: StreamCore, session_id: str) -> list[Request]:
    out = []
    while (request := core.next_request(session_id)) is not None:
        out.append(request)
    return out


def test_frames_queued_behind_an_untaken_message_join_it_up_to_the_backlog_limit() -> None:
    core, sid = started(backlog_chunk_max_ms=100)
    outputs = []
    for n in range(12):  # 240 ms while gRPC takes nothing
        outputs += core.push_audio(FRAME, n * 0.02)
    sent = take_all(core, sid)
    assert all(isinstance(r, SendAudio) for r in sent)
    assert [len(r.pcm16) // 16 for r in sent if isinstance(r, SendAudio)] == [100, 100, 40]
    assert b"".join(r.pcm16 for r in sent if isinstance(r, SendAudio)) == FRAME * 12
    # The transport is woken once, when its queue stops being empty.
    assert outputs == [Transmit(sid)]


def test_a_message_gRPC_has_taken_is_never_grown() -> None:
    core, sid = started()
    assert core.push_audio(FRAME, 0.0) == [Transmit(sid)]
    first = core.next_request(sid)
    assert core.next_request(sid) is None
    assert core.push_audio(FRAME, 0.02) == [Transmit(sid)]  # gRPC keeps up: one message per frame
    second = core.next_request(sid)
    assert first == SendAudio(sid, FRAME) and second == SendAudio(sid, FRAME)


def test_silence_and_audio_do_not_merge_and_the_order_is_kept() -> None:
    core, sid = started(silence_fill_after_ms=300)
    core.push_audio(FRAME, 0.0)
    core.handle_timer(0.5)  # no audio for 0.5 s: 480 ms of silence_chunk
    core.handle_timer(0.8)  # 300 ms more, joined to the untaken silence
    core.push_audio(FRAME, 0.8)
    assert take_all(core, sid) == [SendAudio(sid, FRAME), SendSilence(sid, 780), SendAudio(sid, FRAME)]


def test_silence_joins_up_to_the_backlog_limit_too() -> None:
    core, sid = started(silence_fill_after_ms=300, backlog_chunk_max_ms=1000)
    core.handle_timer(2.5)  # a hold before any audio: 2.5 s in pieces of at most 1 s
    assert take_all(core, sid) == [SendSilence(sid, 1000), SendSilence(sid, 1000), SendSilence(sid, 500)]


def test_nothing_joins_a_half_closed_stream() -> None:
    core, sid = started()
    core.push_audio(FRAME, 0.0)
    core.end_input(0.0)
    assert core.push_audio(FRAME, 0.02) == []  # after the end of input: not part of the call
    assert take_all(core, sid) == [SendAudio(sid, FRAME), HalfClose(sid)]
