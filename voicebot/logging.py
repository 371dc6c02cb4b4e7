"""structlog set-up: configured once at start-up by the CLI.

Event names are static and dotted (``sip.invite.received``), data goes in keys. ``call_id`` and
``session_id`` are bound with :func:`structlog.contextvars.bind_contextvars` so every line of a call
carries them. Caller numbers and transcripts go only under ``pii.*`` keys; with ``redact_pii`` on,
their values are replaced so production logs can be shipped without them. Output is JSON when
stderr is not a terminal, coloured key=value when it is.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_configured = False


def _redact_pii(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key.startswith("pii."):
            event_dict[key] = "[redacted]"
    return event_dict


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure(*, level: str = "info", json: bool | None = None, redact_pii: bool = False) -> None:
    """Configure structlog and the stdlib root logger. Safe to call more than once."""
    global _configured
    if json is None:
        json = not sys.stderr.isatty()
    numeric_level = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if redact_pii:
        processors.append(_redact_pii)
    if json:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer())
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # Resolve sys.stderr at each logger creation, not once: a stream swapped after start-up
        # (pytest capture, a daemon redirect) must not leave loggers writing to a closed file.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    _configured = True


def get_logger(name: str) -> Any:
    """A structlog logger named after its module (``logger_name`` key)."""
    return structlog.get_logger(logger_name=name)
