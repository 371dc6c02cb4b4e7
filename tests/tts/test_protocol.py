"""The PromptSynthesizer protocol, the same checks for every engine (Piper and espeak-ng for real,
SpeechKit against the local fake server)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.tts.fake_speechkit import FakeBehaviour, start_fake
from voicebot.tts import EspeakSynthesizer, PromptSynthesizer
from voicebot.tts.piper import load_piper
from voicebot.tts.speechkit import SpeechKitSynthesizer, SpeechKitTtsSettings

pytestmark = [
    pytest.mark.adapter,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup)"),
]


@pytest.fixture(params=["piper", "espeak", "speechkit"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[tuple[PromptSynthesizer, str]]:
    if request.param == "piper":
        piper = load_piper()
        yield piper, "en_US-joe-medium"
        piper.close()
    elif request.param == "espeak":
        yield EspeakSynthesizer(), "en-us"
    else:
        server, target = await start_fake(EspeakSynthesizer(), FakeBehaviour())
        synth = SpeechKitSynthesizer(SpeechKitTtsSettings(target=target, api_key="k"))
        yield synth, "alena"
        await synth.aclose()
        await server.stop(grace=None)


async def test_speech_as_8khz_16bit_mono(engine: tuple[PromptSynthesizer, str]) -> None:
    synth, voice = engine
    audio = await synth.synthesize("Please hold while I transfer your call.", voice=voice)
    assert audio.sample_rate_hz == 8000
    assert len(audio.pcm) % 2 == 0
    assert 1.0 < audio.duration_s < 6.0
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
    assert float(np.sqrt(np.mean(samples**2))) > 300
    # Longer text, longer speech: the engine really said the text.
    longer = await synth.synthesize(
        "Please hold while I transfer your call. An agent will be with you shortly.", voice=voice
    )
    assert longer.duration_s > audio.duration_s * 1.4


async def test_empty_text_is_no_audio_and_the_engine_id_is_stable(
    engine: tuple[PromptSynthesizer, str],
) -> None:
    synth, voice = engine
    assert (await synth.synthesize(" \n", voice=voice)).pcm == b""
    assert synth.engine_id and synth.engine_id == synth.engine_id
