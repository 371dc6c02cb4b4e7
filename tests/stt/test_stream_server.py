"""The grpc.aio adapter against the real recognition server on 127.0.0.1:0 (no model).

The server is the real one (``start_server``: transport, auth, sessions, endpointer, pool) with the
deterministic stand-in engine and scripted endpointer of test_server.py, so these run in seconds:
the adapter carries out the core's commands on a real channel, the server's answers come back as
events on the call timeline, and session metadata (the recognition-hints extension) goes out as
call metadata next to ``authorization``, observed by a server interceptor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from tests.stt.test_server import KEY, FakeEngine, scripted_endpointer, silence, speech
from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    RecognitionError,
    RecognitionStream,
    SessionClosed,
    SessionOpened,
    StreamEvent,
)
from voicebot.stt.hints import HINTS_METADATA_KEY, hints_from_metadata, menu_hints
from voicebot.stt.server import RunningServer, ServerConfig, start_server

pytestmark = pytest.mark.adapter

FRAME_BYTES = 320  # 20 ms


class MetadataRecorder(grpc.aio.ServerInterceptor):  # type: ignore[misc,unused-ignore]
    """Records every recognition call's invocation metadata, then lets the real servicer handle it.

    Only ``RecognizeStreaming``: the client's channel also watches ``grpc.health.v1`` (pool health
    checking), which is not a session."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str | bytes]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        pairs = handler_call_details.invocation_metadata or ()
        if handler_call_details.method.endswith("/RecognizeStreaming"):
            self.seen.append({key: value for key, value in pairs})
        return await continuation(handler_call_details)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[RunningServer, MetadataRecorder]]:
    recorder = MetadataRecorder()
    real_server = grpc.aio.server

    def with_recorder(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        return real_server(*args, interceptors=[recorder], **kwargs)

    # Only to observe the metadata as the server receives it; the server itself is unchanged.
    monkeypatch.setattr(grpc.aio, "server", with_recorder)
    running = await start_server(ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({KEY})),
                                 engine=FakeEngine(), endpointer_factory=scripted_endpointer)
    monkeypatch.undo()
    try:
        yield running, recorder
    finally:
        await running.stop(0.5)


async def feed(stream: RecognitionStream, audio: bytes) -> None:
    """20 ms frames at real-time pace, like the jitter buffer during a call."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for n, i in enumerate(range(0, len(audio), FRAME_BYTES)):
        stream.push_audio(audio[i:i + FRAME_BYTES])
        await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.02 - loop.time()))


async def consume(stream: RecognitionStream, events: list[StreamEvent]) -> None:
    async for event in stream:
        events.append(event)


@pytest.mark.timeout(60)
async def test_session_metadata_rotates_between_utterances_and_reaches_the_server(
        server: tuple[RunningServer, MetadataRecorder]) -> None:
    running, recorder = server
    hints = menu_hints("Say sales or support.", ["sales", "support"])
    settings = ClientSettings(target=f"127.0.0.1:{running.port}", api_key=KEY)
    events: list[StreamEvent] = []
    async with RecognitionStream(settings, call_id="call-1") as stream:
        consumer = asyncio.create_task(consume(stream, events))
        await feed(stream, silence(300) + speech(800) + silence(1200))
        first_final_at = next((i for i, e in enumerate(events) if isinstance(e, FinalReceived)), None)
        assert first_final_at is not None, events  # the first utterance is closed before the hints
        stream.set_session_metadata(hints.to_metadata())
        await feed(stream, silence(300) + speech(800) + silence(1200))
        stream.end_input()
        await asyncio.wait_for(consumer, 20)

    opened = [e for e in events if isinstance(e, SessionOpened)]
    finals = [e for e in events if isinstance(e, FinalReceived)]
    assert [o.reason for o in opened] == ["start", "context"], events
    assert SessionClosed(opened[0].session_id, "rotated") in events
    assert [f.text for f in finals] == ["hello world", "hello world"]
    assert [f.session_id for f in finals] == [o.session_id for o in opened]
    # Both on the call timeline: the second utterance starts 2.6 s after the first.
    assert abs(finals[0].start_ms - 300) <= 100 and abs(finals[1].start_ms - 2600) <= 100, finals
    # On the wire: the request id and the key on both calls, the hints only on the second.
    assert len(recorder.seen) == 2
    first, second = recorder.seen
    assert (first["x-client-request-id"], second["x-client-request-id"]) == tuple(
        o.session_id for o in opened)
    assert first["authorization"] == second["authorization"] == f"Api-Key {KEY}"
    assert HINTS_METADATA_KEY not in first
    assert hints_from_metadata(second.items()) == hints


@pytest.mark.timeout(30)
async def test_a_wrong_key_ends_the_iteration_with_a_non_retryable_error(
        server: tuple[RunningServer, MetadataRecorder]) -> None:
    running, _recorder = server
    settings = ClientSettings(target=f"127.0.0.1:{running.port}", api_key="wrong-key")
    async with RecognitionStream(settings) as stream:
        stream.push_audio(silence(100))
        with pytest.raises(RecognitionError, match="refused the stream: UNAUTHENTICATED") as exc:
            await asyncio.wait_for(consume(stream, []), 10)
    assert exc.value.retryable is False


@pytest.mark.timeout(30)
async def test_aclose_mid_call_ends_a_waiting_consumer(
        server: tuple[RunningServer, MetadataRecorder]) -> None:
    running, _recorder = server
    settings = ClientSettings(target=f"127.0.0.1:{running.port}", api_key=KEY)
    events: list[StreamEvent] = []
    stream = RecognitionStream(settings)
    stream.start()
    consumer = asyncio.create_task(consume(stream, events))
    await feed(stream, silence(200) + speech(300))
    await stream.aclose()
    await asyncio.wait_for(consumer, 5)
    assert any(isinstance(e, SessionOpened) for e in events)
