"""Voice specs (``engine:voice``), the voice router with its espeak-ng fallback, and the factory.

A voice spec names an engine and one of its voices: ``piper:en_US-joe-medium``, ``espeak:en-us``,
``speechkit:alena``. It is parsed in one place, :func:`parse_voice_spec`, with exact errors. A bare
language tag without an engine (``en-us``, ``de``: what dialplans said before there was more than
one engine) keeps working: an English tag (``en``, ``en-us``) means the configured default voice
(Piper joe unless ``--voice`` says otherwise) and any other tag the espeak-ng voice of that name.

:class:`VoiceRouter` is the :class:`~voicebot.tts.base.PromptSynthesizer` the application holds.
Each call's prompt carries its voice spec as ``voice``; the router picks the engine and, when the
engine is missing (voice not installed, no SpeechKit endpoint configured) or fails (a gRPC error, a
timeout, a crash), logs ``tts.fallback`` and says the prompt with espeak-ng instead: the caller
hears a plainer voice, never silence, and the call goes on. Every engine has its own disk cache
(:class:`~voicebot.tts.cache.CachingSynthesizer`), so a fallback rendering is cached under the
espeak-ng key and never served later as if SpeechKit had said it.

Dynamic text is streamed where the engine can (Piper): :meth:`VoiceRouter.synthesize_or_stream`
returns a prompt its voice's cache already has whole, and otherwise the engine's sentence-by-sentence
stream, which is written to that cache (:class:`~voicebot.tts.cache.PromptCache`) once it completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import structlog

from voicebot.tts.base import PcmAudio, PromptSynthesizer
from voicebot.tts.cache import CacheCounted, CachingSynthesizer, PromptCache
from voicebot.tts.errors import SynthesisError, TtsError, VoiceSpecError, VoiceUnavailableError

log = structlog.get_logger(logger_name=__name__)

Engine = Literal["piper", "espeak", "speechkit"]
ENGINES: tuple[Engine, ...] = ("piper", "espeak", "speechkit")
DEFAULT_VOICE_SPEC = "piper:en_US-joe-medium"
DEFAULT_FALLBACK_ESPEAK_VOICE = "en-us"
_VOICE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_ENGLISH_TAGS = frozenset({"en", "en-us"})


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    """One voice of one engine, e.g. ``VoiceSpec("piper", "en_US-joe-medium")``."""

    engine: Engine
    voice: str

    def __str__(self) -> str:
        return f"{self.engine}:{self.voice}"

    @property
    def espeak_fallback(self) -> str | None:
        """The espeak-ng voice for the same language, or None when the language is not known."""
        if self.engine == "espeak":
            return self.voice
        if self.engine == "piper":
            # Piper voice names are <lang>_<REGION>-<name>-<quality>: "en_US-joe-medium" -> "en-us".
            return self.voice.split("-", 1)[0].replace("_", "-").lower()
        return None


def parse_voice_spec(spec: str, *, default: VoiceSpec | None = None) -> VoiceSpec:
    """``"engine:voice"`` -> :class:`VoiceSpec`; a bare language tag as the module docstring says.

    ``default`` is what a bare English tag (and ``""``/``"default"``) means; without it, those are
    the built-in default voice.
    """
    text = spec.strip()
    if not text or text == "default" or text.lower().replace("_", "-") in _ENGLISH_TAGS:
        return default if default is not None else parse_voice_spec(DEFAULT_VOICE_SPEC)
    engine, colon, voice = text.partition(":")
    if not colon:
        if not _VOICE_NAME_RE.fullmatch(text):
            raise VoiceSpecError(
                f"voice spec {spec!r} is not engine:voice (engines: {', '.join(ENGINES)}) "
                "nor a language tag such as 'de'"
            )
        return VoiceSpec("espeak", text)
    engine = engine.strip().lower()
    voice = voice.strip()
    if engine not in ENGINES:
        raise VoiceSpecError(
            f"voice spec {spec!r} names unknown engine {engine!r}; use one of {', '.join(ENGINES)}"
        )
    if not voice:
        raise VoiceSpecError(f"voice spec {spec!r} has no voice after {engine!r}:")
    if not _VOICE_NAME_RE.fullmatch(voice):
        raise VoiceSpecError(
            f"voice spec {spec!r}: voice name {voice!r} may only contain letters, digits and _.+-"
        )
    return VoiceSpec(engine, voice)


@runtime_checkable
class StreamingSynthesizer(Protocol):
    """A synthesizer that can hand over audio sentence by sentence (Piper)."""

    def stream(self, text: str, *, voice: str) -> AsyncGenerator[PcmAudio, None]: ...


class VoiceRouter:
    """Routes each prompt to its voice's engine, with espeak-ng as the fallback (module docstring)."""

    def __init__(
        self,
        default: VoiceSpec,
        engines: Mapping[Engine, PromptSynthesizer],
        *,
        streaming: Mapping[Engine, object] | None = None,
        unavailable: Mapping[Engine, str] | None = None,
        fallback_espeak_voice: str = DEFAULT_FALLBACK_ESPEAK_VOICE,
    ) -> None:
        self.default = default
        self._engines = dict(engines)
        self._streaming = dict(streaming or {})
        self._unavailable = dict(unavailable or {})
        self._fallback_espeak_voice = fallback_espeak_voice
        self._specs: dict[str, VoiceSpec] = {}
        self._warned: set[str] = set()
        self.fallbacks = 0

    @property
    def engine_id(self) -> str:
        return "router/" + "+".join(sorted(e.engine_id for e in self._engines.values()))

    def resolve(self, voice: str) -> VoiceSpec:
        spec = self._specs.get(voice)
        if spec is None:
            spec = parse_voice_spec(voice, default=self.default)
            self._specs[voice] = spec
        return spec

    async def aclose(self) -> None:
        """Release the engines: SpeechKit's channel, Piper's thread."""
        for engine in self._streaming.values():
            aclose = getattr(engine, "aclose", None)
            if aclose is not None:
                await aclose()
            close = getattr(engine, "close", None)
            if close is not None:
                close()

    def has_engine(self, engine: Engine) -> bool:
        return engine in self._engines

    def _fallback(self, spec: VoiceSpec) -> tuple[PromptSynthesizer, str]:
        espeak = self._engines.get("espeak")
        if espeak is None:
            raise VoiceUnavailableError(
                f"voice {spec} failed and espeak-ng, the fallback, is not available: "
                f"{self._unavailable.get('espeak', 'not configured')}"
            )
        return espeak, spec.espeak_fallback or self._fallback_espeak_voice

    def _log_fallback(self, spec: VoiceSpec, reason: str, *, once: bool) -> None:
        self.fallbacks += 1
        if once:
            if str(spec) in self._warned:
                return
            self._warned.add(str(spec))
        log.warning("tts.fallback", voice=str(spec), reason=reason, fallback="espeak")

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        spec = self.resolve(voice)
        engine = self._engines.get(spec.engine)
        if engine is None:
            reason = self._unavailable.get(spec.engine, f"engine {spec.engine} not configured")
            self._log_fallback(spec, reason, once=True)
        elif spec.engine == "espeak":
            return await engine.synthesize(text, voice=spec.voice)
        else:
            try:
                return await engine.synthesize(text, voice=spec.voice)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any engine failure: the caller still hears the prompt
                self._log_fallback(spec, _reason(exc), once=isinstance(exc, VoiceUnavailableError))
        fallback, espeak_voice = self._fallback(spec)
        return await fallback.synthesize(text, voice=espeak_voice)

    def cache_counts(self) -> dict[str, int]:
        """Prompt lookups by result (``memory``, ``disk``, ``miss``), summed over every engine's
        cache chain (:class:`~voicebot.tts.cache.PromptCache`); engines without one count nothing."""
        counts: dict[str, int] = {}
        for engine in self._engines.values():
            if isinstance(engine, CacheCounted):
                for key, value in engine.cache_counts().items():
                    counts[key] = counts.get(key, 0) + value
        return counts

    async def synthesize_or_stream(
        self, text: str, *, voice: str
    ) -> PcmAudio | AsyncGenerator[PcmAudio, None]:
        """The whole audio when it is at hand (in the voice's cache) or the voice's engine cannot
        stream (espeak-ng, SpeechKit: :meth:`synthesize`, cached as always); otherwise a stream of
        it sentence by sentence (:meth:`stream`), kept in the cache once it completes."""
        spec = self.resolve(voice)
        engine = self._engines.get(spec.engine)
        streamer = self._streaming.get(spec.engine)
        if engine is None or not isinstance(streamer, StreamingSynthesizer):
            return await self.synthesize(text, voice=voice)
        if isinstance(engine, PromptCache):
            hit = await engine.cached(text, voice=spec.voice)
            if hit is not None:
                return hit
        return self._stream(spec, engine, streamer, text)

    async def stream(self, text: str, *, voice: str) -> AsyncGenerator[PcmAudio, None]:
        """Audio for dynamic text, sentence by sentence where the engine can (Piper), else whole.

        A prompt already in the voice's cache comes whole from there; a stream that completes is
        kept in the cache (:meth:`synthesize_or_stream`), so the next call that says the same text
        does not render it again. An engine failure before the first audio falls back to espeak-ng
        for the whole text; after it, the rest of the text is lost (logged) rather than said twice,
        and nothing is cached.
        """
        got = await self.synthesize_or_stream(text, voice=voice)
        if isinstance(got, PcmAudio):
            yield got
            return
        async with contextlib.aclosing(got):
            async for chunk in got:
                yield chunk

    async def _stream(self, spec: VoiceSpec, engine: PromptSynthesizer, streamer: StreamingSynthesizer,
                      text: str) -> AsyncGenerator[PcmAudio, None]:
        chunks: list[bytes] = []
        try:
            async with contextlib.aclosing(streamer.stream(text, voice=spec.voice)) as stream:
                async for chunk in stream:
                    chunks.append(chunk.pcm)
                    yield chunk
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if chunks:
                log.warning("tts.stream_failed", voice=str(spec), reason=_reason(exc))
                return
            self._log_fallback(spec, _reason(exc), once=isinstance(exc, VoiceUnavailableError))
        else:
            # Completed (not closed early by a barge-in or a hang-up): the next call gets it whole.
            if chunks and isinstance(engine, PromptCache):
                try:
                    await engine.keep(text, voice=spec.voice, audio=PcmAudio(b"".join(chunks)))
                except OSError as exc:  # a full or read-only disk costs a later render, not this call
                    log.warning("tts.cache_write_failed", voice=str(spec), error=str(exc))
            return
        fallback, espeak_voice = self._fallback(spec)
        yield await fallback.synthesize(text, voice=espeak_voice)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"


def make_synthesizer(
    voice: str = DEFAULT_VOICE_SPEC,
    *,
    cache_dir: Path | None = None,
    voices: Iterable[str] = (),
    speechkit: object | None = None,
    espeak_speed_wpm: int | None = None,
    fallback_espeak_voice: str = DEFAULT_FALLBACK_ESPEAK_VOICE,
    wrap: Callable[[PromptSynthesizer], PromptSynthesizer] | None = None,
) -> VoiceRouter:
    """The application's synthesizer: default voice ``voice`` plus the engines ``voices`` need.

    ``voice`` is the configured default (``[tts] voice`` / ``--voice``); ``voices`` are the other
    specs in use (every dialplan ``voice:``), so their engines are loaded now and not during a call.
    ``speechkit`` is a :class:`voicebot.tts.speechkit.SpeechKitTtsSettings` (None: no SpeechKit;
    ``speechkit:`` voices then fall back to espeak-ng). ``cache_dir`` (None: no disk cache) gets
    one cache per engine. ``wrap`` (e.g. the application's in-memory ``MemoSynthesizer``) is put
    around each engine's cache, so it too never keeps a fallback rendering under a voice that
    was only unavailable for a moment. Blocking (loads the Piper model, ~1 s): call it with
    ``asyncio.to_thread`` from async code. A bad spec raises :class:`VoiceSpecError`; a missing
    engine does not: it is logged and its voices fall back to espeak-ng.
    """
    default = parse_voice_spec(voice)
    wanted = {default.engine, "espeak"} | {parse_voice_spec(v, default=default).engine for v in voices}
    engines: dict[Engine, PromptSynthesizer] = {}
    streaming: dict[Engine, object] = {}
    unavailable: dict[Engine, str] = {}

    def add(name: Engine, synth: PromptSynthesizer) -> None:
        streaming[name] = synth
        outer: PromptSynthesizer = CachingSynthesizer(synth, cache_dir) if cache_dir is not None else synth
        engines[name] = wrap(outer) if wrap is not None else outer

    if "espeak" in wanted:
        from voicebot.tts.espeak import EspeakSynthesizer

        try:
            add("espeak", EspeakSynthesizer() if espeak_speed_wpm is None
                else EspeakSynthesizer(speed_wpm=espeak_speed_wpm))
        except SynthesisError as exc:
            unavailable["espeak"] = str(exc)
            log.error("tts.engine_unavailable", engine="espeak", reason=str(exc))
    if "piper" in wanted:
        try:
            from voicebot.tts.piper import load_piper

            piper_voice = default.voice if default.engine == "piper" else "en_US-joe-medium"
            add("piper", load_piper(piper_voice))
        except TtsError as exc:
            unavailable["piper"] = str(exc)
            log.warning("tts.engine_unavailable", engine="piper", reason=str(exc))
    if "speechkit" in wanted:
        if speechkit is None:
            unavailable["speechkit"] = "no SpeechKit TTS endpoint configured"
            log.warning("tts.engine_unavailable", engine="speechkit", reason=unavailable["speechkit"])
        else:
            from voicebot.tts.speechkit import SpeechKitSynthesizer, SpeechKitTtsSettings

            if not isinstance(speechkit, SpeechKitTtsSettings):
                raise TypeError("speechkit must be SpeechKitTtsSettings")
            add("speechkit", SpeechKitSynthesizer(speechkit))
    router = VoiceRouter(default, engines, streaming=streaming, unavailable=unavailable,
                         fallback_espeak_voice=fallback_espeak_voice)
    log.info("tts.voices_ready", default=str(default), engines=sorted(engines),
             unavailable=sorted(unavailable))
    return router
