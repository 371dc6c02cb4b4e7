"""The call-event bus: what happens on calls (started, answered, utterance, state, dtmf, transfer,
ended), fanned out to any number of subscribers (the ``/v1/events`` stream).

Theory of operation. A call publishes with :meth:`EventBus.publish`, which never blocks and never
awaits: each :class:`Subscription` has a bounded queue; an event that finds it full is dropped for
that subscriber and counted (on the subscription, which the stream reports to its client as a
``dropped`` notice before the next event, and in ``voicebot_api_events_dropped_total``). A slow or
stuck HTTP client thus loses events, never delays a call. Events carry a bus-wide sequence number,
so a client can see exactly where it has a gap. :meth:`EventBus.close` ends every subscription
(shutdown: an open stream must not hold the HTTP server open).
"""

from __future__ import annotations

import asyncio
import typing
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter

EventKind = Literal["started", "answered", "utterance", "state", "dtmf", "transfer", "ended"]
EVENT_KINDS: tuple[EventKind, ...] = typing.get_args(EventKind)

DEFAULT_QUEUE_SIZE = 256


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


class Subscription:
    """One subscriber's bounded queue; ``call_id`` (API id or SIP Call-ID) filters to one call."""

    def __init__(self, bus: EventBus, max_queue: int, call_id: str | None) -> None:
        self._bus = bus
        self.max_queue = max_queue
        self.call_id = call_id
        self._queue: deque[CallEvent] = deque()
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

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    def take(self) -> list[CallEvent | EventsDropped]:
        """Everything queued now, a drop notice first if events were dropped (no waiting)."""
        items: list[CallEvent | EventsDropped] = []
        if self._unreported:
            items.append(EventsDropped(self._unreported))
            self._unreported = 0
        items.extend(self._queue)
        self._queue.clear()
        self._wake.clear()
        return items

    async def next_batch(self, timeout_s: float) -> list[CallEvent | EventsDropped] | None:
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
                 max_queue: int = DEFAULT_QUEUE_SIZE) -> None:
        self.max_queue = max_queue
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

    def subscribe(self, *, call_id: str | None = None, max_queue: int | None = None) -> Subscription:
        sub = Subscription(self, max_queue or self.max_queue, call_id)
        if self.closed:
            sub.close()
        else:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
        sub.close()

    def publish(self, kind: EventKind, call_id: str, sip_call_id: str | None, time: float,
                data: Mapping[str, Any] | None = None) -> CallEvent:
        self._seq += 1
        event = CallEvent(self._seq, kind, call_id, sip_call_id, time, dict(data or {}))
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


__all__ = ["EVENT_KINDS", "CallEvent", "EventBus", "EventKind", "EventsDropped", "Subscription"]
