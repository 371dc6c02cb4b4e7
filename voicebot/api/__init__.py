"""The HTTP control API (``/v1``): place, list, hang up and transfer calls, and a server-sent-events
stream of call events. Served by the operations HTTP server (:mod:`voicebot.observe.http`).

Modules: ``errors`` (:class:`ApiError`, rendered as RFC 9457 problem details), ``events`` (the
call-event bus: bounded per-subscriber queues that drop and count, never block a call),
``registry`` (every call this instance runs or ran recently, keyed by the API call id),
``schema`` (request validation by hand, exact messages naming the field), ``routes`` (the Starlette
routes, bearer-token auth) and ``openapi`` (the hand-written OpenAPI 3.1 description).
"""
