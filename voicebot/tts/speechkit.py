"""SpeechKit TTS v3 client: ``speechkit.tts.v3.Synthesizer/UtteranceSynthesis`` as a prompt synthesizer.

One unary-request, server-streaming call per prompt asks for raw LINEAR16 PCM at 8 kHz (the phone
rate, so nothing is resampled here) and joins the streamed chunks. Endpoint, TLS and API key are
configured the way recognition is (:class:`voicebot.stt.client.ClientSettings`): ``host:port``,
``tls`` with optional PEM roots, and ``authorization: Api-Key <key>`` call metadata; the key comes
from ``VOICEBOT_TTS_API_KEY`` or else the recognizer's key, so one SpeechKit key serves both.

Every call has a deadline (``timeout_s``). A gRPC error or a missed deadline raises
:class:`~voicebot.tts.errors.SynthesisError` (``retryable`` for UNAVAILABLE, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED); the voice router (:mod:`voicebot.tts.voices`) then logs it and says the prompt
with the local voice instead. The channel is opened on first use, on the running event loop.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebot.tts.base import PROMPT_SAMPLE_RATE_HZ, PcmAudio
from voicebot.tts.errors import SynthesisError

API_KEY_ENV = "VOICEBOT_TTS_API_KEY"
DEFAULT_TIMEOUT_S = 10.0
METHOD_PATH = "/speechkit.tts.v3.Synthesizer/UtteranceSynthesis"
_RETRYABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"})
# A prompt is seconds long; 10 minutes of 8 kHz PCM is a broken server, not a prompt.
MAX_AUDIO_BYTES = 600 * PROMPT_SAMPLE_RATE_HZ * 2


@dataclass(frozen=True, slots=True)
class SpeechKitTtsSettings:
    """Where and how to reach SpeechKit TTS v3."""

    target: str  # host:port, e.g. tts.api.cloud.yandex.net:443
    tls: bool = False
    ca_file: Path | None = None  # PEM roots; None = system roots (with tls)
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S  # deadline of one prompt's whole synthesis
    speed: float | None = None  # SpeechKit's speed hint (1.0 = normal); None = server default

    @classmethod
    def resolve(
        cls,
        target: str,
        *,
        tls: bool = False,
        ca_file: Path | None = None,
        recognizer_api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
    ) -> SpeechKitTtsSettings:
        """Settings with the key from ``VOICEBOT_TTS_API_KEY``, else the recognizer's key."""
        environ = os.environ if env is None else env
        api_key = environ.get(API_KEY_ENV) or recognizer_api_key
        if timeout_s <= 0:
            raise SynthesisError(f"SpeechKit TTS timeout_s must be > 0, not {timeout_s}")
        return cls(target=target, tls=tls, ca_file=ca_file, api_key=api_key, timeout_s=timeout_s)


def open_tts_channel(settings: SpeechKitTtsSettings) -> Any:
    """A ``grpc.aio`` channel to the synthesizer (same options style as the recognizer's)."""
    import grpc
    import grpc.aio

    options = [
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    if not settings.tls:
        return grpc.aio.insecure_channel(settings.target, options=options)
    roots = settings.ca_file.read_bytes() if settings.ca_file is not None else None
    return grpc.aio.secure_channel(settings.target, grpc.ssl_channel_credentials(roots), options=options)


class SpeechKitSynthesizer:
    """:class:`~voicebot.tts.base.PromptSynthesizer` over SpeechKit TTS v3 (``voice`` = speaker name)."""

    def __init__(self, settings: SpeechKitTtsSettings) -> None:
        self.settings = settings
        self._channel: Any = None
        self._stub: Any = None
        speed = "default" if settings.speed is None else f"{settings.speed:g}"
        self._engine_id = f"speechkit-tts/v3/{settings.target}/{PROMPT_SAMPLE_RATE_HZ}hz/speed{speed}"

    @property
    def engine_id(self) -> str:
        return self._engine_id

    def _request(self, text: str, voice: str) -> Any:
        from voicebot.tts._proto import tts_pb2 as pb

        hints = [pb.Hints(voice=voice)]
        if self.settings.speed is not None:
            hints.append(pb.Hints(speed=self.settings.speed))
        return pb.UtteranceSynthesisRequest(
            text=text,
            hints=hints,
            output_audio_spec=pb.AudioFormatOptions(
                raw_audio=pb.RawAudio(audio_encoding=pb.RawAudio.LINEAR16_PCM,
                                      sample_rate_hertz=PROMPT_SAMPLE_RATE_HZ)),
        )

    def _metadata(self) -> list[tuple[str, str]]:
        metadata = [("x-client-request-id", str(uuid.uuid4()))]
        if self.settings.api_key:
            metadata.append(("authorization", f"Api-Key {self.settings.api_key}"))
        return metadata

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        import grpc.aio

        if not text.strip():
            return PcmAudio(b"")
        if self._stub is None:
            from voicebot.tts._proto import tts_service_pb2_grpc as pb_grpc

            self._channel = open_tts_channel(self.settings)
            self._stub = pb_grpc.SynthesizerStub(self._channel)  # type: ignore[no-untyped-call]  # no .pyi
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                call = self._stub.UtteranceSynthesis(
                    self._request(text, voice), metadata=self._metadata(), timeout=self.settings.timeout_s
                )
                async for response in call:
                    data = response.audio_chunk.data
                    size += len(data)
                    if size > MAX_AUDIO_BYTES:
                        call.cancel()
                        raise SynthesisError(
                            f"SpeechKit TTS sent more than {MAX_AUDIO_BYTES} bytes for {len(text)} characters"
                        )
                    chunks.append(data)
        except TimeoutError:
            raise SynthesisError(
                f"SpeechKit TTS at {self.settings.target} did not finish within {self.settings.timeout_s} s",
                retryable=True,
            ) from None
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            raise SynthesisError(
                f"SpeechKit TTS at {self.settings.target} failed with {code}: {exc.details()}",
                retryable=code in _RETRYABLE_CODES,
            ) from None
        pcm = b"".join(chunks)
        if len(pcm) % 2:
            pcm = pcm[:-1]
        return PcmAudio(pcm)

    async def aclose(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
