"""On-disk prompt cache in front of any :class:`~voicebot.tts.base.PromptSynthesizer`.

The key is a SHA-256 of (engine id, voice, text, output sample rate, key format). The engine id
carries everything else that changes the audio: the engine's version, its model's SHA-256, its rate
or speed setting and the text normalizer's version (``piper/1.8.0/en_US-joe-medium/58afce03.../
ls1/v0.9/text1``, ``espeak-ng/1.51/s160/text1``). Changing any of them misses, and the old entry is
simply never read again, so a new engine or rule re-renders instead of serving stale audio.
Files are raw 16-bit 8 kHz mono PCM named ``<key>.pcm``; a file that is not whole 16-bit samples
(cut short by a full disk, say) is treated as a miss and rewritten. Concurrency: within a process, calls that
want the same prompt at the same time share one synthesis (one ``asyncio.Future`` per key); across
processes, each writer writes a temporary file in the same directory and ``os.replace``s it into
place, which is atomic on POSIX, so a reader sees either no file or a whole one.

Streamed prompts (dynamic text said sentence by sentence, :meth:`VoiceRouter.stream
<voicebot.tts.voices.VoiceRouter.stream>`) use the cache in two steps instead of one:
:meth:`CachingSynthesizer.cached` before the stream starts (a hit is played whole, a miss is counted
as one, the engine is about to render it) and :meth:`CachingSynthesizer.keep` once the stream has
completed, so the next call that says the same text gets it from here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol, runtime_checkable

from voicebot.tts.base import PROMPT_SAMPLE_RATE_HZ, PcmAudio, PromptSynthesizer


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/voicebot/tts``, falling back to ``~/.cache/voicebot/tts``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voicebot" / "tts"


CACHE_KEY_FORMAT = 2


@runtime_checkable
class CacheCounted(Protocol):
    """Anything that counts its prompt lookups by cache result (caches, the voice router, the app's
    prompts): what the ``voicebot_prompt_cache_total`` metric reads."""

    def cache_counts(self) -> dict[str, int]:
        """Lookups so far by result: ``memory``, ``disk``, ``miss`` (the keys this layer has)."""
        ...


@runtime_checkable
class PromptCache(CacheCounted, Protocol):
    """A cache layer that can be asked without synthesizing and filled from outside (a stream)."""

    async def cached(self, text: str, *, voice: str) -> PcmAudio | None:
        """The audio if this layer (or one behind it) has it; None (counted as a miss) if not."""
        ...

    async def keep(self, text: str, *, voice: str, audio: PcmAudio) -> None:
        """Remember ``audio``, rendered elsewhere (a completed stream), as what ``text`` sounds like."""
        ...


def cache_key(engine_id: str, voice: str, text: str, *, sample_rate_hz: int = PROMPT_SAMPLE_RATE_HZ) -> str:
    """The file name stem of one prompt's audio (see the module docstring for what it covers)."""
    material = [CACHE_KEY_FORMAT, engine_id, voice, text, sample_rate_hz]
    return hashlib.sha256(json.dumps(material).encode("utf-8")).hexdigest()


class CachingSynthesizer:
    """A synthesizer that remembers what ``inner`` said, on disk."""

    def __init__(self, inner: PromptSynthesizer, cache_dir: Path | None = None) -> None:
        self._inner = inner
        self.cache_dir = cache_dir if cache_dir is not None else default_cache_dir()
        self._pending: dict[str, asyncio.Future[PcmAudio]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def engine_id(self) -> str:
        return self._inner.engine_id

    def path_for(self, text: str, voice: str) -> Path:
        return self.cache_dir / f"{cache_key(self.engine_id, voice, text)}.pcm"

    def cache_counts(self) -> dict[str, int]:
        """``disk``: prompts served from the disk; ``miss``: prompts the engine had to render."""
        return {"disk": self.hits, "miss": self.misses}

    async def cached(self, text: str, *, voice: str) -> PcmAudio | None:
        """The prompt from disk (or from a synthesis of it in flight), without rendering it; None
        when it is not there, counted as a miss: the caller is about to have the engine render it."""
        key = cache_key(self.engine_id, voice, text)
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        data = await asyncio.to_thread(_read_or_none, self.cache_dir / f"{key}.pcm")
        if data is None:
            self.misses += 1
            return None
        self.hits += 1
        return PcmAudio(data)

    async def keep(self, text: str, *, voice: str, audio: PcmAudio) -> None:
        """Write ``audio`` (a completed stream of ``text``) as the prompt's cache file."""
        await asyncio.to_thread(_write_atomically, self.path_for(text, voice), audio.pcm)

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        key = cache_key(self.engine_id, voice, text)
        path = self.cache_dir / f"{key}.pcm"
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            return await asyncio.shield(pending)
        # Registered before the first await, so concurrent callers find it and wait.
        future: asyncio.Future[PcmAudio] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            cached = await asyncio.to_thread(_read_or_none, path)
            if cached is not None:
                self.hits += 1
                audio = PcmAudio(cached)
            else:
                self.misses += 1
                audio = await self._inner.synthesize(text, voice=voice)
                await asyncio.to_thread(_write_atomically, path, audio.pcm)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)
                # Mark the error retrieved: waiters get it, and no waiters is fine too.
                future.exception()
            raise
        finally:
            self._pending.pop(key, None)
        future.set_result(audio)
        return audio


def _read_or_none(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data if len(data) % 2 == 0 else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pcm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
