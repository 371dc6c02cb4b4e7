"""How one call went: :class:`CallOutcome` (what ``voicebot call`` reports and the tests check) and
the pure mappings from a leg's end to the record's hang-up side."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from voicebot.dialog.runner import CallSummary
from voicebot.records import HangupSide
from voicebot.telephony import LegEnded

# Leg end causes that mean the network failed (not a decision of either party).
NETWORK_CAUSES = frozenset({"rtp-timeout", "ack-timeout", "timeout"})


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
    sip_status: int | None = None  # final SIP response of an INVITE that was not answered
    # Answering-machine detection (outbound calls placed with amd): human / machine / unknown,
    # the detector's reason (phrase, beep, long-greeting, short-greeting, ...) and its evidence.
    answer_type: str | None = None
    amd_reason: str | None = None
    amd_evidence: dict[str, object] | None = None

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
    if ended.cause in NETWORK_CAUSES:
        return "network"
    if ended.side == "local" or robot_hung_up:
        return "robot"
    return "caller"


def final_cause(ended: LegEnded | None, *, error: str | None,
                robot_hangup: str | None) -> tuple[str, HangupSide]:
    """The record's (cause, side) for a call: the pipeline's error, the robot's reason for a BYE it
    sent, the SIP status of a failed or rejected leg, else the leg's own cause."""
    if error is not None:
        return f"error: {error}"[:500], "robot"
    if ended is None:
        return "shutdown", "robot"
    side = hangup_side(ended, robot_hangup is not None)
    cause = ended.cause
    if robot_hangup is not None and side == "robot" and cause == "bye":
        cause = f"bye: {robot_hangup}"
    elif ended.sip_status is not None and cause in ("failed", "rejected"):
        cause = f"{cause}: {ended.sip_status} {ended.reason}".strip()
    return cause, side


__all__ = ["NETWORK_CAUSES", "CallOutcome", "final_cause", "first_leaf", "hangup_side"]
