"""Call records written as the call progresses, in SQLite or in a shared PostgreSQL database.

Every event of a call (start, answer, each final utterance, DTMF digit, dialog state, variable,
transfer, recognizer session, end) is one small transaction, so a process crash loses at most the
event in flight. SQLite runs in WAL mode (readers never block the writer) with ``synchronous=FULL``
by default: each commit is on disk before the call returns (``normal`` keeps process-crash safety
but may lose the last commits on power loss; see docs/records.md). A ``postgresql://`` URL instead
of a path puts the records of several voicebot instances in one database.

All writes go through one writer thread that owns the connection (:class:`CallRecordStore`), so the
event loop never waits on the database or fsync and concurrent calls are serialized safely. The
synchronous :class:`SyncCallRecordStore` is the same logic for the CLI and tests.

Instances: each writing process registers itself (``instances`` row: host, pid, start) and beats a
heartbeat. A call with no end written is ``open`` while its instance beats, and ``unfinished`` once
the instance stopped or its heartbeat is older than ``stale_after_s``; any live instance then closes
such calls with the cause ``interrupted`` (:meth:`SyncCallRecordStore.mark_interrupted`). A PID is
only trusted inside its own host and PID namespace (in a container every instance may be PID 1):
there a dead PID marks the call unfinished at once, elsewhere the heartbeat decides. Rows written
before instances existed fall back to the old same-host PID check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from voicebot.errors import VoicebotError
from voicebot.records.backend import (
    BackendError,
    Database,
    Durability,
    IntegrityViolation,
    OpenFailure,
    PostgresDatabase,
    SqliteDatabase,
    TransientFailure,
    is_postgres_url,
)
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
from voicebot.records.schema import SCHEMA_VERSION, for_postgres, for_sqlite

T = TypeVar("T")

HEARTBEAT_INTERVAL_S = 5.0
# Three missed beats: long enough that a busy host's late beat is not a death.
STALE_AFTER_S = 3 * HEARTBEAT_INTERVAL_S
INTERRUPTED_CAUSE = "interrupted"


class RecordsError(VoicebotError):
    """The call-record store was misused or its database is unusable; the message says which."""


class UnknownCall(RecordsError):
    """An event names a call that was never started in this store (a bug in the caller)."""


class DuplicateCall(RecordsError):
    """``call_started`` was called twice for one SIP Call-ID."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), so a PID is only ever compared inside its namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _open_database(target: Path | str, durability: Durability) -> Database:
    if is_postgres_url(target):
        return PostgresDatabase(str(target))
    return SqliteDatabase(target, durability=durability)


class SyncCallRecordStore:
    """The store's logic on one blocking connection. Not thread-safe: one thread uses it.

    ``target`` is a SQLite path or a ``postgresql://`` URL. ``register=False`` opens it read-only in
    spirit (the CLI): no instance row, no heartbeat.
    """

    def __init__(self, target: Path | str, *, durability: Durability = "full",
                 clock: Callable[[], float] = time.time, register: bool = True,
                 stale_after_s: float = STALE_AFTER_S, instance_id: str | None = None) -> None:
        self.path: Path | str = target if is_postgres_url(target) else Path(target)
        self._clock = clock
        self._host = socket.gethostname()
        self._pid = os.getpid()
        self._pid_ns = _pid_namespace()
        self._stale_after_s = stale_after_s
        self.instance_id = instance_id or uuid.uuid4().hex
        self._registered = False
        try:
            self._db = _open_database(target, durability)
        except BackendError as exc:
            raise RecordsError(f"call records database {self._name(target)}: {exc}; check the records "
                               "path in the config") from exc
        self._migrate()
        if register:
            self._register()

    @staticmethod
    def _name(target: Path | str) -> str:
        from voicebot.records.backend import redact_url

        return redact_url(target) if isinstance(target, str) else str(target)

    @property
    def backend(self) -> str:
        return self._db.kind

    @contextmanager
    def _errors(self, call_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except IntegrityViolation as exc:
            if exc.duplicate and call_id is not None:
                raise DuplicateCall(f"a call record with Call-ID {call_id!r} already exists") from exc
            if call_id is not None:
                raise UnknownCall(f"call record {call_id!r} does not exist; call_started() first") from exc
            raise RecordsError(f"call records database {self._db.name}: {exc}") from exc
        except TransientFailure as exc:
            raise RecordsError(f"call records database {self._db.name}: {exc}", retryable=True) from exc
        except OpenFailure as exc:
            raise RecordsError(f"call records database {self._db.name}: {exc}") from exc

    # ---- schema and instances ----

    def _migrate(self) -> None:
        migrations = for_postgres() if self._db.kind == "postgres" else for_sqlite()
        with self._errors():
            found = self._db.schema_version()
        if found > SCHEMA_VERSION:
            raise RecordsError(
                f"call records database {self._db.name} has schema version {found}, newer than this "
                f"voicebot ({SCHEMA_VERSION}); upgrade voicebot or use another records path"
            )
        with self._errors():
            found = self._db.migrate(migrations)
        if found > SCHEMA_VERSION:  # another, newer voicebot migrated between our two looks
            raise RecordsError(f"call records database {self._db.name} has schema version {found}, newer "
                               f"than this voicebot ({SCHEMA_VERSION})")

    @property
    def schema_version(self) -> int:
        with self._errors():
            return self._db.schema_version()

    def _register(self) -> None:
        now = self._clock()
        with self._errors(), self._db.transaction():
            self._db.execute(
                "INSERT INTO instances (instance_id, host, pid, pid_ns, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (self.instance_id, self._host, self._pid, self._pid_ns, now, now))
        self._registered = True

    def heartbeat(self, *, at: float | None = None) -> None:
        """This instance is alive (call every ``HEARTBEAT_INTERVAL_S``)."""
        if not self._registered:
            return
        with self._errors(), self._db.transaction():
            self._db.execute("UPDATE instances SET heartbeat_at = ? WHERE instance_id = ?",
                             (self._now(at), self.instance_id))

    def mark_interrupted(self, *, at: float | None = None) -> int:
        """Close the calls of instances that stopped or went silent: their end is written as cause
        ``interrupted`` (side ``network``) at the instance's last sign of life. Returns how many."""
        now = self._now(at)
        with self._errors(), self._db.transaction():
            rows = self._db.query(
                "SELECT c.call_id, COALESCE(i.stopped_at, i.heartbeat_at) FROM calls c"
                " JOIN instances i ON i.instance_id = c.instance_id"
                " WHERE c.ended_at IS NULL AND i.instance_id <> ?"
                " AND (i.stopped_at IS NOT NULL OR i.heartbeat_at < ?)",
                (self.instance_id, now - self._stale_after_s))
            for call_id, last_seen in rows:
                self._db.execute(
                    "UPDATE calls SET ended_at = ?, hangup_cause = ?, hangup_side = 'network'"
                    " WHERE call_id = ? AND ended_at IS NULL",
                    (max(float(last_seen), 0.0), INTERRUPTED_CAUSE, call_id))
        return len(rows)

    def close(self) -> None:
        if self._registered:
            try:
                with self._errors(), self._db.transaction():
                    self._db.execute("UPDATE instances SET stopped_at = ? WHERE instance_id = ?",
                                     (self._clock(), self.instance_id))
            except RecordsError:
                pass  # closing anyway: a stale heartbeat tells the others the same thing later
            self._registered = False
        self._db.close()

    # ---- writes: one transaction each ----

    def _write(self, sql: str, params: Sequence[object], *, call_id: str) -> None:
        with self._errors(call_id), self._db.transaction():
            if self._db.execute(sql, params) == 0:
                raise UnknownCall(f"call record {call_id!r} does not exist; call_started() first")

    def call_started(self, call_id: str, *, direction: Direction, from_uri: str, to_uri: str,
                     at: float | None = None) -> None:
        if direction not in ("inbound", "outbound"):
            raise RecordsError(f"direction must be 'inbound' or 'outbound', not {direction!r}")
        with self._errors(call_id), self._db.transaction():
            self._db.execute(
                "INSERT INTO calls (call_id, direction, from_uri, to_uri, started_at, writer_host,"
                " writer_pid, instance_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (call_id, direction, from_uri, to_uri, self._now(at), self._host, self._pid,
                 self.instance_id if self._registered else None),
            )

    def call_answered(self, call_id: str, *, at: float | None = None) -> None:
        self._write("UPDATE calls SET answered_at = ? WHERE call_id = ?", (self._now(at), call_id),
                    call_id=call_id)

    def utterance(self, call_id: str, *, session_id: str, start_ms: int, end_ms: int, text: str,
                  normalized_text: str | None = None, at: float | None = None) -> None:
        self._write(
            "INSERT INTO utterances (call_id, session_id, start_ms, end_ms, text, normalized_text,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (call_id, session_id, start_ms, end_ms, text, normalized_text, self._now(at)),
            call_id=call_id,
        )

    def dtmf(self, call_id: str, digit: str, *, at: float | None = None) -> None:
        if len(digit) != 1 or digit not in "0123456789*#ABCD":
            raise RecordsError(f"DTMF digit must be one of 0-9 * # A-D, not {digit!r}")
        self._write("INSERT INTO dtmf (call_id, digit, at) VALUES (?, ?, ?)",
                    (call_id, digit, self._now(at)), call_id=call_id)

    def state_entered(self, call_id: str, state: str, *, at: float | None = None) -> None:
        self._write("INSERT INTO states (call_id, state, entered_at) VALUES (?, ?, ?)",
                    (call_id, state, self._now(at)), call_id=call_id)

    def variable_set(self, call_id: str, name: str, value: object, *, at: float | None = None) -> None:
        try:
            value_json = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise RecordsError(f"variable {name!r} of call {call_id!r} is not JSON-serializable: {exc}") \
                from exc
        self._write("INSERT INTO variables (call_id, name, value_json, set_at) VALUES (?, ?, ?, ?)",
                    (call_id, name, value_json, self._now(at)), call_id=call_id)

    def transfer(self, call_id: str, target: str, result: str | None = None) -> None:
        """Record a transfer attempt to ``target``; call again with ``result`` when it is known."""
        self._write("UPDATE calls SET transfer_target = ?, transfer_result = ? WHERE call_id = ?",
                    (target, result, call_id), call_id=call_id)

    def stt_session_started(self, call_id: str, session_id: str, *, at: float | None = None) -> None:
        self._write("INSERT INTO stt_sessions (call_id, session_id, started_at) VALUES (?, ?, ?)",
                    (call_id, session_id, self._now(at)), call_id=call_id)

    def stt_session_ended(self, call_id: str, session_id: str, *, reason: str,
                          at: float | None = None) -> None:
        self._write(
            "UPDATE stt_sessions SET ended_at = ?, close_reason = ? WHERE call_id = ? AND session_id = ?",
            (self._now(at), reason, call_id, session_id), call_id=call_id,
        )

    def call_ended(self, call_id: str, *, cause: str, side: HangupSide, at: float | None = None) -> None:
        self._write("UPDATE calls SET ended_at = ?, hangup_cause = ?, hangup_side = ? WHERE call_id = ?",
                    (self._now(at), cause, side, call_id), call_id=call_id)

    def recording_started(self, call_id: str, *, path: str, format: str, sample_rate_hz: int,
                          robot_path: str | None = None, at: float | None = None) -> None:
        if format not in ("stereo", "mono-pair"):
            raise RecordsError(f"recording format must be 'stereo' or 'mono-pair', not {format!r}")
        self._write(
            "INSERT INTO recordings (call_id, path, robot_path, format, sample_rate_hz, started_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, path, robot_path, format, sample_rate_hz, self._now(at)), call_id=call_id)

    def recording_mark(self, call_id: str, *, kind: str, start_ms: int, end_ms: int,
                       prompt_id: int | None = None, text: str | None = None) -> None:
        """One turn on the recording's timeline: ``utterance``, ``prompt`` or ``pause`` (ms)."""
        if kind not in ("utterance", "prompt", "pause"):
            raise RecordsError(f"recording mark kind must be utterance, prompt or pause, not {kind!r}")
        self._write(
            "INSERT INTO recording_marks (call_id, kind, start_ms, end_ms, prompt_id, text)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (call_id, kind, start_ms, end_ms, prompt_id, text), call_id=call_id)

    def recording_ended(self, call_id: str, *, duration_ms: int, error: str | None = None,
                        at: float | None = None) -> None:
        self._write("UPDATE recordings SET ended_at = ?, duration_ms = ?, error = ? WHERE call_id = ?",
                    (self._now(at), duration_ms, error, call_id), call_id=call_id)

    def amd_decided(self, call_id: str, *, answer_type: str, reason: str,
                    evidence: Mapping[str, object]) -> None:
        self._write("UPDATE calls SET answer_type = ?, amd_reason = ?, amd_json = ? WHERE call_id = ?",
                    (answer_type, reason, json.dumps(dict(evidence), ensure_ascii=False, default=str),
                     call_id), call_id=call_id)

    # ---- reads ----

    _SUMMARY_COLUMNS = (
        "c.call_id, c.direction, c.from_uri, c.to_uri, c.started_at, c.answered_at, c.ended_at,"
        " c.hangup_cause, c.hangup_side, c.transfer_target, c.transfer_result, c.writer_host,"
        " c.writer_pid, c.instance_id, i.heartbeat_at, i.stopped_at, i.host, i.pid, i.pid_ns,"
        " c.answer_type, c.amd_reason, c.amd_json"
    )
    _SUMMARY_FROM = "calls c LEFT JOIN instances i ON i.instance_id = c.instance_id"

    def _status(self, row: Sequence[Any], now: float) -> CallStatus:
        if row[6] is not None:
            return "ended"
        if row[13] is None:  # written before instances existed: same-host PID check
            same_host = row[11] == self._host
            return "unfinished" if same_host and not _pid_alive(int(row[12])) else "open"
        if row[13] == self.instance_id and self._registered:
            return "open"
        heartbeat_at, stopped_at, host, pid, pid_ns = row[14:19]
        if (pid_ns is not None and pid_ns == self._pid_ns and host == self._host
                and not _pid_alive(int(pid))):
            return "unfinished"  # same host and PID namespace: a dead PID is proof, no need to wait
        if stopped_at is not None or heartbeat_at is None or heartbeat_at < now - self._stale_after_s:
            return "unfinished"
        return "open"

    def _summary(self, row: Sequence[Any], now: float) -> CallSummary:
        return CallSummary(
            call_id=str(row[0]), direction=row[1], from_uri=str(row[2]), to_uri=str(row[3]),
            started_at=float(row[4]), answered_at=row[5], ended_at=row[6], hangup_cause=row[7],
            hangup_side=row[8], transfer_target=row[9], transfer_result=row[10],
            status=self._status(row, now), answer_type=row[19], amd_reason=row[20],
            amd_evidence=json.loads(row[21]) if row[21] else None,
        )

    def list_calls(self, limit: int = 20) -> list[CallSummary]:
        """The most recent calls first."""
        if limit < 1:
            raise RecordsError(f"limit must be at least 1, not {limit}")
        now = self._clock()
        with self._errors():
            rows = self._db.query(
                f"SELECT {self._SUMMARY_COLUMNS} FROM {self._SUMMARY_FROM}"
                " ORDER BY c.started_at DESC, c.call_id DESC LIMIT ?", (limit,))
        return [self._summary(r, now) for r in rows]

    def get_call(self, call_id: str) -> CallRecord | None:
        now = self._clock()
        with self._errors():
            found = self._db.query(f"SELECT {self._SUMMARY_COLUMNS} FROM {self._SUMMARY_FROM}"
                                   " WHERE c.call_id = ?", (call_id,))
            if not found:
                return None
            q = self._db.query
            utterances = tuple(
                Utterance(r[0], r[1], r[2], r[3], r[4], r[5]) for r in q(
                    "SELECT session_id, start_ms, end_ms, text, normalized_text, received_at FROM"
                    " utterances WHERE call_id = ? ORDER BY start_ms, id", (call_id,))
            )
            dtmf = tuple(DtmfDigit(r[0], r[1]) for r in q(
                "SELECT digit, at FROM dtmf WHERE call_id = ? ORDER BY id", (call_id,)))
            states = tuple(StateVisit(r[0], r[1]) for r in q(
                "SELECT state, entered_at FROM states WHERE call_id = ? ORDER BY id", (call_id,)))
            variables = tuple(VariableSet(r[0], json.loads(r[1]), r[2]) for r in q(
                "SELECT name, value_json, set_at FROM variables WHERE call_id = ? ORDER BY id",
                (call_id,)))
            sessions = tuple(SttSession(r[0], r[1], r[2], r[3]) for r in q(
                "SELECT session_id, started_at, ended_at, close_reason FROM stt_sessions"
                " WHERE call_id = ? ORDER BY started_at, session_id", (call_id,)))
            recording = self._recording(call_id)
        return CallRecord(self._summary(found[0], now), utterances, dtmf, states, variables, sessions,
                          recording)

    def _recording(self, call_id: str) -> Recording | None:
        rows = self._db.query(
            "SELECT path, robot_path, format, sample_rate_hz, started_at, ended_at, duration_ms, error"
            " FROM recordings WHERE call_id = ?", (call_id,))
        if not rows:
            return None
        r = rows[0]
        marks = tuple(RecordingMark(m[0], m[1], m[2], m[3], m[4]) for m in self._db.query(
            "SELECT kind, start_ms, end_ms, prompt_id, text FROM recording_marks WHERE call_id = ?"
            " ORDER BY start_ms, id", (call_id,)))
        return Recording(str(r[0]), r[1], r[2], int(r[3]), float(r[4]), r[5], r[6], r[7], marks)

    def _now(self, at: float | None) -> float:
        return self._clock() if at is None else at


class CallRecordStore:
    """Async facade: every operation runs on one writer thread that owns the connection.

    Methods mirror :class:`SyncCallRecordStore`; awaiting one returns once the event is committed.
    Event times default to the moment the method is called (not when the writer gets to it). The
    store beats its instance heartbeat every ``heartbeat_interval_s`` and, at start and then with
    every beat, closes the calls of dead instances as ``interrupted``.
    """

    def __init__(self, target: Path | str, *, durability: Durability = "full",
                 clock: Callable[[], float] = time.time,
                 heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 stale_after_s: float | None = None) -> None:
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                               thread_name_prefix="call-records")
        stale = stale_after_s if stale_after_s is not None else 3 * heartbeat_interval_s
        # The connection is created on the writer thread: sqlite3 objects stay on their thread.
        self._sync: SyncCallRecordStore = self._executor.submit(
            SyncCallRecordStore, target, durability=durability, clock=clock,
            stale_after_s=stale).result()
        self.path = self._sync.path
        self.instance_id = self._sync.instance_id
        self._stop = threading.Event()
        self._executor.submit(self._beat)
        self._beater = threading.Thread(target=self._beat_loop, args=(heartbeat_interval_s,),
                                        name="call-records-heartbeat", daemon=True)
        self._beater.start()

    def _beat(self) -> None:
        try:
            self._sync.heartbeat()
            self._sync.mark_interrupted()
        except RecordsError:
            pass  # a beat that fails (locked, server away) is retried at the next interval

    def _beat_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self._executor.submit(self._beat)
            except RuntimeError:  # executor shut down under us
                return

    async def _run(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        future = self._executor.submit(fn, *args, **kwargs)
        return await asyncio.wrap_future(future)

    async def call_started(self, call_id: str, *, direction: Direction, from_uri: str, to_uri: str) -> None:
        await self._run(self._sync.call_started, call_id, direction=direction, from_uri=from_uri,
                        to_uri=to_uri, at=self._clock())

    async def call_answered(self, call_id: str) -> None:
        await self._run(self._sync.call_answered, call_id, at=self._clock())

    async def utterance(self, call_id: str, *, session_id: str, start_ms: int, end_ms: int, text: str,
                        normalized_text: str | None = None) -> None:
        await self._run(self._sync.utterance, call_id, session_id=session_id, start_ms=start_ms,
                        end_ms=end_ms, text=text, normalized_text=normalized_text, at=self._clock())

    async def dtmf(self, call_id: str, digit: str) -> None:
        await self._run(self._sync.dtmf, call_id, digit, at=self._clock())

    async def state_entered(self, call_id: str, state: str) -> None:
        await self._run(self._sync.state_entered, call_id, state, at=self._clock())

    async def variable_set(self, call_id: str, name: str, value: object) -> None:
        await self._run(self._sync.variable_set, call_id, name, value, at=self._clock())

    async def transfer(self, call_id: str, target: str, result: str | None = None) -> None:
        await self._run(self._sync.transfer, call_id, target, result)

    async def stt_session_started(self, call_id: str, session_id: str) -> None:
        await self._run(self._sync.stt_session_started, call_id, session_id, at=self._clock())

    async def stt_session_ended(self, call_id: str, session_id: str, *, reason: str) -> None:
        await self._run(self._sync.stt_session_ended, call_id, session_id, reason=reason, at=self._clock())

    async def call_ended(self, call_id: str, *, cause: str, side: HangupSide) -> None:
        await self._run(self._sync.call_ended, call_id, cause=cause, side=side, at=self._clock())

    async def recording_started(self, call_id: str, *, path: str, format: str, sample_rate_hz: int,
                                robot_path: str | None = None) -> None:
        await self._run(self._sync.recording_started, call_id, path=path, format=format,
                        sample_rate_hz=sample_rate_hz, robot_path=robot_path, at=self._clock())

    async def recording_mark(self, call_id: str, *, kind: str, start_ms: int, end_ms: int,
                             prompt_id: int | None = None, text: str | None = None) -> None:
        await self._run(self._sync.recording_mark, call_id, kind=kind, start_ms=start_ms, end_ms=end_ms,
                        prompt_id=prompt_id, text=text)

    async def recording_ended(self, call_id: str, *, duration_ms: int, error: str | None = None) -> None:
        await self._run(self._sync.recording_ended, call_id, duration_ms=duration_ms, error=error,
                        at=self._clock())

    async def amd_decided(self, call_id: str, *, answer_type: str, reason: str,
                          evidence: Mapping[str, object]) -> None:
        await self._run(self._sync.amd_decided, call_id, answer_type=answer_type, reason=reason,
                        evidence=evidence)

    async def list_calls(self, limit: int = 20) -> list[CallSummary]:
        return await self._run(self._sync.list_calls, limit)

    async def get_call(self, call_id: str) -> CallRecord | None:
        return await self._run(self._sync.get_call, call_id)

    async def mark_interrupted(self) -> int:
        return await self._run(self._sync.mark_interrupted)

    async def aclose(self) -> None:
        self._stop.set()
        await self._run(self._sync.close)
        self._executor.shutdown(wait=True)
