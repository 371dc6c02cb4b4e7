"""Every call this instance runs, or ran recently, keyed by the API's call id.

Theory of operation. A call gets a :class:`CallEntry` when it starts: an inbound INVITE handed to
the application, or an outbound call before its INVITE goes out (so ``POST /v1/calls`` can answer
202 with an id at once, before the SIP Call-ID exists). The entry's id is the API's own
(``c-`` + 16 hex digits); the SIP Call-ID is added when the leg exists, and either finds the call.
The call's pipeline publishes through :meth:`CallEntry.publish`, which keeps the entry's view
(status, dialog state, utterances, digits) current and hands the event to the :class:`EventBus`.
When the call ends the entry keeps its outcome and moves to a bounded list of recent calls.

``status``: ``dialing`` (our INVITE is out) -> ``answered`` -> ``ended``; an inbound call starts
``ringing``. Hang-up and transfer go to the call's :class:`CallHandle` (its pipeline) once it runs;
a call still dialing is hung up by cancelling its dial task (a CANCEL goes out).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Literal, Protocol

import structlog

from voicebot.api.events import EVENT_KINDS, EventBus
from voicebot.call.outcome import CallOutcome

log = structlog.get_logger(logger_name=__name__)

CallStatus = Literal["dialing", "ringing", "answered", "ended"]
WallClock = Callable[[], float]
RECENT_CALLS = 256  # ended calls kept for GET /v1/calls/{id}


class CallHandle(Protocol):
    """What the API may ask of a running call (:class:`~voicebot.call.pipeline.CallPipeline`)."""

    async def hangup(self, reason: str) -> None: ...

    async def transfer(self, uri: str) -> None: ...


class CallEntry:
    """One call as the API shows it."""

    def __init__(self, registry: CallRegistry, call_id: str, direction: Literal["inbound", "outbound"], *,
                 from_uri: str, to_uri: str, dialplan: str) -> None:
        self._registry = registry
        self.id = call_id
        self.direction = direction
        self.from_uri = from_uri
        self.to_uri = to_uri
        self.dialplan = dialplan
        self.status: CallStatus = "dialing" if direction == "outbound" else "ringing"
        self.sip_call_id: str | None = None
        self.created_at = registry.wall_clock()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.dialog_state: str | None = None
        self.states: list[str] = []
        self.utterances: list[dict[str, Any]] = []
        self.dtmf = ""
        self.cause: str | None = None
        self.side: str | None = None
        self.error: str | None = None
        self.record: dict[str, str] = {}
        self.transfer: dict[str, Any] | None = None
        self.handle: CallHandle | None = None
        self._dial_task: asyncio.Task[Any] | None = None
        self._cancel_reason: str | None = None  # why the API cancelled the call while it was dialing
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def ended(self) -> bool:
        return self.status == "ended"

    def publish(self, kind: str, data: Mapping[str, Any] | None = None) -> None:
        """Record ``kind`` in this entry's view and publish it (never blocks)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"not a call event kind: {kind!r}")
        if self.ended and kind != "ended":
            return  # a pipeline's late report after the end (e.g. its final flush) is not news
        now = self._registry.wall_clock()
        data = dict(data or {})
        if kind == "answered":
            self.status, self.answered_at = "answered", now
        elif kind == "state":
            self.dialog_state = str(data.get("state"))
            self.states.append(self.dialog_state)
        elif kind == "utterance":
            self.utterances.append({**data, "time": round(now, 3)})
        elif kind == "dtmf":
            self.dtmf += str(data.get("digit", ""))
        elif kind == "transfer":
            self.transfer = data
        self._registry.bus.publish(kind, self.id, self.sip_call_id, now, data)

    @contextlib.contextmanager
    def running(self, sip_call_id: str, handle: CallHandle,
                outcome: Callable[[], CallOutcome]) -> Iterator[CallEntry]:
        """While the call's pipeline runs: hang-up and transfer go to ``handle``; at the end the
        entry takes ``outcome()`` (set by the pipeline even when it is cancelled)."""
        self.attach(sip_call_id)
        self.handle = handle
        try:
            yield self
        finally:
            self.handle = None
            self.finish(outcome())

    def attach(self, sip_call_id: str) -> None:
        self.sip_call_id = sip_call_id
        self._registry._by_sip[sip_call_id] = self

    def finish(self, outcome: CallOutcome | None = None, *, cause: str | None = None,
               side: str = "robot") -> None:
        """The call is over: keep how it ended, publish ``ended``, move it to the recent calls."""
        if self.ended:
            return
        if outcome is not None:
            if outcome.call_id and self.sip_call_id is None:
                self.attach(outcome.call_id)
            self.cause, self.side, self.error = outcome.cause, outcome.side, outcome.error
            self.record = dict(outcome.dialog.record) if outcome.dialog is not None else {}
        else:
            self.cause, self.side = cause or "ended", side
            if self.cause == "cancelled" and self._cancel_reason:
                self.cause = f"cancelled: {self._cancel_reason}"
        self.ended_at = self._registry.wall_clock()
        self.status = "ended"
        for task in self._tasks:
            task.cancel()
        self.publish("ended", {"cause": self.cause, "side": self.side, "error": self.error,
                               "answered": self.answered_at is not None, "record": self.record})
        self._registry._ended(self)

    async def hangup(self, reason: str) -> None:
        """End the call: BYE through its pipeline, or (still dialing) cancel the INVITE."""
        if self.handle is not None:
            await self.handle.hangup(reason)
        elif self._dial_task is not None and not self._dial_task.done():
            self._cancel_reason = reason
            self._dial_task.cancel()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A task that belongs to this call (an API transfer); cancelled when the call ends."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "sip_call_id": self.sip_call_id, "direction": self.direction,
            "status": self.status, "dialplan": self.dialplan, "from": self.from_uri, "to": self.to_uri,
            "created_at": _time(self.created_at), "answered_at": _time(self.answered_at),
            "ended_at": _time(self.ended_at), "dialog_state": self.dialog_state, "states": list(self.states),
            "utterances": list(self.utterances), "dtmf": self.dtmf, "transfer": self.transfer,
            "outcome": None if not self.ended else {
                "cause": self.cause, "side": self.side, "error": self.error, "record": self.record},
        }


def _time(ts: float | None) -> float | None:
    return None if ts is None else round(ts, 3)


class CallRegistry:
    """The calls of this instance: active ones, and the last :data:`RECENT_CALLS` ended ones."""

    def __init__(self, bus: EventBus, *, wall_clock: WallClock = time.time,
                 recent: int = RECENT_CALLS) -> None:
        self.bus = bus
        self.wall_clock = wall_clock
        self._recent_max = recent
        self._active: dict[str, CallEntry] = {}
        self._recent: OrderedDict[str, CallEntry] = OrderedDict()
        self._by_sip: dict[str, CallEntry] = {}
        self._dials: set[asyncio.Task[Any]] = set()

    def add(self, direction: Literal["inbound", "outbound"], *, from_uri: str, to_uri: str,
            dialplan: str, sip_call_id: str | None = None) -> CallEntry:
        """A new call: its entry, ``started`` published (an inbound call's SIP Call-ID is known)."""
        entry = CallEntry(self, f"c-{secrets.token_hex(8)}", direction, from_uri=from_uri, to_uri=to_uri,
                          dialplan=dialplan)
        self._active[entry.id] = entry
        if sip_call_id is not None:
            entry.attach(sip_call_id)
        entry.publish("started", {"direction": direction, "from": from_uri, "to": to_uri,
                                  "dialplan": dialplan})
        return entry

    def dial(self, entry: CallEntry, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run an outbound call (``App.place_call``) in the background; owned here until it ends."""
        task = asyncio.get_running_loop().create_task(coro, name=f"api-dial-{entry.id}")
        entry._dial_task = task
        self._dials.add(task)
        task.add_done_callback(self._dial_done)
        return task

    def _dial_done(self, task: asyncio.Task[Any]) -> None:
        self._dials.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("api.call.dial_failed", error=str(task.exception()))

    def get(self, call_id: str) -> CallEntry | None:
        """The call with this API id or SIP Call-ID, active or recently ended."""
        return self._active.get(call_id) or self._recent.get(call_id) or self._by_sip.get(call_id)

    def active(self) -> list[CallEntry]:
        return sorted(self._active.values(), key=lambda e: e.created_at)

    @property
    def active_count(self) -> int:
        return len(self._active)

    def _ended(self, entry: CallEntry) -> None:
        self._active.pop(entry.id, None)
        self._recent[entry.id] = entry
        while len(self._recent) > self._recent_max:
            _, old = self._recent.popitem(last=False)
            if old.sip_call_id is not None and self._by_sip.get(old.sip_call_id) is old:
                del self._by_sip[old.sip_call_id]

    async def aclose(self) -> None:
        """Cancel calls still dialing, then end the event streams."""
        for task in list(self._dials):
            task.cancel()
        if self._dials:
            await asyncio.wait(list(self._dials), timeout=5.0)
        self.bus.close()


__all__ = ["RECENT_CALLS", "CallEntry", "CallHandle", "CallRegistry", "CallStatus"]
