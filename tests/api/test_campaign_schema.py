"""POST /v1/campaigns validation as a pure function: what a valid body becomes (settings equal to
what the CLI would store, contacts as its loader reads them), and the JSON list's checks."""

from __future__ import annotations

from typing import Any

import pytest

from voicebot.api.campaign_schema import contacts_from_json, create_campaign_request
from voicebot.api.errors import ApiError
from voicebot.campaign.csvload import parse_contacts
from voicebot.campaign.model import CallingWindow, CampaignSettings, Pacing, RetryPolicy, Trunk

pytestmark = pytest.mark.unit


def request(body: dict[str, Any], trunk: str | None = "sip:trunk.example.com:5070") -> Any:
    return create_campaign_request(body, known_dialplan=lambda name: name == "reminder",
                                   dialplans=["reminder"], trunk=trunk)


def test_a_full_body_becomes_the_settings_the_cli_would_store() -> None:
    req = request({
        "name": "spring-1", "dialplan": "reminder",
        "contacts": "number,name,tz\n+1 (212) 555-0101,Anna,America/New_York\nsip:t@127.0.0.1,T,\n",
        "trunk": {"username": "u", "caller_id": "+4420"}, "pacing": {"max_concurrent": 10, "calls_per_s": 2},
        "retry": {"max_attempts": 2, "busy_delay_s": 60, "machine": "done"}, "window": "08:30-18:00",
        "tz": "Europe/London", "ring_timeout_s": 20, "amd": False, "variables": {"clinic": "North"},
        "webhook_url": "https://crm.example/hook"})
    assert req.name == "spring-1"
    assert req.settings == CampaignSettings(
        dialplan="reminder", trunk=Trunk(proxy="sip:trunk.example.com:5070", username="u", caller_id="+4420"),
        pacing=Pacing(10, 2.0, 1), retry=RetryPolicy(max_attempts=2, busy_delay_s=60.0, machine="done"),
        window=CallingWindow.parse("08:30-18:00"), default_tz="Europe/London", ring_timeout_s=20.0,
        webhook_url="https://crm.example/hook", amd=False, variables={"clinic": "North"})
    assert req.contacts == parse_contacts(
        "number,name,tz\n+1 (212) 555-0101,Anna,America/New_York\nsip:t@127.0.0.1,T,\n", "contacts")
    assert req.settings.dial_uri(req.contacts[0].number) == "sip:+12125550101@trunk.example.com:5070"


def test_defaults_are_the_clis() -> None:
    req = request({"name": "a", "dialplan": "reminder", "contacts": [{"number": "sip:x@h"}]}, trunk=None)
    assert req.settings == CampaignSettings(dialplan="reminder")


def test_json_contacts_are_the_same_contacts_as_csv() -> None:
    contacts = contacts_from_json([{"number": "+49 170 0000001", "tz": "Europe/Berlin",
                                    "variables": {"name": "Jonas"}}, {"number": "sip:t@h"}])
    assert [(c.number, c.tz, c.variables, c.line) for c in contacts] == [
        ("+491700000001", "Europe/Berlin", {"name": "Jonas"}, 1), ("sip:t@h", None, {}, 2)]


def test_every_bad_item_is_reported() -> None:
    with pytest.raises(ApiError) as info:
        contacts_from_json([{"number": "sip:a@h"}, "x", {"number": 5},
                            {"number": "sip:a@h", "tz": "No/Where"},
                            {"number": "+1555", "variables": {"n": 1, "2x": "a"}}, {"numbr": "1"}])
    assert info.value.status == 422 and info.value.field == "contacts"
    assert info.value.extra["errors"] == [
        "contacts[1]: must be an object with a number, got string",
        "contacts[2].number: required, a string (got number)",
        "contacts[3].number: number sip:a@h is a duplicate of contacts[0]",
        "contacts[3].tz: time zone 'No/Where' is not a known IANA zone (e.g. Europe/Berlin)",
        "contacts[4].variables.n: must be a string, got number",
        "contacts[4].variables: '2x' is not a variable name (letters, digits, _)",
        "contacts[5]: unknown field 'numbr'; known fields: number, tz, variables",
    ]
    assert info.value.message.startswith(
        "contacts[1]: must be an object with a number, got string (and 6 more")
