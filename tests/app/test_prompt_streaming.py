"""The renderer's streaming path (voicebot.prompts.Prompts.open) through the real voice router and
caches: dynamic text starts with its first sentence while the rest renders, a stream closed mid-way
stops its synthesis and caches nothing, a completed stream is cached for the next call (and the next
process), an engine error after the first sentence ends the prompt cleanly, one before it falls back
to espeak-ng, and the chunks are shaped like a cached prompt (edges trimmed, whole 20 ms frames)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.app import prompt_cache_counts
from voicebot.dialog.events import PlayPrompt
from voicebot.media.frames import BYTES_PER_FRAME
from voicebot.media.onset import trim_silence
from voicebot.prompts import MemoSynthesizer, PromptAudio, Prompts, phone_chunks
from voicebot.tts import CachingSynthesizer, PcmAudio, VoiceRouter, VoiceSpec
from voicebot.tts.errors import SynthesisError

pytestmark = pytest.mark.unit

VOICE = "piper:joe"


def tone_ms(ms: int, level: int) -> bytes:
    return np.full(8 * ms, level, dtype="<i2").tobytes()


def sentence_audio(sentence: str) -> bytes:
    """What the fake engine says for a sentence: 50 ms silence, a tone as long as the sentence
    (keyed on it), 300 ms silence; all whole 10 ms windows, like the trimmer measures."""
    return tone_ms(50, 0) + tone_ms(10 * len(sentence), 1000 + 10 * len(sentence)) + tone_ms(300, 0)


def sentences(text: str) -> list[str]:
    return [s.strip() + "." for s in text.split(".") if s.strip()]


class SentenceEngine:
    """A streaming engine: one chunk per sentence. Sentences after the first wait for ``gate``
    (the first too with ``gate_first``); ``fail_at`` raises at that sentence index."""

    def __init__(self, *, fail_at: int | None = None, gate_first: bool = False) -> None:
        self.engine_id = "sentences/1"
        self.rendered: list[str] = []
        self.gate = asyncio.Event()
        self.closed = 0
        self.fail_at = fail_at
        self.gate_first = gate_first

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        self.rendered.extend(sentences(text))
        return PcmAudio(b"".join(sentence_audio(s) for s in sentences(text)))

    async def stream(self, text: str, *, voice: str) -> AsyncGenerator[PcmAudio, None]:
        try:
            for i, sentence in enumerate(sentences(text)):
                if i > 0 or self.gate_first:
                    await self.gate.wait()
                if i == self.fail_at:
                    raise SynthesisError("the engine crashed")
                self.rendered.append(sentence)
                yield PcmAudio(sentence_audio(sentence))
        finally:
            self.closed += 1


class Espeak:
    engine_id = "espeak/1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        self.texts.append(text)
        return PcmAudio(tone_ms(20, 0) + tone_ms(200, 4000) + tone_ms(400, 0))


def prompts_over(engine: SentenceEngine, cache_dir: Path, espeak: Espeak | None = None) -> Prompts:
    """The application's chain (open_prompts) with fake engines: each engine behind its disk cache
    and the LRU, under the voice router."""
    espeak = espeak or Espeak()
    router = VoiceRouter(
        VoiceSpec("piper", "joe"),
        {"piper": MemoSynthesizer(CachingSynthesizer(engine, cache_dir)),
         "espeak": MemoSynthesizer(CachingSynthesizer(espeak, cache_dir))},
        streaming={"piper": engine, "espeak": espeak},
    )
    return Prompts(router)


def cache_files(directory: Path) -> list[Path]:
    return list(directory.glob("*.pcm"))


def play(text: str, voice: str = VOICE, seq: int = 1) -> PlayPrompt:
    return PlayPrompt(seq, text, None, voice, True)


async def drain(audio: PromptAudio) -> bytes:
    out = [audio.first]
    if audio.rest is not None:
        out += [pcm async for pcm in audio.rest]
    return b"".join(out)


TEXT = "Your balance is twelve dollars. Anything else. Goodbye."


async def test_dynamic_text_starts_with_its_first_sentence_while_the_rest_renders(tmp_path: Path) -> None:
    engine = SentenceEngine()
    audio = await prompts_over(engine, tmp_path).open(play(TEXT))
    assert audio.rest is not None
    assert engine.rendered == ["Your balance is twelve dollars."]  # the rest waits for the gate
    assert audio.first and len(audio.first) % BYTES_PER_FRAME == 0
    engine.gate.set()
    rest = [pcm async for pcm in audio.rest]
    assert engine.rendered == sentences(TEXT)
    assert all(len(pcm) % BYTES_PER_FRAME == 0 for pcm in rest[:-1])
    whole = b"".join(sentence_audio(s) for s in sentences(TEXT))
    # The stream, played one chunk after the other, is the prompt as the cache would serve it.
    assert audio.first + b"".join(rest) == trim_silence(whole)


async def test_a_completed_stream_is_cached_for_the_next_call_and_the_next_process(tmp_path: Path) -> None:
    engine = SentenceEngine()
    engine.gate.set()
    prompts = prompts_over(engine, tmp_path)
    streamed = await drain(await prompts.open(play(TEXT)))
    assert prompts.cache_counts() == {"memory": 0, "disk": 0, "miss": 1}
    again = await prompts.open(play(TEXT))
    assert again.rest is None and again.first == streamed  # whole, from memory, as played
    assert prompts.cache_counts() == {"memory": 1, "disk": 0, "miss": 1}
    assert engine.rendered == sentences(TEXT)  # rendered once
    other_engine = SentenceEngine()
    restarted = prompts_over(other_engine, tmp_path)  # a new process, the same cache directory
    from_disk = await restarted.open(play(TEXT))
    assert from_disk.rest is None and from_disk.first == streamed
    assert other_engine.rendered == [] and restarted.cache_counts() == {"memory": 0, "disk": 1, "miss": 0}
    # The metric reads the same public counts (voicebot_prompt_cache_total).
    assert prompt_cache_counts(prompts.synthesizer) == {"memory": 1, "disk": 0, "miss": 1}


async def test_closing_a_stream_mid_way_stops_its_synthesis_and_caches_nothing(tmp_path: Path) -> None:
    engine = SentenceEngine()
    prompts = prompts_over(engine, tmp_path)
    audio = await prompts.open(play(TEXT))
    assert audio.rest is not None
    await audio.rest.aclose()  # barge-in: the pipeline closes the rest
    assert engine.closed == 1
    engine.gate.set()
    await asyncio.sleep(0)
    assert engine.rendered == ["Your balance is twelve dollars."]  # nothing more was rendered
    again = await prompts.open(play(TEXT))  # not cached: streamed (and rendered) afresh
    assert again.rest is not None
    assert prompts.cache_counts()["miss"] == 2
    assert not cache_files(tmp_path)
    await again.rest.aclose()


async def test_cancelling_open_while_the_first_sentence_renders_stops_the_stream(tmp_path: Path) -> None:
    engine = SentenceEngine(gate_first=True)
    opening = asyncio.ensure_future(prompts_over(engine, tmp_path).open(play(TEXT)))
    await asyncio.sleep(0.01)
    assert not opening.done()
    opening.cancel()  # barge-in while the prompt lane renders
    with pytest.raises(asyncio.CancelledError):
        await opening
    assert engine.closed == 1 and engine.rendered == []


async def test_an_engine_error_after_the_first_sentence_ends_the_prompt_cleanly(tmp_path: Path) -> None:
    engine = SentenceEngine(fail_at=1)
    engine.gate.set()
    prompts = prompts_over(engine, tmp_path)
    with structlog.testing.capture_logs() as logs:
        played = await drain(await prompts.open(play(TEXT)))
    first_only = trim_silence(sentence_audio("Your balance is twelve dollars."))
    assert played == first_only  # what was rendered is played, the prompt ends, no exception
    failed = [e for e in logs if e["event"] == "tts.stream_failed"]
    assert len(failed) == 1 and "the engine crashed" in failed[0]["reason"]
    assert not cache_files(tmp_path)  # a cut-short prompt is never cached
    assert (await prompts.open(play(TEXT))).rest is not None


async def test_an_engine_error_before_any_audio_falls_back_to_espeak(tmp_path: Path) -> None:
    engine = SentenceEngine(fail_at=0)
    espeak = Espeak()
    with structlog.testing.capture_logs() as logs:
        played = await drain(await prompts_over(engine, tmp_path, espeak).open(play(TEXT)))
    assert espeak.texts == [TEXT]
    assert played == trim_silence(tone_ms(20, 0) + tone_ms(200, 4000) + tone_ms(400, 0))
    assert [e["voice"] for e in logs if e["event"] == "tts.fallback"] == [VOICE]


async def test_voices_that_cannot_stream_and_audio_files_come_whole(tmp_path: Path) -> None:
    engine = SentenceEngine()
    espeak = Espeak()
    prompts = prompts_over(engine, tmp_path, espeak)
    audio = await prompts.open(play("Hello there.", voice="espeak:en-us"))
    assert audio.rest is None and espeak.texts == ["Hello there."] and engine.closed == 0
    assert audio.first == await prompts.render(play("Hello there.", voice="espeak:en-us"))


async def test_a_synthesizer_without_streaming_renders_whole(tmp_path: Path) -> None:
    engine = SentenceEngine()
    prompts = Prompts(MemoSynthesizer(CachingSynthesizer(engine, tmp_path)))
    audio = await prompts.open(play(TEXT))
    assert audio.rest is None and engine.rendered == sentences(TEXT) and engine.closed == 0


async def chunks_of(parts: list[bytes]) -> AsyncGenerator[PcmAudio, None]:
    for part in parts:
        yield PcmAudio(part)


segment = st.tuples(st.integers(0, 30), st.sampled_from([0, 0, 100, 2000]))  # (10 ms windows, level)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(segment, min_size=1, max_size=6), min_size=1, max_size=5))
def test_phone_chunks_play_like_the_trimmed_whole(chunk_specs: list[list[tuple[int, int]]]) -> None:
    """However a stream is cut into chunks (of whole 10 ms windows), what plays is what the cache
    would serve for the whole prompt, in whole 20 ms frames but for the last chunk."""
    parts = [b"".join(tone_ms(10 * n, level) for n, level in spec) for spec in chunk_specs]
    whole = b"".join(parts)

    async def run() -> list[bytes]:
        return [pcm async for pcm in phone_chunks(chunks_of(parts))]

    out = asyncio.run(run())
    audible = any(n and level >= 300 for spec in chunk_specs for n, level in spec)
    expected = trim_silence(whole) if audible else b""  # nothing audible: nothing is played
    assert b"".join(out) == expected
    assert all(pcm for pcm in out) and all(len(pcm) % BYTES_PER_FRAME == 0 for pcm in out[:-1])
