"""asyncio UDP adapter for the SIP user agent, and the application's call API.

This is the only module of ``voicebot.sip`` that touches asyncio, sockets or a clock. It binds
one UDP socket, feeds every datagram and timer expiry to :class:`~voicebot.sip.useragent.UserAgent`,
sends what the core produces, and turns core events into per-call objects:

* :class:`IncomingCall` from ``SipEndpoint.incoming()`` (or ``on_call``): inspect the caller and
  the negotiated media, allocate an RTP port, then ``ringing()``, ``answer(...)`` or
  ``reject(...)``; afterwards ``hangup()``, ``refer(...)``, ``hold()``/``unhold()`` and the
  event stream (``RemoteMediaChanged``, ``InfoDtmfReceived``, ``CallTerminated``...).
* :class:`OutgoingCall` from ``SipEndpoint.invite(...)``: ``await call.answered()`` gives the
  negotiated media or raises :class:`CallFailed` with the final status.

Log events are static dotted names (``sip.invite.received``...) with ``call_id`` and the caller's
addresses under ``pii.*`` keys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog

from voicebot.sip.auth import Credentials
from voicebot.sip.config import UaConfig
from voicebot.sip.errors import SipError, SipStateError
from voicebot.sip.events import (
    AckReceived,
    CallEstablished,
    CallProgressed,
    CallReceived,
    CallTerminated,
    Event,
    InfoDtmfReceived,
    MessageRejected,
    RegistrationChanged,
    RemoteMediaChanged,
    TransferProgressed,
)
from voicebot.sip.sdp import MediaNegotiation
from voicebot.sip.transaction import Address
from voicebot.sip.useragent import UserAgent

log = structlog.get_logger(logger_name=__name__)


class CallFailed(SipError):
    """Our outbound call (or transfer) did not connect; ``status_code`` is the final response."""

    def __init__(self, message: str, *, status_code: int | None, retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.status_code = status_code


class Call:
    """One call's state and event stream; created by the endpoint, never by the application."""

    def __init__(self, endpoint: SipEndpoint, call_id: str, negotiation: MediaNegotiation | None) -> None:
        self.call_id = call_id
        self.negotiation = negotiation
        self._endpoint = endpoint
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._established: asyncio.Future[MediaNegotiation | None] = loop.create_future()
        self._ended: asyncio.Future[CallTerminated] = loop.create_future()
        self._transfers: list[asyncio.Future[TransferProgressed]] = []

    @property
    def is_ended(self) -> bool:
        return self._ended.done()

    async def next_event(self, timeout_s: float | None = None) -> Event:
        """The next event of this call (CallProgressed, AckReceived, CallEstablished,
        RemoteMediaChanged, InfoDtmfReceived, TransferProgressed, CallTerminated)."""
        return await asyncio.wait_for(self._events.get(), timeout_s)

    async def events(self) -> AsyncIterator[Event]:
        """All events until (and including) CallTerminated."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, CallTerminated):
                return

    async def ended(self, timeout_s: float | None = None) -> CallTerminated:
        return await asyncio.wait_for(asyncio.shield(self._ended), timeout_s)

    async def established(self, timeout_s: float | None = None) -> MediaNegotiation | None:
        """Wait until the call is up (our 200 ACKed / the callee's 200).

        Raises CallFailed if the call ends first."""
        return await asyncio.wait_for(asyncio.shield(self._established), timeout_s)

    def hangup(self) -> None:
        """BYE when up, CANCEL while our INVITE rings, 480 for an unanswered inbound call."""
        if not self.is_ended:
            self._endpoint._command(lambda ua, now: ua.hangup(self.call_id, now))

    async def refer(self, target_uri: str, *, timeout_s: float = 64.0) -> TransferProgressed:
        """Blind transfer (RFC 3515). Returns the final result: the NOTIFY sipfrag's final status
        (200 = the transfer target answered), or the REFER's own failure response."""
        future: asyncio.Future[TransferProgressed] = asyncio.get_running_loop().create_future()
        self._transfers.append(future)
        self._endpoint._command(lambda ua, now: ua.refer(self.call_id, target_uri, now))
        return await asyncio.wait_for(future, timeout_s)

    def hold(self) -> None:
        self._endpoint._command(lambda ua, now: ua.update_media(self.call_id, now, direction="sendonly"))

    def unhold(self) -> None:
        self._endpoint._command(lambda ua, now: ua.update_media(self.call_id, now, direction="sendrecv"))

    def update_media(
        self,
        *,
        direction: str = "sendrecv",
        local_rtp_host: str | None = None,
        local_rtp_port: int | None = None,
    ) -> None:
        """Re-INVITE with a new offer (another RTP address, or a direction); the answer comes
        back as a RemoteMediaChanged event."""
        self._endpoint._command(
            lambda ua, now: ua.update_media(
                self.call_id,
                now,
                direction=direction,
                local_rtp_host=local_rtp_host,
                local_rtp_port=local_rtp_port,
            )
        )

    def send_dtmf_info(self, digit: str, *, duration_ms: int = 160) -> None:
        self._endpoint._command(
            lambda ua, now: ua.send_dtmf_info(self.call_id, digit, now, duration_ms=duration_ms)
        )

    def _deliver(self, event: Event) -> None:
        if isinstance(event, CallEstablished | RemoteMediaChanged) and event.negotiation is not None:
            self.negotiation = event.negotiation
        if isinstance(event, CallEstablished) and not self._established.done():
            self._established.set_result(event.negotiation)
        if isinstance(event, TransferProgressed) and event.final:
            for future in self._transfers:
                if not future.done():
                    future.set_result(event)
            self._transfers.clear()
        if isinstance(event, CallTerminated):
            if not self._established.done():
                self._established.set_exception(
                    CallFailed(
                        f"call ended before it was established: {event.cause} {event.status_code}",
                        status_code=event.status_code,
                        retryable=event.status_code in (408, 480, 486, 503),
                    )
                )
                self._established.exception()  # mark retrieved: nobody may be waiting
            if not self._ended.done():
                self._ended.set_result(event)
            for future in self._transfers:
                if not future.done():
                    future.set_exception(CallFailed("call ended during the transfer", status_code=None))
                    future.exception()
        self._events.put_nowait(event)


class IncomingCall(Call):
    """An inbound INVITE that passed every check. ``negotiation`` is the media the caller offered
    as we would accept it (None for an offerless INVITE: we offer in the 200)."""

    def __init__(self, endpoint: SipEndpoint, event: CallReceived) -> None:
        super().__init__(endpoint, event.call_id, event.negotiation)
        self.from_uri = event.from_uri
        self.from_display = event.from_display
        self.to_uri = event.to_uri
        self.to_display = event.to_display
        self.request_uri = event.request_uri
        self.source = event.source
        self.headers = event.headers

    def ringing(self) -> None:
        self._endpoint._command(lambda ua, now: ua.ringing(self.call_id, now))

    def answer(
        self,
        local_rtp_host: str | None = None,
        local_rtp_port: int | None = None,
        *,
        sdp: bytes | None = None,
    ) -> None:
        """Send 200 OK with our SDP for the RTP address the app allocated.

        ``established()`` then waits for the ACK."""
        self._endpoint._command(
            lambda ua, now: ua.answer(
                self.call_id, now, local_rtp_host=local_rtp_host, local_rtp_port=local_rtp_port, sdp=sdp
            )
        )

    def reject(self, status_code: int = 486, reason: str | None = None) -> None:
        self._endpoint._command(lambda ua, now: ua.reject(self.call_id, now, status_code, reason))


class OutgoingCall(Call):
    """A call we placed; ``answered()`` returns the negotiated media or raises CallFailed."""

    async def answered(self, timeout_s: float | None = None) -> MediaNegotiation | None:
        return await self.established(timeout_s)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._endpoint._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.socket.error", error=str(exc))


class SipEndpoint:
    """One UDP socket, one user agent core, any number of calls."""

    def __init__(
        self,
        config: UaConfig,
        *,
        bind_host: str = "127.0.0.1",
        bind_port: int = 0,
        on_call: Callable[[IncomingCall], Awaitable[None] | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pending_calls: int = 1000,
    ) -> None:
        self._config = config
        self._bind = (bind_host, bind_port)
        self._on_call = on_call
        self._clock = clock
        self._incoming: asyncio.Queue[IncomingCall] = asyncio.Queue(max_pending_calls)
        self._calls: dict[str, Call] = {}
        self._ua: UserAgent | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.registrations: dict[str, RegistrationChanged] = {}
        self.local_address: Address = self._bind

    @property
    def ua(self) -> UserAgent:
        if self._ua is None:
            raise SipStateError("SipEndpoint is not started: call await endpoint.start() first")
        return self._ua

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), local_addr=self._bind)
        self._transport = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self.local_address = (str(host), int(port))
        if self._config.local_port in (0, self._bind[1]) or self._bind[1] == 0:
            self._config = replace(self._config, local_port=self.local_address[1])
        self._ua = UserAgent(self._config)
        log.info("sip.endpoint.started", host=self.local_address[0], port=self.local_address[1])

    async def stop(self) -> None:
        """Hang up every call, give the BYEs a moment to leave, close the socket."""
        if self._ua is None or self._transport is None:
            return
        for call in list(self._calls.values()):
            if not call.is_ended:
                try:
                    call.hangup()
                except SipStateError as exc:
                    log.warning("sip.endpoint.hangup_failed", call_id=call.call_id, error=exc.message)
        await asyncio.sleep(0)
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        self._transport.close()
        self._transport = None
        log.info("sip.endpoint.stopped")

    async def __aenter__(self) -> SipEndpoint:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def incoming(self) -> AsyncIterator[IncomingCall]:
        """Inbound calls as they arrive (when no ``on_call`` callback is set)."""
        while True:
            yield await self._incoming.get()

    async def next_call(self, timeout_s: float | None = None) -> IncomingCall:
        return await asyncio.wait_for(self._incoming.get(), timeout_s)

    async def invite(
        self,
        target_uri: str,
        *,
        local_rtp_port: int,
        local_rtp_host: str | None = None,
        destination: Address | None = None,
        credentials: Credentials | None = None,
        from_user: str | None = None,
        from_display: str | None = None,
    ) -> OutgoingCall:
        """Place a call (INVITE with our offer for the given RTP address); see OutgoingCall."""
        now = self._clock()
        call_id = self.ua.invite(
            target_uri,
            now,
            local_rtp_port=local_rtp_port,
            local_rtp_host=local_rtp_host,
            destination=destination,
            credentials=credentials,
            from_user=from_user,
            from_display=from_display,
        )
        call = OutgoingCall(self, call_id, None)
        self._calls[call_id] = call
        log.info("sip.invite.sent", call_id=call_id, **{"pii.to": target_uri})
        self._flush()
        return call

    def register(
        self,
        registrar_uri: str,
        *,
        aor: str,
        destination: Address | None = None,
        credentials: Credentials | None = None,
        expires_s: int = 3600,
    ) -> str:
        """REGISTER and keep refreshing; the latest result is in ``registrations[id]``."""
        reg_id = self.ua.register(
            registrar_uri,
            self._clock(),
            aor=aor,
            destination=destination,
            credentials=credentials,
            expires_s=expires_s,
        )
        self._flush()
        return reg_id

    def unregister(self, registration_id: str) -> None:
        """REGISTER with Expires: 0 and stop refreshing."""
        self._command(lambda ua, now: ua.unregister(registration_id, now))

    def set_draining(self, draining: bool = True) -> None:
        """Out of rotation: OPTIONS get 503 + Retry-After and new INVITEs 503; calls go on."""
        self.ua.set_draining(draining)
        log.info("sip.endpoint.draining", draining=draining)

    # ------------------------------------------------------------ plumbing

    def _command(self, action: Callable[[UserAgent, float], None]) -> None:
        action(self.ua, self._clock())
        self._flush()

    def _on_datagram(self, data: bytes, source: Address) -> None:
        try:
            self.ua.receive_datagram(data, source, self._clock())
        except Exception:
            # A bug in the core must not take the endpoint down for every other call.
            log.exception("sip.core.error", source=f"{source[0]}:{source[1]}")
        self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self.ua.handle_timer(self._clock())
        except Exception:
            log.exception("sip.core.error", source="timer")
        self._flush()

    def _flush(self) -> None:
        ua = self.ua
        if self._transport is not None:
            for data, destination in ua.datagrams_to_send():
                self._transport.sendto(data, destination)
        while (event := ua.next_event()) is not None:
            self._dispatch(event)
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.ua.get_timer()
        if self._timer is not None and deadline == self._timer_deadline:
            return  # most datagrams leave the earliest deadline where it was: keep the timer
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline
        if deadline is not None and self._transport is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, MessageRejected):
            log.info(
                "sip.message.rejected",
                status_code=event.status_code,
                reason=event.reason,
                **{"pii.source": f"{event.source[0]}:{event.source[1]}"},
            )
            return
        if isinstance(event, RegistrationChanged):
            self.registrations[event.registration_id] = event
            log.info(
                "sip.register.changed",
                registered=event.registered,
                status_code=event.status_code,
                expires_s=event.expires_s,
                reason=event.reason,
            )
            return
        if isinstance(event, CallReceived):
            self._new_incoming(event)
            return
        self._log_call_event(event)
        call = self._calls.get(event.call_id)
        if call is None:
            return
        call._deliver(event)
        if isinstance(event, CallTerminated):
            self._calls.pop(event.call_id, None)

    def _new_incoming(self, event: CallReceived) -> None:
        call = IncomingCall(self, event)
        self._calls[event.call_id] = call
        neg = event.negotiation
        log.info(
            "sip.invite.received",
            call_id=event.call_id,
            codec=neg.codec if neg else None,
            remote_rtp_port=neg.remote_rtp_port if neg else None,
            **{"pii.from": event.from_uri, "pii.to": event.to_uri, "pii.source": f"{event.source[0]}"},
        )
        if self._on_call is not None:
            result = self._on_call(call)
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._on_call_done)
            return
        try:
            self._incoming.put_nowait(call)
        except asyncio.QueueFull:
            log.warning("sip.invite.overflow", call_id=event.call_id)
            call.reject(503, "Service Unavailable: application backlog full")

    def _on_call_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("sip.on_call.failed", error=repr(task.exception()))

    def _log_call_event(self, event: Event) -> None:
        call_id = getattr(event, "call_id", None)
        if isinstance(event, CallTerminated):
            log.info("sip.call.ended", call_id=call_id, cause=event.cause, status_code=event.status_code)
        elif isinstance(event, AckReceived):
            log.info("sip.ack.received", call_id=call_id, cseq=event.cseq, reinvite=event.reinvite)
        elif isinstance(event, CallEstablished):
            log.info("sip.call.established", call_id=call_id)
        elif isinstance(event, CallProgressed):
            log.info("sip.call.progress", call_id=call_id, status_code=event.status_code)
        elif isinstance(event, RemoteMediaChanged):
            log.info(
                "sip.media.changed",
                call_id=call_id,
                direction=event.negotiation.direction,
                codec=event.negotiation.codec,
                remote_rtp_port=event.negotiation.remote_rtp_port,
            )
        elif isinstance(event, InfoDtmfReceived):
            log.info("sip.dtmf.received", call_id=call_id, **{"pii.digit": event.digit})
        elif isinstance(event, TransferProgressed):
            log.info(
                "sip.transfer.progress", call_id=call_id, status_code=event.status_code, final=event.final
            )
