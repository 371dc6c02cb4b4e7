"""Streamed prompts in the call (voicebot.call.streaming and the pipeline's CallControl side), on a
leg whose media is the real RTP session core ticked by hand: the rest of a streamed prompt plays
under the same prompt id right after its first sentence, the dialog hears of the prompt's end once
(after its last chunk), a following prompt waits for the streamed one, and a barge-in flushes the
leg and closes the stream (its synthesis stops)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest
import structlog

from tests.call.media_leg import MediaLeg as BaseLeg
from voicebot.call.pipeline import CallParts, CallPipeline
from voicebot.call.recording import RecordingSettings, TimelineMark
from voicebot.call.streaming import PromptFeeds, StreamingRenderer
from voicebot.config import load_config
from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.loader import load_dialplan
from voicebot.media.frames import BYTES_PER_FRAME, Frame, FrameKind
from voicebot.prompts import PromptAudio
from voicebot.records import CallRecordStore
from voicebot.rtp.session import PlayoutFinished
from voicebot.stt.client import ClientSettings
from voicebot.tts.errors import SynthesisError

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).resolve().parents[2] / "dialplans" / "demo.yaml")


def frames(count: int, level: int) -> bytes:
    return np.full(160 * count, level, dtype="<i2").tobytes()


class Sentences:
    """A renderer that opens prompts: prompt N's chunks are 3 sentences of 5 frames at levels
    N*1000 + 1, 2, 3; sentences after the first wait for ``gate``. ``streams`` = False: whole."""

    def __init__(self, *, streams: bool = True, fail_after_first: bool = False) -> None:
        self.gate = asyncio.Event()
        self.streams = streams
        self.fail_after_first = fail_after_first
        self.closed: list[int] = []
        self.rendered: list[tuple[int, int]] = []

    def chunks(self, seq: int) -> list[bytes]:
        return [frames(5, seq * 1000 + i) for i in (1, 2, 3)]

    async def render(self, prompt: PlayPrompt) -> bytes:
        return b"".join(self.chunks(prompt.prompt_seq))

    async def open(self, prompt: PlayPrompt) -> PromptAudio:
        if not self.streams:
            return PromptAudio(await self.render(prompt))
        stream = self._stream(prompt.prompt_seq)
        return PromptAudio(await anext(stream), stream)  # as Prompts.open: the stream is under way

    async def _stream(self, seq: int) -> AsyncGenerator[bytes, None]:
        try:
            yield self.chunks(seq)[0]
            for i, chunk in enumerate(self.chunks(seq)[1:], start=2):
                await self.gate.wait()
                if self.fail_after_first:
                    raise SynthesisError("the engine crashed")
                self.rendered.append((seq, i))
                yield chunk
        finally:
            self.closed.append(seq)


class MediaLeg(BaseLeg):
    """The streaming tests' leg: it keeps what each tick sent."""

    call_id = "stream-1@test"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[int, bytes]] = []  # (prompt id, 20 ms of PCM) per tick with audio

    def tick(self, count: int) -> list[int]:
        """``count`` media ticks; the prompt ids whose playout finished meanwhile."""
        finished = []
        for _ in range(count):
            self.session.tick()
            caller = Frame(FrameKind.AUDIO, bytes(BYTES_PER_FRAME))
            if self.session.last_played is not None:
                playout_id, pcm = self.session.last_played
                self.sent.append((self._ids[playout_id], pcm))
                if self.tap is not None:
                    self.tap(caller, self._ids[playout_id], pcm, True)
            elif self.tap is not None:
                self.tap(caller, None, None, True)
            finished += [self._ids[e.prompt_id] for e in self.session.events()
                         if isinstance(e, PlayoutFinished)]
        return finished


def make(renderer: Sentences, recordings: Path | None = None) -> tuple[CallPipeline, MediaLeg]:
    config = load_config(None, env={}, overrides={})
    settings = ClientSettings.from_config(config.recognizer, target="127.0.0.1:1", api_key="k")
    parts = CallParts(records=CallRecordStore(":memory:"), stt_settings=settings, stt_channel=None,
                      renderer=renderer,
                      recording=RecordingSettings(recordings) if recordings is not None else None)
    leg = MediaLeg()
    pipeline = CallPipeline(parts, leg, DEMO, {})  # type: ignore[arg-type]
    pipeline.outcome.answered = True
    return pipeline, leg


async def play(pipeline: CallPipeline, seq: int) -> None:
    """What the runner's prompt lane does: render through the pipeline's renderer, then play."""
    prompt = PlayPrompt(seq, f"prompt {seq}", None, "en-us", True)
    pcm = await pipeline.renderer.render(prompt)
    await pipeline.play_prompt(pcm, prompt_seq=seq, barge_in=True)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_streamed_prompt_plays_whole_under_its_one_prompt_id() -> None:
    renderer = Sentences()
    pipeline, leg = make(renderer)
    await play(pipeline, 1)
    leg.tick(2)  # the first sentence is on the wire before the rest is rendered
    assert renderer.rendered == [] and [seq for seq, _ in leg.sent] == [1, 1]
    renderer.gate.set()
    await settle()
    leg.tick(20)
    assert {seq for seq, _ in leg.sent} == {1}
    assert b"".join(pcm for _, pcm in leg.sent) == b"".join(renderer.chunks(1))  # no gap, no pad
    assert renderer.closed == [1]


async def test_the_next_prompt_waits_for_the_streamed_one_to_arrive_in_full() -> None:
    renderer = Sentences()
    pipeline, leg = make(renderer)
    await play(pipeline, 1)
    second = asyncio.ensure_future(play(pipeline, 2))  # the runner's lane moves on to prompt 2
    await settle()
    assert not second.done()  # prompt 2 would otherwise play between prompt 1's sentences
    renderer.gate.set()
    await asyncio.wait_for(second, 1)
    await settle()
    leg.tick(40)
    expected = b"".join(renderer.chunks(1) + renderer.chunks(2))
    assert b"".join(pcm for _, pcm in leg.sent) == expected
    assert [seq for seq, _ in leg.sent] == [1] * 15 + [2] * 15


async def test_barge_in_flushes_the_leg_and_stops_the_streams_synthesis() -> None:
    renderer = Sentences()
    pipeline, leg = make(renderer)
    await play(pipeline, 1)
    leg.tick(2)
    assert await pipeline.stop_prompt() == [1]
    await settle()
    assert renderer.closed == [1]  # the stream was closed: the voice renders no more of it
    renderer.gate.set()
    await settle()
    leg.tick(10)
    assert renderer.rendered == [] and len(leg.sent) == 2 and not leg.session.playing


async def test_the_recordings_timeline_has_one_prompt_mark_for_a_streamed_prompt(tmp_path: Path) -> None:
    renderer = Sentences()
    pipeline, leg = make(renderer, tmp_path / "rec")
    assert pipeline.start_recording()
    recording = pipeline.recording
    assert recording is not None
    leg.tick(5)
    await play(pipeline, 1)
    leg.tick(2)
    renderer.gate.set()
    await settle()
    leg.tick(20)
    pipeline.stop_recording()
    # One prompt, its id and text, from its first frame to its last (3 sentences x 5 frames).
    assert recording.marks == [TimelineMark("prompt", 100, 400, 1, "prompt 1")]


async def test_a_whole_prompt_is_played_as_before() -> None:
    renderer = Sentences(streams=False)
    pipeline, leg = make(renderer)
    await play(pipeline, 1)
    leg.tick(20)
    assert b"".join(pcm for _, pcm in leg.sent) == b"".join(renderer.chunks(1))
    assert renderer.closed == []


# ---- PromptFeeds: when a streamed prompt has finished ----


async def feed_of(renderer: Sentences, seq: int = 1) -> tuple[PromptFeeds, MediaLeg, list[int]]:
    leg = MediaLeg()
    finished: list[int] = []
    feeds = PromptFeeds(lambda pcm, prompt_seq: leg.play(pcm, prompt_id=prompt_seq), finished.append)
    streaming = StreamingRenderer(renderer)
    first = await streaming.render(PlayPrompt(seq, "x", None, "en-us", True))
    leg.play(first, prompt_id=seq)
    rest = streaming.take_rest(seq)
    assert rest is not None and streaming.take_rest(seq) is None
    feeds.start(seq, rest)
    return feeds, leg, finished


def report(feeds: PromptFeeds, finished: list[int], played: list[int]) -> None:
    """The pipeline's PlaybackFinished handling: a prompt's end unless a streamed one goes on."""
    for prompt_id in played:
        if not feeds.chunk_played(prompt_id):
            finished.append(prompt_id)


async def test_a_streamed_prompt_finishes_once_after_its_last_chunk() -> None:
    renderer = Sentences()
    feeds, leg, finished = await feed_of(renderer)
    report(feeds, finished, leg.tick(5))  # the first sentence has played; the rest is not rendered
    assert finished == [] and 1 in feeds
    renderer.gate.set()
    await settle()
    report(feeds, finished, leg.tick(9))
    assert finished == []
    report(feeds, finished, leg.tick(1))  # the last frame of the last sentence
    assert finished == [1] and 1 not in feeds
    report(feeds, finished, leg.tick(10))
    assert finished == [1]


async def test_an_engine_error_mid_stream_ends_the_prompt_after_what_was_played() -> None:
    renderer = Sentences(fail_after_first=True)
    feeds, leg, finished = await feed_of(renderer)
    report(feeds, finished, leg.tick(5))
    assert finished == []  # the stream has not ended yet: the prompt goes on
    with structlog.testing.capture_logs() as logs:
        renderer.gate.set()
        await settle()
    assert finished == [1]  # all it had was played: the feed reports the end itself
    assert [e["error"] for e in logs if e["event"] == "call.prompt.stream_failed"] == ["the engine crashed"]
    assert renderer.closed == [1]
    await feeds.drained()


async def test_closing_the_feeds_closes_every_stream() -> None:
    renderer = Sentences()
    feeds, _leg, finished = await feed_of(renderer)
    await feeds.aclose()  # the call ended
    assert renderer.closed == [1] and finished == [] and 1 not in feeds
    await asyncio.wait_for(feeds.drained(), 1)
    assert len(b"".join(renderer.chunks(1))) % BYTES_PER_FRAME == 0
