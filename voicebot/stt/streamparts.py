"""The pure parts of the call-leg recognition stream: settings, events, commands, and the helpers
:class:`~voicebot.stt.stream.StreamCore` decides with (rotation limits, reconnect backoff, the replay
ring, the session window of the dedup rule, chunking and the quiet test).

Split out of ``stream.py`` so the state machine reads on its own; everything here is re-exported from
``voicebot.stt.stream`` and ``voicebot.stt.client``. Like the core, nothing here touches a socket, a
task or a clock (see ``stream.py`` for the theory of operation).
"""

from __future__ import annotations

import audioop
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from voicebot.errors import VoicebotError
from voicebot.stt._proto import stt_pb2 as pb

if TYPE_CHECKING:
    from voicebot.config import RecognizerConfig

SAMPLE_RATE_HZ = 8000
BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000  # 16-bit mono at 8 kHz: 16 bytes per ms

# gRPC status names: a new session cannot help with these (our request or credentials are wrong).
FATAL_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "UNIMPLEMENTED",
                         "NOT_FOUND", "FAILED_PRECONDITION"})
# The server closed the session for a per-session limit or idleness: open the next one at once.
IMMEDIATE_CODES = frozenset({"OUT_OF_RANGE", "DEADLINE_EXCEEDED"})

MetadataPairs = tuple[tuple[str, str | bytes], ...]


class RecognitionError(VoicebotError):
    """The recognition stream cannot go on; ``retryable`` says whether a new stream later may work."""


# ---- pure parts ---------------------------------------------------------------------------------


def split_chunks(pcm16: bytes, max_ms: int) -> list[bytes]:
    """``pcm16`` in pieces of at most ``max_ms`` (whole samples), in order."""
    step = max(2, max_ms * BYTES_PER_MS)
    return [pcm16[i:i + step] for i in range(0, len(pcm16), step)]


def is_quiet(pcm16: bytes, *, threshold_rms: int = 400) -> bool:
    """Whether 16-bit PCM is below ``threshold_rms`` (speech on a phone line is well above 1000)."""
    if len(pcm16) < 2:
        return True
    return int(audioop.rms(pcm16[: len(pcm16) // 2 * 2], 2)) < threshold_rms


@dataclass(frozen=True, slots=True)
class RotationLimits:
    """When to replace a session, from the recognizer's per-session limits."""

    max_audio_ms: int = 300_000
    max_bytes: int = 10_000_000
    pause_margin_ms: int = 30_000  # within this of a limit: rotate at the next pause
    force_margin_ms: int = 10_000  # within this of a limit: rotate now

    def __post_init__(self) -> None:
        if not 0 < self.force_margin_ms < self.pause_margin_ms < self.max_audio_ms:
            raise ValueError("need 0 < force_margin_ms < pause_margin_ms < max_audio_ms")


def rotation_due(limits: RotationLimits, *, audio_ms: int, data_bytes: int,
                 at_pause: bool) -> Literal["pause", "force"] | None:
    """Whether a session that has taken ``audio_ms`` / ``data_bytes`` must be replaced now.

    Bytes count against the byte limit with the same margins, converted at 16 bytes per ms.
    """
    headroom_ms = min(limits.max_audio_ms - audio_ms, (limits.max_bytes - data_bytes) // BYTES_PER_MS)
    if headroom_ms <= limits.force_margin_ms:
        return "force"
    if headroom_ms <= limits.pause_margin_ms and at_pause:
        return "pause"
    return None


@dataclass(slots=True)
class Backoff:
    """Exponential reconnect delays: initial, x2 each failure, capped, with +-20 % jitter."""

    initial_s: float = 0.2
    max_s: float = 5.0
    jitter: float = 0.2
    rng: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay_s(self) -> float:
        base = min(self.max_s, self.initial_s * 2.0 ** self.attempt)
        self.attempt += 1
        return base * (1 - self.jitter + 2 * self.jitter * self.rng())

    def reset(self) -> None:
        self.attempt = 0


@dataclass(slots=True)
class SessionWindow:
    """A session's place on the call timeline: it started at ``base_ms``; once replaced, ``cut_ms``."""

    base_ms: int
    cut_ms: int | None = None

    def to_call_ms(self, session_ms: int) -> int:
        return self.base_ms + session_ms

    def delivers(self) -> bool:
        """A session delivers results until it is retired (see the module's dedup rule)."""
        return self.cut_ms is None


class AudioRing:
    """The call audio since a mark, bounded; silence kept as a duration, not as samples.

    Positions are in samples on the call timeline. ``dropped_ms`` counts audio that fell out of the
    front because the ring was full (the replay after a reconnect then starts later).
    """

    def __init__(self, max_ms: int) -> None:
        self.max_samples = max_ms * SAMPLE_RATE_HZ // 1000
        self._segments: deque[tuple[int, bytes | None, int]] = deque()  # (start, pcm or None, samples)
        self.start_samples = 0  # call-timeline position of the first kept sample
        self.end_samples = 0  # call-timeline position after the last sample
        self.dropped_ms = 0

    @property
    def end_ms(self) -> int:
        return self.end_samples * 1000 // SAMPLE_RATE_HZ

    @property
    def start_ms(self) -> int:
        return self.start_samples * 1000 // SAMPLE_RATE_HZ

    def append(self, pcm16: bytes) -> None:
        n = len(pcm16) // 2
        if n:
            self._segments.append((self.end_samples, pcm16[: n * 2], n))
            self.end_samples += n
            self._bound()

    def append_silence(self, duration_ms: int) -> None:
        n = duration_ms * SAMPLE_RATE_HZ // 1000
        if n:
            self._segments.append((self.end_samples, None, n))
            self.end_samples += n
            self._bound()

    def _bound(self) -> None:
        excess = (self.end_samples - self.start_samples) - self.max_samples
        if excess > 0:
            self.dropped_ms += excess * 1000 // SAMPLE_RATE_HZ
            self._trim_to(self.start_samples + excess)

    def trim_before_ms(self, call_ms: int) -> None:
        """Forget audio before ``call_ms`` (the recognizer has closed every utterance before it)."""
        self._trim_to(min(self.end_samples, call_ms * SAMPLE_RATE_HZ // 1000))

    def _trim_to(self, position: int) -> None:
        if position <= self.start_samples:
            return
        while self._segments:
            start, pcm, n = self._segments[0]
            if start + n <= position:
                self._segments.popleft()
                continue
            if start < position:
                cut = position - start
                self._segments[0] = (position, pcm[cut * 2:] if pcm is not None else None, n - cut)
            break
        self.start_samples = position

    def replay(self) -> list[bytes | int]:
        """The kept audio in order: PCM chunks as bytes, silence as a duration in ms."""
        out: list[bytes | int] = []
        for _start, pcm, n in self._segments:
            out.append(pcm if pcm is not None else n * 1000 // SAMPLE_RATE_HZ)
        return out


# ---- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientSettings:
    target: str  # host:port of the SpeechKit STT v3 server (a pool: its endpoints, comma-separated)
    # A recognizer pool: several HOST:PORT, new sessions spread round-robin over the healthy ones
    # (client.open_channel); empty = ``target`` alone (a DNS name there may have several addresses).
    endpoints: tuple[str, ...] = ()
    health_check: bool = True  # gRPC client health checking: a NOT_SERVING recognizer takes no sessions
    tls: bool = False
    ca_file: Path | None = None  # PEM roots; None = system roots (with tls)
    api_key: str | None = None
    language: str = "en-US"
    model: str = "general"
    limits: RotationLimits = field(default_factory=RotationLimits)
    replay_buffer_ms: int = 30_000
    chunk_max_ms: int = 100
    # When the transport has not yet taken the previous message (the event loop or the connection
    # is behind, e.g. many calls' speech ending at once), new audio is appended to that message up
    # to this size instead of queueing one more message: the message rate then adapts to what the
    # loop can carry, and the server keeps receiving audio at real time instead of a backlog
    # growing (issue 5: one message per 20 ms frame per call starved the shared event loop).
    backlog_chunk_max_ms: int = 1000
    silence_fill_after_ms: int = 300
    pacing_lead_ms: int = 200  # live audio may run this far ahead of the clock
    quiet_window_ms: int = 300  # "at a pause" also needs this much quiet recent audio
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 5.0
    reconnect_give_up_s: float = 60.0
    max_pending_audio_ms: int = 2_000  # pushed audio not yet sent (adapter queue + pacing); more is dropped
    max_pending_partials: int = 64  # partials not yet read by the consumer; more are dropped

    @classmethod
    def from_config(cls, rc: RecognizerConfig, *, target: str | None = None,
                    api_key: str | None = None) -> ClientSettings:
        endpoints: tuple[str, ...] = ()
        if target is None:
            pool = rc.pool
            if not pool:
                raise RecognitionError(
                    "no recognizer endpoint configured ([recognizer] endpoint or endpoints)")
            target = ",".join(str(endpoint) for endpoint in pool)
            endpoints = tuple(str(endpoint) for endpoint in pool) if len(pool) > 1 else ()
        return cls(
            target=target, endpoints=endpoints,
            health_check=rc.health_check if rc.health_check is not None else not rc.tls,
            tls=rc.tls, ca_file=rc.ca_file, api_key=api_key or rc.api_key,
            language=rc.language, model=rc.model,
            limits=RotationLimits(
                max_audio_ms=int(rc.session_max_audio_s * 1000), max_bytes=rc.session_max_bytes,
                pause_margin_ms=int(rc.rotate_at_pause_margin_s * 1000),
                force_margin_ms=int(rc.rotate_force_margin_s * 1000)),
            replay_buffer_ms=int(rc.replay_buffer_s * 1000), chunk_max_ms=rc.chunk_max_ms,
            silence_fill_after_ms=rc.silence_fill_after_ms, reconnect_initial_s=rc.reconnect_initial_s,
            reconnect_max_s=rc.reconnect_max_s, reconnect_give_up_s=rc.reconnect_give_up_s,
        )


def session_options(settings: ClientSettings) -> pb.StreamingRequest:
    """The first request of every session: the standard options the cloud expects."""
    return pb.StreamingRequest(session_options=pb.StreamingOptions(
        recognition_model=pb.RecognitionModelOptions(
            model=settings.model,
            audio_format=pb.AudioFormatOptions(raw_audio=pb.RawAudio(
                audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=SAMPLE_RATE_HZ,
                audio_channel_count=1)),
            text_normalization=pb.TextNormalizationOptions(
                text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
                profanity_filter=False, literature_text=False),
            language_restriction=pb.LanguageRestrictionOptions(
                restriction_type=pb.LanguageRestrictionOptions.WHITELIST,
                language_code=[settings.language]),
            audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
        ),
        eou_classifier=pb.EouClassifierOptions(
            default_classifier=pb.DefaultEouClassifier(type=pb.DefaultEouClassifier.DEFAULT)),
    ))


# ---- events -------------------------------------------------------------------------------------


OpenReason = Literal["start", "rotation-pause", "rotation-forced", "context", "reconnect"]


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session_id: str  # our x-client-request-id for the session (the server echoes it)
    base_ms: int  # call time of the session's first audio
    reason: OpenReason


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session_id: str
    reason: str  # "rotated", "input ended", "server: <code> <message>", "cancelled"


@dataclass(frozen=True, slots=True)
class PartialReceived:
    text: str
    start_ms: int  # call timeline
    end_ms: int
    session_id: str


@dataclass(frozen=True, slots=True)
class FinalReceived:
    text: str
    normalized_text: str | None  # final_refinement text (numbers as digits) when the server sent one
    start_ms: int  # call timeline
    end_ms: int
    session_id: str
    confidence: float = 0.0  # the recognizer's for ``text`` (0.0 when it gives none)
    # Further hypotheses, best first: (text, confidence). voicebot's server sends them when hints
    # made it rescore a menu (the matched phrase first, then the free decode).
    alternatives: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class UtteranceEnded:
    at_ms: int  # call timeline
    session_id: str


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """The stream cannot go on (always the last output); ``retryable``: a new stream later may work."""

    message: str
    retryable: bool


StreamEvent = SessionOpened | SessionClosed | PartialReceived | FinalReceived | UtteranceEnded


# ---- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Start a ``RecognizeStreaming`` call: send ``options`` first, then what ``next_request`` gives.

    ``metadata`` is ``x-client-request-id`` and the pairs of ``set_session_metadata``; credentials
    are the adapter's business. ``replay_ms`` of audio since ``base_ms`` is already queued.
    """

    session_id: str
    options: pb.StreamingRequest
    metadata: MetadataPairs
    reason: OpenReason
    base_ms: int
    replay_ms: int


@dataclass(frozen=True, slots=True)
class Transmit:
    """Requests are queued for ``session_id``: the transport should take them (``next_request``)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class CancelSession:
    session_id: str


Command = OpenSession | Transmit | CancelSession
Output = Command | StreamEvent | StreamFailed


@dataclass(frozen=True, slots=True)
class SendAudio:
    session_id: str
    pcm16: bytes


@dataclass(frozen=True, slots=True)
class SendSilence:
    session_id: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class HalfClose:
    session_id: str


Request = SendAudio | SendSilence | HalfClose
