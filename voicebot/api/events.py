"""The call-event bus: what happens on calls (started, answered, utterance, state, dtmf, transfer,
ended), fanned out to any number of subscribers (the ``/v1/events`` stream).

Theory of operation. A call publishes with :meth:`EventBus.publish`, which never blocks and never
awaits: each :class:`Subscription` has a bounded queue; an event that finds it full is dropped for
that subscriber and counted (on the subscription, which the stream reports to its client as a
``dropped`` notice before the next event, and in ``voicebot_api_events_dropped_total``). A slow or
stuck HTTP client thus loses events, never delays a call. Events carry a bus-wide sequence number,
so a client can see exactly where it has a gap. :meth:`EventBus.close` ends every subscription
(shutdown: an open stream must not hold the HTTP server open).

Replay (the SSE ``Last-Event-ID`` of a client that reconnects, WHATWG HTML §9.2.4). The bus keeps the
last ``replay_events`` events, none more than ``replay_max_age_s`` older than the newest one (age is
measured on the events' own ``time``, so the bus needs no clock), in a deque: bounded memory, and
publishing stays O(subscribers). ``subscribe(after=...)`` hands the new subscription everything
after the client's last id (its filter applied) as a backlog it takes before any live event, in the
same synchronous step as the subscription is made, so nothing published in between is lost or
doubled. The backlog is bounded by the replay buffer and is not counted against the live queue.
When the client's id is older than the buffer (``expired``), or from another process (``restart``:
sequence numbers restart with the process; :attr:`EventBus.boot_id`, random per bus, tells them
apart), or newer than anything published here (``unknown``), the backlog starts with a
:class:`ReplayGap` saying so and where the replay starts: the client never skips events silently.
"""

from __future__ import annotations

import asyncio
import secrets
import typing
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

from voicebot.ascii import is_digits

EventKind = Literal["started", "answered", "utterance", "state", "dtmf", "transfer", "ended"]
EVENT_KINDS: tuple[EventKind, ...] = typing.get_args(EventKind)

DEFAULT_QUEUE_SIZE = 256
DEFAULT_REPLAY_EVENTS = 1000
DEFAULT_REPLAY_MAX_AGE_S = 600.0
GapReason = Literal["expired", "restart", "unknown"]


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Something that happened on a call. ``call_id`` is the API's id of the call, ``sip_call_id``
    its SIP Call-ID once known, ``time`` the wall-clock time (Unix seconds)."""

    seq: int
    kind: EventKind
    call_id: str
    sip_call_id: str | None
    time: float
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "type": self.kind, "call_id": self.call_id, "sip_call_id": self.sip_call_id,
                "time": round(self.time, 3), "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class EventsDropped:
    """Told to a subscriber before its next event: ``count`` events were dropped since the last notice
    because its queue was full."""

    count: int


@dataclass(frozen=True, slots=True)
class EventId:
    """An event's id as the stream shows it (``<boot_id>-<seq>``) or as a client gives it back; a
    bare ``<seq>`` (the ``seq`` of an event's data) means this process's sequence number."""

    boot_id: str | None
    seq: int

    @classmethod
    def parse(cls, text: str) -> EventId:
        boot, sep, seq = text.strip().rpartition("-")
        if len(text) > 64 or not is_digits(seq) or (sep and not boot):
            raise ValueError(f"event id {text!r} is not <boot id>-<sequence number> or a sequence number "
                             "(as the stream's id: lines give them)")
        return cls(boot if sep else None, int(seq))

    def __str__(self) -> str:
        return f"{self.boot_id}-{self.seq}" if self.boot_id is not None else str(self.seq)


@dataclass(frozen=True, slots=True)
class ReplayGap:
    """Told to a subscriber that asked for the events after ``after`` before its replay: some of them
    are gone. ``reason``: ``expired`` (older than the replay buffer), ``restart`` (an id of another
    process: its events are gone, this one's are replayed from its first kept event), ``unknown`` (a
    sequence number this process has not reached). ``first_seq`` is the first event the subscriber
    will get (kept or yet to come); ``missed`` how many of this process's events it will not see
    (all calls', not only those its filter wants)."""

    after: EventId
    reason: GapReason
    boot_id: str
    first_seq: int
    missed: int

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "last_event_id": str(self.after),
                "first_id": f"{self.boot_id}-{self.first_seq}", "missed": self.missed}


StreamItem = CallEvent | EventsDropped | ReplayGap


class Subscription:
    """One subscriber's bounded queue; ``call_id`` (API id or SIP Call-ID) filters to one call."""

    def __init__(self, bus: EventBus, max_queue: int, call_id: str | None) -> None:
        self._bus = bus
        self.max_queue = max_queue
        self.call_id = call_id
        self._queue: deque[CallEvent] = deque()
        self._backlog: list[CallEvent | ReplayGap] = []  # the replay, handed out before the queue
        self._wake = asyncio.Event()
        self.dropped = 0  # all dropped, for the owner
        self._unreported = 0  # dropped since the last EventsDropped handed out
        self.closed = False

    def wants(self, event: CallEvent) -> bool:
        return self.call_id is None or self.call_id in (event.call_id, event.sip_call_id)

    def offer(self, event: CallEvent) -> bool:
        """Queue ``event`` if there is room; False (and counted) if it was dropped."""
        if self.closed:
            return False
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            self._unreported += 1
            return False
        self._queue.append(event)
        self._wake.set()
        return True

    @property
    def replay_pending(self) -> int:
        """Replayed items not yet taken (a gap notice counts as one)."""
        return len(self._backlog)

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def take(self) -> list[StreamItem]:
        """Everything queued now: the replay first, a drop notice if events were dropped (no waiting)."""
        items: list[StreamItem] = list(self._backlog)
        self._backlog.clear()
        if self._unreported:
            items.append(EventsDropped(self._unreported))
            self._unreported = 0
        items.extend(self._queue)
        self._queue.clear()
        self._wake.clear()
        return items

    async def next_batch(self, timeout_s: float) -> list[StreamItem] | None:
        """The queued items, waiting up to ``timeout_s`` for one ([] on timeout, None once closed
        and drained)."""
        items = self.take()
        if items:
            return items
        if self.closed:
            return None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        except TimeoutError:
            return []
        items = self.take()
        return items if items or not self.closed else None

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """Fan-out of :class:`CallEvent` to subscribers; publishing never blocks."""

    def __init__(self, *, registry: CollectorRegistry | None = None,
                 max_queue: int = DEFAULT_QUEUE_SIZE, replay_events: int = DEFAULT_REPLAY_EVENTS,
                 replay_max_age_s: float | None = DEFAULT_REPLAY_MAX_AGE_S,
                 boot_id: str | None = None) -> None:
        if replay_events < 0:
            raise ValueError(f"replay_events must not be negative, got {replay_events}")
        if replay_max_age_s is not None and replay_max_age_s <= 0:
            raise ValueError(f"replay_max_age_s must be positive or None, got {replay_max_age_s}")
        self.max_queue = max_queue
        self.replay_events = replay_events
        self.replay_max_age_s = replay_max_age_s
        # Tells a client's Last-Event-ID from a previous process (sequence numbers restart at 1).
        self.boot_id = boot_id if boot_id is not None else secrets.token_hex(4)
        if "-" in self.boot_id or not self.boot_id:
            raise ValueError(f"boot_id must be non-empty without '-', got {self.boot_id!r}")
        self._replay: deque[CallEvent] = deque()
        self._subscribers: set[Subscription] = set()
        self._seq = 0
        self.dropped_total = 0
        self.closed = False
        self._dropped_metric: Counter | None = None
        if registry is not None:
            self._dropped_metric = Counter(
                "voicebot_api_events_dropped", "call events dropped for a slow /v1/events subscriber",
                registry=registry)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def kept(self) -> int:
        """How many events the replay buffer holds now."""
        return len(self._replay)

    @property
    def last_seq(self) -> int:
        """The sequence number of the last event published (0 before the first)."""
        return self._seq

    def event_id(self, event: CallEvent) -> EventId:
        return EventId(self.boot_id, event.seq)

    def subscribe(self, *, call_id: str | None = None, max_queue: int | None = None,
                  after: EventId | None = None) -> Subscription:
        """A new subscription; with ``after`` (a client's last event id) it first gets the kept
        events after it that its filter wants, a :class:`ReplayGap` first if some are gone."""
        sub = Subscription(self, max_queue or self.max_queue, call_id)
        if after is not None:
            sub._backlog.extend(self.replay(after, call_id=call_id))
            if sub._backlog:
                sub._wake.set()
        if self.closed:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub

    def replay(self, after: EventId, *, call_id: str | None = None) -> list[CallEvent | ReplayGap]:
        """What a client whose last event was ``after`` missed (pure: no waiting, no side effects)."""
        first = self._replay[0].seq if self._replay else self._seq + 1  # the first it can still get
        reason: GapReason | None = None
        if after.boot_id is not None and after.boot_id != self.boot_id:
            reason, start = "restart", 0
        elif after.seq > self._seq:
            reason, start = "unknown", 0
        else:
            start = after.seq
            if start + 1 < first:
                reason = "expired"
        items: list[CallEvent | ReplayGap] = []
        if reason is not None:
            items.append(ReplayGap(after, reason, self.boot_id, first, first - start - 1))
        wanted = (call_id is None or call_id in (e.call_id, e.sip_call_id) for e in self._replay)
        items.extend(e for e, want in zip(self._replay, wanted, strict=True) if want and e.seq > start)
        return items

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.close()

    def publish(self, kind: EventKind, call_id: str, sip_call_id: str | None, time: float,
                data: Mapping[str, Any] | None = None) -> CallEvent:
        self._seq += 1
        event = CallEvent(self._seq, kind, call_id, sip_call_id, time, dict(data or {}))
        if self.replay_events:
            self._replay.append(event)
            while len(self._replay) > self.replay_events:
                self._replay.popleft()
            if self.replay_max_age_s is not None:
                oldest_time = time - self.replay_max_age_s
                while self._replay[0].time < oldest_time:  # the newest one always stays
                    self._replay.popleft()
        for sub in self._subscribers:
            if sub.wants(event) and not sub.offer(event):
                self.dropped_total += 1
                if self._dropped_metric is not None:
                    self._dropped_metric.inc()
        return event

    def close(self) -> None:
        """End every subscription (their streams finish after what is queued)."""
        self.closed = True
        for sub in list(self._subscribers):
            sub.close()
        self._subscribers.clear()


__all__ = ["DEFAULT_REPLAY_EVENTS", "DEFAULT_REPLAY_MAX_AGE_S", "EVENT_KINDS", "CallEvent", "EventBus",
           "EventId", "EventKind", "EventsDropped", "GapReason", "ReplayGap", "StreamItem", "Subscription"]
