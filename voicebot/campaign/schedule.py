"""The campaign's scheduling core: whom to dial now, and what to do after each attempt (pure).

Theory of operation. :class:`Scheduler` holds every contact's :class:`ContactState` and is driven
with ``now`` (epoch seconds, UTC) by its adapter (:mod:`voicebot.campaign.dialer`); it never reads a
clock, sleeps or touches a socket. ``poll(now, dnc)`` returns the commands for this instant:
:class:`DialContact` for each contact that is due, inside its calling window, not on the
do-not-call list, and allowed by the trunk's pacing; :class:`SkipContact` for a due contact found on
the do-not-call list (checked here, at dial time, so a number added mid-campaign is never called).
``attempt_finished(contact_id, outcome, now)`` applies the retry policy and returns the contact's
new state. ``next_timer(now)`` tells the adapter when polling again can change anything.

Pacing is a token bucket per trunk: ``calls_per_s`` tokens a second, at most ``burst`` stored; a
dial takes one token and one of the ``max_concurrent`` call slots (given back when the attempt
finishes). So over any interval T, new calls <= burst + T * calls_per_s, and calls in flight never
exceed max_concurrent.

Calling windows are local times of day in the contact's zone (or the campaign's default zone),
computed with :mod:`zoneinfo` from ``now``, so daylight-saving changes are the zone's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from voicebot.campaign.model import CallingWindow, CampaignSettings, RetryPolicy

# How one attempt went, as far as the retry policy cares.
Outcome = Literal["answered", "machine", "busy", "no-answer", "refused", "failed", "interrupted"]
# A contact's final result: an attempt outcome, or not dialed because of the do-not-call list.
FinalOutcome = Literal["answered", "machine", "busy", "no-answer", "refused", "failed", "interrupted",
                       "dnc", "cancelled"]
ContactStatus = Literal["pending", "dialing", "done"]

BUSY = frozenset({486, 600})
NO_ANSWER = frozenset({408, 480, 487})
# The number does not exist or must not be called again (RFC 3261 §21.4.5, .4.19, §21.6.2, .6.4).
REFUSED = frozenset({404, 410, 484, 603, 604})


def classify(*, answered: bool, sip_status: int | None, answer_type: str | None = None) -> Outcome:
    """One attempt's outcome from the call's result: ``sip_status`` is the final response of an
    unanswered INVITE (None when our own ring timeout cancelled it)."""
    if answered:
        return "machine" if answer_type == "machine" else "answered"
    if sip_status is None or sip_status in NO_ANSWER:
        return "no-answer"
    if sip_status in BUSY:
        return "busy"
    if sip_status in REFUSED:
        return "refused"
    return "failed"


@dataclass(slots=True)
class ContactState:
    contact_id: str
    tz: str | None = None
    line: int = 0
    attempts: int = 0
    next_at: float = 0.0  # not before this (epoch s); the window may push it later
    status: ContactStatus = "pending"
    final: FinalOutcome | None = None
    last_outcome: Outcome | None = None


@dataclass(frozen=True, slots=True)
class DialContact:
    contact_id: str
    attempt: int  # 1-based


@dataclass(frozen=True, slots=True)
class SkipContact:
    contact_id: str
    reason: Literal["dnc"]


Command = DialContact | SkipContact


# ---- calling windows ------------------------------------------------------------------------


def _local_midnight(now: float, zone: ZoneInfo, day_offset: int) -> datetime:
    local = datetime.fromtimestamp(now, zone)
    day = local.date() + timedelta(days=day_offset)
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _bounds(now: float, zone: ZoneInfo, window: CallingWindow, day_offset: int) -> tuple[float, float]:
    midnight = _local_midnight(now, zone, day_offset)
    start = midnight + timedelta(minutes=window.start_minute)
    end = midnight + timedelta(minutes=window.end_minute)
    return start.timestamp(), end.timestamp()


def window_open_at(now: float, tz: str, window: CallingWindow) -> float:
    """``now`` if ``now`` is inside the window in zone ``tz``, else when it next opens."""
    zone = ZoneInfo(tz)
    for day_offset in (0, 1, 2):
        start, end = _bounds(now, zone, window, day_offset)
        if now < end:
            return max(now, start)
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def next_window_start(now: float, tz: str, window: CallingWindow) -> float:
    """When the window opens on the local day after the one ``now`` falls in."""
    return _bounds(now, ZoneInfo(tz), window, 1)[0]


# ---- retry policy ---------------------------------------------------------------------------


def after_attempt(state: ContactState, outcome: Outcome, now: float, policy: RetryPolicy, *,
                  tz: str, window: CallingWindow) -> ContactState:
    """The contact after an attempt with ``outcome`` ended at ``now``: done, or due again later."""
    state.last_outcome = outcome
    delay: float | None
    if outcome == "answered" or outcome == "refused":
        delay = None
    elif outcome == "machine":
        delay = policy.machine_delay_s if policy.machine == "retry" else None
    elif outcome == "busy":
        delay = policy.busy_delay_s
    elif outcome == "no-answer":
        delay = policy.no_answer_delay_s
    elif outcome == "failed":
        delay = policy.failed_delay_s
    else:  # interrupted: the phone may have rung; never again in the same window
        delay = None if policy.interrupted == "never" else max(0.0, next_window_start(now, tz, window) - now)
    if delay is None or state.attempts >= policy.max_attempts:
        state.status, state.final = "done", outcome
    else:
        state.status, state.next_at = "pending", now + delay
    return state


# ---- the scheduler --------------------------------------------------------------------------


# Float refills land a hair under a whole token; count that as whole (else the adapter would wake
# up again and again a femtosecond apart).
_TOKEN_EPSILON = 1e-9


class TokenBucket:
    """``rate_per_s`` tokens a second, at most ``burst`` stored (full at the start)."""

    def __init__(self, rate_per_s: float, burst: int, *, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = float(burst)
        self._refilled_at = now

    def _refill(self, now: float) -> None:
        if now > self._refilled_at:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled_at) * self.rate_per_s)
            self._refilled_at = now

    def wait_s(self, now: float) -> float:
        """How long until a token is there (0: now)."""
        self._refill(now)
        missing = 1.0 - self._tokens
        return 0.0 if missing <= _TOKEN_EPSILON else missing / self.rate_per_s

    def take(self, now: float) -> bool:
        """Take a token if there is one."""
        if self.wait_s(now) > 0.0:
            return False
        self._tokens = max(0.0, self._tokens - 1.0)
        return True


class Scheduler:
    """Whom to dial and when, for one campaign on one trunk (see the module docstring)."""

    def __init__(self, settings: CampaignSettings, contacts: Iterable[ContactState], *, now: float) -> None:
        self.settings = settings
        self.contacts: dict[str, ContactState] = {c.contact_id: c for c in contacts}
        self.in_flight: set[str] = {c.contact_id for c in self.contacts.values() if c.status == "dialing"}
        self.bucket = TokenBucket(settings.pacing.calls_per_s, settings.pacing.burst, now=now)

    def tz_of(self, state: ContactState) -> str:
        return state.tz or self.settings.default_tz

    @property
    def finished(self) -> bool:
        return not self.in_flight and all(c.status == "done" for c in self.contacts.values())

    def _due(self, now: float) -> list[ContactState]:
        due = [c for c in self.contacts.values()
               if c.status == "pending" and c.next_at <= now
               and window_open_at(now, self.tz_of(c), self.settings.window) <= now]
        due.sort(key=lambda c: (c.next_at, c.line))
        return due

    def poll(self, now: float, dnc: frozenset[str] = frozenset()) -> list[Command]:
        """The commands for ``now``: contacts to dial (each counted against the pacing at once) and
        due contacts skipped because they are on the do-not-call list."""
        commands: list[Command] = []
        for state in self._due(now):
            if state.contact_id in dnc:
                state.status, state.final = "done", "dnc"
                commands.append(SkipContact(state.contact_id, "dnc"))
                continue
            if len(self.in_flight) >= self.settings.pacing.max_concurrent or not self.bucket.take(now):
                continue  # keep going: later due contacts may still be on the do-not-call list
            state.attempts += 1
            state.status = "dialing"
            self.in_flight.add(state.contact_id)
            commands.append(DialContact(state.contact_id, state.attempts))
        return commands

    def attempt_finished(self, contact_id: str, outcome: Outcome, now: float) -> ContactState:
        state = self.contacts[contact_id]
        self.in_flight.discard(contact_id)
        return after_attempt(state, outcome, now, self.settings.retry, tz=self.tz_of(state),
                             window=self.settings.window)

    def cancel_pending(self) -> list[str]:
        """Cancel: every contact not yet done and not in flight is done as 'cancelled'."""
        cancelled = []
        for state in self.contacts.values():
            if state.status == "pending":
                state.status, state.final = "done", "cancelled"
                cancelled.append(state.contact_id)
        return cancelled

    def next_timer(self, now: float) -> float | None:
        """The earliest time after ``now`` when :meth:`poll` may return something new (None: only
        a finishing attempt can change anything)."""
        candidates: list[float] = []
        pending = [c for c in self.contacts.values() if c.status == "pending"]
        for state in pending:
            at = max(now, state.next_at)
            candidates.append(window_open_at(at, self.tz_of(state), self.settings.window))
        if not candidates:
            return None
        at = min(candidates)
        if at <= now:
            if len(self.in_flight) >= self.settings.pacing.max_concurrent:
                return None
            wait_s = self.bucket.wait_s(now)
            if wait_s > 0.0:
                return now + wait_s
        return at


__all__ = [
    "BUSY", "NO_ANSWER", "REFUSED", "Command", "ContactState", "ContactStatus", "DialContact",
    "FinalOutcome", "Outcome", "Scheduler", "SkipContact", "TokenBucket", "after_attempt", "classify",
    "next_window_start", "window_open_at",
]
