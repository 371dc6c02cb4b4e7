"""Call recording: both sides of a call on one timeline, its turns marked, old files removed.

Theory of operation. The call leg's media tap (:meth:`~voicebot.telephony.CallLeg.set_media_tap`)
calls :meth:`CallRecording.on_media` once per received frame, synchronously on the media clock,
with the caller's 20 ms frame as the jitter buffer played it out and the 20 ms of prompt audio the
RTP sender took for that tick (``None`` when it sent no prompt audio: silence, a DTMF event, or
nothing to send). The robot's channel is therefore exactly what was sent: silence between prompts,
and a prompt flushed by a barge-in ends on the frame where the sender stopped. Both channels share
one 20 ms grid, so call time (ms since the answer) is the frame count x 20 on either channel. After
a stall of the media clock the leg pulls a few extra received frames to catch up (no send tick goes
with them, and the sender's RTP timestamps run on without a gap): the caller's channel takes them at
once, and the robot's channel gets the matching silence at its next silent tick, so a prompt is never
cut by silence the caller did not hear.

Frames go straight to :class:`~voicebot.media.recorder.StreamingWavWriter` (one stereo file, caller
left and robot right, or two mono files), which rewrites the RIFF sizes every second: memory stays
bounded and a crash leaves a playable file up to the last second.

The timeline (:class:`TimelineMark`: caller utterances, robot prompts with their id and text, paused
stretches) goes to the call record through ``on_mark`` as each mark is complete. Utterance times
come from the recognizer in the recognition stream's time (0 = the first frame the pipeline
consumed); :meth:`CallRecording.frame_consumed` finds that frame on the recording's grid, so the
utterance marks are moved onto the recording's timeline.

:meth:`CallRecording.pause` writes silence on both channels (the timeline keeps running) until
:meth:`CallRecording.resume`; the paused stretch is a ``pause`` mark.

Retention: :func:`sweep_recordings` deletes recordings whose modification time is older than the
retention period; :func:`retention_loop` runs it at start and then daily.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from voicebot.dialog import events as ev
from voicebot.dialog.runner import PromptRenderer
from voicebot.media.frames import BYTES_PER_FRAME, FRAME_MS, SILENCE_FRAME, Frame
from voicebot.media.recorder import RecordingError, StreamingWavWriter, interleave

log = structlog.get_logger(logger_name=__name__)

RecordingFormat = Literal["stereo", "mono-pair"]
MarkKind = Literal["utterance", "prompt", "pause"]
SECONDS_PER_DAY = 86400.0
RECORDING_SUFFIXES = (".wav",)
# Frames kept to find the recognition stream's first frame on the recording's grid (the pipeline
# consumes frames through a queue of at most 50).
_ALIGN_WINDOW = 64
# The robot's channel may lag the caller's this long after a clock stall before silence is forced in.
MAX_ROBOT_LAG_FRAMES = 100


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """Where and how calls are recorded (``[recording]`` in the config)."""

    dir: Path
    format: RecordingFormat = "stereo"
    retention_days: float = 0.0  # 0 = keep forever
    sample_rate_hz: int = 8000


@dataclass(frozen=True, slots=True)
class TimelineMark:
    """One turn (or paused stretch) on the recording's timeline, in ms since the answer."""

    kind: MarkKind
    start_ms: int
    end_ms: int
    prompt_id: int | None = None  # prompts: the dialog's prompt_seq
    text: str | None = None  # utterances: the final's text; prompts: the prompt's text or audio file


def recording_paths(settings: RecordingSettings, call_id: str, started_at: float) -> tuple[Path, ...]:
    """File name(s) of a call's recording: ``<UTC start>-<Call-ID made file-safe>[.caller|.robot].wav``.

    The start time keeps a Call-ID reused across runs (sipp's ``<n>-<pid>@host``) from overwriting
    an older recording."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started_at))
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", call_id)[:120] or "call"
    base = f"{stamp}-{safe}"
    if settings.format == "stereo":
        return (settings.dir / f"{base}.wav",)
    return (settings.dir / f"{base}.caller.wav", settings.dir / f"{base}.robot.wav")


class CallRecording:
    """One call's recording: the media tap writes it; the pipeline adds utterances and pauses."""

    def __init__(self, settings: RecordingSettings, call_id: str, *, started_at: float,
                 on_mark: Callable[[TimelineMark], None] | None = None) -> None:
        self.settings = settings
        self.call_id = call_id
        self.paths = recording_paths(settings, call_id, started_at)
        for n in range(2, 100):  # never overwrite: the same second and Call-ID twice
            if not any(p.exists() for p in self.paths):
                break
            self.paths = recording_paths(settings, f"{call_id};{n}", started_at)
        self._on_mark = on_mark
        rate = settings.sample_rate_hz
        self._writers: tuple[StreamingWavWriter, ...]
        if settings.format == "stereo":
            self._writers = (StreamingWavWriter(self.paths[0], channels=2, sample_rate_hz=rate),)
        else:
            caller = StreamingWavWriter(self.paths[0], channels=1, sample_rate_hz=rate)
            try:
                robot = StreamingWavWriter(self.paths[1], channels=1, sample_rate_hz=rate)
            except RecordingError:
                caller.close()
                raise
            self._writers = (caller, robot)
        self.frames = 0  # 20 ms frames on the timeline so far (the caller's channel)
        self._robot_frames = 0  # frames on the robot's channel (behind after a clock stall)
        self._caller: deque[bytes] = deque()  # frames waiting for the other channel's
        self._robot: deque[bytes] = deque()
        self.paused = False
        self.failed: str | None = None  # the write error that stopped the recording
        self.marks: list[TimelineMark] = []
        self._prompt: tuple[int, int] | None = None  # (prompt id, start frame) of the prompt being sent
        self._prompt_texts: dict[int, str] = {}
        self._pause_start: int | None = None
        self._recent: deque[tuple[Frame, int]] = deque(maxlen=_ALIGN_WINDOW)
        self._consumed = 0  # frames the recognition stream got before alignment
        self._stt_offset_frames: int | None = None  # recording frame of recognition-stream frame 0
        self._closed = False

    @property
    def path(self) -> Path:
        """The stereo file, or the caller's file of a mono pair."""
        return self.paths[0]

    @property
    def duration_ms(self) -> int:
        return self.frames * FRAME_MS

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- the media tap (synchronous, on the media clock) ----

    def on_media(self, frame: Frame, prompt_id: int | None, robot_pcm: bytes | None,
                 ticked: bool = True) -> None:
        """One received frame, and the prompt audio sent in the same tick (None: none); ``ticked``
        False: a frame pulled to catch up after a clock stall, with no send tick. Never raises."""
        if self._closed:
            return
        if self._stt_offset_frames is None:
            self._recent.append((frame, self.frames))
        self.frames += 1
        self._caller.append(SILENCE_FRAME if self.paused else frame.pcm)
        if ticked:
            at = self._robot_frames
            if prompt_id != (self._prompt[0] if self._prompt else None):
                self._end_prompt(at)
                if prompt_id is not None:
                    self._prompt = (prompt_id, at)
            sent = robot_pcm is not None and len(robot_pcm) == BYTES_PER_FRAME
            self._robot.append(robot_pcm if sent and robot_pcm is not None and not self.paused
                               else SILENCE_FRAME)
            self._robot_frames += 1
            if robot_pcm is None:
                self._robot_catch_up()  # the robot is silent: the stall's gap goes here
        if self.frames - self._robot_frames > MAX_ROBOT_LAG_FRAMES:
            self._robot_catch_up()
        self._write_pairs()

    def _robot_catch_up(self) -> None:
        """Frames pulled without a send tick (a clock stall) leave the robot's channel behind the
        caller's. The sender's RTP timestamps run on without a gap, so the prompt the caller hears
        is not cut: the gap is put into the robot's next silence (or after 2 s at the latest)."""
        gap = self.frames - self._robot_frames
        self._robot.extend([SILENCE_FRAME] * gap)
        self._robot_frames += gap

    def _write_pairs(self) -> None:
        caller_q, robot_q = self._caller, self._robot
        if self.failed is not None:
            caller_q.clear()
            robot_q.clear()
            return
        try:
            while caller_q and robot_q:
                caller, robot = caller_q.popleft(), robot_q.popleft()
                if len(self._writers) == 1:
                    self._writers[0].write(interleave(caller, robot))
                else:
                    self._writers[0].write(caller)
                    self._writers[1].write(robot)
        except RecordingError as exc:
            self.failed = exc.message
            log.error("call.recording.failed", error=exc.message, path=str(self.path))

    def _end_prompt(self, at: int) -> None:
        if self._prompt is None:
            return
        prompt_id, start = self._prompt
        self._prompt = None
        # The text stays: a streamed prompt that pauses between sentences while the next one is
        # synthesized resumes as a second mark of the same id, which says what it plays too.
        self._mark(TimelineMark("prompt", start * FRAME_MS, at * FRAME_MS, prompt_id,
                                self._prompt_texts.get(prompt_id)))

    # ---- from the pipeline ----

    def prompt_text(self, prompt_id: int, text: str) -> None:
        """What a prompt says (or which audio file it plays), for its timeline mark."""
        self._prompt_texts[prompt_id] = text
        while len(self._prompt_texts) > 256:  # prompts rendered but never played (barge-in drops)
            del self._prompt_texts[next(iter(self._prompt_texts))]

    def frame_consumed(self, frame: Frame) -> None:
        """The recognition stream got ``frame`` (call for each until :attr:`aligned`): the first one
        that the tap also saw fixes where recognition time 0 is on the recording."""
        if self._stt_offset_frames is not None:
            return
        for seen, at in reversed(self._recent):
            if seen is frame:
                self._stt_offset_frames = at - self._consumed
                self._recent.clear()
                return
        self._consumed += 1

    @property
    def aligned(self) -> bool:
        return self._stt_offset_frames is not None

    def utterance(self, start_ms: int, end_ms: int, text: str) -> TimelineMark:
        """A caller utterance in recognition-stream time, marked on the recording's timeline."""
        offset_ms = (self._stt_offset_frames or 0) * FRAME_MS
        mark = TimelineMark("utterance", max(0, start_ms + offset_ms), max(0, end_ms + offset_ms),
                            None, text)
        self._mark(mark)
        return mark

    def pause(self) -> bool:
        """Write silence on both channels from now on; False if already paused."""
        if self.paused or self._closed:
            return False
        self.paused = True
        self._pause_start = self.frames
        log.info("call.recording.paused", at_ms=self.frames * FRAME_MS)
        return True

    def resume(self) -> bool:
        """Record the call's audio again; False if it was not paused."""
        if not self.paused or self._closed:
            return False
        self.paused = False
        self._end_pause()
        log.info("call.recording.resumed", at_ms=self.frames * FRAME_MS)
        return True

    def _end_pause(self) -> None:
        if self._pause_start is not None:
            self._mark(TimelineMark("pause", self._pause_start * FRAME_MS, self.frames * FRAME_MS))
            self._pause_start = None

    def _mark(self, mark: TimelineMark) -> None:
        self.marks.append(mark)
        if self._on_mark is not None:
            self._on_mark(mark)

    def close(self) -> None:
        """End the open prompt and pause marks and close the file(s) (headers final)."""
        if self._closed:
            return
        self._end_prompt(self._robot_frames)
        self._end_pause()
        self._robot_catch_up()
        self._write_pairs()
        self._closed = True
        for writer in self._writers:
            try:
                writer.close()
            except RecordingError as exc:
                self.failed = self.failed or exc.message
                log.error("call.recording.failed", error=exc.message, path=str(writer.path))


class PromptTextTap:
    """The dialog's renderer, noting what each prompt says (for the recording's prompt marks)."""

    def __init__(self, renderer: PromptRenderer, on_text: Callable[[int, str], None]) -> None:
        self.renderer = renderer
        self._on_text = on_text

    async def render(self, prompt: ev.PlayPrompt) -> bytes:
        text = prompt.text if prompt.text is not None else str(prompt.audio_file or "")
        self._on_text(prompt.prompt_seq, text)
        return await self.renderer.render(prompt)

    def __getattr__(self, name: str) -> Any:
        # Anything else the renderer offers (a streaming render, say) passes through unchanged.
        return getattr(self.renderer, name)


# ---- retention ----


def sweep_recordings(directory: Path, *, retention_days: float, now_s: float) -> list[Path]:
    """Delete the recordings (``*.wav`` under ``directory``) last modified more than
    ``retention_days`` before ``now_s`` (Unix time); returns what was deleted. 0 days keeps all."""
    if retention_days <= 0 or not directory.is_dir():
        return []
    cutoff = now_s - retention_days * SECONDS_PER_DAY
    deleted: list[Path] = []
    for path in sorted(directory.rglob("*")):
        if path.suffix not in RECORDING_SUFFIXES or not path.is_file():
            continue
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                deleted.append(path)
        except FileNotFoundError:
            continue  # deleted by someone else meanwhile
        except OSError as exc:
            log.warning("recording.retention.failed", path=str(path), error=exc.strerror or str(exc))
    return deleted


async def retention_loop(settings: RecordingSettings, *, wall_clock: Callable[[], float] = time.time,
                         sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                         interval_s: float = SECONDS_PER_DAY) -> None:
    """Sweep at start, then every ``interval_s`` (a day), until cancelled. The deletions run in a
    thread: a large directory must not stall the calls' media."""
    while True:
        try:
            deleted = await asyncio.to_thread(sweep_recordings, settings.dir,
                                              retention_days=settings.retention_days, now_s=wall_clock())
        except OSError as exc:  # the directory itself is unreadable: try again tomorrow
            log.warning("recording.retention.failed", dir=str(settings.dir), error=exc.strerror or str(exc))
            deleted = []
        if deleted:
            log.info("recording.retention.deleted", count=len(deleted), dir=str(settings.dir),
                     retention_days=settings.retention_days)
        await sleep(interval_s)


__all__ = [
    "CallRecording",
    "PromptTextTap",
    "RecordingFormat",
    "RecordingSettings",
    "TimelineMark",
    "recording_paths",
    "retention_loop",
    "sweep_recordings",
]
