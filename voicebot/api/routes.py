"""The ``/v1`` routes of the control API (Starlette), mounted on the operations HTTP server.

Every ``/v1`` request is authenticated first (:class:`BearerAuth`: ``Authorization: Bearer
<token>``, compared in constant time; 401 with ``WWW-Authenticate`` otherwise, RFC 6750 §3), then
its body is read with a size cap (413) and checked (:mod:`voicebot.api.schema`: 415, 400, 422) before
anything changes. Errors are RFC 9457 problem details (``application/problem+json``) whose
``detail`` says what was wrong and ``field`` names the field.

The routes see the application only through :class:`ApiContext` (the call registry, the known
dialplans, a function that places a call in the background, the readiness probe), never the App.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, Protocol

import structlog
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from voicebot.api.campaign_schema import (
    MAX_CAMPAIGN_BODY_BYTES,
    create_campaign_request,
    update_campaign_request,
)
from voicebot.api.errors import ApiError
from voicebot.api.events import EventBus, EventId, EventsDropped, ReplayGap, StreamItem
from voicebot.api.openapi import openapi_document
from voicebot.api.registry import RECENT_CALLS, CallEntry, CallRegistry
from voicebot.api.schema import (
    MAX_BODY_BYTES,
    hangup_request,
    parse_json,
    place_call_request,
    transfer_request,
)
from voicebot.ascii import is_digits
from voicebot.campaign.control import CampaignStatus, TransitionRefused
from voicebot.campaign.errors import CampaignError, UnknownCampaign
from voicebot.campaign.model import CampaignSettings, Contact
from voicebot.campaign.store import ContactResult
from voicebot.dialog.ir import Dialplan
from voicebot.errors import VoicebotError

log = structlog.get_logger(logger_name=__name__)

PROBLEM_JSON = "application/problem+json"
SSE_HEARTBEAT_S = 15.0  # a comment this often: proxies close a stream idle for long (nginx: 60 s)
SSE_RETRY_MS = 2000  # the reconnection delay a client's EventSource is told (WHATWG HTML §9.2.6)

PlaceCall = Callable[[str, Dialplan, Mapping[str, str], float], CallEntry]


class CampaignController(Protocol):
    """What the campaign routes need (:class:`voicebot.campaign.control.CampaignControl`)."""

    async def create(self, campaign_id: str, settings: CampaignSettings, contacts: list[Contact], *,
                     dnc_numbers: list[str] | None = None) -> None: ...
    async def set_dnc(self, campaign_id: str, *, dnc_file: str | None = None,
                      dnc_numbers: list[str] | None = None) -> CampaignStatus: ...
    async def list_all(self) -> list[CampaignStatus]: ...
    async def status(self, campaign_id: str) -> CampaignStatus: ...
    async def command(self, campaign_id: str, name: str) -> CampaignStatus: ...
    async def results(self, campaign_id: str) -> list[ContactResult]: ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What the routes need of the application.

    ``dialplans`` maps every name a client may use (the plan's ``dialplan:`` name and the path it
    was configured as) to the loaded plan; ``place(uri, plan, variables, timeout_s)`` starts an
    outbound call in the background and returns its entry; ``unready()`` is the readiness probe
    (None or why no new call is taken); ``token`` None means no authentication (loopback only,
    checked by the config). ``campaigns`` None: the campaign routes answer 404 (no
    ``[http] campaigns_db``).
    """

    registry: CallRegistry
    dialplans: Mapping[str, Dialplan]
    place: PlaceCall
    unready: Callable[[], str | None]
    max_calls: int
    token: str | None
    trunk: str | None = None
    campaigns: CampaignController | None = None

    @property
    def bus(self) -> EventBus:
        return self.registry.bus


def problem(status: int, detail: str, *, field: str | None = None,
            headers: Mapping[str, str] | None = None, extra: Mapping[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
                            "detail": detail}
    if field is not None:
        body["field"] = field
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


class BearerAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>`` (RFC 6750)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode() if token is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._token is not None:
            header = Headers(scope=scope).get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not given.strip():
                response = problem(401, "this API needs Authorization: Bearer <token> (VOICEBOT_API_TOKEN)",
                                   headers={"WWW-Authenticate": 'Bearer realm="voicebot"'})
                await response(scope, receive, send)
                return
            # hmac.compare_digest: the time taken does not tell how much of the token was right.
            if not hmac.compare_digest(given.strip().encode(), self._token):
                log.warning("api.auth.refused", path=scope.get("path"), client=_client(scope))
                response = problem(401, "the bearer token is not valid for this instance",
                                   headers={"WWW-Authenticate":
                                            'Bearer realm="voicebot", error="invalid_token"'})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, or 413 as soon as it is known to be larger than ``limit`` (header or bytes read)."""
    length = request.headers.get("content-length")
    if length is not None:
        # RFC 9110 §8.6: 1*DIGIT, ASCII; str.isdigit also takes '²' (a latin-1 byte), which int() refuses
        if not is_digits(length):
            raise ApiError(400, f"Content-Length {length!r} is not a number of bytes (RFC 9110 §8.6)")
        if int(length) > limit:
            raise ApiError(413, f"the body is {length} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


Handler = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return problem(exc.status, exc.message, field=exc.field, headers=exc.headers, extra=exc.extra)

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


def _dialplan_names(ctx: ApiContext) -> list[str]:
    return sorted({plan.name for plan in ctx.dialplans.values()})


def _entry(ctx: ApiContext, call_id: str) -> CallEntry:
    entry = ctx.registry.get(call_id)
    if entry is None:
        raise ApiError(404, f"no call with id {call_id!r} on this instance (active, or among the last "
                            f"{RECENT_CALLS} ended)")
    return entry


def _call_json(entry: CallEntry, status_code: int = 200, *, location: bool = False) -> JSONResponse:
    headers = {"Location": f"/v1/calls/{entry.id}"} if location else None
    return JSONResponse(entry.to_json(), status_code=status_code, headers=headers)


def v1_routes(ctx: ApiContext) -> list[BaseRoute]:
    """The ``/v1`` routes (paths relative to ``/v1``)."""

    async def place_call(request: Request) -> Response:
        body = parse_json(await read_body(request), request.headers.get("content-type"))
        req = place_call_request(body, known_dialplan=lambda name: name in ctx.dialplans,
                                 dialplans=_dialplan_names(ctx), trunk=ctx.trunk)
        reason = ctx.unready()
        if reason is not None and reason != "at max calls":
            raise ApiError(503, f"this instance takes no new calls now: {reason}",
                           headers={"Retry-After": "5"})
        if ctx.registry.active_count >= ctx.max_calls:
            raise ApiError(503, f"this instance is at its call limit ({ctx.max_calls} calls; "
                                "[sip] max_calls)",
                           headers={"Retry-After": "5"})
        entry = ctx.place(req.uri, ctx.dialplans[req.dialplan], req.variables, req.timeout_s)
        log.info("api.call.placed", api_call_id=entry.id, dialplan=req.dialplan, timeout_s=req.timeout_s,
                 **{"pii.to": req.uri})
        return _call_json(entry, 202, location=True)

    async def list_calls(_: Request) -> Response:
        return JSONResponse({"calls": [entry.to_json() for entry in ctx.registry.active()]})

    async def get_call(request: Request) -> Response:
        return _call_json(_entry(ctx, request.path_params["call_id"]))

    async def hangup(request: Request) -> Response:
        entry = _entry(ctx, request.path_params["call_id"])
        req = hangup_request(parse_json(await read_body(request), request.headers.get("content-type"),
                                        required=False))
        if entry.ended:
            raise ApiError(409, f"call {entry.id} has already ended ({entry.cause})")
        await entry.hangup(f"api: {req.reason}" if req.reason else "api")
        log.info("api.call.hangup", api_call_id=entry.id, reason=req.reason)
        return _call_json(entry, 202)

    async def transfer(request: Request) -> Response:
        entry = _entry(ctx, request.path_params["call_id"])
        req = transfer_request(parse_json(await read_body(request), request.headers.get("content-type")))
        if entry.ended:
            raise ApiError(409, f"call {entry.id} has already ended ({entry.cause})")
        handle = entry.handle
        if entry.status != "answered" or handle is None:
            raise ApiError(409, f"call {entry.id} is {entry.status}; only an answered call can be "
                                "transferred")
        if entry.transfer is not None and entry.transfer.get("result") == "requested":
            raise ApiError(409, f"call {entry.id} is already being transferred to {entry.transfer['target']}")
        entry.publish("transfer", {"target": req.target, "result": "requested"})

        async def run_transfer() -> None:
            # The pipeline reports the result (a "transfer" event) and, on success, hangs up.
            try:
                await handle.transfer(req.target)
            except (VoicebotError, TimeoutError) as exc:
                log.info("api.call.transfer_failed", api_call_id=entry.id, error=str(exc))

        entry.spawn(run_transfer(), f"api-transfer-{entry.id}")
        log.info("api.call.transfer", api_call_id=entry.id, **{"pii.target": req.target})
        return _call_json(entry, 202)

    async def events(request: Request) -> Response:
        call_id = request.query_params.get("call_id") or None
        unknown = set(request.query_params) - {"call_id", "last_event_id"}
        if unknown:
            raise ApiError(422, f"unknown query parameter {sorted(unknown)[0]!r}; known: call_id, "
                                "last_event_id", field=sorted(unknown)[0])
        after = _last_event_id(request)
        # Subscribed (and the replay taken) before the response starts, in one synchronous step:
        # whatever happens after the client sees the headers is in its stream, nothing twice.
        sub = ctx.bus.subscribe(call_id=call_id, after=after)
        boot_id = ctx.bus.boot_id
        if after is not None:
            log.info("api.events.resumed", last_event_id=str(after), replayed=sub.replay_pending)

        async def stream() -> AsyncIterator[bytes]:
            with sub:
                yield f": subscribed\nretry: {SSE_RETRY_MS}\n\n".encode()
                while True:
                    batch = await sub.next_batch(SSE_HEARTBEAT_S)
                    if batch is None:
                        return
                    if not batch:
                        yield b": keepalive\n\n"
                        continue
                    yield b"".join(sse_frame(item, boot_id) for item in batch)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                          "X-Voicebot-Boot-Id": boot_id})

    async def openapi(_: Request) -> Response:
        return JSONResponse(openapi_document())

    def controller() -> CampaignController:
        if ctx.campaigns is None:
            raise ApiError(404, "campaigns are off on this instance: set [http] campaigns_db "
                                "(VOICEBOT_HTTP_CAMPAIGNS_DB) to the campaigns' SQLite file")
        return ctx.campaigns

    async def campaign_call(make: Callable[[CampaignController], Awaitable[Any]]) -> Any:
        try:
            return await make(controller())
        except UnknownCampaign as exc:
            raise ApiError(404, exc.message) from None
        except TransitionRefused as exc:
            raise ApiError(409, exc.message) from None
        except CampaignError as exc:
            raise ApiError(409, exc.message) from None

    async def create_campaign(request: Request) -> Response:
        campaigns = controller()
        body = parse_json(await read_body(request, MAX_CAMPAIGN_BODY_BYTES),
                          request.headers.get("content-type"))
        req = create_campaign_request(body, known_dialplan=lambda name: name in ctx.dialplans,
                                      dialplans=_dialplan_names(ctx), trunk=ctx.trunk)
        if req.settings.dnc_file is not None:
            await _check_dnc_file(req.settings.dnc_file)
        try:
            await campaigns.create(req.name, req.settings, req.contacts, dnc_numbers=req.dnc_numbers)
        except CampaignError as exc:  # the name is taken
            raise ApiError(409, exc.message, field="name") from None
        status = await campaigns.status(req.name)
        return JSONResponse(status.to_json(), status_code=201,
                            headers={"Location": f"/v1/campaigns/{req.name}"})

    async def update_campaign(request: Request) -> Response:
        cid = request.path_params["campaign_id"]
        controller()
        req = update_campaign_request(parse_json(await read_body(request, MAX_CAMPAIGN_BODY_BYTES),
                                                 request.headers.get("content-type")))
        if req.dnc_file is not None:
            await _check_dnc_file(req.dnc_file)
        status: CampaignStatus = await campaign_call(
            lambda c: c.set_dnc(cid, dnc_file=req.dnc_file, dnc_numbers=req.dnc_numbers))
        return JSONResponse(status.to_json())

    async def list_campaigns(_: Request) -> Response:
        statuses: list[CampaignStatus] = await campaign_call(lambda c: c.list_all())
        return JSONResponse({"campaigns": [s.to_json() for s in statuses]})

    async def get_campaign(request: Request) -> Response:
        cid = request.path_params["campaign_id"]
        status: CampaignStatus = await campaign_call(lambda c: c.status(cid))
        return JSONResponse(status.to_json())

    def control(command: str) -> Handler:
        async def handler(request: Request) -> Response:
            cid = request.path_params["campaign_id"]
            await read_body(request)  # no body is needed; one is read (and capped) and ignored
            status: CampaignStatus = await campaign_call(lambda c: c.command(cid, command))
            return JSONResponse(status.to_json())

        handler.__name__ = f"{command}_campaign"
        return handler

    async def campaign_results(request: Request) -> Response:
        cid = request.path_params["campaign_id"]
        results: list[ContactResult] = await campaign_call(lambda c: c.results(cid))
        accept = request.headers.get("accept", "")
        if "text/csv" in accept.lower():
            from voicebot.campaign.cli import write_export

            out = io.StringIO()
            write_export(results, out)
            return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{cid}-results.csv"'})
        return JSONResponse({"campaign": cid, "results": [r.to_json() for r in results]})

    return [
        Route("/calls", _endpoint(place_call), methods=["POST"], name="place_call"),
        Route("/calls", _endpoint(list_calls), methods=["GET"], name="list_calls"),
        Route("/calls/{call_id}", _endpoint(get_call), methods=["GET"], name="get_call"),
        Route("/calls/{call_id}/hangup", _endpoint(hangup), methods=["POST"], name="hangup_call"),
        Route("/calls/{call_id}/transfer", _endpoint(transfer), methods=["POST"], name="transfer_call"),
        Route("/events", _endpoint(events), methods=["GET"], name="events"),
        Route("/openapi.json", _endpoint(openapi), methods=["GET"], name="openapi"),
        Route("/campaigns", _endpoint(create_campaign), methods=["POST"], name="create_campaign"),
        Route("/campaigns", _endpoint(list_campaigns), methods=["GET"], name="list_campaigns"),
        Route("/campaigns/{campaign_id}", _endpoint(get_campaign), methods=["GET"], name="get_campaign"),
        Route("/campaigns/{campaign_id}", _endpoint(update_campaign), methods=["PATCH"],
              name="update_campaign"),
        *(Route(f"/campaigns/{{campaign_id}}/{command}", _endpoint(control(command)), methods=["POST"],
                name=f"{command}_campaign") for command in ("start", "pause", "resume", "cancel")),
        Route("/campaigns/{campaign_id}/results", _endpoint(campaign_results), methods=["GET"],
              name="campaign_results"),
    ]


async def _check_dnc_file(path: str) -> None:
    """The do-not-call file a request names must be readable now, as ``campaign create --dnc``
    checks it (the dialer reads it again before every round and pauses the campaign if it cannot)."""
    from voicebot.campaign.csvload import load_dnc

    try:
        await asyncio.to_thread(load_dnc, Path(path))
    except CampaignError as exc:
        raise ApiError(422, f"dnc_file: {exc.message}", field="dnc_file") from None


def _last_event_id(request: Request) -> EventId | None:
    """The client's last event: the ``Last-Event-ID`` header an EventSource sends when it reconnects
    (WHATWG HTML §9.2.4), else ``?last_event_id=`` (for clients that cannot set headers)."""
    header = request.headers.get("last-event-id")
    text, field = ((header, "Last-Event-ID") if header is not None
                   else (request.query_params.get("last_event_id"), "last_event_id"))
    if text is None or not text.strip():
        return None  # an empty Last-Event-ID is what a stream that never saw an id sends
    try:
        return EventId.parse(text)
    except ValueError as exc:
        raise ApiError(400 if header is not None else 422, f"{field}: {exc}", field=field) from None


def sse_frame(item: StreamItem, boot_id: str) -> bytes:
    """One server-sent event (WHATWG HTML §9.2): ``id`` is ``<boot_id>-<seq>``, the bus's sequence
    number qualified by the process (it restarts at 1 with the process). A ``gap`` or ``dropped``
    notice has no id: the client's last id stays that of the last event it really got."""
    if isinstance(item, EventsDropped):
        data = json.dumps({"dropped": item.count})
        return f"event: dropped\ndata: {data}\n\n".encode()
    if isinstance(item, ReplayGap):
        return f"event: gap\ndata: {json.dumps(item.to_json())}\n\n".encode()
    data = json.dumps(item.to_json(), ensure_ascii=False)
    return f"id: {boot_id}-{item.seq}\nevent: {item.kind}\ndata: {data}\n\n".encode()


async def _http_problem(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return problem(405, "this method is not allowed on this path (see /v1/openapi.json)",
                       headers=exc.headers)
    return problem(exc.status_code, "no such API path (see /v1/openapi.json)" if exc.status_code == 404
                   else str(exc.detail), headers=exc.headers)


def api_routes(ctx: ApiContext) -> list[BaseRoute]:
    """``/v1`` mounted behind :class:`BearerAuth`, for :func:`voicebot.observe.http.build_app`."""
    inner = Starlette(routes=v1_routes(ctx), exception_handlers={404: _http_problem, 405: _http_problem})
    return [Mount("/v1", app=BearerAuth(inner, ctx.token))]


def api_off_routes(reason: str) -> list[BaseRoute]:
    """``/v1`` when the control API is off: every request learns why, nothing else."""

    async def off(_: Request) -> Response:
        return problem(404, f"the control API is off on this instance: {reason}")

    inner = Starlette(routes=[Route("/{path:path}", off, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])
    return [Mount("/v1", app=inner)]


__all__ = ["ApiContext", "BearerAuth", "api_off_routes", "api_routes", "problem", "sse_frame", "v1_routes"]
