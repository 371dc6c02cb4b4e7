"""How a SIP call's ending becomes a leg's hang-up cause and side: one pure, table-tested mapping.

The SIP layer reports why a call ended in its own words (``remote_bye``, ``local_cancel``,
``ack-timeout``...). A leg ended by us may carry a more precise reason given to
:meth:`~voicebot.telephony.CallLeg.hangup` (``rtp-timeout`` from the RTP watchdog, ``shutdown``,
``timeout`` of an unanswered outbound call). :func:`leg_end_cause` joins the two into the
:class:`~voicebot.telephony.LegEnded` cause and side; nothing here does I/O.
"""

from __future__ import annotations

from typing import Literal

Side = Literal["local", "remote"]
Direction = Literal["inbound", "outbound"]

# The SIP layer's cause -> (leg cause, side), when no other rule below applies.
SIP_CAUSES: dict[str, tuple[str, Side]] = {
    "remote_bye": ("bye", "remote"),
    "local_bye": ("bye", "local"),
    "cancelled": ("cancelled", "remote"),
    "local_cancel": ("cancelled", "local"),
    "ack-timeout": ("ack-timeout", "remote"),
}

# Final statuses of an outbound call worth trying again later (RFC 3261 §21.4.9/§21.4.18/§21.4.25,
# §21.5.4): no answer, temporarily unavailable, busy, overloaded.
RETRYABLE_STATUSES = frozenset({408, 480, 486, 503})


def leg_end_cause(sip_cause: str, *, local_cause: str | None, direction: Direction) -> tuple[str, Side]:
    """The leg's (cause, side) for a SIP call that ended with ``sip_cause``.

    ``local_cause`` is the reason we hung up with (None when we did not, or gave none); it names a
    BYE or CANCEL we sent and a reject we answered. A ``timeout`` is ours on an inbound call (the
    application never answered) and the peer's on an outbound one (it never answered us).
    """
    cause, side = SIP_CAUSES.get(sip_cause, (sip_cause, "remote"))
    if sip_cause in ("local_bye", "local_cancel") and local_cause is not None:
        cause = local_cause
    elif sip_cause == "rejected":
        cause, side = local_cause or "rejected", "local"
    elif sip_cause == "failed":
        cause, side = "failed", "remote"
    elif sip_cause == "timeout":
        cause, side = "timeout", "local" if direction == "inbound" else "remote"
    return cause, side


def is_retryable(status_code: int | None) -> bool:
    """Whether a call that failed with ``status_code`` may be placed again later."""
    return status_code in RETRYABLE_STATUSES


__all__ = ["RETRYABLE_STATUSES", "SIP_CAUSES", "Direction", "Side", "is_retryable", "leg_end_cause"]
