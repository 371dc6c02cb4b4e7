"""Webhooks: HTTP POST of the call context as JSON, and the built-in offline responders.

The answer is a JSON object; ``"variables"`` (an object of names to strings/numbers/booleans)
are set on the call and ``"next"`` (a state name) chooses where the dialplan goes. Anything else
(non-2xx status, a body that is not such an object, a timeout, a refused connection, an answer
over :data:`MAX_ANSWER_BYTES` or nested deeper than :data:`MAX_JSON_DEPTH`) is a
:class:`WebhookError`, and the dialplan goes to the webhook's declared ``on_error`` state.

The exchange runs on ``httpx.AsyncClient`` on the event loop, not in a thread: a thread pool is
shared (prompt cache reads, resampling) and a slow server would hold a thread each, so six
drip-feeding webhooks used to starve every other call's webhook (issue 9). ``timeout_s`` is a total
deadline for connect, request and the whole answer (``asyncio.timeout`` around all of it; httpx's
own timeouts only bound each read, which a server sending one byte a second never trips). The body
is read in chunks and abandoned past the size limit, with ``Accept-Encoding: identity`` so a small
compressed answer cannot inflate in memory. URLs ``builtin:<name>`` are answered in-process, so the
demo works offline.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from voicebot.ascii import is_digits
from voicebot.dialog.errors import WebhookError

MAX_ANSWER_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32  # the answer format needs 2 (object -> variables); json.loads recurses per level
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
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise WebhookError(
            f"webhook {source} answered with JSON nested {depth} levels deep; at most {MAX_JSON_DEPTH}"
        )
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


def json_depth(body: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in a JSON text, without parsing it (strings skipped).

    Checked before ``json.loads``, which recurses once per level and raises RecursionError (not a
    ValueError) on a few thousand levels.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


# -- built-in responders ----------------------------------------------------------------------

Responder = Callable[[Mapping[str, object]], Mapping[str, object]]


def demo_balance(payload: Mapping[str, object]) -> Mapping[str, object]:
    """The demo bank: a made-up but stable balance per account; accounts starting with 9 do not exist."""
    variables = payload.get("variables")
    account = variables.get("account", "") if isinstance(variables, Mapping) else ""
    # ASCII digits: str.isdigit also takes '²' and '١', which would be read out as the account
    if not isinstance(account, str) or not is_digits(account):
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
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookError(f"webhook URL {url!r} is not http:// or https://")
        body = json.dumps(payload).encode("utf-8")
        try:
            async with asyncio.timeout(timeout_s):
                status, reason, data = await _post(url, body, timeout_s)
        except TimeoutError:
            message = f"webhook {url} did not answer within {timeout_s:g} s"
            raise WebhookError(message, retryable=True) from None
        if not 200 <= status < 300:
            raise WebhookError(f"webhook {url} answered HTTP {status} {reason}", retryable=status >= 500)
        return parse_answer(data, url)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every webhook (loading the CA store per request costs ms)."""
    return ssl.create_default_context()


async def _post(url: str, body: bytes, timeout_s: float) -> tuple[int, str, bytes]:
    """POST and read at most MAX_ANSWER_BYTES of the answer; the caller bounds the total time.

    A client per request: webhooks are a few per call, and nothing outlives the call to be closed.
    """
    headers = {
        "Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
    }
    try:
        async with httpx.AsyncClient(
            verify=_tls_context(), timeout=httpx.Timeout(timeout_s), follow_redirects=False, trust_env=False,
        ) as client, client.stream("POST", url, content=body, headers=headers) as response:
            declared = response.headers.get("Content-Length", "")
            # A Content-Length that is no number is ignored here (h11 refuses it already); the bytes
            # read are bounded below anyway
            if is_digits(declared) and int(declared) > MAX_ANSWER_BYTES:
                raise WebhookError(f"webhook {url} answer is larger than {MAX_ANSWER_BYTES} bytes")
            data = bytearray()
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > MAX_ANSWER_BYTES:
                    raise WebhookError(f"webhook {url} answer is larger than {MAX_ANSWER_BYTES} bytes")
            return response.status_code, response.reason_phrase, bytes(data)
    except httpx.TimeoutException:
        raise WebhookError(f"webhook {url} did not answer within {timeout_s:g} s", retryable=True) from None
    except httpx.TransportError as exc:
        raise WebhookError(f"webhook {url} failed: {_reason(exc)}", retryable=True) from None
    except httpx.HTTPError as exc:
        raise WebhookError(f"webhook {url} sent a broken HTTP answer: {exc!r}") from None


def _reason(exc: BaseException) -> str:
    """The innermost OS error text (``Connection refused``), else the exception's own text."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    return str(exc) or type(exc).__name__
