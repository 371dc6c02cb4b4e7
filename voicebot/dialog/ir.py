"""The dialplan intermediate representation: frozen dataclasses the state machine runs on.

Produced only by :mod:`voicebot.dialog.schema` after validation, so the machine can trust it:
every target state exists, every DTMF key is a string of ``0-9*#``, every timeout is positive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

CaptureKind = Literal["digits", "number", "text"]
# What answered an outbound call, as the application's answering-machine detector judged it.
AnswerType = Literal["human", "machine", "unknown"]
ANSWER_TYPES: tuple[AnswerType, ...] = ("human", "machine", "unknown")
# A state's ``record_audio``: pause or resume the call's audio recording on entry.
RecordAudio = Literal["pause", "resume"]
DEFAULT_BEEP_TIMEOUT_S = 10.0
DEFAULT_BEEP_SILENCE_S = 2.0


@dataclass(frozen=True, slots=True)
class Template:
    """Text with ``{variable}`` placeholders; ``parts`` alternates literal text and variable names."""

    source: str
    literals: tuple[str, ...]
    variables: tuple[str, ...]

    def render(self, values: Mapping[str, str]) -> str:
        out = [self.literals[0]]
        for name, literal in zip(self.variables, self.literals[1:], strict=True):
            out.append(values.get(name, ""))
            out.append(literal)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Prompt:
    """Something to play: synthesized ``text`` or an audio ``file`` (exactly one is set)."""

    text: Template | None
    audio_file: Path | None
    barge_in: bool
    voice: str


# Confidence thresholds (see voicebot.dialog.understand): at or above ACT the match is acted on,
# from REJECT up to ACT it is a guess the caller is asked to confirm, below REJECT it is no match.
DEFAULT_ACT_ABOVE = 0.8
DEFAULT_REJECT_BELOW = 0.5
DEFAULT_CONFIRM_RETRIES = 1
DEFAULT_CONFIRM_TEXT = "Did you say {guess}? Please say yes or no."


@dataclass(frozen=True, slots=True)
class ConfirmOverride:
    """An intent's own ``confirm`` settings; None fields fall back to the state's."""

    enabled: bool | None = None
    prompt: Prompt | None = None
    act_above: float | None = None
    reject_below: float | None = None


@dataclass(frozen=True, slots=True)
class Confirm:
    """The low-confidence path: ask "Did you say {guess}?" before acting on a guess.

    ``prompt`` None means the built-in question (:data:`DEFAULT_CONFIRM_TEXT`) in the state's voice.
    With ``enabled`` False a guess is a no-match: never acted on silently.
    """

    enabled: bool = True
    prompt: Prompt | None = None
    retries: int = DEFAULT_CONFIRM_RETRIES
    act_above: float = DEFAULT_ACT_ABOVE
    reject_below: float = DEFAULT_REJECT_BELOW

    def merged(self, override: ConfirmOverride | None) -> Confirm:
        if override is None:
            return self
        return Confirm(
            enabled=self.enabled if override.enabled is None else override.enabled,
            prompt=self.prompt if override.prompt is None else override.prompt,
            retries=self.retries,
            act_above=self.act_above if override.act_above is None else override.act_above,
            reject_below=self.reject_below if override.reject_below is None else override.reject_below,
        )


DEFAULT_CONFIRM = Confirm()


def default_confirm_prompt(voice: str) -> Prompt:
    """The built-in question, "Did you say {guess}? Please say yes or no.", with barge-in."""
    head, tail = DEFAULT_CONFIRM_TEXT.split("{guess}")
    return Prompt(Template(DEFAULT_CONFIRM_TEXT, (head, tail), ("guess",)), None, True, voice)


@dataclass(frozen=True, slots=True)
class Intent:
    """A way out of a listening state: phrases, keywords, a built-in set, and/or a DTMF key.

    ``texts`` are the phrases and keywords as written (recognition hints); ``say`` names the intent
    in a confirmation question ({guess}); ``builtin`` is "yes"/"no" for the built-in sets.
    """

    name: str
    phrases: tuple[tuple[str, ...], ...]  # normalized token sequences
    keywords: frozenset[str]
    dtmf: str | None
    goto: str
    line: int = 0
    texts: tuple[str, ...] = ()
    say: str = ""
    builtin: str | None = None
    confirm: ConfirmOverride | None = None


@dataclass(frozen=True, slots=True)
class Capture:
    """Digit string, number or free text captured into ``into``, then ``goto``.

    ``confirm`` (digits and numbers; None or disabled: never): spoken digits below the state's
    ``act_above`` (or its own), or read differently by another hypothesis of the same final, are
    read back first ("Did you say 4 7 9 2?"); keyed digits never are.
    """

    kind: CaptureKind
    into: str
    goto: str
    min_digits: int = 1
    max_digits: int = 20
    terminator: str | None = None
    inter_digit_timeout_s: float = 3.0
    confirm: ConfirmOverride | None = None

    @property
    def reads_back(self) -> bool:
        return self.confirm is not None and self.confirm.enabled is not False


@dataclass(frozen=True, slots=True)
class Retry:
    """No-input or no-match handling: re-prompt up to ``retries`` times, then go to ``goto``."""

    retries: int
    prompt: Prompt | None
    goto: str


@dataclass(frozen=True, slots=True)
class Listen:
    intents: tuple[Intent, ...]
    capture: Capture | None
    timeout_s: float
    confirm: Confirm = DEFAULT_CONFIRM  # the dialplan's default merged with the state's own


@dataclass(frozen=True, slots=True)
class Webhook:
    """HTTP POST of the call context; success goes to ``goto`` (or an answer's ``next``)."""

    url: Template
    timeout_s: float
    goto: str
    on_error: str
    may_goto: frozenset[str]


@dataclass(frozen=True, slots=True)
class Transfer:
    uri: Template
    on_error: str | None


@dataclass(frozen=True, slots=True)
class WaitForBeep:
    """Hold a state's prompt until the voicemail beep, ``silence_s`` of silence from the callee,
    or ``timeout_s`` after entering the state, whichever comes first."""

    timeout_s: float = DEFAULT_BEEP_TIMEOUT_S
    silence_s: float = DEFAULT_BEEP_SILENCE_S


@dataclass(frozen=True, slots=True)
class State:
    """One dialplan state. Exactly one of listen / webhook / transfer / hangup / goto is set."""

    name: str
    line: int
    prompt: Prompt | None
    set_vars: tuple[tuple[str, Template], ...]
    record: tuple[tuple[str, Template], ...]
    listen: Listen | None = None
    no_input: Retry | None = None
    no_match: Retry | None = None
    webhook: Webhook | None = None
    transfer: Transfer | None = None
    hangup: bool = False
    goto: str | None = None
    wait_for_beep: WaitForBeep | None = None
    record_audio: RecordAudio | None = None

    def targets(self) -> list[str]:
        """Every state this one can lead to (for reachability and the graph)."""
        out: list[str] = []
        if self.listen is not None:
            out += [i.goto for i in self.listen.intents]
            if self.listen.capture is not None:
                out.append(self.listen.capture.goto)
        for retry in (self.no_input, self.no_match):
            if retry is not None:
                out.append(retry.goto)
        if self.webhook is not None:
            out += [self.webhook.goto, self.webhook.on_error, *sorted(self.webhook.may_goto)]
        if self.transfer is not None and self.transfer.on_error is not None:
            out.append(self.transfer.on_error)
        if self.goto is not None:
            out.append(self.goto)
        return out


@dataclass(frozen=True, slots=True)
class Dialplan:
    name: str
    source: str  # the file it came from, for messages
    start: str
    voice: str
    variables: Mapping[str, str]
    states: Mapping[str, State]
    global_intents: tuple[Intent, ...] = field(default=())
    # ``on_human`` / ``on_machine`` / ``on_unknown``: answer type -> state (only those given).
    on_answer: Mapping[AnswerType, str] = field(default_factory=dict)

    def answer_target(self, answer: AnswerType) -> str | None:
        """Where an answer of this type goes; ``unknown`` is treated as human unless handled."""
        if answer == "unknown" and "unknown" not in self.on_answer:
            answer = "human"
        return self.on_answer.get(answer)

    def intents(self) -> list[Intent]:
        """Every intent of the plan: the globals, then each listening state's."""
        intents = [*self.global_intents]
        for state in self.states.values():
            intents += state.listen.intents if state.listen else ()
        return intents

    def audio_files(self) -> list[Path]:
        files: list[Path] = []
        for state in self.states.values():
            for prompt in (
                state.prompt,
                state.no_input.prompt if state.no_input else None,
                state.no_match.prompt if state.no_match else None,
                state.listen.confirm.prompt if state.listen else None,
            ):
                if prompt is not None and prompt.audio_file is not None:
                    files.append(prompt.audio_file)
        for intent in self.intents():
            override = intent.confirm.prompt if intent.confirm else None
            if override is not None and override.audio_file is not None:
                files.append(override.audio_file)
        return files
