"""Every RFC 3261 §17 timer path (A-M) as an exact schedule, plus RFC 6026 Accepted.

The transactions are driven only through ``deadline()`` / ``handle_timer(now)``: each helper jumps
straight to the next deadline, so the asserted times are the ones the RFC prescribes (T1 = 0.5 s,
T2 = 4 s, T4 = 5 s, Timer D = 32 s), not the resolution of a polling loop.
"""

from __future__ import annotations

import pytest

from voicebot.sip.headers import Headers
from voicebot.sip.message import Request, Response, make_response, parse_message
from voicebot.sip.transaction import (
    ClientTransaction,
    Datagrams,
    ServerTransaction,
    TimerConfig,
    build_non2xx_ack,
    client_key,
    response_destination,
    server_key,
    stamp_via,
)
from voicebot.sip.uri import SipUri

pytestmark = pytest.mark.unit

PEER = ("192.0.2.7", 5070)
T = TimerConfig()
A_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A: T1 doubling, no cap (§17.1.1.2)
E_SCHEDULE = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]  # Timer E / G: doubling capped at T2


def request(method: str, *, branch: str = "z9hG4bKt1", routes: tuple[str, ...] = ()) -> Request:
    return Request(
        method,
        SipUri(host="192.0.2.7", user="bob"),
        Headers.of(
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5062;branch={branch}"),
            *(("Route", r) for r in routes),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@192.0.2.1>;tag=a1"),
            ("To", "<sip:bob@192.0.2.7>"),
            ("Call-ID", "c1@192.0.2.1"),
            ("CSeq", f"7 {method}"),
        ),
    )


def response(req: Request, code: int) -> Response:
    return make_response(req, code, to_tag=None if code < 200 else "b9")


def run(
    txn: ClientTransaction | ServerTransaction, out: Datagrams, until: float
) -> tuple[list[float], list[float]]:
    """Jump from deadline to deadline up to ``until``: (times something was sent, times handle_timer
    returned True)."""
    sends: list[float] = []
    fired: list[float] = []
    while True:
        when = txn.deadline()
        if when is None or when > until:
            return sends, fired
        before = len(out)
        if txn.handle_timer(when):
            fired.append(when)
        if len(out) > before:
            sends.append(when)


# --- INVITE client: Timers A, B, D, M -------------------------------------------------------------


def test_timer_a_doubles_without_cap_until_timer_b() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    assert out == [(request("INVITE").serialize(), PEER)]
    sends, fired = run(txn, out, 100.0)
    assert sends == A_SCHEDULE
    assert fired == [32.0]  # Timer B = 64*T1
    assert txn.timed_out and txn.terminated and txn.deadline() is None
    assert all(data == out[0][0] and dest == PEER for data, dest in out)


def test_provisional_stops_timer_a() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    assert txn.receive_response(response(txn.request, 100), 0.2)
    assert txn.state == "proceeding"
    sends, _ = run(txn, out, 20.0)
    assert sends == []


def test_timer_b_does_not_fire_once_a_provisional_arrived() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.receive_response(response(txn.request, 180), 1.0)
    _, fired = run(txn, out, 60.0)
    assert fired == []
    assert txn.state == "proceeding"


def test_a_cancel_gives_proceeding_64_t1_to_see_a_final_response() -> None:
    # §9.1: "If no final response is received to the INVITE within 64*T1 seconds after the
    # CANCEL was sent, the client transaction SHOULD be ... destroyed"
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.receive_response(response(txn.request, 180), 0.2)
    assert txn.deadline() is None
    txn.cancel_sent(10.0)
    assert txn.deadline() == 42.0
    sends, fired = run(txn, out, 100.0)
    assert (sends, fired) == ([], [42.0])
    assert txn.terminated and txn.timed_out


def test_a_final_response_after_the_cancel_ends_the_wait_as_usual() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.receive_response(response(txn.request, 180), 0.2)
    txn.cancel_sent(10.0)
    assert txn.receive_response(response(txn.request, 487), 11.0)
    assert txn.state == "completed" and txn.deadline() == 43.0  # Timer D, not the CANCEL's wait
    _, fired = run(txn, out, 100.0)
    assert fired == [] and not txn.timed_out


@pytest.mark.parametrize("state", ["calling", "accepted", "completed"])
def test_cancel_sent_outside_proceeding_changes_nothing(state: str) -> None:
    # in Calling no CANCEL may go out yet (§9.1) and Timer B runs; after a final it is too late
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    if state != "calling":
        txn.receive_response(response(txn.request, 200 if state == "accepted" else 486), 0.2)
    before = txn.deadline()
    txn.cancel_sent(10.0)
    assert txn.state == state and txn.deadline() == before
    non_invite = ClientTransaction(request("OPTIONS"), PEER, 0.0, T, out)
    non_invite.receive_response(response(non_invite.request, 100), 0.2)
    before = non_invite.deadline()
    non_invite.cancel_sent(10.0)
    assert non_invite.deadline() == before


def test_non_2xx_final_is_acked_and_timer_d_absorbs_copies() -> None:
    out: Datagrams = []
    invite = request("INVITE", routes=("<sip:p1;lr>", "<sip:p2;lr>"))
    txn = ClientTransaction(invite, PEER, 0.0, T, out)
    busy = response(invite, 486)
    assert txn.receive_response(busy, 1.0)
    assert txn.state == "completed"
    ack = parse_message(out[-1][0])
    assert isinstance(ack, Request)
    assert out[-1] == (build_non2xx_ack(invite, busy).serialize(), PEER)
    # §17.1.1.3: same Request-URI, top Via, Route set, From; To with the response's tag; CSeq number
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert ack.headers.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert ack.top_via.branch == "z9hG4bKt1"
    assert ack.to_addr.tag == "b9"
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    # a retransmitted final is re-ACKed but not passed up again
    count = len(out)
    assert not txn.receive_response(busy, 2.0)
    assert len(out) == count + 1 and out[-1] == out[count - 1]
    # nor are late provisionals or a 2xx
    assert not txn.receive_response(response(invite, 180), 2.5)
    assert not txn.receive_response(response(invite, 200), 2.6)
    sends, fired = run(txn, out, 100.0)
    assert sends == [] and fired == []
    assert txn.terminated and not txn.timed_out
    assert txn.deadline() is None
    assert not txn.receive_response(busy, 40.0)


def test_timer_d_follows_the_config() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, TimerConfig(timer_d_s=0.0), out)
    txn.receive_response(response(txn.request, 503), 2.0)
    assert txn.deadline() == 2.0
    txn.handle_timer(2.0)
    assert txn.terminated


def test_2xx_enters_accepted_and_timer_m_keeps_it_for_retransmissions() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    ok = response(txn.request, 200)
    assert txn.receive_response(ok, 1.0)
    assert txn.state == "accepted"
    assert txn.deadline() == 1.0 + 64 * T.t1_s
    # RFC 6026 §7.2: every 2xx copy goes to the TU (it re-sends its ACK); nothing is sent here
    assert txn.receive_response(ok, 2.0)
    assert not txn.receive_response(response(txn.request, 180), 2.5)
    assert not txn.receive_response(response(txn.request, 486), 2.6)
    assert len(out) == 1
    sends, fired = run(txn, out, 100.0)
    assert (sends, fired) == ([], [])
    assert txn.terminated and not txn.timed_out
    assert not txn.receive_response(ok, 40.0)


def test_2xx_after_provisional_also_enters_accepted() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.receive_response(response(txn.request, 183), 0.1)
    assert txn.last_response is not None and txn.last_response.status_code == 183
    assert txn.receive_response(response(txn.request, 200), 5.0)
    assert txn.state == "accepted"
    assert txn.deadline() == 37.0


# --- non-INVITE client: Timers E, F, K -------------------------------------------------------------


def test_timer_e_doubles_to_t2_until_timer_f() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("OPTIONS"), PEER, 0.0, T, out)
    assert txn.state == "trying"
    sends, fired = run(txn, out, 100.0)
    assert sends == E_SCHEDULE
    assert fired == [32.0]
    assert txn.timed_out


def test_timer_e_in_proceeding_retransmits_every_t2_and_timer_f_still_applies() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("BYE"), PEER, 0.0, T, out)
    assert txn.receive_response(response(txn.request, 100), 0.2)
    assert txn.state == "proceeding"
    sends, fired = run(txn, out, 100.0)
    # §17.1.2.2: in Proceeding the request is retransmitted every T2; Timer F (from the start) ends it
    assert sends == [4.2, 8.2, 12.2, 16.2, 20.2, 24.2, 28.2]
    assert fired == [32.0]


def test_provisional_after_backoff_started_uses_t2_from_then_on() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("OPTIONS"), PEER, 0.0, T, out)
    run(txn, out, 1.5)  # sent at 0.5 and 1.5
    assert txn.receive_response(response(txn.request, 180), 2.0)
    assert txn.deadline() == 6.0
    assert txn.receive_response(response(txn.request, 183), 3.0)  # each provisional goes up
    assert txn.deadline() == 7.0


def test_timer_k_absorbs_late_responses_without_timeout() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("REGISTER"), PEER, 0.0, T, out)
    assert txn.receive_response(response(txn.request, 200), 1.0)
    assert txn.state == "completed" and txn.deadline() == 1.0 + T.t4_s
    assert not txn.receive_response(response(txn.request, 200), 2.0)
    assert not txn.receive_response(response(txn.request, 100), 2.0)
    sends, fired = run(txn, out, 100.0)
    assert (sends, fired) == ([], [])
    assert txn.terminated and not txn.timed_out
    assert len(out) == 1  # a non-INVITE final is never ACKed


def test_final_response_in_trying_goes_straight_to_completed() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("OPTIONS"), PEER, 0.0, T, out)
    assert txn.receive_response(response(txn.request, 404), 0.1)
    assert txn.state == "completed"
    assert txn.last_response is not None and txn.last_response.status_code == 404


def test_deadline_callback_fires_only_when_the_deadline_moves() -> None:
    out: Datagrams = []
    txn = ClientTransaction(request("INVITE"), PEER, 0.0, T, out)
    seen: list[float | None] = []
    txn.on_deadline_changed = lambda t: seen.append(t.deadline())
    txn.handle_timer(0.1)  # nothing due
    assert seen == []
    txn.handle_timer(0.5)  # Timer A: next at 1.5
    txn.receive_response(response(txn.request, 180), 0.6)  # A stops, and B (Calling only): no deadline
    txn.receive_response(response(txn.request, 180), 0.7)  # nothing changes
    assert seen == [1.5, None]


# --- INVITE server: Timers G, H, I, L ---------------------------------------------------------------


def test_timer_g_caps_at_t2_until_timer_h_reports_the_missing_ack() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    assert txn.deadline() is None  # no timer before a final response
    txn.send(response(txn.request, 486), 0.0)
    assert txn.state == "completed"
    sends, fired = run(txn, out, 100.0)
    assert sends == E_SCHEDULE
    assert fired == [32.0]
    assert txn.ack_timed_out and txn.terminated


def test_ack_stops_timer_g_and_timer_i_absorbs_ack_copies() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.send(response(txn.request, 100), 0.0)
    txn.send(response(txn.request, 603), 0.1)
    run(txn, out, 1.0)  # one Timer G copy at 0.6
    assert len(out) == 3
    txn.receive_request(request("ACK"), 2.0)
    assert txn.state == "confirmed"
    assert txn.deadline() == 2.0 + T.t4_s
    # Confirmed absorbs ACKs and INVITE copies silently (§17.2.1)
    txn.receive_request(request("ACK"), 3.0)
    txn.receive_request(request("INVITE"), 3.0)
    assert len(out) == 3
    sends, fired = run(txn, out, 100.0)
    assert (sends, fired) == ([], [])
    assert txn.terminated and not txn.ack_timed_out


def test_invite_server_resends_the_last_response_on_request_copies() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.receive_request(request("INVITE"), 0.1)  # nothing sent yet: nothing to repeat
    assert out == []
    trying = response(txn.request, 100)
    txn.send(trying, 0.1)
    txn.receive_request(request("INVITE"), 0.2)
    assert [d for d, _ in out] == [trying.serialize()] * 2
    ringing = response(txn.request, 180)
    txn.send(ringing, 0.3)
    txn.receive_request(request("INVITE"), 0.4)
    assert out[-1] == (ringing.serialize(), PEER)
    # an ACK before any final response changes nothing
    txn.receive_request(request("ACK"), 0.5)
    assert txn.state == "proceeding" and txn.deadline() is None


def test_only_the_first_final_response_is_sent() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    txn.send(response(txn.request, 486), 0.0)
    txn.send(response(txn.request, 200), 0.1)
    txn.send(response(txn.request, 180), 0.2)
    assert len(out) == 1
    assert txn.last_response is not None and txn.last_response.status_code == 486
    assert txn.final_sent


def test_2xx_is_retransmitted_by_timer_g_until_the_dialog_reports_its_ack() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    ok = response(txn.request, 200)
    txn.send(ok, 0.0)
    assert txn.state == "accepted"
    sends, _ = run(txn, out, 4.0)
    assert sends == [0.5, 1.5, 3.5]
    txn.ack_received(4.0)
    assert txn.acked and txn.deadline() == 32.0  # Timer L stays
    txn.ack_received(5.0)  # idempotent
    # RFC 6026 §8.5: INVITE copies are absorbed after the ACK
    count = len(out)
    txn.receive_request(request("INVITE"), 6.0)
    assert len(out) == count
    sends, fired = run(txn, out, 100.0)
    assert (sends, fired) == ([], [])
    assert txn.terminated and not txn.ack_timed_out


def test_2xx_invite_copies_before_the_ack_resend_the_2xx() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 0.0, T, out)
    ok = response(txn.request, 200)
    txn.send(ok, 0.0)
    txn.receive_request(request("INVITE"), 0.2)
    assert out == [(ok.serialize(), PEER)] * 2


def test_timer_l_reports_a_2xx_never_acked() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("INVITE"), PEER, 10.0, T, out)
    txn.send(response(txn.request, 200), 10.0)
    sends, fired = run(txn, out, 100.0)
    assert sends == [10.0 + t for t in E_SCHEDULE]
    assert fired == [42.0]
    assert txn.ack_timed_out


# --- non-INVITE server: Timer J ---------------------------------------------------------------------


def test_non_invite_server_timer_j_and_response_copies() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("BYE"), PEER, 0.0, T, out)
    assert txn.state == "trying"
    txn.receive_request(request("BYE"), 0.1)
    assert out == []  # Trying with nothing sent: the copy is absorbed
    txn.send(response(txn.request, 100), 0.2)
    txn.receive_request(request("BYE"), 0.3)
    assert len(out) == 2 and txn.state == "proceeding"
    ok = response(txn.request, 200)
    txn.send(ok, 1.0)
    assert txn.state == "completed" and txn.deadline() == 33.0
    txn.receive_request(request("BYE"), 2.0)
    assert out[-1] == (ok.serialize(), PEER)
    sends, _ = run(txn, out, 100.0)
    assert sends == []  # a non-INVITE final is never retransmitted by a timer
    assert txn.terminated
    txn.send(response(txn.request, 500), 40.0)
    assert out[-1] == (ok.serialize(), PEER)


def test_timer_j_is_not_reported_as_a_missing_ack() -> None:
    out: Datagrams = []
    txn = ServerTransaction(request("BYE"), PEER, 0.0, T, out)
    txn.send(response(txn.request, 200), 0.0)
    _, fired = run(txn, out, 100.0)
    assert txn.terminated
    assert fired == []
    assert not txn.ack_timed_out


@pytest.mark.parametrize("code", [200, 404, 503])
def test_an_ack_does_not_confirm_a_non_invite_server_transaction(code: int) -> None:
    # only an INVITE server transaction has a Confirmed state (§17.2.1); Figure 8 has none, so a
    # stray ACK must not cut Timer J short to T4 and let a late retransmission start a new request
    out: Datagrams = []
    txn = ServerTransaction(request("BYE"), PEER, 0.0, T, out)
    txn.send(response(txn.request, code), 0.0)
    txn.receive_request(request("ACK"), 1.0)
    assert txn.state == "completed" and txn.deadline() == 32.0
    _, fired = run(txn, out, 100.0)
    assert fired == [] and txn.terminated and not txn.ack_timed_out


# --- matching and addressing ------------------------------------------------------------------------


def test_server_key_maps_ack_to_invite_and_keeps_cancel_apart() -> None:
    invite = request("INVITE")
    assert server_key(request("ACK")) == server_key(invite)
    cancel = request("CANCEL")
    assert server_key(cancel) != server_key(invite)
    assert server_key(cancel, method="INVITE") == server_key(invite)
    assert client_key("z9hG4bKx", "ACK") == client_key("z9hG4bKx", "INVITE") == ("z9hG4bKx", "INVITE")
    assert client_key("z9hG4bKx", "CANCEL") == ("z9hG4bKx", "CANCEL")


def test_server_key_sent_by_is_case_insensitive_and_bare_cookie_is_rfc2543() -> None:
    a = request("OPTIONS")
    b = a.with_headers(a.headers.replaced("Via", ["SIP/2.0/UDP HOST.example:5062;branch=z9hG4bKt1"]))
    c = a.with_headers(a.headers.replaced("Via", ["SIP/2.0/UDP host.EXAMPLE:5062;branch=z9hG4bKt1"]))
    assert server_key(b) == server_key(c)
    assert server_key(b)[0] == "3261"
    bare = a.with_headers(a.headers.replaced("Via", ["SIP/2.0/UDP h;branch=z9hG4bK"]))
    assert server_key(bare)[0] == "2543"


@pytest.mark.parametrize(
    ("via", "force", "expected"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa", False, ("203.0.113.9", 5062)),
        ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa", False, ("203.0.113.9", 5060)),
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;rport", False, ("203.0.113.9", 40000)),
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa", True, ("203.0.113.9", 40000)),
    ],
)
def test_response_destination(via: str, force: bool, expected: tuple[str, int]) -> None:
    req = request("OPTIONS")
    req = req.with_headers(req.headers.replaced("Via", [via]))
    assert response_destination(req, ("203.0.113.9", 40000), force_rport=force) == expected


@pytest.mark.parametrize(
    ("via", "source", "stamped"),
    [
        ("SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa", ("10.0.0.1", 5062), None),
        ("SIP/2.0/UDP [::1]:5062;branch=z9hG4bKa", ("::1", 5062), None),
        (
            "SIP/2.0/UDP pc.example:5062;branch=z9hG4bKa",
            ("10.0.0.1", 5062),
            "SIP/2.0/UDP pc.example:5062;branch=z9hG4bKa;received=10.0.0.1",
        ),
        (
            "SIP/2.0/UDP 10.0.0.1:5062;rport;branch=z9hG4bKa",
            ("10.0.0.1", 40000),
            "SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKa;received=10.0.0.1;rport=40000",
        ),
    ],
)
def test_stamp_via(via: str, source: tuple[str, int], stamped: str | None) -> None:
    req = request("OPTIONS")
    req = req.with_headers(req.headers.replaced("Via", [via, "SIP/2.0/UDP proxy;branch=z9hG4bKp"]))
    result = stamp_via(req, source)
    if stamped is None:
        assert result is req
    else:
        assert result.headers.get_all("Via") == [stamped, "SIP/2.0/UDP proxy;branch=z9hG4bKp"]
