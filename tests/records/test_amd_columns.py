"""Migration 3: an outbound call's answering-machine decision (answer type, reason, evidence) is
written to its record and read back in the summary, on both backends."""

from __future__ import annotations

from pathlib import Path

from voicebot.records import SyncCallRecordStore


def test_amd_decision_round_trips(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    try:
        store.call_started("amd-1@test", direction="outbound", from_uri="sip:bot@127.0.0.1",
                           to_uri="sip:anna@127.0.0.1:5070")
        store.call_answered("amd-1@test")
        store.amd_decided("amd-1@test", answer_type="machine", reason="phrase",
                          evidence={"phrase": "leave a message", "greeting_ms": 2140, "decided_ms": 2300})
        store.call_started("plain-1@test", direction="inbound", from_uri="sip:x@127.0.0.1",
                           to_uri="sip:bot@127.0.0.1")
        record = store.get_call("amd-1@test")
        assert record is not None
        s = record.summary
        assert (s.answer_type, s.amd_reason) == ("machine", "phrase")
        assert s.amd_evidence == {"phrase": "leave a message", "greeting_ms": 2140, "decided_ms": 2300}
        plain = store.get_call("plain-1@test")
        assert plain is not None and plain.summary.answer_type is None and plain.summary.amd_evidence is None
    finally:
        store.close()
