"""The runner with the real prompt path: espeak-ng behind the on-disk cache, a fake pipeline."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.dialog.fakes import FakeClock, until
from voicebot.dialog.expect import Expectation
from voicebot.dialog.loader import load_dialplan
from voicebot.dialog.runner import DialogRunner
from voicebot.prompts import Prompts
from voicebot.tts import CachingSynthesizer, EspeakSynthesizer, PcmAudio

pytestmark = [
    pytest.mark.adapter,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (scripts/setup)"),
]

REMINDER = load_dialplan(Path(__file__).parents[2] / "dialplans" / "reminder.yaml")


class AudioCall:
    def __init__(self) -> None:
        self.runner: DialogRunner | None = None
        self.played: list[tuple[int, PcmAudio]] = []
        self.hung_up = asyncio.Event()
        self.records: dict[str, str] = {}

    async def play_prompt(self, pcm16: bytes, *, prompt_seq: int, barge_in: bool) -> None:
        self.played.append((prompt_seq, PcmAudio(pcm16)))

    async def stop_prompt(self) -> list[int]:
        return []

    async def start_listening(self, expectation: Expectation) -> None: ...

    async def stop_listening(self) -> None: ...

    async def transfer(self, uri: str) -> None: ...

    async def hangup(self, reason: str) -> None:
        self.hung_up.set()

    async def record(self, key: str, value: str) -> None:
        self.records[key] = value

    def finish(self) -> None:
        assert self.runner is not None
        for seq, _audio in self.played:
            self.runner.prompt_finished(seq)


async def _one_call(renderer: Prompts) -> list[float]:
    call = AudioCall()
    runner = DialogRunner(REMINDER, call, renderer, clock=FakeClock())
    call.runner = runner
    task = asyncio.create_task(runner.run(variables={"name": "Alex"}))
    await until(lambda: len(call.played) == 1, timeout_s=30)
    runner.final("Yes, I will be there.")
    await until(lambda: len(call.played) == 2, timeout_s=30)
    call.finish()
    await asyncio.wait_for(call.hung_up.wait(), 30)
    summary = await asyncio.wait_for(task, 30)
    assert summary.record == call.records == {"confirmation": "confirmed"}
    for _seq, audio in call.played:
        assert audio.sample_rate_hz == 8000
        assert audio.peak() > 3000
    return [audio.duration_s for _seq, audio in call.played]


async def test_reminder_prompts_are_synthesized_cached_and_played(tmp_path: Path) -> None:
    cache = CachingSynthesizer(EspeakSynthesizer(), tmp_path / "tts")
    renderer = Prompts(cache)
    durations = [await _one_call(renderer), await _one_call(renderer)]  # the second from the cache
    assert durations[0] == durations[1]
    assert durations[0][0] > 5.0  # the whole question, with the name filled in
    assert cache.misses == 2 and cache.hits == 2
