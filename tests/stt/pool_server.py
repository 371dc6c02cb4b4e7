"""A real recognition server with the stand-in engine, in its own process, for the pool tests.

``python -m tests.stt.pool_server NAME``: ``start_server`` (transport, auth, health, sessions, pool)
on 127.0.0.1:0 with test_server.py's deterministic engine and scripted endpointer, except that every
transcript is ``"<NAME> world"``, so a test sees which recognizer of a pool decoded an utterance.
Prints ``PORT <n>`` once serving, then runs until killed (the tests SIGKILL it).
"""

from __future__ import annotations

import asyncio
import sys

import numpy as np
import numpy.typing as npt

from tests.stt.test_server import KEY, FakeEngine, scripted_endpointer
from voicebot.stt.engine import Hypothesis, WordTiming
from voicebot.stt.server import ServerConfig, start_server


class NamedEngine(FakeEngine):
    """The stand-in engine, signed: its words are ``NAME world``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.server_name = name

    def transcribe(self, audio: npt.NDArray[np.float32], *, language: str | None,
                   partial: bool) -> Hypothesis:
        hyp = super().transcribe(audio, language=language, partial=partial)
        if not hyp.words:
            return hyp
        first, second = hyp.words
        words = (WordTiming(self.server_name, first.start_ms, first.end_ms), second)
        return Hypothesis(f"{self.server_name} world", words, hyp.confidence, hyp.language)


async def main(name: str) -> None:
    running = await start_server(ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({KEY})),
                                 engine=NamedEngine(name), endpointer_factory=scripted_endpointer)
    print(f"PORT {running.port}", flush=True)
    await running.wait_closed()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
