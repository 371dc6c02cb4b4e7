"""What the call reports to the dialog machine (events, past tense) and what it asks for back
(commands, imperative). All are frozen slotted dataclasses; every event carries ``now_s``, the
injected clock's time in seconds, so the machine never reads a clock itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voicebot.dialog.expect import Expectation
from voicebot.dialog.ir import ANSWER_TYPES, AnswerType
from voicebot.dialog.understand import Hypothesis

# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The call is up; ``variables`` override the dialplan's defaults (e.g. ``transfer_target``).

    ``answer_detection``: an answering-machine detector runs on this (outbound) call and will
    report :class:`AnswerClassified`; until it does, the dialog holds what the callee says.
    """

    now_s: float
    call_id: str = ""
    caller: str = ""
    callee: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)
    answer_detection: bool = False


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Voice activity detected on the caller's leg (VAD-based barge-in, before any text; in a
    ``wait_for_beep`` state it means the greeting is still talking)."""

    now_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """Voice activity stopped on the caller's leg (the VAD's offset). Together with
    :class:`SpeechStarted` it tells a ``wait_for_beep`` state when a greeting has gone silent."""

    now_s: float


@dataclass(frozen=True, slots=True)
class AnswerClassified:
    """The application's answering-machine detector judged who answered an outbound call.

    ``result`` is ``human``, ``machine`` or ``unknown``; ``reason`` is its evidence in words
    (e.g. ``"greeting 4.2 s"``, ``"phrase: leave a message"``), kept in the call record.
    """

    now_s: float
    result: AnswerType
    reason: str = ""

    def __post_init__(self) -> None:
        if self.result not in ANSWER_TYPES:
            raise ValueError(
                f"AnswerClassified: result '{self.result}' is not one of {', '.join(ANSWER_TYPES)}"
            )


@dataclass(frozen=True, slots=True)
class BeepDetected:
    """The answering machine's record tone was heard: a message left now is recorded whole."""

    now_s: float


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    """An interim recognition result; non-empty text means the caller is talking."""

    now_s: float
    text: str


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    """The recognizer's final text for one utterance (may be empty: noise, nothing recognized).

    ``alternatives`` are the recognizer's further hypotheses, best first, not repeating ``text``
    (SpeechKit v3 ``alternatives[1:]``). ``confidence`` is the recognizer's for ``text`` and
    ``alternative_confidences`` those of the alternatives (empty, or one per alternative), each in
    [0, 1]; leave them out when the recognizer has none.
    """

    now_s: float
    text: str
    alternatives: tuple[str, ...] = ()
    confidence: float | None = None
    alternative_confidences: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.alternative_confidences and len(self.alternative_confidences) != len(self.alternatives):
            raise ValueError(
                f"FinalTranscript: {len(self.alternative_confidences)} alternative_confidences for "
                f"{len(self.alternatives)} alternatives"
            )
        for value in (self.confidence, *self.alternative_confidences):
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"FinalTranscript: confidence {value} is outside [0, 1]")

    def hypotheses(self) -> tuple[Hypothesis, ...]:
        """``text`` and the alternatives with their confidences, best first."""
        confidences = self.alternative_confidences or (None,) * len(self.alternatives)
        return (Hypothesis(self.text, self.confidence),
                *(Hypothesis(t, c) for t, c in zip(self.alternatives, confidences, strict=True)))


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One DTMF key (RFC 4733 event or SIP INFO): ``0-9``, ``*``, ``#``, ``A-D``."""

    now_s: float
    key: str


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """Playout of prompt ``prompt_seq`` ended (played out, or stopped by ``StopPrompt``)."""

    now_s: float
    prompt_seq: int


@dataclass(frozen=True, slots=True)
class TimerFired:
    now_s: float
    timer_id: str


@dataclass(frozen=True, slots=True)
class WebhookSucceeded:
    """The webhook answered 2xx with JSON; ``variables`` to set and optionally the ``next`` state."""

    now_s: float
    request_id: str
    variables: Mapping[str, str] = field(default_factory=dict)
    next_state: str | None = None


@dataclass(frozen=True, slots=True)
class WebhookFailed:
    """The webhook failed: HTTP error, bad answer, or timeout; ``reason`` says which."""

    now_s: float
    request_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TransferFailed:
    """The blind transfer was refused (e.g. REFER answered 4xx, RFC 3515 §2.4.2)."""

    now_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is gone (the caller hung up, or the pipeline ended it)."""

    now_s: float
    reason: str = "hangup"


Event = (
    CallStarted | SpeechStarted | SpeechEnded | AnswerClassified | BeepDetected | PartialTranscript
    | FinalTranscript | DtmfReceived | PromptFinished
    | TimerFired | WebhookSucceeded | WebhookFailed | TransferFailed | CallEnded
)

# -- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Queue a prompt behind any that is playing; report ``PromptFinished(prompt_seq)`` when done.

    Exactly one of ``text`` (to synthesize with ``voice``) and ``audio_file`` is set.
    """

    prompt_seq: int
    text: str | None
    audio_file: Path | None
    voice: str
    barge_in: bool


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop the playing prompt and drop the queued ones: the caller barged in, or (``barge_in``
    False) the dialog left the state, e.g. an answering machine was detected mid-prompt."""

    barge_in: bool = True


@dataclass(frozen=True, slots=True)
class StartListening:
    """Start feeding caller audio to recognition and DTMF to the machine, expecting ``expectation``.

    Also sent while already listening when what the state expects changes (a re-prompt, the
    "Did you say ...?" question and back): the application then gives the recognizer the new
    expectation (``voicebot.stt.hints``), e.g. by opening a new recognition session.
    """

    expectation: Expectation = field(default_factory=Expectation)


@dataclass(frozen=True, slots=True)
class StopListening:
    """Input is not wanted now (a prompt without barge-in, a webhook, the end)."""


@dataclass(frozen=True, slots=True)
class Transfer:
    """Blind-transfer the caller to ``uri`` (SIP REFER, RFC 3515)."""

    uri: str


@dataclass(frozen=True, slots=True)
class Hangup:
    reason: str


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """POST ``payload`` as JSON to ``url``; answer with WebhookSucceeded/WebhookFailed(request_id)."""

    request_id: str
    url: str
    payload: Mapping[str, object]
    timeout_s: float


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire ``TimerFired(timer_id)`` at ``deadline_s`` on the injected clock (replaces nothing)."""

    timer_id: str
    deadline_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True, slots=True)
class Record:
    """Store ``key = value`` in the call record (the per-call result the application keeps)."""

    key: str
    value: str


@dataclass(frozen=True, slots=True)
class PauseRecording:
    """Stop writing the call's audio recording (both directions) until :class:`ResumeRecording`;
    the paused stretch is kept as silence so the timeline stays true. A no-op when not recording."""


@dataclass(frozen=True, slots=True)
class ResumeRecording:
    """Write the call's audio recording again after :class:`PauseRecording`."""


Command = (
    PlayPrompt | StopPrompt | StartListening | StopListening | Transfer | Hangup | CallWebhook | SetTimer
    | CancelTimer | Record | PauseRecording | ResumeRecording
)
