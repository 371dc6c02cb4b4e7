"""RFC 4733 telephone-event payloads, the once-per-event receiver and the sender's packet plan."""

from __future__ import annotations

import pytest

from voicebot.rtp.dtmf import (
    DtmfEnded,
    DtmfEventReceived,
    DtmfReceiver,
    TelephoneEvent,
    dtmf_payloads,
    event_code,
)
from voicebot.rtp.errors import RtpPacketError, RtpUsageError

pytestmark = pytest.mark.unit


def ev(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return TelephoneEvent(event, end, volume, duration).serialize()


def test_golden_payloads() -> None:
    # From sipp's dtmf_2833_1.pcap: digit 1, volume 10, duration 0; and its end packet, duration 2240.
    assert TelephoneEvent.parse(bytes.fromhex("010a0000")) == TelephoneEvent(1, False, 10, 0)
    assert TelephoneEvent.parse(bytes.fromhex("018a08c0")) == TelephoneEvent(1, True, 10, 2240)
    assert TelephoneEvent(11, True, 10, 2240).serialize() == bytes.fromhex("0b8a08c0")


def test_short_payload_error_is_exact() -> None:
    with pytest.raises(RtpPacketError) as info:
        TelephoneEvent.parse(b"\x01\x0a")
    assert str(info.value) == "telephone-event payload must be at least 4 bytes, got 2"


def test_one_report_per_event_with_end_retransmissions_ignored() -> None:
    rx = DtmfReceiver()
    out = []
    out += rx.receive(1000, True, ev(5, 160))
    out += rx.receive(1000, False, ev(5, 320))
    out += rx.receive(1000, False, ev(5, 320))  # duplicate update
    out += rx.receive(1000, False, ev(5, 800, end=True))
    out += rx.receive(1000, False, ev(5, 800, end=True))
    out += rx.receive(1000, False, ev(5, 800, end=True))
    assert out == [DtmfEventReceived("5", 1000), DtmfEnded("5", 100, 1000)]


def test_same_digit_twice_is_two_events_by_timestamp() -> None:
    rx = DtmfReceiver()
    out = []
    for ts in (1000, 3000):
        out += rx.receive(ts, True, ev(3, 160))
        out += rx.receive(ts, False, ev(3, 480, end=True))
        out += rx.receive(ts, False, ev(3, 480, end=True))
    assert out == [DtmfEventReceived("3", 1000), DtmfEnded("3", 60, 1000),
                   DtmfEventReceived("3", 3000), DtmfEnded("3", 60, 3000)]


def test_lost_start_packet_still_reports_once() -> None:
    rx = DtmfReceiver()
    out = rx.receive(500, False, ev(0xB, 320)) + rx.receive(500, False, ev(0xB, 640, end=True))
    assert out == [DtmfEventReceived("#", 500), DtmfEnded("#", 80, 500)]


def test_lost_end_packets_closed_by_next_event() -> None:
    rx = DtmfReceiver()
    out = rx.receive(100, True, ev(1, 160)) + rx.receive(100, False, ev(1, 480))
    out += rx.receive(2000, True, ev(2, 160))
    assert out == [DtmfEventReceived("1", 100), DtmfEnded("1", 60, 100), DtmfEventReceived("2", 2000)]


def test_late_copy_of_previous_event_ignored() -> None:
    rx = DtmfReceiver()
    out = rx.receive(100, True, ev(1, 800, end=True)) + rx.receive(900, True, ev(2, 160))
    out += rx.receive(100, False, ev(1, 800, end=True))
    assert out == [DtmfEventReceived("1", 100), DtmfEnded("1", 100, 100), DtmfEventReceived("2", 900)]


def test_long_event_continuation_is_not_a_new_digit() -> None:
    rx = DtmfReceiver()
    out = rx.receive(0, True, ev(9, 65535)) + rx.receive(65535, False, ev(9, 1600, end=True))
    assert out == [DtmfEventReceived("9", 0), DtmfEnded("9", 200, 65535)]


def test_flash_and_unknown_events_are_harmless() -> None:
    rx = DtmfReceiver()
    out = rx.receive(10, True, ev(16, 160)) + rx.receive(10, False, ev(16, 800, end=True))
    out += rx.receive(2000, True, ev(200, 160))
    out += rx.receive(4000, True, ev(12, 160))
    assert out == [DtmfEventReceived("A", 4000)]  # event 12 is A (RFC 4733 §3.2)
    assert (rx.flash, rx.unknown) == (1, 1)


def test_timestamp_wrap_between_events() -> None:
    rx = DtmfReceiver()
    out = rx.receive(0xFFFFFF00, True, ev(4, 800, end=True)) + rx.receive(0x100, True, ev(6, 160))
    assert out == [DtmfEventReceived("4", 0xFFFFFF00), DtmfEnded("4", 100, 0xFFFFFF00),
                   DtmfEventReceived("6", 0x100)]


def test_sender_plan() -> None:
    plan = dtmf_payloads("7", duration_ms=100)
    parsed = [[TelephoneEvent.parse(p) for p in tick] for tick in plan]
    assert parsed == [
        [TelephoneEvent(7, False, 10, 160)],
        [TelephoneEvent(7, False, 10, 320)],
        [TelephoneEvent(7, False, 10, 480)],
        [TelephoneEvent(7, False, 10, 640)],
        [TelephoneEvent(7, True, 10, 800)] * 3,
    ]


def test_sender_plan_round_trips_through_receiver() -> None:
    rx = DtmfReceiver()
    out = []
    for index, tick in enumerate(dtmf_payloads("*", duration_ms=60)):
        for payload in tick:
            out += rx.receive(42, index == 0, payload)
    assert out == [DtmfEventReceived("*", 42), DtmfEnded("*", 60, 42)]


def test_sender_rejects_bad_digits_and_durations() -> None:
    assert event_code("a") == 12
    with pytest.raises(RtpUsageError, match=r"DTMF digit must be one of 0-9 \* # A-D, got 'x'"):
        dtmf_payloads("x")
    with pytest.raises(RtpUsageError, match="DTMF duration_ms must be 40-8000, got 10"):
        dtmf_payloads("1", duration_ms=10)


def test_replayed_captures_with_older_or_equal_timestamps_are_new_presses() -> None:
    # sipp replaying dtmf_2833_5 (ts 43200) then dtmf_2833_0 (ts 17632), then dtmf_2833_0 again.
    rx = DtmfReceiver()
    out = []
    for ts, code in ((43200, 5), (17632, 0), (17632, 0)):
        out += rx.receive(ts, True, ev(code, 0))
        out += rx.receive(ts, False, ev(code, 320))
        out += [e for _ in range(3) for e in rx.receive(ts, False, ev(code, 2240, end=True))]
    assert out == [DtmfEventReceived("5", 43200), DtmfEnded("5", 280, 43200),
                   DtmfEventReceived("0", 17632), DtmfEnded("0", 280, 17632),
                   DtmfEventReceived("0", 17632), DtmfEnded("0", 280, 17632)]


def test_redundant_start_packets_before_the_end_are_one_press() -> None:
    rx = DtmfReceiver()
    out = [e for duration in (0, 0, 160) for e in rx.receive(700, True, ev(8, duration))]
    out += rx.receive(700, False, ev(8, 480, end=True)) + rx.receive(700, False, ev(8, 480, end=True))
    assert out == [DtmfEventReceived("8", 700), DtmfEnded("8", 60, 700)]
