"""The operations HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz`` and ``/readyz``.

Served by uvicorn inside the process's own event loop (no thread, no second loop), from a Starlette
application; the control API (:mod:`voicebot.api`, ``/v1``) joins the same server as ``extra_routes``.
``/healthz`` answers 200 while the process runs its loop; ``/readyz`` answers 200 only while the
instance takes new work (started, not draining, not at its call limit) and 503 otherwise, with the
reason, so a load balancer or an orchestrator can take it out of rotation.

``ReadinessProbe`` is whatever the owner passes: a callable returning ``None`` when ready or the
reason it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from voicebot.errors import ConfigError
from voicebot.observe.metrics import CONTENT_TYPE_LATEST, render

ReadinessProbe = Callable[[], str | None]


def build_app(registry: CollectorRegistry, ready: ReadinessProbe, *,
              extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        reason = ready()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unready", "reason": reason}, status_code=503)

    routes: list[BaseRoute] = [Route("/metrics", metrics), Route("/healthz", healthz),
                               Route("/readyz", readyz), *extra_routes]
    return Starlette(routes=routes)


@dataclass
class OpsServer:
    """A running uvicorn server; :attr:`port` is the bound port (useful with port 0)."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def aclose(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=5)


async def start_ops_server(app: Starlette, host: str, port: int) -> OpsServer:
    """Bind ``host:port`` now (a busy port is a one-line ConfigError) and serve in this loop."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    # A long-lived response (the /v1/events stream) must not keep a shutdown waiting past aclose's 5 s.
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", loop="none",
                            timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    # uvicorn's own loggers stay quiet; our structlog lines describe the endpoint.
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="ops-http")
    bound = sock.getsockname()
    for _ in range(100):  # started within a few loop turns
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    return OpsServer(server, task, host, int(bound[1]))
