"""The call-leg recognition stream: push 8 kHz 16-bit PCM in, iterate transcript events out.

Theory of operation. One :class:`RecognitionStream` per call leg speaks SpeechKit STT v3
``RecognizeStreaming`` (the embedded server or the cloud: only target, TLS and key differ). Audio
goes out in chunks of at most ``chunk_max_ms`` as it arrives (paced to real time); when none arrives
for ``silence_fill_after_ms`` (hold, mute, loss) a ``silence_chunk`` keeps the call timeline moving
and the recognizer's 5 s idle rule from firing. Every time in an event is in ms on the **call
timeline** (0 = the first audio of the leg), whichever recognizer session produced it.

A session covers the call from its ``base_ms`` on. The stream keeps, in a bounded ring, the call
audio since the end of the last utterance the recognizer closed (the last ``eou_update``, call time
``E``). Opening a session always means: start it at ``base_ms = E`` and replay the ring, then go on
with live audio. That single rule serves three cases:

* **rotation at a pause**: within ``rotate_at_pause_margin`` of a session limit (audio duration or
  bytes), at the first moment the caller is silent (no utterance open on the recognizer and quiet
  recent audio), a new session replaces the old one; the replay is just the pause since ``E``;
* **forced rotation**: within ``rotate_force_margin`` of a limit and still no pause, the same
  switch happens anyway; the replay then holds the utterance in progress, so it is recognized whole
  by the new session instead of cut in two;
* **reconnect**: the recognizer went away (UNAVAILABLE, reset, its own limit or idle close): after
  an exponential backoff the new session gets the audio since ``E``, so only the utterance in
  flight is recognized again, now by the new session, and nothing is lost.

Dedup rule (:class:`SessionWindow`): the replaced session is *retired at cut point* ``E``: it is
half-closed, and nothing it reports afterwards is delivered (every utterance it had closed before
``E`` was already delivered at its ``eou_update``; any it reports later starts at or after ``E`` and
belongs to the new session, which heard that audio from its start). So each utterance on the call
timeline is delivered by exactly one session, and the replayed overlap ``[E, switch)`` is the only
audio sent twice.

The pure parts (:class:`AudioRing`, :func:`split_chunks`, :func:`rotation_due`, :class:`Backoff`,
:class:`SessionWindow`, :func:`is_quiet`) have no I/O and are unit-tested without sockets; the
asyncio adapter has one owner task per stream, bounded queues that count what they drop, and never
swallows ``CancelledError``.
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import structlog

from voicebot.errors import VoicebotError

if TYPE_CHECKING:
    import grpc.aio

    from voicebot.config import RecognizerConfig

# voicebot.logging.get_logger collides with structlog's own `logger` parameter; bind logger_name instead.
log = structlog.get_logger(logger_name=__name__)

SAMPLE_RATE_HZ = 8000
BYTES_PER_MS = SAMPLE_RATE_HZ * 2 // 1000  # 16-bit mono at 8 kHz: 16 bytes per ms


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

    @property
    def start_ms(self) -> int:
        return self.start_samples * 1000 // SAMPLE_RATE_HZ


# ---- events -------------------------------------------------------------------------------------


OpenReason = Literal["start", "rotation-pause", "rotation-forced", "reconnect"]


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


StreamEvent = SessionOpened | SessionClosed | PartialReceived | FinalReceived | UtteranceEnded


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
    # When gRPC has not yet taken the previous message (the event loop or the connection is behind,
    # e.g. many calls' speech ending at once), new audio is appended to that message up to this
    # size instead of queueing one more message: the message rate then adapts to what the loop can
    # carry, and the server keeps receiving audio at real time instead of a backlog growing
    # (issue 5: one message per 20 ms frame per call starved the shared event loop).
    backlog_chunk_max_ms: int = 1000
    silence_fill_after_ms: int = 300
    pacing_lead_ms: int = 200  # live audio may run this far ahead of the wall clock
    quiet_window_ms: int = 300  # "at a pause" also needs this much quiet recent audio
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 5.0
    reconnect_give_up_s: float = 60.0
    max_pending_audio_ms: int = 2_000  # pushed audio not yet taken by the owner task; more is dropped
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


# gRPC status names: a new session cannot help with these (our request or credentials are wrong).
_FATAL_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT", "UNIMPLEMENTED",
                          "NOT_FOUND", "FAILED_PRECONDITION"})
# The server closed the session for a per-session limit or idleness: open the next one at once.
_IMMEDIATE_CODES = frozenset({"OUT_OF_RANGE", "DEADLINE_EXCEEDED"})


def open_channel(settings: ClientSettings) -> grpc.aio.Channel:
    """A channel to the recognizer; reconnects quickly (the call cannot wait for gRPC's 120 s cap)."""
    import grpc
    import grpc.aio

    options = [
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ]
    if not settings.tls:
        return grpc.aio.insecure_channel(settings.target, options=options)
    roots = settings.ca_file.read_bytes() if settings.ca_file is not None else None
    return grpc.aio.secure_channel(settings.target, grpc.ssl_channel_credentials(roots), options=options)


# ---- the asyncio adapter ------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingFinal:
    """A final waiting for its refinement and ``eou_update`` (times on the session timeline)."""

    index: int
    text: str
    start_ms: int
    end_ms: int
    normalized: str | None = None


@dataclass(eq=False, slots=True)
class _Session:
    session_id: str
    window: SessionWindow
    requests: asyncio.Queue[object]  # StreamingRequest, or None for half-close
    # The last queued request that gRPC has not taken yet; audio arriving while it waits is
    # appended to it (see ClientSettings.backlog_chunk_max_ms).
    unsent_tail: object | None = None
    audio_ms: int = 0
    data_bytes: int = 0
    in_utterance: bool = False  # a non-empty partial came since the last eou_update
    last_eou_ms: int = -1  # session timeline
    pending: list[_PendingFinal] = field(default_factory=list)
    call: object | None = None
    half_closed: bool = False
    reason: OpenReason = "start"
    confirmed: bool = False  # the server answered; only then is it reported as a session used


class RecognitionStream:
    """One call leg's recognition: ``push_audio`` in, ``async for event in stream`` out.

    Use as ``async with RecognitionStream(settings) as stream:``. ``end_input()`` flushes: the
    iteration ends after the last final. Errors that end the stream raise :class:`RecognitionError`
    from the iteration with ``retryable`` set.
    """

    def __init__(self, settings: ClientSettings, *, channel: grpc.aio.Channel | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random,
                 call_id: str | None = None) -> None:
        self.settings = settings
        self._own_channel = channel is None
        self._channel = channel
        self._clock = clock
        self._call_id = call_id
        self._inbox: asyncio.Queue[tuple[str, object, object]] = asyncio.Queue()
        self._pending_audio_ms = 0
        self._events: deque[StreamEvent | RecognitionError | None] = deque()
        self._events_ready = asyncio.Event()
        self._ring = AudioRing(settings.replay_buffer_ms)
        self._backoff = Backoff(settings.reconnect_initial_s, settings.reconnect_max_s, rng=rng)
        self._active: _Session | None = None
        self._sessions: set[_Session] = set()
        self._eou_ms = 0  # E: call time after which no utterance has been closed yet
        self._start_s = 0.0
        self._last_audio_s = 0.0
        self._reconnect_at: float | None = None
        self._unavailable_since: float | None = None
        self._ending = False
        self._owner: asyncio.Task[None] | None = None
        self._held: deque[bytes] = deque()  # pushed audio waiting for its real-time slot
        self._recent: deque[bytes] = deque()
        self._recent_ms = 0
        # Counters for logs and tests.
        self.dropped_audio_ms = 0
        self.dropped_partials = 0
        self.sessions_opened = 0

    # ---- public API ----

    async def __aenter__(self) -> RecognitionStream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._owner is not None:
            raise RuntimeError("RecognitionStream.start() called twice")
        if self._channel is None:
            self._channel = open_channel(self.settings)
        self._start_s = self._last_audio_s = self._clock()
        self._owner = asyncio.get_running_loop().create_task(self._run(), name="stt-client")

    def push_audio(self, pcm16: bytes) -> None:
        """Queue 16-bit 8 kHz mono PCM (any length); never blocks.

        Dropped and counted in ``dropped_audio_ms`` when the queue is full or after ``end_input()``.
        """
        duration_ms = len(pcm16) // BYTES_PER_MS
        if self._ending:
            # A frame racing the hang-up: the input is over, so it is not part of the call's audio.
            self.dropped_audio_ms += duration_ms
            return
        if self._pending_audio_ms + duration_ms > self.settings.max_pending_audio_ms:
            self.dropped_audio_ms += duration_ms
            return
        self._pending_audio_ms += duration_ms
        self._inbox.put_nowait(("audio", pcm16, None))

    def end_input(self) -> None:
        """No more audio: the open utterance is flushed and the iteration ends after its final."""
        if not self._ending:
            self._ending = True
            self._inbox.put_nowait(("end", None, None))

    @property
    def call_ms(self) -> int:
        """The call timeline's position: audio and silence accepted so far."""
        return self._ring.end_ms

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        while True:
            while not self._events:
                self._events_ready.clear()
                await self._events_ready.wait()
            item = self._events.popleft()
            if item is None:
                return
            if isinstance(item, RecognitionError):
                raise item
            yield item

    async def aclose(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None and not owner.done():
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await owner
            self._emit(None)  # a consumer still iterating ends instead of waiting forever
            # Our own cancellation (not the owner's) must still propagate.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        if self._own_channel and self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    # ---- owner task ----

    def _emit(self, event: StreamEvent | RecognitionError | None) -> None:
        if isinstance(event, PartialReceived):
            partials = sum(isinstance(e, PartialReceived) for e in self._events)
            if partials >= self.settings.max_pending_partials:
                self.dropped_partials += 1
                return
        self._events.append(event)
        self._events_ready.set()

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._open_session("start")
                while True:
                    timeout = self._next_timeout()
                    try:
                        kind, a, b = await asyncio.wait_for(self._inbox.get(), timeout)
                    except TimeoutError:
                        kind, a, b = "tick", None, None
                    if kind == "audio":
                        assert isinstance(a, bytes)
                        self._held.append(a)
                    elif kind == "end":
                        self._flush_and_half_close()
                    elif kind == "response":
                        assert isinstance(a, _Session)
                        self._on_response(a, b)
                    elif kind == "done":
                        assert isinstance(a, _Session)
                        self._on_session_done(a, b)
                    self._on_tick()
                    if self._ending and not self._sessions and self._reconnect_at is None:
                        break
                for session in list(self._sessions):
                    self._cancel_session(session)
            self._emit(None)
        except* RecognitionError as group:
            first = group.exceptions[0]
            assert isinstance(first, RecognitionError)
            self._emit(first)
        except* Exception as group:
            # A bug, not a recognizer problem: the consumer must not wait forever for events.
            log.error("stt.client.crashed", error=repr(group.exceptions[0]), call_id=self._call_id)
            self._emit(RecognitionError(f"recognition stream failed: {group.exceptions[0]!r}",
                                        retryable=True))
        finally:
            for session in list(self._sessions):
                self._cancel_session(session)
            log.info("stt.client.stream_ended", call_id=self._call_id, session_attempts=self.sessions_opened,
                     call_ms=self._ring.end_ms, dropped_audio_ms=self.dropped_audio_ms,
                     dropped_partials=self.dropped_partials, replay_dropped_ms=self._ring.dropped_ms)

    def _pace_ahead_ms(self, now: float) -> int:
        """How far the call timeline may run ahead of the wall clock (negative: it may not yet)."""
        return int((now - self._start_s) * 1000) + self.settings.pacing_lead_ms - self._ring.end_ms

    def _release_held(self, now: float) -> None:
        # Real-time pace: audio pushed in a burst (a jitter-buffer flush, a test) goes out no
        # faster than the wall clock, plus a small lead, so the server sees a live call.
        while self._held and (self._ending or self._pace_ahead_ms(now) > 0):
            pcm16 = self._held.popleft()
            self._pending_audio_ms -= len(pcm16) // BYTES_PER_MS
            self._accept_audio(pcm16)

    def _next_timeout(self) -> float:
        now = self._clock()
        if self._held:
            return max(0.005, -self._pace_ahead_ms(now) / 1000)
        due = self._last_audio_s + self.settings.silence_fill_after_ms / 1000
        if self._reconnect_at is not None:
            due = min(due, self._reconnect_at)
        return max(0.005, due - now)

    def _on_tick(self) -> None:
        now = self._clock()
        self._release_held(now)
        if self._reconnect_at is not None and now >= self._reconnect_at:
            self._reconnect_at = None
            self._open_session("reconnect")
        # Keep the call timeline moving with the wall clock when no audio comes (hold, mute, loss).
        if (not self._ending and not self._held
                and now - self._last_audio_s >= self.settings.silence_fill_after_ms / 1000):
            behind_ms = int((now - self._start_s) * 1000) - self._ring.end_ms
            if behind_ms > 0:
                self._ring.append_silence(behind_ms)
                self._remember_recent(b"\x00\x00" * (behind_ms * SAMPLE_RATE_HZ // 1000))
                if self._active is not None:
                    self._send_silence(self._active, behind_ms)
            self._last_audio_s = now
        self._check_rotation()
        if (self._unavailable_since is not None and self._active is None
                and now - self._unavailable_since > self.settings.reconnect_give_up_s):
            raise RecognitionError(
                f"recognizer at {self.settings.target} unreachable for "
                f"{self.settings.reconnect_give_up_s:.0f} s; check that it is running", retryable=True)

    def _accept_audio(self, pcm16: bytes) -> None:
        self._ring.append(pcm16)
        self._remember_recent(pcm16)
        self._last_audio_s = self._clock()
        if self._active is not None:
            self._send_audio(self._active, pcm16)

    def _remember_recent(self, pcm16: bytes) -> None:
        self._recent.append(pcm16)
        self._recent_ms += len(pcm16) // BYTES_PER_MS
        while self._recent and self._recent_ms - len(self._recent[0]) // BYTES_PER_MS >= \
                self.settings.quiet_window_ms:
            self._recent_ms -= len(self._recent.popleft()) // BYTES_PER_MS

    def _send_audio(self, session: _Session, pcm16: bytes) -> None:
        from voicebot.stt._proto import stt_pb2 as pb

        for piece in split_chunks(pcm16, self.settings.chunk_max_ms):
            session.audio_ms += len(piece) // BYTES_PER_MS
            session.data_bytes += len(piece)
            tail = session.unsent_tail
            room = self.settings.backlog_chunk_max_ms * BYTES_PER_MS
            if (isinstance(tail, pb.StreamingRequest) and tail.HasField("chunk")
                    and len(tail.chunk.data) + len(piece) <= room):
                tail.chunk.data += piece  # gRPC is behind: grow the message it has not taken yet
                continue
            session.unsent_tail = pb.StreamingRequest(chunk=pb.AudioChunk(data=piece))
            session.requests.put_nowait(session.unsent_tail)

    def _send_silence(self, session: _Session, duration_ms: int) -> None:
        from voicebot.stt._proto import stt_pb2 as pb

        # A silence_chunk of any length is one message; split anyway so cursors advance smoothly.
        remaining = duration_ms
        while remaining > 0:
            piece = min(remaining, 1000)
            session.audio_ms += piece
            remaining -= piece
            tail = session.unsent_tail
            if (isinstance(tail, pb.StreamingRequest) and tail.HasField("silence_chunk")
                    and tail.silence_chunk.duration_ms + piece <= self.settings.backlog_chunk_max_ms):
                tail.silence_chunk.duration_ms += piece
                continue
            session.unsent_tail = pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=piece))
            session.requests.put_nowait(session.unsent_tail)

    def _check_rotation(self) -> None:
        session = self._active
        if session is None or self._ending:
            return
        quiet = self._recent_ms >= self.settings.quiet_window_ms and is_quiet(b"".join(self._recent))
        at_pause = not session.in_utterance and not session.pending and quiet
        limits = self.settings.limits
        due = rotation_due(limits, audio_ms=session.audio_ms, data_bytes=session.data_bytes,
                           at_pause=at_pause)
        if due is not None:
            # The replacement starts with the replay since the last EOU; if that alone would make it
            # due again, rotating gains nothing and would repeat on every frame (a rotation storm).
            replay_ms = self._ring.end_ms - self._eou_ms
            if rotation_due(limits, audio_ms=replay_ms, data_bytes=replay_ms * BYTES_PER_MS,
                            at_pause=True) is not None:
                return
            log.info("stt.client.rotating", session_id=session.session_id, kind=due,
                     audio_ms=session.audio_ms, replay_ms=self._ring.end_ms - self._eou_ms)
            self._retire(session, "rotated")
            self._open_session("rotation-pause" if due == "pause" else "rotation-forced")

    def _options(self) -> object:
        from voicebot.stt._proto import stt_pb2 as pb

        return pb.StreamingRequest(session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                model=self.settings.model,
                audio_format=pb.AudioFormatOptions(raw_audio=pb.RawAudio(
                    audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=SAMPLE_RATE_HZ,
                    audio_channel_count=1)),
                text_normalization=pb.TextNormalizationOptions(
                    text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED,
                    profanity_filter=False, literature_text=False),
                language_restriction=pb.LanguageRestrictionOptions(
                    restriction_type=pb.LanguageRestrictionOptions.WHITELIST,
                    language_code=[self.settings.language]),
                audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
            ),
            eou_classifier=pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(type=pb.DefaultEouClassifier.DEFAULT)),
        ))

    def _open_session(self, reason: OpenReason) -> None:
        from voicebot.stt._proto import stt_service_pb2_grpc as pb_grpc

        session_id = str(uuid.uuid4())
        # Start where the recognizer last closed an utterance; the ring holds the audio since then.
        self._ring.trim_before_ms(self._eou_ms)
        session = _Session(session_id, SessionWindow(base_ms=self._ring.start_ms), asyncio.Queue(),
                           reason=reason)
        session.requests.put_nowait(self._options())
        for item in self._ring.replay():
            if isinstance(item, bytes):
                self._send_audio(session, item)
            else:
                self._send_silence(session, item)
        metadata = [("x-client-request-id", session_id)]
        if self.settings.api_key:
            metadata.append(("authorization", f"Api-Key {self.settings.api_key}"))
        stub = pb_grpc.RecognizerStub(self._channel)  # type: ignore[no-untyped-call]  # grpc stubs have no .pyi
        session.call = stub.RecognizeStreaming(self._requests(session), metadata=metadata)
        self._sessions.add(session)
        self._active = session
        self.sessions_opened += 1
        self._tg.create_task(self._read(session), name=f"stt-read-{session_id}")
        log.info("stt.client.session_opening", session_id=session_id, reason=reason,
                 base_ms=session.window.base_ms, replay_ms=session.audio_ms, call_id=self._call_id)
        if self._ending:
            self._half_close(session)

    async def _requests(self, session: _Session) -> AsyncIterator[object]:
        while True:
            item = await session.requests.get()
            if item is session.unsent_tail:
                session.unsent_tail = None  # taken: from now on it may be serialized, never grow it
            if item is None:
                return
            yield item

    async def _read(self, session: _Session) -> None:
        import grpc
        import grpc.aio

        call = session.call
        assert isinstance(call, grpc.aio.StreamStreamCall)
        try:
            async for response in call:
                await self._inbox.put(("response", session, response))
            await self._inbox.put(("done", session, None))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            await self._inbox.put(("done", session, (name, exc.details() or "")))

    def _half_close(self, session: _Session) -> None:
        if not session.half_closed:
            session.half_closed = True
            session.unsent_tail = None
            session.requests.put_nowait(None)

    def _retire(self, session: _Session, reason: str) -> None:
        session.window.cut_ms = self._eou_ms
        self._half_close(session)
        if self._active is session:
            self._active = None
        session.pending.clear()
        if session.confirmed:
            self._emit(SessionClosed(session.session_id, reason))

    def _cancel_session(self, session: _Session) -> None:
        self._sessions.discard(session)
        call = session.call
        if call is not None and hasattr(call, "cancel"):
            call.cancel()

    def _flush_and_half_close(self) -> None:
        self._release_held(self._clock())
        if self._active is not None:
            self._half_close(self._active)

    def _on_response(self, session: _Session, response: object) -> None:
        from voicebot.stt._proto import stt_pb2 as pb

        assert isinstance(response, pb.StreamingResponse)
        if not session.confirmed:
            # Reported only once the server answered, so failed reconnect attempts are not "sessions".
            session.confirmed = True
            self._emit(SessionOpened(session.session_id, session.window.base_ms, session.reason))
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
                self._emit(PartialReceived(text, w.to_call_ms(alts[0].start_time_ms),
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
            self._deliver_pending(session)
            session.in_utterance = False
            session.last_eou_ms = max(session.last_eou_ms, response.eou_update.time_ms)
            self._eou_ms = max(self._eou_ms, w.to_call_ms(response.eou_update.time_ms))
            self._ring.trim_before_ms(self._eou_ms)
            self._emit(UtteranceEnded(w.to_call_ms(response.eou_update.time_ms), session.session_id))

    def _on_session_done(self, session: _Session, error: object) -> None:
        self._sessions.discard(session)
        was_active = session is self._active
        if not was_active:
            return  # retired sessions end quietly (their SessionClosed was emitted at retirement)
        self._active = None
        if error is None:
            # The server ended the stream with OK: expected after our half-close at end of input.
            self._emit_pending_at_close(session)
            if session.confirmed:
                self._emit(SessionClosed(session.session_id, "input ended" if self._ending else "server: OK"))
            if not self._ending:
                self._open_session("reconnect")
            return
        assert isinstance(error, tuple)
        code, message = error
        reason = f"server: {code} {message}".strip()
        if session.confirmed:
            self._emit(SessionClosed(session.session_id, reason))
        if code in _FATAL_CODES:
            raise RecognitionError(f"recognizer at {self.settings.target} refused the stream: {code}: "
                                   f"{message}", retryable=False)
        log.warning("stt.client.session_failed", session_id=session.session_id, code=code, detail=message,
                    call_id=self._call_id)
        if code in _IMMEDIATE_CODES:
            self._open_session("reconnect")
            return
        if self._unavailable_since is None:
            self._unavailable_since = self._clock()
        self._reconnect_at = self._clock() + self._backoff.next_delay_s()

    def _emit_pending_at_close(self, session: _Session) -> None:
        # After half-close the server flushes final (+ refinement) + eou_update before OK; a final
        # still pending here never got its eou_update: deliver it rather than lose it.
        self._deliver_pending(session)

    def _deliver_pending(self, session: _Session) -> None:
        w = session.window
        for p in session.pending:
            if p.text.strip():
                self._emit(FinalReceived(p.text, p.normalized, w.to_call_ms(p.start_ms),
                                         w.to_call_ms(p.end_ms), session.session_id))
        session.pending.clear()
