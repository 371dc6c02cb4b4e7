"""The telephony service: one SIP endpoint, media clock and RTP port range for every leg."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Literal

from voicebot.clock import Clock, monotonic
from voicebot.logging import get_logger
from voicebot.rtp.jitter import JitterConfig
from voicebot.rtp.session import SessionConfig
from voicebot.rtp.udp import MediaClock, PortAllocator, RtpPortRange, RtpStream
from voicebot.sip.auth import Credentials
from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipError
from voicebot.sip.transaction import TimerConfig
from voicebot.sip.udp import Call, CallFailed, IncomingCall, SipEndpoint
from voicebot.telephony.config import TelephonyConfig
from voicebot.telephony.errors import TelephonyError
from voicebot.telephony.leg import CallLeg

log = get_logger(__name__)

_WATCHDOG_PERIOD_S = 1.0


class Telephony:
    """The SIP endpoint, media clock and RTP ports of one process; see :mod:`voicebot.telephony`."""

    def __init__(self, config: TelephonyConfig, *, clock: Clock = monotonic) -> None:
        self.config = config
        self._now = clock
        self._clock = MediaClock()
        self._ports = PortAllocator(RtpPortRange(config.rtp_host, config.rtp_port_min, config.rtp_port_max))
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
            max_calls_per_source=c.max_calls_per_source,
            max_unconfirmed_per_source=c.max_unconfirmed_per_source,
            timers=TimerConfig(t1_s=c.sip_t1_s),
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
            leg.hangup(cause="shutdown")
        if legs:
            await asyncio.wait([asyncio.ensure_future(leg.ended()) for leg in legs], timeout=grace_s)
        if self._endpoint is not None:
            await self._endpoint.stop()
        for leg in legs:
            # A peer that never confirmed the hang-up within the grace time: the leg ends here.
            await leg.close("peer did not confirm")
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
        leg = self._new_leg(call, "outbound", self.contact_uri, uri, stream)
        try:
            await asyncio.wait_for(leg.connected(), timeout_s)
        except TimeoutError:
            leg.hangup(cause="timeout")
            await asyncio.wait([asyncio.ensure_future(leg.ended())], timeout=2.0)
            if not leg.is_ended:
                # No provisional response yet: RFC 3261 §9.1 forbids CANCEL until one arrives.
                await leg.abandon()
            raise CallFailed(f"no answer from {uri} within {timeout_s:g} s; the call was cancelled",
                             status_code=None, retryable=True) from None
        except asyncio.CancelledError:
            leg.hangup(cause="cancelled")
            raise
        return leg

    # ------------------------------------------------------------- internals

    def _new_stream(self) -> RtpStream:
        c = self.config
        jitter = JitterConfig(target_delay_ms=c.jitter_target_ms, max_delay_ms=c.jitter_max_ms)
        session = SessionConfig(symmetric_latching=c.symmetric_rtp, jitter=jitter)
        return RtpStream(self._clock, self._ports, session)

    def _new_leg(self, call: Call, direction: Literal["inbound", "outbound"], from_uri: str, to_uri: str,
                 stream: RtpStream | None = None) -> CallLeg:
        leg = CallLeg(call, direction, from_uri, to_uri, config=self.config, clock=self._now,
                      new_stream=self._new_stream, on_ended=self._forget, stream=stream)
        self._legs[leg.call_id] = leg
        return leg

    def _on_call(self, call: IncomingCall) -> None:
        leg = self._new_leg(call, "inbound", call.from_uri, call.to_uri)
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
        now = self._now()
        for leg in list(self._legs.values()):
            try:
                leg.check_rtp_timeout(now, self.config.rtp_timeout_s)
            except Exception:  # one broken leg must not stop the watchdog for the others
                log.exception("call.leg.watchdog_failed", call_id=leg.call_id)
        if not self._stopped:
            self._schedule_watchdog()


__all__ = ["Telephony"]
