"""RFC 3261 §17 transactions driven by explicit timer inputs: no sockets, no sleeps."""

from __future__ import annotations

import pytest

from voicebot.sip.headers import Headers
from voicebot.sip.message import Request, Response, make_response, parse_message
from voicebot.sip.transaction import (
    ClientTransaction,
    Datagrams,
    ServerTransaction,
    TimerConfig,
    response_destination,
    server_key,
    stamp_via,
)
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit

PEER = ("192.0.2.7", 5070)
T = TimerConfig()


def request(method: str, branch: str = "z9hG4bKabc", via_extra: str = "") -> Request:
    return Request(
        method,
        SipUri(host="192.0.2.7", user="bob"),
        Headers.of(
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5062;branch={branch}{via_extra}"),
            ("From", "<sip:alice@192.0.2.1>;tag=a1"),
            ("To", "<sip:bob@192.0.2.7>"),
            ("Call-ID", "c1@192.0.2.1"),
            ("CSeq", f"1 {method}"),
        ),
    )


def fire(txn: ClientTransaction | ServerTransaction, until: float, step: float = 0.05) -> list[float]:
    """Run timers up to ``until``; returns the times at which the transaction sent something."""
    sends: list[float] = []
    now = 0.0
    out = txn._out  # the shared list the transaction appends to
    while now < until:
        now = round(now + step, 6)
        deadline = txn.deadline()
        if deadline is not None and deadline <= now:
            before = len(out)
            txn.handle_timer(now)
            if len(out) > before:
                sends.append(now)
    return sends


def test_non_invite_client_backs_off_to_t2_and_times_out_with_timer_f() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("OPTIONS"), PEER, 0.0, T, out)
    assert len(out) == 1
    sends = fire(txn, 33.0)
    gaps = [round(b - a, 2) for a, b in zip([0.0, *sends], sends, strict=False)]
    # Timer E: 0.5, 1, 2, 4, then capped at T2 = 4 s
    assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert txn.terminated and txn.timed_out


def test_non_invite_client_completed_absorbs_late_responses_for_timer_k() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("BYE"), PEER, 0.0, T, out)
    ok = make_response(txn.request, 200, to_tag="b")
    assert txn.receive_response(ok, 0.1) is True
    assert txn.receive_response(ok, 0.2) is False  # retransmission: not for the TU
    assert txn.deadline() == pytest.approx(0.1 + T.t4_s)
    txn.handle_timer(5.2)
    assert txn.terminated and not txn.timed_out


def test_invite_client_acks_non_2xx_and_reacks_retransmissions() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    ringing = make_response(txn.request, 180, to_tag="b")
    assert txn.receive_response(ringing, 0.1)
    assert fire(txn, 10.0) == []  # Timer A stops once a provisional arrives
    busy = make_response(txn.request, 486, to_tag="b")
    assert txn.receive_response(busy, 10.0)
    ack = parse_message(out[-1][0])
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.top_via.branch == "z9hG4bKabc" and ack.to_addr.tag == "b" and ack.cseq.method == "ACK"
    count = len(out)
    assert not txn.receive_response(busy, 10.5)
    assert len(out) == count + 1 and out[-1][0] == out[-2][0]  # the same ACK again
    txn.handle_timer(10.0 + T.timer_d_s)
    assert txn.terminated


def test_invite_client_passes_2xx_retransmissions_in_accepted_state() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    ok = make_response(txn.request, 200, to_tag="b")
    assert txn.receive_response(ok, 0.1) and txn.state == "accepted"
    assert txn.receive_response(ok, 0.6)  # RFC 6026: the TU re-sends its ACK
    assert len(out) == 1  # the transaction itself never ACKs a 2xx
    txn.handle_timer(0.1 + 64 * T.t1_s)
    assert txn.terminated and not txn.timed_out


def test_invite_server_retransmits_final_until_ack_then_timer_i() -> None:
    out: Datagrams = []
    invite = request("INVITE")
    txn = ServerTransaction(invite, PEER, 0.0, T, out)
    txn.send(make_response(invite, 100), 0.0)
    txn.receive_request(invite, 0.2)  # retransmitted INVITE -> the 100 again
    assert [parse_message(d).status_code for d, _ in out] == [100, 100]  # type: ignore[union-attr]
    txn.send(make_response(invite, 486, to_tag="x"), 1.0)
    sends = []
    now = 1.0
    while now < 5.0:
        now = round(now + 0.05, 6)
        before = len(out)
        txn.handle_timer(now)
        if len(out) > before:
            sends.append(round(now - 1.0, 2))
    assert sends == [0.5, 1.5, 3.5]  # Timer G doubles
    ack = Request("ACK", invite.uri, invite.headers.replaced("CSeq", ["1 ACK"]))
    assert server_key(ack) == txn.key
    txn.receive_request(ack, 5.0)
    assert txn.state == "confirmed"
    count = len(out)
    txn.handle_timer(9.0)
    assert len(out) == count  # nothing after the ACK
    txn.handle_timer(10.1)
    assert txn.terminated


def test_invite_server_reports_missing_ack_with_timer_h() -> None:
    out: Datagrams = []
    invite = request("INVITE")
    txn = ServerTransaction(invite, PEER, 0.0, T, out)
    txn.send(make_response(invite, 603, to_tag="x"), 0.0)
    assert txn.handle_timer(64 * T.t1_s) is True
    assert txn.terminated and txn.ack_timed_out


def test_invite_server_accepted_absorbs_copies_after_the_ack_until_timer_l() -> None:
    """RFC 6026 §7.1: after the 2xx's ACK the transaction stays in Accepted until Timer L and
    INVITE copies are absorbed; Timer L then ends it without reporting an ACK timeout."""
    out: Datagrams = []
    invite = request("INVITE")
    txn = ServerTransaction(invite, PEER, 0.0, T, out)
    changes: list[float | None] = []
    txn.on_deadline_changed = lambda t: changes.append(t.deadline())
    txn.send(make_response(invite, 200, to_tag="x"), 0.0)
    txn.receive_request(invite, 0.1)  # before the ACK a copy gets the 200 again
    assert len(out) == 2
    txn.ack_received(0.2)
    assert (txn.state, txn.acked, txn.deadline()) == ("accepted", True, 64 * T.t1_s)
    txn.receive_request(invite, 2.0)  # a late copy: absorbed, not a new call
    assert len(out) == 2 and not txn.terminated
    assert txn.handle_timer(64 * T.t1_s) is False
    assert txn.terminated and not txn.ack_timed_out
    assert changes == [T.t1_s, 64 * T.t1_s, None]  # the timer heap heard every change


def test_invite_server_2xx_without_ack_reports_timer_l() -> None:
    out: Datagrams = []
    invite = request("INVITE")
    txn = ServerTransaction(invite, PEER, 0.0, T, out)
    txn.send(make_response(invite, 200, to_tag="x"), 0.0)
    sends = fire(txn, 31.9)
    assert sends[:4] == [0.5, 1.5, 3.5, 7.5]  # §13.3.1.4: T1 doubling, capped at T2
    assert txn.handle_timer(64 * T.t1_s) is True and txn.ack_timed_out


def test_non_invite_server_answers_retransmissions_until_timer_j() -> None:
    out: Datagrams = []
    bye = request("BYE")
    txn = ServerTransaction(bye, PEER, 0.0, T, out)
    txn.send(make_response(bye, 200, to_tag="x"), 0.0)
    txn.receive_request(bye, 1.0)
    assert len(out) == 2 and out[0] == out[1]
    txn.send(make_response(bye, 500), 1.0)  # a second final response is ignored
    assert len(out) == 2
    txn.handle_timer(64 * T.t1_s)
    assert txn.terminated


def test_rfc2543_matching_without_magic_cookie() -> None:
    old = request("INVITE", branch="", via_extra="").with_headers(
        request("INVITE").headers.replaced("Via", ["SIP/2.0/UDP 192.0.2.1:5062"])
    )
    ack = Request(
        "ACK", old.uri, old.headers.replaced("CSeq", ["1 ACK"]).replaced("To", ["<sip:bob@h>;tag=z"])
    )
    assert server_key(old)[0] == "2543"
    assert server_key(ack) == server_key(old)
    cancel = Request("CANCEL", old.uri, old.headers.replaced("CSeq", ["1 CANCEL"]))
    assert server_key(cancel) != server_key(old)
    assert server_key(cancel, method="INVITE") == server_key(old)
    bare_cookie = request("OPTIONS", branch="z9hG4bK")
    assert server_key(bare_cookie)[0] == "2543"


def test_via_stamping_and_response_routing() -> None:
    plain = stamp_via(request("OPTIONS"), ("198.51.100.1", 40000))
    assert plain.top_via.received == "198.51.100.1" and plain.top_via.rport is None
    assert response_destination(plain, ("198.51.100.1", 40000)) == ("198.51.100.1", 5062)
    assert response_destination(plain, ("198.51.100.1", 40000), force_rport=True) == ("198.51.100.1", 40000)
    nat = stamp_via(request("OPTIONS", via_extra=";rport"), ("198.51.100.1", 40000))
    assert nat.top_via.rport == "40000" and nat.top_via.received == "198.51.100.1"
    assert response_destination(nat, ("198.51.100.1", 40000)) == ("198.51.100.1", 40000)
    same = stamp_via(request("OPTIONS"), ("192.0.2.1", 5062))
    assert same.top_via.received is None
    response = make_response(nat, 200)
    assert isinstance(response, Response) and response.top_via.rport == "40000"
