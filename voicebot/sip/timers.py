"""A lazy timer heap: the user agent's next deadline in O(log n), not a scan of every transaction.

Theory of operation. Anything with a ``deadline() -> float | None`` method (transactions, calls,
registrations) is :meth:`TimerHeap.schedule`-d whenever its deadline may have changed; each call
pushes one ``(deadline, seq, item)`` entry. Entries are never removed in place: an entry whose
deadline no longer equals the item's current ``deadline()`` is stale and is dropped when it reaches
the top (:meth:`next_deadline`, :meth:`pop_due`). So a datagram costs a push (O(log n)) and the
adapter's next-timer question costs O(1) amortised, where the old ``min()`` over every live
transaction cost 0.57 / 2.29 / 4.86 ms per datagram at 1k / 5k / 10k transactions (issue 9 item 3).
When stale entries outnumber live ones four to one the heap is rebuilt from the live items.
"""

from __future__ import annotations

import heapq
from typing import Generic, Protocol, TypeVar


class Timed(Protocol):
    def deadline(self) -> float | None: ...


T = TypeVar("T", bound=Timed)


class TimerHeap(Generic[T]):
    """Deadlines of many timed items; see the module docstring."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0
        self._live: dict[int, T] = {}  # id(item) -> item, for rebuilds

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, item: T) -> None:
        """Record ``item``'s current deadline (call after anything that may have changed it)."""
        when = item.deadline()
        if when is None:
            self._live.pop(id(item), None)
            return
        self._live[id(item)] = item
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, item))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._live):
            self._rebuild()

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, item = heap[0]
            if item.deadline() == when:
                return when
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[T]:
        """Every item whose current deadline is due, once each, earliest first."""
        due: list[T] = []
        seen: set[int] = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, item = heapq.heappop(heap)
            if item.deadline() != when or id(item) in seen:
                continue
            seen.add(id(item))
            self._live.pop(id(item), None)
            due.append(item)
        return due

    def _rebuild(self) -> None:
        entries: list[tuple[float, int, T]] = []
        for item in list(self._live.values()):
            when = item.deadline()
            if when is None:
                self._live.pop(id(item), None)
                continue
            self._seq += 1
            entries.append((when, self._seq, item))
        heapq.heapify(entries)
        self._heap = entries
