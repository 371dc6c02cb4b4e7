"""Issue 5: the server's idle rule must not fire because its own event loop stalled.

When many calls' speech ends at the same moment, the process that embeds the recognizer can stall
(finals queue for the workers on a loaded machine): the event loop that runs both the call-leg
client and the server is late for seconds. When it runs again the session's idle timer is overdue
and, before this fix, fired before the reader task had a turn to take the client's messages that
had arrived meanwhile: DEADLINE_EXCEEDED "idle limit" for a client that never stopped sending.
Here the loop is frozen for longer than the idle limit while a raw client is mid-stream (the
deterministic form of that starvation). tests/stt/test_simultaneous.py does the same with six real
call-leg streams and the real model.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt._proto import stt_service_pb2_grpc
from voicebot.stt.engine import Hypothesis
from voicebot.stt.server import ServerConfig, start_server
from voicebot.stt.session import SessionConfig, SessionLimits

pytestmark = pytest.mark.adapter

RATE_HZ = 8000
FRAME_MS = 20


class SilentEngine:
    """Recognizes nothing; enough for a session that only carries line noise."""

    name = "silent"
    sample_rate_hz = 16000

    def resolve_language(self, codes: Sequence[str]) -> str | None:
        return codes[0] if codes else None

    def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None, partial: bool
    ) -> Hypothesis:
        return Hypothesis("", (), 0.0, language or "en-US")


def options() -> pb.StreamingRequest:
    return pb.StreamingRequest(session_options=pb.StreamingOptions(
        recognition_model=pb.RecognitionModelOptions(
            audio_format=pb.AudioFormatOptions(raw_audio=pb.RawAudio(
                audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=RATE_HZ, audio_channel_count=1)),
            language_restriction=pb.LanguageRestrictionOptions(
                restriction_type=pb.LanguageRestrictionOptions.WHITELIST, language_code=["en-US"]),
            audio_processing_type=pb.RecognitionModelOptions.REAL_TIME)))


async def test_a_loop_stall_longer_than_the_idle_limit_does_not_close_a_sending_client() -> None:
    idle_s = 1.0
    running = await start_server(
        ServerConfig(listen="127.0.0.1:0", allow_no_auth=True, workers=1,
                     session=SessionConfig(limits=SessionLimits(idle_timeout_s=idle_s))),
        engine=SilentEngine())
    frame = pb.StreamingRequest(chunk=pb.AudioChunk(data=b"\x01\x00" * (RATE_HZ * FRAME_MS // 1000)))
    sent_frames = 0

    async def requests() -> AsyncIterator[pb.StreamingRequest]:
        nonlocal sent_frames
        yield options()
        start = time.monotonic()
        for n in range(150):  # 3 s of audio at real time
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - time.monotonic()))
            sent_frames += 1
            if n == 25:
                # The whole process is starved for longer than the idle limit (what N finals
                # queued on a loaded 2-core machine did): nobody runs, the client included.
                time.sleep(idle_s * 1.6)  # noqa: ASYNC251
            yield frame

    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = stt_service_pb2_grpc.RecognizerStub(channel)  # type: ignore[no-untyped-call]
            call = stub.RecognizeStreaming(requests())
            closed: list[str] = []
            async with asyncio.timeout(20):
                async for response in call:
                    if response.WhichOneof("Event") == "status_code" and \
                            response.status_code.code_type == pb.CLOSED:
                        closed.append(response.status_code.message)
                code = await call.code()
        assert not closed, f"the server closed a client that never stopped sending: {closed}"
        assert code == grpc.StatusCode.OK, (code, await call.details())
        assert sent_frames == 150
    finally:
        await running.stop(1.0)
