"""A local fake of SpeechKit TTS v3, built from the same protos, on 127.0.0.1 port 0.

It answers ``UtteranceSynthesis`` with real speech (espeak-ng rendered at 8 kHz, streamed in 100 ms
chunks) so the client, the router and the bench handle audio a listener can score; it records the
call metadata and requests it saw; ``fail_with`` makes it abort with a gRPC status and ``delay_s``
makes it stall before answering (to exercise deadlines).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from voicebot.tts._proto import tts_pb2 as pb
from voicebot.tts._proto import tts_service_pb2_grpc as pb_grpc
from voicebot.tts.base import PromptSynthesizer

CHUNK_BYTES = 1600  # 100 ms of 8 kHz 16-bit mono


@dataclass
class FakeBehaviour:
    fail_with: grpc.StatusCode | None = None
    delay_s: float = 0.0
    required_api_key: str | None = None
    metadata: list[dict[str, str]] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)


class FakeSynthesizer(pb_grpc.SynthesizerServicer):  # type: ignore[misc]
    def __init__(self, voice: PromptSynthesizer, behaviour: FakeBehaviour) -> None:
        self._voice = voice
        self.behaviour = behaviour

    async def UtteranceSynthesis(
        self, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        b = self.behaviour
        b.metadata.append({k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)})
        b.requests.append(request)
        wanted = None if b.required_api_key is None else f"Api-Key {b.required_api_key}"
        if wanted is not None and b.metadata[-1].get("authorization") != wanted:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key")
        if b.fail_with is not None:
            await context.abort(b.fail_with, "fake failure")
        if b.delay_s:
            await asyncio.sleep(b.delay_s)
        raw = request.output_audio_spec.raw_audio
        if raw.audio_encoding != pb.RawAudio.LINEAR16_PCM or raw.sample_rate_hertz != 8000:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "fake serves LINEAR16_PCM at 8000 Hz only")
        audio = await self._voice.synthesize(request.text, voice="en-us")
        for start in range(0, len(audio.pcm), CHUNK_BYTES):
            chunk = pb.AudioChunk(data=audio.pcm[start:start + CHUNK_BYTES])
            yield pb.UtteranceSynthesisResponse(audio_chunk=chunk)


async def start_fake(voice: PromptSynthesizer, behaviour: FakeBehaviour) -> tuple[grpc.aio.Server, str]:
    """Start the fake on 127.0.0.1 port 0; returns the server and its ``host:port``."""
    server = grpc.aio.server()
    pb_grpc.add_SynthesizerServicer_to_server(FakeSynthesizer(voice, behaviour), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"
