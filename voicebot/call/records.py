"""A call's record lane: the call record's writes, in order, off the answer path.

The pipeline queues writes (:meth:`RecordLane.write`) and never awaits them: SQLite commits never
delay a prompt. :meth:`RecordLane.run` performs them in order until :meth:`RecordLane.close`. A
failed write is logged and counted; the call goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

import structlog

from voicebot.records import CallRecordStore, DuplicateCall, RecordsError

log = structlog.get_logger(logger_name=__name__)

# The dialog's own bookkeeping variables: the record has them in its own columns already.
BUILTIN_VARIABLES = frozenset({"call_id", "caller", "callee", "dialplan", "state"})

# One call-record write: a CallRecordStore method, called as method(record_id, *args, **kwargs).
RecordWrite = tuple[Callable[..., Awaitable[None]], tuple[object, ...], dict[str, object]]


class RecordLane:
    """One call's ordered writes to ``store`` under ``record_id`` (the Call-ID unless it was taken)."""

    def __init__(self, store: CallRecordStore, call_id: str) -> None:
        self.store = store
        self.call_id = call_id
        self.record_id = call_id  # the call record's key (see _start_record)
        self.failures = 0
        self._queue: asyncio.Queue[RecordWrite | None] = asyncio.Queue()
        self._states_written = 0
        self._variables_written: dict[str, str] = {}

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def write(self, method: Callable[..., Awaitable[None]], *args: object, **kwargs: object) -> None:
        """Queue a record write; the lane calls ``method(record_id, *args, **kwargs)`` in order."""
        self._queue.put_nowait((method, args, kwargs))

    def close(self) -> None:
        """No more writes: :meth:`run` returns once the queued ones are done."""
        self._queue.put_nowait(None)

    async def run(self) -> None:
        while (write := await self._queue.get()) is not None:
            method, args, kwargs = write
            try:
                if method == self.store.call_started:
                    await self._start_record(method, args, kwargs)
                else:
                    await method(self.record_id, *args, **kwargs)
            except RecordsError as exc:
                self.failures += 1
                log.error("call.record.failed", error=exc.message, failures=self.failures)

    async def _start_record(self, method: Callable[..., Awaitable[None]], args: tuple[object, ...],
                            kwargs: dict[str, object]) -> None:
        """Start the record under the Call-ID; if a record with that Call-ID exists already (a peer
        that reuses Call-IDs across runs, e.g. sipp's ``<n>-<pid>@host``), under ``<Call-ID>;<n>``
        so the older call's record is never written into."""
        for attempt in range(1, 100):
            record_id = self.call_id if attempt == 1 else f"{self.call_id};{attempt}"
            try:
                await method(record_id, *args, **kwargs)
            except DuplicateCall:
                continue
            if record_id != self.call_id:
                log.warning("call.record.duplicate_call_id", record_id=record_id)
            self.record_id = record_id
            return
        raise RecordsError(f"99 records with Call-ID {self.call_id} exist already; not recording this call")

    def sync_dialog(self, states: Sequence[str], variables: Mapping[str, str]) -> None:
        """After each dialog event: new states entered and changed variables go to the record, so
        the record follows the call as it progresses (a crash loses at most the event in flight)."""
        for state in states[self._states_written:]:
            self.write(self.store.state_entered, state)
        self._states_written = len(states)
        for name, value in variables.items():
            if name in BUILTIN_VARIABLES:
                continue
            if self._variables_written.get(name) != value and (value or name in self._variables_written):
                self._variables_written[name] = value
                self.write(self.store.variable_set, name, value)


__all__ = ["BUILTIN_VARIABLES", "RecordLane", "RecordWrite"]
