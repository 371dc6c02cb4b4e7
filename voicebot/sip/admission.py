"""UAS admission: who may start a call here, and how many, before the dialog core sees the INVITE.

Theory of operation. :class:`Admission` holds every inbound policy of the user agent and none of its
protocol state. The user agent asks it, in this order, for each request and each new INVITE:

1. :meth:`allow_request` -- every request that is not a retransmission of a live transaction (new
   INVITEs, in-dialog requests, requests for unknown dialogs, CANCEL, OPTIONS) spends a token of
   its source IP's bucket unless the source is a configured trunk (``allowed_networks``); a flood
   from one address is dropped, counted, before any transaction state exists (issue 9 item 3).
2. :meth:`check_access` -- trunk CIDRs (403) or a digest challenge (401).
3. :meth:`check_content` -- body type (415 with Accept) and Accept (406).
4. :meth:`check_capacity` -- ``max_calls`` (503), the cap on unconfirmed calls from untrusted
   sources (503), the concurrent calls of one source and its unconfirmed calls (503), each with
   Retry-After (issue 9 item 2: one address could hold every slot with INVITEs it never ACKs).
5. :meth:`check_offer` -- the SDP offer parses (400) and shares a codec with us (488).

A refusal is a :class:`Refusal` (status, reason, extra headers, and the statistic it counts under);
the user agent sends it in the INVITE's server transaction. The user agent reports each admitted
call's life with :meth:`admitted`, :meth:`confirmed` and :meth:`released` so the counts stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicebot.sip.access import RateLimiter, address_in, parse_networks
from voicebot.sip.auth import DigestServer
from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SdpNegotiationError, SipParseError
from voicebot.sip.message import Request
from voicebot.sip.sdp import MediaNegotiation, SessionDescription, negotiate, parse_sdp
from voicebot.sip.transaction import Address

RefusalKind = Literal["access", "content", "busy", "unconfirmed", "per_source", "sdp"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A final response that refuses a new INVITE, and the statistic it counts under."""

    status_code: int
    kind: RefusalKind
    reason: str | None = None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Offer:
    """An admitted INVITE's SDP: the offer and our negotiation of it (both None when offerless)."""

    sdp: SessionDescription | None
    negotiation: MediaNegotiation | None


class Admission:
    """See the module docstring. Sans-IO: ``now`` and nonces are passed in."""

    def __init__(self, config: UaConfig) -> None:
        self._config = config
        self._networks = parse_networks(config.allowed_networks)
        self._exempt = parse_networks(config.per_source_exempt)
        self._digest = (
            DigestServer(config.auth_realm, dict(config.inbound_users)) if config.inbound_users else None
        )
        self._limiter = RateLimiter(config.rate_limit_per_s, config.rate_limit_burst)
        self._source_of: dict[str, str] = {}  # call_id -> source IP, every admitted inbound call
        self._per_source: dict[str, int] = {}  # source IP -> admitted calls not yet released
        self._unconfirmed: dict[str, str] = {}  # call_id -> source IP, untrusted calls awaiting their ACK
        self._unconfirmed_per_source: dict[str, int] = {}

    # ------------------------------------------------------------ questions

    def trusted(self, source: Address) -> bool:
        """A source inside the configured trunk networks (exempt from the limits)."""
        return bool(self._networks) and address_in(source[0], self._networks)

    def allow_request(self, source: Address, now: float) -> bool:
        """Spend one of the source's tokens (trunks have no bucket); False: drop the request."""
        return self.trusted(source) or self._limiter.allow(source[0], now)

    def over_limit(self, source: Address, now: float) -> bool:
        """The source has no token left: drop its datagram before parsing (spends nothing)."""
        return not self.trusted(source) and self._limiter.exhausted(source[0], now)

    def check_access(self, request: Request, source: Address, now: float, nonce: str) -> Refusal | None:
        if self.trusted(source) or (not self._networks and self._digest is None):
            return None
        if self._digest is None:
            return Refusal(403, "access", "Forbidden: source address not allowed")
        stale = False
        for value in request.headers.get_all("Authorization"):
            ok, stale = self._digest.verify(value, method=request.method, now=now)
            if ok:
                return None
        challenge = self._digest.challenge(nonce, now, stale=stale)
        return Refusal(401, "access", extra=(("WWW-Authenticate", challenge),))

    @staticmethod
    def check_content(request: Request) -> Refusal | None:
        if request.body and request.content_type != "application/sdp":
            return Refusal(415, "content", extra=(("Accept", "application/sdp"),))
        accept = [a.split(";")[0].strip().lower() for a in request.headers.values("Accept")]
        if "Accept" in request.headers and not {"application/sdp", "application/*", "*/*"} & set(accept):
            return Refusal(406, "content", extra=(("Accept", "application/sdp"),))
        return None

    def check_capacity(self, source: Address, active_calls: int) -> Refusal | None:
        retry = self.retry_after()
        if active_calls >= self._config.max_calls:
            return Refusal(503, "busy", "Busy: max calls reached", retry)
        if self.trusted(source):
            return None
        if len(self._unconfirmed) >= self._config.unconfirmed_cap:
            return Refusal(503, "unconfirmed", "Busy: too many unconfirmed calls", retry)
        if address_in(source[0], self._exempt):
            return None
        limit = self._config.max_calls_per_source
        if limit and self._per_source.get(source[0], 0) >= limit:
            return Refusal(503, "per_source", "Busy: too many calls from this address", retry)
        limit = self._config.max_unconfirmed_per_source
        if limit and self._unconfirmed_per_source.get(source[0], 0) >= limit:
            return Refusal(503, "per_source", "Busy: too many unconfirmed calls from this address", retry)
        return None

    def check_offer(self, request: Request) -> Offer | Refusal:
        if not request.body:
            return Offer(None, None)
        try:
            offer = parse_sdp(request.body)
            result = negotiate(offer, codecs=self._config.codecs, default_ptime_ms=self._config.ptime_ms)
        except SipParseError as exc:
            return Refusal(400, "sdp", f"Malformed SDP: {exc.message}"[:160])
        except SdpNegotiationError as exc:
            return Refusal(488, "sdp", extra=(("Warning", f'304 voicebot "{exc.message}"'),))
        return Offer(offer, result)

    def retry_after(self) -> tuple[tuple[str, str], ...]:
        return (("Retry-After", str(self._config.retry_after_s)),)

    @property
    def unconfirmed_calls(self) -> int:
        return len(self._unconfirmed)

    def calls_from(self, ip: str) -> int:
        return self._per_source.get(ip, 0)

    # ------------------------------------------------------------ bookkeeping

    def admitted(self, call_id: str, source: Address) -> None:
        """A new inbound call was accepted (CallReceived): it counts until :meth:`released`."""
        ip = source[0]
        self._source_of[call_id] = ip
        self._per_source[ip] = self._per_source.get(ip, 0) + 1
        if not self.trusted(source):
            self._unconfirmed[call_id] = ip
            self._unconfirmed_per_source[ip] = self._unconfirmed_per_source.get(ip, 0) + 1

    def confirmed(self, call_id: str) -> None:
        """The ACK for our 2xx arrived: the call no longer counts as unconfirmed."""
        ip = self._unconfirmed.pop(call_id, None)
        if ip is not None:
            _decrement(self._unconfirmed_per_source, ip)

    def released(self, call_id: str) -> None:
        self.confirmed(call_id)
        ip = self._source_of.pop(call_id, None)
        if ip is not None:
            _decrement(self._per_source, ip)


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
