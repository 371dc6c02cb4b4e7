"""The REGISTER client (RFC 3261 §10) as its own sans-IO object.

Theory of operation. A :class:`RegistrationClient` is one binding of our Contact at one registrar.
It never sends anything itself: :meth:`next_request` builds the REGISTER to send (the user agent
runs it in a client transaction), :meth:`on_response` / :meth:`on_timeout` digest the outcome into
a :class:`~voicebot.sip.events.RegistrationChanged` and say whether to send again at once (a digest
challenge), and :attr:`refresh_at` is the deadline at which the user agent calls
:meth:`next_request` again: half the granted expiry (at least 5 s ahead) after a success,
``retry_after_s`` after a failure, doubling for each failure in a row up to :data:`MAX_BACKOFF_S`
(RFC 5626 §4.5's shape), or the failure's Retry-After when that is later (§20.33).

The granted expiry is the one the 2xx lists for *our* Contact (§10.2.4; other devices' bindings of
the same AOR are listed too), else its Expires header. A ``423 Interval Too Brief`` is answered at
once with Expires raised to its Min-Expires (§10.2.8); one we cannot satisfy ends the registration
(:attr:`finished`) with a ``reason``, since the same REGISTER would only be refused again. Only one
REGISTER is in flight at a time (§10.2, :attr:`in_flight`). :meth:`unregister` turns the next
REGISTER into ``Expires: 0`` (sent when the one in flight is answered) and the client finishes on
its answer: a 2xx, a refusal, or a timeout or 5xx whose retry would come after the binding's end.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from voicebot.ascii import is_digits
from voicebot.sip.auth import Credentials, authorized_request, can_answer
from voicebot.sip.errors import SipParseError
from voicebot.sip.events import RegistrationChanged
from voicebot.sip.headers import Headers, parse_name_addr
from voicebot.sip.message import Request, Response
from voicebot.sip.transaction import Address
from voicebot.sip.uri import SipUri, Uri, uri_equal

MAX_AUTH_ATTEMPTS = 2
# a registrar whose every 423 asks for more than the last is broken; two raises are plenty (§10.2.8)
MAX_INTERVAL_RETRIES = 2
# consecutive failures wait retry_after_s * 2**(failures-1), at most this (RFC 5626 §4.5 max-time)
MAX_BACKOFF_S = 1800.0
# §20.19 / §25.1 delta-seconds: the largest expiry we will send
MAX_EXPIRES_S = 2**32 - 1


@dataclass(frozen=True, slots=True)
class RegistrationResult:
    """What :meth:`RegistrationClient.on_response` decided: an event to report (if any) and
    whether to send :meth:`~RegistrationClient.next_request` again now (answering a challenge)."""

    event: RegistrationChanged | None
    send_again: bool = False


class RegistrationClient:
    """One REGISTER binding; see the module docstring. Sans-IO: no clock, no socket."""

    def __init__(
        self,
        *,
        registration_id: str,
        registrar: SipUri,
        aor: str,
        destination: Address,
        credentials: Credentials | None,
        expires_s: int,
        local_tag: str,
        contact: str,
        user_agent: str,
        retry_after_s: float,
    ) -> None:
        self.registration_id = registration_id
        # §10.2: the Request-URI names the registrar's domain, never a user (nor URI headers)
        self.registrar = replace(registrar, user=None, password=None, headers=None)
        self.aor = aor
        self.destination = destination
        self.credentials = credentials
        self.expires_s = expires_s
        self.refresh_at: float | None = None
        self.active = True
        self.finished = False
        self._local_tag = local_tag
        self._contact = contact
        self._contact_uri: Uri = parse_name_addr(contact, "Contact").uri
        self._user_agent = user_agent
        self._retry_after_s = retry_after_s
        self._cseq = 0
        self._auth_attempts = 0
        self._interval_retries = 0
        self._failures = 0  # REGISTER attempts failed in a row (a challenge answered is no failure)
        self._challenge: Response | None = None
        # the Expires of the REGISTER awaiting its final response (None: nothing in flight)
        self._sent_expires_s: int | None = None
        # when the binding the registrar last granted ends (None: no 2xx yet)
        self._bound_until: float | None = None

    @property
    def in_flight(self) -> bool:
        """A REGISTER awaits its final response: §10.2 forbids sending another one meanwhile."""
        return self._sent_expires_s is not None

    def deadline(self) -> float | None:
        return None if self.finished else self.refresh_at

    def unregister(self) -> None:
        """The next REGISTER removes the binding (``Expires: 0``); no more refreshes. Send it now
        unless :attr:`in_flight`: then the answer to the REGISTER in flight asks for it
        (``send_again``), since a refresh's 200 does not remove the binding."""
        self.active = False
        self.expires_s = 0
        self.refresh_at = None

    def next_request(self, *, via: str, cnonce: str) -> tuple[Request | None, RegistrationChanged | None]:
        """The REGISTER to send now, or (None, failure event) when a challenge cannot be answered."""
        self.refresh_at = None
        self._cseq += 1
        headers = Headers.of(
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<{self.aor}>;tag={self._local_tag}"),
            ("To", f"<{self.aor}>"),
            ("Call-ID", self.registration_id),
            ("CSeq", f"{self._cseq} REGISTER"),
            ("Contact", self._contact),
            ("Expires", str(self.expires_s)),
            ("User-Agent", self._user_agent),
        )
        request = Request("REGISTER", self.registrar, headers)
        challenge, self._challenge = self._challenge, None
        if challenge is not None and self.credentials is not None:
            authed = authorized_request(
                request, challenge, self.credentials, cseq=self._cseq, via=via, cnonce=cnonce
            )
            if authed is None:
                return None, RegistrationChanged(self.registration_id, False, challenge.status_code, 0)
            request = authed
        self._sent_expires_s = self.expires_s
        return request, None

    def on_response(self, response: Response, now: float) -> RegistrationResult:
        code = response.status_code
        if code < 200:
            return RegistrationResult(None)
        # an unregister() that came while a REGISTER with Expires > 0 was in flight
        unregister_waiting = not self.active and bool(self._sent_expires_s)
        self._sent_expires_s = None
        if (
            code in (401, 407)
            and self.credentials is not None
            and self._auth_attempts < MAX_AUTH_ATTEMPTS
            # one we cannot answer is a failure retried later, like a challenge without credentials
            and can_answer(response, self.credentials)
        ):
            self._auth_attempts += 1
            self._challenge = response
            return RegistrationResult(None, send_again=True)
        self._auth_attempts = 0
        if code == 423 and self.active:
            return self._interval_too_brief(response)
        self._interval_retries = 0
        if 200 <= code < 300:
            if unregister_waiting:
                return RegistrationResult(None, send_again=True)
            if not self.active:
                self.finished = True
                return RegistrationResult(RegistrationChanged(self.registration_id, False, code, 0))
            expires = _granted_expires(response, self._contact_uri, self.expires_s)
            self._failures = 0
            self._bound_until = now + expires
            # refresh at half the granted time (at least 5 s ahead)
            self.refresh_at = now + max(5.0, expires / 2)
            return RegistrationResult(RegistrationChanged(self.registration_id, True, code, expires))
        failed = RegistrationChanged(self.registration_id, False, code, 0)
        if unregister_waiting:
            return RegistrationResult(failed, send_again=True)
        # §20.33: not before the registrar's Retry-After, nor sooner than our own retry_after_s
        retry_after_s = _delta_seconds(
            (response.headers.get("Retry-After") or "").split(";")[0].split("(")[0]
        )
        if self.active:
            self.refresh_at = now + max(self._backoff_s(), retry_after_s or 0)
        elif code == 408 or code >= 500:
            # the registrar could not handle the unREGISTER now: again later, while there is a binding
            self._retry_unregister_at(now + max(self._retry_after_s, retry_after_s or 0))
        else:
            # refused for good; the binding lapses at its expiry anyway
            self.finished = True
        return RegistrationResult(failed)

    def _interval_too_brief(self, response: Response) -> RegistrationResult:
        """423: send again at once with Expires raised to Min-Expires (§10.2.8, §10.3 step 7), or
        give up when the registrar's minimum is missing, not above what we asked, or keeps rising."""
        raw = response.headers.get("Min-Expires")
        min_expires = _delta_seconds(raw)
        if min_expires is None:
            why = f"without a usable Min-Expires (got {raw!r})"
        elif min_expires <= self.expires_s:
            why = f"with Min-Expires {min_expires} s, not above the {self.expires_s} s we asked for"
        elif self._interval_retries >= MAX_INTERVAL_RETRIES:
            why = f"{self._interval_retries + 1} times in a row, last asking for {min_expires} s"
        else:
            self._interval_retries += 1
            self.expires_s = min_expires
            return RegistrationResult(None, send_again=True)
        self._interval_retries = 0
        self.finished = True
        self.refresh_at = None
        reason = f"registration abandoned: 423 Interval Too Brief {why}; the registrar is at fault"
        return RegistrationResult(RegistrationChanged(self.registration_id, False, 423, 0, reason))

    def on_timeout(self, now: float) -> RegistrationChanged:
        """Timer F fired on our REGISTER: report 408 and try again (an unREGISTER too) later; an
        unREGISTER that was waiting for this REGISTER goes at once."""
        unregister_waiting = not self.active and bool(self._sent_expires_s)
        self._sent_expires_s = None
        # the next REGISTER starts a new attempt: its challenges and 423s are counted afresh
        self._auth_attempts = 0
        self._interval_retries = 0
        if unregister_waiting:
            self.refresh_at = now
        elif self.active:
            self.refresh_at = now + self._backoff_s()
        else:
            self._retry_unregister_at(now + self._retry_after_s)
        return RegistrationChanged(self.registration_id, False, 408, 0)

    def _backoff_s(self) -> float:
        """Count one more failure in a row; the wait before the next attempt. A registrar that
        refuses us (a wrong password above all) is asked less and less often, not every
        ``retry_after_s`` forever, which is what gets an address banned by its intrusion filter."""
        self._failures += 1
        backoff_s = self._retry_after_s * 2.0 ** min(self._failures - 1, 32)
        return min(backoff_s, max(MAX_BACKOFF_S, self._retry_after_s))

    def _retry_unregister_at(self, retry_at: float) -> None:
        """Send the unREGISTER again at ``retry_at``, unless the binding we know of ends by then."""
        if self._bound_until is not None and retry_at >= self._bound_until:
            self.finished = True
            self.refresh_at = None
        else:
            self.refresh_at = retry_at


def _granted_expires(response: Response, ours: Uri, requested_s: int) -> int:
    """The registrar's expiry for our binding (§10.2.4): the ``expires`` parameter of *our* Contact,
    found by §19.1.4 URI comparison among every binding of the AOR that the 2xx lists, else the
    Expires header, else what we asked for.

    A registrar behind which our Contact was rewritten (a NAT fix-up) lists no Contact we recognise;
    then we take the shortest expiry it lists, since refreshing early costs one REGISTER and
    refreshing late loses the binding."""
    header = _delta_seconds(response.headers.get("Expires"))
    try:
        contacts = response.contacts
    except SipParseError:
        contacts = []
    listed: list[int] = []
    for contact in contacts:
        granted = _delta_seconds(next((v for k, v in contact.params if k.lower() == "expires"), None))
        if uri_equal(contact.uri, ours):
            if granted is not None:
                return granted
            return requested_s if header is None else header
        if granted is not None:
            listed.append(granted)
    if listed:
        return min(listed if header is None else [*listed, header])
    return requested_s if header is None else header


def _delta_seconds(text: str | None) -> int | None:
    """A delta-seconds value (§25.1, below 2**32), or None when absent or unusable."""
    if text is None:
        return None
    text = text.strip()
    if not is_digits(text) or int(text) > MAX_EXPIRES_S:
        return None
    return int(text)
