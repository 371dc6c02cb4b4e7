"""Test doubles for the runner's seams: a call pipeline, a prompt renderer and a clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.expect import Expectation
from voicebot.dialog.runner import DialogRunner
from voicebot.errors import VoicebotError


class TextRenderer:
    """Renders a prompt's text as its UTF-16 bytes, so the fake pipeline can tell which prompt it got."""

    def __init__(self) -> None:
        self.calls = 0

    async def render(self, prompt: PlayPrompt) -> bytes:
        self.calls += 1
        await asyncio.sleep(0)
        return (prompt.text or "").encode("utf-16-le")


class FakeClock:
    """Time moves only when the test says so; ``sleep_until`` wakes on :meth:`advance`."""

    def __init__(self) -> None:
        self.t = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_s(self) -> float:
        return self.t

    async def sleep_until(self, deadline_s: float) -> None:
        if deadline_s <= self.t:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((deadline_s, future))
        await future

    def deadlines(self) -> list[float]:
        """When the sleepers still waiting (timers not cancelled) wake, soonest first."""
        return sorted(deadline for deadline, future in self._sleepers if not future.done())

    def advance(self, seconds: float) -> None:
        self.t += seconds
        for entry in list(self._sleepers):
            deadline, future = entry
            if deadline <= self.t:
                self._sleepers.remove(entry)
                if not future.done():
                    future.set_result(None)


@dataclass
class FakeCall:
    """Plays the call pipeline: keeps a playout queue and logs every request as a string."""

    runner: DialogRunner | None = None
    log: list[str] = field(default_factory=list)
    queue: list[tuple[int, str]] = field(default_factory=list)
    transfer_error: str | None = None
    on_stop: Callable[[], None] | None = None
    expectations: list[Expectation] = field(default_factory=list)

    async def play_prompt(self, pcm16: bytes, *, prompt_seq: int, barge_in: bool) -> None:
        text = pcm16.decode("utf-16-le")
        self.queue.append((prompt_seq, text))
        self.log.append(f"play:{text}")

    async def stop_prompt(self) -> list[int]:
        self.log.append("stop")
        stopped, self.queue = self.queue, []
        return [seq for seq, _text in stopped]  # the runner reports them finished

    async def start_listening(self, expectation: Expectation) -> None:
        self.log.append("listen")
        self.expectations.append(expectation)

    async def stop_listening(self) -> None:
        self.log.append("mute")

    async def transfer(self, uri: str) -> None:
        self.log.append(f"transfer:{uri}")
        if self.transfer_error is not None:
            raise VoicebotError(self.transfer_error)

    async def hangup(self, reason: str) -> None:
        self.log.append(f"hangup:{reason}")

    async def record(self, key: str, value: str) -> None:
        self.log.append(f"record:{key}={value}")

    async def recording_control(self, action: Literal["pause", "resume"]) -> None:
        self.log.append(f"recording:{action}d")

    def finish_prompts(self) -> None:
        """Everything queued has played out."""
        assert self.runner is not None
        played, self.queue = self.queue, []
        for seq, _text in played:
            self.runner.prompt_finished(seq)


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Let the runner work until ``condition`` holds (fails the test after ``timeout_s``)."""
    async with asyncio.timeout(timeout_s):
        # Conditions span the runner, the machine and the fake call; no single Event covers them.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)
