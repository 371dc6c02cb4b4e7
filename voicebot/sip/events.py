"""What the sans-IO user agent reports: frozen, past-tense events, one name per meaning.

The names are unique across voicebot's layers (issue 8): the SIP layer's end of a call is
:class:`CallTerminated` (telephony's is ``LegEnded``, the dialog's ``CallEnded``), a re-INVITE's new
media is :class:`RemoteMediaChanged`, a SIP INFO digit is :class:`InfoDtmfReceived` (RTP's RFC 4733
digit is ``rtp.dtmf.DtmfReceived``).

Order for an inbound call: :class:`CallReceived` -> (the application answers) ->
:class:`AckReceived` -> :class:`CallEstablished` -> ... -> :class:`CallTerminated`. Media and the
dialplan should start only at the ACK (RFC 3261 §13.3.1.4: until then the caller's address is
unconfirmed and the 200 may never be acknowledged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from voicebot.sip.headers import Headers
from voicebot.sip.sdp import MediaNegotiation
from voicebot.sip.transaction import Address


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
class AckReceived:
    """The ACK for our 2xx arrived (inbound INVITE, or ``reinvite`` for a re-INVITE we answered).

    For the initial INVITE this is the moment the caller proved it receives at its Via address:
    start media and the dialplan now, not at ``answer()``. :class:`CallEstablished` follows at
    once for the initial INVITE."""

    call_id: str
    cseq: int
    reinvite: bool
    negotiation: MediaNegotiation | None


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The call is up: our 200 was ACKed (inbound), or the callee answered our INVITE (outbound)."""

    call_id: str
    negotiation: MediaNegotiation | None


CallEndCause = Literal[
    "remote_bye", "local_bye", "cancelled", "local_cancel", "rejected", "failed", "timeout", "ack-timeout"
]


@dataclass(frozen=True, slots=True)
class CallTerminated:
    """The call is over. ``status_code`` is the final response for calls that never connected.

    ``ack-timeout``: we answered with 200 but no ACK came within Timer H (64*T1, 32 s); we sent
    BYE (RFC 3261 §13.3.1.4)."""

    call_id: str
    cause: CallEndCause
    status_code: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RemoteMediaChanged:
    """A re-INVITE (or its answer) changed the media: hold/unhold, a new address or codec."""

    call_id: str
    negotiation: MediaNegotiation


@dataclass(frozen=True, slots=True)
class InfoDtmfReceived:
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
    """A REGISTER's outcome: bound (``registered``, for ``expires_s``) or not (failure, unregister).

    ``reason`` is set when the client gave up for good (no more retries): what the registrar did
    wrong, for the log."""

    registration_id: str
    registered: bool
    status_code: int | None
    expires_s: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MessageRejected:
    """A datagram we could not accept: malformed (with the status we answered, None if dropped)."""

    source: Address
    status_code: int | None
    reason: str


Event = (
    CallReceived
    | CallProgressed
    | AckReceived
    | CallEstablished
    | CallTerminated
    | RemoteMediaChanged
    | InfoDtmfReceived
    | TransferProgressed
    | RegistrationChanged
    | MessageRejected
)
