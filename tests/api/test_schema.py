"""Request validation: each bad field is a 4xx whose message names it; good requests come out typed."""

from __future__ import annotations

from typing import Any

import pytest

from voicebot.api.errors import ApiError
from voicebot.api.schema import (
    MAX_BODY_BYTES,
    PlaceCallRequest,
    destination_uri,
    hangup_request,
    parse_json,
    place_call_request,
    transfer_request,
)

pytestmark = pytest.mark.unit

KNOWN = {"reminder", "dialplans/reminder.yaml"}


def place(body: dict[str, Any], trunk: str | None = None) -> PlaceCallRequest:
    return place_call_request(body, known_dialplan=KNOWN.__contains__, dialplans=["reminder"], trunk=trunk)


def fails(fn: Any, *args: Any, **kwargs: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args, **kwargs)
    return info.value


def test_a_good_request_is_typed_with_defaults() -> None:
    req = place({"dialplan": "reminder", "to": "sip:alice@127.0.0.1:5070"})
    uri = "sip:alice@127.0.0.1:5070"
    assert req == PlaceCallRequest("reminder", uri, uri, {}, 60.0)
    req = place({"dialplan": "dialplans/reminder.yaml", "to": " sips:bob@example.com ",
                 "variables": {"name": "Alex", "date_1": ""}, "timeout_s": 12})
    assert req.uri == "sips:bob@example.com" and req.variables == {"name": "Alex", "date_1": ""}
    assert req.timeout_s == 12.0 and isinstance(req.timeout_s, float)


@pytest.mark.parametrize(("to", "uri"), [
    ("+15550100", "sip:+15550100@trunk.example.com:5060"),
    ("+1 (555) 010-0", "sip:+15550100@trunk.example.com:5060"),
    ("0049.30.1234", "sip:0049301234@trunk.example.com:5060"),
])
def test_numbers_go_through_the_trunk(to: str, uri: str) -> None:
    assert destination_uri(to, "sip:trunk.example.com:5060") == uri
    assert place({"dialplan": "reminder", "to": to}, trunk="sip:trunk.example.com:5060").uri == uri


def test_a_number_through_an_ipv6_trunk_without_port() -> None:
    assert destination_uri("12345", "sip:[2001:db8::1]") == "sip:12345@[2001:db8::1]"


@pytest.mark.parametrize(("body", "status", "field", "message"), [
    ({}, 422, "dialplan", "dialplan is required"),
    ({"dialplan": None, "to": "sip:a@b"}, 422, "dialplan", "dialplan is required"),
    ({"dialplan": "  ", "to": "sip:a@b"}, 422, "dialplan", "dialplan must not be empty"),
    ({"dialplan": "reminder"}, 422, "to", "to is required"),
    ({"dialplan": ["reminder"], "to": "sip:a@b"}, 422, "dialplan", "dialplan must be a string, got array"),
    ({"dialplan": "reminder", "to": 5550100}, 422, "to", "to must be a string, got number"),
    ({"dialplan": "other", "to": "sip:a@b"}, 422, "dialplan",
     "dialplan 'other' is not known to this instance; known: reminder (add it to [http] dialplans)"),
    ({"dialplan": "reminder", "to": "sip:"}, 422, "to", "to is not a valid SIP URI ('sip:')"),
    ({"dialplan": "reminder", "to": "tel:+15550100"}, 422, "to",
     "to must be a sip: URI or a phone number (digits with an optional leading +), got 'tel:+15550100'"),
    ({"dialplan": "reminder", "to": "1"}, 422, "to", "to must be a sip: URI or a phone number"),
    ({"dialplan": "reminder", "to": "+15550100"}, 422, "to",
     "to is a phone number ('+15550100') but this instance has no trunk to dial numbers through"),
    ({"dialplan": "reminder", "to": "sip:" + "a" * 600}, 422, "to",
     "to is too long (604 characters; at most 512)"),
    ({"dialplan": "reminder", "to": "sip:a@b", "timeout_s": True}, 422, "timeout_s",
     "timeout_s must be a number of seconds, got boolean"),
    ({"dialplan": "reminder", "to": "sip:a@b", "timeout_s": 301}, 422, "timeout_s",
     "timeout_s must be 1..300 s, got 301"),
    ({"dialplan": "reminder", "to": "sip:a@b", "variables": "name=Alex"}, 422, "variables",
     "variables must be an object of strings, got string"),
    ({"dialplan": "reminder", "to": "sip:a@b", "variables": {"1st": "x"}}, 422, "variables.1st",
     "variables: '1st' is not a variable name"),
    ({"dialplan": "reminder", "to": "sip:a@b", "variables": {"ok": None}}, 422, "variables.ok",
     "variables.ok must be a string, got null"),
    ({"dialplan": "reminder", "to": "sip:a@b", "variables": {"v": "x" * 1025}}, 422, "variables.v",
     "variables.v is too long (1025 characters; at most 1024)"),
    ({"dialplan": "reminder", "to": "sip:a@b", "variables": {f"v{i}": "" for i in range(65)}}, 422,
     "variables", "variables has 65 entries; at most 64"),
    ({"dialplan": "reminder", "to": "sip:a@b", "number": "1"}, 422, "number",
     "unknown field 'number'; known fields: dialplan, to, variables, timeout_s"),
])
def test_bad_place_call_requests(body: dict[str, Any], status: int, field: str, message: str) -> None:
    error = fails(place, body)
    assert (error.status, error.field) == (status, field)
    assert message in error.message, error.message


def test_a_bad_field_is_reported_before_an_unknown_dialplan_is_looked_up() -> None:
    # Types first, then the lookup: the client fixes the shape of its request before its content.
    error = fails(place, {"dialplan": "other", "to": "sip:a@b", "timeout_s": "5"})
    assert error.field == "timeout_s"


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b'{"a": 1}', None, 415, "send Content-Type: application/json (got none)"),
    (b'{"a": 1}', "application/x-www-form-urlencoded", 415, "(got 'application/x-www-form-urlencoded')"),
    (b"", "application/json", 400, "the body is empty; expected a JSON object"),
    (b"{", "application/json", 400, "the body is not valid JSON"),
    (b"\xff\xfe", "application/json", 400, "the body is not valid JSON"),
    (b"null", "application/json", 422, "the body must be a JSON object, got null"),
    (b'"x"', "application/json; charset=utf-8", 422, "the body must be a JSON object, got string"),
])
def test_bodies_that_are_not_a_json_object(body: bytes, content_type: str | None, status: int,
                                           message: str) -> None:
    error = fails(parse_json, body, content_type)
    assert error.status == status and message in error.message, error.message


def test_an_optional_body_may_be_empty_but_not_wrong() -> None:
    assert parse_json(b"", None, required=False) == {}
    assert parse_json(b'{"reason": "x"}', "Application/JSON", required=False) == {"reason": "x"}
    assert fails(parse_json, b"reason=x", "text/plain", required=False).status == 415
    assert MAX_BODY_BYTES == 16 * 1024


def test_transfer_and_hangup_requests() -> None:
    assert transfer_request({"target": "sip:operator@127.0.0.1:5099"}).target == "sip:operator@127.0.0.1:5099"
    error = fails(transfer_request, {"target": "operator"})
    assert (error.status, error.field) == (422, "target") and "target is not a valid SIP URI" in error.message
    assert fails(transfer_request, {}).message == "target is required"
    assert fails(transfer_request, {"target": "sip:a@b", "mode": "attended"}).field == "mode"
    assert hangup_request({}).reason == ""
    assert hangup_request({"reason": " done "}).reason == "done"
    assert fails(hangup_request, {"reason": "a\r\nb"}).message == "reason must not contain control characters"
    assert fails(hangup_request, {"reason": 1}).message == "reason must be a string, got number"
