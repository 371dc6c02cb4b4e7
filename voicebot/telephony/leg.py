"""One call leg: a SIP call (``voicebot.sip``) joined to its RTP stream (``voicebot.rtp``).

A :class:`CallLeg` has two small tasks: one follows the SIP call's events (re-INVITEs are applied
to the RTP stream and reported as :class:`~voicebot.telephony.MediaChanged`; SIP INFO digits are
reported), one follows the RTP stream's events (RFC 4733 digits, playout completion reported as
:class:`~voicebot.telephony.PlaybackFinished` with the caller's prompt id). Both feed one bounded
event queue, so RFC 4733 and INFO digits arrive as one digit stream (a key reported by both within
0.5 s counts once). When either side hangs up, the RTP stream is closed (which ends
:meth:`CallLeg.frames`), :class:`~voicebot.telephony.LegEnded` is the last event (its cause from
:func:`~voicebot.telephony.causes.leg_end_cause`), and one ``call.leg.ended`` log line carries the
leg's RTP counters. Every time the leg keeps comes from its injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Literal

from voicebot.clock import Clock
from voicebot.logging import get_logger
from voicebot.media.frames import Frame
from voicebot.rtp.dtmf import DtmfEventReceived
from voicebot.rtp.errors import RtpError
from voicebot.rtp.session import PlayoutFinished
from voicebot.rtp.udp import RtpStream
from voicebot.sip.errors import SipError
from voicebot.sip.events import (
    CallEstablished,
    CallProgressed,
    CallTerminated,
    InfoDtmfReceived,
    RemoteMediaChanged,
)
from voicebot.sip.sdp import MediaNegotiation
from voicebot.sip.udp import Call, CallFailed, IncomingCall
from voicebot.telephony.causes import is_retryable, leg_end_cause
from voicebot.telephony.config import TelephonyConfig
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

log = get_logger(__name__)

# A digit reported by one source (RFC 4733 or INFO) and the same digit from the other source within
# this window is one key press: some phones send both.
_DUPLICATE_DIGIT_WINDOW_S = 0.5


class CallLeg:
    """One call (inbound or outbound) with its RTP media; created by :class:`Telephony` only.

    The leg is given what it needs, never the :class:`Telephony` itself: the settings it reads
    (``ring``, ``public_host``), ``new_stream`` to open its RTP stream on answer, ``on_ended`` to
    tell its owner it is over, and the ``clock`` every time it keeps comes from.
    """

    def __init__(self, call: Call, direction: Literal["inbound", "outbound"], from_uri: str, to_uri: str,
                 *, config: TelephonyConfig, clock: Clock, new_stream: Callable[[], RtpStream],
                 on_ended: Callable[[CallLeg], None], stream: RtpStream | None = None) -> None:
        self.call_id = call.call_id
        self.direction: Literal["inbound", "outbound"] = direction
        self.from_uri = from_uri
        self.to_uri = to_uri
        self._config = config
        self._clock = clock
        self._new_stream = new_stream
        self._on_ended = on_ended
        self._call = call
        self._stream = stream
        self._negotiation: MediaNegotiation | None = call.negotiation
        self._events: asyncio.Queue[LegEvent] = asyncio.Queue(256)
        self._events_dropped = 0
        loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[LegEnded] = loop.create_future()
        self._established: asyncio.Future[None] = loop.create_future()
        self._media_ready = asyncio.Event()
        # No RTP goes out before the dialog is confirmed (our 2xx ACKed, or the callee's 2xx to us):
        # an unconfirmed answer to a spoofed offer must not send media anywhere.
        self._confirmed = False
        self._local_cause: str | None = None
        self._answering = False
        self._answered_at: float | None = None
        self._ended_at: float | None = None
        self._last_rx_packets = 0
        self._last_rx_at = clock()
        self._last_digit: tuple[str, str, float] | None = None
        self._digits = 0
        self._digits_duplicate = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._frame_handler: Callable[[Frame], None] | None = None
        self._media_tap: Callable[[Frame, int | None, bytes | None, bool], None] | None = None
        self._playback_ids: dict[int, int] = {}  # the RTP stream's playout id -> the caller's prompt id
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
        """Allocate an RTP port, send 180 (if configured) and 200 with our SDP, and return once the
        caller's ACK confirmed the call (media starts then), or the call ended without one.

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
        stream = self._new_stream()
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
            if self._config.ring:
                self._call.ringing()
            self._call.answer(self._config.public_host, port)
        except SipError as exc:
            # The call ended between our check and the answer (a CANCEL in the same loop turn).
            log.info("call.leg.answer_failed", call_id=self.call_id, error=str(exc))
            await stream.close()
            return
        self._answered_at = self._last_rx_at = self._clock()
        negotiation = self._call.negotiation
        if negotiation is not None:
            self._apply(negotiation, report=False)
        # RFC 3261 §13.3.1.4: the ACK confirms the dialog. No media to the caller and no dialplan
        # before it: an INVITE whose c= names a third party and is never ACKed must not make us send
        # a call's worth of RTP there (a reflection amplifier). No ACK within 64*T1 ends the call as
        # "ack-timeout", which is what answer()'s caller then finds.
        with contextlib.suppress(CallFailed):
            await asyncio.shield(self._established)
        if not self.is_ended:
            self._media_ready.set()

    async def connected(self) -> None:
        """Wait until an outbound leg is answered (media runs from then on); raises
        :class:`CallFailed` if the call ends first."""
        await asyncio.shield(self._established)
        if self._answered_at is None:
            self._answered_at = self._last_rx_at = self._clock()
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

    def set_frame_handler(self, handler: Callable[[Frame], None] | None) -> None:
        """Receive each 20 ms frame synchronously from the media clock instead of via frames().

        Saves one task wake-up per frame and call (the cheaper path for many calls); the handler
        must be quick and must not raise. While a handler is set, frames() gets nothing but still
        ends at hang-up. ``None`` goes back to frames()."""
        self._frame_handler = handler
        if self._stream is not None:
            self._install_frame_handler(self._stream)

    def set_media_tap(self, tap: Callable[[Frame, int | None, bytes | None, bool], None] | None) -> None:
        """Call recording: ``tap(frame, prompt_id, pcm, ticked)`` synchronously on the media clock
        for every received frame, with the prompt audio sent in the same tick (``prompt_id`` as
        given to play(), 20 ms of PCM) or ``None, None`` when no prompt audio was sent; ``ticked``
        is False for a frame pulled to catch up after a clock stall (no send tick went with it).
        Quick, never raises. Frames keep going to frames() (or the frame handler) as before."""
        self._media_tap = tap
        if self._stream is not None:
            self._install_frame_handler(self._stream)

    def _tap(self, frame: Frame, playout_id: int | None, pcm: bytes | None, ticked: bool) -> None:
        if self._media_tap is not None:
            prompt_id = None if playout_id is None else self._playback_ids.get(playout_id, playout_id)
            self._media_tap(frame, prompt_id, pcm, ticked)

    def _install_frame_handler(self, stream: RtpStream) -> None:
        stream.on_frame = self._frame_handler
        stream.on_media = self._tap if self._media_tap is not None else None

    async def frames(self) -> AsyncIterator[Frame]:
        """One :class:`~voicebot.media.frames.Frame` (20 ms of 16-bit 8 kHz PCM, 320 bytes, and its
        kind: audio, concealed or silence, as the jitter buffer played it out) per media tick; ends
        when the leg ends. Waits for answer() on an inbound leg. One consumer only."""
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
            yield frame

    async def events(self) -> AsyncIterator[LegEvent]:
        """DigitReceived, PlaybackFinished, MediaChanged, then LegEnded last. One consumer only."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, LegEnded):
                return

    def play(self, pcm16_8k: bytes, *, prompt_id: int | None = None) -> int:
        """Queue prompt audio (16-bit 8 kHz mono PCM) behind any playing; returns ``prompt_id``, the
        id :class:`PlaybackFinished` reports for it (default: one the leg picks; give ids for all
        of a leg's prompts or for none)."""
        playout_id = self._require_stream("play()").play(pcm16_8k)
        if prompt_id is None:
            prompt_id = playout_id
        self._playback_ids[playout_id] = prompt_id
        return prompt_id

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

    def hangup(self, *, cause: str | None = None) -> None:
        """End the leg whatever its state: BYE when up, CANCEL while our INVITE rings, 480 for an
        unanswered inbound call. No-op once ended. ``cause`` replaces the SIP-derived
        :class:`LegEnded` cause (``rtp-timeout``, ``shutdown``, ``timeout``; see
        :func:`~voicebot.telephony.causes.leg_end_cause`)."""
        if self.is_ended or self._call.is_ended:
            return
        self._local_cause = cause
        try:
            self._call.hangup()
        except SipError as exc:
            log.info("call.leg.hangup_failed", call_id=self.call_id, error=str(exc))

    async def abandon(self) -> None:
        """Give up an outbound leg whose INVITE cannot be cancelled yet (RFC 3261 §9.1: no CANCEL
        before a provisional response): its media is closed and its owner forgets it; the SIP
        layer finishes the INVITE transaction (Timer B) on its own."""
        self._on_ended(self)
        if self._stream is not None:
            await self._stream.close()

    async def close(self, reason: str) -> None:
        """Stop following the call and end the leg here if the peer never confirmed the hang-up
        (process shutdown), so every frames()/events() consumer finishes."""
        for task in list(self._tasks):
            task.cancel()
        if not self.is_ended:
            await self._finish("local_bye", None, reason)

    async def ended(self) -> LegEnded:
        return await asyncio.shield(self._ended)

    def stats(self) -> LegStats:
        end = self._ended_at if self._ended_at is not None else self._clock()
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
            overflow_dropped=jitter.overflow_dropped,
        )

    # ------------------------------------------------------------- internals

    def _require_stream(self, what: str) -> RtpStream:
        if self._stream is None:
            raise TelephonyError(f"{what} needs media: answer() leg {self.call_id} first")
        return self._stream

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
        now = self._clock()
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
                                  send=not held and self._confirmed)
            except RtpError as exc:
                log.warning("call.leg.media_rejected", call_id=self.call_id, error=exc.message)
            if not held:
                # Media resumed: the inactivity timer restarts from now.
                self._last_rx_at = self._clock()
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
                self._confirmed = True
                negotiation = event.negotiation if event.negotiation is not None else self._negotiation
                if negotiation is not None:
                    self._apply(negotiation, report=False)  # sending may start now
                if not self._established.done():
                    self._established.set_result(None)
            elif isinstance(event, CallProgressed):
                pass  # early media is not played to the app: frames() start at answer
            elif isinstance(event, CallTerminated):
                await self._finish(event.cause, event.status_code, event.reason)

    async def _follow_rtp(self, stream: RtpStream) -> None:
        async for event in stream.events():
            if isinstance(event, DtmfEventReceived):
                self._digit(event.digit, "rfc4733")
            elif isinstance(event, PlayoutFinished):
                prompt_id = self._playback_ids.pop(event.prompt_id, event.prompt_id)
                self._emit(PlaybackFinished(prompt_id, event.interrupted))

    async def _finish(self, sip_cause: str, status_code: int | None, reason: str) -> None:
        if self._ended.done():
            return
        cause, side = leg_end_cause(sip_cause, local_cause=self._local_cause, direction=self.direction)
        ended = LegEnded(cause, side, status_code, reason)
        self._ended_at = self._clock()
        stream = self._stream
        if stream is not None:
            await stream.close()
        if self._ended.done():
            return
        if not self._established.done():
            self._established.set_exception(
                CallFailed(f"call {self.call_id} ended before it was answered: {cause} "
                           f"{status_code or ''} {reason}".strip(), status_code=status_code,
                           retryable=is_retryable(status_code)))
            self._established.exception()
        self._ended.set_result(ended)
        self._emit(ended)
        self._on_ended(self)
        stats = self.stats()
        log.info(
            "call.leg.ended",
            call_id=self.call_id,
            direction=self.direction,
            cause=cause,
            side=side,
            sip_status=status_code,
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
            overflow_dropped=stats.overflow_dropped,
            dropped_stranger=stats.dropped_stranger,
            dropped_malformed=stats.dropped_malformed,
            frames_dropped=stats.frames_dropped,
            digits=stats.digits,
            events_dropped=self._events_dropped,
        )

    def check_rtp_timeout(self, now: float, timeout_s: float) -> None:
        """The RTP watchdog's tick: hang up with ``rtp-timeout`` when the peer sent nothing for
        ``timeout_s`` while the media was not on hold (RFC 3264 §5.1: a held peer may be silent)."""
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
            self.hangup(cause="rtp-timeout")



__all__ = ["CallLeg"]
