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

import random
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.streamparts import (
    BYTES_PER_MS,
    FATAL_CODES,
    IMMEDIATE_CODES,
    SAMPLE_RATE_HZ,
    AudioRing,
    Backoff,
    CancelSession,
    ClientSettings,
    Command,
    FinalReceived,
    HalfClose,
    MetadataPairs,
    OpenReason,
    OpenSession,
    Output,
    PartialReceived,
    RecognitionError,
    Request,
    RotationLimits,
    SendAudio,
    SendSilence,
    SessionClosed,
    SessionOpened,
    SessionWindow,
    StreamEvent,
    StreamFailed,
    Transmit,
    UtteranceEnded,
    is_quiet,
    rotation_due,
    session_options,
    split_chunks,
)

# The pure parts live in streamparts.py; every name callers used to import from here still works.
__all__ = [
    "BYTES_PER_MS", "FATAL_CODES", "IMMEDIATE_CODES", "SAMPLE_RATE_HZ", "AudioRing", "Backoff",
    "CancelSession", "ClientSettings", "Command", "FinalReceived", "HalfClose", "MetadataPairs",
    "OpenReason", "OpenSession", "Output", "PartialReceived", "RecognitionError", "Request",
    "RotationLimits", "SendAudio", "SendSilence", "SessionClosed", "SessionOpened", "SessionWindow",
    "StreamCore", "StreamEvent", "StreamFailed", "Transmit", "UtteranceEnded", "is_quiet",
    "rotation_due", "session_options", "split_chunks",
]

# ---- internal state -----------------------------------------------------------------------------


@dataclass(slots=True)
class _PendingFinal:
    """A final waiting for its refinement and ``eou_update`` (times on the session timeline)."""

    index: int
    text: str
    start_ms: int
    end_ms: int
    normalized: str | None = None
    confidence: float = 0.0
    alternatives: tuple[tuple[str, float], ...] = ()  # the further hypotheses (text, confidence)


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
                session.pending.append(_PendingFinal(
                    response.audio_cursors.final_index, alts[0].text, alts[0].start_time_ms,
                    alts[0].end_time_ms, confidence=alts[0].confidence,
                    alternatives=tuple((a.text, a.confidence) for a in alts[1:] if a.text.strip())))
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
                                         w.to_call_ms(p.end_ms), session.session_id,
                                         confidence=p.confidence, alternatives=p.alternatives))
        session.pending.clear()
