"""The call-leg recognition stream as a sans-IO state machine (the client side of ``RecognizeStreaming``).

Theory of operation. :class:`StreamCore` never touches a socket, a task or a clock; the adapter
(``client.py``, grpc.aio) feeds it what happens and carries out the commands it returns, like
``session.py`` on the server side and aioquic's connection:

* Inputs: ``start(now_s)``; ``push_audio(pcm16, now_s, is_silence=None)`` for 16-bit 8 kHz mono PCM;
  ``end_input(now_s)``; ``set_session_metadata(pairs, now_s)``; ``receive_response(session_id,
  response, now_s)`` for every ``StreamingResponse`` of a session; ``session_ended(session_id,
  grpc_code, message, now_s)`` when a session's RPC ended (``"OK"`` included); ``handle_timer(now_s)``
  at ``get_timer()``.
* Outputs (each input returns them in order): the commands :class:`OpenSession` (start a
  ``RecognizeStreaming`` call with these options and metadata), :class:`Transmit` (requests are
  queued for a session) and :class:`CancelSession`; the events :class:`SessionOpened`,
  :class:`SessionClosed`, :class:`PartialReceived`, :class:`FinalReceived`, :class:`UtteranceEnded`
  and, last of all, :class:`StreamFailed` (with ``retryable``).
* A session's requests (:class:`SendAudio`, :class:`SendSilence`, :class:`HalfClose`) are *pulled*
  by the transport with ``next_request(session_id)`` when it can take one. A request the transport
  has not taken yet may still grow: audio queued behind it joins it up to ``backlog_chunk_max_ms``,
  so after a stall of the event loop or the connection the backlog is a few large messages instead
  of one per 20 ms frame (issue 5), while nothing changes when the transport keeps up.

Every time in an event is in ms on the **call timeline** (0 = the first audio of the leg), whichever
session produced it. Audio goes out as it arrives, no faster than the clock plus ``pacing_lead_ms``,
in chunks of at most ``chunk_max_ms``; when none arrives for ``silence_fill_after_ms`` (hold, mute,
loss) a ``silence_chunk`` brings the call timeline level with the clock, which also keeps the
recognizer's idle rule from firing.

A session covers the call from its ``base_ms`` on. The core keeps, in a bounded ring, the call
audio since the end of the last utterance the recognizer closed (the last ``eou_update``, call time
``E``). Opening a session always means: start it at ``base_ms = E`` and replay the ring, then go on
with live audio. That single rule serves every reason to open one:

* **rotation at a pause**: within ``pause_margin_ms`` of a session limit (audio duration or bytes),
  at the first moment the caller is silent (no utterance open on the recognizer and quiet recent
  audio), a new session replaces the old one; the replay is just the pause since ``E``;
* **forced rotation**: within ``force_margin_ms`` of a limit and still no pause, the same switch
  happens anyway; the replay then holds the utterance in progress, so it is recognized whole by the
  new session instead of cut in two. Neither rotation happens when the replay alone would make the
  new session due again (a rotation storm);
* **context**: ``set_session_metadata`` gave pairs other than the current session's (recognition
  hints): the switch happens as soon as no utterance is open on the recognizer, i.e. at once or
  right after the final of the utterance in progress;
* **reconnect**: the recognizer went away (UNAVAILABLE, reset, its own limit or idle close): after
  an exponential backoff (none for its limit and idle codes) the new session gets the audio since
  ``E``, so only the utterance in flight is recognized again and nothing is lost.

Dedup rule (:class:`SessionWindow`): the replaced session is *retired at cut point* ``E``: it is
half-closed, and nothing it reports afterwards is delivered (every utterance it had closed before
``E`` was already delivered at its ``eou_update``; any it reports later starts at or after ``E`` and
belongs to the new session, which heard that audio from its start). So each utterance on the call
timeline is delivered by exactly one session, and the replayed overlap ``[E, switch)`` is the only
audio sent twice.

"At a pause" needs the last ``quiet_window_ms`` of audio to be quiet: frames pushed with
``is_silence`` set count as their caller says (the jitter buffer knows concealment and silence);
the others are judged by energy (:func:`is_quiet`).
"""

from __future__ import annotations

import audioop
import random
import uuid
from collections import deque
from collections.abc import Callable, Sequence
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
    target: str  # host:port of the SpeechKit STT v3 server
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
        if target is None:
            if rc.endpoint is None:
                raise RecognitionError("no recognizer endpoint configured ([recognizer] endpoint)")
            target = str(rc.endpoint)
        return cls(
            target=target, tls=rc.tls, ca_file=rc.ca_file, api_key=api_key or rc.api_key,
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


# ---- internal state -----------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingFinal:
    """A final waiting for its refinement and ``eou_update`` (times on the session timeline)."""

    index: int
    text: str
    start_ms: int
    end_ms: int
    normalized: str | None = None


@dataclass(slots=True)
class _Queued:
    """A request the transport has not taken: audio (``pcm16``), silence, or the half-close."""

    pcm16: bytearray | None = None
    silence_ms: int = 0
    half_close: bool = False


@dataclass(eq=False, slots=True)
class _Session:
    session_id: str
    window: SessionWindow
    reason: OpenReason
    metadata: MetadataPairs
    outbox: deque[_Queued] = field(default_factory=deque)
    audio_ms: int = 0
    data_bytes: int = 0
    in_utterance: bool = False  # a non-empty partial came since the last eou_update
    last_eou_ms: int = -1  # session timeline
    pending: list[_PendingFinal] = field(default_factory=list)
    half_closed: bool = False
    confirmed: bool = False  # the server answered; only then is it reported as a session used
    retired: str | None = None  # why it was replaced, once it was


class StreamCore:
    """One call leg's recognition stream (see the module docstring)."""

    def __init__(self, settings: ClientSettings, *, rng: Callable[[], float] = random.random,
                 new_session_id: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.settings = settings
        self._new_session_id = new_session_id
        self._ring = AudioRing(settings.replay_buffer_ms)
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s, rng=rng)
        self._sessions: dict[str, _Session] = {}  # every session whose RPC has not ended
        self._active: _Session | None = None
        self._metadata: MetadataPairs = ()
        self._eou_ms = 0  # E: call time after which no utterance has been closed yet
        self._started = False
        self._start_s = 0.0
        self._last_audio_s = 0.0
        self._reconnect_at: float | None = None
        self._unavailable_since: float | None = None
        self._ending = False
        self._failed = False
        self._held: deque[tuple[bytes, bool | None]] = deque()  # audio waiting for its real-time slot
        self._held_ms = 0
        self._recent: deque[tuple[int, bytes | bool]] = deque()  # (ms, pcm to judge, or the caller's verdict)
        self._recent_ms = 0
        self.sessions_opened = 0

    # ---- state the adapter and tests may read ----

    @property
    def call_ms(self) -> int:
        """The call timeline's position: audio and silence accepted so far."""
        return self._ring.end_ms

    @property
    def eou_mark_ms(self) -> int:
        """``E``: the recognizer has closed every utterance before this call time."""
        return self._eou_ms

    @property
    def held_audio_ms(self) -> int:
        """Pushed audio waiting for its real-time slot."""
        return self._held_ms

    @property
    def replay_dropped_ms(self) -> int:
        return self._ring.dropped_ms

    @property
    def active_session_id(self) -> str | None:
        return self._active.session_id if self._active is not None else None

    @property
    def finished(self) -> bool:
        """Input ended and every session is over, or the stream failed: nothing more will come."""
        return self._failed or (self._ending and not self._sessions and self._reconnect_at is None)

    # ---- inputs ----

    def start(self, now_s: float) -> list[Output]:
        if self._started:
            raise RuntimeError("StreamCore.start() called twice")
        self._started = True
        self._start_s = self._last_audio_s = now_s
        out: list[Output] = []
        self._open_session("start", out)
        self._on_tick(now_s, out)
        return out

    def push_audio(self, pcm16: bytes, now_s: float, *, is_silence: bool | None = None) -> list[Output]:
        """16-bit 8 kHz mono PCM; ``is_silence`` when the caller knows (None: judge by energy)."""
        if self._ending or self._failed:
            return []
        self._held.append((pcm16, is_silence))
        self._held_ms += len(pcm16) // BYTES_PER_MS
        out: list[Output] = []
        self._on_tick(now_s, out)
        return out

    def end_input(self, now_s: float) -> list[Output]:
        """No more audio: what is held goes out, the active session is half-closed."""
        if self._ending or self._failed:
            return []
        self._ending = True
        out: list[Output] = []
        self._release_held(now_s, out)
        if self._active is not None:
            self._half_close(self._active, out)
        self._on_tick(now_s, out)
        return out

    def set_session_metadata(self, pairs: Sequence[tuple[str, str | bytes]], now_s: float) -> list[Output]:
        """Extra metadata for sessions opened from now on; the current one is replaced when idle."""
        self._metadata = tuple((key, value) for key, value in pairs)
        if self._failed:
            return []
        out: list[Output] = []
        self._on_tick(now_s, out)
        return out

    def receive_response(self, session_id: str, response: pb.StreamingResponse,
                         now_s: float) -> list[Output]:
        session = self._sessions.get(session_id)
        if session is None or self._failed:
            return []
        out: list[Output] = []
        self._on_response(session, response, out)
        self._on_tick(now_s, out)
        return out

    def session_ended(self, session_id: str, grpc_code: str, message: str, now_s: float) -> list[Output]:
        """The session's RPC ended with ``grpc_code`` (a ``grpc.StatusCode`` name, ``"OK"`` too)."""
        session = self._sessions.pop(session_id, None)
        if session is None or self._failed:
            return []
        out: list[Output] = []
        self._on_session_ended(session, grpc_code, message, now_s, out)
        if not self._failed:
            self._on_tick(now_s, out)
        return out

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must run next (same clock as ``now_s``); None: only inputs matter."""
        if self._failed or not self._started:
            return None
        deadlines: list[float] = []
        if self._reconnect_at is not None:
            deadlines.append(self._reconnect_at)
        if self._unavailable_since is not None and self._active is None:
            deadlines.append(self._unavailable_since + self.settings.reconnect_give_up_s)
        if not self._ending:
            if self._held:
                # The first moment the pace allows the next held frame (see _pace_ahead_ms).
                lead_ms = self.settings.pacing_lead_ms
                deadlines.append(self._start_s + (self._ring.end_ms - lead_ms + 1) / 1000)
            else:
                deadlines.append(self._last_audio_s + self.settings.silence_fill_after_ms / 1000)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now_s: float) -> list[Output]:
        if self._failed or not self._started:
            return []
        out: list[Output] = []
        self._on_tick(now_s, out)
        return out

    def next_request(self, session_id: str) -> Request | None:
        """The session's next request for the transport, or None when none is queued.

        Once taken a request is final; until then audio behind it may still join it.
        """
        session = self._sessions.get(session_id)
        if session is None or not session.outbox:
            return None
        item = session.outbox.popleft()
        if item.half_close:
            return HalfClose(session_id)
        if item.pcm16 is not None:
            return SendAudio(session_id, bytes(item.pcm16))
        return SendSilence(session_id, item.silence_ms)

    # ---- the tick: pacing, reconnect, silence fill, rotation, give-up ----

    def _on_tick(self, now_s: float, out: list[Output]) -> None:
        if not self._started:
            return  # audio and metadata given before start() wait for it
        self._release_held(now_s, out)
        if self._reconnect_at is not None and now_s >= self._reconnect_at:
            self._reconnect_at = None
            self._open_session("reconnect", out)
        # Keep the call timeline moving with the clock when no audio comes (hold, mute, loss).
        if (not self._ending and not self._held
                and now_s >= self._last_audio_s + self.settings.silence_fill_after_ms / 1000):
            behind_ms = self._elapsed_ms(now_s) - self._ring.end_ms
            if behind_ms > 0:
                self._ring.append_silence(behind_ms)
                self._remember_recent(behind_ms, b"\x00\x00" * (behind_ms * SAMPLE_RATE_HZ // 1000))
                if self._active is not None:
                    self._send_silence(self._active, behind_ms, out)
            self._last_audio_s = now_s
        self._check_rotation(out)
        # Deadlines are compared in the very form get_timer() returns them, so that a timer handled
        # at its deadline always fires (a float difference could land just short and spin).
        if (self._unavailable_since is not None and self._active is None
                and now_s >= self._unavailable_since + self.settings.reconnect_give_up_s):
            self._fail(f"recognizer at {self.settings.target} unreachable for "
                       f"{self.settings.reconnect_give_up_s:.0f} s; check that it is running", True, out)

    def _elapsed_ms(self, now_s: float) -> int:
        # The epsilon keeps a timer set at a whole ms from landing 1 ms short in binary floating point.
        return int((now_s - self._start_s) * 1000 + 1e-6)

    def _pace_ahead_ms(self, now_s: float) -> int:
        """How far the call timeline may run ahead of the clock (negative: it may not yet)."""
        return self._elapsed_ms(now_s) + self.settings.pacing_lead_ms - self._ring.end_ms

    def _release_held(self, now_s: float, out: list[Output]) -> None:
        # Real-time pace: audio pushed in a burst (a jitter-buffer flush, a test) goes out no
        # faster than the clock, plus a small lead, so the server sees a live call.
        while self._held and (self._ending or self._pace_ahead_ms(now_s) > 0):
            pcm16, is_silence = self._held.popleft()
            self._held_ms -= len(pcm16) // BYTES_PER_MS
            self._accept_audio(pcm16, is_silence, now_s, out)

    def _accept_audio(self, pcm16: bytes, is_silence: bool | None, now_s: float, out: list[Output]) -> None:
        self._ring.append(pcm16)
        self._remember_recent(len(pcm16) // BYTES_PER_MS, pcm16 if is_silence is None else is_silence)
        self._last_audio_s = now_s
        if self._active is not None:
            self._send_audio(self._active, pcm16, out)

    def _remember_recent(self, duration_ms: int, judged: bytes | bool) -> None:
        self._recent.append((duration_ms, judged))
        self._recent_ms += duration_ms
        while self._recent and self._recent_ms - self._recent[0][0] >= self.settings.quiet_window_ms:
            self._recent_ms -= self._recent.popleft()[0]

    def _recent_is_quiet(self) -> bool:
        if self._recent_ms < self.settings.quiet_window_ms:
            return False
        if any(judged is False for _ms, judged in self._recent):
            return False
        return is_quiet(b"".join(judged for _ms, judged in self._recent if isinstance(judged, bytes)))

    # ---- requests ----

    def _enqueue(self, session: _Session, item: _Queued, out: list[Output]) -> None:
        if not session.outbox:
            out.append(Transmit(session.session_id))
        session.outbox.append(item)

    def _send_audio(self, session: _Session, pcm16: bytes, out: list[Output]) -> None:
        if session.half_closed:
            return
        room = self.settings.backlog_chunk_max_ms * BYTES_PER_MS
        for piece in split_chunks(pcm16, self.settings.chunk_max_ms):
            session.audio_ms += len(piece) // BYTES_PER_MS
            session.data_bytes += len(piece)
            tail = session.outbox[-1] if session.outbox else None
            if tail is not None and tail.pcm16 is not None and len(tail.pcm16) + len(piece) <= room:
                tail.pcm16 += piece  # the transport is behind: grow the message it has not taken yet
                continue
            self._enqueue(session, _Queued(pcm16=bytearray(piece)), out)

    def _send_silence(self, session: _Session, duration_ms: int, out: list[Output]) -> None:
        if session.half_closed:
            return
        # A silence_chunk of any length is one message; split anyway so cursors advance smoothly.
        remaining = duration_ms
        while remaining > 0:
            piece = min(remaining, 1000)
            session.audio_ms += piece
            remaining -= piece
            tail = session.outbox[-1] if session.outbox else None
            if (tail is not None and tail.pcm16 is None and not tail.half_close
                    and tail.silence_ms + piece <= self.settings.backlog_chunk_max_ms):
                tail.silence_ms += piece
                continue
            self._enqueue(session, _Queued(silence_ms=piece), out)

    def _half_close(self, session: _Session, out: list[Output]) -> None:
        if not session.half_closed:
            session.half_closed = True
            self._enqueue(session, _Queued(half_close=True), out)

    # ---- sessions ----

    def _check_rotation(self, out: list[Output]) -> None:
        session = self._active
        if session is None or self._ending:
            return
        idle = not session.in_utterance and not session.pending
        at_pause = idle and self._recent_is_quiet()
        limits = self.settings.limits
        due = rotation_due(limits, audio_ms=session.audio_ms, data_bytes=session.data_bytes,
                           at_pause=at_pause)
        reason: OpenReason
        if due is not None:
            reason = "rotation-pause" if due == "pause" else "rotation-forced"
        elif idle and session.metadata != self._metadata:
            reason = "context"
        else:
            return
        # The replacement starts with the replay since the last EOU; if that alone would make it
        # due again, rotating gains nothing and would repeat on every frame (a rotation storm).
        replay_ms = self._ring.end_ms - self._eou_ms
        if rotation_due(limits, audio_ms=replay_ms, data_bytes=replay_ms * BYTES_PER_MS,
                        at_pause=True) is not None:
            return
        self._retire(session, "rotated", out)
        self._open_session(reason, out)

    def _open_session(self, reason: OpenReason, out: list[Output]) -> None:
        session_id = self._new_session_id()
        # Start where the recognizer last closed an utterance; the ring holds the audio since then.
        self._ring.trim_before_ms(self._eou_ms)
        session = _Session(session_id, SessionWindow(base_ms=self._ring.start_ms), reason, self._metadata)
        self._sessions[session_id] = session
        self._active = session
        self.sessions_opened += 1
        replay: list[Output] = []
        for item in self._ring.replay():
            if isinstance(item, bytes):
                self._send_audio(session, item, replay)
            else:
                self._send_silence(session, item, replay)
        out.append(OpenSession(session_id, session_options(self.settings),
                               (("x-client-request-id", session_id), *self._metadata), reason,
                               session.window.base_ms, session.audio_ms))
        out.extend(replay)
        if self._ending:
            self._half_close(session, out)

    def _retire(self, session: _Session, reason: str, out: list[Output]) -> None:
        session.window.cut_ms = self._eou_ms
        session.retired = reason
        self._half_close(session, out)
        if self._active is session:
            self._active = None
        session.pending.clear()
        if session.confirmed:
            out.append(SessionClosed(session.session_id, reason))

    def _fail(self, message: str, retryable: bool, out: list[Output]) -> None:
        self._failed = True
        self._active = None
        self._reconnect_at = None
        for session_id in list(self._sessions):
            out.append(CancelSession(session_id))
        self._sessions.clear()
        out.append(StreamFailed(message, retryable))

    def _on_response(self, session: _Session, response: pb.StreamingResponse, out: list[Output]) -> None:
        if not session.confirmed:
            # Reported only once the server answered, so failed reconnect attempts are not "sessions".
            session.confirmed = True
            out.append(SessionOpened(session.session_id, session.window.base_ms, session.reason))
            if session.retired is not None:
                # Replaced before the server's first answer (e.g. the dialog's first expectation
                # arrived right after the call's first session opened): opened and closed at once.
                out.append(SessionClosed(session.session_id, session.retired))
        if session is self._active and self._unavailable_since is not None:
            self._unavailable_since = None
            self._backoff.reset()
        if not session.window.delivers():
            return  # retired: see the dedup rule in the module docstring
        event = response.WhichOneof("Event")
        w = session.window
        if event == "partial":
            alts = response.partial.alternatives
            text = alts[0].text if alts else ""
            # A partial decode that finishes after its utterance's eou_update is stale: it must not
            # reopen the utterance (that would hide the pause from rotation) nor reach the dialog.
            if text.strip() and alts[0].start_time_ms > session.last_eou_ms:
                session.in_utterance = True
                out.append(PartialReceived(text, w.to_call_ms(alts[0].start_time_ms),
                                           w.to_call_ms(alts[0].end_time_ms), session.session_id))
        elif event == "final":
            alts = response.final.alternatives
            if alts:
                session.pending.append(_PendingFinal(response.audio_cursors.final_index, alts[0].text,
                                                     alts[0].start_time_ms, alts[0].end_time_ms))
        elif event == "final_refinement":
            index = response.final_refinement.final_index
            alts = response.final_refinement.normalized_text.alternatives
            for pending in session.pending:
                if pending.index == index and alts:
                    pending.normalized = alts[0].text
        elif event == "eou_update":
            self._deliver_pending(session, out)
            session.in_utterance = False
            session.last_eou_ms = max(session.last_eou_ms, response.eou_update.time_ms)
            self._eou_ms = max(self._eou_ms, w.to_call_ms(response.eou_update.time_ms))
            self._ring.trim_before_ms(self._eou_ms)
            out.append(UtteranceEnded(w.to_call_ms(response.eou_update.time_ms), session.session_id))

    def _on_session_ended(self, session: _Session, code: str, message: str, now_s: float,
                          out: list[Output]) -> None:
        if session is not self._active:
            return  # retired sessions end quietly (their SessionClosed was emitted at retirement)
        self._active = None
        if code == "OK":
            # The server ended the stream with OK: expected after our half-close at end of input.
            # After half-close the server flushes final (+ refinement) + eou_update before OK; a
            # final still pending here never got its eou_update: deliver it rather than lose it.
            self._deliver_pending(session, out)
            if session.confirmed:
                out.append(SessionClosed(session.session_id, "input ended" if self._ending else "server: OK"))
            if not self._ending:
                self._open_session("reconnect", out)
            return
        if session.confirmed:
            out.append(SessionClosed(session.session_id, f"server: {code} {message}".strip()))
        if code in FATAL_CODES:
            self._fail(f"recognizer at {self.settings.target} refused the stream: {code}: {message}",
                       False, out)
            return
        if code in IMMEDIATE_CODES:
            self._open_session("reconnect", out)
            return
        if self._unavailable_since is None:
            self._unavailable_since = now_s
        self._reconnect_at = now_s + self._backoff.next_delay_s()

    def _deliver_pending(self, session: _Session, out: list[Output]) -> None:
        w = session.window
        for p in session.pending:
            if p.text.strip():
                out.append(FinalReceived(p.text, p.normalized, w.to_call_ms(p.start_ms),
                                         w.to_call_ms(p.end_ms), session.session_id))
        session.pending.clear()
