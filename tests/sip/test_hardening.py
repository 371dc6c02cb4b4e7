"""Hostile-traffic regressions for the sans-IO user agent (issue 9 items 2, 3, 4, 8; issue 13 drain).

Each test drives one :class:`UserAgent` with hand-written datagrams and an explicit ``now``: no
sockets, no sleeps. docs/security.md maps every threat to the test here that shows its defence.
"""

from __future__ import annotations

import random

import pytest

from voicebot.sip.config import UaConfig
from voicebot.sip.events import (
    AckReceived,
    CallEstablished,
    CallReceived,
    CallTerminated,
    Event,
    MessageRejected,
)
from voicebot.sip.message import Request, Response, parse_message
from voicebot.sip.useragent import UserAgent

pytestmark = pytest.mark.unit

BOT = ("10.0.0.2", 5060)
SDP = b"v=0\r\no=a 1 1 IN IP4 {h}\r\ns=-\r\nc=IN IP4 {h}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"


def invite(host: str, n: object, *, branch: str | None = None, cseq: int = 1) -> bytes:
    body = SDP.replace(b"{h}", host.encode())
    return (
        "INVITE sip:bot@10.0.0.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch or n}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:c@{host}>;tag=f{n}\r\nTo: <sip:bot@10.0.0.2>\r\n"
        f"Call-ID: {n}@{host}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:c@{host}:5060>\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def in_dialog(
    method: str, host: str, n: object, *, to_tag: str, cseq: int = 2, branch: str | None = None
) -> bytes:
    return (
        f"{method} sip:bot@10.0.0.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{branch or method + str(n)}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:c@{host}>;tag=f{n}\r\nTo: <sip:bot@10.0.0.2>;tag={to_tag}\r\n"
        f"Call-ID: {n}@{host}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def options(host: str, n: object) -> bytes:
    return (
        f"OPTIONS sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch=z9hG4bKo{n}\r\n"
        f"From: <sip:probe@{host}>;tag=p{n}\r\nTo: <sip:bot@10.0.0.2>\r\nCall-ID: o{n}@{host}\r\n"
        "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def make_ua(**config: object) -> UserAgent:
    return UserAgent(UaConfig(local_host=BOT[0], **config), rng=random.Random(7))  # type: ignore[arg-type]


def drain(ua: UserAgent) -> tuple[list[Request | Response], list[Event]]:
    """What the adapter does after each input: send, dispatch events, ask for the next timer."""
    ua.get_timer()
    sent = [parse_message(d) for d, _ in ua.datagrams_to_send()]
    events: list[Event] = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    return sent, events


def final_codes(sent: list[Request | Response]) -> list[int]:
    return [m.status_code for m in sent if isinstance(m, Response) and m.status_code >= 200]


def answer_call(ua: UserAgent, host: str, n: object, now: float) -> str:
    """Send an INVITE from ``host``, answer it; returns the 200's To tag (not ACKed yet)."""
    ua.receive_datagram(invite(host, n), (host, 5060), now)
    _, events = drain(ua)
    received = [e for e in events if isinstance(e, CallReceived)]
    assert received, events
    ua.answer(received[0].call_id, now, local_rtp_port=40000)
    sent, _ = drain(ua)
    ok = sent[-1]
    assert isinstance(ok, Response) and ok.status_code == 200
    return ok.to_addr.tag or ""


def ack(host: str, n: object, to_tag: str) -> bytes:
    return (
        f"ACK sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch=z9hG4bKack{n}\r\n"
        f"From: <sip:c@{host}>;tag=f{n}\r\nTo: <sip:bot@10.0.0.2>;tag={to_tag}\r\nCall-ID: {n}@{host}\r\n"
        "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    ).encode()


# ---------------------------------------------------------------- issue 9 item 2: call-slot squatting


def test_one_source_cannot_take_every_call_slot() -> None:
    ua = make_ua(max_calls=16, max_calls_per_source=4, max_unconfirmed_per_source=0)
    for n in range(4):
        answer_call(ua, "198.51.100.9", n, 0.0)  # answered, never ACKed: the squat of issue 9
    ua.receive_datagram(invite("198.51.100.9", 4), ("198.51.100.9", 5060), 0.0)
    sent, events = drain(ua)
    assert final_codes(sent) == [503]
    assert sent[-1].reason == "Busy: too many calls from this address"  # type: ignore[union-attr]
    assert sent[-1].headers.get("Retry-After") == "30"
    assert not any(isinstance(e, CallReceived) for e in events)
    assert ua.stats.per_source_rejected == 1
    # a caller from another address is still answered
    answer_call(ua, "203.0.113.5", "real", 0.1)
    assert ua.active_calls == 5


def test_one_source_holds_at_most_two_unacked_calls_by_default() -> None:
    ua = make_ua(max_calls=16)  # unconfirmed cap 8: one squatter must not fill it
    tags = [answer_call(ua, "198.51.100.9", n, 0.0) for n in range(2)]
    ua.receive_datagram(invite("198.51.100.9", 2), ("198.51.100.9", 5060), 0.0)
    sent, _ = drain(ua)
    assert final_codes(sent) == [503]
    assert sent[-1].reason == "Busy: too many unconfirmed calls from this address"  # type: ignore[union-attr]
    ua.receive_datagram(ack("198.51.100.9", 0, tags[0]), ("198.51.100.9", 5060), 0.1)
    drain(ua)
    answer_call(ua, "198.51.100.9", 3, 0.2)  # an ACKed call frees the unconfirmed slot
    for n in range(6):
        answer_call(ua, f"203.0.113.{n}", n, 0.3)  # and the others were never affected
    assert ua.admission.unconfirmed_calls == 8


def test_per_source_slots_come_back_when_calls_end() -> None:
    ua = make_ua(max_calls_per_source=1)
    tag = answer_call(ua, "198.51.100.9", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.1)
    ua.receive_datagram(in_dialog("BYE", "198.51.100.9", 1, to_tag=tag), ("198.51.100.9", 5060), 1.0)
    drain(ua)
    answer_call(ua, "198.51.100.9", 2, 2.0)  # the slot was released by the BYE


def test_trunk_and_local_proxy_are_exempt_from_the_per_source_cap() -> None:
    ua = make_ua(max_calls_per_source=2, allowed_networks=("192.0.2.0/24",), max_unconfirmed_calls=1)
    for n in range(6):  # a trunk sends every call from one IP; unconfirmed cap ignores it too
        answer_call(ua, "192.0.2.10", n, 0.0)
    local = UserAgent(UaConfig(local_host="127.0.0.1", max_calls_per_source=2), rng=random.Random(1))
    for n in range(6):  # a proxy on this host (issue 13's Kamailio) sends from 127.0.0.1
        answer_call(local, "127.0.0.1", n, 0.0)
    assert (ua.active_calls, local.active_calls) == (6, 6)


def test_unacked_calls_from_many_sources_are_capped() -> None:
    ua = make_ua(max_calls=10, max_calls_per_source=0)  # unconfirmed cap defaults to max_calls // 2
    tags = [answer_call(ua, f"198.51.100.{n}", n, 0.0) for n in range(5)]
    ua.receive_datagram(invite("198.51.100.99", 99), ("198.51.100.99", 5060), 0.0)
    sent, _ = drain(ua)
    assert final_codes(sent) == [503]
    assert sent[-1].reason == "Busy: too many unconfirmed calls"  # type: ignore[union-attr]
    assert ua.stats.unconfirmed_rejected == 1
    # one ACK confirms a call and frees an unconfirmed slot (the call itself goes on)
    ua.receive_datagram(ack("198.51.100.0", 0, tags[0]), ("198.51.100.0", 5060), 0.2)
    drain(ua)
    answer_call(ua, "198.51.100.98", 98, 0.3)
    assert ua.admission.unconfirmed_calls == 5 and ua.active_calls == 6


# ---------------------------------------------------------------- issue 9 item 3: in-dialog floods


def test_requests_for_unknown_dialogs_get_481_without_a_transaction() -> None:
    ua = make_ua()
    bye = in_dialog("BYE", "198.51.100.7", 1, to_tag="nosuch")
    ua.receive_datagram(bye, ("198.51.100.7", 5060), 0.0)
    first, _ = drain(ua)
    ua.receive_datagram(bye, ("198.51.100.7", 5060), 0.1)  # its retransmission
    again, _ = drain(ua)
    assert final_codes(first) == [481] and first == again
    for method in ("INFO", "NOTIFY", "CANCEL"):
        ua.receive_datagram(in_dialog(method, "198.51.100.7", 2, to_tag="x"), ("198.51.100.7", 5060), 0.2)
    sent, _ = drain(ua)
    assert final_codes(sent) == [481, 481, 481]
    assert ua.live_transactions == 0 and ua.get_timer() is None
    assert ua.stats.stateless_481 == 5


def test_in_dialog_flood_passes_the_rate_limiter() -> None:
    ua = make_ua(rate_limit_per_s=20, rate_limit_burst=40)
    for n in range(500):  # issue 9: 500 BYEs/s to unknown dialogs
        ua.receive_datagram(in_dialog("BYE", "198.51.100.7", n, to_tag="t"), ("198.51.100.7", 5060), n / 500)
    sent, _ = drain(ua)
    assert len(sent) < 70  # burst 40 + 20/s for 1 s
    assert ua.stats.rate_limited == 500 - len(sent)
    assert ua.live_transactions == 0
    # another source is untouched
    answer_call(ua, "203.0.113.5", "real", 1.0)


def test_timer_heap_matches_a_scan_and_cleans_up() -> None:
    ua = make_ua(rate_limit_burst=10_000)
    for n in range(2000):
        ua.receive_datagram(options("10.1.0.1", n), ("10.1.0.1", 5060), n * 0.001)
    drain(ua)
    assert ua.live_transactions == 2000
    assert ua.get_timer() == pytest.approx(32.0)  # Timer J of the first OPTIONS
    ua.handle_timer(32.0005)
    assert ua.live_transactions == 1999
    ua.handle_timer(40.0)
    assert ua.live_transactions == 0 and ua.get_timer() is None


# ---------------------------------------------------------------- issue 9 item 4: the ACK


def test_ack_is_reported_before_the_call_is_established() -> None:
    ua = make_ua()
    tag = answer_call(ua, "198.51.100.9", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.2)
    _, events = drain(ua)
    assert [type(e) for e in events] == [AckReceived, CallEstablished]
    assert isinstance(events[0], AckReceived) and events[0].cseq == 1 and not events[0].reinvite
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.3)  # an ACK copy
    assert drain(ua) == ([], [])


def test_no_ack_ends_the_call_as_ack_timeout_after_timer_h() -> None:
    ua = make_ua()
    answer_call(ua, "198.51.100.9", 1, 0.0)
    while (timer := ua.get_timer()) is not None and timer < 31.9:
        ua.handle_timer(timer)
    _, events = drain(ua)
    assert not any(isinstance(e, CallTerminated) for e in events)
    ua.handle_timer(32.0)
    sent, events = drain(ua)
    assert events == [CallTerminated("1@198.51.100.9", "ack-timeout", 408, "no ACK for 200 OK")]
    assert [m.method for m in sent if isinstance(m, Request)] == ["BYE"]
    assert ua.admission.unconfirmed_calls == 0 and ua.admission.calls_from("198.51.100.9") == 0


# ---------------------------------------------------------------- issue 9 item 8: RFC 6026


def test_invite_copy_after_the_call_ended_is_absorbed() -> None:
    ua = make_ua()
    tag = answer_call(ua, "198.51.100.9", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.1)
    ua.receive_datagram(in_dialog("BYE", "198.51.100.9", 1, to_tag=tag), ("198.51.100.9", 5060), 1.0)
    drain(ua)
    ua.receive_datagram(invite("198.51.100.9", 1), ("198.51.100.9", 5060), 3.0)  # issue 9: 2 s after BYE
    assert drain(ua) == ([], [])
    assert ua.active_calls == 0 and ua.stats.late_invites_absorbed == 1


def test_invite_copy_after_a_long_call_is_absorbed_too() -> None:
    ua = make_ua()
    tag = answer_call(ua, "198.51.100.9", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.1)
    ua.handle_timer(40.0)  # Timer L is long gone
    ua.receive_datagram(in_dialog("BYE", "198.51.100.9", 1, to_tag=tag), ("198.51.100.9", 5060), 60.0)
    drain(ua)
    ua.receive_datagram(invite("198.51.100.9", 1), ("198.51.100.9", 5060), 62.0)  # a late retransmission
    assert drain(ua) == ([], [])
    # after 64*T1 the memory is gone: the retransmission would be a call again
    ua.receive_datagram(invite("198.51.100.9", 1), ("198.51.100.9", 5060), 93.0)
    _, events = drain(ua)
    assert any(isinstance(e, CallReceived) for e in events)


def test_a_new_invite_reusing_an_ended_call_id_is_a_new_call() -> None:
    """Only a retransmission (same branch) is absorbed; a new INVITE with the Call-ID is a call."""
    ua = make_ua()
    tag = answer_call(ua, "198.51.100.9", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.9", 1, tag), ("198.51.100.9", 5060), 0.1)
    ua.receive_datagram(in_dialog("BYE", "198.51.100.9", 1, to_tag=tag), ("198.51.100.9", 5060), 1.0)
    drain(ua)
    ua.receive_datagram(invite("198.51.100.9", 1, branch="again"), ("198.51.100.9", 5060), 2.0)
    _, events = drain(ua)
    assert [type(e) for e in events] == [CallReceived]


# ---------------------------------------------------------------- issue 13: OPTIONS and draining


def test_options_carry_the_load_and_turn_503_while_draining_or_full() -> None:
    ua = make_ua(max_calls=2, retry_after_s=9)
    ua.receive_datagram(options("192.0.2.1", 1), ("192.0.2.1", 5060), 0.0)
    sent, _ = drain(ua)
    assert final_codes(sent) == [200] and sent[0].headers.get("X-Voicebot-Load") == "0/2"
    tag = answer_call(ua, "198.51.100.1", 1, 0.0)
    ua.receive_datagram(ack("198.51.100.1", 1, tag), ("198.51.100.1", 5060), 0.0)
    ua.receive_datagram(options("192.0.2.1", 2), ("192.0.2.1", 5060), 0.1)
    sent, _ = drain(ua)
    assert final_codes(sent) == [200] and sent[0].headers.get("X-Voicebot-Load") == "1/2"
    ua.set_draining(True)
    ua.receive_datagram(options("192.0.2.1", 3), ("192.0.2.1", 5060), 0.2)
    sent, _ = drain(ua)
    assert final_codes(sent) == [503]
    assert sent[0].reason == "Service Unavailable: draining"  # type: ignore[union-attr]
    assert sent[0].headers.get("Retry-After") == "9" and sent[0].headers.get("X-Voicebot-Load") == "1/2"
    ua.receive_datagram(invite("198.51.100.2", 2), ("198.51.100.2", 5060), 0.3)  # no new calls
    sent, _ = drain(ua)
    assert final_codes(sent) == [503]
    ua.set_draining(False)
    answer_call(ua, "198.51.100.3", 3, 0.4)  # full now: 2/2
    ua.receive_datagram(options("192.0.2.1", 4), ("192.0.2.1", 5060), 0.5)
    sent, _ = drain(ua)
    assert final_codes(sent) == [503] and sent[0].reason == "Busy: max calls reached"  # type: ignore[union-attr]
    assert sent[0].headers.get("X-Voicebot-Load") == "2/2"


# ---------------------------------------------------------------- numbers are ASCII digits only

# RFC 5234 DIGIT is %x30-39. Python's str.isdigit() is also true for '²' (which int() rejects with
# ValueError) and for '١' (which int() reads as 1), so each of these once escaped the parser as a
# ValueError (no 400, the datagram handler crashed) or was accepted as a number.
NON_ASCII_DIGITS = ["\u00b2", "\u0661", "\uff11"]  # superscript two, Arabic-Indic one, fullwidth one
NUMBER_FIELDS = [
    ("CSeq: 1 OPTIONS", "CSeq: {d} OPTIONS"),
    ("Content-Length: 0", "Content-Length: {d}"),
    ("Content-Length: 0", "Expires: {d}\r\nContent-Length: 0"),
    ("Content-Length: 0", "Max-Forwards: {d}\r\nContent-Length: 0"),
    ("OPTIONS sip:bot@10.0.0.2 ", "OPTIONS sip:bot@10.0.0.2:5{d} "),
    (":5060;branch", ":5{d};branch"),
    ("SIP/2.0\r\nVia", "SIP/{d}.0\r\nVia"),
]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
@pytest.mark.parametrize(("field", "replacement"), NUMBER_FIELDS)
def test_a_non_ascii_digit_in_a_number_gets_400_and_the_ua_goes_on(
    field: str, replacement: str, digit: str
) -> None:
    ua = make_ua()
    bad = options("10.0.0.1", 1).decode().replace(field, replacement.format(d=digit), 1)
    assert bad != options("10.0.0.1", 1).decode()
    ua.receive_datagram(bad.encode(), ("10.0.0.1", 5060), 0.0)
    # the answer echoes the peer's malformed Via, so look at its status line only
    sent = [data.split(b" ", 2)[1] for data, _ in ua.datagrams_to_send()]
    assert sent in ([b"400"], [b"505"]), sent
    event = ua.next_event()
    assert isinstance(event, MessageRejected) and event.status_code == int(sent[0]), event
    ua.receive_datagram(options("10.0.0.1", 2), ("10.0.0.1", 5060), 1.0)
    assert final_codes(drain(ua)[0]) == [200]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_a_non_ascii_digit_in_a_response_status_code_drops_the_response(digit: str) -> None:
    ua = make_ua()
    response = (
        f"SIP/2.0 2{digit}0 OK\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKx\r\n"
        "From: <sip:a@10.0.0.2>;tag=1\r\nTo: <sip:b@10.0.0.1>\r\nCall-ID: r1\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    ua.receive_datagram(response.encode(), ("10.0.0.1", 5060), 0.0)
    sent, events = drain(ua)
    assert sent == []
    assert [type(e).__name__ for e in events] == ["MessageRejected"]


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS)
def test_a_non_ascii_digit_in_the_sdp_media_port_is_refused_and_the_ua_goes_on(digit: str) -> None:
    ua = make_ua()
    good = invite("10.0.0.1", 1)
    bad = good.replace(b"m=audio 6000 ", f"m=audio 600{digit} ".encode())
    # keep Content-Length true: the digit is more than one byte in UTF-8
    bad = bad.replace(
        f"Content-Length: {len(SDP) - 6}".encode(),
        f"Content-Length: {len(SDP) - 6 + len(bad) - len(good)}".encode(),
    )
    ua.receive_datagram(bad, ("10.0.0.1", 5060), 0.0)
    sent, _ = drain(ua)
    assert final_codes(sent) and 400 <= final_codes(sent)[0] < 500, sent
    ua.receive_datagram(invite("10.0.0.1", 2), ("10.0.0.1", 5060), 1.0)
    _, events = drain(ua)
    assert any(isinstance(e, CallReceived) for e in events)
