"""The call-leg recognition stream over grpc.aio: push 8 kHz 16-bit PCM in, iterate transcript events out.

Theory of operation. :class:`RecognitionStream` is the thin asyncio adapter around the sans-IO
:class:`~voicebot.stt.stream.StreamCore`, which makes every decision (pacing, silence_chunk
keep-alive, rotation, reconnect with replay, dedup, backlog joining; see ``stream.py``). One owner
task per stream feeds the core what happens, with time from one injected clock, and carries out
what it returns:

* ``OpenSession`` -> a ``RecognizeStreaming`` call on the shared channel, with the session's
  metadata plus ``authorization`` (the API key never enters the core), and a reader task that
  forwards the call's responses and its final status to the owner's inbox;
* ``Transmit`` -> wake the call's request iterator, which pulls ``next_request`` from the core
  whenever gRPC is ready for the next message (so a message gRPC has not taken can still grow);
* ``CancelSession`` -> cancel the call; events -> the consumer's bounded buffer; ``StreamFailed``
  -> :class:`RecognitionError` raised from the iteration.

``push_audio``, ``end_input`` and ``set_session_metadata`` are synchronous and never block: they
queue for the owner. Queues are bounded and count what they drop; ``CancelledError`` is never
swallowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import grpc
import grpc.aio
import structlog

from voicebot.config import parse_host_port
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.stream import (
    BYTES_PER_MS,
    SAMPLE_RATE_HZ,
    AudioRing,
    Backoff,
    CancelSession,
    ClientSettings,
    FinalReceived,
    HalfClose,
    OpenReason,
    OpenSession,
    Output,
    PartialReceived,
    RecognitionError,
    RotationLimits,
    SendAudio,
    SendSilence,
    SessionClosed,
    SessionOpened,
    SessionWindow,
    StreamCore,
    StreamEvent,
    StreamFailed,
    Transmit,
    UtteranceEnded,
    is_quiet,
    rotation_due,
    session_options,
    split_chunks,
)

__all__ = [
    "BYTES_PER_MS", "SAMPLE_RATE_HZ", "AudioRing", "Backoff", "ClientSettings", "EventBuffer",
    "FinalReceived", "OpenReason", "PartialReceived", "RecognitionError", "RecognitionStream",
    "RotationLimits", "SessionClosed", "SessionOpened", "SessionWindow", "StreamEvent", "UtteranceEnded",
    "is_quiet", "open_channel", "pool_target", "rotation_due", "service_config", "session_options",
    "split_chunks",
]

# voicebot.logging.get_logger collides with structlog's own `logger` parameter; bind logger_name instead.
log = structlog.get_logger(logger_name=__name__)

RECOGNIZE_STREAMING = "/speechkit.stt.v3.Recognizer/RecognizeStreaming"
Call = grpc.aio.StreamStreamCall[pb.StreamingRequest, pb.StreamingResponse]


def pool_target(endpoints: Sequence[str], *,
                resolve: Callable[[str, int], list[str]] | None = None) -> str:
    """A gRPC target naming every address of ``endpoints`` (HOST:PORT each): ``ipv4:a:p,b:p`` or
    ``ipv6:[a]:p,...``, which gRPC's round_robin policy spreads calls over.

    gRPC takes one resolver per target, so names are resolved here, once, with ``resolve`` (default:
    ``getaddrinfo``); a pool whose addresses change should be one DNS name given as a single endpoint,
    which gRPC re-resolves itself. Raises :class:`RecognitionError` for a name that does not resolve
    or a pool mixing IPv4 and IPv6.
    """
    resolve = resolve or _resolve
    addresses: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    for text in endpoints:
        endpoint = parse_host_port(text)
        try:
            hosts = [endpoint.host] if _is_ip(endpoint.host) else resolve(endpoint.host, endpoint.port)
        except OSError as exc:
            raise RecognitionError(
                f"recognizer pool endpoint {text}: cannot resolve {endpoint.host!r}: {exc}", retryable=True,
            ) from exc
        for host in hosts:
            address = (ipaddress.ip_address(host), endpoint.port)
            if address not in addresses:
                addresses.append(address)
    versions = {ip.version for ip, _port in addresses}
    if len(versions) != 1:
        raise RecognitionError(f"recognizer pool {', '.join(endpoints)} mixes IPv4 and IPv6 addresses; "
                               "list one family (gRPC takes one address family per target)", retryable=False)
    if versions == {4}:
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in addresses)
    return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in addresses)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def service_config(settings: ClientSettings) -> str:
    """The channel's service config: round_robin over every address of the target (a pool, or a DNS
    name with several), and with ``health_check`` gRPC client health checking (grpc.health.v1,
    service ``""``), so a recognizer that reports NOT_SERVING, or is gone, is picked for no new call."""
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    if settings.health_check:
        config["healthCheckConfig"] = {"serviceName": ""}
    return json.dumps(config)


def open_channel(settings: ClientSettings) -> grpc.aio.Channel:
    """A channel to the recognizer (or the pool); reconnects quickly (the call cannot wait for gRPC's
    120 s cap); calls go round-robin to the healthy recognizers (see :func:`service_config`)."""
    target = pool_target(settings.endpoints) if len(settings.endpoints) > 1 else settings.target
    options: list[tuple[str, str | int]] = [
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.service_config", service_config(settings)),
    ]
    if not settings.tls:
        return grpc.aio.insecure_channel(target, options=options)
    roots = settings.ca_file.read_bytes() if settings.ca_file is not None else None
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(roots), options=options)


def to_request(request: SendAudio | SendSilence) -> pb.StreamingRequest:
    if isinstance(request, SendAudio):
        return pb.StreamingRequest(chunk=pb.AudioChunk(data=request.pcm16))
    return pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=request.duration_ms))


class EventBuffer:
    """Events for the consumer: unbounded for finals, at most ``max_partials`` partials waiting.

    A consumer that lags loses interim text (counted in ``dropped_partials``), never a final.
    ``None`` ends the iteration; a :class:`RecognitionError` is raised from it.
    """

    def __init__(self, max_partials: int) -> None:
        self.max_partials = max_partials
        self.dropped_partials = 0
        self._items: deque[StreamEvent | RecognitionError | None] = deque()
        self._ready = asyncio.Event()

    def put(self, item: StreamEvent | RecognitionError | None) -> None:
        if (isinstance(item, PartialReceived)
                and sum(isinstance(e, PartialReceived) for e in self._items) >= self.max_partials):
            self.dropped_partials += 1
            return
        self._items.append(item)
        self._ready.set()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[StreamEvent]:
        while True:
            while not self._items:
                self._ready.clear()
                await self._ready.wait()
            item = self._items.popleft()
            if item is None:
                return
            if isinstance(item, RecognitionError):
                raise item
            yield item


@dataclass(eq=False, slots=True)
class _Call:
    """One session's RPC as the adapter sees it."""

    session_id: str
    options: pb.StreamingRequest
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    call: Call | None = None


@dataclass(frozen=True, slots=True)
class _Audio:
    pcm16: bytes
    is_silence: bool | None


@dataclass(frozen=True, slots=True)
class _Metadata:
    pairs: tuple[tuple[str, str | bytes], ...]


@dataclass(frozen=True, slots=True)
class _Response:
    session_id: str
    response: pb.StreamingResponse


@dataclass(frozen=True, slots=True)
class _Ended:
    session_id: str
    grpc_code: str
    message: str


_END = "end"
_Inbox = _Audio | _Metadata | _Response | _Ended | str


class RecognitionStream:
    """One call leg's recognition: ``push_audio`` in, ``async for event in stream`` out.

    Use as ``async with RecognitionStream(settings) as stream:``. ``end_input()`` flushes: the
    iteration ends after the last final. Errors that end the stream raise :class:`RecognitionError`
    from the iteration with ``retryable`` set. ``clock`` is the one source of time (seconds,
    monotonic); ``rng`` drives the reconnect jitter.
    """

    def __init__(self, settings: ClientSettings, *, channel: grpc.aio.Channel | None = None,
                 clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random,
                 call_id: str | None = None) -> None:
        self.settings = settings
        self._own_channel = channel is None
        self._channel = channel
        self._clock = clock
        self._call_id = call_id
        self._core = StreamCore(settings, rng=rng)
        self._inbox: asyncio.Queue[_Inbox] = asyncio.Queue()
        self._inbox_audio_ms = 0
        self._events = EventBuffer(settings.max_pending_partials)
        self._calls: dict[str, _Call] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._ending = False
        self._start_s = 0.0
        self._owner: asyncio.Task[None] | None = None
        self.dropped_audio_ms = 0

    # ---- public API ----

    async def __aenter__(self) -> RecognitionStream:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._owner is not None:
            raise RuntimeError("RecognitionStream.start() called twice")
        if self._channel is None:
            self._channel = open_channel(self.settings)
        self._start_s = self._clock()
        self._owner = asyncio.get_running_loop().create_task(self._run(), name="stt-client")

    def push_audio(self, pcm16: bytes, *, is_silence: bool | None = None) -> None:
        """Queue 16-bit 8 kHz mono PCM (any length); never blocks.

        ``is_silence``: the caller knows the frame's kind (concealment, comfort noise, a VAD's
        verdict), so the stream does not judge it by energy; None: judged by energy. Dropped and
        counted in ``dropped_audio_ms`` when ``max_pending_audio_ms`` is waiting or after ``end_input()``.
        """
        duration_ms = len(pcm16) // BYTES_PER_MS
        if self._ending:
            # A frame racing the hang-up: the input is over, so it is not part of the call's audio.
            self.dropped_audio_ms += duration_ms
            return
        if self.pending_audio_ms + duration_ms > self.settings.max_pending_audio_ms:
            self.dropped_audio_ms += duration_ms
            return
        self._inbox_audio_ms += duration_ms
        self._inbox.put_nowait(_Audio(pcm16, is_silence))

    def end_input(self) -> None:
        """No more audio: the open utterance is flushed and the iteration ends after its final."""
        if not self._ending:
            self._ending = True
            self._inbox.put_nowait(_END)

    def set_session_metadata(self, pairs: Sequence[tuple[str, str | bytes]]) -> None:
        """Extra call metadata (e.g. ``RecognitionHints.to_metadata()``) for sessions opened from now
        on; the current session is replaced by one carrying them once no utterance is in progress."""
        self._inbox.put_nowait(_Metadata(tuple(pairs)))

    @property
    def call_ms(self) -> int:
        """The call timeline's position: audio and silence accepted so far."""
        return self._core.call_ms

    @property
    def pending_audio_ms(self) -> int:
        """Pushed audio not yet sent: queued for the owner or waiting for its real-time slot."""
        return self._inbox_audio_ms + self._core.held_audio_ms

    @property
    def sessions_opened(self) -> int:
        return self._core.sessions_opened

    @property
    def dropped_partials(self) -> int:
        return self._events.dropped_partials

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return aiter(self._events)

    async def aclose(self) -> None:
        owner, self._owner = self._owner, None
        if owner is not None and not owner.done():
            owner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await owner
            self._events.put(None)  # a consumer still iterating ends instead of waiting forever
            # Our own cancellation (not the owner's) must still propagate.
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise asyncio.CancelledError
        if self._own_channel and self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    # ---- owner task ----

    async def _run(self) -> None:
        core = self._core
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._apply(core.start(self._start_s))
                while not core.finished:
                    timer = core.get_timer()
                    timeout = None if timer is None else max(0.005, timer - self._clock())
                    item: _Inbox | None
                    try:
                        item = await asyncio.wait_for(self._inbox.get(), timeout)
                    except TimeoutError:
                        item = None
                    self._apply(self._feed(item, self._clock()))
                for session_id in list(self._calls):
                    self._cancel(session_id)
            self._events.put(None)
        except* RecognitionError as group:
            first = group.exceptions[0]
            assert isinstance(first, RecognitionError)
            self._events.put(first)
        except* Exception as group:
            # A bug, not a recognizer problem: the consumer must not wait forever for events.
            log.error("stt.client.crashed", error=repr(group.exceptions[0]), call_id=self._call_id)
            self._events.put(RecognitionError(f"recognition stream failed: {group.exceptions[0]!r}",
                                              retryable=True))
        finally:
            for session_id in list(self._calls):
                self._cancel(session_id)
            log.info("stt.client.stream_ended", call_id=self._call_id, session_attempts=core.sessions_opened,
                     call_ms=core.call_ms, dropped_audio_ms=self.dropped_audio_ms,
                     dropped_partials=self.dropped_partials, replay_dropped_ms=core.replay_dropped_ms)

    def _feed(self, item: _Inbox | None, now_s: float) -> list[Output]:
        core = self._core
        if item is None:
            return core.handle_timer(now_s)
        if isinstance(item, _Audio):
            self._inbox_audio_ms -= len(item.pcm16) // BYTES_PER_MS
            return core.push_audio(item.pcm16, now_s, is_silence=item.is_silence)
        if isinstance(item, _Metadata):
            return core.set_session_metadata(item.pairs, now_s)
        if isinstance(item, _Response):
            return core.receive_response(item.session_id, item.response, now_s)
        if isinstance(item, _Ended):
            self._calls.pop(item.session_id, None)
            if item.grpc_code not in ("OK", "CANCELLED"):
                log.warning("stt.client.session_failed", session_id=item.session_id, code=item.grpc_code,
                            detail=item.message, call_id=self._call_id)
            return core.session_ended(item.session_id, item.grpc_code, item.message, now_s)
        return core.end_input(now_s)

    def _apply(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, OpenSession):
                self._open(output)
            elif isinstance(output, Transmit):
                call = self._calls.get(output.session_id)
                if call is not None:
                    call.wake.set()
            elif isinstance(output, CancelSession):
                self._cancel(output.session_id)
            elif isinstance(output, StreamFailed):
                raise RecognitionError(output.message, retryable=output.retryable)
            else:
                self._events.put(output)

    def _open(self, command: OpenSession) -> None:
        assert self._channel is not None and self._tg is not None
        metadata: list[tuple[str, str | bytes]] = list(command.metadata)
        if self.settings.api_key:
            metadata.append(("authorization", f"Api-Key {self.settings.api_key}"))
        multicallable: grpc.aio.StreamStreamMultiCallable[pb.StreamingRequest, pb.StreamingResponse] = (
            self._channel.stream_stream(RECOGNIZE_STREAMING,
                                        request_serializer=pb.StreamingRequest.SerializeToString,
                                        response_deserializer=pb.StreamingResponse.FromString))
        call = _Call(command.session_id, command.options)
        self._calls[command.session_id] = call
        call.call = multicallable(self._requests(call), metadata=tuple(metadata))
        self._tg.create_task(self._read(command.session_id, call.call), name=f"stt-read-{command.session_id}")
        log.info("stt.client.session_opening", session_id=command.session_id, reason=command.reason,
                 base_ms=command.base_ms, replay_ms=command.replay_ms, call_id=self._call_id)

    async def _requests(self, call: _Call) -> AsyncIterator[pb.StreamingRequest]:
        """What gRPC sends: the options, then each request the core has queued, as gRPC takes them."""
        yield call.options
        while True:
            request = self._core.next_request(call.session_id)
            if request is None:
                call.wake.clear()
                await call.wake.wait()
                continue
            if isinstance(request, HalfClose):
                return
            yield to_request(request)

    async def _read(self, session_id: str, call: Call) -> None:
        try:
            async for response in call:
                self._inbox.put_nowait(_Response(session_id, response))
            self._inbox.put_nowait(_Ended(session_id, "OK", ""))
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            self._inbox.put_nowait(_Ended(session_id, name, exc.details() or ""))

    def _cancel(self, session_id: str) -> None:
        call = self._calls.pop(session_id, None)
        if call is not None and call.call is not None:
            call.call.cancel()
