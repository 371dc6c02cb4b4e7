"""Call legs: the SIP user agent (``voicebot.sip``) joined to RTP media (``voicebot.rtp``).

Theory of operation. :class:`Telephony` owns one :class:`~voicebot.sip.udp.SipEndpoint`, one
:class:`~voicebot.rtp.udp.MediaClock` (a single 20 ms timer for every call) and one
:class:`~voicebot.rtp.udp.PortAllocator`. Each SIP call becomes a :class:`CallLeg` as soon as the
INVITE passed the SIP layer's checks (access control, capacity 503, codec 488 are the SIP layer's
job). The leg has two small tasks: one follows the SIP call's events (re-INVITEs are applied to
the RTP stream and reported as :class:`MediaChanged`; SIP INFO digits are reported), one follows the
RTP stream's events (RFC 4733 digits, prompt completion). Both feed one bounded event queue, so
RFC 4733 and INFO digits arrive as one digit stream. When either side hangs up, the RTP stream is
closed (which ends :meth:`CallLeg.frames`), :class:`LegEnded` is the last event, and one
``call.leg.ended`` log line carries the leg's RTP counters.

A peer that vanishes without BYE must not leak a call: a watchdog (one timer for all legs, every
second) hangs up with cause ``rtp-timeout`` a leg that received nothing from its peer (RTP, RTCP,
comfort noise) for ``rtp_timeout_s`` (default 45 s) while the media was not on hold (RFC 3264
§5.1: a held peer may legitimately send nothing).

Modules: ``config`` (:class:`TelephonyConfig`, :func:`telephony_config` from ``[sip]``/``[rtp]``,
the :func:`primary_address` probe), ``events`` (what a leg reports: :class:`DigitReceived`,
:class:`PlaybackFinished`, :class:`MediaChanged`, :class:`LegEnded`), ``causes`` (the pure mapping
from SIP endings to hang-up causes), ``leg`` (:class:`CallLeg`), ``service`` (:class:`Telephony`),
``errors``. Time comes from an injected :class:`~voicebot.clock.Clock` (``Telephony(config,
clock=...)``), handed to every leg.
"""

from voicebot.sip.auth import Credentials
from voicebot.sip.udp import CallFailed
from voicebot.telephony.config import TelephonyConfig, primary_address, telephony_config
from voicebot.telephony.errors import TelephonyError
from voicebot.telephony.events import (
    DigitReceived,
    LegEnded,
    LegEvent,
    LegStats,
    MediaChanged,
    PlaybackFinished,
    TransferResult,
)
from voicebot.telephony.leg import CallLeg
from voicebot.telephony.service import Telephony

__all__ = [
    "CallFailed",
    "CallLeg",
    "Credentials",
    "DigitReceived",
    "LegEnded",
    "LegEvent",
    "LegStats",
    "MediaChanged",
    "PlaybackFinished",
    "Telephony",
    "TelephonyConfig",
    "TelephonyError",
    "TransferResult",
    "primary_address",
    "telephony_config",
]
