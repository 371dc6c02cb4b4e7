"""Prompt audio for calls: synthesis behind a disk cache and an in-memory LRU, audio files loaded
once, and pre-rendering of a dialplan's static prompts.

Theory of operation. One :class:`Prompts` per process (the app builds it with :func:`open_prompts`)
is the dialog's :class:`~voicebot.dialog.runner.PromptRenderer`: a ``PlayPrompt`` with text goes
through :class:`MemoSynthesizer` (LRU, silent edges trimmed) in front of the on-disk
:class:`~voicebot.tts.CachingSynthesizer` in front of espeak-ng; a ``PlayPrompt`` with an audio file
is served from the :class:`~voicebot.tts.AudioPromptStore` filled when the dialplan is loaded
(:meth:`Prompts.load_dialplan`). The same call pre-renders every prompt whose variables are known up
front (:func:`static_prompts`), concurrently, so no answer to a caller waits for synthesis. What
comes out is 16-bit 8 kHz mono PCM, what :meth:`~voicebot.telephony.CallLeg.play` takes.

Dynamic text (a balance, a name, a date: text no cache has) is not waited for as a whole:
:meth:`Prompts.open` returns the first sentence's audio as soon as the voice has rendered it and
the rest as an async iterator (:class:`PromptAudio`), which the call pipeline feeds into the same
prompt's RTP playout while the voice renders on (:class:`voicebot.call.streaming.StreamingRenderer`).
The chunks are shaped like a cached prompt: the leading silence trimmed, whole 20 ms frames (a
partial one would be padded with silence in the middle of a word), silence between sentences kept
and the trailing silence cut to the same length as :func:`trim_silence` leaves. Closing the
iterator stops the synthesis (barge-in, hang-up); a stream that completes is cached in full, so the
next call gets the prompt whole from the cache. Cached prompts, prompts of voices that cannot
stream (espeak-ng, SpeechKit) and audio files come whole, as :meth:`Prompts.render` returns them.
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
from collections import OrderedDict
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.ir import Dialplan, Prompt
from voicebot.media.frames import BYTES_PER_FRAME, SAMPLE_WIDTH_BYTES
from voicebot.media.onset import KEEP_LEAD_MS, KEEP_TAIL_MS, SILENCE_RMS, trim_silence
from voicebot.tts import AudioPromptStore, PcmAudio, PromptSynthesizer
from voicebot.tts.cache import CacheCounted, PromptCache
from voicebot.tts.speechkit import SpeechKitTtsSettings
from voicebot.tts.voices import DEFAULT_VOICE_SPEC, make_synthesizer


class MemoSynthesizer:
    """An in-memory LRU in front of the disk cache: a repeated prompt costs no thread hop or file
    read. Prompts are kept with their silent edges trimmed (:func:`trim_silence`)."""

    def __init__(self, inner: PromptSynthesizer, *, max_entries: int = 512) -> None:
        self._inner = inner
        self._memo: OrderedDict[tuple[str, str], PcmAudio] = OrderedDict()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    @property
    def engine_id(self) -> str:
        return self._inner.engine_id

    def cache_counts(self) -> dict[str, int]:
        """``memory``: prompts served from the LRU; the disk cache behind it says ``disk`` and
        ``miss``; without one, the LRU's misses are the engine's renders (``miss``)."""
        if isinstance(self._inner, PromptCache):
            return {"memory": self.hits, **self._inner.cache_counts()}
        return {"memory": self.hits, "miss": self.misses}

    def _remember(self, key: tuple[str, str], synthesized: PcmAudio) -> PcmAudio:
        audio = PcmAudio(trim_silence(synthesized.pcm), synthesized.sample_rate_hz)
        self._memo[key] = audio
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)
        return audio

    def _lookup(self, key: tuple[str, str]) -> PcmAudio | None:
        audio = self._memo.get(key)
        if audio is not None:
            self.hits += 1
            self._memo.move_to_end(key)
        else:
            self.misses += 1
        return audio

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        key = (voice, text)
        audio = self._lookup(key)
        if audio is not None:
            return audio
        return self._remember(key, await self._inner.synthesize(text, voice=voice))

    async def cached(self, text: str, *, voice: str) -> PcmAudio | None:
        """The prompt from the LRU or the disk cache behind it, never rendered (a streamed prompt
        asks this first); None when neither has it."""
        key = (voice, text)
        audio = self._lookup(key)
        if audio is not None or not isinstance(self._inner, PromptCache):
            return audio
        found = await self._inner.cached(text, voice=voice)
        return self._remember(key, found) if found is not None else None

    async def keep(self, text: str, *, voice: str, audio: PcmAudio) -> None:
        """A completed stream of ``text``: into the LRU (edges trimmed) and the disk cache behind."""
        self._remember((voice, text), audio)
        if isinstance(self._inner, PromptCache):
            await self._inner.keep(text, voice=voice, audio=audio)


def static_prompts(plan: Dialplan, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """(text, voice) of every text prompt whose variables all have a non-empty value up front.

    Prompts with per-call values (a balance read back) cannot be rendered ahead; everything else
    (menus, re-prompts, goodbyes) is, so an answer to the caller never waits for synthesis.
    """
    values = {**plan.variables, **variables}
    out: list[tuple[str, str]] = []
    for state in plan.states.values():
        prompts: list[Prompt | None] = [
            state.prompt,
            state.no_input.prompt if state.no_input else None,
            state.no_match.prompt if state.no_match else None,
        ]
        for prompt in prompts:
            if prompt is None or prompt.text is None:
                continue
            if all(values.get(name) for name in prompt.text.variables):
                item = (prompt.text.render(values), prompt.voice)
                if item not in out:
                    out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class PromptAudio:
    """A prompt's audio as the call plays it: ``first`` now (16-bit 8 kHz mono PCM) and, for a
    streamed prompt, ``rest``: the following chunks as the voice renders them (None: ``first`` is
    all of it). Whoever gets a ``rest`` closes it (``aclose``) unless it runs to its end."""

    first: bytes
    rest: AsyncGenerator[bytes, None] | None = None


@runtime_checkable
class StreamingSource(Protocol):
    """A synthesizer that hands over cached or unstreamable prompts whole and others as a stream
    (:class:`~voicebot.tts.VoiceRouter`)."""

    async def synthesize_or_stream(
        self, text: str, *, voice: str
    ) -> PcmAudio | AsyncGenerator[PcmAudio, None]: ...


_WINDOW_BYTES = 80 * SAMPLE_WIDTH_BYTES  # 10 ms, the window trim_silence measures in


def _loud_span(pcm16: bytes) -> tuple[int, int] | None:
    """(start of the first, end of the last) 10 ms window at or above the silence threshold."""
    loud = [i for i in range(0, len(pcm16), _WINDOW_BYTES)
            if audioop.rms(pcm16[i:i + _WINDOW_BYTES], SAMPLE_WIDTH_BYTES) >= SILENCE_RMS]
    return (loud[0], min(len(pcm16), loud[-1] + _WINDOW_BYTES)) if loud else None


async def phone_chunks(chunks: AsyncGenerator[PcmAudio, None]) -> AsyncGenerator[bytes, None]:
    """A stream's chunks shaped like a cached prompt (module docstring): leading silence trimmed
    as :func:`trim_silence` trims it, whole 20 ms frames, and the silence after the last sound
    played up to ``KEEP_TAIL_MS``, the rest held back until the next chunk shows whether it is a
    pause between sentences (played) or the end of the prompt (dropped). Closing this closes
    ``chunks``."""
    lead_bytes, tail_bytes = KEEP_LEAD_MS * 16, KEEP_TAIL_MS * 16
    held = b""  # not yet yielded: silence before the first sound; later what follows the last cut
    sound_end = 0  # in ``held``: where its last sound ends
    started = False
    async with contextlib.aclosing(chunks):
        async for chunk in chunks:
            pcm = chunk.pcm
            if not started:
                pcm = held + pcm
                span = _loud_span(pcm)
                if span is None:
                    held = pcm[-lead_bytes:]  # silence before the first sound: its end may be kept
                    continue
                pcm = pcm[max(0, span[0] - lead_bytes):]
                held, started = b"", True
            span = _loud_span(pcm)
            if span is not None:
                sound_end = len(held) + span[1]
            held += pcm
            # Up to the tail a prompt's end keeps, in whole frames: played now, so the end of the
            # prompt never waits for the stream's end (its cache write); the rest of a pause is
            # played only if more sound follows.
            cut = min(len(held), sound_end + tail_bytes) // BYTES_PER_FRAME * BYTES_PER_FRAME
            if cut > 0:
                yield held[:cut]
                held, sound_end = held[cut:], sound_end - cut
    tail = held[:max(0, min(len(held), sound_end + tail_bytes))] if started else b""
    if tail:
        yield tail


class Prompts:
    """Turns the dialog's ``PlayPrompt`` commands into 8 kHz PCM: text through the synthesizer,
    files from the store. Implements :class:`voicebot.dialog.runner.PromptRenderer`."""

    def __init__(self, synthesizer: PromptSynthesizer, store: AudioPromptStore | None = None) -> None:
        self.synthesizer = synthesizer
        self.store = store if store is not None else AudioPromptStore()

    async def load_dialplan(self, plan: Dialplan, variables: Mapping[str, str]) -> int:
        """Decode the plan's audio files once and synthesize its static prompts now (concurrently),
        so calls never wait for either. Returns how many prompts were synthesized."""
        for path in plan.audio_files():
            self.store.load(path)
        items = static_prompts(plan, variables)
        async with asyncio.TaskGroup() as group:
            for text, voice in items:
                group.create_task(self.synthesizer.synthesize(text, voice=voice))
        return len(items)

    async def aclose(self) -> None:
        """Release the synthesizers' engines (threads, model sessions)."""
        close = getattr(self.synthesizer, "aclose", None)
        if close is not None:
            await close()

    async def render(self, prompt: PlayPrompt) -> bytes:
        """16-bit 8 kHz mono PCM of ``prompt``; a :class:`~voicebot.tts.TtsError` if it cannot be."""
        if prompt.audio_file is not None:
            return self.store.get(prompt.audio_file).pcm
        audio = await self.synthesizer.synthesize(prompt.text or "", voice=prompt.voice)
        return audio.pcm

    async def open(self, prompt: PlayPrompt) -> PromptAudio:
        """``prompt``'s audio as soon as its first sentence is ready: whole when it is cached, an
        audio file or in a voice that cannot stream; else the first chunk and the rest to come
        (:class:`PromptAudio`, module docstring). A :class:`~voicebot.tts.TtsError` if the voice
        and its fallback fail before any audio; a failure after it ends the prompt early."""
        source = self.synthesizer
        if prompt.audio_file is not None or not isinstance(source, StreamingSource):
            return PromptAudio(await self.render(prompt))
        got = await source.synthesize_or_stream(prompt.text or "", voice=prompt.voice)
        if isinstance(got, PcmAudio):
            return PromptAudio(got.pcm)
        chunks = phone_chunks(got)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            return PromptAudio(b"")
        except BaseException:
            await chunks.aclose()
            raise
        return PromptAudio(first, chunks)

    def cache_counts(self) -> dict[str, int]:
        """Prompt lookups by cache result: ``memory`` (the LRU), ``disk``, ``miss`` (rendered)."""
        synth = self.synthesizer
        counts = {"memory": 0, "disk": 0, "miss": 0}
        if isinstance(synth, CacheCounted):
            for key, value in synth.cache_counts().items():
                counts[key] += value
        return counts


def open_prompts(cache_dir: Path, *, voice: str = DEFAULT_VOICE_SPEC, voices: Iterable[str] = (),
                 speechkit: SpeechKitTtsSettings | None = None) -> Prompts:
    """The production chain: the voice router (Piper joe by default, espeak-ng for other languages
    and as the fallback, SpeechKit when configured), each engine behind its disk cache in
    ``cache_dir`` (relative to the working directory) and the in-memory LRU. ``voices`` are the
    dialplans' ``voice:`` specs, loaded now rather than during a call. Blocking (loads the Piper
    model): call it off the event loop."""
    directory = cache_dir if cache_dir.is_absolute() else Path.cwd() / cache_dir
    return Prompts(make_synthesizer(voice, cache_dir=directory, voices=voices, speechkit=speechkit,
                                    wrap=MemoSynthesizer))


def plan_voices(plan: Dialplan) -> set[str]:
    """Every ``voice:`` a dialplan's prompts use."""
    voices: set[str] = set()
    for state in plan.states.values():
        for prompt in (state.prompt, state.no_input.prompt if state.no_input else None,
                       state.no_match.prompt if state.no_match else None):
            if prompt is not None:
                voices.add(prompt.voice)
    return voices


__all__ = ["MemoSynthesizer", "PromptAudio", "Prompts", "StreamingSource", "open_prompts", "phone_chunks",
           "plan_voices", "static_prompts"]
