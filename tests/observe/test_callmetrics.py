"""What the call pipeline, the SIP stack and the prompt caches feed into CallMetrics (issue 13 item 3)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from tests.app.test_pipeline import Clock, FakeLeg, SilentRenderer
from voicebot.app import prompt_cache_counts
from voicebot.call.pipeline import CallParts, CallPipeline
from voicebot.config import load_config
from voicebot.dialog.loader import load_dialplan
from voicebot.observe.metrics import CallMetrics
from voicebot.prompts import MemoSynthesizer
from voicebot.records import CallRecordStore
from voicebot.sip.config import UaConfig
from voicebot.sip.message import Response, parse_message
from voicebot.sip.useragent import UserAgent
from voicebot.stt.client import ClientSettings, FinalReceived, RecognitionError, SessionClosed, SessionOpened
from voicebot.tts.base import PcmAudio
from voicebot.tts.cache import CachingSynthesizer

DEMO = load_dialplan(Path(__file__).resolve().parents[2] / "dialplans" / "demo.yaml")


class ScriptedStream:
    """The recognition stream's event side: the given events, then optionally an error."""

    def __init__(self, events: list[object], error: RecognitionError | None = None) -> None:
        self.events, self.error = events, error

    def __aiter__(self) -> AsyncIterator[object]:
        return self._run()

    async def _run(self) -> AsyncIterator[object]:
        for event in self.events:
            yield event
        if self.error is not None:
            raise self.error


def make(tmp_path: Path, metrics: CallMetrics | None) -> tuple[CallPipeline, FakeLeg, Clock]:
    config = load_config(None, env={}, overrides={})
    settings = ClientSettings.from_config(config.recognizer, target="127.0.0.1:1", api_key="k")
    clock = Clock()
    parts = CallParts(records=CallRecordStore(tmp_path / "calls.db"), stt_settings=settings, stt_channel=None,
                      renderer=SilentRenderer(), clock=clock, metrics=metrics)
    leg = FakeLeg()
    return CallPipeline(parts, leg, DEMO, {}), leg, clock  # type: ignore[arg-type]


def value(metrics: CallMetrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def test_sessions_errors_and_recognition_latency_from_the_stream(tmp_path: Path) -> None:
    metrics = CallMetrics()
    pipeline, _, clock = make(tmp_path, metrics)
    pipeline._t0 = 100.0  # call time 0 on the pipeline clock
    clock.now_s = 101.6  # the final for speech ending at 1.2 s arrives at 1.6 s: 0.4 s latency
    pipeline.stream = ScriptedStream([  # type: ignore[assignment]
        SessionOpened("s1", 0, "start"),
        FinalReceived("yes", None, 300, 1200, "s1"),
        SessionClosed("s1", "server: UNAVAILABLE recognizer went away"),
        SessionOpened("s2", 1500, "reconnect"),
        SessionClosed("s2", "rotated"),
        SessionOpened("s3", 9000, "rotation-pause"),
        SessionClosed("s3", "server: OK"),
    ])
    await pipeline._recognition()
    assert value(metrics, "voicebot_recognizer_sessions_total", reason="start") == 1
    assert value(metrics, "voicebot_recognizer_sessions_total", reason="reconnect") == 1
    assert value(metrics, "voicebot_recognizer_sessions_total", reason="rotation-pause") == 1
    assert value(metrics, "voicebot_recognizer_errors_total", code="UNAVAILABLE") == 1
    assert value(metrics, "voicebot_recognizer_errors_total", code="OK") == 0  # a clean end is no error
    assert value(metrics, "voicebot_recognition_latency_seconds_count") == 1
    assert value(metrics, "voicebot_recognition_latency_seconds_sum") == pytest.approx(0.4)
    assert value(metrics, "voicebot_recognition_latency_seconds_bucket", le="0.25") == 0
    assert value(metrics, "voicebot_recognition_latency_seconds_bucket", le="0.5") == 1


async def test_a_failed_recognition_stream_counts_as_an_error(tmp_path: Path) -> None:
    metrics = CallMetrics()
    pipeline, leg, _ = make(tmp_path, metrics)
    leg.is_ended = True  # after the hang-up the error is swallowed, but still counted
    pipeline.stream = ScriptedStream([], RecognitionError("stream failed", retryable=False))  # type: ignore[assignment]
    await pipeline._recognition()
    assert value(metrics, "voicebot_recognizer_errors_total", code="stream_failed") == 1


async def test_a_pipeline_without_metrics_still_runs_the_stream(tmp_path: Path) -> None:
    pipeline, _, _ = make(tmp_path, None)
    pipeline.stream = ScriptedStream([SessionOpened("s1", 0, "start"),  # type: ignore[assignment]
                                      SessionClosed("s1", "server: INTERNAL boom")])
    await pipeline._recognition()
    assert pipeline._sessions_open == set()


def options(n: int) -> bytes:
    return (
        f"OPTIONS sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKo{n}\r\n"
        f"From: <sip:probe@192.0.2.1>;tag=p{n}\r\nTo: <sip:bot@10.0.0.2>\r\nCall-ID: o{n}@192.0.2.1\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_sip_responses_by_code_are_what_the_ua_sent_once_each() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.2"), rng=random.Random(7))
    metrics = CallMetrics()
    metrics.watch_sip_responses(lambda: {str(k): v for k, v in ua.stats.responses.items()})
    wire: list[int] = []
    for n, (draining, now) in enumerate([(False, 0.0), (True, 0.1)]):
        ua.set_draining(draining)
        ua.receive_datagram(options(n), ("192.0.2.1", 5060), now)
        wire += [m.status_code for m in map(parse_message, (d for d, _ in ua.datagrams_to_send()))
                 if isinstance(m, Response)]
    ua.receive_datagram(options(0), ("192.0.2.1", 5060), 0.2)  # a retransmission: the same answer again
    resent = [parse_message(d) for d, _ in ua.datagrams_to_send()]
    assert wire == [200, 503] and len(resent) == 1
    assert value(metrics, "voicebot_sip_responses_total", code="200") == 1
    assert value(metrics, "voicebot_sip_responses_total", code="503") == 1


class CountingEngine:
    engine_id = "fake/1"

    def __init__(self) -> None:
        self.calls = 0

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        self.calls += 1
        return PcmAudio(b"\x01\x00" * 160)


async def test_prompt_cache_results_are_read_from_the_caches(tmp_path: Path) -> None:
    engine = CountingEngine()
    first = MemoSynthesizer(CachingSynthesizer(engine, tmp_path))
    await first.synthesize("Hello.", voice="v")  # miss: the engine renders it
    await first.synthesize("Hello.", voice="v")  # memory
    restarted = MemoSynthesizer(CachingSynthesizer(engine, tmp_path))  # a new process, the same disk
    await restarted.synthesize("Hello.", voice="v")  # disk
    bare = MemoSynthesizer(engine)  # no disk cache behind the LRU
    await bare.synthesize("Bye.", voice="v")  # a miss
    metrics = CallMetrics()
    for synth in (first, restarted, bare):
        metrics.watch_prompt_cache(partial(prompt_cache_counts, synth))
    assert engine.calls == 2  # each miss was one engine render
    assert value(metrics, "voicebot_prompt_cache_total", result="miss") == 2
    assert value(metrics, "voicebot_prompt_cache_total", result="memory") == 1
    assert value(metrics, "voicebot_prompt_cache_total", result="disk") == 1
