"""Voice specs, and the router's espeak-ng fallback with real engines."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import structlog

from voicebot.tts import (
    DEFAULT_VOICE_SPEC,
    EspeakSynthesizer,
    VoiceSpec,
    VoiceSpecError,
    make_synthesizer,
    parse_voice_spec,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

JOE = VoiceSpec("piper", "en_US-joe-medium")


@pytest.mark.unit
@pytest.mark.parametrize(("spec", "parsed"), [
    ("piper:en_US-joe-medium", JOE),
    ("espeak:en-us", VoiceSpec("espeak", "en-us")),
    ("speechkit:alena", VoiceSpec("speechkit", "alena")),
    (" Espeak : de ", VoiceSpec("espeak", "de")),
    ("espeak:en-us+f3", VoiceSpec("espeak", "en-us+f3")),
    # bare language tags (dialplans before engines existed): English means the default voice
    ("en-us", JOE), ("EN_US", JOE), ("en", JOE), ("", JOE), ("default", JOE),
    ("de", VoiceSpec("espeak", "de")), ("en-gb", VoiceSpec("espeak", "en-gb")),
])
def test_parse_voice_spec(spec: str, parsed: VoiceSpec) -> None:
    assert parse_voice_spec(spec) == parsed
    assert parse_voice_spec(str(parsed)) == parsed  # round trip


@pytest.mark.unit
def test_a_bare_english_tag_follows_the_configured_default() -> None:
    espeak = VoiceSpec("espeak", "en-us")
    assert parse_voice_spec("en-us", default=espeak) == espeak
    assert parse_voice_spec("piper:en_US-joe-medium", default=espeak) == JOE
    assert parse_voice_spec(DEFAULT_VOICE_SPEC) == JOE


@pytest.mark.unit
@pytest.mark.parametrize(("spec", "message"), [
    ("festival:kal",
     "voice spec 'festival:kal' names unknown engine 'festival'; use one of piper, espeak, speechkit"),
    ("piper:", "voice spec 'piper:' has no voice after 'piper':"),
    ("piper: joe medium", "voice spec 'piper: joe medium': voice name 'joe medium' may only contain letters, "
                          "digits and _.+-"),
    ("espeak:../../etc", "voice spec 'espeak:../../etc': voice name '../../etc' may only contain"),
    ("two words", "voice spec 'two words' is not engine:voice (engines: piper, espeak, speechkit) nor a "
                  "language tag such as 'de'"),
])
def test_bad_voice_specs_are_exact_errors(spec: str, message: str) -> None:
    with pytest.raises(VoiceSpecError) as info:
        parse_voice_spec(spec)
    assert str(info.value).startswith(message)


@pytest.mark.unit
@pytest.mark.parametrize(("spec", "espeak_voice"), [
    (JOE, "en-us"), (VoiceSpec("piper", "de_DE-thorsten-medium"), "de-de"),
    (VoiceSpec("espeak", "fr"), "fr"), (VoiceSpec("speechkit", "alena"), None),
])
def test_fallback_voice_keeps_the_language(spec: VoiceSpec, espeak_voice: str | None) -> None:
    assert spec.espeak_fallback == espeak_voice


def _is_speech(pcm: bytes) -> bool:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return len(samples) > 4000 and float(np.sqrt(np.mean(samples**2))) > 300


@needs_espeak
@pytest.mark.adapter
async def test_default_voice_is_piper_and_espeak_specs_use_espeak(tmp_path: Path) -> None:
    router = make_synthesizer(cache_dir=tmp_path)
    piper_audio = await router.synthesize("Thank you for calling.", voice="en-us")
    espeak_audio = await router.synthesize("Thank you for calling.", voice="espeak:en-us")
    direct = await EspeakSynthesizer().synthesize("Thank you for calling.", voice="en-us")
    assert _is_speech(piper_audio.pcm) and _is_speech(espeak_audio.pcm)
    assert espeak_audio.pcm == direct.pcm  # espeak-ng is deterministic: this is its rendering
    assert piper_audio.pcm != espeak_audio.pcm
    assert router.fallbacks == 0
    # One cache per engine: each engine's rendering is stored under its own key.
    assert len(list(tmp_path.glob("*.pcm"))) == 2  # noqa: ASYNC240 (a test's tmp dir)


@needs_espeak
@pytest.mark.adapter
async def test_a_missing_voice_falls_back_to_espeak_logged_once() -> None:
    router = make_synthesizer("espeak:en-us", voices=["piper:en_US-nobody-low"])
    expected = await EspeakSynthesizer().synthesize("Your order has shipped.", voice="en-us")
    with structlog.testing.capture_logs() as logs:
        first = await router.synthesize("Your order has shipped.", voice="piper:en_US-nobody-low")
        await router.synthesize("Your order has shipped.", voice="piper:en_US-nobody-low")
    assert first.pcm == expected.pcm  # said by espeak-ng in the voice's language
    assert router.fallbacks == 2
    warnings = [e for e in logs if e["event"] == "tts.fallback"]
    assert len(warnings) == 1  # a missing voice is said once, not per prompt
    assert warnings[0]["voice"] == "piper:en_US-nobody-low" and "not installed" in warnings[0]["reason"]


@needs_espeak
@pytest.mark.adapter
async def test_speechkit_without_an_endpoint_falls_back() -> None:
    router = make_synthesizer("espeak:en-us", voices=["speechkit:alena"])
    assert not router.has_engine("speechkit")
    with structlog.testing.capture_logs() as logs:
        audio = await router.synthesize("Hello there.", voice="speechkit:alena")
    assert _is_speech(audio.pcm)
    reasons = [e["reason"] for e in logs if e["event"] == "tts.fallback"]
    assert reasons == ["no SpeechKit TTS endpoint configured"]


@needs_espeak
@pytest.mark.adapter
async def test_stream_of_a_non_streaming_voice_is_one_chunk() -> None:
    router = make_synthesizer("espeak:en-us")
    chunks = [c async for c in router.stream("One. Two.", voice="espeak:en-us")]
    whole = await router.synthesize("One. Two.", voice="espeak:en-us")
    assert [c.pcm for c in chunks] == [whole.pcm]


@needs_espeak
@pytest.mark.adapter
async def test_piper_streams_through_the_router() -> None:
    router = make_synthesizer()
    chunks = [c async for c in router.stream("Your balance is $12.50. Goodbye.", voice="en-us")]
    assert len(chunks) >= 2 and all(_is_speech(c.pcm) for c in chunks)


@pytest.mark.unit
def test_bad_default_spec_fails_at_start_up() -> None:
    with pytest.raises(VoiceSpecError, match="unknown engine 'pipr'"):
        make_synthesizer("pipr:joe")


@needs_espeak
@pytest.mark.adapter
async def test_a_stream_that_fails_before_any_audio_falls_back_whole() -> None:
    router = make_synthesizer(voices=["piper:en_US-amy-low"])
    expected = await EspeakSynthesizer().synthesize("Your code is 0420.", voice="en-us")
    with structlog.testing.capture_logs() as logs:
        chunks = [c async for c in router.stream("Your code is 0420.", voice="piper:en_US-amy-low")]
    assert [c.pcm for c in chunks] == [expected.pcm]
    assert [e["voice"] for e in logs if e["event"] == "tts.fallback"] == ["piper:en_US-amy-low"]


@needs_espeak
@pytest.mark.adapter
async def test_espeak_reads_english_through_the_normalizer_and_other_languages_as_written() -> None:
    espeak = EspeakSynthesizer()
    money = await espeak.synthesize("That is $5.", voice="en-us")
    spelled = await espeak.synthesize("That is five dollars.", voice="en-us")
    assert money.pcm == spelled.pcm  # espeak-ng is deterministic: the same words were said
    router = make_synthesizer("espeak:en-us")
    german = await router.synthesize("Es ist 14:30.", voice="de")
    as_written = await EspeakSynthesizer(normalize_text=False).synthesize("Es ist 14:30.", voice="de")
    assert german.pcm == as_written.pcm
