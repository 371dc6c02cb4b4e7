"""The seam between the streaming server and a recognition model.

The server (``server.py`` / ``session.py``) owns the timeline, the audio buffer, the SpeechKit v3
message order and the limits. It asks two things of the engine side:

* an :class:`Endpointer` (``endpoint.py``): a pure, clock-free segmenter that is fed 16-bit mono
  PCM (or "N ms of silence") and reports, in ms on the session timeline, when speech starts, when a
  pause begins (so a final decode can start speculatively), when speech resumes within the pause
  (discard the speculation), and when an utterance has ended;
* an :class:`Engine` (``model.py``): a blocking, thread-safe ``transcribe`` of one span of audio,
  run by the server's worker pool, never on the event loop. An engine that also understands the
  recognition-hints extension (``voicebot.stt.hints``) is a :class:`HintedEngine`: it says so with
  ``accepts_hints = True`` and takes ``hints=`` on ``transcribe``; the pool passes hints only to
  such an engine and only when the session has them, so a session without hints calls exactly the
  plain ``transcribe``.

Times in :class:`Hypothesis` are relative to the first sample given to ``transcribe``; the server
shifts them onto the session timeline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from voicebot.errors import VoicebotError
from voicebot.stt.hints import RecognitionHints


class UnsupportedLanguage(VoicebotError):
    """None of the requested languages can be recognized by the installed model."""


@dataclass(frozen=True, slots=True)
class WordTiming:
    text: str
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class Hypothesis:
    text: str
    words: tuple[WordTiming, ...]
    confidence: float  # 0..1
    language: str  # BCP-47 code the model decoded in, e.g. "en-US"
    # Further n-best entries after this one, best first (a final's v3 ``alternatives[1:]``); only a
    # hinted decode fills it (menu / yes-no rescoring: the matched phrase first, the free decode
    # here). Keyword-only in practice: subclasses add fields after it.
    alternatives: tuple[Hypothesis, ...] = ()


class Engine(Protocol):
    """A recognition model. Implementations must be safe to call from several threads."""

    name: str
    sample_rate_hz: int  # rate of the float32 mono audio that transcribe() takes

    def resolve_language(self, codes: Sequence[str]) -> str | None:
        """Pick the model language for a whitelist of BCP-47 codes (case-insensitive).

        Empty or ``["auto"]`` means detect (returns None). Raises :class:`UnsupportedLanguage`
        naming the codes when none of them is supported.
        """
        ...

    def transcribe(
        self, audio: npt.NDArray[np.float32], *, language: str | None, partial: bool
    ) -> Hypothesis:
        """Recognize one span of audio (float32 in [-1, 1] at ``sample_rate_hz``).

        ``partial`` asks for a cheaper decode (e.g. greedy) for interim results.
        """
        ...


class HintedEngine(Engine, Protocol):
    """An :class:`Engine` that uses :class:`~voicebot.stt.hints.RecognitionHints` (``accepts_hints``)."""

    accepts_hints: bool

    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        *,
        language: str | None,
        partial: bool,
        hints: RecognitionHints | None = None,
    ) -> Hypothesis:
        """As :meth:`Engine.transcribe`; ``hints=None`` must be exactly the plain decode."""
        ...


# ---- endpointing events (times in ms on the session timeline) ----


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    start_ms: int


@dataclass(frozen=True, slots=True)
class PauseStarted:
    """Speech stopped at ``pause_start_ms``; a final for [utterance_start_ms, pause_start_ms) may start."""

    utterance_start_ms: int
    pause_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back before the pause was long enough: the speculative final is void."""

    at_ms: int


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    """The utterance [start_ms, end_ms) is over (the pause reached its limit, or input ended)."""

    start_ms: int
    end_ms: int


EndpointEvent = SpeechStarted | PauseStarted | SpeechResumed | UtteranceEnded


class Endpointer(Protocol):
    """Pure end-of-utterance detection over a timeline that only the fed audio advances."""

    sample_rate_hz: int

    def feed(self, pcm16: bytes) -> list[EndpointEvent]:
        """Push 16-bit little-endian mono PCM of any length; the timeline advances by its duration."""
        ...

    def feed_silence(self, duration_ms: int) -> list[EndpointEvent]:
        """Advance the timeline by ``duration_ms`` of silence (SpeechKit ``silence_chunk``)."""
        ...

    def set_max_pause_ms(self, max_pause_ms: int) -> None:
        """The pause that ends an utterance (``max_pause_between_words_hint_ms``)."""
        ...

    def flush(self) -> list[EndpointEvent]:
        """End of input: close an open utterance (an ``UtteranceEnded`` if speech was in progress)."""
        ...
