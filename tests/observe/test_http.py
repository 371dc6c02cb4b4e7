"""The ops endpoint with a real HTTP client on 127.0.0.1: metrics text, health, readiness flips."""

from __future__ import annotations

import httpx
import pytest

from voicebot.errors import ConfigError
from voicebot.observe.http import build_app, start_ops_server
from voicebot.observe.metrics import CallMetrics, RecognizerMetrics

pytestmark = pytest.mark.adapter


async def test_metrics_health_and_readiness() -> None:
    metrics = CallMetrics()
    state: dict[str, str | None] = {"unready": None}
    server = await start_ops_server(build_app(metrics.registry, lambda: state["unready"]), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            metrics.calls_active.inc()
            metrics.call_ended(direction="inbound", outcome="completed", cause="bye", side="caller")
            metrics.reaction.observe(0.8)
            metrics.watch_sip_responses(lambda: {"200": 1})
            reply = await client.get("/metrics")
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("text/plain")
            text = reply.text
            assert "voicebot_calls_active 1.0" in text
            assert 'voicebot_hangups_total{cause="bye",side="caller"} 1.0' in text
            assert 'voicebot_calls_total{direction="inbound",outcome="completed"} 1.0' in text
            assert "voicebot_reaction_seconds_count 1.0" in text
            assert 'voicebot_sip_responses_total{code="200"} 1.0' in text

            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/readyz")).status_code == 200
            state["unready"] = "draining"
            reply = await client.get("/readyz")
            assert (reply.status_code, reply.json()) == (503, {"status": "unready", "reason": "draining"})
            assert (await client.get("/healthz")).status_code == 200  # alive while draining
            assert (await client.get("/nope")).status_code == 404
    finally:
        await server.aclose()


async def test_two_registries_do_not_share_numbers() -> None:
    a, b = CallMetrics(), CallMetrics()
    a.calls_active.inc()
    server = await start_ops_server(build_app(b.registry, lambda: None), "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as client:
            assert "voicebot_calls_active 0.0" in (await client.get("/metrics")).text
    finally:
        await server.aclose()
    assert RecognizerMetrics().registry.get_sample_value("voicebot_stt_sessions_active") == 0.0


async def test_a_busy_port_is_a_one_line_error() -> None:
    first = await start_ops_server(build_app(CallMetrics().registry, lambda: None), "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=rf"cannot listen for HTTP on 127.0.0.1:{first.port}: "):
            await start_ops_server(build_app(CallMetrics().registry, lambda: None), "127.0.0.1", first.port)
    finally:
        await first.aclose()
