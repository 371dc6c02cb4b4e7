"""RFC 3261 §17 transactions over UDP, with the timers as inputs (aioquic style).

Theory of operation. A transaction never reads a clock or a socket: it is created with ``now``,
appends datagrams to the shared ``out`` list, reports its next deadline with ``deadline()`` and
advances when the user agent calls ``handle_timer(now)``. Four machines:

* INVITE client (§17.1.1, Figure 5, with RFC 6026's Accepted state): Timer A retransmits the
  request (T1, doubling) until a response, Timer B (64*T1) times it out; a 3xx-6xx is ACKed
  here and its retransmissions absorbed for Timer D (32 s); 2xx responses go to the dialog
  layer, which ACKs them, while Timer M (64*T1) keeps the transaction to route retransmissions.
  Proceeding has no timer of its own; once we CANCEL (``cancel_sent``) it times out 64*T1 later
  unless a final response came (§9.1).
* non-INVITE client (§17.1.2, Figure 6): Timer E retransmits (T1 doubling, capped at T2; T2
  once a provisional arrived), Timer F (64*T1) times out, Timer K (T4) absorbs late responses.
* INVITE server (§17.2.1, Figure 7, RFC 6026): request retransmissions re-send the last
  response; a 3xx-6xx is retransmitted by Timer G until the ACK (Timer H 64*T1 gives up),
  then Timer I (T4) absorbs ACK copies; a 2xx is retransmitted the same way (§13.3.1.4) until
  the dialog layer reports its ACK (or the call ends), and the transaction stays in Accepted
  until Timer L (64*T1) so that late INVITE retransmissions are absorbed, never taken for a new
  call (RFC 6026 §7.1); without an ACK, Timer L reports the ACK timeout.
* non-INVITE server (§17.2.2, Figure 8): retransmissions re-send the last response; Timer J
  (64*T1) keeps the completed transaction and then ends it silently (nothing ACKs a non-INVITE).

Matching (§17.1.3, §17.2.3): by top-Via branch, sent-by and method (plus Call-ID and CSeq
number, which a retransmission, its ACK and its CANCEL share), or, for RFC 2543 peers whose
branch lacks the ``z9hG4bK`` cookie, by Request-URI, From tag, Call-ID, CSeq and top Via.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from voicebot.sip.headers import Headers, get_param
from voicebot.sip.message import Request, Response

Address = tuple[str, int]
Datagrams = list[tuple[bytes, Address]]
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 timer values (seconds)."""

    t1_s: float = 0.5
    t2_s: float = 4.0
    t4_s: float = 5.0
    timer_d_s: float = 32.0


def server_key(request: Request, method: str | None = None) -> tuple[str, ...]:
    """The key that matches a request to its server transaction (§17.2.3).

    ACK maps to the INVITE it acknowledges; CANCEL has its own transaction (pass
    ``method="INVITE"`` to find the INVITE a CANCEL is for).
    """
    via = request.top_via
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and len(branch) > len(MAGIC_COOKIE):
        # Call-ID and CSeq number too: a sender that reuses a branch for unrelated requests (the
        # RFC 4475 corpus does) must not be answered with another request's response.
        return ("3261", branch, via.sent_by.lower(), method, request.call_id, str(request.cseq.seq))
    # RFC 2543 (§17.2.3 second half). The To tag is left out: the ACK of a non-2xx final
    # response carries our tag while the INVITE did not.
    return (
        "2543",
        request.uri.serialize(),
        request.from_addr.tag or "",
        request.call_id,
        str(request.cseq.seq),
        request.top_via.serialize().lower(),
        method,
    )


def client_key(branch: str, method: str) -> tuple[str, str]:
    return (branch, "INVITE" if method == "ACK" else method)


def response_destination(request: Request, source: Address, *, force_rport: bool = False) -> Address:
    """Where responses to ``request`` go (RFC 3261 §18.2.2, RFC 3581 §4).

    The address is always the packet's source IP (our ``received`` rule makes the Via host
    irrelevant over UDP); the port is the source port when the Via asked for ``rport`` (or the
    operator forces it for NATed peers), else the Via's sent-by port, else 5060.
    """
    via = request.top_via
    if force_rport or via.rport is not None:
        return source
    return (source[0], via.port or 5060)


def stamp_via(request: Request, source: Address) -> Request:
    """Add ``received`` (and the ``rport`` value) to the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    lines = request.headers.get_all("Via")
    if not lines:
        return request
    vias = request.vias
    top = vias[0]
    changed = top
    if top.host.strip("[]") != source[0]:
        changed = changed.with_param("received", source[0])
    if get_param(top.params, "rport") == "":
        changed = changed.with_param("received", source[0]).with_param("rport", str(source[1]))
    if changed is top:
        return request
    rest = [v.serialize() for v in vias[1:]]
    return request.with_headers(request.headers.replaced("Via", [changed.serialize(), *rest]))


class ClientTransaction:
    """INVITE or non-INVITE client transaction; see the module docstring."""

    def __init__(
        self, request: Request, destination: Address, now: float, timers: TimerConfig, out: Datagrams
    ) -> None:
        self.request = request
        self.destination = destination
        self.is_invite = request.method == "INVITE"
        self.branch = request.top_via.branch or ""
        self.key = client_key(self.branch, request.method)
        self.state = "calling" if self.is_invite else "trying"
        self.last_response: Response | None = None
        self.timed_out = False
        self._timers = timers
        self._out = out
        self._wire = request.serialize()
        self._interval_s = timers.t1_s
        self._retransmit_at: float | None = now + timers.t1_s  # Timer A / E
        self._end_at: float = now + 64 * timers.t1_s  # Timer B / F
        self._ack: bytes | None = None
        # called after every change of deadline() (the user agent's timer heap)
        self.on_deadline_changed: Callable[[ClientTransaction], None] | None = None
        out.append((self._wire, destination))

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def deadline(self) -> float | None:
        if self.state == "terminated":
            return None
        if self._retransmit_at is not None:
            return min(self._retransmit_at, self._end_at)
        return None if self._end_at == math.inf else self._end_at

    def receive_response(self, response: Response, now: float) -> bool:
        """Advance on a response; True when the transaction user should see it."""
        before = self.deadline()
        result = self._receive_response(response, now)
        if self.on_deadline_changed is not None and self.deadline() != before:
            self.on_deadline_changed(self)
        return result

    def _receive_response(self, response: Response, now: float) -> bool:
        code = response.status_code
        if self.state == "terminated":
            return False
        if self.is_invite:
            return self._invite_response(response, code, now)
        if self.state == "completed":
            return False
        self.last_response = response
        if code < 200:
            self.state = "proceeding"
            # §17.1.2.2: in Proceeding, retransmit every T2.
            self._interval_s = self._timers.t2_s
            if self._retransmit_at is not None:
                self._retransmit_at = now + self._timers.t2_s
            return True
        self.state = "completed"
        self._retransmit_at = None
        self._end_at = now + self._timers.t4_s  # Timer K
        return True

    def _invite_response(self, response: Response, code: int, now: float) -> bool:
        if code < 200:
            if self.state in ("calling", "proceeding"):
                self.state = "proceeding"
                self._retransmit_at = None
                # §17.1.1.2: Timer B runs only in Calling; a ringing call waits for the final
                # answer as long as the transaction user allows (its own ring timeout).
                self._end_at = math.inf
                self.last_response = response
                return True
            return False
        if code < 300:
            if self.state in ("calling", "proceeding"):
                # RFC 6026 §7.2: Accepted, Timer M.
                self.state = "accepted"
                self._retransmit_at = None
                self._end_at = now + 64 * self._timers.t1_s
                self.last_response = response
            # every 2xx (retransmissions too) goes to the dialog layer, which re-sends its ACK
            return self.state == "accepted"
        if self.state in ("calling", "proceeding"):
            self.state = "completed"
            self.last_response = response
            self._retransmit_at = None
            self._end_at = now + self._timers.timer_d_s
            self._ack = build_non2xx_ack(self.request, response).serialize()
            self._out.append((self._ack, self.destination))
            return True
        if self.state == "completed" and self._ack is not None:
            self._out.append((self._ack, self.destination))
        return False

    def cancel_sent(self, now: float) -> None:
        """Our CANCEL for this INVITE went out: without a final response within 64*T1 the
        transaction times out (§9.1), instead of waiting in Proceeding, which has no timer, forever."""
        if self.is_invite and self.state == "proceeding":
            self._end_at = min(self._end_at, now + 64 * self._timers.t1_s)
            if self.on_deadline_changed is not None:
                self.on_deadline_changed(self)

    def handle_timer(self, now: float) -> bool:
        """Fire due timers; True when the transaction just timed out (Timer B or F, or §9.1's
        64*T1 after a CANCEL)."""
        before = self.deadline()
        result = self._handle_timer(now)
        if self.on_deadline_changed is not None and self.deadline() != before:
            self.on_deadline_changed(self)
        return result

    def _handle_timer(self, now: float) -> bool:
        if self.state == "terminated":
            return False
        if self.state in ("completed", "accepted"):
            if now >= self._end_at:
                self.state = "terminated"
            return False
        if now >= self._end_at:
            self.state = "terminated"
            self.timed_out = True
            return True
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._out.append((self._wire, self.destination))
            if self.is_invite:
                self._interval_s *= 2
            else:
                self._interval_s = min(self._interval_s * 2, self._timers.t2_s)
            self._retransmit_at = now + self._interval_s
        return False


def build_non2xx_ack(request: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 3xx-6xx (RFC 3261 §17.1.1.3)."""
    items: list[tuple[str, str]] = [("Via", request.headers.get("Via") or "")]
    for name in ("Route", "Max-Forwards"):
        items += [(name, v) for v in request.headers.get_all(name)]
    items += [
        ("From", request.headers.get("From") or ""),
        ("To", response.headers.get("To") or ""),
        ("Call-ID", request.call_id),
        ("CSeq", f"{request.cseq.seq} ACK"),
    ]
    return Request(method="ACK", uri=request.uri, headers=Headers(tuple(items)))


class ServerTransaction:
    """INVITE or non-INVITE server transaction; see the module docstring."""

    def __init__(
        self, request: Request, destination: Address, now: float, timers: TimerConfig, out: Datagrams
    ) -> None:
        self.request = request
        self.destination = destination
        self.is_invite = request.method == "INVITE"
        self.key = server_key(request)
        self.state = "proceeding" if self.is_invite else "trying"
        self.last_response: Response | None = None
        self.ack_timed_out = False
        self.acked = False  # the 2xx's ACK came (or the call ended): stop retransmitting, keep absorbing
        self.created_at = now
        # called after every change of deadline() (the user agent's timer heap)
        self.on_deadline_changed: Callable[[ServerTransaction], None] | None = None
        self._timers = timers
        self._out = out
        self._wire: bytes | None = None
        self._interval_s = timers.t1_s
        self._retransmit_at: float | None = None
        self._end_at: float | None = None

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status_code >= 200

    def deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._end_at) if t is not None]
        return min(times) if times and self.state != "terminated" else None

    def send(self, response: Response, now: float) -> None:
        """Send a response from the transaction user (ignored once a final response went out)."""
        if self.final_sent or self.state == "terminated":
            return
        self.last_response = response
        self._wire = response.serialize()
        self._out.append((self._wire, self.destination))
        code = response.status_code
        if code < 200:
            self.state = "proceeding"
            return
        if not self.is_invite:
            self.state = "completed"
            self._end_at = now + 64 * self._timers.t1_s  # Timer J
        else:
            # Timer G retransmits (3xx-6xx, and 2xx per §13.3.1.4 / RFC 6026), Timer H / L give up.
            self.state = "accepted" if code < 300 else "completed"
            self._retransmit_at = now + self._timers.t1_s
            self._end_at = now + 64 * self._timers.t1_s
        self._changed()

    def receive_request(self, request: Request, now: float) -> None:
        """A retransmission (or, for INVITE, the ACK of a non-2xx final response) arrived."""
        if request.method == "ACK":
            if self.is_invite and self.state == "completed":
                self.state = "confirmed"
                self._retransmit_at = None
                self._end_at = now + self._timers.t4_s  # Timer I
                self._changed()
            return
        if self.state == "accepted" and self.acked:
            return  # RFC 6026 §8.5: absorbed; the call it started is confirmed or over
        if self._wire is not None and self.state in ("proceeding", "trying", "completed", "accepted"):
            self._out.append((self._wire, self.destination))

    def ack_received(self, now: float) -> None:
        """The dialog layer got the ACK for our 2xx (or ended the call): stop retransmitting it,
        stay in Accepted until Timer L to absorb INVITE retransmissions (RFC 6026 §7.1)."""
        if self.state == "accepted" and not self.acked:
            self.acked = True
            self._retransmit_at = None
            self._changed()

    def handle_timer(self, now: float) -> bool:
        """Fire due timers; True when a final INVITE response was never ACKed (Timer H / L)."""
        if self.state == "terminated" or self._end_at is None:
            return False
        if now >= self._end_at:
            # Timer J (non-INVITE, §17.2.2) only ends the transaction: a non-INVITE final response
            # is never ACKed, so its Completed state is not the INVITE's "waiting for the ACK".
            timed_out = self.is_invite and (
                self.state == "completed" or (self.state == "accepted" and not self.acked)
            )
            self.state = "terminated"
            self.ack_timed_out = timed_out
            self._changed()
            return timed_out
        if self._retransmit_at is not None and now >= self._retransmit_at and self._wire is not None:
            self._out.append((self._wire, self.destination))
            self._interval_s = min(self._interval_s * 2, self._timers.t2_s)
            self._retransmit_at = now + self._interval_s
            self._changed()
        return False

    def _changed(self) -> None:
        if self.on_deadline_changed is not None:
            self.on_deadline_changed(self)
