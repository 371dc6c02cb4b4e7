"""The call pipeline: every call leg joined to recognition, the dialog and the call record.

Theory of operation. :class:`App` owns the process-wide parts: the embedded SpeechKit STT v3 server
(in-process on ``127.0.0.1:<free port>`` with a generated API key, unless ``[recognizer] mode =
"endpoint"`` points at another server such as the cloud), one gRPC channel to it that every call
shares, the call-record store, the prompt synthesizer (espeak-ng behind the disk cache and an
in-memory cache, pre-rendered when the dialplan loads so no answer waits for synthesis), the loaded
dialplan, and :class:`~voicebot.telephony.Telephony` (SIP + RTP).

Each call leg gets one :class:`CallPipeline` whose tasks all live in ONE ``asyncio.TaskGroup``,
cancelled when the leg ends:

* ``audio``: the leg's 20 ms frames go straight into the leg's
  :class:`~voicebot.stt.client.RecognitionStream` (chunking, real-time pacing, silence_chunks,
  session rotation and reconnects are the client's job) and, while a barge-in prompt plays, through
  a small VAD (:class:`SpeechOnsetDetector`) so the prompt stops ~200 ms after speech starts,
  without waiting for the recognizer's first partial;
* ``recognition``: partials go to the dialog (a non-empty one barges in), finals to the dialog
  first (the answer starts before anything is written) and then to the record with the recognizer
  session id; sessions opened/closed go to the record;
* ``leg-events``: DTMF to the dialog and the record, prompt completions back to the dialog;
* ``dialog``: the :class:`~voicebot.dialog.runner.DialogRunner`, driving the leg through
  :class:`CallPipeline` as its :class:`~voicebot.dialog.runner.CallControl` (play = render + queue on
  the RTP sender, stop = flush within one packet, transfer = REFER and, once the NOTIFY sipfrag says
  the target answered, BYE; hang-up = BYE);
* ``records``: the call record's writes, in order, off the answer path (SQLite commits never delay
  a prompt).

When the leg ends (either side, or the network), the dialog gets ``call_ended``, the tasks are
cancelled, and the record gets the hang-up cause and side. An exception in any of these tasks ends
that call only: the leg is hung up and the record says why. Every log line of a call carries its
``call_id`` (structlog contextvars, bound in the call's task before its children start) and each
call ends with one ``call.summary`` line.
"""

from __future__ import annotations

import asyncio
import audioop
import contextlib
import contextvars
import dataclasses
import secrets
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog

from voicebot.config import Config
from voicebot.dialog.ir import Dialplan, Prompt
from voicebot.dialog.loader import load_dialplan
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.runner import CallSummary, DialogRunner, PromptRenderer
from voicebot.errors import ConfigError, VoicebotError
from voicebot.records import CallRecordStore, DuplicateCall, HangupSide, RecordsError
from voicebot.sip.uri import SipUri, parse_uri
from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    PartialReceived,
    RecognitionError,
    RecognitionStream,
    SessionClosed,
    SessionOpened,
    open_channel,
)
from voicebot.telephony import (
    CallFailed,
    CallLeg,
    Credentials,
    DigitReceived,
    LegEnded,
    MediaChanged,
    PromptFinished,
    Telephony,
    TelephonyConfig,
)
from voicebot.tts import CachingSynthesizer, EspeakSynthesizer, PcmAudio, PromptSynthesizer

log = structlog.get_logger(logger_name=__name__)

FRAME_MS = 20
# The dialog's own bookkeeping variables: the record has them in its own columns already.
BUILTIN_VARIABLES = frozenset({"call_id", "caller", "callee", "dialplan", "state"})
POST_HANGUP_FLUSH_S = 3.0
# A prompt that starts this long after a final answers something else (a timer, a webhook): it is
# not counted as the reaction to that final.
REACTION_WINDOW_S = 2.0  # after the leg ends, wait this long at most for the last final
SAMPLE_RATE_HZ = 8000
REPO_ROOT = Path(__file__).resolve().parent.parent


class CallError(VoicebotError):
    """A call could not be placed or its pipeline failed; the message says which part and why."""


# ---- barge-in VAD -------------------------------------------------------------------------------


class SpeechOnsetDetector:
    """Decides from 20 ms frames that the caller started speaking (for barge-in), sans-IO.

    A frame counts as speech when webrtcvad (mode 3, the strictest) says so and it is louder than
    ``min_rms``; speech has started when ``need_frames`` of the last ``window_frames`` frames were
    speech. The onset reported is the time of the first speech frame in that window, so the
    barge-in latency is measured from when the caller started, not from when we were sure. The
    recognizer's first non-empty partial barges in too; this only makes it faster (a partial
    needs ~500 ms of speech plus a decode).
    """

    def __init__(self, *, need_frames: int = 8, window_frames: int = 10, min_rms: int = 500) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(3)
        self.need_frames = need_frames
        self.window_frames = window_frames
        self.min_rms = min_rms
        self._window: deque[tuple[bool, float]] = deque(maxlen=window_frames)

    def reset(self) -> None:
        self._window.clear()

    def feed(self, pcm16: bytes, now_s: float) -> float | None:
        """Feed one 20 ms frame that ended at ``now_s``; returns the onset time once speech started."""
        if len(pcm16) != SAMPLE_RATE_HZ * 2 * FRAME_MS // 1000:
            return None
        voiced = audioop.rms(pcm16, 2) >= self.min_rms and self._vad.is_speech(pcm16, SAMPLE_RATE_HZ)
        self._window.append((voiced, now_s - FRAME_MS / 1000))
        if sum(v for v, _ in self._window) < self.need_frames:
            return None
        onset = next(t for v, t in self._window if v)
        self._window.clear()
        return onset


# ---- prompts ------------------------------------------------------------------------------------


SILENCE_RMS = 300  # below this a 10 ms window counts as silence (about -40 dBFS)
KEEP_LEAD_MS = 10
KEEP_TAIL_MS = 120


def trim_silence(pcm16: bytes, *, threshold_rms: int = SILENCE_RMS, keep_lead_ms: int = KEEP_LEAD_MS,
                 keep_tail_ms: int = KEEP_TAIL_MS) -> bytes:
    """Cut a prompt's leading and trailing silence down to ``keep_*_ms``.

    espeak-ng starts a prompt with 40-100 ms of silence and ends it with ~350 ms: the first would
    be added to every reaction time, the second delays whatever follows the prompt (the listening
    timer, a transfer, the BYE). All-silent audio is returned as it is.
    """
    window = SAMPLE_RATE_HZ * 2 // 100  # 10 ms of 16-bit samples
    loud = [i for i in range(0, len(pcm16), window) if audioop.rms(pcm16[i:i + window], 2) >= threshold_rms]
    if not loud:
        return pcm16
    start = max(0, loud[0] - keep_lead_ms * window // 10)
    end = min(len(pcm16), loud[-1] + window + keep_tail_ms * window // 10)
    return pcm16[start:end]


class MemoSynthesizer:
    """An in-memory LRU in front of the disk cache: a repeated prompt costs no thread hop or file
    read. Prompts are kept with their silent edges trimmed (:func:`trim_silence`)."""

    def __init__(self, inner: PromptSynthesizer, *, max_entries: int = 512) -> None:
        self._inner = inner
        self._memo: OrderedDict[tuple[str, str], PcmAudio] = OrderedDict()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    @property
    def engine_id(self) -> str:
        return self._inner.engine_id

    async def synthesize(self, text: str, *, voice: str) -> PcmAudio:
        key = (voice, text)
        audio = self._memo.get(key)
        if audio is not None:
            self.hits += 1
            self._memo.move_to_end(key)
            return audio
        self.misses += 1
        synthesized = await self._inner.synthesize(text, voice=voice)
        audio = PcmAudio(trim_silence(synthesized.pcm), synthesized.sample_rate_hz)
        self._memo[key] = audio
        while len(self._memo) > self.max_entries:
            self._memo.popitem(last=False)
        return audio


def static_prompts(plan: Dialplan, variables: Mapping[str, str]) -> list[tuple[str, str]]:
    """(text, voice) of every text prompt whose variables all have a non-empty value up front.

    Prompts with per-call values (a balance read back) cannot be rendered ahead; everything else
    (menus, re-prompts, goodbyes) is, so an answer to the caller never waits for synthesis.
    """
    values = {**plan.variables, **variables}
    out: list[tuple[str, str]] = []
    for state in plan.states.values():
        prompts: list[Prompt | None] = [
            state.prompt,
            state.no_input.prompt if state.no_input else None,
            state.no_match.prompt if state.no_match else None,
        ]
        for prompt in prompts:
            if prompt is None or prompt.text is None:
                continue
            if all(values.get(name) for name in prompt.text.variables):
                item = (prompt.text.render(values), prompt.voice)
                if item not in out:
                    out.append(item)
    return out


async def prerender(plan: Dialplan, synthesizer: PromptSynthesizer, variables: Mapping[str, str]) -> int:
    """Synthesize the plan's static prompts now (concurrently); returns how many."""
    items = static_prompts(plan, variables)
    async with asyncio.TaskGroup() as group:
        for text, voice in items:
            group.create_task(synthesizer.synthesize(text, voice=voice))
    return len(items)


def resolve_dialplan_path(path: Path) -> Path:
    """``path`` as given, or (when relative and missing) relative to the source checkout, so the
    default ``dialplans/demo.yaml`` works from any directory of an editable install."""
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


# ---- one call -----------------------------------------------------------------------------------


@dataclass(slots=True)
class CallOutcome:
    """How a call went (what ``voicebot call`` reports and the tests check)."""

    call_id: str  # the SIP Call-ID
    direction: Literal["inbound", "outbound"]
    answered: bool
    cause: str  # the leg's end cause (bye, cancelled, rtp-timeout, ...) or "error"
    side: HangupSide
    error: str | None = None  # set when the pipeline failed (the call was ended because of it)
    dialog: CallSummary | None = None
    transfer_target: str | None = None
    transfer_result: str | None = None
    utterances: list[str] = field(default_factory=list)
    reaction_ms: list[float] = field(default_factory=list)  # end of speech (recognizer) -> answer queued
    barge_in_ms: list[float] = field(default_factory=list)  # speech onset -> prompt flushed
    record_id: str = ""  # the call record's key: the Call-ID, or "<Call-ID>;<n>" if it was taken

    @property
    def ok(self) -> bool:
        return self.answered and self.error is None


def first_leaf(exc: BaseException) -> BaseException:
    """The first real exception inside (nested) exception groups: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def hangup_side(ended: LegEnded, robot_hung_up: bool) -> HangupSide:
    """Map the leg's end to the record's side: who ended the call."""
    if ended.cause in ("rtp-timeout", "ack-timeout", "timeout"):
        return "network"
    if ended.side == "local" or robot_hung_up:
        return "robot"
    return "caller"


# One call-record write: a CallRecordStore method, called as method(record_id, *args, **kwargs).
RecordWrite = tuple[Callable[..., Awaitable[None]], tuple[object, ...], dict[str, object]]


class CallPipeline:
    """One call leg's pipeline; also the :class:`CallControl` the dialog runner drives."""

    def __init__(self, app: App, leg: CallLeg, plan: Dialplan, variables: Mapping[str, str]) -> None:
        self.app = app
        self.leg = leg
        self.call_id = leg.call_id
        self.record_id = leg.call_id  # the call record's key (see _start_record)
        self.plan = plan
        self.variables = dict(variables)
        self.runner = DialogRunner(plan, self, app.renderer, on_event_handled=self.sync_record)
        self.stream: RecognitionStream | None = None
        self._records: asyncio.Queue[RecordWrite | None] = asyncio.Queue()
        self._prompts: dict[int, tuple[int, bool]] = {}  # leg prompt id -> (dialog prompt_seq, barge_in)
        self._vad = SpeechOnsetDetector()
        self._speech_onset_s: float | None = None  # start of the speech that may barge in
        self._onset_source = ""
        self._t0: float | None = None  # monotonic time of call-timeline 0 (first frame)
        self._speech_end_s: float | None = None  # end of the last final's speech, for reaction time
        self._final_at_s = 0.0  # when that final arrived
        self._robot_hangup: str | None = None
        self._sessions_open: set[str] = set()
        self._states_written = 0
        self._variables_written: dict[str, str] = {}
        self.outcome = CallOutcome(self.call_id, leg.direction, False, "", "caller")

    # ---- the call ----

    async def run(self) -> CallOutcome:
        leg = self.leg
        started_s = time.monotonic()
        records = self.app.records
        self._write(records.call_started, direction=leg.direction, from_uri=leg.from_uri,
                    to_uri=leg.to_uri)
        ended: LegEnded | None = None
        record_task = asyncio.get_running_loop().create_task(self._record_lane(), name="call-records")
        try:
            if leg.direction == "inbound":
                await leg.answer()
            if leg.is_ended:
                ended = await leg.ended()
            else:
                self.outcome.answered = True
                self._write(records.call_answered)
                ended = await self._run_answered()
        except Exception as exc:  # one call's failure ends that call, never the process
            root = first_leaf(exc)
            message = root.message if isinstance(root, VoicebotError) else repr(root)
            log.error("call.failed", error=message, exc_info=not isinstance(root, VoicebotError))
            self.outcome.error = message
            leg.hangup()
            with contextlib.suppress(TimeoutError):
                ended = await asyncio.wait_for(leg.ended(), 5.0)
        finally:
            cancelled = False
            if self.stream is not None:
                try:
                    await self.stream.aclose()
                except asyncio.CancelledError:
                    # Being cancelled (a shutdown that outlived its grace): still close the record,
                    # then let the cancellation go on.
                    cancelled = True
            cause, side = self._final_cause(ended)
            self.outcome.cause, self.outcome.side = cause, side
            for session_id in list(self._sessions_open):
                self._write_session_ended(session_id, "call ended")
            self._write(records.call_ended, cause=cause, side=side)
            self._records.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(record_task), 10.0)
            except TimeoutError:
                log.error("call.record.stuck", pending=self._records.qsize())
                record_task.cancel()
            self.outcome.record_id = self.record_id
            self._summary(started_s)
            if cancelled:
                raise asyncio.CancelledError
        return self.outcome

    def _final_cause(self, ended: LegEnded | None) -> tuple[str, HangupSide]:
        if self.outcome.error is not None:
            return f"error: {self.outcome.error}"[:500], "robot"
        if ended is None:
            return "shutdown", "robot"
        side = hangup_side(ended, self._robot_hangup is not None)
        cause = ended.cause
        if self._robot_hangup is not None and side == "robot" and cause == "bye":
            cause = f"bye: {self._robot_hangup}"
        elif ended.sip_status is not None and cause in ("failed", "rejected"):
            cause = f"{cause}: {ended.sip_status} {ended.reason}".strip()
        return cause, side

    async def _run_answered(self) -> LegEnded:
        settings = self.app.stt_settings
        self.stream = RecognitionStream(settings, channel=self.app.stt_channel, call_id=self.call_id)
        self.stream.start()
        variables = {**self.variables}
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._audio_in(), name="call-audio"),
                group.create_task(self._recognition(), name="call-recognition"),
                group.create_task(self._leg_events(), name="call-leg-events"),
            ]
            dialog = group.create_task(self._dialog(variables), name="call-dialog")
            ended = await self.leg.ended()
            self.runner.call_ended(ended.cause)
            # The dialog ends on call_ended at once; the recognizer gets a moment to flush the
            # utterance in flight at the hang-up, so the record has the caller's last words.
            await asyncio.wait({dialog, tasks[1]}, timeout=POST_HANGUP_FLUSH_S)
            for task in (*tasks, dialog):
                task.cancel()
        return ended

    async def _dialog(self, variables: dict[str, str]) -> None:
        summary = await self.runner.run(call_id=self.call_id, caller=self.leg.from_uri,
                                        callee=self.leg.to_uri, variables=variables)
        self.outcome.dialog = summary
        self.sync_record(self.runner.machine)

    # ---- media and recognition ----

    async def _audio_in(self) -> None:
        stream = self.stream
        assert stream is not None
        try:
            async for frame in self.leg.frames():
                now = time.monotonic()
                if self._t0 is None:
                    self._t0 = now - FRAME_MS / 1000
                stream.push_audio(frame)
                if self._barge_in_playing():
                    onset = self._vad.feed(frame, now)
                    if onset is not None:
                        self._speech_started(onset, "vad")
        finally:
            stream.end_input()

    def _barge_in_playing(self) -> bool:
        return any(barge_in for _, barge_in in self._prompts.values())

    def _speech_started(self, onset_s: float, source: str) -> None:
        if self._speech_onset_s is None:
            self._speech_onset_s, self._onset_source = onset_s, source
            self.runner.speech_started(at_s=onset_s)

    def _call_time_s(self, call_ms: int) -> float:
        return (self._t0 if self._t0 is not None else time.monotonic()) + call_ms / 1000

    async def _recognition(self) -> None:
        try:
            await self._recognition_events()
        except RecognitionError as exc:
            if not self.leg.is_ended:
                raise  # the call cannot go on without recognition: it ends with this reason
            # After the hang-up only the flush of the last utterance is lost; the call went fine.
            log.warning("call.recognition.lost_after_hangup", error=exc.message)

    async def _recognition_events(self) -> None:
        stream = self.stream
        assert stream is not None
        async for event in stream:
            if isinstance(event, PartialReceived):
                if event.text.strip():
                    at_s = self._call_time_s(event.start_ms)
                    if self._barge_in_playing():
                        self._speech_started(at_s, "partial")
                    self.runner.partial(event.text, at_s=at_s)
            elif isinstance(event, FinalReceived):
                # The dialog first: the answer must not wait for the record.
                self._speech_end_s = self._call_time_s(event.end_ms)
                self._final_at_s = time.monotonic()
                self.runner.final(event.text)
                self.outcome.utterances.append(event.text)
                log.info("call.final", session_id=event.session_id, start_ms=event.start_ms,
                         end_ms=event.end_ms, **{"pii.text": event.text})
                self._write(self.app.records.utterance, session_id=event.session_id,
                            start_ms=event.start_ms, end_ms=event.end_ms, text=event.text,
                            normalized_text=event.normalized_text)
            elif isinstance(event, SessionOpened):
                self._sessions_open.add(event.session_id)
                log.info("call.stt_session.opened", session_id=event.session_id, reason=event.reason,
                         base_ms=event.base_ms)
                self._write(self.app.records.stt_session_started, event.session_id)
            elif isinstance(event, SessionClosed):
                self._sessions_open.discard(event.session_id)
                self._write_session_ended(event.session_id, event.reason)

    def _write_session_ended(self, session_id: str, reason: str) -> None:
        self._write(self.app.records.stt_session_ended, session_id, reason=reason)

    async def _leg_events(self) -> None:
        async for event in self.leg.events():
            if isinstance(event, DigitReceived):
                if self._barge_in_playing():
                    self._speech_started(time.monotonic(), "dtmf")
                self.runner.dtmf(event.digit)
                log.info("call.dtmf", source=event.source, **{"pii.digit": event.digit})
                self._write(self.app.records.dtmf, event.digit)
            elif isinstance(event, PromptFinished):
                entry = self._prompts.pop(event.prompt_id, None)
                if entry is not None:
                    self.runner.prompt_finished(entry[0])
                if not self._barge_in_playing():
                    # Nothing left to barge into: the next barge-in prompt measures afresh.
                    self._vad.reset()
                    self._speech_onset_s = None
            elif isinstance(event, MediaChanged):
                log.info("call.media_changed", held=event.held, codec=event.codec)
            elif isinstance(event, LegEnded):
                return

    # ---- CallControl ----

    async def play_prompt(self, audio: PcmAudio, *, prompt_seq: int, barge_in: bool) -> None:
        if self.leg.is_ended:
            self.runner.prompt_finished(prompt_seq)
            return
        now = time.monotonic()
        if self._speech_end_s is not None and now - self._final_at_s > REACTION_WINDOW_S:
            self._speech_end_s = None  # the answer to that final was no prompt (e.g. digits kept coming)
        if self._speech_end_s is not None:
            reaction_ms = (now - self._speech_end_s) * 1000
            self._speech_end_s = None
            self.outcome.reaction_ms.append(reaction_ms)
            # recognizer_ms: speech end -> final; pipeline_ms: final -> answer queued for RTP.
            log.info("call.reaction", reaction_ms=round(reaction_ms, 1), prompt_seq=prompt_seq,
                     recognizer_ms=round(reaction_ms - (now - self._final_at_s) * 1000, 1),
                     pipeline_ms=round((now - self._final_at_s) * 1000, 2))
        if not self._prompts:
            self._speech_onset_s = None
            self._vad.reset()
        prompt_id = self.leg.play(audio.pcm)
        self._prompts[prompt_id] = (prompt_seq, barge_in)

    async def stop_prompt(self) -> None:
        if not self.leg.is_ended:
            self.leg.flush()
        # Stopped prompts are finished for the dialog now; the leg's later reports are ignored.
        for seq, _ in sorted(self._prompts.values()):
            self.runner.prompt_finished(seq)
        self._prompts.clear()
        self._vad.reset()
        if self._speech_onset_s is not None:
            latency_ms = (time.monotonic() - self._speech_onset_s) * 1000
            self.outcome.barge_in_ms.append(latency_ms)
            log.info("call.barge_in", latency_ms=round(latency_ms, 1), source=self._onset_source)
            self._speech_onset_s = None

    async def start_listening(self) -> None:
        # Recognition runs for the whole call (the recognizer needs continuous audio); the dialog
        # decides what input counts.
        return None

    async def stop_listening(self) -> None:
        return None

    async def transfer(self, uri: str) -> None:
        self.outcome.transfer_target = uri
        self._write(self.app.records.transfer, uri)
        log.info("call.transfer.started", target=uri)
        try:
            result = await self.leg.transfer(uri)
        except (VoicebotError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, VoicebotError) else "no final NOTIFY in time"
            self._transfer_done(uri, f"failed: {reason}")
            raise CallError(f"transfer to {uri} failed: {reason}") from exc
        outcome = f"{result.status_code} {result.reason}".strip()
        if not result.succeeded:
            self._transfer_done(uri, f"failed: {outcome}")
            raise CallError(f"transfer to {uri} was refused: {outcome}")
        self._transfer_done(uri, outcome)
        # RFC 5589 §6.1: the transferor ends its dialog once the NOTIFY reports success.
        self._robot_hangup = "transferred"
        self.leg.hangup()

    def _transfer_done(self, uri: str, result: str) -> None:
        self.outcome.transfer_result = result
        log.info("call.transfer.finished", target=uri, result=result)
        self._write(self.app.records.transfer, uri, result)

    async def hangup(self, reason: str) -> None:
        self._robot_hangup = reason or "dialplan"
        self.leg.hangup()

    async def record(self, key: str, value: str) -> None:
        self._write(self.app.records.variable_set, key, value)

    # ---- the record lane ----

    def _write(self, method: Callable[..., Awaitable[None]], *args: object, **kwargs: object) -> None:
        """Queue a record write; the lane calls ``method(record_id, *args, **kwargs)`` in order."""
        self._records.put_nowait((method, args, kwargs))

    async def _record_lane(self) -> None:
        failures = 0
        while (write := await self._records.get()) is not None:
            method, args, kwargs = write
            try:
                if method == self.app.records.call_started:
                    await self._start_record(method, args, kwargs)
                else:
                    await method(self.record_id, *args, **kwargs)
            except RecordsError as exc:
                failures += 1
                log.error("call.record.failed", error=exc.message, failures=failures)

    async def _start_record(self, method: Callable[..., Awaitable[None]], args: tuple[object, ...],
                            kwargs: dict[str, object]) -> None:
        """Start the record under the Call-ID; if a record with that Call-ID exists already (a peer
        that reuses Call-IDs across runs, e.g. sipp's ``<n>-<pid>@host``), under ``<Call-ID>;<n>``
        so the older call's record is never written into."""
        for attempt in range(1, 100):
            record_id = self.call_id if attempt == 1 else f"{self.call_id};{attempt}"
            try:
                await method(record_id, *args, **kwargs)
            except DuplicateCall:
                continue
            if record_id != self.call_id:
                log.warning("call.record.duplicate_call_id", record_id=record_id)
            self.record_id = record_id
            return
        raise RecordsError(f"99 records with Call-ID {self.call_id} exist already; not recording this call")

    def sync_record(self, machine: DialogMachine) -> None:
        """After each dialog event: new states entered and changed variables go to the record, so
        the record follows the call as it progresses (a crash loses at most the event in flight)."""
        states, variables = machine.transitions, machine.variables
        records = self.app.records
        for state in states[self._states_written:]:
            self._write(records.state_entered, state)
        self._states_written = len(states)
        for name, value in variables.items():
            if name in BUILTIN_VARIABLES:
                continue
            if self._variables_written.get(name) != value and (value or name in self._variables_written):
                self._variables_written[name] = value
                self._write(records.variable_set, name, value)

    def _summary(self, started_s: float) -> None:
        o = self.outcome
        stats: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            s = self.leg.stats()
            stats = {"packets_received": s.packets_received, "packets_sent": s.packets_sent,
                     "lost": s.lost, "codec": s.codec}
        dialog = o.dialog
        log.info(
            "call.summary", direction=o.direction, answered=o.answered, cause=o.cause, side=o.side,
            error=o.error, duration_s=round(time.monotonic() - started_s, 3),
            states=dialog.states if dialog else [], dialog_end=dialog.end_reason if dialog else None,
            finals=len(o.utterances), transfer_target=o.transfer_target, transfer_result=o.transfer_result,
            reaction_ms=[round(x) for x in o.reaction_ms], barge_in_ms=[round(x) for x in o.barge_in_ms],
            stt_dropped_audio_ms=self.stream.dropped_audio_ms if self.stream else 0, **stats,
            **{"pii.from": self.leg.from_uri, "pii.to": self.leg.to_uri},
        )


# ---- the application ----------------------------------------------------------------------------


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def primary_address() -> str:
    """The address of the interface that routes outwards (no packet is sent: a UDP connect only
    picks the route), for SDP/Contact when listening on a wildcard without ``public_address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1 (RFC 5737): routed, never answered
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def telephony_config(config: Config) -> TelephonyConfig:
    """The SIP/RTP settings from ``[sip]`` and ``[rtp]``."""
    sip, rtp = config.sip, config.rtp
    rtp_host = rtp.host
    # Listening for SIP on a public or wildcard address with RTP still on the loopback default
    # would answer calls whose media can never arrive: bind RTP where SIP listens.
    if rtp_host == "127.0.0.1" and sip.listen.host not in ("127.0.0.1", "localhost"):
        rtp_host = sip.listen.host
    advertised = sip.public_address.host if sip.public_address else None
    if advertised is None and sip.listen.host in WILDCARD_HOSTS and rtp_host in WILDCARD_HOSTS:
        # A wildcard is not an address a peer can send to (RFC 4566 §5.7 c= needs a real one).
        advertised = primary_address()
    users: tuple[tuple[str, str], ...] = ()
    if sip.inbound_auth_user and sip.inbound_password:
        users = ((sip.inbound_auth_user, sip.inbound_password),)
    return TelephonyConfig(
        sip_host=sip.listen.host, sip_port=sip.listen.port,
        advertised_host=advertised,
        rtp_host=rtp_host, rtp_port_min=rtp.ports.low, rtp_port_max=rtp.ports.high,
        max_calls=sip.max_calls, allowed_networks=sip.trunk_allow, inbound_users=users,
    )


class App:
    """voicebot: recognition, records, prompts and telephony; every inbound leg runs the dialplan.

    ``async with App(config) as app: await app.serve()`` (``voicebot run``), or
    ``await app.place_call(uri)`` (``voicebot call``). ``engine`` shares an already loaded
    recognition engine (tests); ``variables`` are given to every call's dialog.
    """

    def __init__(self, config: Config, *, engine: Any = None, variables: Mapping[str, str] | None = None,
                 stt_workers: int = 2, grace_s: float = 10.0, accept_inbound: bool = True) -> None:
        self.config = config
        self.grace_s = grace_s
        self.accept_inbound = accept_inbound
        self._engine = engine
        self._stt_workers = stt_workers
        self.variables: dict[str, str] = {}
        if config.dialog.transfer_target:
            self.variables["transfer_target"] = config.dialog.transfer_target
        self.variables.update(variables or {})
        self._stt_server: Any = None
        self._stt_channel: Any = None
        self._stt_settings: ClientSettings | None = None
        self._records: CallRecordStore | None = None
        self._telephony: Telephony | None = None
        self.plan: Dialplan | None = None
        self.synthesizer: MemoSynthesizer | None = None
        self._renderer: PromptRenderer | None = None
        self._calls: dict[asyncio.Task[CallOutcome], CallLeg] = {}
        self.outcomes: list[CallOutcome] = []
        self._stopping = asyncio.Event()
        self._accept_task: asyncio.Task[None] | None = None
        self.registration_id: str | None = None
        self._draining = False

    # ---- parts (valid after start) ----

    @property
    def records(self) -> CallRecordStore:
        if self._records is None:
            raise VoicebotError("App is not started: use 'async with App(config)' or await app.start()")
        return self._records

    @property
    def telephony(self) -> Telephony:
        if self._telephony is None:
            raise VoicebotError("App is not started: use 'async with App(config)' or await app.start()")
        return self._telephony

    @property
    def renderer(self) -> PromptRenderer:
        assert self._renderer is not None, "App is not started"
        return self._renderer

    @property
    def stt_settings(self) -> ClientSettings:
        assert self._stt_settings is not None, "App is not started"
        return self._stt_settings

    @property
    def stt_channel(self) -> Any:
        return self._stt_channel

    @property
    def stt_target(self) -> str:
        return self.stt_settings.target

    @property
    def contact_uri(self) -> str:
        return self.telephony.contact_uri

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # ---- lifecycle ----

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Load the dialplan, render its prompts, open the records, start recognition and SIP."""
        c = self.config
        started = time.monotonic()
        try:
            self.plan = load_dialplan(resolve_dialplan_path(c.dialog.dialplan))
            tts_dir = c.tts.cache_dir if c.tts.cache_dir.is_absolute() else Path.cwd() / c.tts.cache_dir
            self.synthesizer = MemoSynthesizer(CachingSynthesizer(EspeakSynthesizer(), cache_dir=tts_dir))
            self._renderer = PromptRenderer(self.synthesizer)
            self._renderer.preload(self.plan)
            prompts = await prerender(self.plan, self.synthesizer, self.variables)
            self._records = CallRecordStore(c.records.path)
            await self._start_recognition()
            self._telephony = Telephony(telephony_config(c))
            try:
                await self._telephony.start()
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen for SIP on {c.sip.listen}: {exc.strerror or exc} (is another voicebot "
                    "or a PBX using it? choose another with --sip-listen or [sip] listen)") from exc
            if c.sip.registrar:
                self._register()
            self._accept_task = asyncio.get_running_loop().create_task(self._accept(), name="app-accept")
        except BaseException:
            await self.aclose()
            raise
        log.info("app.ready", contact=self.contact_uri, stt=self.stt_target,
                 stt_mode=c.recognizer.mode, dialplan=self.plan.source, prompts_prerendered=prompts,
                 records=str(c.records.path), startup_s=round(time.monotonic() - started, 2))

    def _register(self) -> None:
        """REGISTER with ``[sip] registrar`` (a PBX extension or a provider that needs it); the SIP
        layer answers digest challenges and refreshes before expiry (RFC 3261 §10.2.4)."""
        sip = self.config.sip
        assert sip.registrar and sip.register_user and sip.register_password  # config validation
        registrar = parse_uri(sip.registrar)
        if not isinstance(registrar, SipUri):
            raise ConfigError(f"[sip] registrar must be a sip: URI, got {sip.registrar!r}")
        aor = f"sip:{sip.register_user}@{registrar.host}"
        self.registration_id = self.telephony.endpoint.register(
            sip.registrar, aor=aor, credentials=Credentials(sip.register_user, sip.register_password),
            expires_s=sip.register_expires_s)
        log.info("app.registering", registrar=sip.registrar, aor=aor, expires_s=sip.register_expires_s)

    @property
    def registered(self) -> bool | None:
        """Whether the registrar accepted us (None: no registrar, or no answer yet)."""
        if self.registration_id is None or self._telephony is None:
            return None
        state = self._telephony.endpoint.registrations.get(self.registration_id)
        return None if state is None else state.registered

    async def _start_recognition(self) -> None:
        rc = self.config.recognizer
        if rc.mode == "endpoint":
            self._stt_settings = ClientSettings.from_config(rc)
        else:
            from voicebot.stt.server import ServerConfig, start_server
            from voicebot.stt.session import SessionConfig, SessionLimits

            key = secrets.token_urlsafe(32)
            limits = SessionLimits(max_audio_ms=int(rc.session_max_audio_s * 1000),
                                   max_data_bytes=rc.session_max_bytes)
            server_config = ServerConfig(listen="127.0.0.1:0", api_keys=frozenset({key}),
                                         workers=self._stt_workers, session=SessionConfig(limits=limits))
            self._stt_server = await start_server(server_config, engine=self._engine)
            target = f"127.0.0.1:{self._stt_server.port}"
            settings = ClientSettings.from_config(rc, target=target, api_key=key)
            # The embedded server is plaintext on loopback, whatever TLS the config asks of endpoints.
            self._stt_settings = dataclasses.replace(settings, tls=False, ca_file=None)
        self._stt_channel = open_channel(self.stt_settings)

    def request_stop(self) -> None:
        """Begin a graceful shutdown (SIGTERM/SIGINT): new calls get 503, running ones may finish."""
        if not self._stopping.is_set():
            log.info("app.stopping", active_calls=len(self._calls), grace_s=self.grace_s)
        self._stopping.set()

    async def serve(self) -> None:
        """Run until :meth:`request_stop`, then drain (see :meth:`drain`). Inbound calls are
        answered from :meth:`start` on."""
        try:
            await self._stopping.wait()
        finally:
            await self.drain(self.grace_s)

    async def _accept(self) -> None:
        async for leg in self.telephony.incoming():
            if self._draining or not self.accept_inbound:
                reason = "shutting down" if self._draining else "this voicebot only places calls"
                with contextlib.suppress(VoicebotError):
                    leg.reject(503, f"Service Unavailable: {reason}")
                log.info("call.rejected", status=503, reason=reason, call_id=leg.call_id)
                continue
            self.start_call(leg)

    def start_call(self, leg: CallLeg, *, plan: Dialplan | None = None,
                   variables: Mapping[str, str] | None = None) -> asyncio.Task[CallOutcome]:
        """Run the pipeline for ``leg`` in its own task (owned by the app until it ends)."""
        use_plan = plan if plan is not None else self.plan
        assert use_plan is not None, "App is not started"
        values = {**self.variables, **(variables or {})}

        async def run_call() -> CallOutcome:
            structlog.contextvars.bind_contextvars(call_id=leg.call_id)
            log.info("call.started", direction=leg.direction, dialplan=use_plan.name,
                     **{"pii.from": leg.from_uri, "pii.to": leg.to_uri})
            outcome = await CallPipeline(self, leg, use_plan, values).run()
            self.outcomes.append(outcome)
            return outcome

        # A fresh context: the call's call_id binding must not leak into the app's own lines.
        task = asyncio.get_running_loop().create_task(run_call(), name=f"call-{leg.call_id}",
                                                       context=contextvars.Context())
        self._calls[task] = leg
        task.add_done_callback(lambda t: self._calls.pop(t, None))
        return task

    def hangup_all(self) -> None:
        """Hang up every running call now (each call's record says so)."""
        for leg in list(self._calls.values()):
            leg.hangup()

    async def drain(self, grace_s: float) -> None:
        """Let running calls finish for up to ``grace_s``, then hang up the rest and wait for them."""
        self._draining = True
        calls = list(self._calls)
        if calls:
            log.info("app.draining", active_calls=len(calls), grace_s=grace_s)
            _, pending = await asyncio.wait(calls, timeout=grace_s)
            if pending:
                log.info("app.hanging_up", active_calls=len(pending))
                self.hangup_all()
                _, pending = await asyncio.wait(pending, timeout=POST_HANGUP_FLUSH_S + 5.0)
                for task in pending:
                    task.cancel()

    async def place_call(self, uri: str, *, plan: Dialplan | None = None,
                         variables: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                         credentials: Credentials | None = None) -> CallOutcome:
        """Dial ``uri``; once answered, run the dialplan (default: the app's) until the call ends.

        A call that is not answered returns an outcome with ``answered=False`` and the SIP reason.
        """
        try:
            leg = await self.telephony.dial(uri, credentials=credentials, timeout_s=timeout_s)
        except CallFailed as exc:
            log.info("call.outbound.failed", status=exc.status_code, error=exc.message, **{"pii.to": uri})
            return CallOutcome(call_id="", direction="outbound", answered=False,
                               cause=f"failed: {exc.status_code or ''} {exc.message}".strip(),
                               side="caller", error=exc.message)
        return await self.start_call(leg, plan=plan, variables=variables)

    async def aclose(self) -> None:
        """Stop everything started, in reverse order; safe to call more than once."""
        self._draining = True
        if self._calls:
            await self.drain(0.0)
        if self._accept_task is not None:
            self._accept_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accept_task
            self._accept_task = None
        if self._telephony is not None:
            with contextlib.suppress(Exception):
                await self._telephony.stop()
            self._telephony = None
        if self._stt_channel is not None:
            await self._stt_channel.close(None)
            self._stt_channel = None
        if self._stt_server is not None:
            await self._stt_server.stop(grace_s=1.0)
            self._stt_server = None
        if self._records is not None:
            await self._records.aclose()
            self._records = None
        log.info("app.stopped")


__all__ = [
    "App",
    "CallError",
    "CallOutcome",
    "CallPipeline",
    "MemoSynthesizer",
    "SpeechOnsetDetector",
    "prerender",
    "resolve_dialplan_path",
    "static_prompts",
    "telephony_config",
]
