"""SpeechKit TTS v3 client against a local fake server built from the same protos (127.0.0.1:0)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import structlog

from tests.tts.fake_speechkit import FakeBehaviour, start_fake
from voicebot.tts import EspeakSynthesizer, SynthesisError, VoiceRouter, make_synthesizer
from voicebot.tts._proto import tts_pb2 as pb
from voicebot.tts.base import PcmAudio, PromptSynthesizer
from voicebot.tts.speechkit import API_KEY_ENV, METHOD_PATH, SpeechKitSynthesizer, SpeechKitTtsSettings

pytestmark = [
    pytest.mark.adapter,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup)"),
]

TEXT = "Your call is important to us."


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBehaviour, str]]:
    behaviour = FakeBehaviour()
    server, target = await start_fake(EspeakSynthesizer(speed_wpm=175), behaviour)
    try:
        yield behaviour, target
    finally:
        await server.stop(grace=None)


async def test_synthesizes_linear16_8khz_with_the_api_key_and_voice(fake: tuple[FakeBehaviour, str]) -> None:
    behaviour, target = fake
    behaviour.required_api_key = "sk-test-123"
    synth = SpeechKitSynthesizer(SpeechKitTtsSettings(target=target, api_key="sk-test-123"))
    try:
        audio = await synth.synthesize(TEXT, voice="alena")
    finally:
        await synth.aclose()
    served = await EspeakSynthesizer(speed_wpm=175).synthesize(TEXT, voice="en-us")
    assert audio.pcm == served.pcm and audio.sample_rate_hz == 8000  # all chunks, in order
    (metadata,) = behaviour.metadata
    assert metadata["authorization"] == "Api-Key sk-test-123"
    assert metadata["x-client-request-id"]
    (request,) = behaviour.requests
    assert request.text == TEXT
    assert [h.voice for h in request.hints if h.WhichOneof("Hint") == "voice"] == ["alena"]
    assert request.output_audio_spec.raw_audio.audio_encoding == pb.RawAudio.LINEAR16_PCM
    assert request.output_audio_spec.raw_audio.sample_rate_hertz == 8000
    assert METHOD_PATH == "/speechkit.tts.v3.Synthesizer/UtteranceSynthesis"


def test_wire_names_are_the_public_api() -> None:
    from voicebot.tts._proto import tts_service_pb2 as svc

    service = svc.DESCRIPTOR.services_by_name["Synthesizer"]
    assert service.full_name == "speechkit.tts.v3.Synthesizer"
    method = service.methods_by_name["UtteranceSynthesis"]
    assert method.server_streaming and not method.client_streaming
    fields = {f.name: f.number for f in pb.UtteranceSynthesisRequest.DESCRIPTOR.fields}
    assert fields == {"model": 1, "text": 2, "hints": 4, "output_audio_spec": 5,
                      "loudness_normalization_type": 6, "unsafe_mode": 7}
    assert {f.name: f.number for f in pb.Hints.DESCRIPTOR.fields} == {
        "voice": 1, "speed": 3, "volume": 4, "role": 5, "pitch_shift": 6}
    assert {f.name: f.number for f in pb.UtteranceSynthesisResponse.DESCRIPTOR.fields} == {
        "audio_chunk": 1, "text_chunk": 2, "start_ms": 3, "length_ms": 4}


def test_key_from_the_tts_env_else_the_recognizer_key() -> None:
    both = SpeechKitTtsSettings.resolve("h:443", recognizer_api_key="stt-key", env={API_KEY_ENV: "tts-key"})
    assert both.api_key == "tts-key"
    assert SpeechKitTtsSettings.resolve("h:443", recognizer_api_key="stt-key", env={}).api_key == "stt-key"
    assert "tts-key" not in repr(both)  # secrets stay out of logs
    with pytest.raises(SynthesisError, match=r"SpeechKit TTS timeout_s must be > 0, not 0"):
        SpeechKitTtsSettings.resolve("h:443", timeout_s=0, env={})


async def test_a_grpc_error_is_a_synthesis_error_with_the_status(fake: tuple[FakeBehaviour, str]) -> None:
    behaviour, target = fake
    behaviour.fail_with = grpc.StatusCode.UNAVAILABLE
    synth = SpeechKitSynthesizer(SpeechKitTtsSettings(target=target))
    try:
        with pytest.raises(SynthesisError, match=rf"SpeechKit TTS at {target} failed with UNAVAILABLE: "
                                                 r"fake failure") as info:
            await synth.synthesize(TEXT, voice="alena")
        assert info.value.retryable
        behaviour.fail_with = None
        behaviour.required_api_key = "right"
        with pytest.raises(SynthesisError, match=r"UNAUTHENTICATED: missing or wrong API key") as info:
            await synth.synthesize(TEXT, voice="alena")
        assert not info.value.retryable
    finally:
        await synth.aclose()


async def test_a_stalled_server_is_a_timeout(fake: tuple[FakeBehaviour, str]) -> None:
    behaviour, target = fake
    behaviour.delay_s = 5.0
    synth = SpeechKitSynthesizer(SpeechKitTtsSettings(target=target, timeout_s=0.3))
    try:
        with pytest.raises(SynthesisError, match=r"did not finish within 0.3 s|DEADLINE_EXCEEDED") as info:
            await synth.synthesize(TEXT, voice="alena")
        assert info.value.retryable
    finally:
        await synth.aclose()


@pytest.mark.parametrize("failure", ["error", "timeout", "no server"])
async def test_router_falls_back_to_the_local_voice_and_logs(
    fake: tuple[FakeBehaviour, str], failure: str, unused_tcp_port: int
) -> None:
    behaviour, target = fake
    if failure == "error":
        behaviour.fail_with = grpc.StatusCode.INTERNAL
    elif failure == "timeout":
        behaviour.delay_s = 5.0
    else:
        target = f"127.0.0.1:{unused_tcp_port}"
    settings = SpeechKitTtsSettings(target=target, timeout_s=0.5)
    router = make_synthesizer("speechkit:alena", speechkit=settings, fallback_espeak_voice="en-us")
    try:
        await _fallback_and_recover(router, behaviour, failure)
    finally:
        await router.aclose()


async def _fallback_and_recover(router: VoiceRouter, behaviour: FakeBehaviour, failure: str) -> None:
    local = await EspeakSynthesizer().synthesize(TEXT, voice="en-us")
    with structlog.testing.capture_logs() as logs:
        audio = await router.synthesize(TEXT, voice="speechkit:alena")
    assert audio.pcm == local.pcm  # the caller heard the prompt, in the local voice
    (event,) = [e for e in logs if e["event"] == "tts.fallback"]
    assert event["voice"] == "speechkit:alena" and event["fallback"] == "espeak"
    expected = {"error": "INTERNAL", "timeout": "0.5 s", "no server": "UNAVAILABLE"}[failure]
    assert expected in event["reason"] or (failure == "timeout" and "DEADLINE_EXCEEDED" in event["reason"])
    # The service recovers: the next prompt is SpeechKit's again.
    behaviour.fail_with, behaviour.delay_s = None, 0.0
    if failure != "no server":
        again = await router.synthesize("Thank you.", voice="speechkit:alena")
        served = await EspeakSynthesizer(speed_wpm=175).synthesize("Thank you.", voice="en-us")
        assert again.pcm == served.pcm


class _Memo:
    """An in-memory memo like the application's MemoSynthesizer (keyed on voice and text)."""

    def __init__(self, inner: PromptSynthesizer) -> None:
        self.inner = inner
        self.memo: dict[tuple[str, str], PcmAudio] = {}

    @property
    def engine_id(self) -> str:
        return self.inner.engine_id

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        key = (voice, text)
        if key not in self.memo:
            self.memo[key] = await self.inner.synthesize(text, voice=voice)
        return self.memo[key]


async def test_a_memo_per_engine_never_keeps_the_fallback_under_the_cloud_voice(
    fake: tuple[FakeBehaviour, str], tmp_path: Path
) -> None:
    behaviour, target = fake
    behaviour.fail_with = grpc.StatusCode.UNAVAILABLE
    router = make_synthesizer("speechkit:alena", cache_dir=tmp_path, wrap=_Memo,
                              speechkit=SpeechKitTtsSettings(target=target, timeout_s=2.0))
    try:
        during = await router.synthesize(TEXT, voice="speechkit:alena")
        behaviour.fail_with = None
        after = await router.synthesize(TEXT, voice="speechkit:alena")
    finally:
        await router.aclose()
    assert during.pcm == (await EspeakSynthesizer().synthesize(TEXT, voice="en-us")).pcm
    assert after.pcm == (await EspeakSynthesizer(speed_wpm=175).synthesize(TEXT, voice="en-us")).pcm
