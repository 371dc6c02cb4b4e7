"""One call leg's pipeline: the leg joined to recognition, the dialog and the call record.

``voicebot.call.pipeline`` runs a call from parts it is given (:class:`CallParts`);
``voicebot.call.outcome`` says how it went; ``voicebot.call.records`` is its ordered record lane.
"""

from voicebot.call.outcome import CallOutcome, first_leaf, hangup_side
from voicebot.call.pipeline import CallError, CallParts, CallPipeline
from voicebot.call.records import RecordLane

__all__ = ["CallError", "CallOutcome", "CallParts", "CallPipeline", "RecordLane", "first_leaf", "hangup_side"]
