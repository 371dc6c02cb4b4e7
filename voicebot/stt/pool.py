"""A bounded pool of inference threads shared by every recognition session.

Inference (``Engine.transcribe``; CTranslate2 releases the GIL) runs only on these threads, never on
the event loop. Scheduling rules, in order of importance:

* finals before partials: the queue is a priority heap, finals first, then by arrival;
* a partial never queues: it is admitted only when nothing is waiting and, with two or more
  workers, at least one worker stays free for finals (``reserved_for_finals``); otherwise it is
  *skipped* (the session tries again after more audio). So under load partials get rarer on their
  own, and a final starts at once whenever fewer finals than workers are running;
* admission control: when ``max_sessions`` are open, or the backlog of queued finals is longer than
  ``max_queued`` (the server is behind real time), a new session is refused with
  :class:`~voicebot.stt.errors.Overloaded` (RESOURCE_EXHAUSTED) instead of hanging.

Results come back on the event loop through ``loop.call_soon_threadsafe``. Cancelling a queued job
drops it before it runs; a running job finishes and its result is discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from voicebot.logging import get_logger
from voicebot.stt.audio import pcm16_to_float32, resample
from voicebot.stt.engine import Engine, HintedEngine
from voicebot.stt.errors import Overloaded
from voicebot.stt.session import DecodeJob, DecodeResult

log = get_logger(__name__)

Normalizer = Callable[[str, str], str]  # (text, language) -> normalized text
DoneCallback = Callable[[DecodeResult | BaseException], None]

_FINAL, _PARTIAL = 0, 1


@dataclass(frozen=True, slots=True)
class PoolStats:
    workers: int
    busy: int
    queued: int
    sessions: int
    finals_done: int
    partials_done: int
    partials_skipped: int
    cancelled: int
    decode_s_total: float
    # How long finals waited for a worker (submit -> start), and how many found every worker busy
    # with a partial among them: the cost partials put on finals (one partial decode at most).
    final_wait_s_total: float = 0.0
    final_wait_s_max: float = 0.0
    finals_behind_partial: int = 0


class Ticket:
    """A submitted job; ``cancel()`` drops it if it has not started (its result is never delivered)."""

    __slots__ = ("callback", "cancelled", "job", "loop", "submitted_s")

    def __init__(self, job: DecodeJob, callback: DoneCallback, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.callback = callback
        self.loop = loop
        self.cancelled = False
        self.submitted_s = time.monotonic()

    def cancel(self) -> None:
        self.cancelled = True


class InferencePool:
    def __init__(
        self,
        engine: Engine,
        *,
        workers: int = 2,
        max_queued: int = 8,
        max_sessions: int = 64,
        normalizer: Normalizer | None = None,
        reserved_for_finals: int = 1,
        on_decoded: Callable[[bool, float], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.engine = engine
        self.workers = workers
        self.max_queued = max_queued
        self.max_sessions = max_sessions
        self._normalizer = normalizer
        self._on_decoded = on_decoded  # (final, seconds on the worker); called on the worker thread
        # Workers a partial may not take (never all of them: one worker must be able to run partials).
        self._partial_slots = max(1, workers - reserved_for_finals)
        self._cv = threading.Condition()
        self._heap: list[tuple[int, int, Ticket]] = []
        self._seq = itertools.count()
        self._busy = 0
        self._sessions = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._finals_done = 0
        self._partials_done = 0
        self._partials_skipped = 0
        self._cancelled = 0
        self._decode_s_total = 0.0
        self._busy_partials = 0
        self._final_wait_s_total = 0.0
        self._final_wait_s_max = 0.0
        self._finals_behind_partial = 0

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"stt-inference-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the workers after the job each is running; queued jobs are dropped."""
        with self._cv:
            self._stopping = True
            self._heap.clear()
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout_s)
        self._threads.clear()

    def stats(self) -> PoolStats:
        with self._cv:
            return PoolStats(
                workers=self.workers,
                busy=self._busy,
                queued=len(self._heap),
                sessions=self._sessions,
                finals_done=self._finals_done,
                partials_done=self._partials_done,
                partials_skipped=self._partials_skipped,
                cancelled=self._cancelled,
                decode_s_total=self._decode_s_total,
                final_wait_s_total=self._final_wait_s_total,
                final_wait_s_max=self._final_wait_s_max,
                finals_behind_partial=self._finals_behind_partial,
            )

    # ---- sessions ----

    def open_session(self) -> None:
        """Admit a new session or raise :class:`Overloaded` saying why."""
        with self._cv:
            if self._sessions >= self.max_sessions:
                raise Overloaded(
                    f"server overloaded: {self._sessions} sessions are open, the limit is "
                    f"{self.max_sessions}; retry later or use another server"
                )
            backlog = len(self._heap)
            if backlog > self.max_queued:
                raise Overloaded(
                    f"server overloaded: {backlog} recognition jobs are waiting for {self.workers} workers "
                    f"(limit {self.max_queued}); retry later or use another server"
                )
            self._sessions += 1

    def close_session(self) -> None:
        with self._cv:
            self._sessions = max(0, self._sessions - 1)

    # ---- jobs ----

    def submit(self, job: DecodeJob, callback: DoneCallback) -> Ticket | None:
        """Queue ``job``; ``callback`` runs on the current event loop. None: a partial was skipped."""
        ticket = Ticket(job, callback, asyncio.get_running_loop())
        with self._cv:
            if self._stopping:
                raise Overloaded("server is shutting down; retry on another server")
            if not job.final:
                if self._heap or self._busy >= self._partial_slots:
                    self._partials_skipped += 1
                    return None
                priority = _PARTIAL
            else:
                priority = _FINAL
                if self._busy >= self.workers and self._busy_partials:
                    self._finals_behind_partial += 1
            heapq.heappush(self._heap, (priority, next(self._seq), ticket))
            self._cv.notify()
        return ticket

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                _prio, _seq, ticket = heapq.heappop(self._heap)
                if ticket.cancelled:
                    self._cancelled += 1
                    continue
                self._busy += 1
                started = time.monotonic()
                wait_s = started - ticket.submitted_s
                # What the other workers were doing when this job started (for the final's log line).
                others_busy, others_partial = self._busy - 1, self._busy_partials
                if ticket.job.final:
                    self._final_wait_s_total += wait_s
                    self._final_wait_s_max = max(self._final_wait_s_max, wait_s)
                else:
                    self._busy_partials += 1
            outcome: DecodeResult | BaseException
            try:
                outcome = self._decode(ticket.job)
            except Exception as exc:  # delivered to the session, which ends with INTERNAL
                log.exception("stt.pool.decode_failed", job_final=ticket.job.final)
                outcome = exc
            elapsed = time.monotonic() - started
            with self._cv:
                self._busy -= 1
                self._decode_s_total += elapsed
                if ticket.job.final:
                    self._finals_done += 1
                else:
                    self._partials_done += 1
                    self._busy_partials -= 1
            if self._on_decoded is not None:
                try:
                    self._on_decoded(ticket.job.final, elapsed)
                except Exception:  # a metrics hook must not kill a worker
                    log.exception("stt.pool.on_decoded_failed")
            if ticket.job.final:
                # One line per final: how long it queued for a worker and how long it decoded, so a
                # slow reaction can be split into queueing and decoding (bench/call_bench.py reads it).
                log.info("stt.pool.final_decoded", wait_ms=round(wait_s * 1000, 1),
                         decode_ms=round(elapsed * 1000, 1), others_busy=others_busy,
                         others_partial=others_partial, cancelled=ticket.cancelled,
                         hints_mode=ticket.job.hints.mode if ticket.job.hints is not None else None)
            if ticket.cancelled:
                continue
            with contextlib.suppress(RuntimeError):  # a closed loop: the server is gone
                ticket.loop.call_soon_threadsafe(_deliver, ticket, outcome)

    def _decode(self, job: DecodeJob) -> DecodeResult:
        # The whole span at once through soxr (a real resampler, not sample repetition).
        audio = resample(pcm16_to_float32(job.pcm16), job.sample_rate_hz, self.engine.sample_rate_hz)
        engine = self.engine
        if job.hints is not None and getattr(engine, "accepts_hints", False):
            hinted = cast(HintedEngine, engine)
            hypothesis = hinted.transcribe(
                audio, language=job.language, partial=not job.final, hints=job.hints
            )
        else:  # no hints (a plain v3 client), or an engine without the extension: the plain decode
            hypothesis = engine.transcribe(audio, language=job.language, partial=not job.final)
        normalized: str | None = None
        if job.normalize and self._normalizer is not None:
            normalized = self._normalizer(hypothesis.text, hypothesis.language)
        return DecodeResult(hypothesis=hypothesis, normalized_text=normalized)


def _deliver(ticket: Ticket, outcome: DecodeResult | BaseException) -> None:
    if not ticket.cancelled:
        ticket.callback(outcome)
