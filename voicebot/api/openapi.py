"""The OpenAPI 3.1 description of ``/v1``, written by hand next to the routes (served at
``/v1/openapi.json``). tests/api/test_openapi.py checks that every route is described here and
every path described here is routed."""

from __future__ import annotations

import copy
from typing import Any

from voicebot import __version__

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_CALL_ID = {"name": "call_id", "in": "path", "required": True,
            "description": "the API call id (c-...) or the call's SIP Call-ID", "schema": {"type": "string"}}


_CAMPAIGN_ID = {"name": "campaign_id", "in": "path", "required": True,
                "description": "the campaign's name", "schema": {"type": "string"}}


def _json(schema_ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}


def _call_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Call")}


def _campaign_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("Campaign")}


_TRANSITIONS = {
    "start": "created -> running: the dialer starts in this instance",
    "pause": "running -> paused: nobody new is dialed; calls in progress finish",
    "resume": "paused -> running (also after a restart: shutdown pauses running campaigns)",
    "cancel": "created, running or paused -> cancelled: pending contacts become `cancelled`",
}


def _control_paths() -> dict[str, Any]:
    return {f"/campaigns/{{campaign_id}}/{command}": {"post": {
        "operationId": f"{command}_campaign",
        "summary": summary,
        "description": "No body is needed. Any other state: 409 with the state and what the command needs.",
        "parameters": [_CAMPAIGN_ID],
        "responses": {"200": _campaign_response("The campaign after the command"), "401": _PROBLEM,
                      "404": _PROBLEM, "409": _PROBLEM, "413": _PROBLEM},
    }} for command, summary in _TRANSITIONS.items()}


_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "voicebot control API",
        "version": "1",
        "description": "Place, watch, hang up and transfer calls of one voicebot instance. Every request "
                       "needs `Authorization: Bearer <token>` (the token is VOICEBOT_API_TOKEN). Errors are "
                       "RFC 9457 problem details. See docs/api.md.",
    },
    "servers": [{"url": "/v1"}],
    "security": [{"bearer": []}],
    "paths": {
        "/calls": {
            "post": {
                "operationId": "place_call",
                "summary": "Place an outbound call running a dialplan",
                "requestBody": {"required": True, "content": _json("PlaceCall")},
                "responses": {
                    "202": {**_call_response("The call is being placed (status dialing)"),
                            "headers": {"Location": {"schema": {"type": "string"},
                                                     "description": "/v1/calls/{id}"}}},
                    "400": _PROBLEM, "401": _PROBLEM, "413": _PROBLEM, "415": _PROBLEM, "422": _PROBLEM,
                    "503": _PROBLEM,
                },
            },
            "get": {
                "operationId": "list_calls",
                "summary": "The active calls (dialing, ringing or answered)",
                "responses": {
                    "200": {"description": "Active calls, oldest first", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["calls"], "properties": {
                            "calls": {"type": "array", "items": {"$ref": "#/components/schemas/Call"}}}}}}},
                    "401": _PROBLEM,
                },
            },
        },
        "/calls/{call_id}": {
            "get": {
                "operationId": "get_call",
                "summary": "One call, active or recently ended (the last 256 ended calls)",
                "parameters": [_CALL_ID],
                "responses": {"200": _call_response("The call"), "401": _PROBLEM, "404": _PROBLEM},
            },
        },
        "/calls/{call_id}/hangup": {
            "post": {
                "operationId": "hangup_call",
                "summary": "Hang up a call (BYE; CANCEL while it is still ringing)",
                "description": "The body is optional. The call ends with cause `bye: api` (or `bye: api: "
                               "<reason>`), side robot; watch for its `ended` event.",
                "parameters": [_CALL_ID],
                "requestBody": {"required": False, "content": _json("Hangup")},
                "responses": {"202": _call_response("The hang-up is under way"), "401": _PROBLEM,
                              "404": _PROBLEM, "409": _PROBLEM, "413": _PROBLEM, "415": _PROBLEM,
                              "422": _PROBLEM},
            },
        },
        "/calls/{call_id}/transfer": {
            "post": {
                "operationId": "transfer_call",
                "summary": "Blind-transfer an answered call (REFER, RFC 3515)",
                "description": "The result comes as a `transfer` event; on success the robot hangs up.",
                "parameters": [_CALL_ID],
                "requestBody": {"required": True, "content": _json("Transfer")},
                "responses": {"202": _call_response("The REFER is under way"), "401": _PROBLEM,
                              "404": _PROBLEM, "409": _PROBLEM, "413": _PROBLEM, "415": _PROBLEM,
                              "422": _PROBLEM},
            },
        },
        "/events": {
            "get": {
                "operationId": "events",
                "summary": "Server-sent events of every call (or of one call)",
                "description": "`text/event-stream`; each event has `id` (`<boot id>-<seq>`: a "
                               "sequence number that restarts with the process, qualified by a random id "
                               "of the process), `event` (started, answered, utterance, state, dtmf, "
                               "transfer, ended) and `data` (a CallEvent). A client that reads too slowly "
                               "loses events: it gets an `event: dropped` with `{\"dropped\": n}` before "
                               "the next one. Comment lines keep the connection alive every 15 s; `retry: "
                               "2000` is sent first. A client reconnecting with `Last-Event-ID` (or "
                               "`?last_event_id=`) first gets the kept events after it (the last [http] "
                               "events_replay events), preceded by an `event: gap` (a Gap) when some are "
                               "gone or the id is another process's.",
                "parameters": [{"name": "call_id", "in": "query", "required": False,
                                "description": "only this call's events (API id or SIP Call-ID)",
                                "schema": {"type": "string"}},
                               {"name": "last_event_id", "in": "query", "required": False,
                                "description": "replay the kept events after this id (for clients that "
                                               "cannot send the Last-Event-ID header, which wins)",
                                "schema": {"type": "string", "pattern": "^([0-9a-f]+-)?[0-9]+$"}},
                               {"name": "Last-Event-ID", "in": "header", "required": False,
                                "description": "the id of the last event the client got (an EventSource "
                                               "sends it when it reconnects)",
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The event stream", "content": {"text/event-stream": {
                    "schema": {"type": "string"},
                    "itemSchema": {"$ref": "#/components/schemas/CallEvent"}}},
                    "headers": {"X-Voicebot-Boot-Id": {
                        "schema": {"type": "string"}, "description": "this process's id (in event ids)"}}},
                    "400": _PROBLEM, "401": _PROBLEM, "422": _PROBLEM},
            },
        },
        "/campaigns": {
            "post": {
                "operationId": "create_campaign",
                "summary": "Create a campaign: settings and contacts, all checked; nothing is dialed",
                "description": "Contacts are CSV text (a `number` header, optional `tz`, any variable "
                               "columns) or a list of objects. Every bad row is reported in `errors` "
                               "(`contacts:4: ...` with the CSV line, `contacts[3].number: ...` for a list); "
                               "nothing is stored then. Bodies up to 4 MiB.",
                "requestBody": {"required": True, "content": _json("CreateCampaign")},
                "responses": {
                    "201": {**_campaign_response("Created (state created)"),
                            "headers": {"Location": {"schema": {"type": "string"},
                                                     "description": "/v1/campaigns/{id}"}}},
                    "400": _PROBLEM, "401": _PROBLEM, "404": _PROBLEM, "409": _PROBLEM, "413": _PROBLEM,
                    "415": _PROBLEM, "422": _PROBLEM,
                },
            },
            "get": {
                "operationId": "list_campaigns",
                "summary": "Every campaign in the store, oldest first",
                "responses": {
                    "200": {"description": "Campaigns", "content": {"application/json": {
                        "schema": {"type": "object", "required": ["campaigns"], "properties": {
                            "campaigns": {"type": "array",
                                          "items": {"$ref": "#/components/schemas/Campaign"}}}}}}},
                    "401": _PROBLEM, "404": _PROBLEM,
                },
            },
        },
        "/campaigns/{campaign_id}": {
            "get": {
                "operationId": "get_campaign",
                "summary": "A campaign's state and its contacts counted by status and outcome",
                "parameters": [_CAMPAIGN_ID],
                "responses": {"200": _campaign_response("The campaign"), "401": _PROBLEM, "404": _PROBLEM},
            },
            "patch": {
                "operationId": "update_campaign",
                "summary": "Change a campaign's do-not-call list (also while it runs)",
                "description": "Exactly one of `dnc_file` (null: no list any more) and `dnc_numbers`. A "
                               "running dialer checks the new list from its next dial round on. A campaign "
                               "that is cancelled or finished: 409.",
                "parameters": [_CAMPAIGN_ID],
                "requestBody": {"required": True, "content": _json("UpdateCampaign")},
                "responses": {"200": _campaign_response("The campaign with its new list"), "400": _PROBLEM,
                              "401": _PROBLEM, "404": _PROBLEM, "409": _PROBLEM, "413": _PROBLEM,
                              "415": _PROBLEM, "422": _PROBLEM},
            },
        },
        **_control_paths(),
        "/campaigns/{campaign_id}/results": {
            "get": {
                "operationId": "campaign_results",
                "summary": "One result per contact (JSON; the export CSV with Accept: text/csv)",
                "parameters": [_CAMPAIGN_ID],
                "responses": {"200": {"description": "Results, in contact order", "content": {
                    "application/json": {"schema": {"type": "object", "properties": {
                        "campaign": {"type": "string"},
                        "results": {"type": "array",
                                    "items": {"$ref": "#/components/schemas/ContactResult"}}}}},
                    "text/csv": {"schema": {"type": "string"}}}},
                    "401": _PROBLEM, "404": _PROBLEM},
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                    "schema": {"type": "object"}}}}, "401": _PROBLEM},
            },
        },
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "the instance's VOICEBOT_API_TOKEN"}},
        "responses": {"Problem": {"description": "An RFC 9457 problem: `detail` says what was wrong, "
                                                 "`field` names the bad field",
                                  "content": {"application/problem+json": {
                                      "schema": {"$ref": "#/components/schemas/Problem"}}}}},
        "schemas": {
            "PlaceCall": {
                "type": "object", "additionalProperties": False, "required": ["dialplan", "to"],
                "properties": {
                    "dialplan": {"type": "string", "description": "name or configured path of a dialplan "
                                 "this instance loaded ([dialog] dialplan, [http] dialplans)"},
                    "to": {"type": "string", "description": "a sip:/sips: URI, or a phone number (digits, "
                           "optional leading +) dialed through [http] trunk"},
                    "variables": {"type": "object", "maxProperties": 64,
                                  "additionalProperties": {"type": "string", "maxLength": 1024},
                                  "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,63}$"}},
                    "timeout_s": {"type": "number", "minimum": 1, "maximum": 300, "default": 60,
                                  "description": "how long to ring before giving up"},
                },
            },
            "Hangup": {"type": "object", "additionalProperties": False,
                       "properties": {"reason": {"type": "string", "maxLength": 200}}},
            "Transfer": {"type": "object", "additionalProperties": False, "required": ["target"],
                         "properties": {"target": {"type": "string", "description": "sip:/sips: URI"}}},
            "Call": {
                "type": "object",
                "required": ["id", "status", "direction", "dialplan", "created_at"],
                "properties": {
                    "id": {"type": "string"},
                    "sip_call_id": {"type": ["string", "null"]},
                    "direction": {"enum": ["inbound", "outbound"]},
                    "status": {"enum": ["dialing", "ringing", "answered", "ended"]},
                    "dialplan": {"type": "string"},
                    "from": {"type": "string"}, "to": {"type": "string"},
                    "created_at": {"type": "number", "description": "Unix time, s"},
                    "answered_at": {"type": ["number", "null"]},
                    "ended_at": {"type": ["number", "null"]},
                    "dialog_state": {"type": ["string", "null"]},
                    "states": {"type": "array", "items": {"type": "string"}},
                    "utterances": {"type": "array", "items": {"type": "object", "properties": {
                        "text": {"type": "string"}, "start_ms": {"type": "integer"},
                        "end_ms": {"type": "integer"}, "time": {"type": "number"}}}},
                    "dtmf": {"type": "string"},
                    "transfer": {"type": ["object", "null"]},
                    "outcome": {"type": ["object", "null"], "properties": {
                        "cause": {"type": "string"}, "side": {"type": "string"},
                        "error": {"type": ["string", "null"]},
                        "record": {"type": "object", "additionalProperties": {"type": "string"}}}},
                },
            },
            "CallEvent": {
                "type": "object", "required": ["seq", "type", "call_id", "time", "data"],
                "properties": {
                    "seq": {"type": "integer"},
                    "type": {"enum": ["started", "answered", "utterance", "state", "dtmf", "transfer",
                                      "ended"]},
                    "call_id": {"type": "string"}, "sip_call_id": {"type": ["string", "null"]},
                    "time": {"type": "number"}, "data": {"type": "object"},
                },
            },
            "Gap": {
                "type": "object", "required": ["reason", "last_event_id", "first_id", "missed"],
                "description": "data of an `event: gap`: some events after last_event_id are gone",
                "properties": {
                    "reason": {"enum": ["expired", "restart", "unknown"]},
                    "last_event_id": {"type": "string", "description": "the id the client gave"},
                    "first_id": {"type": "string", "description": "the first event it will get"},
                    "missed": {"type": "integer", "description": "this process's events it will not see"},
                },
            },
            "DncFile": {"type": ["string", "null"],
                        "description": "absolute path, on the voicebot server, of a do-not-call file (one "
                                       "number a line, `#` comments; as `campaign create --dnc`); it must be "
                                       "readable now and is read again whenever it changes"},
            "DncNumbers": {"type": "array", "maxItems": 100000, "items": {"type": "string"},
                           "description": "do-not-call numbers (+ and 3-15 digits, or sip: URIs), kept in a "
                                          "file next to the campaigns' database"},
            "UpdateCampaign": {
                "type": "object", "additionalProperties": False, "minProperties": 1, "maxProperties": 1,
                "properties": {"dnc_file": {"$ref": "#/components/schemas/DncFile"},
                               "dnc_numbers": {"$ref": "#/components/schemas/DncNumbers"}},
            },
            "CreateCampaign": {
                "type": "object", "additionalProperties": False, "required": ["name", "dialplan", "contacts"],
                "properties": {
                    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                             "description": "the campaign's id"},
                    "dialplan": {"type": "string", "description": "name or configured path of a dialplan "
                                 "this instance loaded"},
                    "contacts": {"oneOf": [
                        {"type": "string", "description": "CSV: number, optional tz, variable columns"},
                        {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                    "required": ["number"], "properties": {
                            "number": {"type": "string"}, "tz": {"type": "string"},
                            "variables": {"type": "object", "additionalProperties": {"type": "string"}}}}}]},
                    "trunk": {"type": "object", "additionalProperties": False, "properties": {
                        "proxy": {"type": "string", "description": "sip: URI; default [http] trunk"},
                        "username": {"type": "string"},
                        "password_env": {"type": "string", "default": "VOICEBOT_TRUNK_PASSWORD"},
                        "caller_id": {"type": "string"}}},
                    "pacing": {"type": "object", "additionalProperties": False, "properties": {
                        "max_concurrent": {"type": "integer", "minimum": 1, "default": 4},
                        "calls_per_s": {"type": "number", "exclusiveMinimum": 0, "default": 1},
                        "burst": {"type": "integer", "minimum": 1, "default": 1}}},
                    "retry": {"type": "object", "additionalProperties": False, "properties": {
                        "max_attempts": {"type": "integer", "minimum": 1, "default": 3},
                        "busy_delay_s": {"type": "number", "minimum": 0, "default": 300},
                        "no_answer_delay_s": {"type": "number", "minimum": 0, "default": 1800},
                        "machine": {"enum": ["retry", "done"], "default": "retry"},
                        "machine_delay_s": {"type": "number", "minimum": 0, "default": 3600},
                        "failed_delay_s": {"type": "number", "minimum": 0, "default": 600},
                        "interrupted": {"enum": ["next-window", "never"], "default": "next-window"}}},
                    "window": {"type": "string", "default": "09:00-20:00",
                               "description": "HH:MM-HH:MM in the callee's time zone"},
                    "tz": {"type": "string", "default": "UTC", "description": "zone of contacts without tz"},
                    "ring_timeout_s": {"type": "number", "minimum": 1, "maximum": 300, "default": 30},
                    "dnc_file": {"$ref": "#/components/schemas/DncFile"},
                    "dnc_numbers": {"$ref": "#/components/schemas/DncNumbers"},
                    "amd": {"type": "boolean", "default": True},
                    "variables": {"type": "object", "additionalProperties": {"type": "string"}},
                    "webhook_url": {"type": "string"},
                    "webhook_timeout_s": {"type": "number", "minimum": 0.1, "maximum": 60, "default": 5},
                },
            },
            "Campaign": {
                "type": "object", "required": ["id", "state", "dialplan", "contacts", "counts"],
                "properties": {
                    "id": {"type": "string"},
                    "state": {"enum": ["created", "running", "paused", "cancelled", "finished"]},
                    "dialplan": {"type": "string"},
                    "contacts": {"type": "integer"},
                    "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "contacts by status (pending, dialing) and done:<outcome>"},
                    "attempts": {"type": "integer"},
                    "dialing": {"type": "boolean", "description": "a dialer runs it in this instance"},
                    "error": {"type": ["string", "null"], "description": "why its dialer stopped"},
                    "dnc_file": {"type": ["string", "null"], "description": "the do-not-call list it checks"},
                },
            },
            "ContactResult": {
                "type": "object",
                "properties": {
                    "campaign": {"type": "string"}, "number": {"type": "string"}, "line": {"type": "integer"},
                    "status": {"enum": ["pending", "dialing", "done"]},
                    "attempts": {"type": "integer"}, "final_outcome": {"type": ["string", "null"]},
                    "answer_type": {"type": ["string", "null"]}, "last_cause": {"type": ["string", "null"]},
                    "last_call_id": {"type": ["string", "null"]}, "finished_at": {"type": ["number", "null"]},
                    "variables": {"type": "object"}, "result": {"type": "object"},
                },
            },
            "Problem": {
                "type": "object", "required": ["status", "title", "detail"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "field": {"type": "string"},
                               "errors": {"type": "array", "items": {"type": "string"},
                                          "description": "every bad row of a contacts list"}},
            },
        },
    },
}


def openapi_document() -> dict[str, Any]:
    """A copy of the description, with this build's version."""
    document = copy.deepcopy(_DOCUMENT)
    document["info"]["x-voicebot-version"] = __version__
    return document


__all__ = ["openapi_document"]
