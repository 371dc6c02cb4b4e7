"""Issue 5: six calls whose speech ends in the same 20 ms, against the real recognizer.

Six :class:`~voicebot.stt.client.RecognitionStream` call legs on one shared channel (as
``voicebot run`` has them) talk to the embedded server (``start_server`` on this event loop, real
Whisper base, two workers). Each is fed 20 ms frames at real time: line hiss, the same espeak-ng
sentence after the telephone path, hiss, end of input. Right after the speech ends, when six finals
queue for two workers, the whole process is frozen for longer than the server's idle limit (the
starvation bench/stt_sync_bench.py and the call benchmark saw on a loaded machine). Every leg must
still get its final, and no session may be closed by the server (DEADLINE_EXCEEDED or otherwise).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    RecognitionError,
    RecognitionStream,
    SessionClosed,
    open_channel,
)

pytestmark = pytest.mark.model

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * 16
CALLS = 6
IDLE_LIMIT_S = 1.5
SENTENCE = "My account balance, please."


def hiss(duration_ms: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return b"".join(int(rng.gauss(0, 30)).to_bytes(2, "little", signed=True) for _ in range(duration_ms * 8))


@pytest.fixture(scope="module")
def engine() -> Any:
    from voicebot.stt.model import load_engine

    return load_engine("base", workers=2)


async def test_six_simultaneous_speech_ends_each_get_their_final(engine: Any) -> None:
    from voicebot.stt.server import ServerConfig, start_server
    from voicebot.stt.session import SessionConfig, SessionLimits
    from voicebot.testing.speech import SpeechToolMissing, telephone_speech

    try:
        speech = telephone_speech(SENTENCE)
    except SpeechToolMissing as exc:
        pytest.skip(str(exc))
    lead_ms, tail_ms = 2000, 4000
    audio = hiss(lead_ms, 1) + speech + hiss(tail_ms, 2)
    speech_end_frame = (lead_ms + len(speech) // 16) // FRAME_MS
    running = await start_server(
        ServerConfig(listen="127.0.0.1:0", allow_no_auth=True, workers=2,
                     session=SessionConfig(limits=SessionLimits(idle_timeout_s=IDLE_LIMIT_S))),
        engine=engine)
    settings = ClientSettings(target=f"127.0.0.1:{running.port}")
    channel = open_channel(settings)
    streams = [RecognitionStream(settings, channel=channel, call_id=f"sync-{i}") for i in range(CALLS)]
    finals: dict[int, list[str]] = {i: [] for i in range(CALLS)}
    server_closes: list[str] = []
    errors: list[str] = []

    async def listen(i: int, stream: RecognitionStream) -> None:
        try:
            async for event in stream:
                if isinstance(event, FinalReceived):
                    finals[i].append(event.text)
                elif isinstance(event, SessionClosed) and event.reason.startswith("server:") \
                        and event.reason != "server: OK":
                    server_closes.append(event.reason)
        except RecognitionError as exc:
            errors.append(exc.message)

    async def feed() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n, offset in enumerate(range(0, len(audio), FRAME_BYTES)):
            await asyncio.sleep(max(0.0, start + n * FRAME_MS / 1000 - loop.time()))
            for stream in streams:  # the same frame to every leg: the speech ends together
                stream.push_audio(audio[offset:offset + FRAME_BYTES])
            if n == speech_end_frame + 20:  # the pause is under way, the finals are queued
                time.sleep(IDLE_LIMIT_S * 1.5)  # noqa: ASYNC251  (the whole process starves)
        for stream in streams:
            stream.end_input()

    try:
        for stream in streams:
            stream.start()
        async with asyncio.timeout(60):
            await asyncio.gather(feed(), *(listen(i, s) for i, s in enumerate(streams)))
    finally:
        for stream in streams:
            await stream.aclose()
        await channel.close(None)
        await running.stop(1.0)
    assert not server_closes, f"the server closed sessions of clients that kept sending: {server_closes}"
    assert not errors, errors
    for i in range(CALLS):
        assert len(finals[i]) == 1, f"leg {i}: expected exactly one final, got {finals[i]}"
        assert "account" in finals[i][0].lower(), f"leg {i}: {finals[i][0]!r} is not {SENTENCE!r}"
