"""Answering-machine detection (AMD) in the first seconds after an outbound call is answered.

Theory of operation. A person who answers says something short ("Hello?", "Yeah, who's this?")
and then waits for the caller; a voicemail greeting talks on ("Hi, you've reached Anna, I can't
take your call right now, please leave a message after the tone") and ends in a beep. The detector
reads three kinds of evidence, strongest first:

1. **Words** (from the recognizer's partials and finals): a voicemail phrase ("leave a message",
   "after the tone", "not available", "you've reached") decides *machine* at once, whatever the
   cadence says.
2. **A beep** (:mod:`voicebot.amd.tone`): a steady single tone is a machine asking for the message.
3. **Cadence** (frame energy, as Asterisk's app_amd does, with a 4 s greeting limit where
   app_amd has 1.5 s, because app_amd is known to call people with a sentence-long hello
   machines): speech that keeps going past
   ``greeting_max_ms`` or more than ``max_words`` words is a *machine*; a greeting that stops and
   is followed by ``after_greeting_silence_ms`` of silence is a *human*; nothing said for
   ``initial_silence_ms`` is *unknown* (people sometimes answer silently; machines rarely do, but
   an unknown is safer than hanging up on a person); nothing decided in ``total_analysis_ms`` is
   *unknown*.

The decision comes once, as :class:`AmdDecided` with the reason and the evidence for the call
record. The beep detector keeps running after it so a dialplan's ``wait_for_beep`` can start the
message after the beep rather than over the greeting (:class:`BeepDetected`); when a machine has
no beep, :attr:`AnsweringMachineDetector.silence_ms` tells how long it has been quiet.

Pure: 20 ms PCM frames and transcripts in, events out; time is the audio itself.
"""

from __future__ import annotations

import audioop
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from voicebot.amd.tone import BeepDetected, BeepDetector
from voicebot.media.frames import BYTES_PER_FRAME, FRAME_MS

AmdResult = Literal["human", "machine", "unknown"]

# Said by voicemail greetings and carrier announcements, rarely by a person answering a call.
MACHINE_PHRASES: tuple[str, ...] = (
    "leave a message", "leave your message", "leave me a message", "leave a brief message",
    "leave your name", "after the tone", "after the beep", "at the tone", "at the beep",
    "not available", "unavailable", "can't take your call", "cannot take your call",
    "can't come to the phone", "cannot come to the phone", "can't answer", "voicemail", "voice mail",
    "mailbox", "record your message", "you have reached", "you've reached", "youve reached",
    "please leave", "get back to you", "call you back", "return your call", "away from the phone",
    "no one is available", "nobody is available", "the person you are calling",
    "the number you have dialed", "the number you dialed", "is not in service",
)
_NON_WORD = re.compile(r"[^a-z' ]+")


def machine_phrase(text: str) -> str | None:
    """The earliest voicemail phrase in ``text`` (case and punctuation ignored), or None."""
    flat = " ".join(_NON_WORD.sub(" ", text.lower().replace("’", "'")).split())
    found = [(flat.find(phrase), -len(phrase), phrase) for phrase in MACHINE_PHRASES if phrase in flat]
    return min(found)[2] if found else None


@dataclass(frozen=True, slots=True)
class AmdSettings:
    initial_silence_ms: int = 3500
    # A person's longest usual hello ("Good afternoon, Smith residence, Mary speaking") takes about
    # 3 s; voicemail greetings run 5-15 s. app_amd's 1.5 s / 3 words call such a person a machine.
    greeting_max_ms: int = 4000
    after_greeting_silence_ms: int = 900
    total_analysis_ms: int = 7000
    min_word_ms: int = 100
    between_words_ms: int = 200  # a shorter gap does not end a word
    max_words: int = 14
    speech_dbfs: float = -38.0  # frames louder than this (or than the noise floor + 12 dB) are speech

    def __post_init__(self) -> None:
        for name in ("initial_silence_ms", "greeting_max_ms", "after_greeting_silence_ms",
                     "total_analysis_ms", "min_word_ms", "between_words_ms", "max_words"):
            if getattr(self, name) <= 0:
                raise ValueError(f"AMD setting {name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class AmdDecided:
    result: AmdResult
    reason: str  # phrase, beep, long-greeting, max-words, short-greeting, initial-silence, timeout
    decided_ms: int  # ms of audio after the answer when the decision was made
    evidence: dict[str, object] = field(default_factory=dict)


AmdEvent = AmdDecided | BeepDetected


class AnsweringMachineDetector:
    def __init__(self, settings: AmdSettings | None = None) -> None:
        self.settings = settings or AmdSettings()
        self.decision: AmdDecided | None = None
        self._beeps = BeepDetector()
        self._position_ms = 0
        self._noise_dbfs = -60.0
        self._speech_start_ms: int | None = None  # first speech of the greeting
        self._last_speech_ms: int | None = None  # end of the latest speech frame
        self._word_run_ms = 0  # voiced run of the current word
        self._gap_ms = 0  # silence since the last speech frame
        self._words = 0
        self._phrase: str | None = None
        self._transcript = ""

    @property
    def position_ms(self) -> int:
        return self._position_ms

    @property
    def silence_ms(self) -> int:
        """How long it has been quiet (since the answer when nobody spoke yet)."""
        return self._gap_ms if self._last_speech_ms is not None else self._position_ms

    # ---- inputs ----

    def feed(self, pcm16: bytes, *, speech: bool | None = None) -> list[AmdEvent]:
        """One 20 ms frame of the called party's audio (8 kHz, 16-bit). ``speech`` overrides the
        energy decision when the caller has a better voice-activity flag."""
        if len(pcm16) != BYTES_PER_FRAME:
            raise ValueError(f"AMD frames are {BYTES_PER_FRAME} bytes (20 ms at 8 kHz), got {len(pcm16)}")
        events: list[AmdEvent] = []
        at = self._position_ms
        self._position_ms += FRAME_MS
        beep = self._beeps.feed(pcm16)
        if beep is not None:
            events.append(beep)
            if self.decision is None:
                events += self._decide("machine", "beep", beep_hz=beep.frequency_hz)
        voiced = self._is_speech(pcm16) if speech is None else speech
        if self._beeps.in_tone:
            voiced = False  # a beep is not words
        self._cadence(voiced, at)
        if self.decision is None:
            events += self._check_cadence()
        return events

    def transcript(self, text: str, *, final: bool) -> list[AmdEvent]:
        """The recognizer's partial or final text of the greeting so far."""
        if final:
            self._transcript = (self._transcript + " " + text).strip()
        phrase = machine_phrase(text if not final else self._transcript)
        if phrase is not None and self.decision is None:
            self._phrase = phrase
            return list(self._decide("machine", "phrase", phrase=phrase))
        return []

    # ---- internals ----

    def _is_speech(self, pcm16: bytes) -> bool:
        rms = audioop.rms(pcm16, 2)
        level = 20.0 * math.log10(max(rms, 1) / 32768.0)
        if level < self._noise_dbfs + 6.0:  # slowly track the line's noise floor on quiet frames
            self._noise_dbfs = 0.95 * self._noise_dbfs + 0.05 * level
        return level >= max(self.settings.speech_dbfs, self._noise_dbfs + 12.0)

    def _cadence(self, voiced: bool, at: int) -> None:
        s = self.settings
        if voiced:
            if self._speech_start_ms is None:
                self._speech_start_ms = at
            if self._gap_ms >= s.between_words_ms:
                self._word_run_ms = 0  # a new word after a real gap
            self._word_run_ms += FRAME_MS
            if self._word_run_ms == s.min_word_ms:
                self._words += 1
            self._gap_ms = 0
            self._last_speech_ms = at + FRAME_MS
        else:
            self._gap_ms += FRAME_MS

    def _greeting_ms(self) -> int:
        if self._speech_start_ms is None or self._last_speech_ms is None:
            return 0
        return self._last_speech_ms - self._speech_start_ms

    def _check_cadence(self) -> list[AmdEvent]:
        s = self.settings
        if self._speech_start_ms is None:
            if self._position_ms >= s.initial_silence_ms:
                return list(self._decide("unknown", "initial-silence"))
            return []
        speaking = self._gap_ms < s.between_words_ms
        if speaking and self._greeting_ms() > s.greeting_max_ms:
            return list(self._decide("machine", "long-greeting"))
        if self._words > s.max_words:
            return list(self._decide("machine", "max-words"))
        if self._gap_ms >= s.after_greeting_silence_ms and self._words > 0:
            return list(self._decide("human", "short-greeting"))
        if self._position_ms >= s.total_analysis_ms:
            return list(self._decide("unknown", "timeout"))
        return []

    def _decide(self, result: AmdResult, reason: str, **extra: object) -> list[AmdEvent]:
        evidence: dict[str, object] = {
            "greeting_ms": self._greeting_ms(), "words": self._words, "silence_ms": self.silence_ms,
            **extra,
        }
        if self._transcript:
            evidence["transcript"] = self._transcript
        self.decision = AmdDecided(result, reason, self._position_ms, evidence)
        return [self.decision]
