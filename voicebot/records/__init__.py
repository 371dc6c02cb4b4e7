"""Call records: one row per call plus its events, in SQLite or a shared PostgreSQL database.

``store`` has the writers and readers, ``model`` what a record holds, ``schema`` the migrations,
``backend`` the two databases.
"""

from voicebot.records.backend import is_postgres_url
from voicebot.records.model import (
    CallRecord,
    CallStatus,
    CallSummary,
    Direction,
    DtmfDigit,
    HangupSide,
    Recording,
    RecordingMark,
    StateVisit,
    SttSession,
    Utterance,
    VariableSet,
)
from voicebot.records.schema import SCHEMA_VERSION
from voicebot.records.store import (
    HEARTBEAT_INTERVAL_S,
    INTERRUPTED_CAUSE,
    STALE_AFTER_S,
    CallRecordStore,
    DuplicateCall,
    RecordsError,
    SyncCallRecordStore,
    UnknownCall,
)

__all__ = [
    "HEARTBEAT_INTERVAL_S", "INTERRUPTED_CAUSE", "SCHEMA_VERSION", "STALE_AFTER_S", "CallRecord",
    "CallRecordStore", "CallStatus", "CallSummary", "Direction", "DtmfDigit", "DuplicateCall",
    "HangupSide", "Recording", "RecordingMark", "RecordsError", "StateVisit", "SttSession",
    "SyncCallRecordStore", "UnknownCall",
    "Utterance", "VariableSet", "is_postgres_url",
]
