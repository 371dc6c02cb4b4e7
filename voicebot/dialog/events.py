"""What the call reports to the dialog machine (events, past tense) and what it asks for back
(commands, imperative). All are frozen slotted dataclasses; every event carries ``now_s``, the
injected clock's time in seconds, so the machine never reads a clock itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# -- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The call is up; ``variables`` override the dialplan's defaults (e.g. ``transfer_target``)."""

    now_s: float
    call_id: str = ""
    caller: str = ""
    callee: str = ""
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Voice activity detected on the caller's leg (VAD-based barge-in, before any text)."""

    now_s: float


@dataclass(frozen=True, slots=True)
class PartialTranscript:
    """An interim recognition result; non-empty text means the caller is talking."""

    now_s: float
    text: str


@dataclass(frozen=True, slots=True)
class FinalTranscript:
    """The recognizer's final text for one utterance (may be empty: noise, nothing recognized)."""

    now_s: float
    text: str


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
    CallStarted | SpeechStarted | PartialTranscript | FinalTranscript | DtmfReceived | PromptFinished
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
    """Stop the playing prompt and drop the queued ones (barge-in)."""


@dataclass(frozen=True, slots=True)
class StartListening:
    """Start feeding caller audio to recognition and DTMF to the machine."""


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


Command = (
    PlayPrompt | StopPrompt | StartListening | StopListening | Transfer | Hangup | CallWebhook | SetTimer
    | CancelTimer | Record
)
