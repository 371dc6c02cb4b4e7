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
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from voicebot.errors import VoicebotError
from voicebot.logging import get_logger
from voicebot.rtp.dtmf import DtmfReceived as RtpDtmfReceived
from voicebot.rtp.errors import RtpError
from voicebot.rtp.jitter import JitterConfig
from voicebot.rtp.session import PromptFinished as RtpPromptFinished
from voicebot.rtp.session import SessionConfig
from voicebot.rtp.udp import MediaClock, PortAllocator, PortRange, RtpStream
from voicebot.sip.auth import Credentials
from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipError
from voicebot.sip.events import (
    CallEstablished,
    CallProgressed,
    CallTerminated,
    InfoDtmfReceived,
    RemoteMediaChanged,
)
from voicebot.sip.sdp import MediaNegotiation
from voicebot.sip.udp import Call, CallFailed, IncomingCall, SipEndpoint

__all__ = [
    "CallFailed",
    "CallLeg",
    "Credentials",
    "DigitReceived",
    "LegEnded",
    "LegEvent",
    "LegStats",
    "MediaChanged",
    "PromptFinished",
    "Telephony",
    "TelephonyConfig",
    "TelephonyError",
    "TransferResult",
]

log = get_logger(__name__)

# A digit reported by one source (RFC 4733 or INFO) and the same digit from the other source within
# this window is one key press: some phones send both.
_DUPLICATE_DIGIT_WINDOW_S = 0.5
_WATCHDOG_PERIOD_S = 1.0


class TelephonyError(VoicebotError):
    """The application used a call leg wrongly (the message says what to do instead)."""


@dataclass(frozen=True, slots=True)
class TelephonyConfig:
    """Everything the SIP user agent and the RTP plane need; the app builds it from voicebot.config.

    ``sip_host``/``sip_port``: where the SIP UDP socket binds (port 0: any free port, tests).
    ``advertised_host``: the address put in Via, Contact and the SDP ``c=`` line (default: ``sip_host``,
    or ``rtp_host`` when ``sip_host`` is a wildcard; set it behind NAT). ``rtp_host``,
    ``rtp_port_min``/``rtp_port_max``: where RTP sockets bind, even ports of the range (``0, 0``: any
    free port, tests). ``max_calls``: concurrent calls, beyond that the SIP layer answers 503.
    ``allowed_networks``: source CIDRs allowed to call in (empty: any). ``inbound_users``: digest
    (user, password) pairs required from sources outside ``allowed_networks``. ``user``: user part of
    our Contact/From. ``rtp_timeout_s`` (default 45 s): hang up a leg that received no RTP for this
    long while not on hold (0 disables). ``symmetric_rtp`` (default True): latch to the first source
    of valid RTP for NAT'd callers (RFC 4961), then accept only that source. ``ring`` (default True):
    send 180 Ringing before the 200. ``jitter_target_ms``/``jitter_max_ms``: jitter buffer bounds.
    """

    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    advertised_host: str | None = None
    rtp_host: str = "127.0.0.1"
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    max_calls: int = 16
    allowed_networks: tuple[str, ...] = ()
    inbound_users: tuple[tuple[str, str], ...] = ()
    user: str = "bot"
    display_name: str | None = None
    codecs: tuple[str, ...] = ("PCMU", "PCMA")
    telephone_event_pt: int = 101
    rate_limit_per_s: float = 20.0
    rate_limit_burst: float = 40.0
    answer_timeout_s: float = 120.0
    rtp_timeout_s: float = 45.0
    symmetric_rtp: bool = True
    ring: bool = True
    jitter_target_ms: int = 60
    jitter_max_ms: int = 200
    max_pending_calls: int = 1000

    @property
    def public_host(self) -> str:
        if self.advertised_host:
            return self.advertised_host
        if self.sip_host not in ("0.0.0.0", "::", ""):
            return self.sip_host
        if self.rtp_host not in ("0.0.0.0", "::", ""):
            return self.rtp_host
        return "127.0.0.1"


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A DTMF key press, reported once, from RFC 4733 telephone-events or from a SIP INFO."""

    digit: str
    source: Literal["rfc4733", "info"]


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt queued by :meth:`CallLeg.play` was sent to the end, or cut by flush (``interrupted``)."""

    prompt_id: int
    interrupted: bool


@dataclass(frozen=True, slots=True)
class MediaChanged:
    """A re-INVITE changed the media: ``held`` True means the peer put us on hold (we send nothing)."""

    held: bool
    codec: str


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The leg is over; the last event of :meth:`CallLeg.events`.

    ``cause``: ``bye`` (a BYE from ``side``), ``cancelled`` (CANCEL before answer), ``rejected``,
    ``failed`` (an outbound call got a final error), ``timeout`` (no answer / no response),
    ``ack-timeout`` (our 200 was never ACKed), ``rtp-timeout`` (no RTP from the peer, we sent BYE),
    ``shutdown`` (the process stopped). ``sip_status``: the final status for legs that never connected.
    """

    cause: str
    side: Literal["local", "remote"]
    sip_status: int | None = None
    reason: str = ""


LegEvent = DigitReceived | PromptFinished | MediaChanged | LegEnded


@dataclass(frozen=True, slots=True)
class TransferResult:
    """Outcome of a blind transfer: the NOTIFY sipfrag's final status, or the REFER's failure."""

    status_code: int
    reason: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class LegStats:
    """RTP and jitter counters of one leg, for the call record."""

    codec: str | None
    duration_s: float
    packets_received: int
    packets_sent: int
    lost: int
    late: int
    duplicate: int
    reordered: int
    concealed_frames: int
    underruns: int
    dropped_stranger: int
    dropped_malformed: int
    frames_dropped: int  # the app did not read frames() fast enough
    digits: int
    digits_duplicate: int  # the same key reported by both RFC 4733 and INFO, counted once


_SIP_CAUSES: dict[str, tuple[str, Literal["local", "remote"]]] = {
    "remote_bye": ("bye", "remote"),
    "local_bye": ("bye", "local"),
    "cancelled": ("cancelled", "remote"),
    "local_cancel": ("cancelled", "local"),
    "ack-timeout": ("ack-timeout", "remote"),
}


class CallLeg:
    """One call (inbound or outbound) with its RTP media; created by :class:`Telephony` only."""

    def __init__(self, telephony: Telephony, call: Call, direction: Literal["inbound", "outbound"],
                 from_uri: str, to_uri: str, stream: RtpStream | None = None) -> None:
        self.call_id = call.call_id
        self.direction: Literal["inbound", "outbound"] = direction
        self.from_uri = from_uri
        self.to_uri = to_uri
        self._telephony = telephony
        self._call = call
        self._stream = stream
        self._negotiation: MediaNegotiation | None = call.negotiation
        self._events: asyncio.Queue[LegEvent] = asyncio.Queue(256)
        self._events_dropped = 0
        loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[LegEnded] = loop.create_future()
        self._established: asyncio.Future[None] = loop.create_future()
        self._media_ready = asyncio.Event()
        self._local_cause: str | None = None
        self._answering = False
        self._answered_at: float | None = None
        self._ended_at: float | None = None
        self._last_rx_packets = 0
        self._last_rx_at = loop.time()
        self._last_digit: tuple[str, str, float] | None = None
        self._digits = 0
        self._digits_duplicate = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._frame_handler: Callable[[bytes], None] | None = None
        self._spawn(self._follow_sip(), "sip")
        if stream is not None:
            self._spawn(self._follow_rtp(stream), "rtp")

    # ------------------------------------------------------------ public API

    @property
    def is_ended(self) -> bool:
        return self._ended.done()

    @property
    def negotiation(self) -> MediaNegotiation | None:
        """The media currently negotiated (codec, remote address, direction), None before answer."""
        return self._negotiation

    @property
    def local_rtp_port(self) -> int | None:
        return self._stream.local_port if self._stream is not None else None

    async def answer(self) -> None:
        """Allocate an RTP port, send 180 (if configured) and 200 with our SDP; media starts.

        Raises :class:`TelephonyError` if the leg is not an unanswered inbound call, and
        :class:`~voicebot.rtp.errors.RtpPortsExhausted` (after answering the caller 503) when no RTP
        port is free."""
        if self.direction != "inbound" or not isinstance(self._call, IncomingCall):
            raise TelephonyError(f"answer() is for inbound legs; {self.call_id} is outbound and already up")
        if self._answering or self._stream is not None:
            raise TelephonyError(f"leg {self.call_id} is already answered")
        if self.is_ended:
            raise TelephonyError(f"leg {self.call_id} ended before answer ({self._ended.result().cause})")
        self._answering = True
        stream = self._telephony._new_stream()
        try:
            _, port = await stream.open()
        except RtpError:
            await stream.close()
            if not self.is_ended:
                self._call.reject(503, "Service Unavailable: no free RTP port")
            raise
        if self.is_ended:  # CANCEL arrived while the port was being bound
            await stream.close()
            return
        self._stream = stream
        self._install_frame_handler(stream)
        self._spawn(self._follow_rtp(stream), "rtp")
        try:
            if self._telephony.config.ring:
                self._call.ringing()
            self._call.answer(self._telephony.config.public_host, port)
        except SipError as exc:
            # The call ended between our check and the answer (a CANCEL in the same loop turn).
            log.info("call.leg.answer_failed", call_id=self.call_id, error=str(exc))
            await stream.close()
            return
        self._answered_at = time.monotonic()
        self._last_rx_at = asyncio.get_running_loop().time()
        negotiation = self._call.negotiation
        if negotiation is not None:
            self._apply(negotiation, report=False)
        self._media_ready.set()

    def ringing(self) -> None:
        """Send 180 Ringing on an unanswered inbound leg without answering yet (answer() sends one
        itself when ``ring`` is configured)."""
        if not isinstance(self._call, IncomingCall) or self._answering or self._stream is not None:
            raise TelephonyError(f"ringing() is for unanswered inbound legs; {self.call_id} is not one")
        if not self.is_ended:
            self._call.ringing()

    def reject(self, status_code: int = 486, reason: str | None = None) -> None:
        """Refuse an unanswered inbound leg with a 3xx-6xx final response (``reason`` as phrase)."""
        if not isinstance(self._call, IncomingCall) or self._answering or self._stream is not None:
            raise TelephonyError(f"reject() is for unanswered inbound legs; use hangup() on {self.call_id}")
        if self.is_ended:
            return
        if not 300 <= status_code <= 699:
            raise TelephonyError(f"reject() needs a 3xx-6xx status code, got {status_code}")
        self._local_cause = "rejected"
        self._call.reject(status_code, reason)

    def set_frame_handler(self, handler: Callable[[bytes], None] | None) -> None:
        """Receive each 20 ms frame synchronously from the media clock instead of via frames().

        Saves one task wake-up per frame and call (the cheaper path for many calls); the handler
        must be quick and must not raise. While a handler is set, frames() gets nothing but still
        ends at hang-up. ``None`` goes back to frames()."""
        self._frame_handler = handler
        if self._stream is not None:
            self._install_frame_handler(self._stream)

    def _install_frame_handler(self, stream: RtpStream) -> None:
        handler = self._frame_handler
        stream.on_frame = None if handler is None else (lambda frame: handler(frame.pcm))

    async def frames(self) -> AsyncIterator[bytes]:
        """20 ms of 16-bit 8 kHz PCM (320 bytes) per media tick, concealment and silence included;
        ends when the leg ends. Waits for answer() on an inbound leg. One consumer only."""
        if self._stream is None:
            waiters = (asyncio.ensure_future(self._media_ready.wait()), asyncio.ensure_future(self.ended()))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        stream = self._stream
        if stream is None:
            return
        async for frame in stream.frames():
            yield frame.pcm

    async def events(self) -> AsyncIterator[LegEvent]:
        """DigitReceived, PromptFinished, MediaChanged, then LegEnded last. One consumer only."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def play(self, pcm16_8k: bytes) -> int:
        """Queue prompt audio (16-bit 8 kHz mono PCM); returns the id PromptFinished reports."""
        return self._require_stream("play()").play(pcm16_8k)

    def flush(self) -> int:
        """Barge-in: stop the playing prompt within one packet and drop queued ones; returns how many."""
        return self._require_stream("flush()").flush()

    def send_digit(self, digit: str) -> None:
        """Send a DTMF digit as RFC 4733 telephone-events (needs telephone-event negotiated)."""
        self._require_stream("send_digit()").send_dtmf(digit)

    async def transfer(self, target_uri: str, *, timeout_s: float = 64.0) -> TransferResult:
        """Blind transfer (REFER, RFC 3515): the final NOTIFY sipfrag status, or the REFER's failure.
        Raises :class:`CallFailed` if the leg ends first, TimeoutError after ``timeout_s``."""
        if self.is_ended:
            raise TelephonyError(f"leg {self.call_id} has ended; it cannot be transferred")
        try:
            result = await self._call.refer(target_uri, timeout_s=timeout_s)
        except SipError as exc:
            if isinstance(exc, CallFailed):
                raise
            raise TelephonyError(f"cannot transfer {self.call_id}: {exc.message}") from exc
        return TransferResult(result.status_code, result.reason)

    def hangup(self) -> None:
        """End the leg whatever its state: BYE when up, CANCEL while our INVITE rings, 480 for an
        unanswered inbound call. No-op once ended."""
        self._hangup(None)

    async def ended(self) -> LegEnded:
        return await asyncio.shield(self._ended)

    def stats(self) -> LegStats:
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        duration = end - self._answered_at if self._answered_at is not None else 0.0
        codec = self._negotiation.codec if self._negotiation is not None else None
        if self._stream is None:
            return LegStats(codec, duration, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, self._digits,
                            self._digits_duplicate)
        stream_stats = self._stream.stats()
        session = stream_stats.session
        jitter = session.jitter
        return LegStats(
            codec=codec,
            duration_s=duration,
            packets_received=session.packets_received,
            packets_sent=session.packets_sent,
            lost=jitter.lost,
            late=jitter.late,
            duplicate=jitter.duplicate,
            reordered=jitter.reordered,
            concealed_frames=jitter.concealed_frames,
            underruns=jitter.underruns,
            dropped_stranger=session.dropped_stranger,
            dropped_malformed=session.dropped_malformed,
            frames_dropped=stream_stats.frames_dropped,
            digits=self._digits,
            digits_duplicate=self._digits_duplicate,
        )

    # ------------------------------------------------------------- internals

    def _require_stream(self, what: str) -> RtpStream:
        if self._stream is None:
            raise TelephonyError(f"{what} needs media: answer() leg {self.call_id} first")
        return self._stream

    def _hangup(self, cause: str | None) -> None:
        """Hang up; ``cause`` overrides the SIP-derived LegEnded cause (rtp-timeout, shutdown)."""
        if self.is_ended or self._call.is_ended:
            return
        self._local_cause = cause
        try:
            self._call.hangup()
        except SipError as exc:
            log.info("call.leg.hangup_failed", call_id=self.call_id, error=str(exc))

    def _spawn(self, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"leg-{name}-{self.call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, event: LegEvent) -> None:
        if self._events.full():
            self._events.get_nowait()
            self._events_dropped += 1
        self._events.put_nowait(event)

    def _digit(self, digit: str, source: Literal["rfc4733", "info"]) -> None:
        now = time.monotonic()
        last = self._last_digit
        if (last is not None and last[0] == digit and last[1] != source
                and now - last[2] < _DUPLICATE_DIGIT_WINDOW_S):
            self._digits_duplicate += 1  # the other signalling of the key press just reported
            return
        self._last_digit = (digit, source, now)
        self._digits += 1
        self._emit(DigitReceived(digit, source))

    def _apply(self, negotiation: MediaNegotiation, *, report: bool) -> None:
        """Apply negotiated SDP to the RTP stream (RFC 3264 §5.1: no sending when we are recvonly or
        inactive, or the address is 0.0.0.0, RFC 2543 hold)."""
        previous = self._negotiation
        self._negotiation = negotiation
        stream = self._stream
        if stream is not None:
            held = negotiation.on_hold
            address = None if negotiation.remote_rtp_host in ("0.0.0.0", "::") else (
                negotiation.remote_rtp_host, negotiation.remote_rtp_port)
            ptime_ms = min(200, max(20, negotiation.ptime_ms))
            try:
                stream.set_remote(address, negotiation.payload_type, negotiation.telephone_event_pt, ptime_ms,
                                  send=not held)
            except RtpError as exc:
                log.warning("call.leg.media_rejected", call_id=self.call_id, error=exc.message)
            if not held:
                # Media resumed: the inactivity timer restarts from now.
                self._last_rx_at = asyncio.get_running_loop().time()
        if report:
            was_held = previous.on_hold if previous is not None else False
            log.info("call.leg.media_changed", call_id=self.call_id, held=negotiation.on_hold,
                     was_held=was_held, codec=negotiation.codec)
            self._emit(MediaChanged(negotiation.on_hold, negotiation.codec))

    async def _follow_sip(self) -> None:
        async for event in self._call.events():
            if isinstance(event, RemoteMediaChanged):
                self._apply(event.negotiation, report=True)
            elif isinstance(event, InfoDtmfReceived):
                self._digit(event.digit, "info")
            elif isinstance(event, CallEstablished):
                if event.negotiation is not None and event.negotiation != self._negotiation:
                    self._apply(event.negotiation, report=False)
                if not self._established.done():
                    self._established.set_result(None)
            elif isinstance(event, CallProgressed):
                pass  # early media is not played to the app: frames() start at answer
            elif isinstance(event, CallTerminated):
                await self._finish(event)

    async def _follow_rtp(self, stream: RtpStream) -> None:
        async for event in stream.events():
            if isinstance(event, RtpDtmfReceived):
                self._digit(event.digit, "rfc4733")
            elif isinstance(event, RtpPromptFinished):
                self._emit(PromptFinished(event.prompt_id, event.interrupted))

    async def _finish(self, event: CallTerminated) -> None:
        if self._ended.done():
            return
        cause, side = _SIP_CAUSES.get(event.cause, (event.cause, "remote"))
        if event.cause in ("local_bye", "local_cancel") and self._local_cause is not None:
            cause = self._local_cause
        elif event.cause == "rejected":
            cause, side = self._local_cause or "rejected", "local"
        elif event.cause == "failed":
            cause, side = "failed", "remote"
        elif event.cause == "timeout":
            cause, side = "timeout", "local" if self.direction == "inbound" else "remote"
        ended = LegEnded(cause, side, event.status_code, event.reason)
        self._ended_at = time.monotonic()
        stream = self._stream
        if stream is not None:
            await stream.close()
        if self._ended.done():
            return
        if not self._established.done():
            self._established.set_exception(
                CallFailed(f"call {self.call_id} ended before it was answered: {cause} "
                           f"{event.status_code or ''} {event.reason}".strip(), status_code=event.status_code,
                           retryable=event.status_code in (408, 480, 486, 503)))
            self._established.exception()
        self._ended.set_result(ended)
        self._emit(ended)
        self._telephony._forget(self)
        stats = self.stats()
        log.info(
            "call.leg.ended",
            call_id=self.call_id,
            direction=self.direction,
            cause=cause,
            side=side,
            sip_status=event.status_code,
            codec=stats.codec,
            duration_s=round(stats.duration_s, 3),
            packets_received=stats.packets_received,
            packets_sent=stats.packets_sent,
            lost=stats.lost,
            late=stats.late,
            duplicate=stats.duplicate,
            reordered=stats.reordered,
            concealed_frames=stats.concealed_frames,
            underruns=stats.underruns,
            dropped_stranger=stats.dropped_stranger,
            dropped_malformed=stats.dropped_malformed,
            frames_dropped=stats.frames_dropped,
            digits=stats.digits,
            events_dropped=self._events_dropped,
        )

    def _check_rtp_timeout(self, now: float, timeout_s: float) -> None:
        stream = self._stream
        if stream is None or self.is_ended or self._answered_at is None:
            return
        stats = stream.session.stats()
        # Anything the negotiated peer sends proves it is alive: RTP, RTCP (RFC 3550 §6), or a
        # payload type we do not decode such as comfort noise during silence suppression (RFC 3389).
        received = stats.packets_received + stats.rtcp_ignored + stats.dropped_payload_type
        if received != self._last_rx_packets:
            self._last_rx_packets = received
            self._last_rx_at = now
            return
        negotiation = self._negotiation
        if negotiation is not None and negotiation.on_hold:
            self._last_rx_at = now
            return
        if now - self._last_rx_at >= timeout_s:
            log.warning("call.leg.rtp_timeout", call_id=self.call_id,
                        silent_s=round(now - self._last_rx_at, 1))
            self._hangup("rtp-timeout")


class Telephony:
    """The SIP endpoint, media clock and RTP ports of one process; see the module docstring."""

    def __init__(self, config: TelephonyConfig) -> None:
        self.config = config
        self._clock = MediaClock()
        self._ports = PortAllocator(PortRange(config.rtp_host, config.rtp_port_min, config.rtp_port_max))
        self._endpoint: SipEndpoint | None = None
        self._incoming: asyncio.Queue[CallLeg | None] = asyncio.Queue(config.max_pending_calls)
        self._legs: dict[str, CallLeg] = {}
        self._watchdog: asyncio.TimerHandle | None = None
        self._stopped = False

    @property
    def endpoint(self) -> SipEndpoint:
        if self._endpoint is None:
            raise TelephonyError("Telephony is not started: call await telephony.start() first")
        return self._endpoint

    @property
    def sip_address(self) -> tuple[str, int]:
        """The bound SIP (host, port); the real port when ``sip_port`` was 0."""
        return self.endpoint.local_address

    @property
    def contact_uri(self) -> str:
        port = self.sip_address[1]
        return f"sip:{self.config.user}@{self.config.public_host}:{port}"

    @property
    def active_legs(self) -> int:
        return len(self._legs)

    @property
    def rtp_ports_in_use(self) -> int:
        """RTP ports currently held by legs (for metrics and leak checks)."""
        return self._ports.in_use

    @property
    def media_clock(self) -> MediaClock:
        return self._clock

    async def start(self) -> None:
        c = self.config
        ua_config = UaConfig(
            local_host=c.public_host,
            local_port=c.sip_port,
            user=c.user,
            display_name=c.display_name,
            max_calls=c.max_calls,
            codecs=c.codecs,
            telephone_event_pt=c.telephone_event_pt,
            allowed_networks=c.allowed_networks,
            inbound_users=c.inbound_users,
            rate_limit_per_s=c.rate_limit_per_s,
            rate_limit_burst=c.rate_limit_burst,
            answer_timeout_s=c.answer_timeout_s,
        )
        self._endpoint = SipEndpoint(ua_config, bind_host=c.sip_host, bind_port=c.sip_port,
                                     on_call=self._on_call, max_pending_calls=c.max_pending_calls)
        await self._endpoint.start()
        self._clock.start()
        if c.rtp_timeout_s > 0:
            self._schedule_watchdog()
        log.info("telephony.started", contact=self.contact_uri, rtp_host=c.rtp_host,
                 rtp_ports=f"{c.rtp_port_min}-{c.rtp_port_max}", max_calls=c.max_calls)

    async def stop(self, *, grace_s: float = 0.5) -> None:
        """Hang up every leg (BYE/CANCEL/480), wait up to ``grace_s`` for them to end, stop."""
        if self._stopped:
            return
        self._stopped = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        legs = list(self._legs.values())
        for leg in legs:
            leg._hangup("shutdown")
        if legs:
            await asyncio.wait([asyncio.ensure_future(leg.ended()) for leg in legs], timeout=grace_s)
        if self._endpoint is not None:
            await self._endpoint.stop()
        for leg in legs:
            for task in list(leg._tasks):
                task.cancel()
            if not leg.is_ended:
                # The peer never confirmed the hang-up within the grace time: end the leg here so
                # every frames()/events() consumer finishes.
                await leg._finish(CallTerminated(leg.call_id, "local_bye", None, "peer did not confirm"))
        self._clock.stop()
        if self._incoming.full():
            self._incoming.get_nowait()
        self._incoming.put_nowait(None)
        log.info("telephony.stopped")

    async def __aenter__(self) -> Telephony:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def incoming(self) -> AsyncIterator[CallLeg]:
        """New inbound legs, not yet answered, until stop(). Answer, reject or ignore each one (an
        ignored one gets 480 after ``answer_timeout_s``)."""
        while True:
            leg = await self._incoming.get()
            if leg is None:
                self._incoming.put_nowait(None)  # wake any other iterator too
                return
            if not leg.is_ended:
                yield leg

    async def dial(self, uri: str, *, credentials: Credentials | None = None, timeout_s: float = 60.0,
                   destination: tuple[str, int] | None = None, from_user: str | None = None) -> CallLeg:
        """Place a call; returns the answered leg (media running) or raises :class:`CallFailed`
        with the final SIP status (``status_code`` None and ``retryable`` on our own timeout).
        Digest challenges (401/407) are answered with ``credentials``."""
        stream = self._new_stream()
        _, port = await stream.open()
        try:
            call = await self.endpoint.invite(
                uri, local_rtp_port=port, local_rtp_host=self.config.public_host, destination=destination,
                credentials=credentials, from_user=from_user)
        except SipError as exc:
            await stream.close()
            raise TelephonyError(f"cannot call {uri!r}: {exc.message}") from exc
        except BaseException:
            await stream.close()
            raise
        leg = CallLeg(self, call, "outbound", self.contact_uri, uri, stream)
        self._legs[leg.call_id] = leg
        try:
            await asyncio.wait_for(asyncio.shield(leg._established), timeout_s)
        except TimeoutError:
            leg._hangup("timeout")
            await asyncio.wait([asyncio.ensure_future(leg.ended())], timeout=2.0)
            if not leg.is_ended:
                # No provisional response yet: RFC 3261 §9.1 forbids CANCEL until one arrives, so the
                # SIP layer finishes the INVITE (Timer B) on its own; the leg's media is not needed.
                self._forget(leg)
                if leg._stream is not None:
                    await leg._stream.close()
            raise CallFailed(f"no answer from {uri} within {timeout_s:g} s; the call was cancelled",
                             status_code=None, retryable=True) from None
        except asyncio.CancelledError:
            leg._hangup("cancelled")
            raise
        leg._answered_at = time.monotonic()
        leg._last_rx_at = asyncio.get_running_loop().time()
        leg._media_ready.set()
        return leg

    # ------------------------------------------------------------- internals

    def _new_stream(self) -> RtpStream:
        c = self.config
        jitter = JitterConfig(target_delay_ms=c.jitter_target_ms, max_delay_ms=c.jitter_max_ms)
        session = SessionConfig(symmetric_latching=c.symmetric_rtp, jitter=jitter)
        return RtpStream(self._clock, self._ports, session)

    def _on_call(self, call: IncomingCall) -> None:
        leg = CallLeg(self, call, "inbound", call.from_uri, call.to_uri)
        self._legs[leg.call_id] = leg
        if self._stopped:
            call.reject(503, "Service Unavailable: shutting down")
            return
        try:
            self._incoming.put_nowait(leg)
        except asyncio.QueueFull:
            log.warning("call.leg.backlog_full", call_id=leg.call_id)
            call.reject(503, "Service Unavailable: application backlog full")

    def _forget(self, leg: CallLeg) -> None:
        self._legs.pop(leg.call_id, None)

    def _schedule_watchdog(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(_WATCHDOG_PERIOD_S, self._run_watchdog)

    def _run_watchdog(self) -> None:
        now = asyncio.get_running_loop().time()
        for leg in list(self._legs.values()):
            try:
                leg._check_rtp_timeout(now, self.config.rtp_timeout_s)
            except Exception:  # one broken leg must not stop the watchdog for the others
                log.exception("call.leg.watchdog_failed", call_id=leg.call_id)
        if not self._stopped:
            self._schedule_watchdog()

