"""The recognizer pool against real servers on 127.0.0.1 (stand-in engine, no model).

Each server is the real one (``start_server``) with a signed stand-in engine (tests/stt/pool_server.py:
every transcript is ``"<name> world"``), so the tests see which recognizer decoded each utterance:

* health checking: a recognizer that reports NOT_SERVING takes no new sessions, and takes them
  again once it serves;
* failover: two ``pool_server`` processes; the one serving a call's session is SIGKILLed in the
  middle of an utterance; the stream resumes on the other (replay since the last final), so the cut
  utterance and the next one are recognized there, each exactly once, on the call timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.stt.pool_server import NamedEngine
from tests.stt.test_server import KEY, scripted_endpointer, silence, speech
from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    RecognitionStream,
    SessionOpened,
    StreamEvent,
    open_channel,
)
from voicebot.stt.server import RunningServer, ServerConfig, start_server

pytestmark = pytest.mark.adapter

REPO = Path(__file__).resolve().parents[2]
FRAME_BYTES = 320  # 20 ms


def pool_settings(*ports: int) -> ClientSettings:
    return ClientSettings(target=",".join(f"127.0.0.1:{p}" for p in ports),
                          endpoints=tuple(f"127.0.0.1:{p}" for p in ports), api_key=KEY)


async def consume(stream: RecognitionStream, events: list[tuple[float, StreamEvent]]) -> None:
    loop = asyncio.get_running_loop()
    async for event in stream:
        events.append((loop.time(), event))


async def feed(stream: RecognitionStream, audio: bytes, *, at_ms: int | None = None,
               action: Callable[[], None] | None = None) -> None:
    """20 ms frames at real-time pace, like the jitter buffer; ``action`` runs ``at_ms`` into it."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for n, i in enumerate(range(0, len(audio), FRAME_BYTES)):
        if action is not None and at_ms is not None and n * 20 == at_ms:
            action()
        stream.push_audio(audio[i:i + FRAME_BYTES])
        await asyncio.sleep(max(0.0, t0 + (n + 1) * 0.02 - loop.time()))


async def one_utterance(channel: grpc.aio.Channel, settings: ClientSettings) -> str:
    """A short call leg on the shared channel: which recognizer decoded its one utterance."""
    events: list[tuple[float, StreamEvent]] = []
    async with RecognitionStream(settings, channel=channel) as stream:
        stream.push_audio(silence(200) + speech(500) + silence(800))  # paced by the stream, flushed at end
        stream.end_input()
        await asyncio.wait_for(consume(stream, events), 15)
    finals = [e for _t, e in events if isinstance(e, FinalReceived)]
    assert len(finals) == 1, events
    return finals[0].text.split()[0]


# ---- health checking: in-process servers whose health status the test sets ----


@pytest.fixture
async def two_servers() -> AsyncIterator[dict[str, RunningServer]]:
    servers: dict[str, RunningServer] = {}
    try:
        for name in ("alpha", "bravo"):
            servers[name] = await start_server(
                ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({KEY})),
                engine=NamedEngine(name), endpointer_factory=scripted_endpointer)
        yield servers
    finally:
        for running in servers.values():
            await running.stop(0.2)


@pytest.mark.timeout(90)
async def test_a_not_serving_recognizer_takes_no_new_sessions(two_servers: dict[str, RunningServer]) -> None:
    alpha, bravo = two_servers["alpha"], two_servers["bravo"]
    settings = pool_settings(alpha.port, bravo.port)
    channel = open_channel(settings)
    try:
        async def round_of(n: int) -> list[str]:
            return list(await asyncio.gather(*(one_utterance(channel, settings) for _ in range(n))))

        # Calls made while the channel is still connecting all go to the first recognizer that
        # answers; a running voicebot's channel is long connected when calls come.
        await channel.channel_ready()
        await asyncio.sleep(0.5)
        both = await round_of(6)
        assert sorted(set(both)) == ["alpha", "bravo"], both  # round-robin spreads the sessions

        await alpha.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        await asyncio.sleep(0.3)  # the health watch stream brings the change to the channel
        assert await round_of(6) == ["bravo"] * 6

        await alpha.health.set("", health_pb2.HealthCheckResponse.SERVING)
        await asyncio.sleep(0.3)
        assert sorted(set(await round_of(6))) == ["alpha", "bravo"]
    finally:
        await channel.close(None)


@pytest.mark.timeout(90)
async def test_a_draining_recognizers_call_moves_to_the_other(two_servers: dict[str, RunningServer]) -> None:
    """SIGTERM on ``voicebot stt-server`` is ``stop(grace_s)``: NOT_SERVING at once, open streams
    cut at the end of the grace. The call's stream goes on on the other recognizer."""
    settings = pool_settings(*(s.port for s in two_servers.values()))
    channel = open_channel(settings)
    events: list[tuple[float, StreamEvent]] = []
    try:
        async with RecognitionStream(settings, channel=channel, call_id="drain-call") as stream:
            consumer = asyncio.create_task(consume(stream, events))
            await feed(stream, silence(300) + speech(800) + silence(1200))
            first = [e for _t, e in events if isinstance(e, FinalReceived)]
            assert len(first) == 1, events
            name = first[0].text.split()[0]
            other = next(n for n in two_servers if n != name)
            draining = asyncio.create_task(two_servers.pop(name).stop(0.5))
            await feed(stream, speech(1200) + silence(1200))
            await feed(stream, speech(800) + silence(1200))
            stream.end_input()
            await asyncio.wait_for(consumer, 20)
            await draining
        finals = [e for _t, e in events if isinstance(e, FinalReceived)]
        assert [f.text for f in finals] == [f"{name} world", f"{other} world", f"{other} world"], events
        for final, start_ms in zip(finals, [300, 2300, 4700], strict=True):
            assert abs(final.start_ms - start_ms) <= 100, finals
    finally:
        await channel.close(None)


# ---- failover: pool_server processes, one SIGKILLed mid-utterance ----


@dataclass
class ServerProcess:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def start_pool_server(name: str, *, timeout_s: float = 30.0) -> ServerProcess:
    proc = subprocess.Popen([sys.executable, "-m", "tests.stt.pool_server", name], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while time.monotonic() < deadline and not line.startswith(b"PORT "):
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
    if not line.startswith(b"PORT "):
        proc.kill()
        raise AssertionError(f"pool_server {name} did not start (exit {proc.poll()})")
    return ServerProcess(name, proc, int(line.split()[1]))


@pytest.fixture
def server_processes() -> Iterator[dict[str, ServerProcess]]:
    servers: dict[str, ServerProcess] = {}
    try:
        for name in ("alpha", "bravo"):
            servers[name] = start_pool_server(name)
        yield servers
    finally:
        for server in servers.values():
            server.kill()


@pytest.mark.timeout(90)
async def test_a_killed_recognizers_call_resumes_on_the_other(
        server_processes: dict[str, ServerProcess]) -> None:
    settings = pool_settings(*(s.port for s in server_processes.values()))
    channel = open_channel(settings)
    events: list[tuple[float, StreamEvent]] = []
    killed: list[float] = []
    try:
        async with RecognitionStream(settings, channel=channel, call_id="pool-call") as stream:
            consumer = asyncio.create_task(consume(stream, events))
            # Utterance 1 at 300..1100 ms: its final says which recognizer holds the session.
            await feed(stream, silence(300) + speech(800) + silence(1200))
            first = [e for _t, e in events if isinstance(e, FinalReceived)]
            assert len(first) == 1, events
            serving = server_processes[first[0].text.split()[0]]
            survivor = next(s for s in server_processes.values() if s is not serving)

            def kill() -> None:
                killed.append(asyncio.get_running_loop().time())
                serving.kill()

            # Utterance 2 at 2300..3500 ms; its recognizer is SIGKILLed 600 ms into it.
            await feed(stream, speech(1200) + silence(1200), at_ms=600, action=kill)
            # Utterance 3 at 4700..5500 ms.
            await feed(stream, speech(800) + silence(1200))
            stream.end_input()
            await asyncio.wait_for(consumer, 20)

        finals = [e for _t, e in events if isinstance(e, FinalReceived)]
        # Every utterance exactly once, on its own span of the call timeline: the one cut by the
        # kill was replayed from the last final and recognized whole by the survivor.
        assert [f.text for f in finals] == [f"{serving.name} world", f"{survivor.name} world",
                                            f"{survivor.name} world"], events
        for final, (start_ms, end_ms) in zip(finals, [(300, 1100), (2300, 3500), (4700, 5500)], strict=True):
            assert abs(final.start_ms - start_ms) <= 100 and abs(final.end_ms - end_ms) <= 150, finals
        opened = [(t, e) for t, e in events if isinstance(e, SessionOpened)]
        assert [e.reason for _t, e in opened] == ["start", "reconnect"], events
        assert finals[1].session_id == finals[2].session_id == opened[1][1].session_id
        failover_s = opened[1][0] - killed[0]
        print(f"\nfailover: kill -> session answered by the survivor in {failover_s * 1000:.0f} ms")
        assert failover_s < 3.0

        # A new call on the same channel goes to the survivor at once.
        assert await one_utterance(channel, settings) == survivor.name
    finally:
        await channel.close(None)
        with contextlib.suppress(Exception):
            for server in server_processes.values():
                server.kill()
