"""``voicebot stt-server``'s /metrics, /healthz and /readyz over real HTTP, against a real gRPC server.

The server runs on 127.0.0.1:0 with the stand-in engine and scripted endpointer of test_server.py (no
model); the ops endpoint is the same Starlette app and uvicorn server the CLI's ``--http-listen``
starts, read with httpx.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.stt.test_server import (
    KEY,
    FakeEngine,
    chunks,
    options,
    paced,
    recognize,
    scripted_endpointer,
    silence,
    speech,
)
from voicebot.errors import ConfigError
from voicebot.observe.http import OpsServer, build_app, start_ops_server
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.cli import parse_http_listen
from voicebot.stt.server import RunningServer, ServerConfig, start_server
from voicebot.stt.session import DEFAULT_PAUSE_MS

pytestmark = pytest.mark.adapter


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture
async def served() -> AsyncIterator[tuple[RunningServer, OpsServer]]:
    running = await start_server(
        ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({KEY})),
        engine=FakeEngine(),
        normalizer=lambda text, _language: text.upper(),
        endpointer_factory=scripted_endpointer,
    )
    ops = await start_ops_server(build_app(running.metrics.registry, running.unready_reason), "127.0.0.1", 0)
    try:
        yield running, ops
    finally:
        await ops.aclose()
        await running.stop(0.5)


async def test_metrics_count_a_recognition_session(served: tuple[RunningServer, OpsServer]) -> None:
    running, ops = served
    async with httpx.AsyncClient(base_url=ops.url) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
        before = samples((await http.get("/metrics")).text)
        assert before[("voicebot_stt_sessions_active", ())] == 0
        assert ("voicebot_stt_sessions_total", (("code", "OK"),)) not in before

        audio_ms = 200 + 1500 + 1000
        requests = [options(), *chunks(silence(200) + speech(1500) + silence(1000))]
        responses, code, _ = await recognize(running.port, paced(requests, 0.005))
        assert code == grpc.StatusCode.OK
        finals = sum(1 for r in responses if r.WhichOneof("Event") == "final")
        assert finals >= 1
        _, refused, _ = await recognize(running.port, [options()], metadata=())
        assert refused == grpc.StatusCode.UNAUTHENTICATED

        response = await http.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        after = samples(response.text)
    assert after[("voicebot_stt_sessions_total", (("code", "OK"),))] == 1
    assert after[("voicebot_stt_sessions_total", (("code", "UNAUTHENTICATED"),))] == 1
    assert after[("voicebot_stt_finals_total", ())] == finals
    assert after[("voicebot_stt_audio_seconds_total", ())] == pytest.approx(audio_ms / 1000)
    assert after[("voicebot_stt_sessions_active", ())] == 0



async def test_decode_time_is_observed_per_kind(served: tuple[RunningServer, OpsServer]) -> None:
    running, ops = served
    requests = [options(), *chunks(silence(200) + speech(1500) + silence(1000))]
    _, code, _ = await recognize(running.port, paced(requests, 0.005))
    assert code == grpc.StatusCode.OK
    # Every decode the engine ran is timed, by kind (the engine records each call it gets). A decode
    # cancelled at the session's end may still be finishing on a worker: wait for the pool to idle.
    assert isinstance(running.engine, FakeEngine)
    for _ in range(100):
        if running.pool.stats().busy == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.05)
    calls = list(running.engine.calls)
    async with httpx.AsyncClient(base_url=ops.url) as http:
        after = samples((await http.get("/metrics")).text)
    for kind, partial in (("final", False), ("partial", True)):
        ran = sum(1 for p, _ in calls if p is partial)
        assert ran >= 1
        assert after[("voicebot_stt_decode_seconds_count", (("kind", kind),))] == ran
        assert after[("voicebot_stt_decode_seconds_sum", (("kind", kind),))] >= 0


async def test_readyz_is_503_once_stop_begins(served: tuple[RunningServer, OpsServer]) -> None:
    running, ops = served

    async def slow() -> AsyncIterator[pb.StreamingRequest]:
        yield options()
        for request in chunks(speech(800) + silence(1000)):
            yield request
            await asyncio.sleep(0.02)

    stream = asyncio.create_task(recognize(running.port, slow()))
    async with httpx.AsyncClient(base_url=ops.url) as http:
        for _ in range(100):  # the stream is open once the gauge says so
            if samples((await http.get("/metrics")).text)[("voicebot_stt_sessions_active", ())] == 1:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the stream never became active")
        assert (await http.get("/readyz")).status_code == 200
        stopping = asyncio.create_task(running.stop(grace_s=10))
        await asyncio.sleep(0.05)
        assert not stopping.done()  # still draining the open stream
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unready", "reason": "stopping (draining open streams)"}
        assert (await http.get("/healthz")).status_code == 200
        _, code, _ = await stream
        await stopping
        after = samples((await http.get("/metrics")).text)
    assert code == grpc.StatusCode.OK
    assert after[("voicebot_stt_sessions_total", (("code", "OK"),))] == 1
    assert after[("voicebot_stt_sessions_active", ())] == 0


@pytest.mark.parametrize(
    ("text", "parsed"), [("127.0.0.1:9102", ("127.0.0.1", 9102)), ("[::1]:0", ("::1", 0))]
)
def test_http_listen_flag(text: str, parsed: tuple[str, int]) -> None:
    assert parse_http_listen(text) == parsed


@pytest.mark.parametrize(
    "text", ["9102", ":9102", "host:", "host:http", "host:70000", "host:50\u00b2", "host:\u0665\u0660"]
)
def test_http_listen_flag_refuses_garbage(text: str) -> None:
    with pytest.raises(ConfigError, match=r"must be host:port, e\.g\. 127\.0\.0\.1:9102"):
        parse_http_listen(text)


async def test_final_latency_counts_from_the_utterance_end_arriving(
    served: tuple[RunningServer, OpsServer],
) -> None:
    running, ops = served
    # Real time: 100 ms chunks every 100 ms, so the end of speech arrives about DEFAULT_PAUSE_MS before
    # the endpointer has seen enough silence to end the utterance.
    requests = [options(), *chunks(silence(200) + speech(1000) + silence(1200))]
    responses, code, _ = await recognize(running.port, paced(requests, 0.1))
    assert code == grpc.StatusCode.OK
    finals = sum(1 for r in responses if r.WhichOneof("Event") == "final")
    assert finals == 1
    async with httpx.AsyncClient(base_url=ops.url) as http:
        after = samples((await http.get("/metrics")).text)
    assert after[("voicebot_stt_final_latency_seconds_count", ())] == finals
    latency_s = after[("voicebot_stt_final_latency_seconds_sum", ())]
    # At least the pause less one chunk (the chunk holding the end may hold some of the pause too);
    # the upper bound is generous for a busy shared machine.
    assert DEFAULT_PAUSE_MS / 1000 - 0.2 <= latency_s < DEFAULT_PAUSE_MS / 1000 + 2.0


@pytest.mark.parametrize(
    "listen", ["127.0.0.1", "127.0.0.1:grpc", "127.0.0.1:50\u00b2", "127.0.0.1:\u0665\u0660"]
)
async def test_server_refuses_a_listen_address_without_an_ascii_port(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"must be host:port, e\.g\. 127\.0\.0\.1:50051"):
        await start_server(ServerConfig(listen=listen, allow_no_auth=True))
