"""Two sans-IO user agents pumped against each other in memory: no sockets, no sleeps."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.sip.auth import Credentials, DigestServer, parse_challenge
from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipStateError
from voicebot.sip.events import (
    AckReceived,
    CallEstablished,
    CallProgressed,
    CallReceived,
    CallTerminated,
    Event,
    InfoDtmfReceived,
    MessageRejected,
    RegistrationChanged,
    RemoteMediaChanged,
    TransferProgressed,
)
from voicebot.sip.headers import parse_auth_params
from voicebot.sip.message import Request, Response, make_response, parse_message
from voicebot.sip.useragent import UserAgent

pytestmark = pytest.mark.unit

A_ADDR = ("10.0.0.1", 5060)
B_ADDR = ("10.0.0.2", 5060)


@dataclass
class Net:
    """Carries datagrams between two cores; ``drop`` filters what is lost on the way."""

    a: UserAgent
    b: UserAgent
    now: float = 0.0
    a_events: list[Event] = field(default_factory=list)
    b_events: list[Event] = field(default_factory=list)
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    drop: object = None

    def pump(self) -> None:
        for _ in range(100):
            moved = False
            for ua, src, other, dst_addr in (
                (self.a, A_ADDR, self.b, B_ADDR),
                (self.b, B_ADDR, self.a, A_ADDR),
            ):
                for data, dest in ua.datagrams_to_send():
                    moved = True
                    self.wire.append((src[0], data))
                    if callable(self.drop) and self.drop(data):
                        continue
                    assert dest == dst_addr
                    other.receive_datagram(data, src, self.now)
            self._collect()
            if not moved:
                return
        raise AssertionError("the two user agents never went quiet")

    def _collect(self) -> None:
        for ua, sink in ((self.a, self.a_events), (self.b, self.b_events)):
            while (event := ua.next_event()) is not None:
                sink.append(event)

    def advance(self, seconds: float, step: float = 0.25) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for ua in (self.a, self.b):
                timer = ua.get_timer()
                if timer is not None and timer <= self.now:
                    ua.handle_timer(self.now)
            self.pump()

    def sent_by(self, host: str) -> list[Request | Response]:
        return [parse_message(d) for h, d in self.wire if h == host]


def make_net(a_config: UaConfig | None = None, b_config: UaConfig | None = None) -> Net:
    a = UserAgent(a_config or UaConfig(local_host=A_ADDR[0], user="caller"), rng=random.Random(1))
    b = UserAgent(b_config or UaConfig(local_host=B_ADDR[0], user="bot"), rng=random.Random(2))
    return Net(a, b)


def call_in(net: Net, **invite: object) -> tuple[str, CallReceived]:
    call_id = net.a.invite("sip:bot@10.0.0.2", net.now, local_rtp_port=30000, **invite)  # type: ignore[arg-type]
    net.pump()
    incoming = [e for e in net.b_events if isinstance(e, CallReceived)]
    assert incoming, net.a_events
    return call_id, incoming[-1]


def established(net: Net) -> str:
    call_id, _ = call_in(net)
    net.b.answer(call_id, net.now, local_rtp_port=40000)
    net.pump()
    return call_id


def codes(messages: list[Request | Response]) -> list[int]:
    return [m.status_code for m in messages if isinstance(m, Response)]


def test_call_answered_and_hung_up_by_caller() -> None:
    net = make_net()
    call_id, incoming = call_in(net)
    assert incoming.call_id == call_id
    assert incoming.from_uri == "sip:caller@10.0.0.1:5060"
    assert incoming.negotiation is not None and incoming.negotiation.remote_rtp_port == 30000
    assert incoming.negotiation.codec == "PCMU" and incoming.negotiation.telephone_event_pt == 101
    net.b.ringing(call_id, net.now)
    net.pump()
    assert [(type(e), getattr(e, "status_code", None)) for e in net.a_events] == [(CallProgressed, 180)]
    net.b.answer(call_id, net.now, local_rtp_host="10.0.0.2", local_rtp_port=40000)
    net.pump()
    a_up = [e for e in net.a_events if isinstance(e, CallEstablished)]
    assert a_up and a_up[0].negotiation is not None
    assert (a_up[0].negotiation.remote_rtp_host, a_up[0].negotiation.remote_rtp_port) == ("10.0.0.2", 40000)
    assert [type(e) for e in net.b_events] == [CallReceived, AckReceived, CallEstablished]
    assert codes(net.sent_by("10.0.0.2")) == [100, 180, 200]
    net.a.hangup(call_id, net.now)
    net.pump()
    assert net.a_events[-1] == CallTerminated(call_id, "local_bye")
    assert net.b_events[-1] == CallTerminated(call_id, "remote_bye")
    assert codes(net.sent_by("10.0.0.2"))[-1] == 200
    assert net.a.active_calls == 0 and net.b.active_calls == 0


def test_bot_hangs_up() -> None:
    net = make_net()
    call_id = established(net)
    net.b.hangup(call_id, net.now)
    net.pump()
    assert net.b_events[-1] == CallTerminated(call_id, "local_bye")
    assert net.a_events[-1] == CallTerminated(call_id, "remote_bye")
    bye = [m for m in net.sent_by("10.0.0.2") if isinstance(m, Request) and m.method == "BYE"]
    assert len(bye) == 1 and bye[0].uri.serialize() == "sip:caller@10.0.0.1:5060"


def test_cancel_before_answer_gets_487_and_no_200() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    net.a.hangup(call_id, net.now)
    net.pump()
    assert net.b_events[-1] == CallTerminated(call_id, "cancelled", 487, "Request Terminated")
    assert net.a_events[-1] == CallTerminated(call_id, "local_cancel", 487, "Request Terminated")
    sent = net.sent_by("10.0.0.2")
    assert 200 not in [m.status_code for m in sent if isinstance(m, Response) and m.cseq.method == "INVITE"]
    assert [m.status_code for m in sent if isinstance(m, Response) and m.cseq.method == "CANCEL"] == [200]
    # §9.2: the 200 to the CANCEL carries the To tag of the responses to the INVITE
    tags = {m.to_addr.tag for m in sent if isinstance(m, Response) and m.status_code > 100}
    assert len(tags) == 1 and None not in tags
    with pytest.raises(SipStateError, match="does not exist or has ended"):
        net.b.answer(call_id, net.now, local_rtp_port=40000)
    # the 487 was ACKed: nothing is retransmitted afterwards
    before = len(net.wire)
    net.advance(40)
    assert len(net.wire) == before


def test_reject_reports_failure_to_caller() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    with pytest.raises(SipStateError, match="needs a 3xx-6xx"):
        net.b.reject(call_id, net.now, 200)
    net.b.reject(call_id, net.now, 486)
    net.pump()
    assert net.a_events[-1] == CallTerminated(call_id, "failed", 486, "Busy Here")
    assert net.b_events[-1] == CallTerminated(call_id, "rejected", 486, "Busy Here")
    with pytest.raises(SipStateError, match="does not exist or has ended"):
        net.b.reject(call_id, net.now, 486)


def test_no_common_codec_gets_488() -> None:
    net = make_net(a_config=UaConfig(local_host=A_ADDR[0], codecs=("PCMA",)))
    net.b = UserAgent(UaConfig(local_host=B_ADDR[0], codecs=("PCMU",)))
    call_id = net.a.invite("sip:bot@10.0.0.2", 0.0, local_rtp_port=30000)
    net.pump()
    assert net.a_events[-1].status_code == 488  # type: ignore[union-attr]
    assert not [e for e in net.b_events if isinstance(e, CallReceived)]
    assert isinstance(net.a_events[-1], CallTerminated) and net.a_events[-1].call_id == call_id


def test_pcma_only_offer_is_answered_with_pcma() -> None:
    net = make_net(a_config=UaConfig(local_host=A_ADDR[0], codecs=("PCMA",)))
    call_id, incoming = call_in(net)
    assert incoming.negotiation is not None and incoming.negotiation.payload_type == 8
    net.b.answer(call_id, net.now, local_rtp_port=40000)
    net.pump()
    up = [e for e in net.a_events if isinstance(e, CallEstablished)]
    assert up[0].negotiation is not None and up[0].negotiation.codec == "PCMA"


def test_max_calls_gets_503_with_retry_after() -> None:
    net = make_net(b_config=UaConfig(local_host=B_ADDR[0], max_calls=1, retry_after_s=7))
    established(net)
    second = net.a.invite("sip:bot@10.0.0.2", net.now, local_rtp_port=30002)
    net.pump()
    assert net.a_events[-1] == CallTerminated(second, "failed", 503, "Busy: max calls reached")
    busy = [m for m in net.sent_by("10.0.0.2") if isinstance(m, Response) and m.status_code == 503]
    assert busy[0].headers.get("Retry-After") == "7"
    assert net.b.stats.busy_rejected == 1


def test_inbound_digest_auth_and_source_networks() -> None:
    users = (("trunk", "s3cret"),)
    net = make_net(b_config=UaConfig(local_host=B_ADDR[0], inbound_users=users))
    _call_id, _ = call_in(net, credentials=Credentials("trunk", "s3cret"))
    invites = [m for m in net.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == "INVITE"]
    assert len(invites) == 2 and "Authorization" in invites[1].headers
    assert invites[1].cseq.seq == invites[0].cseq.seq + 1
    assert codes(net.sent_by("10.0.0.2"))[:2] == [401, 100]
    # wrong password: challenged again, then the caller gives up with the 401
    net2 = make_net(b_config=UaConfig(local_host=B_ADDR[0], inbound_users=users))
    bad = net2.a.invite("sip:bot@10.0.0.2", 0.0, local_rtp_port=1, credentials=Credentials("trunk", "no"))
    net2.pump()
    assert net2.a_events[-1] == CallTerminated(bad, "failed", 401, "Unauthorized")
    assert not [e for e in net2.b_events if isinstance(e, CallReceived)]
    # a source outside the trunk networks, with no digest users: 403
    net3 = make_net(b_config=UaConfig(local_host=B_ADDR[0], allowed_networks=("192.0.2.0/24",)))
    denied = net3.a.invite("sip:bot@10.0.0.2", 0.0, local_rtp_port=1)
    net3.pump()
    assert net3.a_events[-1] == CallTerminated(denied, "failed", 403, "Forbidden: source address not allowed")
    # inside the networks: no challenge
    net4 = make_net(
        b_config=UaConfig(local_host=B_ADDR[0], allowed_networks=("10.0.0.0/8",), inbound_users=users)
    )
    call_in(net4)
    assert codes(net4.sent_by("10.0.0.2")) == [100]


def test_uac_answers_407_with_proxy_authorization() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(3))
    call_id = ua.invite("sip:1000@10.0.0.9", 0.0, local_rtp_port=30000, credentials=Credentials("bob", "pw"))
    ((data, dest),) = ua.datagrams_to_send()
    invite = parse_message(data)
    assert isinstance(invite, Request) and dest == ("10.0.0.9", 5060)
    proxy = DigestServer("proxy.example", {"bob": "pw"})
    challenge = proxy.challenge("nonce-1", 0.0)
    resp = make_response(invite, 407, to_tag="p1", extra=(("Proxy-Authenticate", challenge),))
    ua.receive_datagram(resp.serialize(), ("10.0.0.9", 5060), 0.1)
    ack, second = (parse_message(d) for d, _ in ua.datagrams_to_send())
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to_addr.tag == "p1"
    assert isinstance(second, Request) and second.method == "INVITE" and second.cseq.seq == 2
    value = second.headers.get("Proxy-Authorization")
    assert value is not None
    assert proxy.verify(value, method="INVITE", now=0.2) == (True, False)
    assert parse_auth_params(value)[1]["qop"] == "auth"
    assert parse_challenge(challenge).realm == "proxy.example"
    assert ua.call_state(call_id) == "calling"


def test_lost_invite_is_retransmitted_and_timer_b_ends_an_unanswered_call() -> None:
    net = make_net()
    lost = {"n": 0}

    def drop_first_invite(data: bytes) -> bool:
        if data.startswith(b"INVITE") and lost["n"] == 0:
            lost["n"] += 1
            return True
        return False

    net.drop = drop_first_invite
    call_id = net.a.invite("sip:bot@10.0.0.2", 0.0, local_rtp_port=30000)
    net.pump()
    assert not net.b_events
    net.advance(0.5)
    assert [type(e) for e in net.b_events] == [CallReceived]
    # no one there: Timer B (64*T1 = 32 s) ends the call
    net2 = make_net()
    net2.drop = lambda data: True
    gone = net2.a.invite("sip:bot@10.0.0.2", 0.0, local_rtp_port=30000)
    net2.advance(31.5)
    assert not net2.a_events
    invites = [m for m in net2.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == "INVITE"]
    assert len(invites) == 7  # 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (Timer A doubling)
    net2.advance(1.0)
    assert net2.a_events == [CallTerminated(gone, "timeout", 408, "no response to INVITE")]
    assert call_id


def test_200_retransmitted_until_ack_then_bye_when_it_never_comes() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.drop = lambda data: data.startswith(b"ACK")
    net.b.answer(call_id, net.now, local_rtp_port=40000)
    net.pump()
    net.advance(33)
    oks = [m for m in net.sent_by("10.0.0.2") if isinstance(m, Response) and m.status_code == 200]
    assert len(oks) >= 6  # the first 200 and Timer G style retransmissions
    assert net.b_events[-1] == CallTerminated(call_id, "ack-timeout", 408, "no ACK for 200 OK")
    assert any(isinstance(m, Request) and m.method == "BYE" for m in net.sent_by("10.0.0.2"))


def test_hold_and_unhold_by_reinvite() -> None:
    net = make_net()
    call_id = established(net)
    net.a.update_media(call_id, net.now, direction="sendonly")
    net.pump()
    b_change = [e for e in net.b_events if isinstance(e, RemoteMediaChanged)]
    a_change = [e for e in net.a_events if isinstance(e, RemoteMediaChanged)]
    assert b_change[-1].negotiation.direction == "recvonly" and b_change[-1].negotiation.on_hold
    assert a_change[-1].negotiation.direction == "sendonly"
    net.a.update_media(call_id, net.now, direction="sendrecv", local_rtp_port=30010)
    net.pump()
    b_change = [e for e in net.b_events if isinstance(e, RemoteMediaChanged)]
    assert (
        b_change[-1].negotiation.direction == "sendrecv" and b_change[-1].negotiation.remote_rtp_port == 30010
    )
    assert not b_change[-1].negotiation.on_hold
    # the re-INVITE 200s were ACKed: nothing left to retransmit
    before = len(net.wire)
    net.advance(40)
    assert len(net.wire) == before
    assert net.b.call_state(call_id) == "confirmed"


def _in_dialog_answered(net: Net, call_id: str, method: str, code: int) -> None:
    """Send ``method`` in the call from A, but answer it with ``code`` in B's place."""
    net.drop = lambda data: data.startswith(b"SIP/2.0 ") and f" {method}\r\n".encode() in data
    if method == "INVITE":
        net.a.update_media(call_id, net.now, direction="sendonly")
    elif method == "REFER":
        net.a.refer(call_id, "sip:agent@10.0.0.7", net.now)
    else:
        net.a.send_dtmf_info(call_id, "5", net.now)
    net.pump()
    request = [m for m in net.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == method][-1]
    net.drop = None
    net.a.receive_datagram(make_response(request, code).serialize(), B_ADDR, net.now)
    net.pump()


@pytest.mark.parametrize(("method", "name"), [("INVITE", "re-INVITE"), ("REFER", "REFER"), ("INFO", "INFO")])
def test_481_to_an_in_dialog_request_ends_the_call_without_bye(method: str, name: str) -> None:
    # §12.2.1.2 / §14.1: the peer has no such dialog; a BYE would only get another 481
    net = make_net()
    call_id = established(net)
    _in_dialog_answered(net, call_id, method, 481)
    assert net.a_events[-1] == CallTerminated(
        call_id, "failed", 481, f"{name} got 481: the peer has no such dialog"
    )
    assert not any(isinstance(m, Request) and m.method == "BYE" for m in net.sent_by("10.0.0.1"))
    with pytest.raises(SipStateError):
        net.a.hangup(call_id, net.now)


@pytest.mark.parametrize(("method", "name"), [("INVITE", "re-INVITE"), ("REFER", "REFER"), ("INFO", "INFO")])
def test_408_to_an_in_dialog_request_ends_the_call_with_bye(method: str, name: str) -> None:
    net = make_net()
    call_id = established(net)
    _in_dialog_answered(net, call_id, method, 408)
    assert net.a_events[-1] == CallTerminated(
        call_id, "failed", 408, f"{name} got 408: the peer did not answer it"
    )
    assert any(isinstance(m, Request) and m.method == "BYE" for m in net.sent_by("10.0.0.1"))
    assert net.b_events[-1] == CallTerminated(call_id, "remote_bye")


@pytest.mark.parametrize(("method", "name"), [("INVITE", "re-INVITE"), ("REFER", "REFER"), ("INFO", "INFO")])
def test_an_in_dialog_request_never_answered_ends_the_call_with_bye(method: str, name: str) -> None:
    # §12.2.1.2: "A UAC SHOULD also terminate a dialog if no response at all is received"
    net = make_net()
    call_id = established(net)
    net.drop = lambda data: data.startswith(b"SIP/2.0 ")
    if method == "INVITE":
        net.a.update_media(call_id, net.now, direction="sendonly")
    elif method == "REFER":
        net.a.refer(call_id, "sip:agent@10.0.0.7", net.now)
    else:
        net.a.send_dtmf_info(call_id, "5", net.now)
    net.pump()
    net.advance(33.0, step=0.5)
    ended = [e for e in net.a_events if isinstance(e, CallTerminated)]
    assert ended == [CallTerminated(call_id, "failed", 408, f"no response to {name}")]
    assert any(isinstance(m, Request) and m.method == "BYE" for m in net.sent_by("10.0.0.1"))


def test_reinvite_without_common_codec_gets_488_and_call_survives() -> None:
    net = make_net()
    call_id = established(net)
    net.a.config = replace(net.a.config, codecs=("PCMA",))
    net.b.config = replace(net.b.config, codecs=("PCMU",))
    net.a.update_media(call_id, net.now)
    net.pump()
    assert 488 in codes(net.sent_by("10.0.0.2"))
    assert net.b.call_state(call_id) == "confirmed"


def test_info_dtmf_digits() -> None:
    net = make_net()
    call_id = established(net)
    for digit in "5#":
        net.a.send_dtmf_info(call_id, digit, net.now, duration_ms=100)
        net.pump()
    digits = [e for e in net.b_events if isinstance(e, InfoDtmfReceived)]
    assert digits == [InfoDtmfReceived(call_id, "5", 100), InfoDtmfReceived(call_id, "#", 100)]
    with pytest.raises(SipStateError, match="is not a DTMF digit"):
        net.a.send_dtmf_info(call_id, "x", net.now)


def _in_dialog(net: Net, call_id: str, method: str, headers: str, body: bytes, cseq: int) -> bytes:
    """A request from the callee (B) to the caller (A) in their dialog, written by hand."""
    invite = next(m for m in net.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == "INVITE")
    ok = next(m for m in net.sent_by("10.0.0.2") if isinstance(m, Response) and m.status_code == 200)
    return (
        f"{method} sip:caller@10.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK{method}{cseq}\r\n"
        f"From: {ok.headers.get('To')}\r\nTo: {invite.headers.get('From')}\r\nCall-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n{headers}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def test_refer_reports_response_and_notify_sipfrag() -> None:
    net = make_net()
    call_id = established(net)
    net.a.refer(call_id, "sip:agent@10.0.0.7", net.now)
    net.pump()
    refer = next(m for m in net.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == "REFER")
    assert refer.headers.get("Refer-To") == "<sip:agent@10.0.0.7>"
    # our own UA does not accept REFER: the caller of the API hears the 405
    assert net.a_events[-1] == TransferProgressed(call_id, 405, "Method Not Allowed", final=True)
    for cseq, frag, state in (
        (900, "SIP/2.0 100 Trying", "active;expires=60"),
        (901, "SIP/2.0 200 OK", "terminated"),
    ):
        data = _in_dialog(
            net,
            call_id,
            "NOTIFY",
            f"Event: refer\r\nSubscription-State: {state}\r\nContent-Type: message/sipfrag\r\n",
            frag.encode(),
            cseq,
        )
        net.a.receive_datagram(data, B_ADDR, net.now)
        ((reply, _),) = net.a.datagrams_to_send()
        assert parse_message(reply).status_code == 200  # type: ignore[union-attr]
    events = [e for e in [net.a.next_event(), net.a.next_event()] if e is not None]
    assert events == [
        TransferProgressed(call_id, 100, "Trying", final=False),
        TransferProgressed(call_id, 200, "OK", final=True),
    ]


def test_in_dialog_errors() -> None:
    net = make_net()
    call_id = established(net)
    stale = _in_dialog(net, call_id, "INFO", "", b"", 1)  # CSeq lower than what A used? A never sent one.
    net.a.receive_datagram(stale, B_ADDR, net.now)
    assert parse_message(net.a.datagrams_to_send()[0][0]).status_code == 200  # type: ignore[union-attr]
    again = _in_dialog(net, call_id, "INFO", "", b"", 1).replace(b"INFO1", b"INFOx")
    net.a.receive_datagram(again, B_ADDR, net.now)
    assert parse_message(net.a.datagrams_to_send()[0][0]).status_code == 500  # type: ignore[union-attr]
    unknown = _in_dialog(net, "nope", "BYE", "", b"", 5)
    net.a.receive_datagram(unknown, B_ADDR, net.now)
    assert parse_message(net.a.datagrams_to_send()[0][0]).status_code == 481  # type: ignore[union-attr]
    bad_event = _in_dialog(net, call_id, "NOTIFY", "Event: presence\r\n", b"", 7)
    net.a.receive_datagram(bad_event, B_ADDR, net.now)
    assert parse_message(net.a.datagrams_to_send()[0][0]).status_code == 489  # type: ignore[union-attr]
    bad_dtmf = _in_dialog(
        net, call_id, "INFO", "Content-Type: application/dtmf-relay\r\n", b"Signal=Q\r\n", 8
    )
    net.a.receive_datagram(bad_dtmf, B_ADDR, net.now)
    reply = parse_message(net.a.datagrams_to_send()[0][0])
    assert isinstance(reply, Response) and reply.status_code == 400 and "DTMF" in reply.reason


OPTIONS = (
    "OPTIONS sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5060;branch=z9hG4bK{n}\r\n"
    "From: <sip:scan@{host}>;tag=1\r\nTo: <sip:bot@10.0.0.2>\r\nCall-ID: {n}@x\r\nCSeq: 1 OPTIONS\r\n"
    "Content-Length: 0\r\n\r\n"
)


def test_options_answer_and_rate_limit_per_source() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.2", rate_limit_per_s=5, rate_limit_burst=10))
    for n in range(100):
        ua.receive_datagram(OPTIONS.format(host="198.51.100.7", n=n).encode(), ("198.51.100.7", 5060), 0.0)
    answered = ua.datagrams_to_send()
    assert len(answered) == 10
    assert ua.stats.rate_limited == 90
    first = parse_message(answered[0][0])
    assert isinstance(first, Response) and first.status_code == 200
    assert "INVITE" in (first.headers.get("Allow") or "") and "application/sdp" in (
        first.headers.get("Accept") or ""
    )
    # another source is not starved by the scanner
    ua.receive_datagram(OPTIONS.format(host="10.0.0.1", n="real").encode(), ("10.0.0.1", 5060), 0.0)
    assert len(ua.datagrams_to_send()) == 1
    # and the scanner's bucket refills with time
    ua.receive_datagram(OPTIONS.format(host="198.51.100.7", n=1000).encode(), ("198.51.100.7", 5060), 1.0)
    assert len(ua.datagrams_to_send()) == 1


def test_malformed_request_gets_400_and_ua_continues() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.2"))
    bad = OPTIONS.format(host="10.0.0.1", n=1).replace("CSeq: 1 OPTIONS", "CSeq: x OPTIONS")
    ua.receive_datagram(bad.encode(), ("10.0.0.1", 5060), 0.0)
    ((data, dest),) = ua.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 400 CSeq must be a number and a method, got 'x OPTIONS'\r\n")
    assert dest == ("10.0.0.1", 5060)
    assert ua.next_event() == MessageRejected(
        ("10.0.0.1", 5060), 400, "CSeq must be a number and a method, got 'x OPTIONS'"
    )
    ua.receive_datagram(b"\xff\xfe garbage", ("10.0.0.1", 5060), 0.0)
    assert ua.datagrams_to_send() == []
    ua.receive_datagram(b"\r\n\r\n", ("10.0.0.1", 5060), 0.0)  # keep-alive: ignored silently
    ua.receive_datagram(OPTIONS.format(host="10.0.0.1", n=2).encode(), ("10.0.0.1", 5060), 0.0)
    assert parse_message(ua.datagrams_to_send()[0][0]).status_code == 200  # type: ignore[union-attr]


def test_register_with_digest_and_refresh() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(4))
    registrar = DigestServer("pbx", {"100": "pw"})
    reg_id = ua.register(
        "sip:10.0.0.5", 0.0, aor="sip:100@10.0.0.5", credentials=Credentials("100", "pw"), expires_s=120
    )
    ((data, dest),) = ua.datagrams_to_send()
    first = parse_message(data)
    assert isinstance(first, Request) and first.method == "REGISTER" and dest == ("10.0.0.5", 5060)
    challenge = make_response(
        first, 401, to_tag="r", extra=(("WWW-Authenticate", registrar.challenge("n", 0.0)),)
    )
    ua.receive_datagram(challenge.serialize(), dest, 0.1)
    ((data, _),) = ua.datagrams_to_send()
    second = parse_message(data)
    assert isinstance(second, Request) and second.cseq.seq == 2
    assert registrar.verify(second.headers.get("Authorization") or "", method="REGISTER", now=0.2)[0]
    ok = make_response(second, 200, to_tag="r", extra=(("Contact", "<sip:caller@10.0.0.1:5060>;expires=60"),))
    ua.receive_datagram(ok.serialize(), dest, 0.2)
    assert ua.next_event() == RegistrationChanged(reg_id, True, 200, 60)
    timer = ua.get_timer()
    assert timer is not None and timer <= 30.2
    ua.handle_timer(30.2)
    refresh = [parse_message(d) for d, _ in ua.datagrams_to_send()]
    assert any(isinstance(m, Request) and m.method == "REGISTER" and m.cseq.seq == 3 for m in refresh)


def test_register_423_is_retried_at_once_with_min_expires_then_abandoned_when_unusable() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(5))
    reg_id = ua.register("sip:10.0.0.5", 0.0, aor="sip:100@10.0.0.5", expires_s=60)
    ((data, dest),) = ua.datagrams_to_send()
    first = parse_message(data)
    assert isinstance(first, Request) and first.headers.get("Expires") == "60"
    too_brief = make_response(first, 423, to_tag="r", extra=(("Min-Expires", "1800"),))
    ua.receive_datagram(too_brief.serialize(), dest, 0.1)
    # no event and no waiting for the retry timer: the raised REGISTER goes out with the 423
    assert ua.next_event() is None
    ((data, _),) = ua.datagrams_to_send()
    second = parse_message(data)
    assert isinstance(second, Request) and second.cseq.seq == 2 and second.headers.get("Expires") == "1800"
    # a registrar that then asks for no more than that is broken: the registration ends, said why
    ua.receive_datagram(
        make_response(second, 423, to_tag="r", extra=(("Min-Expires", "900"),)).serialize(), dest, 0.2
    )
    reason = (
        "registration abandoned: 423 Interval Too Brief with Min-Expires 900 s, not above the 1800 s "
        "we asked for; the registrar is at fault"
    )
    assert ua.next_event() == RegistrationChanged(reg_id, False, 423, 0, reason)
    ua.handle_timer(100.0)
    assert not any(
        isinstance(m, Request) and m.method == "REGISTER"
        for m in (parse_message(d) for d, _ in ua.datagrams_to_send())
    )
    with pytest.raises(SipStateError):
        ua.unregister(reg_id, 101.0)


def test_unregister_during_a_refresh_waits_for_its_answer() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(6))
    reg_id = ua.register("sip:10.0.0.5", 0.0, aor="sip:100@10.0.0.5", expires_s=120)
    ((data, dest),) = ua.datagrams_to_send()
    first = parse_message(data)
    assert isinstance(first, Request)
    ua.receive_datagram(make_response(first, 200, to_tag="r").serialize(), dest, 0.1)
    assert ua.next_event() == RegistrationChanged(reg_id, True, 200, 120)
    ua.handle_timer(60.1)
    ((data, _),) = ua.datagrams_to_send()
    refresh = parse_message(data)
    assert isinstance(refresh, Request) and refresh.headers.get("Expires") == "120"
    # §10.2: while the refresh awaits its answer, no second REGISTER for the binding
    ua.unregister(reg_id, 60.2)
    assert ua.datagrams_to_send() == []
    ua.receive_datagram(make_response(refresh, 200, to_tag="r").serialize(), dest, 60.3)
    ((data, _),) = ua.datagrams_to_send()
    bye = parse_message(data)
    assert isinstance(bye, Request) and bye.headers.get("Expires") == "0" and bye.cseq.seq == 3
    assert ua.next_event() is None  # the refresh's 200 neither registers nor unregisters
    ua.receive_datagram(make_response(bye, 200, to_tag="r").serialize(), dest, 60.4)
    assert ua.next_event() == RegistrationChanged(reg_id, False, 200, 0)


def test_unanswered_unregister_stops_when_the_binding_would_have_ended() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(8))
    reg_id = ua.register("sip:10.0.0.5", 0.0, aor="sip:100@10.0.0.5", expires_s=60)
    ((data, dest),) = ua.datagrams_to_send()
    first = parse_message(data)
    assert isinstance(first, Request)
    ua.receive_datagram(make_response(first, 200, to_tag="r").serialize(), dest, 0.1)
    assert ua.next_event() == RegistrationChanged(reg_id, True, 200, 60)
    ua.unregister(reg_id, 1.0)
    now = 1.0
    while (timer := ua.get_timer()) is not None:
        now = timer
        ua.handle_timer(now)
    # Timer F (32 s) ended the only unREGISTER: a retry 30 s later would come after the binding's end
    assert now == 33.0
    events = []
    while (event := ua.next_event()) is not None:
        events.append(event)
    assert events == [RegistrationChanged(reg_id, False, 408, 0)]
    with pytest.raises(SipStateError):
        ua.unregister(reg_id, now)


def test_unanswered_calls_time_out_both_ways() -> None:
    net = make_net(
        a_config=UaConfig(local_host=A_ADDR[0], outbound_timeout_s=100.0),
        b_config=UaConfig(local_host=B_ADDR[0], answer_timeout_s=10.0),
    )
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    net.advance(10.5, step=0.5)
    reason = "Temporarily Unavailable: not answered in time"
    assert net.b_events[-1] == CallTerminated(call_id, "timeout", 480, reason)
    assert net.a_events[-1] == CallTerminated(call_id, "failed", 480, reason)
    # our own INVITE that rings too long is CANCELled
    net2 = make_net(a_config=UaConfig(local_host=A_ADDR[0], outbound_timeout_s=5.0))
    second, _ = call_in(net2)
    net2.b.ringing(second, net2.now)
    net2.pump()
    net2.advance(5.5, step=0.5)
    assert net2.a_events[-1] == CallTerminated(second, "local_cancel", 487, "Request Terminated")
    assert net2.b_events[-1] == CallTerminated(second, "cancelled", 487, "Request Terminated")


def test_cancelled_invite_without_a_final_response_ends_64_t1_after_the_cancel() -> None:
    # §9.1: a peer that answers our CANCEL but whose 487 never arrives must not hold the call (and
    # its slot) forever: 64*T1 after the CANCEL the INVITE transaction is given up
    net = make_net(a_config=UaConfig(local_host=A_ADDR[0], outbound_timeout_s=5.0))
    net.drop = lambda data: data.startswith(b"SIP/2.0 487")
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    net.advance(5.5, step=0.5)
    assert any(host == "10.0.0.1" and data.startswith(b"CANCEL ") for host, data in net.wire)  # at 5.0 s
    assert net.a.active_calls == 1
    net.advance(31.0, step=0.5)
    assert net.a.active_calls == 1  # still waiting for the 487 at 36.5 s
    net.advance(1.5, step=0.5)
    assert net.a_events[-1] == CallTerminated(
        call_id, "local_cancel", 408, "no final response to INVITE after CANCEL"
    )
    assert net.a.active_calls == 0 and net.a.get_timer() is None


def test_bye_in_early_dialog_ends_the_invite_with_487() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    invite = next(m for m in net.sent_by("10.0.0.1") if isinstance(m, Request) and m.method == "INVITE")
    ringing = next(m for m in net.sent_by("10.0.0.2") if isinstance(m, Response) and m.status_code == 180)
    bye = (
        "BYE sip:bot@10.0.0.2:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKearlybye\r\n"
        f"From: {invite.headers.get('From')}\r\nTo: {ringing.headers.get('To')}\r\nCall-ID: {call_id}\r\n"
        "CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    net.b.receive_datagram(bye, A_ADDR, net.now)
    replies = [parse_message(d) for d, _ in net.b.datagrams_to_send()]
    assert [(r.status_code, r.cseq.method) for r in replies if isinstance(r, Response)] == [
        (200, "BYE"),
        (487, "INVITE"),
    ]
    assert net.b.next_event() == CallTerminated(call_id, "remote_bye")


def test_early_media_183_reports_negotiation() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.1"), rng=random.Random(5))
    call_id = ua.invite("sip:bob@10.0.0.9", 0.0, local_rtp_port=30000)
    ((data, dest),) = ua.datagrams_to_send()
    invite = parse_message(data)
    assert isinstance(invite, Request)
    sdp = b"v=0\r\no=b 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 5004 RTP/AVP 8\r\n"
    extra = (("Content-Type", "application/sdp"), ("Contact", "<sip:bob@10.0.0.9>"))
    progress = make_response(invite, 183, to_tag="t", extra=extra, body=sdp)
    ua.receive_datagram(progress.serialize(), dest, 0.1)
    event = ua.next_event()
    assert isinstance(event, CallProgressed) and event.status_code == 183
    assert event.negotiation is not None
    assert (event.negotiation.remote_rtp_port, event.negotiation.codec) == (5004, "PCMA")
    ok = make_response(invite, 200, to_tag="t", extra=extra, body=sdp)
    ua.receive_datagram(ok.serialize(), dest, 0.2)
    assert ua.next_event() == CallEstablished(call_id, event.negotiation)
    ((ack_data, _),) = ua.datagrams_to_send()
    ack = parse_message(ack_data)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri.serialize() == "sip:bob@10.0.0.9"
    # a retransmitted 200 is ACKed again, without a second CallEstablished
    ua.receive_datagram(ok.serialize(), dest, 0.7)
    assert [d for d, _ in ua.datagrams_to_send()] == [ack_data]
    assert ua.next_event() is None


OFFERLESS = (
    "INVITE sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnooffer\r\n"
    "From: <sip:a@10.0.0.1>;tag=f1\r\nTo: <sip:bot@10.0.0.2>\r\nCall-ID: nooffer\r\nCSeq: 1 INVITE\r\n"
    "Contact: <sip:a@10.0.0.1>\r\nContent-Length: 0\r\n\r\n"
)


def test_offerless_invite_gets_our_offer_and_the_answer_in_ack() -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.2"), rng=random.Random(6))
    ua.receive_datagram(OFFERLESS.encode(), A_ADDR, 0.0)
    received = ua.next_event()
    assert isinstance(received, CallReceived) and received.negotiation is None
    ua.datagrams_to_send()
    ua.answer("nooffer", 0.0, local_rtp_port=40000)
    ok = parse_message(ua.datagrams_to_send()[0][0])
    assert isinstance(ok, Response) and ok.status_code == 200 and b"m=audio 40000 RTP/AVP 0 8 101" in ok.body
    answer = (
        b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 8\r\n"
    )
    ack = (
        "ACK sip:bot@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKack\r\n"
        f"From: <sip:a@10.0.0.1>;tag=f1\r\nTo: {ok.headers.get('To')}\r\nCall-ID: nooffer\r\nCSeq: 1 ACK\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(answer)}\r\n\r\n"
    ).encode() + answer
    ua.receive_datagram(ack, A_ADDR, 0.1)
    acked = ua.next_event()
    assert isinstance(acked, AckReceived) and acked.negotiation is not None and not acked.reinvite
    up = ua.next_event()
    assert isinstance(up, CallEstablished) and up.negotiation is not None
    assert (up.negotiation.remote_rtp_port, up.negotiation.codec) == (6000, "PCMA")


def test_app_reason_phrase_cannot_inject_headers() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.b.reject(call_id, net.now, 603, "Decline\r\nX-Injected: yes")
    net.pump()
    final = next(m for m in net.sent_by("10.0.0.2") if isinstance(m, Response) and m.status_code == 603)
    assert final.reason == "Decline X-Injected: yes"
    assert "X-Injected" not in final.headers


def test_trunk_networks_are_exempt_from_the_rate_limit() -> None:
    ua = UserAgent(
        UaConfig(
            local_host="10.0.0.2", rate_limit_per_s=1, rate_limit_burst=2, allowed_networks=("10.0.0.0/24",)
        )
    )
    for n in range(50):
        ua.receive_datagram(OPTIONS.format(host="10.0.0.1", n=n).encode(), ("10.0.0.1", 5060), 0.0)
    assert len(ua.datagrams_to_send()) == 50 and ua.stats.rate_limited == 0
    for n in range(50):
        ua.receive_datagram(OPTIONS.format(host="192.0.2.9", n=n).encode(), ("192.0.2.9", 5060), 0.0)
    assert len(ua.datagrams_to_send()) == 2 and ua.stats.rate_limited == 48


_METHODS = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY", "REFER", "PRACK", "FOO"]
_BODIES = [
    "",
    "v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\n",
    "v=0\r\nm=audio x\r\n",
    "Signal=5\r\nDuration=100\r\n",
    "SIP/2.0 200 OK",
]
_CTYPES = [
    "",
    "Content-Type: application/sdp\r\n",
    "Content-Type: application/dtmf-relay\r\n",
    "Content-Type: message/sipfrag\r\n",
    "Content-Type: text/plain\r\n",
]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_METHODS),
            st.sampled_from(["", ";tag=t1", ";tag=unknown"]),
            st.sampled_from(["c1", "c2"]),
            st.integers(min_value=0, max_value=3),
            st.sampled_from(_BODIES),
            st.sampled_from(_CTYPES),
            st.sampled_from(["z9hG4bKa", "z9hG4bKb", "", "z9hG4bK"]),
            st.booleans(),
        ),
        max_size=25,
    )
)
def test_user_agent_never_raises_on_peer_input(
    script: list[tuple[str, str, str, int, str, str, str, bool]],
) -> None:
    ua = UserAgent(UaConfig(local_host="10.0.0.2"), rng=random.Random(7))
    now = 0.0
    for method, to_tag, call_id, cseq, body, ctype, branch, response in script:
        if response:
            start = "SIP/2.0 200 OK"
            cseq_method = "INVITE"
        else:
            start = f"{method} sip:bot@10.0.0.2 SIP/2.0"
            cseq_method = method
        data = (
            f"{start}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch={branch}\r\nFrom: <sip:a@10.0.0.1>;tag=f1\r\n"
            f"To: <sip:bot@10.0.0.2>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {cseq_method}\r\n"
            f"Contact: <sip:a@10.0.0.1>\r\nEvent: refer\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        ua.receive_datagram(data, A_ADDR, now)
        while (event := ua.next_event()) is not None:
            if isinstance(event, CallReceived) and cseq % 2 == 0:
                ua.answer(event.call_id, now, local_rtp_port=40000)
        now += 0.3
        if (timer := ua.get_timer()) is not None and timer <= now:
            ua.handle_timer(now)
    ua.handle_timer(now + 100)
    ua.datagrams_to_send()
    ua.receive_datagram(OPTIONS.format(host="10.0.0.1", n="final").encode(), A_ADDR, now + 100)
    reply = parse_message(ua.datagrams_to_send()[0][0])
    assert isinstance(reply, Response) and reply.status_code == 200
