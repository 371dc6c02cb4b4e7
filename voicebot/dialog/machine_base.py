"""The dialog machine's plumbing: per-call state, the command buffer, prompts queued, listening
and timers. :class:`~voicebot.dialog.machine.DialogMachine` adds what the dialog does on each
event; this base holds what every one of those steps reads and writes, and the small helpers that
turn a change of it into commands (``PlayPrompt``, ``StartListening`` when the expectation changes,
``SetTimer`` / ``CancelTimer`` by kind). Pure: no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.dialog import ir
from voicebot.dialog.events import (
    CancelTimer,
    Command,
    PlayPrompt,
    SetTimer,
    StartListening,
    StopListening,
)
from voicebot.dialog.expect import Expectation, expectation_for
from voicebot.dialog.match import NO_PHRASES, YES_PHRASES
from voicebot.dialog.understand import Hypothesis, Similarity, Understanding

# Timer kinds (a timer's id is its kind and a generation number).
NO_INPUT = "no_input"
INTER_DIGIT = "inter_digit"
BEEP_TIMEOUT = "beep_timeout"
BEEP_SILENCE = "beep_silence"
ANSWER_WAIT = "answer_wait"


@dataclass(slots=True)
class Guess:
    """A match the caller is being asked to confirm: an intent, or (``intent`` None) the digits
    of a capture that reads back (``digits``: all of them, keyed ones included)."""

    intent: ir.Intent | None
    policy: ir.Confirm
    no_input: int = 0
    no_match: int = 0
    digits: str = ""

    @property
    def say(self) -> str:
        """The guess as the question says it: the intent's name, or the digits one by one."""
        return self.intent.say if self.intent is not None else " ".join(self.digits)


@dataclass(frozen=True, slots=True)
class _Playing:
    seq: int
    barge_in: bool


class MachineBase:
    """State and helpers shared by every step of one call's dialog."""

    def __init__(self, plan: ir.Dialplan, *, similarity: Similarity | None = None) -> None:
        """``similarity``: guesses by meaning when no phrase matches (voicebot.dialog.understand)."""
        self.plan = plan
        self.similarity = similarity
        self.variables: dict[str, str] = dict(plan.variables)
        self.record: dict[str, str] = {}
        self.state: ir.State | None = None
        self.started = False
        self.finished = False
        self.end_reason = ""
        self.transitions: list[str] = []  # state names in the order entered (call summary, tests)
        self._now_s = 0.0
        self._out: list[Command] = []
        self._playing: list[_Playing] = []
        self._prompt_seq = 0
        self._listening = False
        self._timers: dict[str, str] = {}
        self._timer_gen = 0
        self._webhook_seq = 0
        self._webhook_pending: str | None = None
        self._transferring = False
        self._no_input_count = 0
        self._no_match_count = 0
        self._digits = ""
        self._chain = 0
        self._guess: Guess | None = None
        self._prompt_text = ""  # the text of the prompt queued last in this state (expectations)
        self._expectation: Expectation | None = None
        self._typeahead: list[str] = []
        self._draining = False
        self.typeahead_dropped = 0
        self.last_understanding: Understanding | None = None  # the latest final's reading (logs, tests)
        self.answer_type: str | None = None  # the detector's judgement, once it came
        self.recording_paused = False
        # The callee said or keyed something a state understood: a person, whatever the detector says.
        self.understood_caller = False
        self._holding = False  # finals wait for the answering-machine judgement
        self._held: list[tuple[Hypothesis, ...]] = []
        self._beep_wait: ir.WaitForBeep | None = None
        self._callee_speaking = False
        # The caller spoke while we listened and no final has come since: the recognizer is still
        # deciding what was said, so running out of no-input time is not silence (see _on_timer).
        self._final_pending = False

    # -- public --------------------------------------------------------------------------------

    @property
    def state_name(self) -> str | None:
        return self.state.name if self.state is not None else None

    @property
    def prompt_playing(self) -> bool:
        return bool(self._playing)

    @property
    def listening(self) -> bool:
        return self._listening

    @property
    def awaiting_beep(self) -> bool:
        """A ``wait_for_beep`` state holds its prompt: the application should feed
        ``BeepDetected`` and ``SpeechStarted`` / ``SpeechEnded`` from the callee's audio now."""
        return self._beep_wait is not None

    def context(self) -> dict[str, object]:
        """The call context a webhook receives (JSON-ready)."""
        return {
            "call_id": self.variables.get("call_id", ""),
            "dialplan": self.plan.name,
            "state": self.state_name,
            "caller": self.variables.get("caller", ""),
            "callee": self.variables.get("callee", ""),
            "variables": dict(self.variables),
            "record": dict(self.record),
        }

    # -- helpers -------------------------------------------------------------------------------

    def _play(self, prompt: ir.Prompt) -> None:
        self._prompt_seq += 1
        text = prompt.text.render(self.variables) if prompt.text is not None else None
        self._prompt_text = text or ""
        self._emit(PlayPrompt(self._prompt_seq, text, prompt.audio_file, prompt.voice, prompt.barge_in))
        self._playing.append(_Playing(self._prompt_seq, prompt.barge_in))

    def _emit(self, command: Command) -> None:
        self._out.append(command)

    def _start_listening(self) -> None:
        """Listen with the current expectation; tell the pipeline again when that changed."""
        state = self.state
        if state is None or state.listen is None:
            return
        expectation = expectation_for(
            state.listen, self.plan.global_intents, self._prompt_text,
            confirming=self._guess is not None, yes_no=(*YES_PHRASES, *NO_PHRASES),
        )
        if not self._listening or expectation != self._expectation:
            self._listening = True
            self._expectation = expectation
            self._emit(StartListening(expectation))

    @property
    def expectation(self) -> Expectation | None:
        """What the state listens for now (None when not listening)."""
        return self._expectation if self._listening else None

    def _stop_listening(self) -> None:
        if self._listening:
            self._listening = False
            self._expectation = None
            self._emit(StopListening())

    def _arm_no_input(self) -> None:
        state = self.state
        if state is None or state.listen is None or self._playing:
            return
        self._arm(NO_INPUT, state.listen.timeout_s)

    def _arm(self, kind: str, delay_s: float) -> None:
        self._cancel(kind)
        self._timer_gen += 1
        timer_id = f"{kind}-{self._timer_gen}"
        self._timers[kind] = timer_id
        self._emit(SetTimer(timer_id, self._now_s + delay_s))

    def _cancel(self, kind: str) -> None:
        timer_id = self._timers.pop(kind, None)
        if timer_id is not None:
            self._emit(CancelTimer(timer_id))
