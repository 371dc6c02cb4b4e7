"""Streamed prompts in a call: the first sentence of dynamic text plays while the rest is rendered.

Theory of operation. The dialog's prompt lane renders a prompt and then hands its PCM to the
pipeline (``render`` -> ``play_prompt``). :class:`StreamingRenderer` sits in that lane as the
renderer: when the prompt renderer can stream (:meth:`voicebot.prompts.Prompts.open`), ``render``
returns as soon as the first sentence's audio is ready and keeps the rest (an async iterator of PCM)
under the prompt's ``prompt_seq``; the pipeline's ``play_prompt`` plays that first audio as it
always does and gives the rest to :class:`PromptFeeds`, which plays each further chunk into the
same prompt's RTP playout (same ``prompt_id``, so the recording's timeline and the record see one
prompt) as the voice renders it. Cached prompts, audio files and voices that cannot stream come
back whole from ``open`` and are played exactly as before, with no feed.

A streamed prompt is finished for the dialog when its stream has ended AND its last chunk has been
played: the leg reports each chunk's end (``PlaybackFinished``), and :meth:`PromptFeeds.chunk_played`
swallows all but that last one. A following prompt is queued only after the streamed one's last
chunk (:meth:`PromptFeeds.drained`), so two prompts never interleave. Barge-in and hang-up cancel
the feed, which closes the stream and so stops its synthesis (:meth:`PromptFeeds.cancel_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from voicebot.clock import Clock, monotonic
from voicebot.dialog.events import PlayPrompt
from voicebot.dialog.runner import PromptRenderer
from voicebot.errors import VoicebotError

log = structlog.get_logger(logger_name=__name__)


class OpenedPrompt(Protocol):
    """What :meth:`voicebot.prompts.Prompts.open` returns (:class:`voicebot.prompts.PromptAudio`)."""

    @property
    def first(self) -> bytes: ...

    @property
    def rest(self) -> AsyncGenerator[bytes, None] | None: ...


@runtime_checkable
class OpeningRenderer(Protocol):
    """A prompt renderer that can hand a prompt over before all of it is rendered."""

    async def open(self, prompt: PlayPrompt) -> OpenedPrompt: ...


class StreamingRenderer:
    """The dialog's renderer in a call: the first audio of a streamed prompt, the rest kept for
    :meth:`take_rest` (module docstring). Renderers that cannot open prompts are used as they are."""

    def __init__(self, renderer: PromptRenderer, *, clock: Clock = monotonic) -> None:
        self.renderer = renderer
        self._clock = clock
        self._rest: dict[int, AsyncGenerator[bytes, None]] = {}

    async def render(self, prompt: PlayPrompt) -> bytes:
        renderer = self.renderer
        if not isinstance(renderer, OpeningRenderer):
            return await renderer.render(prompt)
        started_s = self._clock()
        opened = await renderer.open(prompt)
        if opened.rest is not None:
            # How long the prompt lane waited for the first sentence's audio (a cached prompt's
            # wait is a lookup); bench/tts_bench.py --call-path measures it on the wire.
            log.info("call.prompt.streamed", prompt_seq=prompt.prompt_seq,
                     first_audio_ms=round((self._clock() - started_s) * 1000, 1))
            # The runner plays what render returns before it awaits anything else, so the
            # pipeline takes this at once (take_rest); a stale one is closed, not leaked.
            stale = self._rest.pop(prompt.prompt_seq, None)
            if stale is not None:
                await stale.aclose()
            self._rest[prompt.prompt_seq] = opened.rest
        return opened.first

    def take_rest(self, prompt_seq: int) -> AsyncGenerator[bytes, None] | None:
        """The rest of prompt ``prompt_seq`` if it is being streamed; the caller owns it from now."""
        return self._rest.pop(prompt_seq, None)


@dataclass(slots=True)
class _Feed:
    task: asyncio.Task[None] | None = None
    queued: int = 1  # chunks handed to the leg and not yet reported played (the first one, at start)
    done: bool = False  # the stream has ended: no more chunks will come


class PromptFeeds:
    """The streamed prompts of one call that are still arriving (module docstring).

    ``play(pcm, prompt_seq)`` queues a chunk on the leg; ``finished(prompt_seq)`` is what the
    pipeline does when a prompt has played to its end (a stream that ended after its last chunk
    had already played out reports it from here)."""

    def __init__(self, play: Callable[[bytes, int], None], finished: Callable[[int], None]) -> None:
        self._play = play
        self._finished = finished
        self._feeds: dict[int, _Feed] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # feeds running or being cancelled
        self._idle = asyncio.Event()
        self._idle.set()

    def __contains__(self, prompt_seq: object) -> bool:
        return prompt_seq in self._feeds

    def start(self, prompt_seq: int, rest: AsyncGenerator[bytes, None]) -> None:
        """Feed ``rest`` into prompt ``prompt_seq``, whose first chunk the leg is playing now."""
        feed = _Feed()
        self._feeds[prompt_seq] = feed
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(self._feed(prompt_seq, feed, rest),
                                                      name=f"prompt-feed-{prompt_seq}")
        feed.task = task
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._feed_done(done, rest))

    def _feed_done(self, task: asyncio.Task[None], rest: AsyncGenerator[bytes, None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            # A feed cancelled before its first step never entered its ``aclosing``: close the
            # stream here (a no-op if it is closed already), so its synthesis stops all the same.
            closing = asyncio.get_running_loop().create_task(rest.aclose(), name=task.get_name() + "-close")
            self._tasks.add(closing)
            closing.add_done_callback(self._tasks.discard)

    async def _feed(self, prompt_seq: int, feed: _Feed, rest: AsyncGenerator[bytes, None]) -> None:
        try:
            async with contextlib.aclosing(rest):
                async for pcm in rest:
                    if pcm:
                        feed.queued += 1
                        self._play(pcm, prompt_seq)
        except Exception as exc:  # the stream ends itself on engine errors; this ends the prompt on others
            error = exc.message if isinstance(exc, VoicebotError) else repr(exc)
            log.warning("call.prompt.stream_failed", prompt_seq=prompt_seq, error=error)
        feed.done = True
        if all(f.done for f in self._feeds.values()):
            self._idle.set()
        if feed.queued <= 0 and self._feeds.get(prompt_seq) is feed:
            # Every chunk has played already (the stream ended without more audio): finished now.
            del self._feeds[prompt_seq]
            self._finished(prompt_seq)

    def chunk_played(self, prompt_seq: int) -> bool:
        """The leg finished playing one chunk of ``prompt_seq``: True if the prompt goes on (more
        chunks queued or to come: the pipeline ignores this report), False if it has ended or is
        not a streamed prompt (the pipeline handles the report as any prompt's end)."""
        feed = self._feeds.get(prompt_seq)
        if feed is None:
            return False
        feed.queued -= 1
        if feed.done and feed.queued <= 0:
            del self._feeds[prompt_seq]
            return False
        return True

    async def drained(self) -> None:
        """Wait until every streamed prompt has queued its last chunk (the next prompt goes after)."""
        await self._idle.wait()

    def cancel_all(self) -> None:
        """Barge-in or hang-up: stop every feed now, which closes its stream (stopping synthesis)
        as the task unwinds; the audio already queued is the leg's to flush."""
        for feed in self._feeds.values():
            if feed.task is not None:
                feed.task.cancel()
        self._feeds.clear()
        self._idle.set()

    async def aclose(self) -> None:
        """The call's end: cancel the feeds and wait until their streams are closed."""
        self.cancel_all()
        while self._tasks:  # feeds, then the closing of streams whose feed never started
            await asyncio.wait(set(self._tasks))


__all__ = ["OpeningRenderer", "PromptFeeds", "StreamingRenderer"]
