"""End-of-utterance detection with the WebRTC voice activity detector.

Theory of operation. The audio is cut into fixed frames (10, 20 or 30 ms, the only sizes the
WebRTC VAD accepts); bytes that do not fill a frame wait in a remainder for the next ``feed``.
Each frame is classified speech / non-speech, and a small state machine turns the frame sequence
into :mod:`voicebot.stt.engine` endpoint events on a timeline that only the fed audio advances
(no clock, no I/O, so tests pump audio in and read events out without sleeping):

``idle`` --(speech run >= min_speech_ms)--> ``speaking``   emits SpeechStarted(run start)
``speaking`` --(non-speech >= hangover_ms)--> ``paused``   emits PauseStarted(utterance start,
last speech frame end); the server may start a speculative final decode here
``paused`` --(speech run >= min_speech_ms)--> ``speaking`` emits SpeechResumed(run start)
``paused`` --(pause reaches max_pause_ms)--> ``idle``      emits UtteranceEnded(start, last speech)

A speech run shorter than ``min_speech_ms`` (a click, a cough's onset, line noise) is a blip: it
neither starts nor resumes an utterance, and a pause keeps counting through it. An utterance that
runs for ``max_utterance_ms`` without a long enough pause is cut there (Whisper sees at most 30 s of
audio at once) and, if speech goes on, a new one starts at the cut.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

import numpy as np
import webrtcvad

from voicebot.errors import ConfigError
from voicebot.stt.engine import (
    EndpointEvent,
    PauseStarted,
    SpeechResumed,
    SpeechStarted,
    UtteranceEnded,
)

SUPPORTED_RATES_HZ = (8000, 16000, 32000, 48000)
SUPPORTED_FRAMES_MS = (10, 20, 30)

# Defaults, chosen from bench/stt_wer.py-style measurements on the recorded human speech
# (pocketsphinx-testdata) after a telephone (8 kHz G.711) round trip; see docs/stt-engine.md.
DEFAULT_MAX_PAUSE_MS = 600
DEFAULT_AGGRESSIVENESS = 2
DEFAULT_MIN_SPEECH_MS = 90
DEFAULT_HANGOVER_MS = 150
DEFAULT_FRAME_MS = 20
DEFAULT_MAX_UTTERANCE_MS = 28_000
# The WebRTC VAD keeps calling the fading tail of a word speech for 100-400 ms past where its energy
# has died away (measured on the pocketsphinx set), and the caller waits for all of it. A frame the
# VAD calls speech but that is this far below the loudest speech of the utterance is not speech:
# the pause, its speculative final decode and the final's end_ms start where the words really end,
# so max_pause_ms is a pause in the sound. (The pauses inside a sentence grow by the same amount:
# at most 480 ms on the human set and espeak sentences with commas, below the 600 ms default.)
# 0 disables the gate.
DEFAULT_ENERGY_GATE_DB = 30.0  # median tail on the human set ~190 ms -> ~70 ms
# The gate's reference is the loudest frame of the utterance so far, decaying slowly so that a
# loud word does not mute the rest of a long utterance.
_PEAK_DECAY_DB_PER_S = 3.0


class _State(Enum):
    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"


class WebRtcEndpointer:
    """An :class:`voicebot.stt.engine.Endpointer` over ``webrtcvad`` (16-bit mono PCM)."""

    def __init__(
        self,
        sample_rate_hz: int,
        max_pause_ms: int = DEFAULT_MAX_PAUSE_MS,
        aggressiveness: int = DEFAULT_AGGRESSIVENESS,
        min_speech_ms: int = DEFAULT_MIN_SPEECH_MS,
        *,
        hangover_ms: int = DEFAULT_HANGOVER_MS,
        frame_ms: int = DEFAULT_FRAME_MS,
        max_utterance_ms: int = DEFAULT_MAX_UTTERANCE_MS,
        classifier: Callable[[bytes, int], bool] | None = None,
        energy_gate_db: float = DEFAULT_ENERGY_GATE_DB,
    ) -> None:
        """``classifier(frame, sample_rate_hz) -> is_speech`` replaces the WebRTC VAD (tests script it)."""
        if sample_rate_hz not in SUPPORTED_RATES_HZ:
            raise ConfigError(
                f"endpointer sample_rate_hz must be one of {SUPPORTED_RATES_HZ}, not {sample_rate_hz}; "
                "resample the audio first"
            )
        if frame_ms not in SUPPORTED_FRAMES_MS:
            raise ConfigError(f"endpointer frame_ms must be one of {SUPPORTED_FRAMES_MS}, not {frame_ms}")
        if not 0 <= aggressiveness <= 3:
            raise ConfigError(f"endpointer aggressiveness must be 0..3, not {aggressiveness}")
        if min_speech_ms < 0:
            raise ConfigError(f"endpointer min_speech_ms must be >= 0, not {min_speech_ms}")
        if hangover_ms < 0:
            raise ConfigError(f"endpointer hangover_ms must be >= 0, not {hangover_ms}")
        if max_utterance_ms <= 0:
            raise ConfigError(f"endpointer max_utterance_ms must be > 0, not {max_utterance_ms}")
        if energy_gate_db < 0:
            raise ConfigError(f"endpointer energy_gate_db must be >= 0 (0 = off), not {energy_gate_db}")
        self.sample_rate_hz = sample_rate_hz
        self.aggressiveness = aggressiveness
        self.min_speech_ms = min_speech_ms
        self.hangover_ms = hangover_ms
        self.frame_ms = frame_ms
        self.max_utterance_ms = max_utterance_ms
        self.max_pause_ms = DEFAULT_MAX_PAUSE_MS
        self.set_max_pause_ms(max_pause_ms)
        self._is_speech = classifier or webrtcvad.Vad(aggressiveness).is_speech
        self.energy_gate_db = energy_gate_db
        self._gate_ratio: float = 10.0 ** (-energy_gate_db / 20.0)
        self._peak_decay: float = 10.0 ** (-_PEAK_DECAY_DB_PER_S * frame_ms / 1000.0 / 20.0)
        self._peak_rms = 0.0
        self._frame_bytes = sample_rate_hz * frame_ms // 1000 * 2
        self._remainder = b""
        self._now_ms = 0  # end of the last classified frame
        self._state = _State.IDLE
        self._utterance_start_ms = 0
        self._last_speech_end_ms = 0  # end of the last speech frame that belonged to the utterance
        self._run_start_ms: int | None = None  # start of a speech run not yet long enough to count

    @property
    def now_ms(self) -> int:
        """The end of the audio classified so far (a partial frame in the remainder is not counted)."""
        return self._now_ms

    @property
    def in_utterance(self) -> bool:
        return self._state is not _State.IDLE

    @property
    def trailing_nonspeech_ms(self) -> int:
        """While speaking: how long since the last speech frame (a pause may be starting), else 0."""
        if self._state is not _State.SPEAKING:
            return 0
        return self._now_ms - self._last_speech_end_ms

    def set_max_pause_ms(self, max_pause_ms: int) -> None:
        if max_pause_ms <= 0:
            raise ConfigError(f"max_pause_ms must be > 0, not {max_pause_ms}")
        self.max_pause_ms = max_pause_ms

    def feed(self, pcm16: bytes) -> list[EndpointEvent]:
        if len(pcm16) % 2:
            raise ValueError(f"16-bit PCM must have an even number of bytes, got {len(pcm16)}")
        events: list[EndpointEvent] = []
        data = self._remainder + pcm16
        n = self._frame_bytes
        full = len(data) - len(data) % n
        for offset in range(0, full, n):
            frame = data[offset : offset + n]
            voiced = self._is_speech(frame, self.sample_rate_hz)
            if self.energy_gate_db and self._state is not _State.IDLE:
                voiced = self._gate(frame, voiced)
            self._step(voiced, events)
        self._remainder = data[full:]
        return events

    def feed_silence(self, duration_ms: int) -> list[EndpointEvent]:
        if duration_ms < 0:
            raise ValueError(f"silence duration_ms must be >= 0, not {duration_ms}")
        events: list[EndpointEvent] = []
        silent_bytes = self.sample_rate_hz * duration_ms // 1000 * 2
        if self._remainder:
            # Complete the partial frame with zeros; the VAD still judges the real samples in it.
            fill = min(silent_bytes, self._frame_bytes - len(self._remainder))
            events += self.feed(b"\x00" * fill)
            silent_bytes -= fill
        whole_frames, rest = divmod(silent_bytes, self._frame_bytes)
        for done in range(1, whole_frames + 1):
            self._step(False, events)
            if self._state is _State.IDLE:
                # Nothing can happen in more silence: skip ahead instead of looping frame by frame.
                self._now_ms += (whole_frames - done) * self.frame_ms
                break
        self._remainder = b"\x00" * rest
        return events

    def _gate(self, frame: bytes, is_speech: bool) -> bool:
        """Inside an utterance: a VAD-speech frame far below the recent peak is a fading tail."""
        samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
        rms = float(np.sqrt(np.mean(samples * samples)))
        self._peak_rms *= self._peak_decay
        if not is_speech:
            return False
        self._peak_rms = max(self._peak_rms, rms)
        return rms >= self._peak_rms * self._gate_ratio

    def flush(self) -> list[EndpointEvent]:
        events: list[EndpointEvent] = []
        if self._state is not _State.IDLE:
            events.append(UtteranceEnded(self._utterance_start_ms, self._last_speech_end_ms))
        self._state = _State.IDLE
        self._run_start_ms = None
        # The partial frame is shorter than the VAD can judge; the timeline still covers it.
        self._now_ms += len(self._remainder) // 2 * 1000 // self.sample_rate_hz
        self._remainder = b""
        return events

    def _step(self, is_speech: bool, events: list[EndpointEvent]) -> None:
        """Advance by one frame classified ``is_speech``."""
        start_ms = self._now_ms
        self._now_ms = end_ms = start_ms + self.frame_ms
        state = self._state
        if is_speech:
            if self._run_start_ms is None:
                self._run_start_ms = start_ms
            run_ms = end_ms - self._run_start_ms
            if state is _State.SPEAKING:
                self._last_speech_end_ms = end_ms
                self._run_start_ms = None
            elif run_ms >= max(self.min_speech_ms, self.frame_ms):
                if state is _State.IDLE:
                    self._utterance_start_ms = self._run_start_ms
                    self._peak_rms = 0.0  # each utterance is gated against its own loudness
                    events.append(SpeechStarted(self._run_start_ms))
                else:
                    events.append(SpeechResumed(self._run_start_ms))
                self._state = _State.SPEAKING
                self._last_speech_end_ms = end_ms
                self._run_start_ms = None
        else:
            # A run too short to count is a blip; forget it.
            self._run_start_ms = None
            if state is _State.SPEAKING and end_ms - self._last_speech_end_ms >= self.hangover_ms:
                self._state = _State.PAUSED
                events.append(PauseStarted(self._utterance_start_ms, self._last_speech_end_ms))
        state = self._state
        if state is _State.PAUSED and self._run_start_ms is None:
            if self._now_ms - self._last_speech_end_ms >= self.max_pause_ms:
                events.append(UtteranceEnded(self._utterance_start_ms, self._last_speech_end_ms))
                self._state = _State.IDLE
        elif state is _State.SPEAKING and self._now_ms - self._utterance_start_ms >= self.max_utterance_ms:
            # Too long without a pause for one decode: cut here; continued speech opens a new one.
            # (In the hangover the utterance ends with its last speech frame, not with the silence.)
            events.append(UtteranceEnded(self._utterance_start_ms, self._last_speech_end_ms))
            self._state = _State.IDLE
            if is_speech:
                self._run_start_ms = self._now_ms
