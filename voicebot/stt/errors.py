"""Errors of the recognition server, each mapped to the gRPC status a client sees.

``grpc_code`` is the *name* of a ``grpc.StatusCode`` member, so that the pure session core can say
which status ends a stream without importing grpc; ``server.py`` turns it into the real code. The
message is sent to the client verbatim as the status details, so it names the offending field or
limit and says what to do.
"""

from __future__ import annotations

from voicebot.errors import VoicebotError


class SttServerError(VoicebotError):
    """An error that ends a recognition session with ``grpc_code`` and this message."""

    grpc_code: str = "INTERNAL"


class InvalidRequest(SttServerError):
    """The client sent something the API does not allow (bad options, order, or audio)."""

    grpc_code = "INVALID_ARGUMENT"


class Unauthenticated(SttServerError):
    """The ``authorization`` metadata is missing, malformed or carries an unknown key."""

    grpc_code = "UNAUTHENTICATED"


class SessionLimitExceeded(SttServerError):
    """A per-session limit (audio duration, data size) fired; start a new session to go on."""

    grpc_code = "OUT_OF_RANGE"


class IdleTimeout(SttServerError):
    """The client sent nothing for longer than the idle limit."""

    grpc_code = "DEADLINE_EXCEEDED"


class Overloaded(SttServerError):
    """The server has no capacity for another session right now; retry later or elsewhere."""

    grpc_code = "RESOURCE_EXHAUSTED"
    retryable = True


class DecodeFailed(SttServerError):
    """The recognition engine failed on a span of audio (a server-side fault)."""

    grpc_code = "INTERNAL"
    retryable = True
