"""The embedded synthesizer with the real espeak-ng, and the on-disk cache in front of it."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from voicebot.tts import CachingSynthesizer, EspeakSynthesizer, SynthesisError
from voicebot.tts.espeak import parse_streamed_wav

pytestmark = [
    pytest.mark.adapter,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup)"),
]

TEXT = "Welcome to the voice bot demo. Say balance, operator, or goodbye."


async def test_renders_8khz_16bit_non_silent_speech() -> None:
    synth = EspeakSynthesizer()
    audio = await synth.synthesize(TEXT, voice="en-us")
    assert audio.sample_rate_hz == 8000
    assert len(audio.pcm) % 2 == 0  # whole 16-bit samples
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    assert audio.peak() > 3000  # speech, not silence
    assert float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) > 300
    # Really resampled, not relabelled: as long as espeak-ng's own 22050 Hz rendering.
    proc = await asyncio.create_subprocess_exec(
        "espeak-ng", "--stdout", "-v", "en-us", "-s", "160", TEXT, stdout=asyncio.subprocess.PIPE
    )
    native, _ = await proc.communicate()
    rate_hz, pcm = parse_streamed_wav(native)
    assert rate_hz == 22050
    assert audio.duration_s == pytest.approx(len(pcm) / 2 / rate_hz, rel=0.01)
    assert 2.0 < audio.duration_s < 10.0


async def test_empty_text_is_empty_audio_and_a_bad_voice_is_a_clear_error() -> None:
    synth = EspeakSynthesizer()
    assert (await synth.synthesize("  ", voice="en-us")).pcm == b""
    with pytest.raises(SynthesisError, match=r"espeak-ng exited with 1 for voice 'xx-nope'.*does not exist"):
        await synth.synthesize("hello", voice="xx-nope")


async def test_text_starting_with_a_dash_is_spoken_not_parsed_as_an_option() -> None:
    audio = await EspeakSynthesizer().synthesize("-v is not an option here", voice="en-us")
    assert audio.peak() > 1000


async def test_cache_synthesizes_once_for_concurrent_calls_and_survives_restart(tmp_path: Path) -> None:
    inner = EspeakSynthesizer()
    cache = CachingSynthesizer(inner, tmp_path / "tts")
    results = await asyncio.gather(
        *(cache.synthesize("Your balance is ready.", voice="en-us") for _ in range(5))
    )
    assert cache.misses == 1 and cache.hits == 4
    assert len({r.pcm for r in results}) == 1
    files = list((tmp_path / "tts").glob("*.pcm"))
    assert len(files) == 1 and files[0].read_bytes() == results[0].pcm
    assert not list((tmp_path / "tts").glob(".tmp-*"))  # no half-written files left behind

    # A new process (here: a new cache object) reads the file instead of running espeak-ng.
    again = CachingSynthesizer(inner, tmp_path / "tts")
    assert (await again.synthesize("Your balance is ready.", voice="en-us")).pcm == results[0].pcm
    assert (again.hits, again.misses) == (1, 0)

    # Voice and text are part of the key.
    await again.synthesize("Your balance is ready.", voice="en-gb")
    await again.synthesize("Your balance is ready!", voice="en-us")
    assert again.misses == 2
    assert len(list((tmp_path / "tts").glob("*.pcm"))) == 3


async def test_engine_version_is_part_of_the_key(tmp_path: Path) -> None:
    synth = EspeakSynthesizer()
    assert synth.engine_id.startswith("espeak-ng/1.")
    slow = EspeakSynthesizer(speed_wpm=120)
    a = CachingSynthesizer(synth, tmp_path).path_for("hi", "en-us")
    b = CachingSynthesizer(slow, tmp_path).path_for("hi", "en-us")
    assert a != b
