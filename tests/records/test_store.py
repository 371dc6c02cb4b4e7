"""Call records: written event by event, readable back, durable across a crash, safe under concurrency."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from voicebot.records import (
    SCHEMA_VERSION,
    CallRecordStore,
    DuplicateCall,
    RecordsError,
    SyncCallRecordStore,
    UnknownCall,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_full_call_round_trips(target: str | Path) -> None:
    store = SyncCallRecordStore(target, clock=FakeClock())
    store.call_started("abc@host", direction="inbound", from_uri="sip:alice@a", to_uri="sip:bot@b")
    store.call_answered("abc@host")
    store.stt_session_started("abc@host", "s1")
    store.state_entered("abc@host", "greeting")
    store.utterance("abc@host", session_id="s1", start_ms=1200, end_ms=2500, text="my balance please")
    store.dtmf("abc@host", "4")
    store.dtmf("abc@host", "#")
    store.variable_set("abc@host", "account", {"number": "4567", "ok": True})
    store.state_entered("abc@host", "transfer")
    store.transfer("abc@host", "sip:agent@pbx")
    store.transfer("abc@host", "sip:agent@pbx", "200 OK")
    store.stt_session_ended("abc@host", "s1", reason="call ended")
    store.call_ended("abc@host", cause="transferred", side="robot")

    record = store.get_call("abc@host")
    assert record is not None
    s = record.summary
    assert (s.direction, s.from_uri, s.to_uri) == ("inbound", "sip:alice@a", "sip:bot@b")
    assert s.started_at < s.answered_at < s.ended_at  # type: ignore[operator]
    assert (s.hangup_cause, s.hangup_side, s.status) == ("transferred", "robot", "ended")
    assert (s.transfer_target, s.transfer_result) == ("sip:agent@pbx", "200 OK")
    assert [u.text for u in record.utterances] == ["my balance please"]
    assert (record.utterances[0].start_ms, record.utterances[0].end_ms) == (1200, 2500)
    assert record.utterances[0].session_id == "s1"
    assert [d.digit for d in record.dtmf] == ["4", "#"]
    assert [v.state for v in record.states] == ["greeting", "transfer"]
    assert record.variables[0].value == {"number": "4567", "ok": True}
    assert [(x.session_id, x.close_reason) for x in record.stt_sessions] == [("s1", "call ended")]
    assert record.stt_sessions[0].ended_at is not None
    assert record.transcript == "my balance please"


def test_utterances_come_back_in_call_time_order(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    store.call_started("c", direction="outbound", from_uri="sip:bot@b", to_uri="sip:bob@x")
    store.utterance("c", session_id="s2", start_ms=9000, end_ms=9500, text="second")
    store.utterance("c", session_id="s1", start_ms=1000, end_ms=1500, text="first")
    record = store.get_call("c")
    assert record is not None
    assert [u.text for u in record.utterances] == ["first", "second"]


def test_list_calls_newest_first_and_limit(target: str | Path) -> None:
    store = SyncCallRecordStore(target, clock=FakeClock())
    for i in range(5):
        store.call_started(f"call-{i}", direction="inbound", from_uri="a", to_uri="b")
    assert [c.call_id for c in store.list_calls(3)] == ["call-4", "call-3", "call-2"]
    with pytest.raises(RecordsError, match="limit must be at least 1"):
        store.list_calls(0)


def test_events_for_unknown_call_are_rejected(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    with pytest.raises(UnknownCall, match="'nope' does not exist"):
        store.utterance("nope", session_id="s", start_ms=0, end_ms=1, text="x")
    with pytest.raises(UnknownCall, match="'nope' does not exist"):
        store.call_ended("nope", cause="bye", side="caller")
    assert store.get_call("nope") is None


def test_bad_values_are_rejected_with_the_value(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    store.call_started("c", direction="inbound", from_uri="a", to_uri="b")
    with pytest.raises(DuplicateCall, match="'c' already exists"):
        store.call_started("c", direction="inbound", from_uri="a", to_uri="b")
    with pytest.raises(RecordsError, match="DTMF digit must be one of"):
        store.dtmf("c", "x")
    with pytest.raises(RecordsError, match="not JSON-serializable"):
        store.variable_set("c", "v", object())
    with pytest.raises(RecordsError, match="direction must be"):
        store.call_started("d", direction="sideways", from_uri="a", to_uri="b")  # type: ignore[arg-type]
    # A rejected event changed nothing.
    record = store.get_call("c")
    assert record is not None and record.dtmf == () and record.variables == ()


@pytest.mark.unit
def test_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = SyncCallRecordStore(path)
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    # Reopening an up-to-date database migrates nothing and keeps data.
    store = SyncCallRecordStore(path)
    assert store.schema_version == SCHEMA_VERSION


@pytest.mark.unit
def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(RecordsError, match="newer than this voicebot"):
        SyncCallRecordStore(path)


@pytest.mark.unit
def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(RecordsError, match="check the records path"):
        SyncCallRecordStore(path)


@pytest.mark.timeout(60)
def test_crash_keeps_every_committed_event_and_shows_unfinished(target: str | Path) -> None:
    """A writer process killed mid-call: everything it committed is there; the call shows unfinished."""
    path = target
    script = textwrap.dedent(f"""
        import os, signal
        from voicebot.records import SyncCallRecordStore
        s = SyncCallRecordStore({str(path)!r})
        s.call_started("crashy", direction="inbound", from_uri="a", to_uri="b")
        s.call_answered("crashy")
        s.utterance("crashy", session_id="s1", start_ms=0, end_ms=900, text="hello there")
        s.dtmf("crashy", "7")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=30)
    assert proc.returncode == -9
    store = SyncCallRecordStore(path)
    record = store.get_call("crashy")
    assert record is not None
    assert record.summary.status == "unfinished"
    assert record.summary.ended_at is None and record.summary.answered_at is not None
    assert [u.text for u in record.utterances] == ["hello there"]
    assert [d.digit for d in record.dtmf] == ["7"]


def test_open_call_of_a_live_writer_is_open(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    store.call_started("live", direction="inbound", from_uri="a", to_uri="b")
    assert store.list_calls()[0].status == "open"
    assert os.getpid() > 0


async def test_async_store_concurrent_calls(target: str | Path) -> None:
    store = CallRecordStore(target)
    loop_thread = threading.get_ident()

    async def one_call(n: int) -> None:
        call_id = f"call-{n}"
        await store.call_started(call_id, direction="inbound", from_uri=f"sip:{n}@a", to_uri="sip:bot@b")
        await store.call_answered(call_id)
        for i in range(10):
            await store.utterance(call_id, session_id="s", start_ms=i * 1000, end_ms=i * 1000 + 500,
                                  text=f"call {n} utterance {i}")
        await store.call_ended(call_id, cause="bye", side="caller")

    await asyncio.gather(*(one_call(n) for n in range(8)))
    calls = await store.list_calls(100)
    assert len(calls) == 8 and all(c.status == "ended" for c in calls)
    for n in range(8):
        record = await store.get_call(f"call-{n}")
        assert record is not None
        assert [u.text for u in record.utterances] == [f"call {n} utterance {i}" for i in range(10)]
    assert threading.get_ident() == loop_thread
    await store.aclose()


async def test_async_store_propagates_errors(target: str | Path) -> None:
    store = CallRecordStore(target)
    with pytest.raises(UnknownCall):
        await store.dtmf("missing", "1")
    await store.aclose()


@pytest.mark.unit
def test_calls_cli_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicebot.cli import main

    db = tmp_path / "calls.db"
    store = SyncCallRecordStore(db)
    store.call_started("abc@h", direction="inbound", from_uri="sip:alice@x", to_uri="sip:bot@y")
    store.stt_session_started("abc@h", "sess-1")
    store.utterance("abc@h", session_id="sess-1", start_ms=1200, end_ms=2500, text="four five six",
                    normalized_text="456")
    store.dtmf("abc@h", "0")
    store.state_entered("abc@h", "menu")
    store.call_ended("abc@h", cause="bye", side="caller")
    store.call_started("crashed@h", direction="outbound", from_uri="sip:bot@y", to_uri="sip:bob@x")

    assert main(["calls", "--records-db", str(db), "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("STARTED") and len(out) == 3
    assert "abc@h" in out[2] and "ended" in out[2] and "bye" in out[2]
    assert "crashed@h" in out[1] and "open" in out[1]  # its instance is alive
    store.close()  # the instance stops with the call still open: it was cut off
    assert main(["calls", "--records-db", str(db), "list"]) == 0
    assert "unfinished" in capsys.readouterr().out.splitlines()[1]

    assert main(["calls", "--records-db", str(db), "show", "abc@h"]) == 0
    shown = capsys.readouterr().out
    assert "1.20-2.50s  four five six  [456]" in shown
    assert "DTMF:       0" in shown and "States:     menu" in shown and "sess-1" in shown

    assert main(["calls", "--records-db", str(db), "show", "nope"]) == 1
    assert "no call with Call-ID 'nope'" in capsys.readouterr().err
    assert main(["calls", "--records-db", str(tmp_path / "missing.db"), "list"]) == 2
    assert "no call records at" in capsys.readouterr().err

    assert main(["calls", "--db", str(db), "show", "--json", "abc@h"]) == 0  # the old name still works
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["utterances"][0]["normalized_text"] == "456"


@pytest.mark.unit
def test_locked_database_is_a_retryable_records_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    store = SyncCallRecordStore(path)
    store.call_started("c", direction="inbound", from_uri="a", to_uri="b")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    store._db.execute("PRAGMA busy_timeout=50")
    try:
        with pytest.raises(RecordsError, match="database is locked") as exc:
            store.dtmf("c", "1")
        assert exc.value.retryable
    finally:
        other.execute("ROLLBACK")
    store.dtmf("c", "1")  # the store keeps working once the lock is gone
    record = store.get_call("c")
    assert record is not None and [d.digit for d in record.dtmf] == ["1"]
