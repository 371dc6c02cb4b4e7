"""The campaign store: campaigns, contacts and every attempt in SQLite, written before the INVITE.

Crash safety. An attempt row (status ``dialing``) and its contact's attempt count are committed in
one transaction BEFORE the dialer sends the INVITE; the result is committed in one transaction
when the call ends. So after a crash or a restart, a contact is either done, due again by the
retry policy, or has an attempt row still ``dialing``: that attempt is resolved as outcome
``interrupted`` (we cannot know whether the phone rang or who answered), counted against
``max_attempts``, and retried only as ``RetryPolicy.interrupted`` says (default: not in the same
calling window). Nobody is dialed twice because of a restart.

Migrations follow :mod:`voicebot.records.schema`: one entry per version, never edited once
released, applied under SQLite's write lock (:meth:`SqliteDatabase.migrate`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voicebot.campaign.errors import CampaignError, UnknownCampaign
from voicebot.campaign.model import CampaignSettings, Contact
from voicebot.campaign.schedule import ContactState, FinalOutcome, Outcome
from voicebot.records.backend import BackendError, IntegrityViolation, SqliteDatabase

CampaignState = Literal["created", "running", "paused", "cancelled", "finished"]

# Entry i migrates version i -> i + 1. Never edit a released entry; append.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE campaigns (
            campaign_id   TEXT PRIMARY KEY,
            settings_json TEXT NOT NULL,
            state         TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused', 'cancelled',
                                                         'finished')),
            created_at    REAL NOT NULL,
            updated_at    REAL NOT NULL
        )""",
        """CREATE TABLE contacts (
            campaign_id    TEXT NOT NULL REFERENCES campaigns (campaign_id),
            contact_id     TEXT NOT NULL,
            line           INTEGER NOT NULL,
            number         TEXT NOT NULL,
            tz             TEXT,
            variables_json TEXT NOT NULL,
            status         TEXT NOT NULL CHECK (status IN ('pending', 'dialing', 'done')),
            attempts       INTEGER NOT NULL DEFAULT 0,
            next_at        REAL NOT NULL DEFAULT 0,
            final_outcome  TEXT,
            last_outcome   TEXT,
            answer_type    TEXT,
            result_json    TEXT,
            finished_at    REAL,
            notified_at    REAL,
            PRIMARY KEY (campaign_id, contact_id)
        )""",
        """CREATE TABLE attempts (
            id             INTEGER PRIMARY KEY,
            campaign_id    TEXT NOT NULL,
            contact_id     TEXT NOT NULL,
            attempt        INTEGER NOT NULL,
            uri            TEXT NOT NULL,
            started_at     REAL NOT NULL,
            ended_at       REAL,
            status         TEXT NOT NULL CHECK (status IN ('dialing', 'done')),
            outcome        TEXT,
            sip_status     INTEGER,
            cause          TEXT,
            call_id        TEXT,
            answer_type    TEXT,
            amd_reason     TEXT,
            amd_json       TEXT,
            UNIQUE (campaign_id, contact_id, attempt),
            FOREIGN KEY (campaign_id, contact_id) REFERENCES contacts (campaign_id, contact_id)
        )""",
        "CREATE INDEX attempts_open ON attempts (campaign_id) WHERE status = 'dialing'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

# Which control command may move a campaign from which state.
_TRANSITIONS: dict[CampaignState, frozenset[CampaignState]] = {
    "running": frozenset({"created", "paused", "running"}),
    "paused": frozenset({"created", "running", "paused"}),
    "cancelled": frozenset({"created", "running", "paused", "cancelled"}),
    "finished": frozenset({"running"}),
}


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one attempt ended, as the dialer saw it."""

    outcome: Outcome
    sip_status: int | None = None
    cause: str = ""
    call_id: str = ""
    answer_type: str | None = None  # human / machine / unknown (answered calls)
    amd_reason: str | None = None
    amd_evidence: dict[str, object] | None = None
    variables: dict[str, str] | None = None  # what the dialplan recorded (e.g. confirmation)


@dataclass(frozen=True, slots=True)
class ContactResult:
    """One contact's row in the export and the webhook's body."""

    campaign_id: str
    number: str
    line: int
    status: str
    attempts: int
    final_outcome: str | None
    answer_type: str | None
    last_cause: str | None
    last_call_id: str | None
    finished_at: float | None
    variables: dict[str, str]  # the contact's CSV variables
    result: dict[str, str]  # what the dialplan recorded

    def to_json(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id, "number": self.number, "line": self.line, "status": self.status,
                "attempts": self.attempts, "final_outcome": self.final_outcome,
                "answer_type": self.answer_type, "last_cause": self.last_cause,
                "last_call_id": self.last_call_id, "finished_at": self.finished_at,
                "variables": self.variables, "result": self.result}


class CampaignStore:
    """Synchronous; the dialer calls it from a worker thread (every write is one short transaction)."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        try:
            self._db = SqliteDatabase(path, durability="full")
            found = self._db.migrate(MIGRATIONS)
        except BackendError as exc:
            raise CampaignError(f"cannot open the campaign database {path}: {exc.message}") from exc
        if found > SCHEMA_VERSION:
            raise CampaignError(f"campaign database {path} has schema {found}, newer than this voicebot's "
                                f"{SCHEMA_VERSION}: upgrade voicebot")

    def close(self) -> None:
        self._db.close()

    # ---- campaigns ----

    def create(self, campaign_id: str, settings: CampaignSettings, contacts: Sequence[Contact], *,
               now: float) -> None:
        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO campaigns (campaign_id, settings_json, state, created_at, updated_at) "
                    "VALUES (?, ?, 'created', ?, ?)",
                    (campaign_id, json.dumps(settings.to_json()), now, now))
                for c in contacts:
                    self._db.execute(
                        "INSERT INTO contacts (campaign_id, contact_id, line, number, tz, variables_json, "
                        "status) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                        (campaign_id, c.contact_id, c.line, c.number, c.tz, json.dumps(c.variables)))
        except IntegrityViolation as exc:
            if exc.duplicate:
                raise CampaignError(f"campaign {campaign_id!r} already exists in {self.path}") from exc
            raise

    def campaigns(self) -> list[tuple[str, CampaignState]]:
        return [(r[0], r[1]) for r in self._db.query(
            "SELECT campaign_id, state FROM campaigns ORDER BY created_at")]

    def settings(self, campaign_id: str) -> CampaignSettings:
        rows = self._db.query("SELECT settings_json FROM campaigns WHERE campaign_id = ?", (campaign_id,))
        if not rows:
            raise UnknownCampaign(f"no campaign {campaign_id!r} in {self.path} (voicebot campaign create)")
        return CampaignSettings.from_json(json.loads(rows[0][0]))

    def set_dnc_file(self, campaign_id: str, dnc_file: str | None, *, now: float) -> None:
        """Point the campaign at another do-not-call list (or none); the settings are otherwise kept."""
        with self._db.transaction():
            settings = dataclasses.replace(self.settings(campaign_id), dnc_file=dnc_file)
            self._db.execute("UPDATE campaigns SET settings_json = ?, updated_at = ? WHERE campaign_id = ?",
                             (json.dumps(settings.to_json()), now, campaign_id))

    def state(self, campaign_id: str) -> CampaignState:
        rows = self._db.query("SELECT state FROM campaigns WHERE campaign_id = ?", (campaign_id,))
        if not rows:
            raise UnknownCampaign(f"no campaign {campaign_id!r} in {self.path} (voicebot campaign create)")
        state: CampaignState = rows[0][0]
        return state

    def set_state(self, campaign_id: str, state: CampaignState, *, now: float) -> CampaignState:
        """Move the campaign to ``state``; returns the state it was in."""
        with self._db.transaction():
            old = self.state(campaign_id)
            if old not in _TRANSITIONS[state]:
                raise CampaignError(f"campaign {campaign_id!r} is {old}; it cannot become {state}")
            self._db.execute("UPDATE campaigns SET state = ?, updated_at = ? WHERE campaign_id = ?",
                             (state, now, campaign_id))
        return old

    # ---- contacts and attempts ----

    def contact_states(self, campaign_id: str) -> list[ContactState]:
        rows = self._db.query(
            "SELECT contact_id, tz, line, attempts, next_at, status, final_outcome, last_outcome "
            "FROM contacts WHERE campaign_id = ? ORDER BY line", (campaign_id,))
        return [ContactState(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]

    def contact(self, campaign_id: str, contact_id: str) -> tuple[str, dict[str, str]]:
        """(number, CSV variables) of a contact."""
        rows = self._db.query("SELECT number, variables_json FROM contacts WHERE campaign_id = ? "
                              "AND contact_id = ?", (campaign_id, contact_id))
        return rows[0][0], json.loads(rows[0][1])

    def open_attempts(self, campaign_id: str) -> list[tuple[int, str, float]]:
        """(attempt id, contact id, started_at) of attempts left 'dialing' (by a crash, if no dialer
        runs)."""
        return [(r[0], r[1], r[2]) for r in self._db.query(
            "SELECT id, contact_id, started_at FROM attempts WHERE campaign_id = ? AND status = 'dialing' "
            "ORDER BY id",
            (campaign_id,))]

    def begin_attempt(self, campaign_id: str, contact_id: str, attempt: int, uri: str, *, now: float) -> int:
        """The attempt row, committed before the INVITE goes out; returns its id."""
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO attempts (campaign_id, contact_id, attempt, uri, started_at, status) "
                "VALUES (?, ?, ?, ?, ?, 'dialing')", (campaign_id, contact_id, attempt, uri, now))
            self._db.execute(
                "UPDATE contacts SET status = 'dialing', attempts = ? "
                "WHERE campaign_id = ? AND contact_id = ?",
                (attempt, campaign_id, contact_id))
            rows = self._db.query("SELECT id FROM attempts WHERE campaign_id = ? AND contact_id = ? AND "
                                  "attempt = ?", (campaign_id, contact_id, attempt))
        return int(rows[0][0])

    def finish_attempt(self, attempt_id: int, result: AttemptResult, contact: ContactState, *,
                       now: float) -> None:
        """The attempt's result and the contact's new state (from the scheduler), in one transaction."""
        with self._db.transaction():
            rows = self._db.query("SELECT campaign_id, contact_id FROM attempts WHERE id = ?", (attempt_id,))
            campaign_id, contact_id = rows[0]
            self._db.execute(
                "UPDATE attempts SET status = 'done', ended_at = ?, outcome = ?, sip_status = ?, cause = ?, "
                "call_id = ?, answer_type = ?, amd_reason = ?, amd_json = ? WHERE id = ?",
                (now, result.outcome, result.sip_status, result.cause, result.call_id or None,
                 result.answer_type, result.amd_reason,
                 json.dumps(result.amd_evidence) if result.amd_evidence is not None else None, attempt_id))
            self._db.execute(
                "UPDATE contacts SET answer_type = COALESCE(?, answer_type), "
                "result_json = COALESCE(?, result_json) WHERE campaign_id = ? AND contact_id = ?",
                (result.answer_type, json.dumps(result.variables) if result.variables else None,
                 campaign_id, contact_id))
            self._save_contact(campaign_id, contact, now)

    def save_contact(self, campaign_id: str, contact: ContactState, *, now: float) -> None:
        """A contact finished without an attempt (do-not-call, cancelled)."""
        with self._db.transaction():
            self._save_contact(campaign_id, contact, now)

    def _save_contact(self, campaign_id: str, c: ContactState, now: float) -> None:
        self._db.execute(
            "UPDATE contacts SET status = ?, attempts = ?, next_at = ?, final_outcome = ?, last_outcome = ?, "
            "finished_at = ? WHERE campaign_id = ? AND contact_id = ?",
            (c.status, c.attempts, c.next_at, c.final, c.last_outcome, now if c.status == "done" else None,
             campaign_id, c.contact_id))

    def mark_notified(self, campaign_id: str, contact_id: str, *, now: float) -> None:
        with self._db.transaction():
            self._db.execute("UPDATE contacts SET notified_at = ? WHERE campaign_id = ? AND contact_id = ?",
                             (now, campaign_id, contact_id))

    def unnotified(self, campaign_id: str) -> list[str]:
        return [r[0] for r in self._db.query(
            "SELECT contact_id FROM contacts WHERE campaign_id = ? AND status = 'done' "
            "AND notified_at IS NULL ORDER BY line", (campaign_id,))]

    # ---- results ----

    def results(self, campaign_id: str, contact_id: str | None = None) -> list[ContactResult]:
        self.state(campaign_id)
        sql = ("SELECT c.number, c.line, c.status, c.attempts, c.final_outcome, c.answer_type, a.cause, "
               "a.call_id, c.finished_at, c.variables_json, c.result_json FROM contacts c "
               "LEFT JOIN attempts a ON a.campaign_id = c.campaign_id AND a.contact_id = c.contact_id "
               "AND a.attempt = c.attempts "
               "WHERE c.campaign_id = ?")
        params: list[object] = [campaign_id]
        if contact_id is not None:
            sql += " AND c.contact_id = ?"
            params.append(contact_id)
        rows = self._db.query(sql + " ORDER BY c.line", params)
        return [ContactResult(campaign_id, r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8],
                              json.loads(r[9]), json.loads(r[10]) if r[10] else {}) for r in rows]

    def attempts(self, campaign_id: str) -> list[dict[str, Any]]:
        rows = self._db.query(
            "SELECT contact_id, attempt, uri, started_at, ended_at, status, outcome, sip_status, cause, "
            "call_id, answer_type, amd_reason FROM attempts WHERE campaign_id = ? ORDER BY id",
            (campaign_id,))
        keys = ("contact_id", "attempt", "uri", "started_at", "ended_at", "status", "outcome", "sip_status",
                "cause", "call_id", "answer_type", "amd_reason")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def counts(self, campaign_id: str) -> dict[str, int]:
        """Contacts by status and final outcome, for ``voicebot campaign status``."""
        self.state(campaign_id)
        counts: dict[str, int] = {}
        for status, final, n in self._db.query(
                "SELECT status, COALESCE(final_outcome, ''), COUNT(*) FROM contacts WHERE campaign_id = ? "
                "GROUP BY status, final_outcome", (campaign_id,)):
            key = f"done:{final}" if status == "done" else status
            counts[key] = counts.get(key, 0) + int(n)
        return counts


FINAL_OUTCOMES: tuple[FinalOutcome, ...] = (
    "answered", "machine", "busy", "no-answer", "refused", "failed", "interrupted", "dnc", "cancelled")

__all__ = ["FINAL_OUTCOMES", "MIGRATIONS", "SCHEMA_VERSION", "AttemptResult", "CampaignState",
           "CampaignStore", "ContactResult"]
