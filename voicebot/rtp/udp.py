"""asyncio adapter for RTP: per-call UDP sockets, one shared 20 ms media clock, queues to the app.

:class:`MediaClock` is a single timer callback on the event loop that ticks every registered
:class:`RtpStream` every 20 ms. Ticks are scheduled by deadline (``start + n * 20 ms`` on the loop's
monotonic clock), so lateness of one tick never accumulates into drift; if the loop stalls for more
than ``max_catch_up`` ticks, the clock skips the missed sends instead of bursting them (sequence
numbers and timestamps stay continuous, so the peer sees delay, not loss) and each stream pulls the
missed received frames back gradually (up to one second, two extra per tick, only while they are
buffered; meanwhile its jitter buffer may hold that many beyond its maximum delay, since the phone
kept sending while we stalled), so the caller's audio reaches recognition whole and the delay
returns to the target.
One timer for all calls costs far less than one task per call.

:class:`RtpStream` owns one UDP socket bound to a random even port of a :class:`PortAllocator` range and
one :class:`~voicebot.rtp.session.RtpSession`. The app can open it (to learn the local port for its
SDP) before the peer is known, :meth:`RtpStream.set_remote` once SDP is negotiated and again on every
re-INVITE (``send=False`` for hold), then read decoded 20 ms frames from :meth:`RtpStream.frames`
and DTMF/prompt events from :meth:`RtpStream.events`, and :meth:`RtpStream.play` /
:meth:`RtpStream.flush` / :meth:`RtpStream.send_dtmf`. Queues are bounded; when the app does not
keep up the oldest frame is dropped and counted.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import structlog

from voicebot.media.frames import FRAME_MS
from voicebot.rtp.errors import RtpPortsExhausted, RtpUsageError
from voicebot.rtp.jitter import Frame
from voicebot.rtp.session import (
    Address,
    RemoteMedia,
    RtpSession,
    SessionConfig,
    SessionEvent,
    SessionStats,
)

TICK_S = FRAME_MS / 1000
_MAX_RECEIVE_CATCH_UP = 50  # received frames pulled after a stall: at most one second
# The largest UDP payload (65535 - 8 UDP - 20 IPv4 header bytes): a receive buffer of this size
# never truncates a datagram. asyncio's selector transport asks recvfrom() for 256 KiB, a buffer
# that glibc serves with mmap() + mremap() + munmap() per packet unless the process happened to free
# a bigger block earlier (its dynamic mmap threshold starts at 128 KiB): three extra syscalls per RTP
# packet, which strace showed on the bench server (sip_bench --calls 50). 64 KiB comes off the heap.
_RECEIVE_BUFFER_BYTES = 65507
log = structlog.get_logger(logger_name=__name__)


@dataclass(frozen=True, slots=True)
class RtpPortRange:
    """Where RTP sockets bind: ``host`` (default ``0.0.0.0``) and even ports ``port_min``-``port_max``
    (defaults 10000-20000; RTP takes the even port, RTCP's odd port above it is left free, RFC 3550
    §11). ``port_min = port_max = 0`` lets the OS pick any free port (tests)."""

    host: str = "0.0.0.0"
    port_min: int = 10000
    port_max: int = 20000

    def __post_init__(self) -> None:
        if (self.port_min, self.port_max) == (0, 0):
            return
        if not 1024 <= self.port_min <= self.port_max <= 65535:
            raise RtpUsageError(
                f"RTP port range {self.port_min}-{self.port_max} must satisfy 1024 <= min <= max <= 65535"
            )
        if self.port_min % 2 and self.port_min == self.port_max:
            raise RtpUsageError(f"RTP port range {self.port_min}-{self.port_max} holds no even port")


class PortAllocator:
    """Hands out even ports of a range in random order, skipping ports in use by us or by others.

    Random, not round-robin: with sequential ports an attacker who made one call knows the port the
    next caller gets and can spray RTP at it before that caller's first packet (issue 9). The port
    is drawn from a CSPRNG over the whole range, so guessing costs a spray over every port.

    A released port rests: the most recently released half of the range is tried only after every
    other free port, so a new call does not get the port a call just left, where that call's late
    packets (from the same trunk address, so they pass the source check) could still arrive.
    """

    def __init__(self, ports: RtpPortRange | None = None, *, rng: random.Random | None = None) -> None:
        self.range = ports or RtpPortRange()
        first = self.range.port_min + (self.range.port_min % 2)
        self._candidates = list(range(first, self.range.port_max + 1, 2)) if self.range.port_max else [0]
        self._rng = rng or random.SystemRandom()
        self._in_use: set[int] = set()
        self._resting: collections.deque[int] = collections.deque(maxlen=len(self._candidates) // 2)

    def _order(self) -> list[int]:
        """Free candidates to try: rested ones in random order, then resting ones, longest rested first."""
        resting = [p for p in self._resting if p not in self._in_use]
        skip = set(resting)
        free = [p for p in self._candidates if not p or (p not in self._in_use and p not in skip)]
        self._rng.shuffle(free)
        return free + resting

    async def bind(self, protocol_factory: Callable[[], asyncio.DatagramProtocol]
                   ) -> tuple[asyncio.DatagramTransport, int]:
        """Bind a UDP socket on a random free even port; raises :class:`RtpPortsExhausted`."""
        loop = asyncio.get_running_loop()
        for port in self._order():
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    protocol_factory, local_addr=(self.range.host, port))
            except OSError:
                continue  # taken by another process
            if hasattr(transport, "max_size"):  # asyncio's selector transport (see _RECEIVE_BUFFER_BYTES)
                transport.max_size = _RECEIVE_BUFFER_BYTES
            bound = int(transport.get_extra_info("sockname")[1])
            self._in_use.add(bound)
            return transport, bound
        raise RtpPortsExhausted(
            f"no free even RTP port in {self.range.host}:{self.range.port_min}-{self.range.port_max} "
            f"({len(self._in_use)} in use by calls); widen the range or lower the call limit"
        )

    def release(self, port: int) -> None:
        self._in_use.discard(port)
        if port and self._resting.maxlen:
            if port in self._resting:
                self._resting.remove(port)
            self._resting.append(port)

    @property
    def in_use(self) -> int:
        return len(self._in_use)


@dataclass(frozen=True, slots=True)
class ClockStats:
    ticks: int
    late_ticks: int  # fired more than 5 ms after their deadline
    skipped_ticks: int  # dropped after a loop stall longer than max_catch_up ticks
    max_lateness_ms: float
    streams: int


class MediaClock:
    """One 20 ms deadline-scheduled timer that ticks every registered stream."""

    def __init__(self, *, max_catch_up: int = 3) -> None:
        self.max_catch_up = max_catch_up
        self._streams: dict[int, RtpStream] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0
        self._n = 0
        self._ticks = 0
        self._late = 0
        self._skipped = 0
        self._max_lateness_s = 0.0

    def start(self) -> None:
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._n = 0
        self._schedule()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    @property
    def running(self) -> bool:
        return self._handle is not None

    def register(self, stream: RtpStream) -> None:
        self._streams[id(stream)] = stream
        if self._handle is None:
            self.start()

    def unregister(self, stream: RtpStream) -> None:
        self._streams.pop(id(stream), None)
        if not self._streams:
            self.stop()  # no calls: no wake-ups; the next register restarts the deadlines

    def _schedule(self) -> None:
        assert self._loop is not None
        self._n += 1
        self._handle = self._loop.call_at(self._start + self._n * TICK_S, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        deadline = self._start + self._n * TICK_S
        lateness = now - deadline
        self._max_lateness_s = max(self._max_lateness_s, lateness)
        if lateness > 0.005:
            self._late += 1
        behind = int(lateness / TICK_S)
        if behind > self.max_catch_up:
            # A stall (GC, a blocking call): skip the missed sends rather than burst them onto the
            # network; each stream pulls its missed received frames back gradually (_on_tick).
            self._n += behind
            self._skipped += behind
            for stream in self._streams.values():
                stream._owe(behind)
            behind = 0
        for _ in range(1 + behind):
            self._tick_all()
        self._n += behind
        if self._handle is not None:  # stop() from inside a tick (the app shutting down) ends here
            self._schedule()

    def _tick_all(self) -> None:
        self._ticks += 1
        for stream in list(self._streams.values()):
            try:
                stream._on_tick()
            except Exception:  # one broken call must not stop the others' media
                log.exception("rtp.tick.failed", local_port=stream.local_port)

    def stats(self) -> ClockStats:
        return ClockStats(self._ticks, self._late, self._skipped, self._max_lateness_s * 1000,
                          len(self._streams))


@dataclass(frozen=True, slots=True)
class StreamStats:
    session: SessionStats
    frames_dropped: int  # the app did not read frames() fast enough
    events_dropped: int
    send_errors: int
    socket_errors: int


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, stream: RtpStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stream._on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away arrives here; count, keep the socket.
        self.stream._socket_errors += 1


_CLOSED = object()


class RtpStream:
    """One call leg's RTP socket and media; see the module docstring."""

    def __init__(self, clock: MediaClock, ports: PortAllocator, config: SessionConfig | None = None, *,
                 frame_queue_size: int = 50, event_queue_size: int = 256,
                 rng: random.Random | None = None) -> None:
        rng = rng or random.SystemRandom()
        # RFC 3550 §5.1: random initial sequence number and timestamp, random SSRC (§8.1).
        self.session = RtpSession(config, ssrc=rng.getrandbits(32), sequence_number=rng.getrandbits(16),
                                  timestamp=rng.getrandbits(32))
        self._clock = clock
        self._ports = ports
        self._transport: asyncio.DatagramTransport | None = None
        self._local: Address | None = None
        self._frames: asyncio.Queue[Frame | object] = asyncio.Queue(frame_queue_size)
        self._events: asyncio.Queue[SessionEvent | object] = asyncio.Queue(event_queue_size)
        self._frames_dropped = 0
        self._events_dropped = 0
        self._send_errors = 0
        self._socket_errors = 0
        self._malformed_logged = 0
        self.on_frame: Callable[[Frame], None] | None = None  # optional synchronous consumer
        # Optional synchronous tap (call recording): each delivered frame with the prompt audio the
        # same tick sent, as (frame, playout id, PCM, True) or (frame, None, None, True); a frame
        # pulled to catch up after a clock stall had no send tick: (frame, None, None, False).
        self.on_media: Callable[[Frame, int | None, bytes | None, bool], None] | None = None
        self._receive_debt = 0  # frames not pulled during a clock stall
        self._catch_up_above_ms = self.session.config.jitter.target_delay_ms + 20
        self._closed = False

    # ------------------------------------------------------------- lifecycle

    async def open(self) -> Address:
        """Bind the socket; returns the local (host, port) to put in the SDP."""
        if self._transport is not None:
            raise RtpUsageError("RTP stream is already open")
        if self._closed:
            raise RtpUsageError("RTP stream is closed; create a new one")
        transport, port = await self._ports.bind(lambda: _Protocol(self))
        self._transport = transport
        self._local = (self._ports.range.host, port)
        self._clock.register(self)
        log.debug("rtp.stream.opened", local_port=port)
        return self._local

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._clock.unregister(self)
        if self._transport is not None:
            self._transport.close()
            await asyncio.sleep(0)  # the transport closes its socket on the next loop iteration
            if self._local is not None:
                self._ports.release(self._local[1])
        for queue in (self._frames, self._events):
            _put_dropping_oldest(queue, _CLOSED)
        stats = self.stats().session
        log.debug("rtp.stream.closed", local_port=self.local_port, packets_received=stats.packets_received,
                  packets_sent=stats.packets_sent, lost=stats.jitter.lost, late=stats.jitter.late,
                  dropped_stranger=stats.dropped_stranger, dropped_malformed=stats.dropped_malformed,
                  latches=stats.latches, send_suppressed=stats.send_suppressed)

    async def __aenter__(self) -> RtpStream:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    @property
    def local_address(self) -> Address | None:
        return self._local

    @property
    def local_port(self) -> int | None:
        return self._local[1] if self._local else None

    # ----------------------------------------------------------------- control

    def set_remote(self, address: Address | None, payload_type: int = 0, telephone_event_pt: int | None = 101,
                   ptime_ms: int = FRAME_MS, *, send: bool = True) -> None:
        """Apply negotiated SDP (again on each re-INVITE). ``send=False`` or ``address=None``: hold."""
        self.session.set_remote(RemoteMedia(address, payload_type, telephone_event_pt, ptime_ms, send))

    def play(self, pcm16: bytes) -> int:
        """Queue 16-bit 8 kHz mono PCM; returns the prompt id reported by PlayoutFinished."""
        return self.session.play(pcm16)

    def flush(self) -> int:
        """Stop the current prompt and drop queued ones (barge-in); returns how many were cut."""
        return self.session.flush()

    def send_dtmf(self, digit: str) -> None:
        self.session.send_dtmf(digit)

    # ----------------------------------------------------------------- output

    async def frames(self) -> AsyncIterator[Frame]:
        """Decoded 20 ms frames, one per media tick, until the stream closes."""
        while True:
            item = await self._frames.get()
            if item is _CLOSED:
                return
            assert isinstance(item, Frame)
            yield item

    async def events(self) -> AsyncIterator[SessionEvent]:
        """DtmfEventReceived/DtmfEnded, PlayoutFinished and RemoteLatched events, until the stream closes."""
        while True:
            item = await self._events.get()
            if item is _CLOSED:
                return
            yield cast(SessionEvent, item)

    def stats(self) -> StreamStats:
        return StreamStats(self.session.stats(), self._frames_dropped, self._events_dropped,
                           self._send_errors, self._socket_errors)

    # --------------------------------------------------------------- internals

    def _on_datagram(self, data: bytes, source: Address) -> None:
        session = self.session
        before = session.malformed_count
        session.receive_datagram(data, source)
        if session.malformed_count != before and self._malformed_logged < 10:
            # Log the first few so a broken peer is visible without letting garbage flood the log.
            self._malformed_logged += 1
            log.info("rtp.datagram.malformed", local_port=self.local_port, source=f"{source[0]}:{source[1]}",
                     reason=session.last_error)
        self._drain_events()

    def _on_tick(self) -> None:
        session = self.session
        datagrams = session.tick()
        if datagrams and self._transport is not None:
            address = session.send_address
            if address is not None:
                for datagram in datagrams:
                    try:
                        self._transport.sendto(datagram, address)
                    except OSError:
                        self._send_errors += 1
        self._deliver_frame(session.last_played, ticked=True)
        if self._receive_debt:
            # Frames not pulled during a stall: pull them back gradually, and only while they are
            # really buffered (the stalled packets are read one per socket per loop iteration, so
            # pulling them all at once would find them missing and conceal audio that is coming).
            # A tick that can pull nothing back forgives one frame: a sender that paused during the
            # stall (or the stall's packets were lost) leaves nothing to pull back, and the debt is
            # also the jitter buffer's allowance above its maximum delay, which must not linger.
            pulled = 0
            while pulled < 2 and self._receive_debt and session.buffered_ms >= self._catch_up_above_ms:
                self._receive_debt -= 1
                pulled += 1
                self._deliver_frame()
            if not pulled:
                self._receive_debt -= 1
            session.allow_backlog(self._receive_debt)
        self._drain_events()

    def _owe(self, frames: int) -> None:
        """The clock skipped ``frames`` ticks (a loop stall): pull them back, and until then let the
        jitter buffer hold the packets that queued up meanwhile (the phone did not stop talking)."""
        self._receive_debt = min(self._receive_debt + frames, _MAX_RECEIVE_CATCH_UP)
        self.session.allow_backlog(self._receive_debt)

    def _deliver_frame(self, played: tuple[int, bytes] | None = None, *, ticked: bool = False) -> None:
        frame = self.session.pull_frame()
        if self.on_media is not None:
            playout_id, pcm = played if played is not None else (None, None)
            self.on_media(frame, playout_id, pcm, ticked)
        if self.on_frame is not None:
            self.on_frame(frame)
        elif _put_dropping_oldest(self._frames, frame):
            self._frames_dropped += 1

    def _drain_events(self) -> None:
        for event in self.session.events():
            if _put_dropping_oldest(self._events, event):
                self._events_dropped += 1


def _put_dropping_oldest(queue: asyncio.Queue[Any], item: object) -> bool:
    """Put without blocking; if full, drop the oldest item first. Returns True if one was dropped."""
    dropped = False
    if queue.full():
        queue.get_nowait()
        dropped = True
    queue.put_nowait(item)
    return dropped
