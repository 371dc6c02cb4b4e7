"""Answering-machine detection on one outbound call: the detector fed, its decision acted on.

Theory of operation. :class:`AnswerDetection` is given its parts (the call's
:class:`~voicebot.call.outcome.CallOutcome`, its :class:`~voicebot.call.records.RecordLane`, the
:class:`~voicebot.dialog.runner.DialogRunner`, a hang-up callback and the :class:`AmdOptions`), never
the pipeline. The pipeline hands it the callee's first frames (:meth:`AnswerDetection.feed`) and the
recognizer's texts (:meth:`AnswerDetection.transcript`); the
:class:`~voicebot.amd.AnsweringMachineDetector` turns them into one decision, which goes into the
outcome and the call record and, when the dialplan handles the judgement itself (``on_human`` /
``on_machine``), to the dialog as an event. After a beep is detected (~160 ms into it) the frames
that follow measure its tail: it is over after 60 ms of quiet (or 3 s). A machine whose greeting is
followed by :data:`NO_BEEP_SILENCE_MS` of quiet and no beep has none: the message may start.

In ``wait`` mode :meth:`AnswerDetection.hold_dialog` keeps the dialog from starting until the
decision is known (sets ``answer_type``), and for a machine with ``beep_wait_s`` also until the beep
has ended or the greeting has ended without one (sets ``beep``).
"""

from __future__ import annotations

import asyncio
import audioop
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from voicebot.amd import AmdDecided, AmdEvent, AmdSettings, AnsweringMachineDetector, BeepDetected
from voicebot.call.outcome import CallOutcome
from voicebot.call.records import RecordLane
from voicebot.dialog.runner import DialogRunner
from voicebot.media.frames import FRAME_MS

log = structlog.get_logger(logger_name=__name__)

# Below this RMS a frame after a detected beep is quiet: the beep is over.
BEEP_QUIET_RMS = 300
# A machine whose greeting has been followed by this much quiet and no beep: many have none (and a
# tone broken by packet loss is missed); the message starts rather than wait for a beep to come.
NO_BEEP_SILENCE_MS = 2000


@dataclass(frozen=True, slots=True)
class AmdOptions:
    """Answering-machine detection on an outbound call (issue 10)."""

    settings: AmdSettings = field(default_factory=AmdSettings)
    wait: bool = False  # start the dialog only once decided, with the variable answer_type set
    hangup_on_machine: bool = False  # a machine is hung up on at once (the campaign retries later)
    listen_s: float = 30.0  # how long after the answer the detector (and its beep detector) listen
    # A machine: hold the dialog until its beep has ended, or its greeting has ended without one
    # (at most this long), so a message is recorded rather than spoken over the greeting; 0 starts
    # the dialog at the decision.
    beep_wait_s: float = 0.0


class AnswerDetection:
    """One outbound call's answering-machine detection, given the call's parts."""

    def __init__(self, options: AmdOptions, *, outcome: CallOutcome, records: RecordLane,
                 runner: DialogRunner, hang_up: Callable[[str], None]) -> None:
        """``hang_up(reason)``: end the call from the robot's side (``hangup_on_machine``)."""
        self.options = options
        self.detector = AnsweringMachineDetector(options.settings)
        self._outcome = outcome
        self._records = records
        self._runner = runner
        self._hang_up = hang_up
        self._decided = asyncio.Event()
        self._decision: AmdDecided | None = None
        self._beep = asyncio.Event()  # the beep has been heard and has ended
        self._greeting_over = asyncio.Event()  # a machine's greeting ended without a beep
        self._beep_heard_ms: int | None = None
        self._dialog_amd = False  # the dialplan handles the judgement (on_human/on_machine)
        self._dialog_running = False
        self._quiet_frames = 0

    @property
    def position_ms(self) -> int:
        return self.detector.position_ms

    # ---- inputs ----

    def feed(self, pcm16: bytes) -> None:
        """One 20 ms frame of the callee's audio."""
        if self._listening():
            self._handle(self.detector.feed(pcm16))
            decided = self._decision
            if (decided is not None and decided.result == "machine"
                    and not self._greeting_over.is_set()
                    and self.detector.silence_ms >= NO_BEEP_SILENCE_MS):
                self._greeting_over.set()
                if self._dialog_amd:
                    self._runner.speech_ended()  # wait_for_beep: the greeting ended, no beep
        elif self._beep_heard_ms is not None and not self._beep.is_set():
            self._beep_tail(pcm16)

    def transcript(self, text: str, *, final: bool) -> None:
        """A recognizer text (partial or final), until the detector has decided."""
        if self.detector.decision is None:
            self._handle(self.detector.transcript(text, final=final))

    def _listening(self) -> bool:
        return self._beep_heard_ms is None and self.detector.position_ms < self.options.listen_s * 1000

    def _beep_tail(self, pcm16: bytes) -> None:
        """After the beep is detected (~160 ms into it): it is over after 60 ms of quiet, or 3 s."""
        assert self._beep_heard_ms is not None
        self._quiet_frames = self._quiet_frames + 1 if audioop.rms(pcm16, 2) < BEEP_QUIET_RMS else 0
        self._beep_heard_ms += FRAME_MS
        if self._quiet_frames >= 3 or self._beep_heard_ms >= 3000:
            log.info("call.amd.beep_ended", after_ms=self._beep_heard_ms)
            self._beep.set()
            if self._dialog_amd:
                self._runner.beep_detected()

    def _handle(self, events: list[AmdEvent]) -> None:
        for event in events:
            if isinstance(event, BeepDetected):
                log.info("call.amd.beep", frequency_hz=round(event.frequency_hz), at_ms=self.position_ms)
                self._beep_heard_ms = 0
                continue
            if self._decision is not None:
                continue  # decided already (e.g. 'no-audio' while the detector was still undecided)
            self._decision = event
            o = self._outcome
            o.answer_type, o.amd_reason, o.amd_evidence = event.result, event.reason, dict(event.evidence)
            log.info("call.amd.decided", answer_type=event.result, reason=event.reason,
                     decided_ms=event.decided_ms, **{"pii.evidence": event.evidence})
            records = self._records
            records.write(records.store.amd_decided, answer_type=event.result, reason=event.reason,
                          evidence={**event.evidence, "decided_ms": event.decided_ms})
            self._decided.set()
            if self._dialog_amd and self._dialog_running:
                self._runner.answer_classified(event.result, event.reason)
            if event.result == "machine" and self.options.hangup_on_machine:
                self._hang_up("amd: machine")

    # ---- the dialog ----

    async def hold_dialog(self, variables: dict[str, str]) -> bool:
        """Before the dialog starts (``wait`` mode): wait for the decision and, for a machine with
        ``beep_wait_s``, the beep's end or the greeting's end; ``answer_type`` (and ``beep``) go
        into ``variables``. False: the dialog is not to run (a machine hung up on)."""
        options = self.options
        if not options.wait:
            return True
        limit_s = self.detector.settings.total_analysis_ms / 1000 + 2.0
        try:
            await asyncio.wait_for(self._decided.wait(), limit_s)
        except TimeoutError:  # no audio came: nothing to judge by
            self._handle([AmdDecided("unknown", "no-audio", self.detector.position_ms, {})])
        variables["answer_type"] = self._outcome.answer_type or "unknown"
        if self._outcome.answer_type == "machine" and options.hangup_on_machine:
            return False
        if self._outcome.answer_type == "machine" and options.beep_wait_s > 0:
            # The beep, or the greeting's end without one, whichever comes first.
            waits = {asyncio.ensure_future(self._beep.wait()),
                     asyncio.ensure_future(self._greeting_over.wait())}
            try:
                await asyncio.wait(waits, timeout=options.beep_wait_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
            variables["beep"] = "yes" if self._beep.is_set() else "no"
            log.info("call.amd.message_starts", beep=variables["beep"], at_ms=self.position_ms)
        return True

    def dialog_starts(self, *, handles_judgement: bool) -> bool:
        """The dialog run is about to start. A dialplan with on_human/on_machine
        (``handles_judgement``) handles the detector's judgement itself: it gets the decision (posted
        once the run has started, after its CallStarted), the beep's end and a beep-less greeting's
        end as events. Returns whether it does (the runner's ``answer_detection``)."""
        self._dialog_amd = handles_judgement
        if handles_judgement:
            asyncio.get_running_loop().call_soon(self._dialog_started)
        return handles_judgement

    def _dialog_started(self) -> None:
        """The dialog run has begun: hand it a judgement made before it started (wait mode)."""
        self._dialog_running = True
        if self._decision is not None:
            self._runner.answer_classified(self._decision.result, self._decision.reason)

    # ---- for the dialplan's actions ----

    async def wait_for_beep(self, timeout_s: float) -> bool:
        """True once the voicemail's beep was heard and has ended, False after ``timeout_s``."""
        try:
            await asyncio.wait_for(self._beep.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def decision(self) -> AmdDecided | None:
        """The detector's decision, once made."""
        await self._decided.wait()
        return self._decision


__all__ = ["BEEP_QUIET_RMS", "NO_BEEP_SILENCE_MS", "AmdOptions", "AnswerDetection"]
