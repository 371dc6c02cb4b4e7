"""Recording through the pipeline (CallControl side) on a leg whose media is the real RTP session
core, ticked by hand: the prompts the dialog plays reach the robot's channel exactly as sent (a
barge-in cut included), pause_recording/resume_recording silence both channels and mark the
stretch, the prompt marks carry the dialog's prompt_seq and text, and recording is off unless asked."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from tests.call.media_leg import MediaLeg as BaseLeg
from voicebot.call.pipeline import CallParts, CallPipeline
from voicebot.call.recording import RecordingSettings, TimelineMark
from voicebot.config import load_config
from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.loader import load_dialplan
from voicebot.media.frames import Frame, FrameKind
from voicebot.records import CallRecordStore
from voicebot.stt.client import ClientSettings

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).resolve().parents[2] / "dialplans" / "demo.yaml")


class MediaLeg(BaseLeg):
    """The recording tests' leg: every tick the caller sends a flat level."""

    call_id = "rec-1@test"

    def tick(self, count: int, caller_level: int = 100) -> None:
        for _ in range(count):
            self.session.tick()
            played = self.session.last_played
            if self.tap is not None:
                pcm = np.full(160, caller_level, dtype="<i2").tobytes()
                if played is None:
                    self.tap(Frame(FrameKind.AUDIO, pcm), None, None, True)
                else:
                    self.tap(Frame(FrameKind.AUDIO, pcm), self._ids[played[0]], played[1], True)


class Renderer:
    async def render(self, prompt: PlayPrompt) -> bytes:
        return np.full(160 * 10, 1000 * prompt.prompt_seq, dtype="<i2").tobytes()  # 200 ms


def make(tmp_path: Path, *, record_calls: bool, record: bool | None = None
         ) -> tuple[CallPipeline, MediaLeg, CallRecordStore]:
    config = load_config(None, env={}, overrides={})
    settings = ClientSettings.from_config(config.recognizer, target="127.0.0.1:1", api_key="k")
    store = CallRecordStore(tmp_path / "calls.db")
    parts = CallParts(records=store, stt_settings=settings, stt_channel=None, renderer=Renderer(),
                      recording=RecordingSettings(tmp_path / "rec"), record_calls=record_calls)
    leg = MediaLeg()
    pipeline = CallPipeline(parts, leg, DEMO, {}, record=record)  # type: ignore[arg-type]
    pipeline.outcome.answered = True
    return pipeline, leg, store


async def play(pipeline: CallPipeline, seq: int, text: str) -> None:
    """What the runner's prompt lane does: render through the pipeline's renderer, then play."""
    prompt = PlayPrompt(seq, text, None, "en-us", True)
    pcm = await pipeline.renderer.render(prompt)
    await pipeline.play_prompt(pcm, prompt_seq=seq, barge_in=True)


async def test_pause_and_resume_silence_both_channels_and_mark_the_stretch(tmp_path: Path) -> None:
    pipeline, leg, store = make(tmp_path, record_calls=True)
    try:
        assert pipeline.start_recording() and not pipeline.start_recording()
        recording = pipeline.recording
        assert recording is not None
        leg.tick(5)
        await play(pipeline, 1, "Say your card number.")
        leg.tick(10)  # the whole 200 ms prompt
        await pipeline.recording_control("pause")
        leg.tick(25, caller_level=4321)  # the caller says the card number
        await pipeline.recording_control("resume")
        await play(pipeline, 2, "Thank you.")
        leg.tick(4)
        assert 2 in await pipeline.stop_prompt()  # barge-in after 80 ms
        leg.tick(6)
        assert not pipeline.resume_recording()  # not paused
        pipeline.stop_recording()
        pipeline.stop_recording()  # once only
        leg.tick(3)  # after the stop nothing more is written
    finally:
        await store.aclose()
    assert recording.marks == [
        TimelineMark("prompt", 100, 300, 1, "Say your card number."),
        TimelineMark("pause", 300, 800),
        TimelineMark("prompt", 800, 880, 2, "Thank you."),
    ]
    with wave.open(str(recording.path)) as w:
        assert w.getnchannels() == 2 and w.getnframes() == 50 * 160
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    left, right = pcm[0::2], pcm[1::2]
    ms = 8  # samples per ms
    assert not left[300 * ms:800 * ms].any() and not right[300 * ms:800 * ms].any()  # paused
    assert (left[:300 * ms] == 100).all() and (left[800 * ms:] == 100).all()
    assert right.tolist() == ([0] * 100 * ms + [1000] * 200 * ms + [0] * 500 * ms + [2000] * 80 * ms
                              + [0] * 120 * ms)


async def test_recording_is_off_unless_configured_or_asked(tmp_path: Path) -> None:
    pipeline, _, store = make(tmp_path, record_calls=False)
    try:
        assert pipeline.record_audio is False
        assert not pipeline.pause_recording() and not pipeline.resume_recording()
        other, _, other_store = make(tmp_path / "b", record_calls=False, record=True)
        assert other.record_audio is True  # the per-call flag (a dialplan's choice) wins
        await other_store.aclose()
        configured, _, configured_store = make(tmp_path / "c", record_calls=True, record=False)
        assert configured.record_audio is False
        await configured_store.aclose()
        pipeline.outcome.answered = False
        assert not pipeline.start_recording()  # never before the answer
    finally:
        await store.aclose()
    assert not (tmp_path / "rec").exists()
