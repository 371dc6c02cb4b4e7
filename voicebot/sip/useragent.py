"""The sans-IO SIP user agent: datagrams and ``now`` in, datagrams and call events out.

Theory of operation. :class:`UserAgent` owns every transaction (``transaction.py``) and every
call (a :class:`~voicebot.sip.dialog.Dialog` plus its media negotiation). The adapter feeds it
``receive_datagram(data, source, now)`` and ``handle_timer(now)``, then drains
``datagrams_to_send()`` and ``next_event()``; the application answers with commands
(``ringing``, ``answer``, ``reject``, ``hangup``, ``refer``, ``invite``, ``register``,
``set_draining``). Events are in ``events.py``, settings in ``config.py``, the inbound policy in
``admission.py``, the REGISTER client in ``registration.py``; every deadline sits in one timer heap
(``timers.py``), so ``get_timer()`` is O(1) amortised and each change O(log n).

Inbound requests pass, in order: parsing (a malformed request gets 400/505 with the parser's
message as reason phrase; a malformed response is dropped), transaction matching (a
retransmission re-sends the last response, or is absorbed in RFC 6026's Accepted state, and
stops there), the per-source rate limit for every other request (excess dropped and counted),
the Request-URI scheme (416), the method (405 with Allow / 501), Require (420 with Unsupported),
then the method's own handling. Requests that create no state -- for an unknown dialog (481),
an unmatched CANCEL (481), a refused non-INVITE -- are answered statelessly (§8.2.7), so a flood
of them leaves no transaction behind. A new INVITE additionally passes admission (403 / 401, 415,
406, 503 for max_calls, draining, unconfirmed calls or calls per source, 400 / 488 for its SDP)
before the application sees a :class:`CallReceived`; the ACK of our 2xx is reported as
:class:`AckReceived`, and its absence after Timer H (64*T1) ends the call as ``ack-timeout``.
A 481 or 408 to a re-INVITE, REFER or INFO we sent in a call, or no answer at all, ends the call
as ``failed`` (§12.2.1.2, §14.1), with a BYE unless the peer said the dialog does not exist.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from voicebot.sip.admission import Admission, Refusal
from voicebot.sip.auth import Credentials, authorized_request
from voicebot.sip.bodies import DTMF_DIGITS, DTMF_INFO_TYPES, parse_dtmf_info, parse_sipfrag_status
from voicebot.sip.config import UaConfig
from voicebot.sip.dialog import Dialog
from voicebot.sip.errors import SdpNegotiationError, SipError, SipParseError, SipStateError
from voicebot.sip.events import (
    AckReceived,
    CallEndCause,
    CallEstablished,
    CallProgressed,
    CallReceived,
    CallTerminated,
    Event,
    InfoDtmfReceived,
    MessageRejected,
    RemoteMediaChanged,
    TransferProgressed,
)
from voicebot.sip.headers import Headers, NameAddr, parse_via
from voicebot.sip.message import Request, Response, make_raw_response, make_response, parse_message
from voicebot.sip.registration import RegistrationClient
from voicebot.sip.sdp import (
    MediaNegotiation,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from voicebot.sip.timers import TimerHeap
from voicebot.sip.transaction import (
    Address,
    ClientTransaction,
    Datagrams,
    ServerTransaction,
    client_key,
    response_destination,
    server_key,
    stamp_via,
)
from voicebot.sip.uri import OtherUri, SipUri, is_ip_literal, parse_uri

ALLOWED_METHODS = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "NOTIFY")
# Methods we know but do not accept get 405; anything else 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = ("REGISTER", "SUBSCRIBE", "MESSAGE", "PUBLISH", "UPDATE", "PRACK", "REFER")
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf, message/sipfrag"
SUPPORTED: tuple[str, ...] = ()
MAX_ENDED_INVITES = 10_000  # bound on remembered ended INVITEs (RFC 6026 absorption)


@dataclass(slots=True)
class UaStats:
    datagrams_in: int = 0
    malformed: int = 0
    rate_limited: int = 0
    access_denied: int = 0
    calls_in: int = 0
    calls_out: int = 0
    busy_rejected: int = 0  # 503: max_calls reached or draining
    unconfirmed_rejected: int = 0  # 503: too many unanswered / un-ACKed calls from untrusted sources
    per_source_rejected: int = 0  # 503: too many calls from one source address
    stateless_481: int = 0  # requests for unknown dialogs, answered without a transaction
    late_invites_absorbed: int = 0  # INVITE copies of a call that already ended (RFC 6026)
    responses: dict[int, int] = field(default_factory=dict)  # responses sent, by status code

    def response_sent(self, code: int) -> None:
        self.responses[code] = self.responses.get(code, 0) + 1


@dataclass(slots=True)
class _Call:
    call_id: str
    role: Literal["uas", "uac"]
    peer: Address
    invite: Request
    state: Literal["calling", "early", "answered", "confirmed", "ended"] = "calling"
    dialog: Dialog | None = None
    local_tag: str = ""
    server_txn: ServerTransaction | None = None  # the INVITE (or re-INVITE) we answer
    client_txn: ClientTransaction | None = None  # our INVITE
    remote_offer: SessionDescription | None = None
    negotiation: MediaNegotiation | None = None
    local_sdp: SessionDescription | None = None
    local_rtp: Address | None = None
    sdp_version: int = 1
    session_id: int = 0
    credentials: Credentials | None = None
    auth_attempts: int = 0
    cancel_requested: bool = False
    cancel_sent: bool = False
    ack: bytes | None = None  # our ACK for the 2xx, re-sent on 2xx retransmissions
    awaiting_offer_in_ack: bool = False
    reinvite_branch: str = ""
    timeout_at: float | None = None  # answer / no-answer deadline while the call is unanswered

    def deadline(self) -> float | None:
        return None if self.state == "ended" else self.timeout_at


_Timed = ServerTransaction | ClientTransaction | _Call | RegistrationClient


class UserAgent:
    """See the module docstring. Not thread-safe; one adapter drives it."""

    def __init__(self, config: UaConfig, *, rng: random.Random | None = None) -> None:
        config.validate()
        self.config = config
        self.stats = UaStats()
        self.admission = Admission(config)
        self.draining = False
        self._rng = rng or random.SystemRandom()
        self._out: Datagrams = []
        self._events: deque[Event] = deque()
        self._server_txns: dict[tuple[str, ...], ServerTransaction] = {}
        self._client_txns: dict[tuple[str, str], ClientTransaction] = {}
        self._client_owner: dict[tuple[str, str], tuple[str, str]] = {}
        self._calls: dict[str, _Call] = {}
        self._registrations: dict[str, RegistrationClient] = {}
        self._timers: TimerHeap[_Timed] = TimerHeap()
        # (Call-ID, From tag, CSeq, branch) of inbound INVITEs whose call ended -> until when a
        # retransmission of that INVITE is absorbed (RFC 6026 §7.1 keeps the transaction 64*T1; a
        # call may outlive it while a copy is still in flight). A new INVITE reusing the Call-ID
        # has a new branch and is a new call. Insertion order = expiry order.
        self._ended_invites: OrderedDict[tuple[str, str, int, str], float] = OrderedDict()

    # ------------------------------------------------------------ adapter interface

    def datagrams_to_send(self) -> Datagrams:
        # transactions hold a reference to this list, so empty it in place
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, call or registration (O(1) amortised)."""
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        for item in self._timers.pop_due(now):
            if isinstance(item, ServerTransaction):
                if self._server_txns.get(item.key) is not item:
                    continue
                if item.handle_timer(now):
                    self._server_timed_out(item, now)
                if item.terminated:
                    self._server_txns.pop(item.key, None)
            elif isinstance(item, ClientTransaction):
                if self._client_txns.get(item.key) is not item:
                    continue
                if item.handle_timer(now):
                    self._client_timed_out(item, now)
                if item.terminated:
                    self._client_txns.pop(item.key, None)
                    self._client_owner.pop(item.key, None)
            elif isinstance(item, _Call):
                if self._calls.get(item.call_id) is item and item.timeout_at is not None:
                    item.timeout_at = None
                    self._call_timed_out(item, now)
            elif self._registrations.get(item.registration_id) is item:
                self._send_register(item, now)

    @property
    def active_calls(self) -> int:
        return len(self._calls)  # an ended call leaves the table at once (_end)

    @property
    def live_transactions(self) -> int:
        return len(self._server_txns) + len(self._client_txns)

    def set_draining(self, draining: bool) -> None:
        """While draining, OPTIONS get 503 with Retry-After (a dispatcher takes us out of rotation)
        and new INVITEs 503; running calls go on (issue 13)."""
        self.draining = draining

    def load_header(self) -> tuple[str, str]:
        """``X-Voicebot-Load: <active>/<max>`` (docs/sip.md), on every OPTIONS answer."""
        return (self.config.load_header, f"{self.active_calls}/{self.config.max_calls}")

    def call_state(self, call_id: str) -> str | None:
        call = self._calls.get(call_id)
        return None if call is None else call.state

    # ------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.stats.datagrams_in += 1
        if not data.strip(b"\r\n\t "):
            return  # RFC 5626 §4.4.1 CRLF keep-alive
        if not data.startswith(b"SIP/") and self.admission.over_limit(source, now):
            # a request from a source whose bucket is empty: dropped unparsed, so a flood costs a
            # lookup, not a parse (retransmissions and ACKs of such a source are lost too; its
            # peers retransmit, §17)
            self.stats.rate_limited += 1
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._reject_malformed(exc, source)
            return
        if isinstance(message, Response):
            self._handle_response(message, now)
        else:
            self._handle_request(stamp_via(message, source), source, now)

    def _reject_malformed(self, exc: SipParseError, source: Address) -> None:
        self.stats.malformed += 1
        reason = " ".join(exc.message.split())[:160]
        has_via = any(name == "Via" for name, _ in exc.reply_headers)
        if exc.method is None or exc.method == "ACK" or not has_via:
            # responses and ACKs are never answered (§17.1.1.3, §8.2); nothing to address either.
            self._events.append(MessageRejected(source, None, reason))
            return
        destination = source
        via_line = next(v for n, v in exc.reply_headers if n == "Via")
        try:
            via = parse_via(via_line)[0]
            if via.rport is None and not self.config.force_rport:
                destination = (source[0], via.port or 5060)
        except SipParseError:
            pass
        self._out.append((make_raw_response(exc.reply_headers, exc.status_code, reason), destination))
        self._events.append(MessageRejected(source, exc.status_code, reason))

    # ------------------------------------------------------------ requests

    def _handle_request(self, request: Request, source: Address, now: float) -> None:
        key = server_key(request)
        if request.method == "ACK":
            self._handle_ack(request, key, now)
            return
        existing = self._server_txns.get(key)
        if existing is not None:
            if existing.state == "accepted" and existing.acked:
                self.stats.late_invites_absorbed += 1
            existing.receive_request(request, now)
            return
        if not self.admission.allow_request(source, now):
            # every request, new or in-dialog, spends a token (issue 9 item 3); dropped before
            # any state exists, so a flood costs a parse and a bucket lookup.
            self.stats.rate_limited += 1
            return
        destination = response_destination(request, source, force_rport=self.config.force_rport)
        method = request.method
        in_dialog = request.to_addr.tag is not None
        if method != "INVITE":
            refusal = self._refuse_non_invite(request, in_dialog)
            if refusal is not None:
                # §8.2.7: nothing here changes state, so no transaction: a retransmission is
                # answered the same way again.
                self._respond_stateless(request, destination, refusal)
                return
        elif not in_dialog and self._late_copy(request, now):
            self.stats.late_invites_absorbed += 1
            return
        txn = ServerTransaction(request, destination, now, self.config.timers, self._out)
        txn.on_deadline_changed = self._timers.schedule
        self._server_txns[key] = txn
        if isinstance(request.uri, OtherUri):
            self._respond(txn, 416, now, reason=f"Unsupported URI Scheme {request.uri.scheme}")
            return
        unsupported = [opt for opt in request.headers.values("Require") if opt not in SUPPORTED]
        if method == "INVITE" and unsupported:
            self._respond(txn, 420, now, extra=(("Unsupported", ", ".join(unsupported)),))
            return
        if method == "CANCEL":
            self._handle_cancel(request, txn, now)
        elif method == "OPTIONS":
            self._handle_options(txn, now)
        elif in_dialog:
            self._handle_in_dialog(request, txn, source, now)
        else:
            self._handle_new_invite(request, txn, source, now)

    def _refuse_non_invite(self, request: Request, in_dialog: bool) -> Refusal | None:
        """The stateless answer to a non-INVITE request that cannot change anything, or None."""
        method = request.method
        if isinstance(request.uri, OtherUri):
            return Refusal(416, "content", f"Unsupported URI Scheme {request.uri.scheme}")
        if method not in ALLOWED_METHODS:
            if method in KNOWN_METHODS:
                return Refusal(405, "content", extra=(("Allow", ", ".join(ALLOWED_METHODS)),))
            return Refusal(501, "content")
        if method != "CANCEL":
            unsupported = [opt for opt in request.headers.values("Require") if opt not in SUPPORTED]
            if unsupported:
                return Refusal(420, "content", extra=(("Unsupported", ", ".join(unsupported)),))
        if method == "CANCEL":
            if server_key(request, method="INVITE") not in self._server_txns:
                self.stats.stateless_481 += 1
                return Refusal(481, "content")
            return None
        if method == "OPTIONS":
            return None
        if not in_dialog or self._dialog_call(request) is None:
            self.stats.stateless_481 += 1
            return Refusal(481, "content")
        return None

    def _dialog_call(self, request: Request) -> _Call | None:
        call = self._calls.get(request.call_id)
        if call is None or call.dialog is None or call.state == "ended":
            return None
        return call if request.to_addr.tag == call.dialog.local_tag else None

    def _respond_stateless(self, request: Request, destination: Address, refusal: Refusal) -> None:
        reason = None if refusal.reason is None else " ".join(refusal.reason.split())[:160] or None
        extra = (("Server", self.config.user_agent), *refusal.extra)
        # a fixed To tag keeps the regenerated answer to a retransmission identical (§8.2.7)
        response = make_response(request, refusal.status_code, reason, to_tag="stateless", extra=extra)
        self._out.append((response.serialize(), destination))
        self.stats.response_sent(refusal.status_code)

    def _late_copy(self, request: Request, now: float) -> bool:
        """An out-of-dialog INVITE that repeats one whose call already ended (RFC 6026 §7.1)."""
        ended = self._ended_invites
        while ended:
            first_key, until = next(iter(ended.items()))
            if until > now:
                break
            del ended[first_key]
        key = (request.call_id, request.from_addr.tag or "", request.cseq.seq, request.top_via.branch or "")
        return key in ended

    def _handle_options(self, txn: ServerTransaction, now: float) -> None:
        extra = (
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Accept", ACCEPT),
            ("Supported", ", ".join(SUPPORTED)),
            ("Contact", self._contact()),
            self.load_header(),
        )
        busy = "Service Unavailable: draining" if self.draining else None
        if busy is None and self.active_calls >= self.config.max_calls:
            busy = "Busy: max calls reached"
        if busy is not None:
            # a dispatcher probing with OPTIONS takes us out of rotation on 503 (issue 13)
            self._respond(txn, 503, now, reason=busy, extra=(*self._retry_after(), *extra))
        else:
            self._respond(txn, 200, now, extra=extra)

    def _respond(
        self,
        txn: ServerTransaction,
        code: int,
        now: float,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        extra: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        if to_tag is None and code > 100:
            to_tag = self._token()
        if reason is not None:
            # a reason phrase is one line of text (RFC 3261 §25.1): no CR/LF may reach the wire
            reason = " ".join(reason.split())[:160] or None
        extra = (("Server", self.config.user_agent), *extra)
        if not (txn.final_sent or txn.state == "terminated"):  # else send() ignores it
            self.stats.response_sent(code)
        txn.send(make_response(txn.request, code, reason, to_tag=to_tag, extra=extra, body=body), now)

    def _handle_ack(self, request: Request, key: tuple[str, ...], now: float) -> None:
        txn = self._server_txns.get(key)
        if txn is not None and txn.state in ("completed", "confirmed"):
            txn.receive_request(request, now)
            return
        call = self._calls.get(request.call_id)
        if call is None or call.server_txn is None:
            return
        stxn = call.server_txn
        if stxn.state != "accepted" or stxn.acked or stxn.request.cseq.seq != request.cseq.seq:
            return
        stxn.ack_received(now)
        call.server_txn = None
        if call.awaiting_offer_in_ack:
            call.awaiting_offer_in_ack = False
            self._negotiate_from_ack(call, request)
        initial = call.state == "answered"
        self._events.append(AckReceived(call.call_id, request.cseq.seq, not initial, call.negotiation))
        if initial:
            call.state = "confirmed"
            self.admission.confirmed(call.call_id)
            self._events.append(CallEstablished(call.call_id, call.negotiation))

    def _negotiate_from_ack(self, call: _Call, request: Request) -> None:
        if not request.body:
            return
        try:
            result = negotiate(parse_sdp(request.body), codecs=self.config.codecs)
        except SipError:
            return
        first = call.negotiation is None
        call.negotiation = result
        if not first or call.state == "confirmed":
            self._events.append(RemoteMediaChanged(call.call_id, result))

    def _handle_cancel(self, request: Request, txn: ServerTransaction, now: float) -> None:
        invite_txn = self._server_txns[server_key(request, method="INVITE")]  # checked statelessly
        call = self._calls.get(request.call_id)
        # §9.2: the CANCEL's 200 SHOULD carry the To tag of the INVITE's responses
        tag = call.local_tag if call is not None else None
        if tag is None and invite_txn.last_response is not None:
            tag = invite_txn.last_response.to_addr.tag
        tag = tag or self._token()
        self._respond(txn, 200, now, to_tag=tag)
        if invite_txn.final_sent:
            return  # too late: the call was answered (or rejected) already (§9.2)
        self._respond(invite_txn, 487, now, to_tag=tag)
        if call is not None and call.state != "ended":
            self._end(call, now, "cancelled", 487, "Request Terminated")

    def _handle_new_invite(
        self, request: Request, txn: ServerTransaction, source: Address, now: float
    ) -> None:
        admission = self.admission
        refusal = admission.check_access(request, source, now, self._token())
        if refusal is not None:
            self._refuse(txn, refusal, now)
            return
        self._respond(txn, 100, now)
        if self.draining:
            self.stats.busy_rejected += 1
            self._respond(txn, 503, now, reason="Service Unavailable: draining", extra=self._retry_after())
            return
        refusal = admission.check_content(request) or admission.check_capacity(source, self.active_calls)
        if refusal is not None:
            self._refuse(txn, refusal, now)
            return
        offer = admission.check_offer(request)
        if isinstance(offer, Refusal):
            self._refuse(txn, offer, now)
            return
        if request.call_id in self._calls:
            self._respond(txn, 482, now, reason="Loop Detected: Call-ID already in use")
            return
        call = _Call(
            call_id=request.call_id,
            role="uas",
            peer=txn.destination,
            invite=request,
            state="early",
            local_tag=self._token(),
            timeout_at=now + self.config.answer_timeout_s,
            server_txn=txn,
            remote_offer=offer.sdp,
            negotiation=offer.negotiation,
            session_id=self._rng.randrange(1, 2**31),
        )
        call.dialog = Dialog.as_uas(request, call.local_tag, local_cseq=self._rng.randrange(1, 2**16))
        self._calls[call.call_id] = call
        self._timers.schedule(call)
        admission.admitted(call.call_id, source)
        self.stats.calls_in += 1
        from_addr, to_addr = request.from_addr, request.to_addr
        self._events.append(
            CallReceived(
                call_id=call.call_id,
                from_uri=from_addr.uri.serialize(),
                from_display=from_addr.display_name,
                to_uri=to_addr.uri.serialize(),
                to_display=to_addr.display_name,
                request_uri=request.uri.serialize(),
                source=source,
                negotiation=offer.negotiation,
                headers=request.headers,
            )
        )

    def _refuse(self, txn: ServerTransaction, refusal: Refusal, now: float) -> None:
        if refusal.kind == "access":
            self.stats.access_denied += 1
        elif refusal.kind == "busy":
            self.stats.busy_rejected += 1
        elif refusal.kind == "unconfirmed":
            self.stats.unconfirmed_rejected += 1
        elif refusal.kind == "per_source":
            self.stats.per_source_rejected += 1
        self._respond(txn, refusal.status_code, now, reason=refusal.reason, extra=refusal.extra)

    def _retry_after(self) -> tuple[tuple[str, str], ...]:
        return self.admission.retry_after()

    def _handle_in_dialog(
        self, request: Request, txn: ServerTransaction, source: Address, now: float
    ) -> None:
        call = self._calls.get(request.call_id)
        dialog = call.dialog if call is not None else None
        if call is None or dialog is None or call.state == "ended" or request.to_addr.tag != dialog.local_tag:
            self._respond(txn, 481, now)
            return
        seq = request.cseq.seq
        if dialog.remote_cseq is not None and seq <= dialog.remote_cseq and request.method != "ACK":
            self._respond(
                txn, 500, now, reason="Server Internal Error: CSeq out of order", to_tag=dialog.local_tag
            )
            return
        dialog.remote_cseq = seq
        call.peer = txn.destination
        tag = dialog.local_tag
        if request.method == "BYE":
            self._respond(txn, 200, now, to_tag=tag)
            if call.server_txn is not None and not call.server_txn.final_sent:
                # §15.1.2: a BYE in an early dialog ends the INVITE with 487
                self._respond(call.server_txn, 487, now, to_tag=tag)
            self._end(call, now, "remote_bye")
        elif request.method == "INVITE":
            self._handle_reinvite(call, request, txn, now)
        elif request.method == "INFO":
            self._handle_info(call, request, txn, now)
        elif request.method == "NOTIFY":
            self._handle_notify(call, request, txn, now)
        else:
            self._respond(txn, 405, now, to_tag=tag, extra=(("Allow", ", ".join(ALLOWED_METHODS)),))

    def _handle_reinvite(self, call: _Call, request: Request, txn: ServerTransaction, now: float) -> None:
        assert call.dialog is not None
        tag = call.dialog.local_tag
        if call.state != "confirmed" or call.server_txn is not None or call.local_rtp is None:
            self._respond(txn, 491, now, to_tag=tag, extra=(("Retry-After", "1"),))
            return
        if request.body and request.content_type != "application/sdp":
            self._respond(txn, 415, now, to_tag=tag, extra=(("Accept", "application/sdp"),))
            return
        call.sdp_version += 1
        if request.body:
            try:
                offer = parse_sdp(request.body)
                result = negotiate(offer, codecs=self.config.codecs, default_ptime_ms=self.config.ptime_ms)
            except SipParseError as exc:
                self._respond(txn, 400, now, to_tag=tag, reason=f"Malformed SDP: {exc.message}"[:160])
                return
            except SdpNegotiationError:
                # RFC 3264 §8: a rejected re-offer leaves the session as it was.
                self._respond(txn, 488, now, to_tag=tag)
                return
            answer = build_answer(
                offer,
                result,
                local_host=call.local_rtp[0],
                local_port=call.local_rtp[1],
                session_id=call.session_id,
                session_version=call.sdp_version,
            )
            call.negotiation = result
            call.local_sdp = answer
            self._events.append(RemoteMediaChanged(call.call_id, result))
        else:
            answer = self._offer_for(call)
            call.awaiting_offer_in_ack = True
        call.dialog.update_target(request)
        call.server_txn = txn
        self._send_2xx(call, txn, answer, now)

    def _handle_info(self, call: _Call, request: Request, txn: ServerTransaction, now: float) -> None:
        assert call.dialog is not None
        tag = call.dialog.local_tag
        ctype = request.content_type
        if not request.body:
            self._respond(txn, 200, now, to_tag=tag)
            return
        if ctype not in DTMF_INFO_TYPES:
            self._respond(txn, 415, now, to_tag=tag, extra=(("Accept", ", ".join(DTMF_INFO_TYPES)),))
            return
        try:
            info = parse_dtmf_info(ctype, request.body)
        except SipParseError as exc:
            self._respond(txn, 400, now, to_tag=tag, reason=exc.message)
            return
        self._respond(txn, 200, now, to_tag=tag)
        self._events.append(InfoDtmfReceived(call.call_id, info.digit, info.duration_ms))

    def _handle_notify(self, call: _Call, request: Request, txn: ServerTransaction, now: float) -> None:
        assert call.dialog is not None
        tag = call.dialog.local_tag
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self._respond(txn, 489, now, reason="Bad Event", to_tag=tag, extra=(("Allow-Events", "refer"),))
            return
        try:
            status = parse_sipfrag_status(request.body)
        except SipParseError as exc:
            self._respond(txn, 400, now, to_tag=tag, reason=exc.message)
            return
        self._respond(txn, 200, now, to_tag=tag)
        state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
        final = state == "terminated" or status.status_code >= 200
        self._events.append(TransferProgressed(call.call_id, status.status_code, status.reason, final))

    def _server_timed_out(self, txn: ServerTransaction, now: float) -> None:
        call = self._calls.get(txn.request.call_id)
        if call is None or call.server_txn is not txn:
            return
        call.server_txn = None
        if txn.last_response is not None and txn.last_response.status_code < 300 and call.state == "answered":
            # §13.3.1.4: no ACK for our 2xx within 64*T1: the session is torn down with BYE.
            self._send_bye(call, now)
            self._end(call, now, "ack-timeout", 408, "no ACK for 200 OK")

    def _call_timed_out(self, call: _Call, now: float) -> None:
        if call.role == "uas" and call.state == "early" and call.server_txn is not None:
            reason = "Temporarily Unavailable: not answered in time"
            self._respond(call.server_txn, 480, now, reason=reason, to_tag=call.local_tag)
            self._end(call, now, "timeout", 480, reason)
        elif call.role == "uac" and call.state in ("calling", "early"):
            call.cancel_requested = True
            self._maybe_send_cancel(call, now)

    # ------------------------------------------------------------ application commands (UAS)

    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None or call.state == "ended":
            raise SipStateError(f"call {call_id!r} does not exist or has ended")
        return call

    def ringing(self, call_id: str, now: float) -> None:
        """Send 180 Ringing on an inbound call that is not answered yet."""
        call = self._call(call_id)
        if call.role != "uas" or call.state != "early" or call.server_txn is None:
            raise SipStateError(f"call {call_id!r} is not an unanswered inbound call")
        self._respond(call.server_txn, 180, now, to_tag=call.local_tag, extra=(("Contact", self._contact()),))

    def answer(
        self,
        call_id: str,
        now: float,
        *,
        local_rtp_host: str | None = None,
        local_rtp_port: int | None = None,
        sdp: bytes | None = None,
    ) -> None:
        """Answer an inbound call with 200 OK: the SDP answer is built for the given RTP address
        (the app allocated the port first), or ``sdp`` is sent as is."""
        call = self._call(call_id)
        if call.role != "uas" or call.state != "early" or call.server_txn is None:
            raise SipStateError(f"call {call_id!r} is not an unanswered inbound call")
        if sdp is None and local_rtp_port is None:
            raise SipStateError("answer() needs local_rtp_port (or a ready sdp body)")
        call.local_rtp = (local_rtp_host or self.config.local_host, local_rtp_port or 0)
        if sdp is not None:
            body = parse_sdp(sdp)
            if call.remote_offer is None:
                call.awaiting_offer_in_ack = True
        elif call.remote_offer is not None and call.negotiation is not None:
            body = build_answer(
                call.remote_offer,
                call.negotiation,
                local_host=call.local_rtp[0],
                local_port=call.local_rtp[1],
                session_id=call.session_id,
                session_version=call.sdp_version,
            )
        else:
            body = self._offer_for(call)
            call.awaiting_offer_in_ack = True
        call.local_sdp = body
        call.state = "answered"
        call.timeout_at = None
        self._send_2xx(call, call.server_txn, body, now)

    def _offer_for(self, call: _Call) -> SessionDescription:
        assert call.local_rtp is not None
        return build_offer(
            local_host=call.local_rtp[0],
            local_port=call.local_rtp[1],
            session_id=call.session_id,
            session_version=call.sdp_version,
            codecs=self.config.codecs,
            telephone_event_pt=self.config.telephone_event_pt,
            ptime_ms=self.config.ptime_ms,
        )

    def _send_2xx(self, call: _Call, txn: ServerTransaction, body: SessionDescription, now: float) -> None:
        extra = (
            ("Contact", self._contact()),
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("Content-Type", "application/sdp"),
        )
        self._respond(txn, 200, now, to_tag=call.local_tag, extra=extra, body=body.serialize())

    def reject(self, call_id: str, now: float, status_code: int = 486, reason: str | None = None) -> None:
        """Refuse an inbound call that is not answered yet with a 3xx-6xx response."""
        call = self._call(call_id)
        if call.role != "uas" or call.state != "early" or call.server_txn is None:
            raise SipStateError(f"call {call_id!r} is not an unanswered inbound call")
        if not 300 <= status_code <= 699:
            raise SipStateError(f"reject() needs a 3xx-6xx status code, got {status_code}")
        extra = self._retry_after() if status_code == 503 else ()
        self._respond(call.server_txn, status_code, now, reason=reason, to_tag=call.local_tag, extra=extra)
        self._end(
            call,
            now,
            "rejected",
            status_code,
            call.server_txn.last_response.reason if call.server_txn.last_response else "",
        )

    def hangup(self, call_id: str, now: float) -> None:
        """End a call whatever its state: BYE, CANCEL (our unanswered INVITE) or 480 (inbound)."""
        call = self._call(call_id)
        if call.role == "uas" and call.state == "early":
            self.reject(call_id, now, 480)
            return
        if call.role == "uac" and call.state in ("calling", "early"):
            call.cancel_requested = True
            self._maybe_send_cancel(call, now)
            return
        self._send_bye(call, now)
        self._end(call, now, "local_bye")

    def refer(self, call_id: str, target_uri: str, now: float) -> None:
        """Blind transfer (RFC 3515): REFER the peer to ``target_uri``; progress comes as
        :class:`TransferProgressed` events (the REFER's response, then NOTIFY sipfrag lines)."""
        call = self._call(call_id)
        if call.state != "confirmed" or call.dialog is None:
            raise SipStateError(f"call {call_id!r} is not established; cannot transfer it")
        target = parse_uri(target_uri)
        referred_by = f"<sip:{self.config.user}@{self._hostport()}>"
        request = call.dialog.create_request(
            "REFER",
            via=self._via(),
            contact=self._contact(),
            extra=(("Refer-To", f"<{target.serialize()}>"), ("Referred-By", referred_by)),
        )
        self._start_client(request, call.peer, ("refer", call_id), now)

    def update_media(
        self,
        call_id: str,
        now: float,
        *,
        direction: str = "sendrecv",
        local_rtp_host: str | None = None,
        local_rtp_port: int | None = None,
    ) -> None:
        """Send a re-INVITE with a new offer: hold (``sendonly``), unhold, or a new RTP address.
        The answer arrives as :class:`RemoteMediaChanged`."""
        call = self._call(call_id)
        if call.state != "confirmed" or call.dialog is None or call.local_rtp is None:
            raise SipStateError(f"call {call_id!r} is not established; cannot change its media")
        call.local_rtp = (local_rtp_host or call.local_rtp[0], local_rtp_port or call.local_rtp[1])
        call.sdp_version += 1
        offer = build_offer(
            local_host=call.local_rtp[0],
            local_port=call.local_rtp[1],
            session_id=call.session_id,
            session_version=call.sdp_version,
            codecs=self.config.codecs,
            telephone_event_pt=self.config.telephone_event_pt,
            ptime_ms=self.config.ptime_ms,
            direction=direction,
        )
        call.local_sdp = offer
        request = call.dialog.create_request(
            "INVITE",
            via=self._via(),
            contact=self._contact(),
            extra=(("Content-Type", "application/sdp"),),
            body=offer.serialize(),
        )
        self._start_client(request, call.peer, ("reinvite", call_id), now)

    def send_dtmf_info(self, call_id: str, digit: str, now: float, *, duration_ms: int = 160) -> None:
        """Send a digit as SIP INFO application/dtmf-relay (for peers without RFC 4733)."""
        call = self._call(call_id)
        if call.state != "confirmed" or call.dialog is None:
            raise SipStateError(f"call {call_id!r} is not established; cannot send DTMF")
        if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise SipStateError(f"{digit!r} is not a DTMF digit (0-9, *, #, A-D)")
        body = f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
        request = call.dialog.create_request(
            "INFO",
            via=self._via(),
            contact=self._contact(),
            extra=(("Content-Type", "application/dtmf-relay"),),
            body=body,
        )
        self._start_client(request, call.peer, ("info", call_id), now)

    # ------------------------------------------------------------ application commands (UAC)

    def invite(
        self,
        target_uri: str,
        now: float,
        *,
        local_rtp_host: str | None = None,
        local_rtp_port: int,
        destination: Address | None = None,
        credentials: Credentials | None = None,
        from_user: str | None = None,
        from_display: str | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Place a call; returns its Call-ID. ``destination`` defaults to the target's IP and port."""
        target = parse_uri(target_uri)
        if not isinstance(target, SipUri):
            raise SipStateError(f"cannot call {target_uri!r}: only sip: URIs are supported")
        destination = destination or _uri_address(target)
        call_id = f"{self._token()}@{self.config.local_host}"
        local_tag = self._token()
        user = from_user or self.config.user
        display = from_display if from_display is not None else self.config.display_name
        from_value = NameAddr(SipUri(host=self._hostport(), user=user), display).serialize()
        call = _Call(
            call_id=call_id,
            role="uac",
            peer=destination,
            invite=Request("INVITE", target, Headers()),
            local_tag=local_tag,
            local_rtp=(local_rtp_host or self.config.local_host, local_rtp_port),
            credentials=credentials,
            session_id=self._rng.randrange(1, 2**31),
        )
        offer = self._offer_for(call)
        call.local_sdp = offer
        headers = Headers.of(
            ("Via", self._via()),
            ("Max-Forwards", "70"),
            ("From", f"{from_value};tag={local_tag}"),
            ("To", f"<{target.serialize()}>"),
            ("Call-ID", call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", self._contact()),
            ("Allow", ", ".join(ALLOWED_METHODS)),
            ("User-Agent", self.config.user_agent),
            ("Content-Type", "application/sdp"),
            *extra_headers,
        )
        call.invite = Request("INVITE", target, headers, body=offer.serialize())
        call.timeout_at = now + self.config.outbound_timeout_s
        self._timers.schedule(call)
        self._calls[call_id] = call
        self.stats.calls_out += 1
        call.client_txn = self._start_client(call.invite, destination, ("invite", call_id), now)
        return call_id

    def _maybe_send_cancel(self, call: _Call, now: float) -> None:
        call.timeout_at = None
        txn = call.client_txn
        # §9.1: CANCEL only once a provisional response arrived.
        if call.cancel_sent or txn is None or txn.state != "proceeding":
            return
        call.cancel_sent = True
        invite = txn.request
        items = [("Via", invite.headers.get("Via") or "")]
        items += [("Route", r) for r in invite.headers.get_all("Route")]
        items += [
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", invite.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq.seq} CANCEL"),
        ]
        cancel = Request("CANCEL", invite.uri, Headers(tuple(items)))
        self._start_client(cancel, txn.destination, ("cancel", call.call_id), now)
        txn.cancel_sent(now)

    def _start_client(
        self, request: Request, destination: Address, owner: tuple[str, str], now: float
    ) -> ClientTransaction:
        txn = ClientTransaction(request, destination, now, self.config.timers, self._out)
        txn.on_deadline_changed = self._timers.schedule
        self._timers.schedule(txn)
        self._client_txns[txn.key] = txn
        self._client_owner[txn.key] = owner
        return txn

    def _send_bye(self, call: _Call, now: float) -> None:
        if call.dialog is None:
            return
        bye = call.dialog.create_request("BYE", via=self._via(), contact=self._contact())
        self._start_client(bye, call.peer, ("bye", call.call_id), now)

    # ------------------------------------------------------------ responses

    def _handle_response(self, response: Response, now: float) -> None:
        branch = response.top_via.branch or ""
        key = client_key(branch, response.cseq.method)
        txn = self._client_txns.get(key)
        if txn is None:
            self._stray_response(response)
            return
        if not txn.receive_response(response, now):
            return
        kind, ref = self._client_owner.get(key, ("", ""))
        if kind == "invite":
            self._invite_response(ref, txn, response, now)
        elif kind == "refer":
            code = response.status_code
            if code >= 200 and ref in self._calls:
                self._events.append(TransferProgressed(ref, code, response.reason, final=code >= 300))
        elif kind == "register":
            self._register_response(ref, response, now)
        elif kind == "reinvite":
            self._reinvite_response(ref, txn, response)
        if kind in _IN_DIALOG_KINDS and response.status_code in (408, 481):
            self._dialog_gone(ref, kind, response.status_code, now)

    def _dialog_gone(self, call_id: str, kind: str, status_code: int | None, now: float) -> None:
        """§12.2.1.2 (§14.1 for re-INVITE): a 481 or 408 to a request in the dialog, or none at all
        (``status_code`` None), ends the dialog; a BYE goes out unless the peer said it has none."""
        call = self._calls.get(call_id)
        if call is None or call.state != "confirmed":
            return
        name = _IN_DIALOG_KINDS[kind]
        if status_code == 481:
            self._end(call, now, "failed", 481, f"{name} got 481: the peer has no such dialog")
            return
        self._send_bye(call, now)
        if status_code is None:
            self._end(call, now, "failed", 408, f"no response to {name}")
        else:
            self._end(
                call, now, "failed", status_code, f"{name} got {status_code}: the peer did not answer it"
            )

    def _reinvite_response(self, call_id: str, txn: ClientTransaction, response: Response) -> None:
        call = self._calls.get(call_id)
        if call is None or call.dialog is None or not 200 <= response.status_code < 300:
            return  # a refused re-offer leaves the session as it was (RFC 3264 §8)
        ack = call.dialog.create_request(
            "ACK", via=self._via(), contact=self._contact(), cseq=txn.request.cseq.seq
        )
        self._out.append((ack.serialize(), call.peer))
        if call.reinvite_branch == txn.branch:
            return  # a 2xx retransmission: ACKed again above
        call.reinvite_branch = txn.branch
        call.dialog.update_target(response)
        try:
            result = negotiate(parse_sdp(response.body), codecs=self.config.codecs)
        except SipError:
            return
        call.negotiation = result
        self._events.append(RemoteMediaChanged(call.call_id, result))

    def _stray_response(self, response: Response) -> None:
        """A 2xx retransmission for an INVITE whose transaction is gone gets our ACK again."""
        call = self._calls.get(response.call_id)
        if (
            call is not None
            and call.ack is not None
            and response.cseq.method == "INVITE"
            and 200 <= response.status_code < 300
        ):
            self._out.append((call.ack, call.peer))

    def _invite_response(self, call_id: str, txn: ClientTransaction, response: Response, now: float) -> None:
        call = self._calls.get(call_id)
        if call is None:
            return
        code = response.status_code
        if code < 200:
            if call.state == "calling":
                call.state = "early"
            early: MediaNegotiation | None = None
            if response.body and response.content_type == "application/sdp":
                try:
                    early = negotiate(parse_sdp(response.body), codecs=self.config.codecs)
                except SipError:
                    early = None
            if code > 100:
                self._events.append(CallProgressed(call_id, code, response.reason, early))
            if call.cancel_requested:
                self._maybe_send_cancel(call, now)
            return
        if code < 300:
            self._invite_accepted(call, txn, response, now)
            return
        if code in (401, 407) and self._retry_with_auth(call, txn, response, now):
            return
        if call.state == "ended":
            return
        cause: CallEndCause = "local_cancel" if call.cancel_requested and code == 487 else "failed"
        self._end(call, now, cause, code, response.reason)

    def _invite_accepted(self, call: _Call, txn: ClientTransaction, response: Response, now: float) -> None:
        to_tag = response.to_addr.tag or ""
        if call.dialog is not None and call.ack is not None:
            if call.dialog.remote_tag == to_tag:
                self._out.append((call.ack, call.peer))  # 2xx retransmission
            return
        call.dialog = Dialog.as_uac(txn.request, response)
        ack = call.dialog.create_request(
            "ACK", via=self._via(), contact=self._contact(), cseq=txn.request.cseq.seq
        )
        call.ack = ack.serialize()
        self._out.append((call.ack, call.peer))
        if call.state == "ended" or call.cancel_requested:
            # our CANCEL lost the race with the 200 (§9.1): confirm, then end with BYE.
            self._send_bye(call, now)
            if call.state != "ended":
                self._end(call, now, "local_cancel", 200, "answered before CANCEL")
            return
        result: MediaNegotiation | None = None
        try:
            result = negotiate(parse_sdp(response.body), codecs=self.config.codecs)
        except SipError:
            # §13.2.1: an answer we cannot use still confirms the dialog; hang up at once.
            self._send_bye(call, now)
            self._end(call, now, "failed", 488, "unusable SDP answer")
            return
        call.negotiation = result
        call.state = "confirmed"
        call.timeout_at = None
        self._events.append(CallEstablished(call.call_id, result))

    def _retry_with_auth(self, call: _Call, txn: ClientTransaction, response: Response, now: float) -> bool:
        creds = call.credentials
        if creds is None or call.auth_attempts >= 2 or call.state == "ended" or call.cancel_requested:
            return False
        request = authorized_request(
            txn.request, response, creds, cseq=txn.request.cseq.seq + 1, via=self._via(), cnonce=self._token()
        )
        if request is None:
            return False
        call.auth_attempts += 1
        call.invite = request
        call.client_txn = self._start_client(request, call.peer, ("invite", call.call_id), now)
        return True

    def _client_timed_out(self, txn: ClientTransaction, now: float) -> None:
        kind, ref = self._client_owner.get(txn.key, ("", ""))
        call = self._calls.get(ref)
        if kind == "invite" and call is not None and call.client_txn is txn and call.state != "ended":
            if call.cancel_sent:
                self._end(call, now, "local_cancel", 408, "no final response to INVITE after CANCEL")
            else:
                self._end(call, now, "timeout", 408, "no response to INVITE")
        elif kind == "refer" and call is not None:
            self._events.append(TransferProgressed(ref, 408, "no response to REFER", final=True))
        elif kind == "register":
            reg = self._registrations.get(ref)
            if reg is not None:
                self._events.append(reg.on_timeout(now))
                if reg.finished:
                    self._registrations.pop(ref, None)
                self._timers.schedule(reg)
        if kind in _IN_DIALOG_KINDS:
            self._dialog_gone(ref, kind, None, now)

    # ------------------------------------------------------------ registration (registration.py)

    def register(
        self,
        registrar_uri: str,
        now: float,
        *,
        aor: str,
        destination: Address | None = None,
        credentials: Credentials | None = None,
        expires_s: int = 3600,
    ) -> str:
        """REGISTER our Contact for ``aor`` and refresh it before it expires; returns its id."""
        registrar = parse_uri(registrar_uri)
        if not isinstance(registrar, SipUri):
            raise SipStateError(f"registrar {registrar_uri!r} is not a sip: URI")
        parse_uri(aor)
        reg = RegistrationClient(
            registration_id=f"{self._token()}@{self.config.local_host}",
            registrar=registrar,
            aor=aor,
            destination=destination or _uri_address(registrar),
            credentials=credentials,
            expires_s=expires_s,
            local_tag=self._token(),
            contact=self._contact(),
            user_agent=self.config.user_agent,
            retry_after_s=self.config.retry_after_s,
        )
        self._registrations[reg.registration_id] = reg
        self._send_register(reg, now)
        return reg.registration_id

    def unregister(self, registration_id: str, now: float) -> None:
        reg = self._registrations.get(registration_id)
        if reg is None:
            raise SipStateError(f"no registration {registration_id!r}")
        reg.unregister()
        if reg.in_flight:
            # §10.2: one REGISTER at a time; the answer to the one in flight sends the Expires: 0
            self._timers.schedule(reg)
        else:
            self._send_register(reg, now)

    def _send_register(self, reg: RegistrationClient, now: float) -> None:
        request, failure = reg.next_request(via=self._via(), cnonce=self._token())
        if failure is not None:
            self._events.append(failure)
        if request is not None:
            self._start_client(request, reg.destination, ("register", reg.registration_id), now)

    def _register_response(self, reg_id: str, response: Response, now: float) -> None:
        reg = self._registrations.get(reg_id)
        if reg is None:
            return
        result = reg.on_response(response, now)
        if reg.finished:
            self._registrations.pop(reg_id, None)
        if result.event is not None:
            self._events.append(result.event)
        if result.send_again:
            self._send_register(reg, now)
        else:
            self._timers.schedule(reg)

    # ------------------------------------------------------------ helpers

    def _end(
        self, call: _Call, now: float, cause: CallEndCause, status_code: int | None = None, reason: str = ""
    ) -> None:
        call.state = "ended"
        if call.server_txn is not None and call.server_txn.state == "accepted":
            # a BYE or timeout ends the wait for our 2xx's ACK; the transaction stays in Accepted
            # until Timer L to absorb copies of the INVITE (RFC 6026 §7.1)
            call.server_txn.ack_received(0.0)
        self._calls.pop(call.call_id, None)
        if call.role == "uas":
            self.admission.released(call.call_id)
            invite = call.invite
            key = (invite.call_id, invite.from_addr.tag or "", invite.cseq.seq, invite.top_via.branch or "")
            self._ended_invites[key] = now + 64 * self.config.timers.t1_s
            if len(self._ended_invites) > MAX_ENDED_INVITES:
                self._ended_invites.popitem(last=False)
        self._events.append(CallTerminated(call.call_id, cause, status_code, reason))

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _hostport(self) -> str:
        return f"{self.config.local_host}:{self.config.local_port}"

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self._hostport()};branch=z9hG4bK{self._token()};rport"

    def _contact(self) -> str:
        return f"<sip:{self.config.user}@{self._hostport()}>"


# the requests we send inside an established call whose failure may end it (§12.2.1.2)
_IN_DIALOG_KINDS = {"reinvite": "re-INVITE", "refer": "REFER", "info": "INFO"}


def _uri_address(uri: SipUri) -> Address:
    if not is_ip_literal(uri.host):
        raise SipStateError(
            f"{uri.host!r} is not an IP address: pass destination= (the core does not resolve names)"
        )
    return (uri.host.strip("[]"), uri.port or 5060)
