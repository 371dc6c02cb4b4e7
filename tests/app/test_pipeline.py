"""The call pipeline as the dialog's CallControl, on a fake leg: prompt ids travel to the leg, a
stop returns the stopped prompts to the runner (no call back into it), hang-up and records."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicebot.call.pipeline import CallParts, CallPipeline
from voicebot.config import load_config
from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.expect import Expectation
from voicebot.dialog.loader import load_dialplan
from voicebot.records import CallRecordStore
from voicebot.stt.client import ClientSettings

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).resolve().parents[2] / "dialplans" / "demo.yaml")


class FakeLeg:
    """The part of CallLeg the CallControl side of the pipeline uses."""

    call_id = "call-1@test"
    direction = "inbound"
    from_uri = "sip:+15550001111@127.0.0.1"
    to_uri = "sip:bot@127.0.0.1"

    def __init__(self) -> None:
        self.is_ended = False
        self.played: list[tuple[int | None, bytes]] = []
        self.flushes = 0
        self.hangups = 0

    def play(self, pcm16_8k: bytes, *, prompt_id: int | None = None) -> int:
        self.played.append((prompt_id, pcm16_8k))
        assert prompt_id is not None
        return prompt_id

    def flush(self) -> int:
        self.flushes += 1
        return 1

    def hangup(self, *, cause: str | None = None) -> None:
        self.hangups += 1


class SilentRenderer:
    async def render(self, prompt: PlayPrompt) -> bytes:
        return bytes(320)


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


def make(tmp_path: Path) -> tuple[CallPipeline, FakeLeg, CallRecordStore]:
    config = load_config(None, env={}, overrides={})
    settings = ClientSettings.from_config(config.recognizer, target="127.0.0.1:1", api_key="k")
    store = CallRecordStore(tmp_path / "calls.db")
    parts = CallParts(records=store, stt_settings=settings, stt_channel=None, renderer=SilentRenderer(),
                      clock=Clock())
    leg = FakeLeg()
    pipeline = CallPipeline(parts, leg, DEMO, {})  # type: ignore[arg-type]
    return pipeline, leg, store


async def test_prompts_go_to_the_leg_under_the_dialogs_prompt_seq(tmp_path: Path) -> None:
    pipeline, leg, store = make(tmp_path)
    try:
        await pipeline.start_listening(Expectation())
        await pipeline.play_prompt(b"\x01\x00" * 160, prompt_seq=3, barge_in=True)
        await pipeline.play_prompt(b"\x02\x00" * 160, prompt_seq=4, barge_in=False)
        assert [prompt_id for prompt_id, _ in leg.played] == [3, 4]
        assert leg.played[1][1] == b"\x02\x00" * 160
        # A stop flushes the leg once and hands the stopped prompts back, in order, to the runner.
        assert await pipeline.stop_prompt() == [3, 4]
        assert leg.flushes == 1
        assert await pipeline.stop_prompt() == []
        assert pipeline.outcome.barge_in_ms == []  # nobody spoke: no barge-in to measure
    finally:
        await store.aclose()


async def test_hangup_tells_the_leg_and_keeps_the_robots_reason(tmp_path: Path) -> None:
    pipeline, leg, store = make(tmp_path)
    try:
        await pipeline.hangup("dialplan hangup")
        assert leg.hangups == 1
        await pipeline.record("outcome", "goodbye")  # queued on the record lane, never awaited
    finally:
        await store.aclose()


async def test_a_prompt_after_the_leg_ended_is_not_played(tmp_path: Path) -> None:
    pipeline, leg, store = make(tmp_path)
    try:
        leg.is_ended = True
        await pipeline.play_prompt(bytes(320), prompt_seq=1, barge_in=True)
        assert leg.played == []
        assert await pipeline.stop_prompt() == []
        assert leg.flushes == 0
    finally:
        await store.aclose()



def test_final_readings_pass_alternatives_and_confidences_only_when_rescored() -> None:
    from voicebot.call.pipeline import final_readings
    from voicebot.stt.client import FinalReceived

    lone = FinalReceived("operate her please", None, 0, 900, "s1", confidence=0.0)
    assert final_readings(lone) == {}  # a cloud final with confidence 0 changes nothing
    rescored = FinalReceived("operator", None, 0, 900, "s1", confidence=0.81,
                             alternatives=(("operate her please", 0.42),))
    assert final_readings(rescored) == {"alternatives": ("operate her please",), "confidence": 0.81,
                                        "alternative_confidences": (0.42,)}


@pytest.mark.adapter
async def test_speech_while_listening_tells_the_dialog_the_caller_is_talking(tmp_path: Path) -> None:
    """No prompt plays and the dialog listens: the caller's speech reaches the runner as speech
    activity (its no-input timer waits), not only while a barge-in prompt plays."""
    from voicebot.testing.speech import silence, telephone_speech

    pipeline, _leg, store = make(tmp_path)
    started: list[float | None] = []
    pipeline.runner.speech_started = lambda at_s=None: started.append(at_s)  # type: ignore[method-assign]
    try:
        await pipeline.start_listening(Expectation())
        pcm = silence(400) + telephone_speech("I would like to check my balance please") + silence(400)
        for i, start in enumerate(range(0, len(pcm) - 319, 320)):
            pipeline.on_caller_audio(pcm[start:start + 320], 100.0 + i * 0.02)
        assert len(started) >= 3, started  # repeatedly while the caller talks
        assert started[0] is not None and started[0] > 100.3
        await pipeline.stop_listening()
        before = len(started)
        for i, start in enumerate(range(0, len(pcm) - 319, 320)):
            pipeline.on_caller_audio(pcm[start:start + 320], 200.0 + i * 0.02)
        assert len(started) == before  # not listening: speech is not the dialog's business
    finally:
        await store.aclose()


def test_a_lone_finals_confidence_reaches_the_dialog_only_from_a_trusted_recognizer() -> None:
    from voicebot.call.pipeline import final_readings
    from voicebot.stt.client import FinalReceived

    digits = FinalReceived("10600000", None, 0, 900, "s1", confidence=0.03)
    assert final_readings(digits) == {}
    assert final_readings(digits, trust_confidence=True) == {"confidence": 0.03}
    assert final_readings(FinalReceived("hi", None, 0, 900, "s1"), trust_confidence=True) == {}
