"""The SpeechKit STT v3 recognition server: a grpc.aio adapter around :class:`~voicebot.stt.session.Session`.

Serves ``/speechkit.stt.v3.Recognizer/RecognizeStreaming`` plus the standard gRPC health service
(``grpc.health.v1.Health``) and server reflection, in plaintext or with TLS. Each stream gets one
sans-IO :class:`Session`; this module only moves things between it and the world: requests from the
client (read by a task, with back-pressure), decode jobs to the shared :class:`InferencePool`, the
session's timers on the event loop's monotonic clock, and responses back to the client stamped with
``response_wall_time_ms`` as they are written. Auth runs before a session exists; admission control
(RESOURCE_EXHAUSTED) right after.

Programmatic use (``voicebot run`` embeds the server this way)::

    running = await start_server(ServerConfig(listen="127.0.0.1:0", allow_no_auth=True))
    ... running.port ...
    await running.stop(grace_s=5)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from voicebot.ascii import is_digits
from voicebot.errors import ConfigError
from voicebot.logging import get_logger
from voicebot.net import is_loopback
from voicebot.observe.metrics import RecognizerMetrics
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt._proto import stt_service_pb2, stt_service_pb2_grpc
from voicebot.stt.auth import Authenticator
from voicebot.stt.endpoint import WebRtcEndpointer
from voicebot.stt.engine import Endpointer, Engine
from voicebot.stt.errors import InvalidRequest, Overloaded, SttServerError, Unauthenticated
from voicebot.stt.hints import hints_from_metadata
from voicebot.stt.normalize import normalize_numbers
from voicebot.stt.pool import InferencePool, Normalizer, Ticket
from voicebot.stt.session import (
    CancelDecode,
    Close,
    Command,
    DecodeResult,
    Send,
    Session,
    SessionConfig,
    StartDecode,
)

log = get_logger(__name__)

SERVICE_NAME = stt_service_pb2.DESCRIPTOR.services_by_name["Recognizer"].full_name
_MAX_QUEUED_REQUESTS = 64  # per session; the reader waits (gRPC flow control) beyond this
# A session task that wakes this much after its timer was due has not been running: the event loop
# (the whole process) was stalled, the reader could not take the client's messages either, so the
# idle rule waits _STALL_GRACE_S of running loop for them before it may blame the client (issue 5).
_LOOP_STALL_S = 0.25
_STALL_GRACE_S = 1.0
# A refusal (bad key, no capacity, bad hints) first reads the client's messages until it pauses
# for _REFUSE_QUIET_S, at most _REFUSE_SETTLE_S: see _refuse.
_REFUSE_SETTLE_S = 0.5
_REFUSE_QUIET_S = 0.01


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``voicebot stt-server`` can be told; validated by :func:`start_server`."""

    listen: str = "127.0.0.1:50051"  # host:port; port 0 picks a free one (see RunningServer.port)
    api_keys: frozenset[str] = frozenset()  # accepted Api-Key / Bearer secrets
    allow_no_auth: bool = False  # run without keys (only on a loopback address)
    tls_cert_path: Path | None = None  # PEM certificate chain; with tls_key_path enables TLS
    tls_key_path: Path | None = None
    model: str = "base"  # "base", "tiny.en", or a CTranslate2 Whisper directory
    workers: int = 2  # decodes that may run at once (one core each)
    max_sessions: int = 64  # open streams before RESOURCE_EXHAUSTED
    max_queued: int = 8  # queued decodes before new streams get RESOURCE_EXHAUSTED
    session: SessionConfig = field(default_factory=SessionConfig)


def _listen_host(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not is_digits(port):
        raise ConfigError(f"listen address {listen!r} must be host:port, e.g. 127.0.0.1:50051")
    return host.strip("[]")


def default_normalizer(text: str, language: str) -> str:
    """TEXT_NORMALIZATION_ENABLED: spoken numbers to digits (English and Russian number words)."""
    return normalize_numbers(text)


async def _refuse(
    request_iterator: AsyncIterator[pb.StreamingRequest],
    context: grpc.aio.ServicerContext[Any, Any],
    grpc_code: str,
    message: str,
) -> None:
    """End a stream that is refused at its start with ``grpc_code`` and ``message``.

    A grpc.aio client reports a status that arrives while one of its writes is in flight as
    INTERNAL "Internal error from Core", losing ours (grpc/grpc#36066, fix pending in #43486), and
    voicebot's own client retries INTERNAL where it gives up on UNAUTHENTICATED. Refused on its
    headers alone, 1 stream in 100 that sent only its options and 6 in 10 that sent audio right
    after them (a reconnect replaying its backlog) came back INTERNAL here. So the client's
    messages are read and dropped until it pauses (``_REFUSE_QUIET_S`` without one: its writes are
    done for now), for at most ``_REFUSE_SETTLE_S`` (a client that sends nothing, or never
    pauses, is refused then anyway).
    """
    loop = asyncio.get_running_loop()
    give_up_s = loop.time() + _REFUSE_SETTLE_S
    wait_s = _REFUSE_SETTLE_S
    messages = aiter(request_iterator)
    with contextlib.suppress(StopAsyncIteration, TimeoutError, DecodeError, grpc.RpcError):
        while (left_s := give_up_s - loop.time()) > 0:
            await asyncio.wait_for(anext(messages), min(wait_s, left_s))
            wait_s = _REFUSE_QUIET_S
    await context.abort(grpc.StatusCode[grpc_code], message)


class RecognizerServicer(stt_service_pb2_grpc.RecognizerServicer):  # type: ignore[misc,unused-ignore]
    def __init__(
        self,
        *,
        engine: Engine,
        pool: InferencePool,
        auth: Authenticator,
        session_config: SessionConfig,
        endpointer_factory: Callable[[int, int], Endpointer],
        metrics: RecognizerMetrics | None = None,
    ) -> None:
        self._metrics = metrics if metrics is not None else RecognizerMetrics()
        self._engine = engine
        self._pool = pool
        self._auth = auth
        self._session_config = session_config
        self._endpointer_factory = endpointer_factory

    async def RecognizeStreaming(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.StreamingResponse]:
        metadata = {key.lower(): value for key, value in context.invocation_metadata() or ()}
        authorization = metadata.get("authorization")
        try:
            self._auth.check(authorization if isinstance(authorization, str) else None)
            self._pool.open_session()
        except (Unauthenticated, Overloaded) as exc:
            log.warning("stt.session.refused", reason=exc.message, grpc_code=exc.grpc_code)
            self._metrics.sessions.labels(code=exc.grpc_code).inc()
            await _refuse(request_iterator, context, exc.grpc_code, exc.message)
        self._metrics.sessions_active.inc()
        try:
            async for response in self._run(request_iterator, context, metadata):
                yield response
        finally:
            self._metrics.sessions_active.dec()
            self._pool.close_session()

    def _observe_final_latency(
        self, response: pb.StreamingResponse, arrivals: deque[tuple[int, float]], now_s: float
    ) -> None:
        """From the arrival of the chunk holding the utterance's end to its final going out."""
        alternatives = response.final.alternatives
        if not alternatives:
            return
        end_ms = alternatives[0].end_time_ms
        while len(arrivals) > 1 and arrivals[0][0] < end_ms:
            arrivals.popleft()  # finals come in timeline order: what is before this end is done
        if arrivals and arrivals[0][0] >= end_ms:
            self._metrics.final_latency.observe(max(0.0, now_s - arrivals[0][1]))

    async def _run(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[Any, Any],
        metadata: dict[str, Any],
    ) -> AsyncIterator[pb.StreamingResponse]:
        loop = asyncio.get_running_loop()
        session_id = str(uuid.uuid4())
        request_id = metadata.get("x-client-request-id", "")
        slog = log.bind(session_id=session_id, user_request_id=request_id)
        try:
            # The recognition-hints extension; a plain v3 client sends none (hints = None).
            hints = hints_from_metadata(context.invocation_metadata() or ())
        except InvalidRequest as exc:
            slog.warning("stt.session.bad_hints", reason=exc.message, grpc_code=exc.grpc_code)
            self._metrics.sessions.labels(code=exc.grpc_code).inc()
            await _refuse(request_iterator, context, exc.grpc_code, exc.message)
        session = Session(
            session_uuid=session_id,
            user_request_id=request_id if isinstance(request_id, str) else "",
            resolve_language=self._engine.resolve_language,
            endpointer_factory=self._endpointer_factory,
            now_s=loop.time(),
            config=self._session_config,
            hints=hints,
        )
        inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        room = asyncio.Event()
        tickets: dict[int, Ticket] = {}
        # (audio ms received, loop time it arrived): when an utterance's end was here, for final_latency.
        arrivals: deque[tuple[int, float]] = deque()
        started_s = time.monotonic()
        grpc_code = "CANCELLED"
        close_message = "client cancelled the stream"

        async def read_requests() -> None:
            count = 0
            try:
                async for request in request_iterator:
                    count += 1
                    inbox.put_nowait(("request", request))
                    while inbox.qsize() > _MAX_QUEUED_REQUESTS:
                        room.clear()
                        await room.wait()
                inbox.put_nowait(("eof", None))
            except asyncio.CancelledError:
                raise
            except DecodeError:
                # grpc.aio deserializes each message as the iterator advances: bytes that are not a
                # StreamingRequest surface here, and are the client's fault (INVALID_ARGUMENT), not OK.
                inbox.put_nowait(("invalid", count + 1))
            except Exception as exc:  # the transport failed under us: end the session
                inbox.put_nowait(("error", exc))

        def on_done(job_id: int) -> Callable[[DecodeResult | BaseException], None]:
            return lambda outcome: inbox.put_nowait(("decoded", (job_id, outcome)))

        reader = asyncio.create_task(read_requests(), name=f"stt-reader-{session_id}")
        slog.info("stt.session.started", hints_mode=hints.mode if hints is not None else None)
        grace_until_s = 0.0
        try:
            while True:
                due_s = max(session.get_timer(), grace_until_s)
                item: tuple[str, Any] | None = None
                if not inbox.empty():
                    # What has arrived goes first: wait_for(get(), 0) on an overdue timer would
                    # never read it, and the idle rule would ignore messages that are already here.
                    item = inbox.get_nowait()
                else:
                    try:
                        item = await asyncio.wait_for(inbox.get(), max(0.0, due_s - loop.time()))
                    except TimeoutError:
                        late_s = loop.time() - due_s
                        if late_s > _LOOP_STALL_S:
                            grace_until_s = loop.time() + _STALL_GRACE_S
                            slog.warning("stt.session.loop_stalled", late_s=round(late_s, 3))
                            continue
                if item is None:
                    commands = session.handle_timer(loop.time())
                else:
                    kind, payload = item
                    room.set()
                    if kind == "request":
                        commands = session.receive(payload, loop.time())
                        if not arrivals or session.received_data_ms > arrivals[-1][0]:
                            arrivals.append((session.received_data_ms, loop.time()))
                    elif kind == "eof":
                        commands = session.half_close()
                    elif kind == "decoded":
                        job_id, outcome = payload
                        tickets.pop(job_id, None)
                        if isinstance(outcome, BaseException):
                            commands = session.decode_failed(job_id, f"{type(outcome).__name__}: {outcome}")
                        else:
                            commands = session.decoded(job_id, outcome)
                    elif kind == "invalid":
                        grpc_code = "INVALID_ARGUMENT"
                        close_message = (
                            f"request {payload} is not a valid speechkit.stt.v3.StreamingRequest "
                            "(protobuf decoding failed)"
                        )
                        context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                        context.set_details(close_message)
                        return
                    else:
                        close_message = f"client stream failed: {payload}"
                        return
                work: deque[Command] = deque(commands)
                while work:
                    command = work.popleft()
                    if isinstance(command, Send):
                        response = command.response
                        response.response_wall_time_ms = int(time.time() * 1000)
                        yield response
                        if response.WhichOneof("Event") == "final":
                            self._metrics.finals.inc()
                            self._observe_final_latency(response, arrivals, loop.time())
                    elif isinstance(command, StartDecode):
                        job = command.job
                        try:
                            ticket = self._pool.submit(job, on_done(job.job_id))
                        except SttServerError as exc:
                            work.append(Close(exc.grpc_code, exc.message))
                            continue
                        if ticket is None:
                            work.extend(session.decode_skipped(job.job_id))
                        else:
                            tickets[job.job_id] = ticket
                    elif isinstance(command, CancelDecode):
                        cancelled = tickets.pop(command.job_id, None)
                        if cancelled is not None:
                            cancelled.cancel()
                    elif isinstance(command, Close):
                        grpc_code, close_message = command.grpc_code, command.message
                        if grpc_code != "OK":
                            context.set_code(grpc.StatusCode[grpc_code])
                            context.set_details(command.message)
                        return
        except Exception as exc:
            # A bug of ours: this session ends with INTERNAL, the server and other sessions go on.
            slog.exception("stt.session.crashed")
            grpc_code = "INTERNAL"
            close_message = f"internal server error ({type(exc).__name__}); please report it"
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details(close_message)
        finally:
            reader.cancel()
            for ticket in tickets.values():
                ticket.cancel()
            stats = session.stats()
            self._metrics.sessions.labels(code=grpc_code).inc()
            self._metrics.audio_seconds.inc(stats.audio_ms / 1000)
            slog.info(
                "stt.session.ended",
                audio_s=round(stats.audio_ms / 1000, 3),
                data_bytes=stats.data_bytes,
                finals=stats.finals,
                partials=stats.partials,
                partials_skipped=stats.partials_skipped,
                grpc_code=grpc_code,
                close_reason=stats.close_reason or close_message,
                wall_s=round(time.monotonic() - started_s, 3),
            )


@dataclass(slots=True)
class RunningServer:
    """A started server: ``port`` is the bound port (useful with ``listen=...:0``)."""

    server: grpc.aio.Server
    port: int
    pool: InferencePool
    health: HealthServicer
    engine: Engine
    tls: bool
    metrics: RecognizerMetrics = field(default_factory=RecognizerMetrics)
    stopping: bool = False

    def unready_reason(self) -> str | None:
        """The ``/readyz`` probe: ``None`` while new streams are taken, else why not."""
        return "stopping (draining open streams)" if self.stopping else None

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting streams, give open ones ``grace_s`` to finish, then stop the workers."""
        self.stopping = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace_s)
        await asyncio.to_thread(self.pool.stop)

    async def wait_closed(self) -> None:
        await self.server.wait_for_termination()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if (config.tls_cert_path is None) != (config.tls_key_path is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if config.tls_cert_path is None or config.tls_key_path is None:
        return None
    try:
        cert = config.tls_cert_path.read_bytes()
        key = config.tls_key_path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from exc
    return grpc.ssl_server_credentials([(key, cert)])


def _check_auth(config: ServerConfig) -> Authenticator:
    host = _listen_host(config.listen)
    if config.api_keys:
        return Authenticator(config.api_keys)
    if not config.allow_no_auth:
        raise ConfigError(
            "no API keys: set VOICEBOT_STT_API_KEYS or --api-key-file, or pass --no-auth on a loopback "
            "address for local testing"
        )
    if not is_loopback(host):
        raise ConfigError(
            f"--no-auth is only allowed on a loopback address, not {host!r}; give API keys to listen there"
        )
    return Authenticator((), required=False)


def _validate(config: ServerConfig) -> None:
    limits, session = config.session.limits, config.session
    checks = [
        ("workers", config.workers, config.workers >= 1, ">= 1"),
        ("max_sessions", config.max_sessions, config.max_sessions >= 1, ">= 1"),
        ("max_queued", config.max_queued, config.max_queued >= 0, ">= 0"),
        ("max_audio_ms", limits.max_audio_ms, limits.max_audio_ms > 0, "> 0"),
        ("max_data_bytes", limits.max_data_bytes, limits.max_data_bytes > 0, "> 0"),
        ("idle_timeout_s", limits.idle_timeout_s, limits.idle_timeout_s > 0, "> 0"),
        ("keepalive_interval_s", session.keepalive_interval_s, session.keepalive_interval_s > 0, "> 0"),
        ("partial_interval_ms", session.partial_interval_ms, session.partial_interval_ms > 0, "> 0"),
    ]
    for name, value, ok, rule in checks:
        if not ok:
            raise ConfigError(f"stt-server {name} must be {rule}, not {value}")


def _load_engine(config: ServerConfig) -> Engine:
    from voicebot.stt.model import load_engine

    if Path(config.model).is_dir():
        return load_engine(model_path=config.model, workers=config.workers)
    return load_engine(config.model, workers=config.workers)


async def start_server(
    config: ServerConfig,
    *,
    engine: Engine | None = None,
    normalizer: Normalizer | None = None,
    endpointer_factory: Callable[[int, int], Endpointer] | None = None,
    metrics: RecognizerMetrics | None = None,
) -> RunningServer:
    """Validate ``config``, load the model (unless ``engine`` is given), bind, and start serving.

    ``metrics`` (one is made when not given) is what the server counts; see ``RunningServer.metrics``.
    """
    if metrics is None:
        metrics = RecognizerMetrics()
    _validate(config)
    auth = _check_auth(config)
    credentials = _credentials(config)
    if engine is None:
        engine = await asyncio.to_thread(_load_engine, config)
    pool = InferencePool(
        engine,
        workers=config.workers,
        max_queued=config.max_queued,
        max_sessions=config.max_sessions,
        normalizer=normalizer if normalizer is not None else default_normalizer,
        on_decoded=lambda final, seconds: metrics.decode.labels(
            kind="final" if final else "partial").observe(seconds),
    )
    servicer = RecognizerServicer(
        engine=engine,
        pool=pool,
        auth=auth,
        session_config=config.session,
        endpointer_factory=endpointer_factory or _webrtc_endpointer,
        metrics=metrics,
    )
    # No SO_REUSEPORT (gRPC's default): a second server on a busy port must fail, not silently share it.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    stt_service_pb2_grpc.add_RecognizerServicer_to_server(servicer, server)  # type: ignore[no-untyped-call,unused-ignore]
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        server,
    )
    try:
        if credentials is not None:
            port = server.add_secure_port(config.listen, credentials)
        else:
            port = server.add_insecure_port(config.listen)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {config.listen}: {exc}") from exc
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}: the address is in use or not local")
    pool.start()
    await server.start()
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "stt.server.started",
        listen=config.listen,
        port=port,
        tls=credentials is not None,
        auth=auth.required,
        engine=engine.name,
        workers=config.workers,
    )
    return RunningServer(server, port, pool, health_servicer, engine, credentials is not None, metrics)


def _webrtc_endpointer(sample_rate_hz: int, max_pause_ms: int) -> Endpointer:
    return WebRtcEndpointer(sample_rate_hz, max_pause_ms=max_pause_ms)
