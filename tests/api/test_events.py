"""The call-event bus and the call registry, in memory: fan-out, filters, a slow subscriber's queue
that drops and counts without ever blocking the publisher, close; entries that follow a call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from voicebot.api.events import EVENT_KINDS, CallEvent, EventBus, EventId, EventsDropped, ReplayGap
from voicebot.api.registry import RECENT_CALLS, CallRegistry
from voicebot.call.outcome import CallOutcome

pytestmark = pytest.mark.unit


class FakeWallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_every_subscriber_gets_every_event_in_order_with_a_sequence_number() -> None:
    bus = EventBus()
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish("started", "c-1", None, 1.0, {"to": "sip:x@y"})
    bus.publish("answered", "c-1", "sip-1", 2.0)
    for sub in (a, b):
        items = sub.take()
        seen = [(e.seq, e.kind) for e in items if isinstance(e, CallEvent)]
        assert seen == [(1, "started"), (2, "answered")]
    assert a.take() == []
    event = bus.publish("ended", "c-1", "sip-1", 3.5, {"cause": "bye"})
    assert event.to_json() == {"seq": 3, "type": "ended", "call_id": "c-1", "sip_call_id": "sip-1",
                               "time": 3.5, "data": {"cause": "bye"}}


def test_a_filter_by_api_id_or_sip_call_id() -> None:
    bus = EventBus()
    by_id, by_sip, other = (bus.subscribe(call_id="c-1"), bus.subscribe(call_id="sip-1"),
                            bus.subscribe(call_id="c-2"))
    bus.publish("started", "c-1", None, 1.0)
    bus.publish("answered", "c-1", "sip-1", 2.0)
    assert len(by_id.take()) == 2
    assert [e.kind for e in by_sip.take() if isinstance(e, CallEvent)] == ["answered"]
    assert other.take() == []


def test_a_full_queue_drops_new_events_counts_them_and_tells_the_subscriber() -> None:
    metrics = CollectorRegistry()
    bus = EventBus(registry=metrics, max_queue=3)
    slow, fast = bus.subscribe(), bus.subscribe(max_queue=100)
    for i in range(10):
        bus.publish("dtmf", "c-1", None, float(i), {"digit": str(i)})  # never blocks, never raises
    assert slow.dropped == 7 and bus.dropped_total == 7
    assert metrics.get_sample_value("voicebot_api_events_dropped_total") == 7.0
    items = slow.take()
    assert items[0] == EventsDropped(7)
    assert [e.data["digit"] for e in items[1:] if isinstance(e, CallEvent)] == ["0", "1", "2"]
    assert len(fast.take()) == 10  # one slow subscriber costs the others nothing
    bus.publish("dtmf", "c-1", None, 11.0, {"digit": "#"})
    assert [type(e) for e in slow.take()] == [CallEvent]  # the drop was reported once


async def test_next_batch_waits_for_an_event_and_ends_on_close() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    assert await sub.next_batch(0.01) == []  # nothing: a heartbeat's turn
    waiter = asyncio.create_task(sub.next_batch(5))
    await asyncio.sleep(0)
    bus.publish("started", "c-1", None, 1.0)
    batch = await asyncio.wait_for(waiter, 1)
    assert batch is not None and [e.kind for e in batch if isinstance(e, CallEvent)] == ["started"]
    bus.publish("ended", "c-1", None, 2.0)
    bus.close()
    last = await sub.next_batch(5)
    assert last is not None and [e.kind for e in last if isinstance(e, CallEvent)] == ["ended"]
    assert await sub.next_batch(5) is None
    assert bus.subscribe().closed  # a subscriber after close gets a closed subscription


def test_unsubscribe_by_leaving_the_with_block() -> None:
    bus = EventBus()
    with bus.subscribe() as sub:
        assert bus.subscribers == 1
    assert bus.subscribers == 0 and sub.closed
    bus.publish("started", "c-1", None, 1.0)
    assert sub.take() == []


class Handle:
    def __init__(self) -> None:
        self.hangups: list[str] = []

    async def hangup(self, reason: str) -> None:
        self.hangups.append(reason)

    async def transfer(self, uri: str) -> None:
        raise AssertionError("not used")


async def test_an_entry_follows_its_call_and_ends_once() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    registry = CallRegistry(bus, wall_clock=FakeWallClock())
    entry = registry.add("outbound", from_uri="sip:bot@127.0.0.1", to_uri="sip:x@127.0.0.1",
                         dialplan="reminder")
    assert entry.id.startswith("c-") and entry.status == "dialing"
    assert registry.get(entry.id) is entry and registry.active() == [entry]
    handle = Handle()
    outcome = CallOutcome("sip-1", "outbound", True, "bye: api", "robot")
    with entry.running("sip-1", handle, lambda: outcome):
        assert registry.get("sip-1") is entry
        entry.publish("answered")
        entry.publish("state", {"state": "ask"})
        entry.publish("utterance", {"text": "hello", "start_ms": 100, "end_ms": 900})
        entry.publish("dtmf", {"digit": "1"})
        entry.publish("dtmf", {"digit": "#"})
        await entry.hangup("api")
        assert handle.hangups == ["api"]
    assert entry.status == "ended" and registry.active() == [] and registry.get("sip-1") is entry
    entry.publish("utterance", {"text": "late"})  # after the end: not news
    entry.finish(cause="again")  # ends once
    body = entry.to_json()
    assert body["status"] == "ended" and body["dialog_state"] == "ask" and body["dtmf"] == "1#"
    assert [u["text"] for u in body["utterances"]] == ["hello"]
    assert body["outcome"] == {"cause": "bye: api", "side": "robot", "error": None, "record": {}}
    assert body["created_at"] < body["answered_at"] < body["ended_at"]
    kinds = [e.kind for e in sub.take() if isinstance(e, CallEvent)]
    assert kinds == ["started", "answered", "state", "utterance", "dtmf", "dtmf", "ended"]
    assert set(kinds) <= set(EVENT_KINDS)
    with pytest.raises(ValueError, match="not a call event kind: 'bogus'"):
        entry.publish("bogus")


async def test_hanging_up_a_call_still_dialing_cancels_its_dial() -> None:
    registry = CallRegistry(EventBus())
    entry = registry.add("outbound", from_uri="a", to_uri="b", dialplan="p")

    async def dialing() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            entry.finish(cause="cancelled")
            raise

    task = registry.dial(entry, dialing())
    await asyncio.sleep(0)
    await entry.hangup("api: enough")
    with pytest.raises(asyncio.CancelledError):
        await task
    assert entry.status == "ended" and entry.cause == "cancelled: api: enough"


async def test_only_the_recent_ended_calls_are_kept() -> None:
    registry = CallRegistry(EventBus(), recent=3)
    entries = [registry.add("inbound", from_uri="a", to_uri="b", dialplan="p") for _ in range(5)]
    for i, entry in enumerate(entries):
        entry.attach(f"sip-{i}")
        entry.finish(cause="bye", side="caller")
    assert [registry.get(e.id) is not None for e in entries] == [False, False, True, True, True]
    assert registry.get("sip-0") is None and registry.get("sip-4") is entries[4]
    assert RECENT_CALLS == 256


async def test_aclose_cancels_dials_and_ends_the_streams() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    registry = CallRegistry(bus)
    entry = registry.add("outbound", from_uri="a", to_uri="b", dialplan="p")
    task = registry.dial(entry, asyncio.sleep(30))
    await registry.aclose()
    assert task.cancelled() and sub.closed


# ---- replay (Last-Event-ID) ------------------------------------------------------------------


def seqs(items: list[Any]) -> list[int]:
    return [e.seq for e in items if isinstance(e, CallEvent)]


def test_event_ids_parse_with_or_without_the_boot_id_and_print_back() -> None:
    assert EventId.parse("1a2b3c4d-42") == EventId("1a2b3c4d", 42)
    assert EventId.parse(" 42 ") == EventId(None, 42)
    assert str(EventId("1a2b3c4d", 42)) == "1a2b3c4d-42" and str(EventId(None, 7)) == "7"
    for bad in ("x", "-5", "ab-", "ab-4x", "4.5", "ab-²", "9" * 65):
        with pytest.raises(ValueError, match=f"event id {bad!r} is not <boot id>-<sequence number>"):
            EventId.parse(bad)


def test_a_subscriber_after_an_id_gets_everything_after_it_then_live_events() -> None:
    bus = EventBus(boot_id="b0")
    for i in range(5):
        bus.publish("dtmf", "c-1", None, float(i), {"digit": str(i)})
    sub = bus.subscribe(after=EventId("b0", 2))
    assert sub.replay_pending == 3
    bus.publish("ended", "c-1", None, 9.0)
    assert seqs(sub.take()) == [3, 4, 5, 6]  # the replay first, then what came live, nothing twice
    assert seqs(bus.subscribe(after=EventId(None, 4)).take()) == [5, 6]  # a bare seq: this process's
    assert bus.subscribe(after=EventId("b0", 6)).take() == []  # up to date: nothing, no gap
    assert bus.last_seq == 6


def test_replay_honours_the_call_filter() -> None:
    bus = EventBus(boot_id="b0")
    bus.publish("started", "c-1", None, 1.0)
    bus.publish("started", "c-2", None, 2.0)
    bus.publish("answered", "c-1", "sip-1", 3.0)
    bus.publish("answered", "c-2", "sip-2", 4.0)
    assert seqs(bus.subscribe(call_id="c-2", after=EventId("b0", 0)).take()) == [2, 4]
    assert seqs(bus.subscribe(call_id="sip-1", after=EventId("b0", 0)).take()) == [3]


def test_an_id_older_than_the_buffer_is_reported_as_a_gap_before_the_replay() -> None:
    bus = EventBus(boot_id="b0", replay_events=3)
    for i in range(10):
        bus.publish("dtmf", "c-1", None, float(i))
    items = bus.subscribe(after=EventId("b0", 4)).take()
    assert items[0] == ReplayGap(EventId("b0", 4), "expired", "b0", first_seq=8, missed=3)
    assert items[0].to_json() == {"reason": "expired", "last_event_id": "b0-4", "first_id": "b0-8",
                                  "missed": 3}
    assert seqs(items[1:]) == [8, 9, 10]
    # the id just before the buffer's first event: nothing is missing
    assert seqs(bus.subscribe(after=EventId("b0", 7)).take()) == [8, 9, 10]


def test_the_buffer_keeps_only_events_young_enough_by_their_own_time() -> None:
    bus = EventBus(boot_id="b0", replay_events=100, replay_max_age_s=60.0)
    for t in (0.0, 30.0, 61.0, 100.0):
        bus.publish("dtmf", "c-1", None, t)
    # at t=100 the window is [40, 100]: events 1 (t=0) and 2 (t=30) are gone
    items = bus.subscribe(after=EventId("b0", 0)).take()
    assert isinstance(items[0], ReplayGap) and (items[0].first_seq, items[0].missed) == (3, 2)
    assert seqs(items) == [3, 4]
    bus.publish("dtmf", "c-1", None, 500.0)  # the newest event always stays
    assert seqs(bus.subscribe(after=EventId("b0", 4)).take()) == [5]


def test_an_id_of_another_process_or_from_the_future_is_a_gap_and_replays_all_kept() -> None:
    bus = EventBus(boot_id="b1", replay_events=2)
    for i in range(3):
        bus.publish("dtmf", "c-1", None, float(i))
    items = bus.subscribe(after=EventId("b0", 1)).take()  # b0's event 1 is not b1's event 1
    assert items[0] == ReplayGap(EventId("b0", 1), "restart", "b1", first_seq=2, missed=1)
    assert seqs(items) == [2, 3]
    items = bus.subscribe(after=EventId(None, 99)).take()
    assert items[0] == ReplayGap(EventId(None, 99), "unknown", "b1", first_seq=2, missed=1)
    assert seqs(items) == [2, 3]


def test_without_a_buffer_a_reconnect_learns_what_it_missed() -> None:
    bus = EventBus(boot_id="b0", replay_events=0)
    for i in range(4):
        bus.publish("dtmf", "c-1", None, float(i))
    assert bus.subscribe(after=EventId("b0", 1)).take() == [
        ReplayGap(EventId("b0", 1), "expired", "b0", first_seq=5, missed=3)]
    assert bus.subscribe(after=EventId("b0", 4)).take() == []


def test_the_replay_is_not_limited_by_the_live_queue_and_publishing_still_never_blocks() -> None:
    bus = EventBus(boot_id="b0", max_queue=2, replay_events=50)
    for i in range(20):
        bus.publish("dtmf", "c-1", None, float(i))
    sub = bus.subscribe(after=EventId("b0", 0))
    for i in range(5):  # the client has not read yet: the live queue fills and drops, the replay stays
        bus.publish("dtmf", "c-1", None, 20.0 + i)
    items = sub.take()
    assert seqs(items[:20]) == list(range(1, 21))
    assert items[20] == EventsDropped(3) and seqs(items[21:]) == [21, 22]
    assert bus.kept == 25  # bounded by replay_events


def test_the_buffer_is_bounded_by_count_and_settings_are_checked() -> None:
    bus = EventBus(boot_id="b0", replay_events=10, replay_max_age_s=None)
    for i in range(1000):
        bus.publish("dtmf", "c-1", None, float(i))
    assert seqs(bus.subscribe(after=EventId("b0", 990)).take()) == list(range(991, 1001))
    with pytest.raises(ValueError, match="replay_events must not be negative, got -1"):
        EventBus(replay_events=-1)
    with pytest.raises(ValueError, match="replay_max_age_s must be positive or None, got 0"):
        EventBus(replay_max_age_s=0)
    with pytest.raises(ValueError, match="boot_id must be non-empty without '-', got 'a-b'"):
        EventBus(boot_id="a-b")
    assert EventBus().boot_id != EventBus().boot_id  # random per process (per bus)


async def test_a_replay_wakes_a_waiting_reader_at_once() -> None:
    bus = EventBus(boot_id="b0")
    bus.publish("started", "c-1", None, 1.0)
    sub = bus.subscribe(after=EventId("b0", 0))
    batch = await sub.next_batch(5)
    assert batch is not None and seqs(batch) == [1]
