"""The lazy timer heap against a brute-force scan (hypothesis), and its stale-entry handling."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.timers import TimerHeap

pytestmark = pytest.mark.unit


@dataclass(eq=False)
class Item:
    at: float | None = None

    def deadline(self) -> float | None:
        return self.at


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 19), st.one_of(st.none(), st.integers(0, 50))), max_size=300))
def test_next_deadline_and_pop_due_match_a_scan(ops: list[tuple[int, int | None]]) -> None:
    items = [Item() for _ in range(20)]
    heap: TimerHeap[Item] = TimerHeap()
    now = 0.0
    for index, value in ops:
        items[index].at = None if value is None else now + value
        heap.schedule(items[index])
        live = [i.at for i in items if i.at is not None]
        assert heap.next_deadline() == (min(live) if live else None)
        if index % 5 == 0:  # sometimes fire what is due, as the user agent does
            now += 3
            due = heap.pop_due(now)
            expected = {id(i) for i in items if i.at is not None and i.at <= now}
            assert {id(i) for i in due} == expected and len(due) == len(expected)
            for item in due:
                item.at = None  # handled; a real item would reschedule itself


def test_stale_entries_are_compacted() -> None:
    heap: TimerHeap[Item] = TimerHeap()
    item = Item()
    for n in range(10_000):  # one transaction retransmitting: each change pushes an entry
        item.at = 1_000_000.0 - n
        heap.schedule(item)
    assert len(heap) < 100
    assert heap.next_deadline() == 1_000_000.0 - 9_999
