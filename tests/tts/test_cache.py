"""The disk cache key: engine, voice, text and parameters; old or broken entries are re-rendered."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from voicebot.tts import CachingSynthesizer, EspeakSynthesizer
from voicebot.tts.cache import cache_key

BASE = ("piper/1.8.0/en_US-joe-medium/58afce0321b8d9c4/lsdefault/v0.9/text1", "en_US-joe-medium", "Hello.")


@pytest.mark.unit
@pytest.mark.parametrize("changed", [
    ("piper/1.8.0/en_US-joe-medium/0000000000000000/lsdefault/v0.9/text1", BASE[1], BASE[2]),  # model hash
    ("piper/1.8.0/en_US-joe-medium/58afce0321b8d9c4/ls1.2/v0.9/text1", BASE[1], BASE[2]),  # rate
    ("piper/1.8.0/en_US-joe-medium/58afce0321b8d9c4/lsdefault/v0.9/text2", BASE[1], BASE[2]),  # text rules
    ("piper/1.9.0/en_US-joe-medium/58afce0321b8d9c4/lsdefault/v0.9/text1", BASE[1], BASE[2]),  # version
    (BASE[0], "en_US-amy-low", BASE[2]),  # voice
    (BASE[0], BASE[1], "Hello!"),  # text
])
def test_every_part_of_the_key_changes_it(changed: tuple[str, str, str]) -> None:
    assert cache_key(*changed) != cache_key(*BASE)


@pytest.mark.unit
def test_sample_rate_is_part_of_the_key_and_the_key_is_stable() -> None:
    assert cache_key(*BASE, sample_rate_hz=16000) != cache_key(*BASE)
    assert cache_key(*BASE) == cache_key(*BASE)
    # Not the key format of the first cache (engine, voice, text): its files are never read again.
    old = hashlib.sha256(json.dumps(list(BASE)).encode("utf-8")).hexdigest()
    assert cache_key(*BASE) != old


needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@needs_espeak
@pytest.mark.adapter
async def test_entries_of_the_old_key_format_are_re_rendered_not_served(tmp_path: Path) -> None:
    synth = EspeakSynthesizer()
    old_engine_id = synth.engine_id.rsplit("/", 1)[0]  # the engine id before the normalizer version
    old_key = hashlib.sha256(json.dumps([old_engine_id, "en-us", "Hi."]).encode("utf-8")).hexdigest()
    (tmp_path / f"{old_key}.pcm").write_bytes(b"\x01\x00" * 800)
    cache = CachingSynthesizer(synth, tmp_path)
    audio = await cache.synthesize("Hi.", voice="en-us")
    assert (cache.hits, cache.misses) == (0, 1)
    assert audio.pcm != b"\x01\x00" * 800


@needs_espeak
@pytest.mark.adapter
async def test_a_truncated_entry_is_a_miss_and_is_rewritten(tmp_path: Path) -> None:
    synth = EspeakSynthesizer()
    cache = CachingSynthesizer(synth, tmp_path)
    good = await cache.synthesize("Hi.", voice="en-us")
    path = cache.path_for("Hi.", "en-us")
    path.write_bytes(good.pcm[:-1])  # half a sample: a torn write
    again = CachingSynthesizer(synth, tmp_path)
    assert (await again.synthesize("Hi.", voice="en-us")).pcm == good.pcm
    assert again.misses == 1 and path.read_bytes() == good.pcm
