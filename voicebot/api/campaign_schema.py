"""Request validation for ``POST /v1/campaigns``: the settings the CLI's ``campaign create`` takes,
as a JSON object, and the contacts as CSV text (checked by the CLI's own loader, every bad row
with its line) or as a JSON list (the same checks, every bad item with its index). Nothing here
does I/O; every problem is a 422 naming the field. A ``dnc_file`` is only checked to be an absolute
path here; the route reads it (:func:`voicebot.campaign.csvload.load_dnc`) before anything is stored.

``PATCH /v1/campaigns/{id}`` takes the do-not-call fields alone (:func:`update_campaign_request`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

from voicebot.api.errors import ApiError
from voicebot.api.schema import _reject_unknown, _string, _type_name, _variables
from voicebot.campaign.csvload import parse_contacts
from voicebot.campaign.errors import CampaignError, ContactsError
from voicebot.campaign.model import (
    CallingWindow,
    CampaignSettings,
    Contact,
    Pacing,
    RetryPolicy,
    Trunk,
    check_tz,
    normalize_number,
)

MAX_CAMPAIGN_BODY_BYTES = 4 * 1024 * 1024
MAX_CONTACTS = 20_000
MAX_SHOWN_PROBLEMS = 50
MAX_DNC_NUMBERS = 100_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
T = TypeVar("T")

FIELDS = ("name", "dialplan", "contacts", "trunk", "pacing", "retry", "window", "tz", "ring_timeout_s",
          "amd", "variables", "webhook_url", "webhook_timeout_s", "dnc_file", "dnc_numbers")
UPDATE_FIELDS = ("dnc_file", "dnc_numbers")
_TRUNK = ("proxy", "username", "password_env", "caller_id")
_PACING = {"max_concurrent": int, "calls_per_s": float, "burst": int}
_RETRY: dict[str, type] = {"max_attempts": int, "busy_delay_s": float, "no_answer_delay_s": float,
                           "machine": str, "machine_delay_s": float, "failed_delay_s": float,
                           "interrupted": str}


@dataclass(frozen=True, slots=True)
class CreateCampaignRequest:
    """``settings.dnc_file`` is the request's ``dnc_file`` (still to be read); ``dnc_numbers`` the
    normalized inline list (the control writes it to a file)."""

    name: str
    settings: CampaignSettings
    contacts: list[Contact]
    dnc_numbers: list[str] | None = None


@dataclass(frozen=True, slots=True)
class UpdateCampaignRequest:
    """A new do-not-call list: ``dnc_file``, or ``dnc_numbers``, or neither (``"dnc_file": null``:
    no list any more)."""

    dnc_file: str | None
    dnc_numbers: list[str] | None


def _object(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(422, f"{name} must be an object, got {_type_name(value)}", field=name)
    return value


def _typed(section: str, obj: Mapping[str, Any], kinds: Mapping[str, type]) -> dict[str, Any]:
    """The section's fields with the right JSON types (numbers may be integers where floats go)."""
    known = tuple(kinds)
    for key in obj:
        if key not in kinds:
            raise ApiError(422, f"unknown field '{section}.{key}'; known fields: {', '.join(known)}",
                           field=f"{section}.{key}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        kind = kinds[key]
        where = f"{section}.{key}"
        if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ApiError(422, f"{where} must be an integer, got {_type_name(value)}", field=where)
        if kind is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ApiError(422, f"{where} must be a number, got {_type_name(value)}", field=where)
        if kind is str and not isinstance(value, str):
            raise ApiError(422, f"{where} must be a string, got {_type_name(value)}", field=where)
        out[key] = float(value) if kind is float else value
    return out


def _built(section: str, build: Callable[..., T], values: Mapping[str, Any]) -> T:
    """``build(**values)``; its CampaignError (``"max_attempts must be ..."``) names the field."""
    try:
        return build(**values)
    except CampaignError as exc:
        first = exc.message.split(" ", 1)[0]
        field = f"{section}.{first}" if first in values else section
        raise ApiError(422, f"{section}: {exc.message}", field=field) from None


def _number(body: Mapping[str, Any], name: str, default: float, *, minimum: float, maximum: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(422, f"{name} must be a number of seconds, got {_type_name(value)}", field=name)
    if not minimum <= value <= maximum:
        raise ApiError(422, f"{name} must be {minimum:g}..{maximum:g} s, got {value:g}", field=name)
    return float(value)


def _problems(problems: list[str], *, field: str = "contacts") -> ApiError:
    more = f" (and {len(problems) - 1} more problems: see errors)" if len(problems) > 1 else ""
    return ApiError(422, f"{problems[0]}{more}", field=field,
                    extra={"errors": problems[:MAX_SHOWN_PROBLEMS]})


def contacts_from_json(items: list[Any]) -> list[Contact]:
    """A JSON list of ``{"number", "tz"?, "variables"?}`` with the CSV loader's checks; problems
    name the item (``contacts[3].number: ...``)."""
    problems: list[str] = []
    contacts: list[Contact] = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"contacts[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with a number, got {_type_name(item)}")
            continue
        unknown = sorted(set(item) - {"number", "tz", "variables"})
        if unknown:
            problems.append(f"{where}: unknown field {unknown[0]!r}; known fields: number, tz, variables")
            continue
        raw = item.get("number")
        if not isinstance(raw, str):
            problems.append(f"{where}.number: required, a string (got {_type_name(raw)})")
            continue
        number = normalize_number(raw)
        if number is None:
            problems.append(f"{where}.number: number {raw!r} is not a phone number (+ and 3-15 digits) or a "
                            "sip: URI")
        elif number in first:
            problems.append(f"{where}.number: number {number} is a duplicate of contacts[{first[number]}]")
        tz = item.get("tz")
        if tz is not None and (not isinstance(tz, str) or not check_tz(tz)):
            problems.append(f"{where}.tz: time zone {tz!r} is not a known IANA zone (e.g. Europe/Berlin)")
        variables = item.get("variables") or {}
        if not isinstance(variables, dict):
            problems.append(f"{where}.variables: must be an object of strings, got {_type_name(variables)}")
            variables = {}
        for key, value in variables.items():
            if not _VARIABLE_NAME.fullmatch(key) or key in ("number", "tz"):
                problems.append(f"{where}.variables: {key!r} is not a variable name (letters, digits, _)")
            elif not isinstance(value, str):
                problems.append(f"{where}.variables.{key}: must be a string, got {_type_name(value)}")
        if number is not None and number not in first:
            first[number] = index
            contacts.append(Contact(number, number, tz or None, dict(variables), index + 1))
        if len(problems) >= MAX_SHOWN_PROBLEMS:
            break
    if problems:
        raise _problems(problems)
    return contacts


def _dnc(body: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    """``dnc_file`` (an absolute path on this server) or ``dnc_numbers`` (normalized), not both."""
    if body.get("dnc_file") is not None and body.get("dnc_numbers") is not None:
        raise ApiError(422, "give dnc_file or dnc_numbers, not both", field="dnc_numbers")
    path = _string(body, "dnc_file", required=False, max_chars=4096)
    if path is not None and not PurePosixPath(path).is_absolute():
        raise ApiError(422, f"dnc_file {path!r} must be an absolute path on the voicebot server (a file of "
                            "one number a line, as voicebot campaign create --dnc reads it)",
                       field="dnc_file")
    value = body.get("dnc_numbers")
    if value is None:
        return path, None
    if not isinstance(value, list):
        raise ApiError(422, f"dnc_numbers must be a list of numbers, got {_type_name(value)}",
                       field="dnc_numbers")
    if len(value) > MAX_DNC_NUMBERS:
        raise ApiError(422, f"dnc_numbers has {len(value)} entries; at most {MAX_DNC_NUMBERS} (use dnc_file)",
                       field="dnc_numbers")
    numbers: dict[str, None] = {}  # normalized, first-seen order, no duplicates
    problems: list[str] = []
    for index, raw in enumerate(value):
        number = normalize_number(raw) if isinstance(raw, str) else None
        if number is None:
            shown = repr(raw) if isinstance(raw, str) else _type_name(raw)
            problems.append(f"dnc_numbers[{index}]: {shown} is not a phone number (+ and 3-15 digits) or a "
                            "sip: URI")
            if len(problems) >= MAX_SHOWN_PROBLEMS:
                break
        else:
            numbers[number] = None
    if problems:
        raise _problems(problems, field="dnc_numbers")
    return None, list(numbers)


def update_campaign_request(body: Mapping[str, Any]) -> UpdateCampaignRequest:
    """``PATCH /v1/campaigns/{id}``: exactly one of ``dnc_file`` (null: no list) and ``dnc_numbers``."""
    _reject_unknown(body, UPDATE_FIELDS)
    if not body:
        raise ApiError(422, f"nothing to change; give one of: {', '.join(UPDATE_FIELDS)}")
    if "dnc_numbers" in body and body["dnc_numbers"] is None:
        raise ApiError(422, "dnc_numbers must be a list of numbers, got null (\"dnc_file\": null removes "
                            "the list)", field="dnc_numbers")
    if "dnc_file" in body and "dnc_numbers" in body:
        raise ApiError(422, "give dnc_file or dnc_numbers, not both", field="dnc_numbers")
    path, numbers = _dnc(body)
    return UpdateCampaignRequest(path, numbers)


def _contacts(body: Mapping[str, Any]) -> list[Contact]:
    value = body.get("contacts")
    if value is None:
        raise ApiError(422, "contacts is required: CSV text with a 'number' header, or a list of "
                            "{\"number\": ...} objects", field="contacts")
    if isinstance(value, str):
        try:
            contacts = parse_contacts(value.removeprefix("\ufeff"), "contacts")
        except ContactsError as exc:
            raise _problems(exc.problems) from None
    elif isinstance(value, list):
        if not value:
            raise ApiError(422, "contacts is an empty list", field="contacts")
        contacts = contacts_from_json(value)
    else:
        raise ApiError(422, f"contacts must be CSV text or a list of objects, got {_type_name(value)}",
                       field="contacts")
    if len(contacts) > MAX_CONTACTS:
        raise ApiError(422, f"contacts has {len(contacts)} entries; at most {MAX_CONTACTS} per campaign",
                       field="contacts")
    return contacts


def create_campaign_request(body: Mapping[str, Any], *, known_dialplan: Callable[[str], bool],
                            dialplans: list[str], trunk: str | None) -> CreateCampaignRequest:
    """``POST /v1/campaigns``: every field and every contact checked before anything is stored.
    ``trunk`` ([http] trunk) is the proxy when the body gives none."""
    _reject_unknown(body, FIELDS)
    name = _string(body, "name", required=True, max_chars=64)
    dialplan = _string(body, "dialplan", required=True, max_chars=512)
    assert name is not None and dialplan is not None
    if not _NAME.fullmatch(name):
        raise ApiError(422, f"name {name!r} may hold only letters, digits, - and _ (starting with a letter "
                            "or digit, at most 64)", field="name")
    if not known_dialplan(dialplan):
        raise ApiError(422, f"dialplan {dialplan!r} is not known to this instance; known: "
                            f"{', '.join(dialplans)} (add it to [http] dialplans)", field="dialplan")
    trunk_values = _typed("trunk", _object(body, "trunk"), dict.fromkeys(_TRUNK, str))
    trunk_values.setdefault("proxy", trunk)
    if trunk_values["proxy"] is not None and normalize_number(trunk_values["proxy"]) is None:
        raise ApiError(422, f"trunk.proxy {trunk_values['proxy']!r} is not a sip: URI", field="trunk.proxy")
    pacing = _built("pacing", Pacing, _typed("pacing", _object(body, "pacing"), _PACING))
    retry = _built("retry", RetryPolicy, _typed("retry", _object(body, "retry"), _RETRY))
    window_text = _string(body, "window", required=False, max_chars=16)
    window = _built("window", CallingWindow.parse, {"text": window_text}) if window_text else None
    tz = _string(body, "tz", required=False, max_chars=64) or "UTC"
    if not check_tz(tz):
        raise ApiError(422, f"tz {tz!r} is not a known IANA zone (e.g. Europe/Berlin)", field="tz")
    amd = body.get("amd", True)
    if not isinstance(amd, bool):
        raise ApiError(422, f"amd must be true or false, got {_type_name(amd)}", field="amd")
    webhook = _string(body, "webhook_url", required=False, max_chars=2048)
    if webhook is not None and not webhook.startswith(("http://", "https://")):
        raise ApiError(422, f"webhook_url must be an http:// or https:// URL, got {webhook!r}",
                       field="webhook_url")
    dnc_file, dnc_numbers = _dnc(body)
    default = CampaignSettings(dialplan="")
    settings = CampaignSettings(
        dialplan=dialplan, trunk=Trunk(**trunk_values), pacing=pacing, retry=retry,
        window=window or default.window, default_tz=tz,
        ring_timeout_s=_number(body, "ring_timeout_s", default.ring_timeout_s, minimum=1, maximum=300),
        webhook_url=webhook,
        webhook_timeout_s=_number(body, "webhook_timeout_s", default.webhook_timeout_s, minimum=0.1,
                                  maximum=60),
        amd=amd, variables=_variables(body), dnc_file=dnc_file)
    contacts = _contacts(body)
    unroutable = [c for c in contacts if not c.number.startswith(("sip:", "sips:"))]
    if unroutable and settings.trunk.proxy is None:
        raise ApiError(422, f"contact {unroutable[0].number} is a phone number but the campaign has no trunk "
                            "proxy (give trunk.proxy, or set [http] trunk)", field="trunk.proxy")
    return CreateCampaignRequest(name, settings, contacts, dnc_numbers)


__all__ = ["MAX_CAMPAIGN_BODY_BYTES", "MAX_DNC_NUMBERS", "CreateCampaignRequest", "UpdateCampaignRequest",
           "contacts_from_json", "create_campaign_request", "update_campaign_request"]
