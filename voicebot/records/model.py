"""What a call record holds, as read back from the store (frozen, database-independent)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["inbound", "outbound"]
HangupSide = Literal["caller", "robot", "network"]


@dataclass(frozen=True, slots=True)
class Utterance:
    session_id: str
    start_ms: int  # on the call's timeline (0 = first audio of the call leg)
    end_ms: int
    text: str
    normalized_text: str | None
    received_at: float  # Unix time, s


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    digit: str
    at: float  # Unix time, s


@dataclass(frozen=True, slots=True)
class StateVisit:
    state: str
    entered_at: float  # Unix time, s


@dataclass(frozen=True, slots=True)
class VariableSet:
    name: str
    value: object  # JSON-compatible
    set_at: float  # Unix time, s


@dataclass(frozen=True, slots=True)
class SttSession:
    session_id: str
    started_at: float  # Unix time, s
    ended_at: float | None
    close_reason: str | None


@dataclass(frozen=True, slots=True)
class RecordingMark:
    kind: Literal["utterance", "prompt", "pause"]
    start_ms: int  # on the recording's timeline (0 = the answer; the WAV's first sample)
    end_ms: int
    prompt_id: int | None  # prompts: the dialog's prompt_seq
    text: str | None  # utterances: what the caller said; prompts: the prompt's text or audio file


@dataclass(frozen=True, slots=True)
class Recording:
    path: str  # the stereo WAV, or the caller's of a mono pair
    robot_path: str | None  # mono-pair: the robot's WAV
    format: Literal["stereo", "mono-pair"]
    sample_rate_hz: int
    started_at: float  # Unix time, s
    ended_at: float | None
    duration_ms: int | None
    error: str | None  # the write error that stopped the recording early
    marks: tuple[RecordingMark, ...]


CallStatus = Literal["open", "ended", "unfinished"]


@dataclass(frozen=True, slots=True)
class CallSummary:
    call_id: str
    direction: Direction
    from_uri: str
    to_uri: str
    started_at: float  # Unix time, s
    answered_at: float | None
    ended_at: float | None
    hangup_cause: str | None
    hangup_side: str | None
    transfer_target: str | None
    transfer_result: str | None
    status: CallStatus  # "unfinished": no end written and the instance that wrote it is gone
    # Answering-machine detection (outbound calls): human / machine / unknown, the reason, the evidence.
    answer_type: str | None = None
    amd_reason: str | None = None
    amd_evidence: dict[str, object] | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.ended_at is None else self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class CallRecord:
    summary: CallSummary
    utterances: tuple[Utterance, ...]
    dtmf: tuple[DtmfDigit, ...]
    states: tuple[StateVisit, ...]
    variables: tuple[VariableSet, ...]
    stt_sessions: tuple[SttSession, ...]
    recording: Recording | None = None

    @property
    def transcript(self) -> str:
        return " ".join(u.text for u in self.utterances)
