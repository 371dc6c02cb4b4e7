"""The call-record schema as migrations, one list of statements per version, for both databases.

Written once in SQLite's dialect; :func:`for_postgres` translates the few types that differ
(``REAL`` -> ``DOUBLE PRECISION``, an ``INTEGER PRIMARY KEY`` row id -> ``BIGSERIAL``). Never edit a
released entry; append a new one.
"""

from __future__ import annotations

import re

# Entry i migrates version i -> i + 1.
_SQL: tuple[str, ...] = (
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
    # 2: instances and heartbeats. A call belongs to the instance (process) that answered it; every
    # instance refreshes its heartbeat, so a call whose instance stopped beating is known to be cut
    # off, whichever host looks, without trusting PIDs across hosts or PID namespaces.
    """
    CREATE TABLE instances (
        instance_id     TEXT PRIMARY KEY,
        host            TEXT NOT NULL,
        pid             INTEGER NOT NULL,
        pid_ns          TEXT,
        started_at      REAL NOT NULL,
        heartbeat_at    REAL NOT NULL,
        stopped_at      REAL
    );
    ALTER TABLE calls ADD COLUMN instance_id TEXT REFERENCES instances (instance_id);
    CREATE INDEX calls_open ON calls (instance_id) WHERE ended_at IS NULL;
    """,
    # 3: call recordings (issue 11). One row per recorded call (its file or files, format, length)
    # and its timeline: caller utterances, robot prompts and paused stretches, in ms since the
    # answer on the recording, so a player can jump to each turn. Self-contained (new tables
    # only), so it can be reordered with another entry appended at the same time.
    """
    CREATE TABLE recordings (
        call_id         TEXT PRIMARY KEY REFERENCES calls (call_id),
        path            TEXT NOT NULL,
        robot_path      TEXT,
        format          TEXT NOT NULL CHECK (format IN ('stereo', 'mono-pair')),
        sample_rate_hz  INTEGER NOT NULL,
        started_at      REAL NOT NULL,
        ended_at        REAL,
        duration_ms     INTEGER,
        error           TEXT
    );
    CREATE TABLE recording_marks (
        id              INTEGER PRIMARY KEY,
        call_id         TEXT NOT NULL REFERENCES calls (call_id),
        kind            TEXT NOT NULL CHECK (kind IN ('utterance', 'prompt', 'pause')),
        start_ms        INTEGER NOT NULL,
        end_ms          INTEGER NOT NULL,
        prompt_id       INTEGER,
        text            TEXT
    );
    CREATE INDEX recording_marks_call ON recording_marks (call_id, start_ms);
    """,
    # 4: answering-machine detection on outbound calls: who answered (human / machine / unknown),
    # why (phrase, beep, long-greeting, short-greeting, ...) and the evidence as JSON. Only adds
    # columns to calls, so it can go after another entry appended at the same time (issue 10).
    """
    ALTER TABLE calls ADD COLUMN answer_type TEXT;
    ALTER TABLE calls ADD COLUMN amd_reason TEXT;
    ALTER TABLE calls ADD COLUMN amd_json TEXT;
    """,
)

_REAL = re.compile(r"\bREAL\b")
_ROWID = re.compile(r"\bid\s+INTEGER PRIMARY KEY\b")


def _statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def for_sqlite() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(_statements(m)) for m in _SQL)


def for_postgres() -> tuple[tuple[str, ...], ...]:
    return tuple(
        tuple(_REAL.sub("DOUBLE PRECISION", _ROWID.sub("id BIGSERIAL PRIMARY KEY", statement))
              for statement in _statements(m))
        for m in _SQL
    )


SCHEMA_VERSION = len(_SQL)
