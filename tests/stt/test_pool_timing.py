"""The pool's one log line per final: how long it queued for a worker and how long it decoded.

bench/call_bench.py splits a slow reaction into queueing and decoding with it (issue 12).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import structlog

from tests.stt.test_server import FakeEngine, _job, _until_busy
from voicebot.stt.pool import InferencePool
from voicebot.stt.session import DecodeResult

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
