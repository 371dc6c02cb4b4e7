"""The pool's scheduling of finals: one log line per final (how long it queued for a worker and how
long it decoded: bench/call_bench.py splits a slow reaction into queueing and decoding with it), and
speculative finals that never hold the worker a committed final needs (issue 12).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
import structlog

from tests.stt.test_server import FakeEngine, _job, _until_busy
from voicebot.stt.pool import InferencePool
from voicebot.stt.session import DecodeJob, DecodeResult

pytestmark = pytest.mark.adapter


async def test_each_final_logs_its_queue_wait_and_decode_time() -> None:
    engine = FakeEngine(delay_s=0.3)
    pool = InferencePool(engine, workers=1, max_queued=4)
    pool.start()
    done: list[int] = []
    finished = asyncio.Event()

    def on_done(job_id: int) -> Callable[[DecodeResult | BaseException], None]:
        def deliver(outcome: DecodeResult | BaseException) -> None:
            assert isinstance(outcome, DecodeResult)
            done.append(job_id)
            if len(done) == 2:
                finished.set()
        return deliver

    try:
        with structlog.testing.capture_logs() as logs:
            assert pool.submit(_job(1, final=True), on_done(1)) is not None
            await _until_busy(pool)
            assert pool.submit(_job(2, final=True), on_done(2)) is not None
            assert pool.submit(_job(3, final=False), on_done(3)) is None, "a busy pool skips a partial"
            await asyncio.wait_for(finished.wait(), 10)
        lines = [e for e in logs if e["event"] == "stt.pool.final_decoded"]
        assert len(lines) == 2, logs  # finals only: the skipped partial logs nothing here
        first, second = lines
        # The fake engine sleeps 0.3 s a decode; the second final waited for the first one's.
        assert 250 <= first["decode_ms"] < 5000 and 250 <= second["decode_ms"] < 5000
        assert first["wait_ms"] < second["wait_ms"]
        assert second["wait_ms"] >= 200
        assert (first["others_busy"], second["others_busy"]) == (0, 0)  # one worker: nobody else
        assert first["hints_mode"] is None and first["cancelled"] is False
    finally:
        pool.stop()


def _speculation(job_id: int) -> DecodeJob:
    return dataclasses.replace(_job(job_id, final=True), speculative=True)


async def _started(engine: FakeEngine, count: int) -> None:
    """Wait (bounded) until the engine has begun ``count`` decodes."""
    for _ in range(500):
        if len(engine.calls) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(engine.calls)} decodes started within 5 s, expected {count}")


async def test_a_speculation_never_takes_the_worker_a_committed_final_needs() -> None:
    engine = FakeEngine(delay_s=0.5)
    pool = InferencePool(engine, workers=2, max_queued=8)
    pool.start()
    order: list[int] = []
    finished = asyncio.Event()

    def on_done(job_id: int) -> Callable[[DecodeResult | BaseException], None]:
        def deliver(outcome: DecodeResult | BaseException) -> None:
            order.append(job_id)
            if len(order) == 4:
                finished.set()
        return deliver

    try:
        with structlog.testing.capture_logs() as logs:
            assert pool.submit(_speculation(1), on_done(1)) is not None
            await _started(engine, 1)
            # One worker is free, but it is kept for finals that are due: speculation 2 waits.
            spec2 = pool.submit(_speculation(2), on_done(2))
            spec3 = pool.submit(_speculation(3), on_done(3))
            assert spec2 is not None and spec3 is not None
            await asyncio.sleep(0.2)
            assert len(engine.calls) == 1 and pool.stats().queued == 2
            # A committed final starts at once on the kept worker.
            assert pool.submit(_job(4, final=True), on_done(4)) is not None
            await _started(engine, 2)
            # Speculation 3's pause ended first: committed, it runs before speculation 2.
            pool.commit(spec3)
            await asyncio.wait_for(finished.wait(), 10)
        assert order[:2] == [1, 4] and order[2:] == [3, 2]
        lines = [e for e in logs if e["event"] == "stt.pool.final_decoded"]
        assert len(lines) == 4
        # Speculation 2 waited for a worker until two jobs had finished (at least one 0.5 s decode).
        assert lines[-1]["wait_ms"] >= 400
    finally:
        pool.stop()


async def test_a_cancelled_speculation_frees_its_place_and_one_worker_runs_everything() -> None:
    engine = FakeEngine(delay_s=0.2)
    pool = InferencePool(engine, workers=1, max_queued=8)  # one worker: nothing can be reserved
    pool.start()
    done: list[int] = []
    finished = asyncio.Event()

    def on_done(job_id: int) -> Callable[[DecodeResult | BaseException], None]:
        def deliver(outcome: DecodeResult | BaseException) -> None:
            done.append(job_id)
            if len(done) == 2:
                finished.set()
        return deliver

    try:
        assert pool.submit(_speculation(1), on_done(1)) is not None
        await _started(engine, 1)
        doomed = pool.submit(_speculation(2), on_done(2))
        assert doomed is not None
        doomed.cancel()  # speech resumed: the session voids it before it ran
        assert pool.submit(_speculation(3), on_done(3)) is not None
        await asyncio.wait_for(finished.wait(), 10)
        await asyncio.sleep(0.3)
        assert done == [1, 3]
        assert pool.stats().cancelled == 1 and pool.stats().finals_done == 2
    finally:
        pool.stop()
