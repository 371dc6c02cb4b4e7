"""The two databases a call-record store can live in: a SQLite file, or a shared PostgreSQL server.

Both are driven with the same SQL text (``?`` placeholders; rewritten to ``%s`` for psycopg) and
the same transaction discipline: one short transaction per call event. Errors come back as the
store's own exceptions so the store never looks at a driver's exception types:

* :class:`IntegrityViolation` (a duplicate key or a missing foreign key: the caller's bug or a
  duplicate Call-ID),
* :class:`TransientFailure` (locked, connection lost, disk full: retry may help).

Schema migrations are serialized across processes and hosts: SQLite takes its write lock
(``BEGIN IMMEDIATE``) *before* reading ``user_version``, PostgreSQL takes a transaction-scoped
advisory lock before reading the version table, so N instances starting together on one new
database migrate it exactly once.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from voicebot.errors import VoicebotError

Durability = Literal["full", "normal"]
DbKind = Literal["sqlite", "postgres"]
# An arbitrary constant naming voicebot's schema lock among other advisory locks on the server.
_PG_MIGRATION_LOCK = 0x766F6963  # "voic"
# How long opening a SQLite file keeps retrying while another process holds it locked: switching a
# new file to WAL needs a moment's exclusive lock, and SQLite answers "database is locked" to the
# others at once instead of waiting in its busy handler (seen with 6 instances starting together).
SQLITE_OPEN_TIMEOUT_S = 10.0


class BackendError(VoicebotError):
    """Base of the backend's own errors; the store turns them into RecordsError subclasses."""


class IntegrityViolation(BackendError):
    def __init__(self, message: str, *, duplicate: bool) -> None:
        super().__init__(message)
        self.duplicate = duplicate


class TransientFailure(BackendError):
    pass


class OpenFailure(BackendError):
    pass


def is_postgres_url(target: str | Path) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for error messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}"


class Database(Protocol):
    kind: DbKind
    name: str  # a path or a password-less URL, for messages

    def execute(self, sql: str, params: Sequence[object] = ()) -> int: ...
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...
    def transaction(self) -> Any: ...
    def migrate(self, migrations: Sequence[Sequence[str]]) -> int: ...
    def schema_version(self) -> int: ...
    def close(self) -> None: ...


class SqliteDatabase:
    kind: DbKind = "sqlite"

    def __init__(self, path: Path | str, *, durability: Durability) -> None:
        self.name = str(path)
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from worker threads (check_same_thread=False): the lock keeps one
        # thread's transaction whole, so another thread's statement waits instead of landing
        # inside it ("cannot start a transaction within a transaction").
        self._lock = threading.RLock()
        deadline = time.monotonic() + SQLITE_OPEN_TIMEOUT_S
        while True:
            try:
                self._db = self._open(str(path), durability)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise OpenFailure(str(exc)) from exc
                time.sleep(random.uniform(0.01, 0.1))  # another process is switching the new file to WAL
            except sqlite3.DatabaseError as exc:
                raise OpenFailure(str(exc)) from exc

    @staticmethod
    def _open(path: str, durability: Durability) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per event.
        db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={durability.upper()}")
            db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            db.close()
            raise
        return db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError as exc:
            raise IntegrityViolation(str(exc), duplicate="UNIQUE" in str(exc)) from exc
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, read-only file
            raise TransientFailure(str(exc)) from exc
        except sqlite3.DatabaseError as exc:
            raise OpenFailure(str(exc)) from exc

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock, self._errors():
            return int(self._db.execute(sql, tuple(params)).rowcount)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return [tuple(r) for r in self._db.execute(sql, tuple(params)).fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT`` (or ``ROLLBACK`` on error): all or nothing. Other
        threads sharing this connection wait until it ends."""
        with self._lock:
            with self._errors():
                self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            with self._errors():
                self._db.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self.query("PRAGMA user_version")[0][0])

    def migrate(self, migrations: Sequence[Sequence[str]]) -> int:
        """Bring the schema to ``len(migrations)``; returns the version found before."""
        with self.transaction():  # the write lock first: a concurrent starter waits, then sees our work
            found = self.schema_version()
            if found < len(migrations):
                for target in range(found + 1, len(migrations) + 1):
                    for statement in migrations[target - 1]:
                        self.execute(statement)
                self.execute(f"PRAGMA user_version={len(migrations)}")
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresDatabase:
    kind: DbKind = "postgres"

    def __init__(self, url: str) -> None:
        self.name = redact_url(url)
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a declared dependency
            raise OpenFailure("PostgreSQL records need psycopg 3 (pip install 'psycopg[binary]')") from exc
        self._psycopg = psycopg
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise OpenFailure(str(exc).strip()) from exc
        self._in_tx = False
        self._lock = threading.RLock()  # as SqliteDatabase: one thread's transaction stays whole

    @contextmanager
    def _errors(self) -> Iterator[None]:
        errors = self._psycopg.errors
        try:
            yield
        except errors.UniqueViolation as exc:
            raise IntegrityViolation(str(exc).strip(), duplicate=True) from exc
        except errors.ForeignKeyViolation as exc:
            raise IntegrityViolation(str(exc).strip(), duplicate=False) from exc
        except (self._psycopg.OperationalError, errors.LockNotAvailable, errors.DiskFull) as exc:
            raise TransientFailure(str(exc).strip()) from exc
        except self._psycopg.Error as exc:
            raise OpenFailure(str(exc).strip()) from exc

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._lock, self._errors():
            return int(self._db.execute(self._sql(sql), tuple(params)).rowcount)

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._errors():
            return [tuple(r) for r in self._db.execute(self._sql(sql), tuple(params)).fetchall()]

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self._errors(), self._db.transaction():
            yield

    def schema_version(self) -> int:
        rows = self.query("SELECT to_regclass('voicebot_schema') IS NOT NULL")
        if not rows[0][0]:
            return 0
        return int(self.query("SELECT version FROM voicebot_schema")[0][0])

    def migrate(self, migrations: Sequence[Sequence[str]]) -> int:
        with self.transaction():
            self.execute(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
            self.execute("CREATE TABLE IF NOT EXISTS voicebot_schema (version INTEGER NOT NULL)")
            rows = self.query("SELECT version FROM voicebot_schema")
            found = int(rows[0][0]) if rows else 0
            if not rows:
                self.execute("INSERT INTO voicebot_schema (version) VALUES (0)")
            if found < len(migrations):
                for target in range(found + 1, len(migrations) + 1):
                    for statement in migrations[target - 1]:
                        self.execute(statement)
                self.execute("UPDATE voicebot_schema SET version = ?", (len(migrations),))
        return found

    def close(self) -> None:
        with self._lock:
            self._db.close()
