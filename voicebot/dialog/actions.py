"""Webhooks: HTTP POST of the call context as JSON, and the built-in offline responders.

The answer is a JSON object; ``"variables"`` (an object of names to strings/numbers/booleans)
are set on the call and ``"next"`` (a state name) chooses where the dialplan goes. Anything else
(non-2xx status, a body that is not such an object, a timeout, a refused connection) is a
:class:`WebhookError`, and the dialplan goes to the webhook's declared ``on_error`` state. The
HTTP exchange uses the standard library's ``http.client`` in a worker thread so it never blocks
the event loop; ``timeout_s`` bounds the whole exchange. URLs ``builtin:<name>`` are answered
in-process, so the demo works offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from voicebot.dialog.errors import WebhookError

MAX_ANSWER_BYTES = 64 * 1024
USER_AGENT = "voicebot-dialog/1"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    variables: Mapping[str, str] = field(default_factory=dict)
    next_state: str | None = None


def parse_answer(body: bytes, source: str) -> WebhookAnswer:
    """Validate a webhook's JSON answer; ``source`` names the URL in error messages."""
    if not body.strip():
        return WebhookAnswer()
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"webhook {source} answered with invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WebhookError(f"webhook {source} answered with JSON {type(data).__name__}; expected an object")
    unknown = sorted(set(data) - {"variables", "next"})
    if unknown:
        raise WebhookError(f"webhook {source} answer has unknown keys {unknown}; allowed: variables, next")
    variables: dict[str, str] = {}
    raw_vars = data.get("variables", {})
    if not isinstance(raw_vars, dict):
        raise WebhookError(f"webhook {source} answer: 'variables' must be an object")
    for name, value in raw_vars.items():
        if not _NAME.match(name):
            raise WebhookError(f"webhook {source} answer: '{name}' is not a variable name")
        if isinstance(value, bool):
            variables[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            variables[name] = str(value)
        elif value is None:
            variables[name] = ""
        else:
            raise WebhookError(f"webhook {source} answer: variable '{name}' must be a string or number")
    next_state = data.get("next")
    if next_state is not None and not isinstance(next_state, str):
        raise WebhookError(f"webhook {source} answer: 'next' must be a state name")
    return WebhookAnswer(variables, next_state)


# -- built-in responders ----------------------------------------------------------------------

Responder = Callable[[Mapping[str, object]], Mapping[str, object]]


def demo_balance(payload: Mapping[str, object]) -> Mapping[str, object]:
    """The demo bank: a made-up but stable balance per account; accounts starting with 9 do not exist."""
    variables = payload.get("variables")
    account = variables.get("account", "") if isinstance(variables, Mapping) else ""
    if not isinstance(account, str) or not account.isdigit():
        raise WebhookError(f"builtin:demo-balance needs a digit 'account' variable, got {account!r}")
    spoken = " ".join(account)
    if account.startswith("9"):
        return {"next": "unknown_account", "variables": {"account_spoken": spoken}}
    cents = int(hashlib.sha256(account.encode()).hexdigest()[:8], 16) % 1_000_000
    return {
        "variables": {
            "balance": f"{cents // 100}.{cents % 100:02d}",
            "balance_spoken": f"{cents // 100} dollars and {cents % 100} cents",
            "account_spoken": spoken,
        }
    }


BUILTIN_RESPONDERS: dict[str, Responder] = {"demo-balance": demo_balance}


# -- HTTP -------------------------------------------------------------------------------------


class WebhookClient:
    """Calls webhooks; ``builtin:`` URLs go to :data:`BUILTIN_RESPONDERS` (or ones given here)."""

    def __init__(self, builtins: Mapping[str, Responder] | None = None) -> None:
        self._builtins = dict(BUILTIN_RESPONDERS if builtins is None else builtins)

    async def call(self, url: str, payload: Mapping[str, object], timeout_s: float) -> WebhookAnswer:
        if url.startswith("builtin:"):
            name = url.removeprefix("builtin:")
            responder = self._builtins.get(name)
            if responder is None:
                have = ", ".join(sorted(self._builtins))
                raise WebhookError(f"no built-in webhook '{name}' (have: {have})")
            answer = responder(payload)
            return parse_answer(json.dumps(answer).encode(), url)
        body = json.dumps(payload).encode("utf-8")
        try:
            async with asyncio.timeout(timeout_s):
                status, reason, data = await asyncio.to_thread(_post, url, body, timeout_s)
        except TimeoutError:
            message = f"webhook {url} did not answer within {timeout_s:g} s"
            raise WebhookError(message, retryable=True) from None
        if not 200 <= status < 300:
            raise WebhookError(f"webhook {url} answered HTTP {status} {reason}", retryable=status >= 500)
        return parse_answer(data, url)


def _post(url: str, body: bytes, timeout_s: float) -> tuple[int, str, bytes]:
    """Blocking POST (run in a thread); the socket timeout ends the thread if asyncio gave up."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"webhook URL {url!r} is not http:// or https://")
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=timeout_s)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("POST", path, body=body, headers={
            "Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT,
        })
        response = conn.getresponse()
        data = response.read(MAX_ANSWER_BYTES + 1)
        if len(data) > MAX_ANSWER_BYTES:
            raise WebhookError(f"webhook {url} answer is larger than {MAX_ANSWER_BYTES} bytes")
        return response.status, response.reason, data
    except TimeoutError:
        raise WebhookError(f"webhook {url} did not answer within {timeout_s:g} s", retryable=True) from None
    except OSError as exc:
        raise WebhookError(f"webhook {url} failed: {exc.strerror or exc}", retryable=True) from None
    except http.client.HTTPException as exc:
        raise WebhookError(f"webhook {url} sent a broken HTTP answer: {exc!r}") from None
    finally:
        conn.close()
