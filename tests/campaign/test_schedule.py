"""The scheduling core on a fake clock: pacing, retries by outcome, calling windows, do-not-call."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.campaign.model import CallingWindow, CampaignSettings, Pacing, RetryPolicy
from voicebot.campaign.schedule import (
    ContactState,
    DialContact,
    Outcome,
    Scheduler,
    SkipContact,
    classify,
    window_open_at,
)


def at(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def campaign(**kw: object) -> CampaignSettings:
    base: dict[str, object] = {"dialplan": "x.yaml", "window": CallingWindow.parse("00:00-24:00")}
    base.update(kw)
    return CampaignSettings(**base)  # type: ignore[arg-type]


def contacts(n: int, tz: str | None = None) -> list[ContactState]:
    return [ContactState(f"+1555010{i:04d}", tz=tz, line=i + 2) for i in range(n)]


@pytest.mark.parametrize(("answered", "status", "answer_type", "expected"), [
    (True, None, "human", "answered"),
    (True, None, "unknown", "answered"),
    (True, None, None, "answered"),
    (True, None, "machine", "machine"),
    (False, 486, None, "busy"),
    (False, 600, None, "busy"),
    (False, 480, None, "no-answer"),
    (False, 408, None, "no-answer"),
    (False, 487, None, "no-answer"),
    (False, None, None, "no-answer"),  # our ring timeout cancelled it
    (False, 404, None, "refused"),
    (False, 484, None, "refused"),
    (False, 603, None, "refused"),
    (False, 503, None, "failed"),
])
def test_classify(answered: bool, status: int | None, answer_type: str | None, expected: Outcome) -> None:
    assert classify(answered=answered, sip_status=status, answer_type=answer_type) == expected


POLICY = RetryPolicy(max_attempts=3, busy_delay_s=60, no_answer_delay_s=600, machine="retry",
                     machine_delay_s=3600, failed_delay_s=120)


@pytest.mark.parametrize(("outcome", "policy", "status", "final", "next_in_s"), [
    ("answered", POLICY, "done", "answered", None),
    ("refused", POLICY, "done", "refused", None),
    ("busy", POLICY, "pending", None, 60),
    ("no-answer", POLICY, "pending", None, 600),
    ("failed", POLICY, "pending", None, 120),
    ("machine", POLICY, "pending", None, 3600),
    ("machine", RetryPolicy(machine="done"), "done", "machine", None),
    ("interrupted", RetryPolicy(interrupted="never"), "done", "interrupted", None),
])
def test_retry_by_outcome(outcome: Outcome, policy: RetryPolicy, status: str, final: str | None,
                          next_in_s: float | None) -> None:
    now = at("2026-03-02T10:00:00")
    s = Scheduler(campaign(retry=policy), contacts(1), now=now)
    [dial] = s.poll(now)
    assert dial == DialContact("+15550100000", 1)
    state = s.attempt_finished("+15550100000", outcome, now + 5)
    assert (state.status, state.final) == (status, final)
    if next_in_s is not None:
        assert state.next_at == now + 5 + next_in_s
        assert s.poll(now + 5 + next_in_s - 1) == []
        assert s.poll(now + 5 + next_in_s) == [DialContact("+15550100000", 2)]


def test_max_attempts_ends_with_the_last_outcome() -> None:
    now = 1_000_000.0
    s = Scheduler(campaign(retry=RetryPolicy(max_attempts=2, busy_delay_s=10)), contacts(1), now=now)
    assert s.poll(now) == [DialContact("+15550100000", 1)]
    s.attempt_finished("+15550100000", "busy", now + 1)
    assert s.poll(now + 11) == [DialContact("+15550100000", 2)]
    state = s.attempt_finished("+15550100000", "busy", now + 12)
    assert (state.status, state.final, state.attempts) == ("done", "busy", 2)
    assert s.poll(now + 1000) == [] and s.finished


def test_interrupted_attempt_waits_for_the_next_window() -> None:
    settings_ = campaign(window=CallingWindow.parse("09:00-20:00"), default_tz="Europe/Berlin")
    now = at("2026-03-02T10:00:00", "Europe/Berlin")
    state = ContactState("+15550100000", attempts=1, status="dialing")
    s = Scheduler(settings_, [state], now=now)
    assert s.poll(now) == []  # in flight (as the store reloaded it)
    s.attempt_finished("+15550100000", "interrupted", now)
    assert s.poll(at("2026-03-02T19:59:00", "Europe/Berlin")) == []
    assert s.poll(at("2026-03-03T09:00:00", "Europe/Berlin")) == [DialContact("+15550100000", 2)]


@pytest.mark.parametrize(("tz", "local_now", "opens_local"), [
    ("America/New_York", "2026-03-02T07:30:00", "2026-03-02T09:00:00"),  # before: same day
    ("America/New_York", "2026-03-02T12:00:00", "2026-03-02T12:00:00"),  # inside: now
    ("America/New_York", "2026-03-02T20:00:00", "2026-03-03T09:00:00"),  # end is exclusive
    ("Asia/Tokyo", "2026-03-02T23:59:00", "2026-03-03T09:00:00"),
    # the night the clocks go forward in New York (2026-03-08), 09:00 local is still 09:00 local
    ("America/New_York", "2026-03-08T01:00:00", "2026-03-08T09:00:00"),
])
def test_window_open_at_in_the_callees_zone(tz: str, local_now: str, opens_local: str) -> None:
    window = CallingWindow.parse("09:00-20:00")
    assert window_open_at(at(local_now, tz), tz, window) == at(opens_local, tz)


def test_contact_outside_its_window_is_not_dialed_until_it_opens() -> None:
    # 12:00 UTC: 13:00 in Berlin (open), 07:00 in New York (closed until 09:00 = 14:00 UTC)
    now = at("2026-03-02T12:00:00")
    states = [ContactState("+491700000001", tz="Europe/Berlin", line=2),
              ContactState("+12125550001", tz="America/New_York", line=3)]
    s = Scheduler(campaign(window=CallingWindow.parse("09:00-20:00"),
                           pacing=Pacing(max_concurrent=5, calls_per_s=10, burst=5)), states, now=now)
    assert s.poll(now) == [DialContact("+491700000001", 1)]
    assert s.next_timer(now) == at("2026-03-02T14:00:00")
    t = now
    while t < at("2026-03-02T14:00:00"):
        assert s.poll(t) == []
        t += 137.0
    assert s.poll(at("2026-03-02T14:00:00")) == [DialContact("+12125550001", 1)]


def test_default_zone_applies_to_contacts_without_one() -> None:
    now = at("2026-03-02T08:30:00", "Asia/Tokyo")  # 00:30 in Berlin
    s = Scheduler(campaign(window=CallingWindow.parse("09:00-20:00"), default_tz="Asia/Tokyo"),
                  [ContactState("+15550100000")], now=now)
    assert s.poll(now) == []
    assert s.poll(at("2026-03-02T09:00:00", "Asia/Tokyo")) == [DialContact("+15550100000", 1)]


def test_do_not_call_is_checked_at_dial_time() -> None:
    now = 1_000_000.0
    s = Scheduler(campaign(pacing=Pacing(max_concurrent=1, calls_per_s=1)), contacts(3), now=now)
    assert s.poll(now) == [DialContact("+15550100000", 1)]
    # +15550100002 opts out while the first call is running: it is skipped when its turn comes
    s.attempt_finished("+15550100000", "busy", now + 0.5)
    assert s.poll(now + 1.0, dnc=frozenset({"+15550100002"})) == [
        DialContact("+15550100001", 1), SkipContact("+15550100002", "dnc")]
    assert s.contacts["+15550100002"].final == "dnc"


def test_cancel_pending_leaves_calls_in_flight_alone() -> None:
    s = Scheduler(campaign(pacing=Pacing(max_concurrent=1)), contacts(3), now=0.0)
    s.poll(0.0)
    assert s.cancel_pending() == ["+15550100001", "+15550100002"]
    assert not s.finished
    s.attempt_finished("+15550100000", "answered", 1.0)
    assert s.finished


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    max_concurrent=st.integers(1, 6),
    calls_per_s=st.sampled_from([0.5, 1.0, 2.0, 5.0]),
    burst=st.integers(1, 3),
    durations=st.lists(st.floats(0.05, 20.0), min_size=1, max_size=10),
    outcomes=st.lists(st.sampled_from(["answered", "busy", "no-answer", "failed", "refused", "machine"]),
                      min_size=1, max_size=10),
)
def test_pacing_limits_are_never_exceeded(n: int, max_concurrent: int, calls_per_s: float, burst: int,
                                          durations: list[float], outcomes: list[Outcome]) -> None:
    """Simulate a whole campaign on a fake clock driven by next_timer and call ends: concurrency
    never exceeds C, and over every interval new calls <= burst + R * length."""
    policy = RetryPolicy(max_attempts=3, busy_delay_s=3, no_answer_delay_s=7, failed_delay_s=2,
                         machine_delay_s=5)
    s = Scheduler(campaign(pacing=Pacing(max_concurrent, calls_per_s, burst), retry=policy),
                  contacts(n), now=0.0)
    now, starts, running = 0.0, [], []  # running: (ends_at, contact)
    k = 0
    for _ in range(10_000):
        for cmd in s.poll(now):
            assert isinstance(cmd, DialContact)
            starts.append(now)
            running.append((now + durations[k % len(durations)], cmd.contact_id))
            k += 1
            assert len(s.in_flight) <= max_concurrent
            assert len(running) <= max_concurrent
        if s.finished:
            break
        timer = s.next_timer(now)
        ends = min((e for e, _ in running), default=None)
        choices = [t for t in (timer, ends) if t is not None]
        assert choices, "stuck: nothing to wait for"
        now = max(now, min(choices))
        for item in [r for r in running if r[0] <= now]:
            running.remove(item)
            s.attempt_finished(item[1], outcomes[k % len(outcomes)], now)
    assert s.finished
    window: deque[float] = deque()
    for t in starts:  # sliding: calls started in [t - T, t] for T = 1 s .. whole run
        window.append(t)
        for span in (1.0, 2.0, 10.0):
            inside = [x for x in window if x >= t - span]
            assert len(inside) <= burst + calls_per_s * span + 1e-9
    assert all(c.status == "done" for c in s.contacts.values())


def test_answered_window_uses_utc_timestamps() -> None:
    assert datetime.fromtimestamp(at("2026-03-02T12:00:00"), UTC).hour == 12
