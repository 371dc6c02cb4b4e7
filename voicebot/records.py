"""Call records in SQLite, written as the call progresses.

Every event of a call (start, answer, each final utterance, DTMF digit, dialog state, variable,
transfer, recognizer session, end) is one small transaction, so a process crash loses at most the
event in flight. The database runs in WAL mode (readers never block the writer) with
``synchronous=FULL`` by default: each commit is on disk before the call returns (``normal`` keeps
process-crash safety but may lose the last commits on power loss; see docs/records.md).

All writes go through one writer thread that owns the connection (:class:`CallRecordStore`), so the
event loop never waits on SQLite or fsync and concurrent calls are serialized safely. The
synchronous :class:`SyncCallRecordStore` is the same logic for the CLI and tests.

A call whose end was never written is shown as ``open`` while the process that wrote it is alive,
and as ``unfinished`` (crashed) once it is not.

Schema changes are migrations keyed by ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from voicebot.errors import VoicebotError

T = TypeVar("T")

Direction = Literal["inbound", "outbound"]
HangupSide = Literal["caller", "robot", "network"]
Durability = Literal["full", "normal"]


class RecordsError(VoicebotError):
    """The call-record store was misused or its database is unusable; the message says which."""


class UnknownCall(RecordsError):
    """An event names a call that was never started in this store (a bug in the caller)."""


class DuplicateCall(RecordsError):
    """``call_started`` was called twice for one SIP Call-ID."""


# Each entry migrates user_version i -> i + 1. Never edit a released entry; append a new one.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE calls (
        call_id         TEXT PRIMARY KEY,
        direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
        from_uri        TEXT NOT NULL,
        to_uri          TEXT NOT NULL,
        started_at      REAL NOT NULL,
        answered_at     REAL,
        ended_at        REAL,
        hangup_cause    TEXT,
        hangup_side     TEXT,
        transfer_target TEXT,
        transfer_result TEXT,
        writer_host     TEXT NOT NULL,
        writer_pid      INTEGER NOT NULL
    );
    CREATE INDEX calls_started ON calls (started_at);
    CREATE TABLE utterances (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        session_id      TEXT NOT NULL,
        start_ms        INTEGER NOT NULL,
        end_ms          INTEGER NOT NULL,
        text            TEXT NOT NULL,
        normalized_text TEXT,
        received_at     REAL NOT NULL
    );
    CREATE INDEX utterances_call ON utterances (call_id, start_ms);
    CREATE TABLE dtmf (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        digit           TEXT NOT NULL,
        at              REAL NOT NULL
    );
    CREATE TABLE states (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        state           TEXT NOT NULL,
        entered_at      REAL NOT NULL
    );
    CREATE TABLE variables (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        name            TEXT NOT NULL,
        value_json      TEXT NOT NULL,
        set_at          REAL NOT NULL
    );
    CREATE TABLE stt_sessions (
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        session_id      TEXT NOT NULL,
        started_at      REAL NOT NULL,
        ended_at        REAL,
        close_reason    TEXT,
        PRIMARY KEY (call_id, session_id)
    );
    """,
)
SCHEMA_VERSION = len(_MIGRATIONS)


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
    status: CallStatus  # "unfinished": no end written and its writer process is gone (crash)

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

    @property
    def transcript(self) -> str:
        return " ".join(u.text for u in self.utterances)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class SyncCallRecordStore:
    """The store's logic on one blocking connection. Not thread-safe: one thread uses it."""

    def __init__(self, path: Path | str, *, durability: Durability = "full",
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._host = socket.gethostname()
        self._pid = os.getpid()
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per event.
            self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={durability.upper()}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise RecordsError(f"call records database {path}: {exc}; check the records path in the config")\
                from exc

    # ---- schema ----

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise RecordsError(
                f"call records database {self.path} has schema version {version}, newer than this "
                f"voicebot ({SCHEMA_VERSION}); upgrade voicebot or use another records path"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _MIGRATIONS[target - 1].split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={target}")
            self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    # ---- writes: one transaction each ----

    def _write(self, sql: str, params: Sequence[object], *, call_id: str) -> None:
        try:
            with self._tx():
                cursor = self._db.execute(sql, params)
                if cursor.rowcount == 0:
                    raise UnknownCall(f"call record {call_id!r} does not exist; call_started() first")
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" in str(exc):
                raise UnknownCall(f"call record {call_id!r} does not exist; call_started() first") from exc
            raise
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, read-only file
            raise RecordsError(f"call records database {self.path}: {exc}", retryable=True) from exc

    def _tx(self) -> _Transaction:
        return _Transaction(self._db)

    def call_started(self, call_id: str, *, direction: Direction, from_uri: str, to_uri: str,
                     at: float | None = None) -> None:
        if direction not in ("inbound", "outbound"):
            raise RecordsError(f"direction must be 'inbound' or 'outbound', not {direction!r}")
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO calls (call_id, direction, from_uri, to_uri, started_at, writer_host,"
                    " writer_pid) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (call_id, direction, from_uri, to_uri, self._now(at), self._host, self._pid),
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateCall(f"a call record with Call-ID {call_id!r} already exists") from exc
        except sqlite3.OperationalError as exc:
            raise RecordsError(f"call records database {self.path}: {exc}", retryable=True) from exc

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

    # ---- reads ----

    _SUMMARY_COLUMNS = (
        "call_id, direction, from_uri, to_uri, started_at, answered_at, ended_at, hangup_cause,"
        " hangup_side, transfer_target, transfer_result, writer_host, writer_pid"
    )

    def _summary(self, row: Sequence[object]) -> CallSummary:
        ended_at = row[6]
        status: CallStatus = "ended"
        if ended_at is None:
            same_host = row[11] == self._host
            pid = int(row[12])  # type: ignore[call-overload]
            status = "unfinished" if same_host and not _pid_alive(pid) else "open"
        return CallSummary(
            call_id=str(row[0]), direction=row[1],  # type: ignore[arg-type]
            from_uri=str(row[2]), to_uri=str(row[3]), started_at=float(row[4]),  # type: ignore[arg-type]
            answered_at=row[5], ended_at=ended_at, hangup_cause=row[7], hangup_side=row[8],  # type: ignore[arg-type]
            transfer_target=row[9], transfer_result=row[10], status=status,  # type: ignore[arg-type]
        )

    def list_calls(self, limit: int = 20) -> list[CallSummary]:
        """The most recent calls first."""
        if limit < 1:
            raise RecordsError(f"limit must be at least 1, not {limit}")
        rows = self._db.execute(
            f"SELECT {self._SUMMARY_COLUMNS} FROM calls ORDER BY started_at DESC, rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [self._summary(r) for r in rows]

    def get_call(self, call_id: str) -> CallRecord | None:
        row = self._db.execute(f"SELECT {self._SUMMARY_COLUMNS} FROM calls WHERE call_id = ?",
                               (call_id,)).fetchone()
        if row is None:
            return None
        q = self._db.execute
        utterances = tuple(
            Utterance(r[0], r[1], r[2], r[3], r[4], r[5]) for r in q(
                "SELECT session_id, start_ms, end_ms, text, normalized_text, received_at FROM utterances"
                " WHERE call_id = ? ORDER BY start_ms, id", (call_id,))
        )
        dtmf = tuple(DtmfDigit(r[0], r[1]) for r in q(
            "SELECT digit, at FROM dtmf WHERE call_id = ? ORDER BY id", (call_id,)))
        states = tuple(StateVisit(r[0], r[1]) for r in q(
            "SELECT state, entered_at FROM states WHERE call_id = ? ORDER BY id", (call_id,)))
        variables = tuple(VariableSet(r[0], json.loads(r[1]), r[2]) for r in q(
            "SELECT name, value_json, set_at FROM variables WHERE call_id = ? ORDER BY id", (call_id,)))
        sessions = tuple(SttSession(r[0], r[1], r[2], r[3]) for r in q(
            "SELECT session_id, started_at, ended_at, close_reason FROM stt_sessions WHERE call_id = ?"
            " ORDER BY started_at, rowid", (call_id,)))
        return CallRecord(self._summary(row), utterances, dtmf, states, variables, sessions)

    def _now(self, at: float | None) -> float:
        return self._clock() if at is None else at


class _Transaction:
    """``BEGIN IMMEDIATE`` .. ``COMMIT`` (or ``ROLLBACK`` on error): one event, all or nothing."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class CallRecordStore:
    """Async facade: every operation runs on one writer thread that owns the connection.

    Methods mirror :class:`SyncCallRecordStore`; awaiting one returns once the event is committed.
    Event times default to the moment the method is called (not when the writer gets to it).
    """

    def __init__(self, path: Path | str, *, durability: Durability = "full",
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                               thread_name_prefix="call-records")
        # The connection is created on the writer thread: sqlite3 objects stay on their thread.
        self._sync: SyncCallRecordStore = self._executor.submit(
            SyncCallRecordStore, path, durability=durability, clock=clock).result()
        self.path = self._sync.path

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

    async def list_calls(self, limit: int = 20) -> list[CallSummary]:
        return await self._run(self._sync.list_calls, limit)

    async def get_call(self, call_id: str) -> CallRecord | None:
        return await self._run(self._sync.get_call, call_id)

    async def aclose(self) -> None:
        await self._run(self._sync.close)
        self._executor.shutdown(wait=True)
