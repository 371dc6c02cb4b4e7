"""One call leg's pipeline: the leg joined to recognition, the dialog and the call record.

Theory of operation. :class:`CallPipeline` is given its parts (:class:`CallParts`: the record store,
the recognizer's settings and shared channel, the prompt renderer, the clock), never the whole
application. Its tasks all live in ONE ``asyncio.TaskGroup``, cancelled when the leg ends:

* ``audio``: the leg's 20 ms frames go straight into the leg's
  :class:`~voicebot.stt.client.RecognitionStream` (chunking, real-time pacing, silence_chunks,
  session rotation and reconnects are the client's job) and, while a barge-in prompt plays, through
  a small VAD (:class:`~voicebot.media.onset.SpeechOnsetDetector`) so the prompt stops ~200 ms after
  speech starts, without waiting for the recognizer's first partial;
* ``recognition``: partials go to the dialog (a non-empty one barges in), finals to the dialog
  first (the answer starts before anything is written) and then to the record with the recognizer
  session id; sessions opened/closed go to the record;
* ``leg-events``: DTMF to the dialog and the record, prompt completions back to the dialog;
* ``dialog``: the :class:`~voicebot.dialog.runner.DialogRunner`, driving the leg through this
  pipeline as its :class:`~voicebot.dialog.runner.CallControl` (play = queue the rendered PCM on the
  RTP sender, stop = flush within one packet, transfer = REFER and, once the NOTIFY sipfrag says
  the target answered, BYE; hang-up = BYE);
* ``records``: the call record's writes, in order, off the answer path
  (:class:`~voicebot.call.records.RecordLane`).

Outbound calls placed with :class:`AmdOptions` also feed the first seconds of the callee's audio and
the recognizer's texts to their :class:`~voicebot.call.answering.AnswerDetection`; its decision goes
into the outcome and the call record, and (``wait``) the dialog starts only once it is known, with
the variable ``answer_type`` set. The beep detector keeps listening for :meth:`CallPipeline.wait_for_beep`.

When the leg ends (either side, or the network), the dialog gets ``call_ended``, the tasks are
cancelled, and the record gets the hang-up cause and side. An exception in any of these tasks ends
that call only: the leg is hung up and the record says why. Each call ends with one
``call.summary`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from voicebot.amd import AmdDecided, AnsweringMachineDetector
from voicebot.call.answering import AmdOptions, AnswerDetection
from voicebot.call.outcome import CallOutcome, final_cause, first_leaf
from voicebot.call.recording import CallRecording, PromptTextTap, RecordingSettings, TimelineMark
from voicebot.call.records import RecordLane
from voicebot.call.streaming import PromptFeeds, StreamingRenderer
from voicebot.clock import Clock, monotonic
from voicebot.dialog.expect import Expectation
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.runner import DialogRunner, LoopClock, PromptRenderer
from voicebot.dialog.understand import Similarity
from voicebot.errors import VoicebotError
from voicebot.media.frames import FRAME_MS, Frame, FrameKind
from voicebot.media.onset import SpeechOnsetDetector
from voicebot.observe.metrics import CallMetrics
from voicebot.records import CallRecordStore
from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    PartialReceived,
    RecognitionError,
    RecognitionStream,
    SessionClosed,
    SessionOpened,
)
from voicebot.stt.hints import RecognitionHints
from voicebot.telephony import CallLeg, DigitReceived, LegEnded, MediaChanged, PlaybackFinished

if TYPE_CHECKING:
    import grpc.aio

log = structlog.get_logger(logger_name=__name__)

# After the leg ends, wait this long at most for the last final (and the dialog) before cancelling.
POST_HANGUP_FLUSH_S = 3.0
# A prompt that starts this long after a final answers something else (a timer, a webhook): it is
# not counted as the reaction to that final.
REACTION_WINDOW_S = 2.0
# How long a failed call waits for its leg to confirm the hang-up.
FAILED_HANGUP_WAIT_S = 5.0
# How long the end of a call waits for its record writes before giving up on them.
RECORD_FLUSH_S = 10.0


# Where a call's events go (the control API's registry): kind ("answered", "utterance", "state",
# "dtmf", "transfer") and its data. Called inline, so it must never block.
CallEventSink = Callable[[str, Mapping[str, Any]], None]


def _no_events(kind: str, data: Mapping[str, Any]) -> None:
    pass


class CallError(VoicebotError):
    """A call could not be placed or its pipeline failed; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class CallParts:
    """What every call's pipeline is given: the record store, the recognizer (settings and the
    channel every call shares), the prompt renderer, and the clock all its times come from."""

    records: CallRecordStore
    stt_settings: ClientSettings
    stt_channel: grpc.aio.Channel | None
    renderer: PromptRenderer
    clock: Clock = monotonic
    stt_hints: bool = True  # send the dialog's expectations as recognition hints (voicebot.stt.hints)
    trust_confidence: bool = False  # the recognizer's confidence of a lone final means something
    recording: RecordingSettings | None = None  # where calls are recorded (None: nowhere)
    record_calls: bool = False  # record every call unless the pipeline is told otherwise
    metrics: CallMetrics | None = None  # the instance's Prometheus numbers (None: not counted)
    similarity: Similarity | None = None  # the dialog's guesses by meaning (None: phrases only)


def hints_for(expectation: Expectation) -> RecognitionHints:
    """The dialog's expectation in the recognizer's wire form (same field names; the dialog
    already bounds prompt and phrases to what the hints accept)."""
    return RecognitionHints(mode=expectation.mode, prompt=expectation.prompt, phrases=expectation.phrases,
                            min_digits=expectation.min_digits, max_digits=expectation.max_digits)


def heard_text(event: FinalReceived) -> str:
    """What the caller said, for the record and the transcript: when hints made the server rescore
    a menu or a yes/no question, its first alternative is the matched phrase ("yes") and its last
    the free decode ("Yes, I will be there"); the dialog acts on the first, the record keeps the last."""
    return event.alternatives[-1][0] if event.alternatives else event.text


def final_readings(event: FinalReceived, *, trust_confidence: bool = False) -> dict[str, Any]:
    """What the dialog gets besides the top text: the recognizer's further hypotheses, always, and
    the confidences when there are several (voicebot's server rescored a menu against the audio:
    the matched phrase at 0.5-1, the free decode after it). A lone hypothesis carries its
    confidence only with ``trust_confidence``: the embedded recognizer (a cloud server's may mean
    something else or be 0) in a state that expects digits, where a lone digit reading cannot
    answer "no match" and its doubt is the only sign of a misheard number. For intents Whisper's
    plain token probability is too low on good answers to weigh them (measured: menu intents
    85 % -> 72 % when it did)."""
    texts = tuple(text for text, _ in event.alternatives)
    if not texts:
        return {"confidence": event.confidence} if trust_confidence and event.confidence > 0 else {}
    return {"alternatives": texts, "confidence": event.confidence,
            "alternative_confidences": tuple(conf for _, conf in event.alternatives)}


def push_frame(stream: RecognitionStream, frame: Frame) -> None:
    """One received frame to the recognizer, with its kind: jitter-buffer silence (nothing was
    received) is said to be silence, so the stream sends it as ``silence_chunk`` without measuring
    it; received and concealed audio is left to the stream's own energy check (``None``), since a
    concealed frame may still carry the end of a word."""
    stream.push_audio(frame.pcm, is_silence=True if frame.kind is FrameKind.SILENCE else None)


class CallPipeline:
    """One call leg's pipeline; also the :class:`CallControl` the dialog runner drives."""

    def __init__(self, parts: CallParts, leg: CallLeg, plan: Dialplan, variables: Mapping[str, str],
                 *, record: bool | None = None, amd: AmdOptions | None = None,
                 events: CallEventSink | None = None) -> None:
        """``record``: record this call's audio (needs ``parts.recording``); None = ``parts.record_calls``.
        ``amd``: run answering-machine detection on an outbound call's first seconds. ``events``:
        where the call's events go (the control API)."""
        self.parts = parts
        self._publish = events or _no_events
        self._states_published = 0
        self.leg = leg
        self.call_id = leg.call_id
        self.plan = plan
        self.variables = dict(variables)
        self._clock = parts.clock
        self._records = RecordLane(parts.records, leg.call_id)
        self.recording: CallRecording | None = None
        self.record_audio = parts.record_calls if record is None else record  # from the answer
        # The dialog's renderer, noting each prompt's text for the recording's timeline; dynamic
        # text comes sentence by sentence, the rest fed into the prompt's playout (call/streaming.py).
        self._streaming = StreamingRenderer(parts.renderer, clock=parts.clock)
        self._feeds = PromptFeeds(self._play_chunk, self._prompt_played)
        self.renderer = PromptTextTap(self._streaming, self._prompt_rendered)
        self.runner = DialogRunner(plan, self, self.renderer, clock=LoopClock(parts.clock),
                                   on_event_handled=self.sync_record, similarity=parts.similarity)
        self.stream: RecognitionStream | None = None
        self._prompts: dict[int, bool] = {}  # dialog prompt_seq (the leg's prompt id) -> barge_in
        self._listening = False  # the dialog takes input (StartListening .. StopListening)
        self._expect_digits = False  # the listening state expects a digit string
        self._vad = SpeechOnsetDetector()
        self._speech_onset_s: float | None = None  # start of the speech that may barge in
        self._onset_source = ""
        self._t0: float | None = None  # clock time of call-timeline 0 (first frame)
        self._speech_end_s: float | None = None  # end of the last final's speech, for reaction time
        self._final_at_s = 0.0  # when that final arrived
        self._robot_hangup: str | None = None
        self._sessions_open: set[str] = set()
        self.outcome = CallOutcome(self.call_id, leg.direction, False, "", "caller")
        self.answering = (
            AnswerDetection(amd, outcome=self.outcome, records=self._records, runner=self.runner,
                            hang_up=self._hang_up)
            if amd is not None and leg.direction == "outbound" else None
        )

    @property
    def record_id(self) -> str:
        return self._records.record_id

    # ---- the call ----

    async def run(self) -> CallOutcome:
        leg = self.leg
        started_s = self._clock()
        store = self.parts.records
        self._records.write(store.call_started, direction=leg.direction, from_uri=leg.from_uri,
                            to_uri=leg.to_uri)
        ended: LegEnded | None = None
        record_task = asyncio.get_running_loop().create_task(self._records.run(), name="call-records")
        try:
            if leg.direction == "inbound":
                await leg.answer()
            if leg.is_ended:
                ended = await leg.ended()
            else:
                self.outcome.answered = True
                self._records.write(store.call_answered)
                self._publish("answered", {})
                ended = await self._run_answered()
        except Exception as exc:  # one call's failure ends that call, never the process
            root = first_leaf(exc)
            message = root.message if isinstance(root, VoicebotError) else repr(root)
            log.error("call.failed", error=message, exc_info=not isinstance(root, VoicebotError))
            self.outcome.error = message
            leg.hangup()
            with contextlib.suppress(TimeoutError):
                ended = await asyncio.wait_for(leg.ended(), FAILED_HANGUP_WAIT_S)
        finally:
            cancelled = False
            if self.stream is not None:
                try:
                    await self.stream.aclose()
                except asyncio.CancelledError:
                    # Being cancelled (a shutdown that outlived its grace): still close the record,
                    # then let the cancellation go on.
                    cancelled = True
            cause, side = final_cause(ended, error=self.outcome.error, robot_hangup=self._robot_hangup)
            self.outcome.cause, self.outcome.side = cause, side
            for session_id in list(self._sessions_open):
                self._write_session_ended(session_id, "call ended")
            self.stop_recording()
            self._records.write(store.call_ended, cause=cause, side=side)
            self._records.close()
            try:
                await asyncio.wait_for(asyncio.shield(record_task), RECORD_FLUSH_S)
            except TimeoutError:
                log.error("call.record.stuck", pending=self._records.pending)
                record_task.cancel()
            self.outcome.record_id = self.record_id
            self._summary(started_s)
            if cancelled:
                raise asyncio.CancelledError
        return self.outcome

    async def _run_answered(self) -> LegEnded:
        self.stream = RecognitionStream(self.parts.stt_settings, channel=self.parts.stt_channel,
                                        call_id=self.call_id)
        self.stream.start()
        if self.record_audio:
            self.start_recording()
        variables = {**self.variables}
        try:
            return await self._run_tasks(variables)
        finally:
            await self._feeds.aclose()  # streamed prompts' synthesis stops with the call

    async def _run_tasks(self, variables: dict[str, str]) -> LegEnded:
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
        dialog_amd = False
        if self.answering is not None:
            if not await self.answering.hold_dialog(variables):
                return  # a machine, hung up on
            dialog_amd = self.answering.dialog_starts(handles_judgement=bool(self.plan.on_answer))
        summary = await self.runner.run(call_id=self.call_id, caller=self.leg.from_uri,
                                        callee=self.leg.to_uri, variables=variables,
                                        answer_detection=dialog_amd)
        self.outcome.dialog = summary
        self.sync_record(self.runner.machine)

    # ---- media and recognition ----

    async def _audio_in(self) -> None:
        stream = self.stream
        assert stream is not None
        try:
            async for frame in self.leg.frames():
                now = self._clock()
                if self._t0 is None:
                    self._t0 = now - FRAME_MS / 1000
                if self.recording is not None and not self.recording.aligned:
                    self.recording.frame_consumed(frame)
                push_frame(stream, frame)
                if self.answering is not None:
                    self.answering.feed(frame.pcm)
                self.on_caller_audio(frame.pcm, now)
        finally:
            stream.end_input()

    def on_caller_audio(self, pcm16: bytes, now: float) -> None:
        """Speech onsets: they stop a barge-in prompt, and while the dialog listens with nothing
        playing they tell it the caller is still talking, so its no-input timer does not run out
        in the middle of an answer whose final has not come yet (partials can be rationed away
        on a busy recognizer)."""
        if self._barge_in_armed():
            onset = self._vad.feed(pcm16, now)
            if onset is not None:
                self._speech_started(onset, "vad")
        elif self._listening and not self._prompts and self._vad.feed(pcm16, now) is not None:
            self.runner.speech_started(at_s=now)

    # ---- answering-machine detection (voicebot/call/answering.py) ----

    def _hang_up(self, reason: str) -> None:
        self._robot_hangup = reason
        self.leg.hangup()

    @property
    def amd(self) -> AnsweringMachineDetector | None:
        return self.answering.detector if self.answering is not None else None

    @property
    def amd_position_ms(self) -> int:
        return self.answering.position_ms if self.answering is not None else 0

    async def wait_for_beep(self, timeout_s: float) -> bool:
        """For a dialplan's ``wait_for_beep``: True once the voicemail's beep was heard and has ended
        (the message can start now), False after ``timeout_s`` or on a call without detection."""
        return await self.answering.wait_for_beep(timeout_s) if self.answering is not None else False

    async def amd_decision(self) -> AmdDecided | None:
        """The detector's decision, once made (None on a call without detection)."""
        return await self.answering.decision() if self.answering is not None else None

    def _barge_in_playing(self) -> bool:
        return any(self._prompts.values())

    def _barge_in_armed(self) -> bool:
        """Speech can stop a prompt: a barge-in prompt plays and the dialog listens (the dialog
        ignores speech while it does not listen, so onsets are neither detected nor measured)."""
        return self._listening and self._barge_in_playing()

    def _speech_started(self, onset_s: float, source: str) -> None:
        if self._speech_onset_s is None:
            self._speech_onset_s, self._onset_source = onset_s, source
            self.runner.speech_started(at_s=onset_s)

    def _call_time_s(self, call_ms: int) -> float:
        return (self._t0 if self._t0 is not None else self._clock()) + call_ms / 1000

    async def _recognition(self) -> None:
        try:
            await self._recognition_events()
        except RecognitionError as exc:
            if self.parts.metrics is not None:
                self.parts.metrics.recognition_failed()
            if not self.leg.is_ended:
                raise  # the call cannot go on without recognition: it ends with this reason
            # After the hang-up only the flush of the last utterance is lost; the call went fine.
            log.warning("call.recognition.lost_after_hangup", error=exc.message)

    async def _recognition_events(self) -> None:
        stream = self.stream
        assert stream is not None
        store = self.parts.records
        async for event in stream:
            if isinstance(event, PartialReceived):
                if event.text.strip():
                    at_s = self._call_time_s(event.start_ms)
                    if self._barge_in_armed():
                        self._speech_started(at_s, "partial")
                    if self.answering is not None:
                        self.answering.transcript(event.text, final=False)
                    self.runner.partial(event.text, at_s=at_s)
            elif isinstance(event, FinalReceived):
                # The dialog first: the answer must not wait for the record.
                self._speech_end_s = self._call_time_s(event.end_ms)
                self._final_at_s = self._clock()
                if self.parts.metrics is not None and self._final_at_s >= self._speech_end_s:
                    # end of speech on the call timeline to the final's arrival, on our one clock
                    self.parts.metrics.recognition_latency.observe(self._final_at_s - self._speech_end_s)
                if self.answering is not None:
                    self.answering.transcript(event.text, final=True)
                self.runner.final(event.text, **final_readings(
                    event, trust_confidence=self.parts.trust_confidence and self._expect_digits))
                heard = heard_text(event)
                self.outcome.utterances.append(heard)
                log.info("call.final", session_id=event.session_id, start_ms=event.start_ms,
                         end_ms=event.end_ms, **{"pii.text": heard, "pii.understood": event.text})
                self._publish("utterance", {"text": heard, "start_ms": event.start_ms,
                                            "end_ms": event.end_ms})
                self._records.write(store.utterance, session_id=event.session_id,
                                    start_ms=event.start_ms, end_ms=event.end_ms, text=heard,
                                    normalized_text=event.normalized_text)
                if self.recording is not None:
                    self.recording.utterance(event.start_ms, event.end_ms, heard)
            elif isinstance(event, SessionOpened):
                self._sessions_open.add(event.session_id)
                if self.parts.metrics is not None:
                    self.parts.metrics.session_opened(event.reason)
                log.info("call.stt_session.opened", session_id=event.session_id, reason=event.reason,
                         base_ms=event.base_ms)
                self._records.write(store.stt_session_started, event.session_id)
            elif isinstance(event, SessionClosed):
                self._sessions_open.discard(event.session_id)
                if self.parts.metrics is not None:
                    self.parts.metrics.session_closed(event.reason)
                self._write_session_ended(event.session_id, event.reason)

    def _write_session_ended(self, session_id: str, reason: str) -> None:
        self._records.write(self.parts.records.stt_session_ended, session_id, reason=reason)

    async def _leg_events(self) -> None:
        async for event in self.leg.events():
            if isinstance(event, DigitReceived):
                if self._barge_in_armed():
                    self._speech_started(self._clock(), "dtmf")
                self.runner.dtmf(event.digit)
                log.info("call.dtmf", source=event.source, **{"pii.digit": event.digit})
                self._publish("dtmf", {"digit": event.digit, "source": event.source})
                self._records.write(self.parts.records.dtmf, event.digit)
            elif isinstance(event, PlaybackFinished):
                if not self._feeds.chunk_played(event.prompt_id):  # not a sentence of a streamed prompt
                    self._prompt_played(event.prompt_id)
            elif isinstance(event, MediaChanged):
                log.info("call.media_changed", held=event.held, codec=event.codec)
            elif isinstance(event, LegEnded):
                return

    def _prompt_played(self, prompt_id: int) -> None:
        if self._prompts.pop(prompt_id, None) is not None:
            self.runner.prompt_finished(prompt_id)
        if not self._barge_in_playing():
            # Nothing left to barge into: the next barge-in prompt measures afresh.
            self._vad.reset()
            self._speech_onset_s = None

    def _play_chunk(self, pcm16: bytes, prompt_seq: int) -> None:
        if not self.leg.is_ended:
            self.leg.play(pcm16, prompt_id=prompt_seq)

    # ---- CallControl ----

    async def play_prompt(self, pcm16: bytes, *, prompt_seq: int, barge_in: bool) -> None:
        rest = self._streaming.take_rest(prompt_seq)  # a streamed prompt's sentences after pcm16
        try:
            await self._feeds.drained()  # a streamed prompt before this one is still arriving
        except BaseException:
            if rest is not None:
                await rest.aclose()
            raise
        if self.leg.is_ended:
            if rest is not None:
                await rest.aclose()
            self.runner.prompt_finished(prompt_seq)
            return
        now = self._clock()
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
        self.leg.play(pcm16, prompt_id=prompt_seq)
        self._prompts[prompt_seq] = barge_in
        if rest is not None:
            self._feeds.start(prompt_seq, rest)

    async def stop_prompt(self) -> list[int]:
        self._feeds.cancel_all()  # streamed prompts: no more sentences, their synthesis stops
        if not self.leg.is_ended:
            self.leg.flush()
        # Stopped prompts are finished for the dialog (the runner reports them); the leg's later
        # reports of them are ignored.
        stopped = sorted(self._prompts)
        self._prompts.clear()
        self._vad.reset()
        if self._speech_onset_s is not None:
            latency_ms = (self._clock() - self._speech_onset_s) * 1000
            self.outcome.barge_in_ms.append(latency_ms)
            log.info("call.barge_in", latency_ms=round(latency_ms, 1), source=self._onset_source)
            self._speech_onset_s = None
        return stopped

    async def start_listening(self, expectation: Expectation) -> None:
        # Recognition runs for the whole call (the recognizer needs continuous audio, and the record
        # keeps every utterance); listening arms barge-in and tells the recognizer what the state
        # expects (voicebot.stt.hints): the stream opens a session carrying it between utterances.
        self._listening = True
        self._expect_digits = expectation.mode == "digits"
        if self.stream is not None and self.parts.stt_hints:
            self.stream.set_session_metadata(hints_for(expectation).to_metadata())

    async def stop_listening(self) -> None:
        self._listening = False

    async def transfer(self, uri: str) -> None:
        store = self.parts.records
        self.outcome.transfer_target = uri
        self._records.write(store.transfer, uri)
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
        self._publish("transfer", {"target": uri, "result": result})
        self._records.write(self.parts.records.transfer, uri, result)

    async def hangup(self, reason: str) -> None:
        self._robot_hangup = reason or "dialplan"
        self.leg.hangup()

    async def record(self, key: str, value: str) -> None:
        self._records.write(self.parts.records.variable_set, key, value)

    async def recording_control(self, action: Literal["start", "pause", "resume", "stop"]) -> None:
        """The dialplan's ``record_audio: pause|resume`` (CallControl; start/stop for the app):
        see the methods below."""
        {"start": self.start_recording, "pause": self.pause_recording,
         "resume": self.resume_recording, "stop": self.stop_recording}[action]()

    # ---- call recording (voicebot/call/recording.py) ----

    def start_recording(self) -> bool:
        """Record this call's audio from now on (normally from the answer: ``record=True`` or the
        config); False if it is recorded already, not answered, or recording is not configured."""
        settings = self.parts.recording
        if self.recording is not None or settings is None or self.leg.is_ended or not self.outcome.answered:
            return False
        store = self.parts.records

        def on_mark(mark: TimelineMark) -> None:
            self._records.write(store.recording_mark, kind=mark.kind, start_ms=mark.start_ms,
                                end_ms=mark.end_ms, prompt_id=mark.prompt_id, text=mark.text)

        try:
            recording = CallRecording(settings, self.call_id, started_at=time.time(), on_mark=on_mark)
        except VoicebotError as exc:  # a full or read-only disk must not stop the call
            log.error("call.recording.failed", error=exc.message)
            return False
        self.recording = recording
        self._records.write(store.recording_started, path=str(recording.paths[0]), format=settings.format,
                            sample_rate_hz=settings.sample_rate_hz,
                            robot_path=str(recording.paths[1]) if len(recording.paths) > 1 else None)
        self.leg.set_media_tap(recording.on_media)
        log.info("call.recording.started", path=str(recording.path), format=settings.format)
        return True

    def pause_recording(self) -> bool:
        """Silence on both channels from now on (e.g. while a card number is keyed or spoken); the
        timeline keeps running and the paused stretch is marked. False if not recording or paused."""
        return self.recording.pause() if self.recording is not None else False

    def resume_recording(self) -> bool:
        """Record the audio again after :meth:`pause_recording`; False if it was not paused."""
        return self.recording.resume() if self.recording is not None else False

    def _prompt_rendered(self, prompt_seq: int, text: str) -> None:
        if self.recording is not None:
            self.recording.prompt_text(prompt_seq, text)

    def stop_recording(self) -> None:
        """Close the recording (the call's end does this); its length and any error go to the record."""
        recording = self.recording
        if recording is None or recording.closed:
            return
        self.leg.set_media_tap(None)
        recording.close()
        self._records.write(self.parts.records.recording_ended, duration_ms=recording.duration_ms,
                            error=recording.failed)
        log.info("call.recording.finished", path=str(recording.path), duration_ms=recording.duration_ms,
                 error=recording.failed)

    # ---- the record ----

    def sync_record(self, machine: DialogMachine) -> None:
        """After each dialog event: new states entered and changed variables go to the record."""
        self._records.sync_dialog(machine.transitions, machine.variables)
        for state in machine.transitions[self._states_published:]:
            self._publish("state", {"state": state})
        self._states_published = len(machine.transitions)

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
            error=o.error, duration_s=round(self._clock() - started_s, 3),
            states=dialog.states if dialog else [], dialog_end=dialog.end_reason if dialog else None,
            finals=len(o.utterances), transfer_target=o.transfer_target, transfer_result=o.transfer_result,
            reaction_ms=[round(x) for x in o.reaction_ms], barge_in_ms=[round(x) for x in o.barge_in_ms],
            answer_type=o.answer_type, amd_reason=o.amd_reason,
            stt_dropped_audio_ms=self.stream.dropped_audio_ms if self.stream else 0, **stats,
            **{"pii.from": self.leg.from_uri, "pii.to": self.leg.to_uri},
        )


__all__ = ["AmdOptions", "CallError", "CallParts", "CallPipeline"]
