"""The sans-IO SIP user agent: datagrams and ``now`` in, datagrams and call events out.

Theory of operation. :class:`UserAgent` owns every transaction (``transaction.py``) and every
call (a :class:`~voicebot.sip.dialog.Dialog` plus its media negotiation). The adapter feeds it
``receive_datagram(data, source, now)`` and ``handle_timer(now)``, then drains
``datagrams_to_send()`` and ``next_event()``; the application answers with commands
(``ringing``, ``answer``, ``reject``, ``hangup``, ``refer``, ``invite``, ``register``).

Inbound requests pass, in order: parsing (a malformed request gets 400/505 with the parser's
message as reason phrase; a malformed response is dropped), transaction matching (a
retransmission re-sends the last response and stops there), the per-source rate limit for new
out-of-dialog requests (excess dropped and counted), the Request-URI scheme (416), the method
(405 with Allow / 501), Require (420 with Unsupported), then the method's own handling. A new
INVITE additionally passes access control (403, or a 401 digest challenge), gets 100 Trying, is
checked for body type (415 with Accept), Accept (406), capacity (503 with Retry-After) and SDP
(400 malformed / 488 no common codec) before the application sees an :class:`CallReceived`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from voicebot.sip.access import RateLimiter, address_in, parse_networks
from voicebot.sip.auth import Credentials, DigestServer, authorization, parse_challenge
from voicebot.sip.dialog import Dialog
from voicebot.sip.errors import SdpNegotiationError, SipError, SipParseError, SipStateError
from voicebot.sip.headers import Headers, NameAddr, parse_via
from voicebot.sip.message import Request, Response, make_raw_response, make_response, parse_message
from voicebot.sip.sdp import (
    MediaNegotiation,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from voicebot.sip.transaction import (
    Address,
    ClientTransaction,
    Datagrams,
    ServerTransaction,
    TimerConfig,
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
DTMF_DIGITS = frozenset("0123456789*#ABCD")
_DTMF_EVENT_DIGITS = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}


@dataclass(frozen=True, slots=True)
class UaConfig:
    """The user agent's settings (validated once, at construction of :class:`UserAgent`)."""

    local_host: str = "127.0.0.1"  # advertised in Via, Contact and the default SDP address
    local_port: int = 5060
    user: str = "voicebot"  # user part of our Contact / From
    display_name: str | None = None
    max_calls: int = 100  # concurrent calls; a new INVITE beyond this gets 503
    retry_after_s: int = 30  # Retry-After on that 503
    codecs: tuple[str, ...] = ("PCMU", "PCMA")  # our preference order when offering
    telephone_event_pt: int = 101
    ptime_ms: int = 20
    timers: TimerConfig = field(default_factory=TimerConfig)
    force_rport: bool = False  # answer to the packet's source port even without ;rport (NAT)
    allowed_networks: tuple[str, ...] = ()  # trunk CIDRs; empty: any source
    inbound_users: tuple[tuple[str, str], ...] = ()  # digest users for INVITEs from elsewhere
    auth_realm: str = "voicebot"
    rate_limit_per_s: float = 20.0  # new requests per second per source IP outside allowed_networks
    rate_limit_burst: float = 40.0
    user_agent: str = "voicebot"
    answer_timeout_s: float = 120.0  # an inbound call neither answered nor rejected gets 480 after this
    outbound_timeout_s: float = 120.0  # our INVITE still unanswered after this is CANCELled


# ---------------------------------------------------------------- events (past tense)


@dataclass(frozen=True, slots=True)
class CallReceived:
    """A new INVITE passed every check; answer, ring or reject it by ``call_id``."""

    call_id: str
    from_uri: str
    from_display: str | None
    to_uri: str
    to_display: str | None
    request_uri: str
    source: Address
    negotiation: MediaNegotiation | None  # None for an offerless INVITE
    headers: Headers


@dataclass(frozen=True, slots=True)
class CallProgressed:
    """A provisional response to our INVITE; ``negotiation`` set for early media (183 + SDP)."""

    call_id: str
    status_code: int
    reason: str
    negotiation: MediaNegotiation | None


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The call is up: our 200 was ACKed, or the callee answered our INVITE."""

    call_id: str
    negotiation: MediaNegotiation | None


CallEndCause = Literal[
    "remote_bye", "local_bye", "cancelled", "local_cancel", "rejected", "failed", "timeout", "ack_timeout"
]


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The call is over. ``status_code`` is the final response for calls that never connected."""

    call_id: str
    cause: CallEndCause
    status_code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """A re-INVITE changed the media: hold/unhold, a new address or codec."""

    call_id: str
    negotiation: MediaNegotiation


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A digit from SIP INFO (application/dtmf-relay or application/dtmf)."""

    call_id: str
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True)
class TransferProgressed:
    """Our REFER's response (202, or a failure, ``final``) or a NOTIFY sipfrag status line."""

    call_id: str
    status_code: int
    reason: str
    final: bool


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    registration_id: str
    registered: bool
    status_code: int | None
    expires_s: int


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A datagram we could not accept: malformed (with the status we answered, None if dropped)."""

    source: Address
    status_code: int | None
    reason: str


Event = (
    CallReceived
    | CallProgressed
    | CallEstablished
    | CallEnded
    | MediaChanged
    | DtmfReceived
    | TransferProgressed
    | RegistrationChanged
    | MessageRejected
)


@dataclass(slots=True)
class UaStats:
    datagrams_in: int = 0
    malformed: int = 0
    rate_limited: int = 0
    access_denied: int = 0
    calls_in: int = 0
    calls_out: int = 0
    busy_rejected: int = 0


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


@dataclass(slots=True)
class _Registration:
    registration_id: str
    registrar: SipUri
    aor: str
    destination: Address
    credentials: Credentials | None
    expires_s: int
    cseq: int = 0
    local_tag: str = ""
    auth_attempts: int = 0
    refresh_at: float | None = None
    active: bool = True


class UserAgent:
    """See the module docstring. Not thread-safe; one adapter drives it."""

    def __init__(self, config: UaConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.stats = UaStats()
        self._rng = rng or random.SystemRandom()
        self._networks = parse_networks(config.allowed_networks)
        self._digest = (
            DigestServer(config.auth_realm, dict(config.inbound_users)) if config.inbound_users else None
        )
        self._limiter = RateLimiter(config.rate_limit_per_s, config.rate_limit_burst)
        self._out: Datagrams = []
        self._events: deque[Event] = deque()
        self._server_txns: dict[tuple[str, ...], ServerTransaction] = {}
        self._client_txns: dict[tuple[str, str], ClientTransaction] = {}
        self._client_owner: dict[tuple[str, str], tuple[str, str]] = {}
        self._calls: dict[str, _Call] = {}
        self._registrations: dict[str, _Registration] = {}

    # ------------------------------------------------------------ adapter interface

    def datagrams_to_send(self) -> Datagrams:
        # transactions hold a reference to this list, so empty it in place
        out = list(self._out)
        self._out.clear()
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        for key in [k for k, t in self._server_txns.items() if t.terminated]:
            del self._server_txns[key]
        for ckey in [k for k, t in self._client_txns.items() if t.terminated]:
            del self._client_txns[ckey]
            self._client_owner.pop(ckey, None)
        deadlines = [t.deadline() for t in self._server_txns.values()]
        deadlines += [c.timeout_at for c in self._calls.values()]
        deadlines += [t.deadline() for t in self._client_txns.values()]
        deadlines += [r.refresh_at for r in self._registrations.values()]
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def handle_timer(self, now: float) -> None:
        for skey, stxn in list(self._server_txns.items()):
            deadline = stxn.deadline()
            if deadline is not None and deadline <= now and stxn.handle_timer(now):
                self._server_timed_out(stxn, now)
            if stxn.terminated:
                self._server_txns.pop(skey, None)
        for ckey, ctxn in list(self._client_txns.items()):
            deadline = ctxn.deadline()
            if deadline is not None and deadline <= now and ctxn.handle_timer(now):
                self._client_timed_out(ctxn, now)
            if ctxn.terminated:
                self._client_txns.pop(ckey, None)
                self._client_owner.pop(ckey, None)
        for call in list(self._calls.values()):
            if call.timeout_at is not None and call.timeout_at <= now:
                call.timeout_at = None
                self._call_timed_out(call, now)
        for reg in list(self._registrations.values()):
            if reg.refresh_at is not None and reg.refresh_at <= now:
                reg.refresh_at = None
                self._send_register(reg, now)

    @property
    def active_calls(self) -> int:
        return sum(1 for c in self._calls.values() if c.state != "ended")

    def call_state(self, call_id: str) -> str | None:
        call = self._calls.get(call_id)
        return None if call is None else call.state

    # ------------------------------------------------------------ input

    def receive_datagram(self, data: bytes, source: Address, now: float) -> None:
        self.stats.datagrams_in += 1
        if not data.strip(b"\r\n\t "):
            return  # RFC 5626 §4.4.1 CRLF keep-alive
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
            existing.receive_request(request, now)
            return
        in_dialog = request.to_addr.tag is not None
        if (
            not in_dialog
            and request.method != "CANCEL"
            and not self._trusted(source)
            and not self._limiter.allow(source[0], now)
        ):
            self.stats.rate_limited += 1
            return
        destination = response_destination(request, source, force_rport=self.config.force_rport)
        txn = ServerTransaction(request, destination, now, self.config.timers, self._out)
        self._server_txns[key] = txn
        if isinstance(request.uri, OtherUri):
            self._respond(txn, 416, now, reason=f"Unsupported URI Scheme {request.uri.scheme}")
            return
        method = request.method
        if method not in ALLOWED_METHODS:
            if method in KNOWN_METHODS:
                self._respond(txn, 405, now, extra=(("Allow", ", ".join(ALLOWED_METHODS)),))
            else:
                self._respond(txn, 501, now)
            return
        if method != "CANCEL":
            unsupported = [opt for opt in request.headers.values("Require") if opt not in SUPPORTED]
            if unsupported:
                self._respond(txn, 420, now, extra=(("Unsupported", ", ".join(unsupported)),))
                return
        if method == "CANCEL":
            self._handle_cancel(request, txn, now)
        elif method == "OPTIONS":
            self._respond(
                txn,
                200,
                now,
                extra=(
                    ("Allow", ", ".join(ALLOWED_METHODS)),
                    ("Accept", ACCEPT),
                    ("Supported", ", ".join(SUPPORTED)),
                    ("Contact", self._contact()),
                ),
            )
        elif in_dialog:
            self._handle_in_dialog(request, txn, source, now)
        elif method == "INVITE":
            self._handle_new_invite(request, txn, source, now)
        else:
            self._respond(txn, 481, now)

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
        if stxn.state != "accepted" or stxn.request.cseq.seq != request.cseq.seq:
            return
        stxn.ack_received(now)
        call.server_txn = None
        if call.awaiting_offer_in_ack:
            call.awaiting_offer_in_ack = False
            self._negotiate_from_ack(call, request)
        if call.state == "answered":
            call.state = "confirmed"
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
            self._events.append(MediaChanged(call.call_id, result))

    def _handle_cancel(self, request: Request, txn: ServerTransaction, now: float) -> None:
        invite_key = server_key(request, method="INVITE")
        invite_txn = self._server_txns.get(invite_key)
        if invite_txn is None:
            self._respond(txn, 481, now)
            return
        self._respond(txn, 200, now)
        if invite_txn.final_sent:
            return  # too late: the call was answered (or rejected) already (§9.2)
        call = self._calls.get(request.call_id)
        tag = call.local_tag if call is not None else None
        self._respond(invite_txn, 487, now, to_tag=tag)
        if call is not None and call.state != "ended":
            self._end(call, "cancelled", 487, "Request Terminated")

    def _handle_new_invite(
        self, request: Request, txn: ServerTransaction, source: Address, now: float
    ) -> None:
        if not self._access_allowed(request, txn, source, now):
            return
        self._respond(txn, 100, now)
        if request.body and request.content_type != "application/sdp":
            self._respond(txn, 415, now, extra=(("Accept", "application/sdp"),))
            return
        accept = [a.split(";")[0].strip().lower() for a in request.headers.values("Accept")]
        if "Accept" in request.headers and not {"application/sdp", "application/*", "*/*"} & set(accept):
            self._respond(txn, 406, now, extra=(("Accept", "application/sdp"),))
            return
        if self.active_calls >= self.config.max_calls:
            self.stats.busy_rejected += 1
            self._respond(txn, 503, now, reason="Busy: max calls reached", extra=self._retry_after())
            return
        offer: SessionDescription | None = None
        result: MediaNegotiation | None = None
        if request.body:
            try:
                offer = parse_sdp(request.body)
                result = negotiate(offer, codecs=self.config.codecs, default_ptime_ms=self.config.ptime_ms)
            except SipParseError as exc:
                self._respond(txn, 400, now, reason=f"Malformed SDP: {exc.message}"[:160])
                return
            except SdpNegotiationError as exc:
                self._respond(txn, 488, now, extra=(("Warning", f'304 voicebot "{exc.message}"'),))
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
            remote_offer=offer,
            negotiation=result,
            session_id=self._rng.randrange(1, 2**31),
        )
        call.dialog = Dialog.as_uas(request, call.local_tag, local_cseq=self._rng.randrange(1, 2**16))
        self._calls[call.call_id] = call
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
                negotiation=result,
                headers=request.headers,
            )
        )

    def _trusted(self, source: Address) -> bool:
        """A source inside the configured trunk networks (exempt from the scanner rate limit)."""
        return bool(self._networks) and address_in(source[0], self._networks)

    def _access_allowed(self, request: Request, txn: ServerTransaction, source: Address, now: float) -> bool:
        trusted = self._trusted(source)
        if trusted or (not self._networks and self._digest is None):
            return True
        if self._digest is None:
            self.stats.access_denied += 1
            self._respond(txn, 403, now, reason="Forbidden: source address not allowed")
            return False
        stale = False
        for value in request.headers.get_all("Authorization"):
            ok, stale = self._digest.verify(value, method=request.method, now=now)
            if ok:
                return True
        self.stats.access_denied += 1
        challenge = self._digest.challenge(self._token(), now, stale=stale)
        self._respond(txn, 401, now, extra=(("WWW-Authenticate", challenge),))
        return False

    def _retry_after(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self.config.retry_after_s)),)

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
            self._end(call, "remote_bye")
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
            self._events.append(MediaChanged(call.call_id, result))
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
        if ctype not in ("application/dtmf-relay", "application/dtmf"):
            accept = "application/dtmf-relay, application/dtmf"
            self._respond(txn, 415, now, to_tag=tag, extra=(("Accept", accept),))
            return
        text = request.body.decode("utf-8", errors="replace")
        digit: str | None = None
        duration: int | None = None
        if ctype == "application/dtmf":
            digit = text.strip()
        else:
            for line in text.splitlines():
                name, _, value = line.partition("=")
                name, value = name.strip().lower(), value.strip()
                if name == "signal":
                    digit = value
                elif name == "duration" and value.isdigit():
                    duration = int(value)
        digit = _DTMF_EVENT_DIGITS.get(digit or "", digit)
        if digit is None or len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            self._respond(
                txn, 400, now, to_tag=tag, reason=f"Bad Request: invalid DTMF signal {digit!r}"[:160]
            )
            return
        self._respond(txn, 200, now, to_tag=tag)
        self._events.append(DtmfReceived(call.call_id, digit.upper(), duration))

    def _handle_notify(self, call: _Call, request: Request, txn: ServerTransaction, now: float) -> None:
        assert call.dialog is not None
        tag = call.dialog.local_tag
        event = (request.headers.get("Event") or "").split(";")[0].strip().lower()
        if event != "refer":
            self._respond(txn, 489, now, reason="Bad Event", to_tag=tag, extra=(("Allow-Events", "refer"),))
            return
        first_line = request.body.decode("utf-8", errors="replace").strip().splitlines()[:1]
        parts = first_line[0].split(" ", 2) if first_line else []
        if len(parts) < 2 or not parts[0].upper().startswith("SIP/") or not parts[1].isdigit():
            self._respond(
                txn, 400, now, to_tag=tag, reason="Bad Request: NOTIFY body is not a message/sipfrag"
            )
            return
        self._respond(txn, 200, now, to_tag=tag)
        state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
        code = int(parts[1])
        final = state == "terminated" or code >= 200
        self._events.append(TransferProgressed(call.call_id, code, parts[2] if len(parts) > 2 else "", final))

    def _server_timed_out(self, txn: ServerTransaction, now: float) -> None:
        call = self._calls.get(txn.request.call_id)
        if call is None or call.server_txn is not txn:
            return
        call.server_txn = None
        if txn.last_response is not None and txn.last_response.status_code < 300 and call.state == "answered":
            # §13.3.1.4: no ACK for our 2xx within 64*T1: the session is torn down with BYE.
            self._send_bye(call, now)
            self._end(call, "ack_timeout", 408, "no ACK for 200 OK")

    def _call_timed_out(self, call: _Call, now: float) -> None:
        if call.role == "uas" and call.state == "early" and call.server_txn is not None:
            reason = "Temporarily Unavailable: not answered in time"
            self._respond(call.server_txn, 480, now, reason=reason, to_tag=call.local_tag)
            self._end(call, "timeout", 480, reason)
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
        self._end(call, "local_bye")

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
        The answer arrives as :class:`MediaChanged`."""
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

    def _start_client(
        self, request: Request, destination: Address, owner: tuple[str, str], now: float
    ) -> ClientTransaction:
        txn = ClientTransaction(request, destination, now, self.config.timers, self._out)
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
            self._register_response(ref, txn, response, now)
        elif kind == "reinvite":
            self._reinvite_response(ref, txn, response)

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
        self._events.append(MediaChanged(call.call_id, result))

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
        self._end(call, cause, code, response.reason)

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
                self._end(call, "local_cancel", 200, "answered before CANCEL")
            return
        result: MediaNegotiation | None = None
        try:
            result = negotiate(parse_sdp(response.body), codecs=self.config.codecs)
        except SipError:
            # §13.2.1: an answer we cannot use still confirms the dialog; hang up at once.
            self._send_bye(call, now)
            self._end(call, "failed", 488, "unusable SDP answer")
            return
        call.negotiation = result
        call.state = "confirmed"
        call.timeout_at = None
        self._events.append(CallEstablished(call.call_id, result))

    def _retry_with_auth(self, call: _Call, txn: ClientTransaction, response: Response, now: float) -> bool:
        creds = call.credentials
        if creds is None or call.auth_attempts >= 2 or call.state == "ended" or call.cancel_requested:
            return False
        request = self._authorized(txn.request, response, creds, txn.request.cseq.seq + 1)
        if request is None:
            return False
        call.auth_attempts += 1
        call.invite = request
        call.client_txn = self._start_client(request, call.peer, ("invite", call.call_id), now)
        return True

    def _authorized(
        self, request: Request, response: Response, creds: Credentials, cseq: int
    ) -> Request | None:
        """The request again with credentials for the 401/407's challenges, new branch and CSeq."""
        header = "WWW-Authenticate" if response.status_code == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if response.status_code == 401 else "Proxy-Authorization"
        values: list[str] = []
        for raw in response.headers.get_all(header):
            try:
                challenge = parse_challenge(raw)
                if creds.realm is not None and creds.realm != challenge.realm:
                    continue
                values.append(
                    authorization(
                        challenge,
                        creds,
                        method=request.method,
                        uri=request.uri.serialize(),
                        cnonce=self._token(),
                    )
                )
            except SipParseError:
                continue
        if not values:
            return None
        headers = request.headers.replaced("Via", [self._via()]).replaced(
            "CSeq", [f"{cseq} {request.method}"]
        )
        headers = headers.without(answer_header).plus(*((answer_header, v) for v in values))
        return request.with_headers(headers)

    def _client_timed_out(self, txn: ClientTransaction, now: float) -> None:
        kind, ref = self._client_owner.get(txn.key, ("", ""))
        call = self._calls.get(ref)
        if kind == "invite" and call is not None and call.client_txn is txn and call.state != "ended":
            self._end(call, "timeout", 408, "no response to INVITE")
        elif kind == "refer" and call is not None:
            self._events.append(TransferProgressed(ref, 408, "no response to REFER", final=True))
        elif kind == "register":
            reg = self._registrations.get(ref)
            if reg is not None:
                self._events.append(RegistrationChanged(ref, False, 408, 0))
                reg.refresh_at = now + self.config.retry_after_s

    # ------------------------------------------------------------ registration

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
        reg = _Registration(
            registration_id=f"{self._token()}@{self.config.local_host}",
            registrar=registrar,
            aor=aor,
            destination=destination or _uri_address(registrar),
            credentials=credentials,
            expires_s=expires_s,
            local_tag=self._token(),
        )
        self._registrations[reg.registration_id] = reg
        self._send_register(reg, now)
        return reg.registration_id

    def unregister(self, registration_id: str, now: float) -> None:
        reg = self._registrations.get(registration_id)
        if reg is None:
            raise SipStateError(f"no registration {registration_id!r}")
        reg.active = False
        reg.expires_s = 0
        reg.refresh_at = None
        self._send_register(reg, now)

    def _send_register(self, reg: _Registration, now: float, auth: Response | None = None) -> None:
        reg.cseq += 1
        headers = Headers.of(
            ("Via", self._via()),
            ("Max-Forwards", "70"),
            ("From", f"<{reg.aor}>;tag={reg.local_tag}"),
            ("To", f"<{reg.aor}>"),
            ("Call-ID", reg.registration_id),
            ("CSeq", f"{reg.cseq} REGISTER"),
            ("Contact", self._contact()),
            ("Expires", str(reg.expires_s)),
            ("User-Agent", self.config.user_agent),
        )
        request = Request("REGISTER", reg.registrar, headers)
        if auth is not None and reg.credentials is not None:
            authed = self._authorized(request, auth, reg.credentials, reg.cseq)
            if authed is None:
                self._events.append(RegistrationChanged(reg.registration_id, False, auth.status_code, 0))
                return
            request = authed
        self._start_client(request, reg.destination, ("register", reg.registration_id), now)

    def _register_response(self, reg_id: str, txn: ClientTransaction, response: Response, now: float) -> None:
        reg = self._registrations.get(reg_id)
        if reg is None:
            return
        code = response.status_code
        if code < 200:
            return
        if code in (401, 407) and reg.credentials is not None and reg.auth_attempts < 2:
            reg.auth_attempts += 1
            self._send_register(reg, now, auth=response)
            return
        reg.auth_attempts = 0
        if 200 <= code < 300:
            expires = reg.expires_s
            for contact in response.contacts:
                value = next((v for k, v in contact.params if k.lower() == "expires"), None)
                if value is not None and value.isdigit():
                    expires = int(value)
                    break
            else:
                header = response.headers.get("Expires")
                if header is not None and header.isdigit():
                    expires = int(header)
            if not reg.active:
                self._registrations.pop(reg_id, None)
                self._events.append(RegistrationChanged(reg_id, False, code, 0))
                return
            # refresh at half the granted time (at least 5 s ahead)
            reg.refresh_at = now + max(5.0, expires / 2)
            self._events.append(RegistrationChanged(reg_id, True, code, expires))
            return
        self._events.append(RegistrationChanged(reg_id, False, code, 0))
        if reg.active:
            reg.refresh_at = now + self.config.retry_after_s

    # ------------------------------------------------------------ helpers

    def _end(
        self, call: _Call, cause: CallEndCause, status_code: int | None = None, reason: str = ""
    ) -> None:
        call.state = "ended"
        if call.server_txn is not None and call.server_txn.state == "accepted":
            call.server_txn.ack_received(0.0)  # a BYE or timeout ends the wait for our 2xx's ACK
        self._calls.pop(call.call_id, None)
        self._events.append(CallEnded(call.call_id, cause, status_code, reason))

    def _token(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def _hostport(self) -> str:
        return f"{self.config.local_host}:{self.config.local_port}"

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self._hostport()};branch=z9hG4bK{self._token()};rport"

    def _contact(self) -> str:
        return f"<sip:{self.config.user}@{self._hostport()}>"


def _uri_address(uri: SipUri) -> Address:
    if not is_ip_literal(uri.host):
        raise SipStateError(
            f"{uri.host!r} is not an IP address: pass destination= (the core does not resolve names)"
        )
    return (uri.host.strip("[]"), uri.port or 5060)
