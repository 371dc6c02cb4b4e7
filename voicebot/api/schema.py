"""Request validation for the control API, by hand: each check names the field and says what is
expected, so a client's mistake is a 4xx it can fix from the message alone. Nothing here does I/O.

``parse_json`` turns a body into a JSON object (415/400/422); ``place_call_request``,
``transfer_request`` and ``hangup_request`` turn that object into a frozen request, rejecting
unknown fields (a misspelled ``timeout`` must not silently mean the default).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voicebot.api.errors import ApiError
from voicebot.errors import VoicebotError
from voicebot.sip.uri import SipUri, parse_uri

MAX_BODY_BYTES = 16 * 1024
MAX_VARIABLES = 64
MAX_VARIABLE_CHARS = 1024
MAX_URI_CHARS = 512
MIN_TIMEOUT_S, MAX_TIMEOUT_S, DEFAULT_TIMEOUT_S = 1.0, 300.0, 60.0
MAX_REASON_CHARS = 200

_NUMBER = re.compile(r"\+?[0-9]{2,20}")
_NUMBER_SEPARATORS = re.compile(r"[ ().-]")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class PlaceCallRequest:
    dialplan: str
    to: str  # as given
    uri: str  # the SIP URI to dial
    variables: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class TransferRequest:
    target: str


@dataclass(frozen=True, slots=True)
class HangupRequest:
    reason: str = ""


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_json(body: bytes, content_type: str | None, *, required: bool = True) -> dict[str, Any]:
    """The body as a JSON object. An empty body is ``{}`` when not ``required``."""
    if not body.strip() and not required:
        return {}
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = f"{media_type!r}" if media_type else "none"
        raise ApiError(415, f"the body must be JSON: send Content-Type: application/json (got {shown})")
    if not body.strip():
        raise ApiError(400, "the body is empty; expected a JSON object")
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(422, f"the body must be a JSON object, got {_type_name(value)}")
    return value


def _reject_unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in body:
        if key not in known:
            raise ApiError(422, f"unknown field {key!r}; known fields: {', '.join(known)}", field=key)


def _string(body: Mapping[str, Any], name: str, *, required: bool, max_chars: int) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(422, f"{name} is required", field=name)
        return None
    value = body[name]
    if not isinstance(value, str):
        raise ApiError(422, f"{name} must be a string, got {_type_name(value)}", field=name)
    value = value.strip()
    if required and not value:
        raise ApiError(422, f"{name} must not be empty", field=name)
    if len(value) > max_chars:
        raise ApiError(422, f"{name} is too long ({len(value)} characters; at most {max_chars})", field=name)
    return value


def sip_uri(value: str, name: str) -> str:
    """``value`` if it is a sip:/sips: URI with a host, else 422 naming ``name``."""
    try:
        parsed = parse_uri(value)
    except VoicebotError as exc:
        raise ApiError(422, f"{name} is not a valid SIP URI ({value!r}): {exc.message}", field=name) from None
    if not isinstance(parsed, SipUri) or not parsed.host:
        raise ApiError(422, f"{name} must be a sip: or sips: URI, got {value!r}", field=name)
    return value


def destination_uri(to: str, trunk: str | None) -> str:
    """The SIP URI for ``to``: a sip:/sips: URI as is, or a phone number dialed through ``trunk``
    (``sip:NUMBER@<trunk host[:port]>``)."""
    if to.lower().startswith(("sip:", "sips:")):
        return sip_uri(to, "to")
    number = _NUMBER_SEPARATORS.sub("", to)
    if not _NUMBER.fullmatch(number):
        raise ApiError(422, f"to must be a sip: URI or a phone number (digits with an optional leading +), "
                            f"got {to!r}", field="to")
    if trunk is None:
        raise ApiError(422, f"to is a phone number ({to!r}) but this instance has no trunk to dial numbers "
                            "through ([http] trunk); give a sip: URI", field="to")
    parsed = parse_uri(trunk)
    assert isinstance(parsed, SipUri)  # [http] trunk is validated at load
    host = parsed.host  # an IPv6 host keeps its brackets from the URI; add them if a parser dropped them
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = f":{parsed.port}" if parsed.port else ""
    return f"sip:{number}@{host}{port}"


def _variables(body: Mapping[str, Any]) -> dict[str, str]:
    value = body.get("variables")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(422, f"variables must be an object of strings, got {_type_name(value)}",
                       field="variables")
    if len(value) > MAX_VARIABLES:
        raise ApiError(422, f"variables has {len(value)} entries; at most {MAX_VARIABLES}", field="variables")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not _VARIABLE_NAME.fullmatch(key):
            raise ApiError(422, f"variables: {key!r} is not a variable name (letters, digits and _, not "
                                "starting with a digit, at most 64)", field=f"variables.{key}")
        if not isinstance(item, str):
            raise ApiError(422, f"variables.{key} must be a string, got {_type_name(item)}",
                           field=f"variables.{key}")
        if len(item) > MAX_VARIABLE_CHARS:
            raise ApiError(422, f"variables.{key} is too long ({len(item)} characters; at most "
                                f"{MAX_VARIABLE_CHARS})", field=f"variables.{key}")
        out[key] = item
    return out


def _timeout_s(body: Mapping[str, Any]) -> float:
    value = body.get("timeout_s")
    if value is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(422, f"timeout_s must be a number of seconds, got {_type_name(value)}",
                       field="timeout_s")
    if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
        raise ApiError(422, f"timeout_s must be {MIN_TIMEOUT_S:g}..{MAX_TIMEOUT_S:g} s, got {value:g}",
                       field="timeout_s")
    return float(value)


def place_call_request(body: Mapping[str, Any], *, known_dialplan: Callable[[str], bool],
                       dialplans: list[str], trunk: str | None) -> PlaceCallRequest:
    """``POST /v1/calls``: every field checked before anything is dialed."""
    _reject_unknown(body, ("dialplan", "to", "variables", "timeout_s"))
    dialplan = _string(body, "dialplan", required=True, max_chars=MAX_URI_CHARS)
    to = _string(body, "to", required=True, max_chars=MAX_URI_CHARS)
    assert dialplan is not None and to is not None
    variables = _variables(body)
    timeout_s = _timeout_s(body)
    if not known_dialplan(dialplan):
        raise ApiError(422, f"dialplan {dialplan!r} is not known to this instance; known: "
                            f"{', '.join(dialplans)} (add it to [http] dialplans)", field="dialplan")
    return PlaceCallRequest(dialplan, to, destination_uri(to, trunk), variables, timeout_s)


def transfer_request(body: Mapping[str, Any]) -> TransferRequest:
    """``POST /v1/calls/{id}/transfer``: a SIP URI to REFER the caller to."""
    _reject_unknown(body, ("target",))
    target = _string(body, "target", required=True, max_chars=MAX_URI_CHARS)
    assert target is not None
    return TransferRequest(sip_uri(target, "target"))


def hangup_request(body: Mapping[str, Any]) -> HangupRequest:
    """``POST /v1/calls/{id}/hangup``: an optional reason for the record."""
    _reject_unknown(body, ("reason",))
    reason = _string(body, "reason", required=False, max_chars=MAX_REASON_CHARS) or ""
    if any(ord(ch) < 32 for ch in reason):
        raise ApiError(422, "reason must not contain control characters", field="reason")
    return HangupRequest(reason)


__all__ = ["MAX_BODY_BYTES", "HangupRequest", "PlaceCallRequest", "TransferRequest", "destination_uri",
           "hangup_request", "parse_json", "place_call_request", "sip_uri", "transfer_request"]
