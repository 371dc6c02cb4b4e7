"""Instances and heartbeats: concurrent start on one new database, calls of a dead instance, two
instances writing one database, and databases written before instances existed."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from voicebot.records import (
    INTERRUPTED_CAUSE,
    SCHEMA_VERSION,
    CallRecordStore,
    SyncCallRecordStore,
)
from voicebot.records.schema import for_sqlite


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.timeout(120)
def test_instances_starting_together_on_a_new_database_migrate_it_once(target: str | Path) -> None:
    """The reported crash: two instances on one new file, one died with 'table calls already exists'."""
    script = textwrap.dedent("""
        import sys, time
        from voicebot.records import SyncCallRecordStore
        start = float(sys.argv[2])
        while time.time() < start:
            pass
        store = SyncCallRecordStore(sys.argv[1])
        store.call_started(sys.argv[3], direction="inbound", from_uri="a", to_uri="b")
        print(store.schema_version)
    """)
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", script, str(target), str(start), f"call-{n}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(6)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [err for _, err in results]
    assert {out.strip() for out, _ in results} == {str(SCHEMA_VERSION)}
    store = SyncCallRecordStore(target, register=False)
    assert sorted(c.call_id for c in store.list_calls(10)) == [f"call-{n}" for n in range(6)]


def test_a_silent_instance_calls_become_unfinished_then_interrupted(target: str | Path) -> None:
    clock_a, clock_b = Clock(), Clock()
    a = SyncCallRecordStore(target, clock=clock_a, stale_after_s=15)
    a.call_started("on-a", direction="inbound", from_uri="x", to_uri="y")
    a.call_started("ended-on-a", direction="inbound", from_uri="x", to_uri="y")
    a.call_ended("ended-on-a", cause="bye", side="caller")
    b = SyncCallRecordStore(target, clock=clock_b, stale_after_s=15)
    b.call_started("on-b", direction="inbound", from_uri="x", to_uri="y")

    clock_a.now = clock_b.now = clock_a.now + 10
    a.heartbeat()
    statuses = {c.call_id: c.status for c in b.list_calls()}
    assert statuses == {"on-a": "open", "ended-on-a": "ended", "on-b": "open"}
    assert b.mark_interrupted() == 0

    last_beat = clock_a.now
    clock_b.now += 20  # A is silent for 20 s > 15 s: its host may be gone (another host looks)
    b.heartbeat()
    statuses = {c.call_id: c.status for c in b.list_calls()}
    assert statuses == {"on-a": "unfinished", "ended-on-a": "ended", "on-b": "open"}
    assert b.mark_interrupted() == 1
    record = b.get_call("on-a")
    assert record is not None
    s = record.summary
    assert (s.status, s.hangup_cause, s.hangup_side, s.ended_at) == ("ended", INTERRUPTED_CAUSE, "network",
                                                                    last_beat)
    assert b.mark_interrupted() == 0  # idempotent
    other = b.get_call("on-b")
    assert other is not None and other.summary.status == "open"  # B never judges itself dead


def test_a_stopped_instance_with_an_open_call_was_cut_off(target: str | Path) -> None:
    a = SyncCallRecordStore(target)
    a.call_started("cut", direction="outbound", from_uri="x", to_uri="y")
    a.close()
    reader = SyncCallRecordStore(target, register=False)
    assert reader.list_calls()[0].status == "unfinished"
    assert reader.mark_interrupted() == 1
    assert reader.list_calls()[0].hangup_cause == INTERRUPTED_CAUSE


@pytest.mark.timeout(120)
async def test_sigkilled_instance_calls_are_marked_interrupted_by_a_live_one(target: str | Path) -> None:
    """Two instances write one database; one is SIGKILLed mid-call; the other closes its calls."""
    script = textwrap.dedent("""
        import asyncio, os, signal, sys
        from voicebot.records import CallRecordStore
        async def main():
            store = CallRecordStore(sys.argv[1], heartbeat_interval_s=0.2)
            for n in range(3):
                await store.call_started(f"dead-{n}", direction="inbound", from_uri="a", to_uri="b")
                await store.call_answered(f"dead-{n}")
            await store.call_ended("dead-0", cause="bye", side="caller")
            print("ready", flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
    """)
    live = CallRecordStore(target, heartbeat_interval_s=0.2)
    await live.call_started("alive-1", direction="inbound", from_uri="a", to_uri="b")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(target),
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
    proc.kill()
    await asyncio.wait_for(proc.wait(), 10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        calls = {c.call_id: c for c in await live.list_calls(10)}
        if all(calls[f"dead-{n}"].status == "ended" for n in (1, 2)):
            break
        await asyncio.sleep(0.2)
    assert calls["dead-0"].hangup_cause == "bye"
    assert [calls[f"dead-{n}"].hangup_cause for n in (1, 2)] == [INTERRUPTED_CAUSE] * 2
    assert calls["alive-1"].status == "open"
    await live.aclose()


@pytest.mark.unit
def test_a_version_1_database_migrates_and_keeps_the_pid_check(tmp_path: Path) -> None:
    path = tmp_path / "calls.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in for_sqlite()[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version=1")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    for call_id, pid in (("old-dead", int(dead.stdout)), ("old-live", os.getpid())):
        db.execute("INSERT INTO calls (call_id, direction, from_uri, to_uri, started_at, writer_host, "
                   "writer_pid) VALUES (?, 'inbound', 'a', 'b', 1, ?, ?)",
                   (call_id, __import__("socket").gethostname(), pid))
    db.close()
    store = SyncCallRecordStore(path)
    assert store.schema_version == SCHEMA_VERSION
    assert {c.call_id: c.status for c in store.list_calls()} == {"old-dead": "unfinished", "old-live": "open"}


@pytest.mark.adapter
def test_calls_cli_reads_a_postgresql_database(postgres: object, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.records.pgserver import PostgresServer
    from voicebot.cli import main

    assert isinstance(postgres, PostgresServer)
    url = postgres.new_database()
    store = SyncCallRecordStore(url)
    store.call_started("pg-call@h", direction="inbound", from_uri="sip:a@x", to_uri="sip:bot@y")
    store.call_ended("pg-call@h", cause="bye", side="caller")
    assert main(["calls", "--records-db", url, "list"]) == 0
    assert "pg-call@h" in capsys.readouterr().out
    assert main(["calls", "--records-db", url, "show", "--json", "pg-call@h"]) == 0
    assert '"hangup_cause": "bye"' in capsys.readouterr().out
