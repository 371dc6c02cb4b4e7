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
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path

from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.ir import Dialplan, Prompt
from voicebot.media.onset import trim_silence
from voicebot.tts import AudioPromptStore, PcmAudio, PromptSynthesizer
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

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        key = (voice, text)
        audio = self._memo.get(key)
        if audio is not None:
            self.hits += 1
            self._memo.move_to_end(key)
            return audio
        self.misses += 1
        synthesized = await self._inner.synthesize(text, voice=voice)
        audio = PcmAudio(trim_silence(synthesized.pcm), synthesized.sample_rate_hz)
        self._memo[key] = audio
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)
        return audio


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


__all__ = ["MemoSynthesizer", "Prompts", "open_prompts", "plan_voices", "static_prompts"]
