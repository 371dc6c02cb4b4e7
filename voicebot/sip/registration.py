"""The REGISTER client (RFC 3261 §10) as its own sans-IO object.

Theory of operation. A :class:`RegistrationClient` is one binding of our Contact at one registrar.
It never sends anything itself: :meth:`next_request` builds the REGISTER to send (the user agent
runs it in a client transaction), :meth:`on_response` / :meth:`on_timeout` digest the outcome into
a :class:`~voicebot.sip.events.RegistrationChanged` and say whether to send again at once (a digest
challenge), and :attr:`refresh_at` is the deadline at which the user agent calls
:meth:`next_request` again: half the granted expiry (at least 5 s ahead) after a success,
``retry_after_s`` after a failure. :meth:`unregister` turns the next REGISTER into ``Expires: 0``
and the client finishes (:attr:`finished`) on its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from voicebot.sip.auth import Credentials, authorized_request
from voicebot.sip.events import RegistrationChanged
from voicebot.sip.headers import Headers
from voicebot.sip.message import Request, Response
from voicebot.sip.transaction import Address
from voicebot.sip.uri import SipUri

MAX_AUTH_ATTEMPTS = 2


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
        self.registrar = registrar
        self.aor = aor
        self.destination = destination
        self.credentials = credentials
        self.expires_s = expires_s
        self.refresh_at: float | None = None
        self.active = True
        self.finished = False
        self._local_tag = local_tag
        self._contact = contact
        self._user_agent = user_agent
        self._retry_after_s = retry_after_s
        self._cseq = 0
        self._auth_attempts = 0
        self._challenge: Response | None = None

    def deadline(self) -> float | None:
        return None if self.finished else self.refresh_at

    def unregister(self) -> None:
        """The next REGISTER removes the binding (``Expires: 0``); no more refreshes."""
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
        return request, None

    def on_response(self, response: Response, now: float) -> RegistrationResult:
        code = response.status_code
        if code < 200:
            return RegistrationResult(None)
        if code in (401, 407) and self.credentials is not None and self._auth_attempts < MAX_AUTH_ATTEMPTS:
            self._auth_attempts += 1
            self._challenge = response
            return RegistrationResult(None, send_again=True)
        self._auth_attempts = 0
        if 200 <= code < 300:
            if not self.active:
                self.finished = True
                return RegistrationResult(RegistrationChanged(self.registration_id, False, code, 0))
            expires = _granted_expires(response, self.expires_s)
            # refresh at half the granted time (at least 5 s ahead)
            self.refresh_at = now + max(5.0, expires / 2)
            return RegistrationResult(RegistrationChanged(self.registration_id, True, code, expires))
        if self.active:
            self.refresh_at = now + self._retry_after_s
        return RegistrationResult(RegistrationChanged(self.registration_id, False, code, 0))

    def on_timeout(self, now: float) -> RegistrationChanged:
        """Timer F fired on our REGISTER: report 408 and try again (an unREGISTER too) later."""
        self.refresh_at = now + self._retry_after_s
        return RegistrationChanged(self.registration_id, False, 408, 0)


def _granted_expires(response: Response, requested_s: int) -> int:
    """The registrar's expiry: our Contact's ``expires`` parameter, else Expires (§10.2.4)."""
    for contact in response.contacts:
        value = next((v for k, v in contact.params if k.lower() == "expires"), None)
        if value is not None and value.isdigit():
            return int(value)
    header = response.headers.get("Expires")
    if header is not None and header.isdigit():
        return int(header)
    return requested_s
