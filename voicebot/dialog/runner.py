"""The thin async runner: one call's :class:`DialogMachine` wired to the call pipeline.

The pipeline implements :class:`CallControl` (play/stop prompts, start/stop listening, transfer,
hang up, record, pause/resume the audio recording) and reports what happens through the runner's
``speech_started`` / ``speech_ended`` / ``partial`` / ``final`` / ``dtmf`` / ``prompt_finished`` /
``answer_classified`` / ``beep_detected`` / ``call_ended`` methods, which stamp the injected
:class:`Clock`'s time and queue the event. :meth:`DialogRunner.run` feeds events to the machine one
at a time and carries out its commands: timers become tasks sleeping on the clock, webhooks go
through :class:`~voicebot.dialog.actions.WebhookClient`, prompts are rendered to PCM by the injected
:class:`PromptRenderer` (the dialog never synthesizes: ``voicebot.prompts`` does) in order on a
prompt lane so a slow synthesis never delays input handling. ``StopPrompt`` is executed before
anything else queued behind it: the pipeline returns the prompts it stopped and the runner reports
them finished, and the time from the triggering event to the completed stop is kept as the barge-in
latency. All tasks belong to one ``TaskGroup`` that ends with the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from voicebot.dialog import events as ev
from voicebot.dialog.actions import WebhookClient
from voicebot.dialog.errors import WebhookError
from voicebot.dialog.expect import Expectation
from voicebot.dialog.ir import AnswerType, Dialplan
from voicebot.dialog.machine import DialogMachine
from voicebot.dialog.understand import Similarity
from voicebot.errors import VoicebotError

log = structlog.get_logger(logger_name=__name__)

EVENT_QUEUE_SIZE = 256


class CallControl(Protocol):
    """What the dialog needs from the call; implemented by the call pipeline."""

    async def play_prompt(self, pcm16: bytes, *, prompt_seq: int, barge_in: bool) -> None:
        """Queue ``pcm16`` (16-bit 8 kHz mono) for playout and return (at once, or once an earlier
        streamed prompt has fully arrived, so prompts keep their order); report
        :meth:`DialogRunner.prompt_finished` (``prompt_seq``) when it has played to the end."""
        ...

    async def stop_prompt(self) -> list[int]:
        """Stop the playing prompt now and drop queued ones; returns the ``prompt_seq`` of every
        prompt stopped (the runner reports them finished; the pipeline must not)."""
        ...

    async def start_listening(self, expectation: Expectation) -> None:
        """The dialog waits for input from now on (what the caller says or keys counts), expecting
        ``expectation``; also called while listening when the expectation changes."""
        ...

    async def stop_listening(self) -> None:
        """The dialog takes no input until the next :meth:`start_listening`."""
        ...

    async def transfer(self, uri: str) -> None:
        """Blind transfer; raise a :class:`VoicebotError` if it is refused."""
        ...

    async def hangup(self, reason: str) -> None: ...

    async def record(self, key: str, value: str) -> None:
        """Store one entry of the call record."""
        ...

    async def recording_control(self, action: Literal["pause", "resume"]) -> None:
        """``pause``: stop writing the call's audio recording (the paused stretch stays as silence)
        until ``resume``; do nothing when the call is not recorded."""
        ...


class Clock(Protocol):
    def now_s(self) -> float: ...

    async def sleep_until(self, deadline_s: float) -> None: ...


class LoopClock:
    """Monotonic time in seconds from ``now`` (default ``time.monotonic``, the loop's clock);
    sleeping is asyncio's."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now

    def now_s(self) -> float:
        return self._now()

    async def sleep_until(self, deadline_s: float) -> None:
        await asyncio.sleep(max(0.0, deadline_s - self.now_s()))


class PromptRenderer(Protocol):
    """Turns a ``PlayPrompt`` into audio; implemented by :class:`voicebot.prompts.Prompts`."""

    async def render(self, prompt: ev.PlayPrompt) -> bytes:
        """16-bit 8 kHz mono PCM of ``prompt``; a :class:`VoicebotError` if it cannot be rendered
        (the runner then reports the prompt as played, so the call goes on)."""
        ...


@dataclass(slots=True)
class CallSummary:
    """What one call did (for the ``call.ended`` summary line and the tests)."""

    dialplan: str
    states: list[str]
    record: dict[str, str]
    end_reason: str
    barge_in_latencies_ms: list[float] = field(default_factory=list)
    events_dropped: int = 0


class DialogRunner:
    def __init__(
        self,
        plan: Dialplan,
        control: CallControl,
        renderer: PromptRenderer,
        *,
        clock: Clock | None = None,
        webhooks: WebhookClient | None = None,
        on_event_handled: Callable[[DialogMachine], None] | None = None,
        similarity: Similarity | None = None,
    ) -> None:
        """``on_event_handled`` is called after every event the machine handled, with the machine,
        so the call pipeline can persist states entered and variables as the call progresses.
        ``similarity``: the machine's guesses by meaning (None: phrases and keywords only)."""
        self.machine = DialogMachine(plan, similarity=similarity)
        self._on_event_handled = on_event_handled
        self._control = control
        self._renderer = renderer
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._webhooks = webhooks if webhooks is not None else WebhookClient()
        self._events: asyncio.Queue[ev.Event] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._lane: asyncio.Queue[ev.PlayPrompt] = asyncio.Queue()
        self._lane_task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # timers and webhooks in flight
        self.barge_in_latencies_ms: list[float] = []
        self.events_dropped = 0

    # -- what the pipeline reports ---------------------------------------------------------------

    def post(self, event: ev.Event) -> None:
        """Queue an event; never blocks. A full queue drops the event and counts it."""
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            self.events_dropped += 1
            log.warning("dialog.event.dropped", event=type(event).__name__, dropped=self.events_dropped)

    def _at(self, at_s: float | None) -> float:
        return self._clock.now_s() if at_s is None else at_s

    def speech_started(self, at_s: float | None = None) -> None:
        self.post(ev.SpeechStarted(self._at(at_s)))

    def speech_ended(self, at_s: float | None = None) -> None:
        self.post(ev.SpeechEnded(self._at(at_s)))

    def answer_classified(self, result: AnswerType, reason: str = "", at_s: float | None = None) -> None:
        """The answering-machine detector's judgement (outbound calls): human, machine or unknown."""
        self.post(ev.AnswerClassified(self._at(at_s), result, reason))

    def beep_detected(self, at_s: float | None = None) -> None:
        self.post(ev.BeepDetected(self._at(at_s)))

    def partial(self, text: str, at_s: float | None = None) -> None:
        self.post(ev.PartialTranscript(self._at(at_s), text))

    def final(self, text: str, at_s: float | None = None, *, alternatives: tuple[str, ...] = (),
              confidence: float | None = None, alternative_confidences: tuple[float, ...] = ()) -> None:
        """A final result: its text, the recognizer's further hypotheses (best first) and, when
        the recognizer gave them, confidences in [0, 1]."""
        self.post(ev.FinalTranscript(self._at(at_s), text, alternatives=alternatives, confidence=confidence,
                                     alternative_confidences=alternative_confidences))

    def dtmf(self, key: str) -> None:
        self.post(ev.DtmfReceived(self._clock.now_s(), key))

    def prompt_finished(self, prompt_seq: int) -> None:
        self.post(ev.PromptFinished(self._clock.now_s(), prompt_seq))

    def call_ended(self, reason: str = "hangup") -> None:
        self.post(ev.CallEnded(self._clock.now_s(), reason))

    # -- the loop --------------------------------------------------------------------------------

    async def run(
        self,
        *,
        call_id: str = "",
        caller: str = "",
        callee: str = "",
        variables: Mapping[str, str] | None = None,
        answer_detection: bool = False,
    ) -> CallSummary:
        """Run the dialog until it hangs up, transfers and the call ends, or the call ends.

        ``answer_detection``: the pipeline runs an answering-machine detector on this outbound
        call and will report :meth:`answer_classified` (what the callee says waits for it)."""
        machine = self.machine
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._lane_task = group.create_task(self._prompt_lane())
                first: ev.Event = ev.CallStarted(
                    self._clock.now_s(), call_id, caller, callee, dict(variables or {}), answer_detection
                )
                await self._dispatch(first)
                while not machine.finished:
                    await self._dispatch(await self._events.get())
                self._stop_tasks()
        finally:
            self._group = None
        log.info(
            "dialog.ended", dialplan=machine.plan.name, reason=machine.end_reason,
            states=len(machine.transitions), barge_ins=len(self.barge_in_latencies_ms),
        )
        return CallSummary(
            dialplan=machine.plan.name, states=list(machine.transitions), record=dict(machine.record),
            end_reason=machine.end_reason, barge_in_latencies_ms=list(self.barge_in_latencies_ms),
            events_dropped=self.events_dropped,
        )

    async def _dispatch(self, event: ev.Event) -> None:
        before = self.machine.state_name
        if isinstance(event, ev.FinalTranscript | ev.DtmfReceived):
            # What the caller said or keyed is personal data: only under pii.* keys.
            said = event.text if isinstance(event, ev.FinalTranscript) else event.key
            log.debug("dialog.input", state=before, kind=type(event).__name__, **{"pii.input": said})
        understood = self.machine.last_understanding
        commands = self.machine.handle(event)
        found = self.machine.last_understanding
        if found is not None and found is not understood:
            # How the dialog read it (no personal data: the intent's name, not the words).
            log.info("dialog.understood", state=before, kind=found.kind, decision=found.decision,
                     intent=found.intent.name if found.intent is not None else None,
                     confidence=round(found.confidence, 3), by_meaning=found.by_meaning)
        if self.machine.state_name != before:
            log.debug("dialog.state.entered", state=self.machine.state_name, previous=before)
        for command in commands:
            await self._execute(command, event)
        if self._on_event_handled is not None:
            self._on_event_handled(self.machine)

    async def _execute(self, command: ev.Command, cause: ev.Event) -> None:
        control = self._control
        if isinstance(command, ev.PlayPrompt):
            self._lane.put_nowait(command)
        elif isinstance(command, ev.StopPrompt):
            self._drop_queued_prompts()
            for prompt_seq in await control.stop_prompt():
                # Stopped prompts are finished for the dialog now, in the order they were queued.
                self.prompt_finished(prompt_seq)
            if not command.barge_in:
                log.info("dialog.prompt.stopped", cause=type(cause).__name__)
                return
            latency_ms = (self._clock.now_s() - cause.now_s) * 1000.0
            self.barge_in_latencies_ms.append(latency_ms)
            log.info("dialog.barge_in", latency_ms=round(latency_ms, 1), cause=type(cause).__name__)
        elif isinstance(command, ev.StartListening):
            await control.start_listening(command.expectation)
        elif isinstance(command, ev.StopListening):
            await control.stop_listening()
        elif isinstance(command, ev.SetTimer):
            self._spawn_timer(command)
        elif isinstance(command, ev.CancelTimer):
            task = self._timers.pop(command.timer_id, None)
            if task is not None:
                task.cancel()
        elif isinstance(command, ev.CallWebhook):
            self._spawn(self._webhook(command))
        elif isinstance(command, ev.Record):
            await control.record(command.key, command.value)
        elif isinstance(command, ev.PauseRecording):
            log.info("dialog.recording.paused", state=self.machine.state_name)
            await control.recording_control("pause")
        elif isinstance(command, ev.ResumeRecording):
            log.info("dialog.recording.resumed", state=self.machine.state_name)
            await control.recording_control("resume")
        elif isinstance(command, ev.Transfer):
            log.info("dialog.transfer", uri=command.uri)
            try:
                await control.transfer(command.uri)
            except VoicebotError as exc:
                self.post(ev.TransferFailed(self._clock.now_s(), exc.message))
        elif isinstance(command, ev.Hangup):
            self._stop_tasks()
            await control.hangup(command.reason)

    # -- tasks -----------------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._group is not None
        task = self._group.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_timer(self, command: ev.SetTimer) -> None:
        async def fire() -> None:
            await self._clock.sleep_until(command.deadline_s)
            self._timers.pop(command.timer_id, None)
            self.post(ev.TimerFired(self._clock.now_s(), command.timer_id))

        self._timers[command.timer_id] = self._spawn(fire())

    async def _webhook(self, command: ev.CallWebhook) -> None:
        started_s = self._clock.now_s()
        try:
            answer = await self._webhooks.call(command.url, command.payload, command.timeout_s)
        except WebhookError as exc:
            log.warning("dialog.webhook.failed", url=command.url, error=exc.message)
            self.post(ev.WebhookFailed(self._clock.now_s(), command.request_id, exc.message))
            return
        log.info("dialog.webhook.answered", url=command.url,
                 elapsed_ms=round((self._clock.now_s() - started_s) * 1000.0, 1))
        self.post(ev.WebhookSucceeded(
            self._clock.now_s(), command.request_id, answer.variables, answer.next_state
        ))

    async def _prompt_lane(self) -> None:
        """Render prompts in order and hand them to the pipeline (which queues playout)."""
        while True:
            command = await self._lane.get()
            try:
                pcm16 = await self._renderer.render(command)
            except VoicebotError as exc:
                # A prompt that cannot be rendered must not wedge the call: report it as played.
                log.error("dialog.prompt.failed", prompt_seq=command.prompt_seq, error=exc.message)
                self.prompt_finished(command.prompt_seq)
                continue
            await self._control.play_prompt(pcm16, prompt_seq=command.prompt_seq, barge_in=command.barge_in)

    def _drop_queued_prompts(self) -> None:
        """Barge-in: prompts not yet handed to the pipeline are dropped; the one rendering too."""
        while not self._lane.empty():
            self._lane.get_nowait()
        if self._lane_task is not None and self._group is not None:
            self._lane_task.cancel()
            self._lane_task = self._group.create_task(self._prompt_lane())

    def _stop_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._timers.clear()
        if self._lane_task is not None:
            self._lane_task.cancel()
            self._lane_task = None
