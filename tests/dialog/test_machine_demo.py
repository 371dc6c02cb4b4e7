"""Scripted conversations with dialplans/demo.yaml: events in, commands out, on a fake clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dialog.script import Driver
from voicebot.dialog.loader import load_dialplan

pytestmark = pytest.mark.unit

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")

WELCOME = "play:Welcome to the voice bot demo."
ASK = "play:Please say or key in your account number, then press pound."
WAIT = "play!:One moment please."
BYE = "play!:Thank you for calling. Goodbye."
XFER = "play!:Transferring you to an operator."
LOOKUP = "webhook:builtin:demo-balance"
ANSWER = {"variables": {"balance_spoken": "12 dollars and 34 cents", "account_spoken": "1 2 3 4"}}

Step = tuple[str, Any, list[str] | None]

MENU: list[Step] = [("start", None, [WELCOME, "listen"]), ("done", None, ["timer:no_input+6"])]

# (name, steps, final state, record) -- every step's commands are checked exactly.
CASES: list[tuple[str, list[Step], str, dict[str, str]]] = [
    ("balance by speech, account spoken, goodbye spoken", [
        *MENU,
        ("say", "I'd like my balance, please.", ["cancel:no_input", ASK, "listen"]),
        ("done", None, ["timer:no_input+8"]),
        ("say", "One two three four.", ["cancel:no_input", "mute", WAIT, LOOKUP]),
        ("hook_ok", ANSWER, [
            "record:balance_account=1234",
            "play:The balance of account 1 2 3 4 is 12 dollars and 34 cents.",
            "listen",
        ]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "Goodbye!", ["cancel:no_input", "record:outcome=goodbye", "mute", BYE]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "goodbye", {"balance_account": "1234", "outcome": "goodbye"}),
    ("balance by DTMF, account keyed with terminator, # ends", [
        *MENU,
        ("dtmf", "1", ["cancel:no_input", ASK, "listen"]),
        ("dtmf", "1234#", [
            "stop", "timer:no_input+8",  # the first key barges in, the prompt is over
            "cancel:no_input", "timer:inter_digit+3",
            "cancel:inter_digit", "timer:inter_digit+3",
            "cancel:inter_digit", "timer:inter_digit+3",
            "cancel:inter_digit", "timer:inter_digit+3",
            "cancel:inter_digit", "mute", WAIT, LOOKUP,
        ]),
        ("hook_ok", ANSWER, ["record:balance_account=1234", "play:The balance of account", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("dtmf", "#", ["cancel:no_input", "record:outcome=goodbye", "mute", BYE]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "goodbye", {"balance_account": "1234", "outcome": "goodbye"}),
    ("operator spoken transfers to the configured target", [
        ("start", {"transfer_target": "sip:desk@pbx.example"}, [WELCOME, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "Operator, please.", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
        ("done", None, ["transfer:sip:desk@pbx.example"]),
    ], "transfer_to_operator", {"outcome": "transferred"}),
    ("DTMF 0 transfers from the menu", [
        *MENU,
        ("dtmf", "0", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
        ("done", None, ["transfer:sip:operator@127.0.0.1"]),
    ], "transfer_to_operator", {"outcome": "transferred"}),
    ("two no-inputs in a row say goodbye and hang up", [
        *MENU,
        ("wait", 6, ["play:Sorry, I did not hear anything.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["record:outcome=goodbye", "mute", BYE]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "goodbye", {"outcome": "goodbye"}),
    ("three no-matches escalate to the operator", [
        *MENU,
        ("say", "what is the weather", ["cancel:no_input", "play:Sorry, I did not get that.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "pizza", ["cancel:no_input", "play:Sorry, I did not get that."]),  # same expectation
        ("done", None, ["timer:no_input+6"]),
        ("say", "seven", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
        ("done", None, ["transfer:sip:operator@127.0.0.1"]),
    ], "transfer_to_operator", {"outcome": "transferred"}),
    ("a no-match resets the no-input count: silence, mumble, silence is not two silences in a row", [
        *MENU,
        ("wait", 6, ["play:Sorry, I did not hear anything.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "hmm", ["cancel:no_input", "play:Sorry, I did not get that.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("wait", 6, ["play:Sorry, I did not hear anything.", "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "balance", ["cancel:no_input", ASK, "listen"]),
    ], "ask_account", {}),
    ("barge-in: the first partial with words stops the welcome prompt", [
        ("start", None, [WELCOME, "listen"]),
        ("partial", "", []),  # an empty partial is not speech
        ("partial", "bal", ["stop", "timer:no_input+6"]),
        ("partial", "balance", ["cancel:no_input", "timer:no_input+6"]),  # speech pushes silence back
        ("say", "balance", ["cancel:no_input", ASK, "listen"]),
    ], "ask_account", {}),
    ("barge-in by voice activity before any text", [
        ("start", None, [WELCOME, "listen"]),
        ("vad", None, ["stop", "timer:no_input+6"]),
        ("say", "agent", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
        ("partial", "hello?", []),  # the transfer prompt has no barge-in and input is off
        ("dtmf", "1", []),
        ("done", None, ["transfer:sip:operator@127.0.0.1"]),
    ], "transfer_to_operator", {"outcome": "transferred"}),
    ("a prompt without barge-in keeps playing and input waits for it", [
        *MENU,
        ("say", "balance", ["cancel:no_input", ASK, "listen"]),
        ("done", None, ["timer:no_input+8"]),
        ("dtmf", "5555#", None),
        ("partial", "hello", []),  # "One moment please." has barge_in: false; input is muted
    ], "lookup", {}),
    ("inter-digit timeout ends the account number", [
        *MENU,
        ("dtmf", "1", None),
        ("done", None, ["timer:no_input+8"]),
        ("dtmf", "12345", None),
        ("wait", 3, ["mute", WAIT, LOOKUP]),
    ], "lookup", {}),
    ("max_digits ends the account number without a terminator", [
        *MENU,
        ("dtmf", "1", None),
        ("done", None, None),
        ("dtmf", "1234567", None),
        ("dtmf", "8", ["cancel:inter_digit", "mute", WAIT, LOOKUP]),
    ], "lookup", {}),
    ("too few digits is a no-match with its own re-prompt", [
        *MENU,
        ("dtmf", "1", None),
        ("done", None, None),
        ("dtmf", "12#", [
            "cancel:no_input", "timer:inter_digit+3", "cancel:inter_digit", "timer:inter_digit+3",
            "cancel:inter_digit", "play:An account number has four to eight digits.", "listen",
        ]),
        ("done", None, ["timer:no_input+8"]),
        ("dtmf", "4321#", None),
    ], "lookup", {}),
    ("speech that is neither digits nor a handler is a no-match in the account state", [
        *MENU,
        ("say", "balance", None),
        ("done", None, None),
        ("say", "I don't know it",
         ["cancel:no_input", "play:An account number has four to eight digits.", "listen"]),
    ], "ask_account", {}),
    ("operator spoken while keying the account still transfers", [
        *MENU,
        ("say", "balance", None),
        ("done", None, None),
        ("say", "can I talk to an agent", ["cancel:no_input", "record:outcome=transferred", "mute", XFER]),
    ], "transfer_to_operator", {"outcome": "transferred"}),
    ("webhook error: apology, then the operator", [
        *MENU,
        ("say", "balance", None), ("done", None, None), ("say", "1234", None),
        ("hook_fail", "webhook http://127.0.0.1:9/ answered HTTP 500 Internal Server Error", [
            "record:lookup_error=webhook http://127.0.0.1:9/ answered HTTP 500 Internal Server Error",
            "play!:Sorry, the account service is not available right now.",
        ]),
        ("done", None, ["record:outcome=transferred", XFER]),
        ("done", None, ["transfer:sip:operator@127.0.0.1"]),
    ], "transfer_to_operator", {
        "lookup_error": "webhook http://127.0.0.1:9/ answered HTTP 500 Internal Server Error",
        "outcome": "transferred",
    }),
    ("webhook timeout goes to the same error state", [
        *MENU,
        ("say", "balance", None), ("done", None, None), ("say", "1234", None),
        ("hook_fail", "webhook builtin:demo-balance did not answer within 3 s", [
            "record:lookup_error=webhook builtin:demo-balance did not answer within 3 s",
            "play!:Sorry, the account service",
        ]),
    ], "lookup_failed", {"lookup_error": "webhook builtin:demo-balance did not answer within 3 s"}),
    ("webhook answer chooses the next state: unknown account asks again", [
        *MENU,
        ("say", "balance", None), ("done", None, None), ("say", "9 9 9 9", None),
        ("hook_ok", {"next": "unknown_account", "variables": {"account_spoken": "9 9 9 9"}},
         ["play:I could not find account 9 9 9 9."]),
        # Both queued prompts play out; then the plain goto leads back, and input is on again.
        ("done", None, [ASK, "listen"]),
        ("done", None, ["timer:no_input+8"]),
    ], "ask_account", {}),
    ("webhook answer choosing a state outside may_goto is an error", [
        *MENU,
        ("say", "balance", None), ("done", None, None), ("say", "1234", None),
        ("hook_ok", {"next": "goodbye"}, None),
    ], "lookup_failed",
     {"lookup_error": "answer chose state 'goodbye', which is not in the webhook's may_goto"}),
    ("transfer refused: apology and hang up", [
        *MENU,
        ("dtmf", "0", None),
        ("done", None, ["transfer:sip:operator@127.0.0.1"]),
        ("xfer_fail", "REFER answered 403 Forbidden", ["play!:Sorry, no operator is available."]),
        ("done", None, ["hangup:dialplan hangup"]),
    ], "transfer_failed", {"outcome": "transferred"}),
    ("the caller hangs up during the prompt: timers cancelled, no hangup sent", [
        *MENU,
        ("hangup", None, ["cancel:no_input", "mute"]),
        ("say", "balance", []),
        ("wait", 60, []),
    ], "menu", {}),
]


@pytest.mark.parametrize(("name", "steps", "final_state", "record"), CASES, ids=[c[0] for c in CASES])
def test_demo_conversation(name: str, steps: list[Step], final_state: str, record: dict[str, str]) -> None:
    driver = Driver(DEMO)
    driver.run(steps)
    assert driver.machine.state_name == final_state
    assert driver.machine.record == record


@pytest.mark.parametrize("keys_or_words", [
    ("dtmf", "1234#"), ("say", "one two three four"), ("say", "1234"), ("say", "1, 2, 3, 4."),
    ("say", "my account number is one two three four"), ("dtmf", "1234"),
])
def test_account_number_spoken_or_keyed_is_the_same(keys_or_words: tuple[str, str]) -> None:
    driver = Driver(DEMO)
    driver.run([*MENU, ("say", "balance", None), ("done", None, None)])
    action, arg = keys_or_words
    driver.act(action, arg)
    if action == "dtmf" and not arg.endswith("#"):
        driver.act("wait", 3)  # no terminator: the inter-digit timeout ends it
    assert driver.machine.state_name == "lookup"
    assert driver.machine.variables["account"] == "1234"
    assert driver.webhook is not None
    assert driver.webhook.payload["variables"]["account"] == "1234"  # type: ignore[index]


@pytest.mark.parametrize(("spoken", "key", "state"), [
    ("balance", "1", "ask_account"),
    ("operator", "0", "transfer_to_operator"),
    ("goodbye", "#", "goodbye"),
])
def test_menu_choices_spoken_or_keyed_are_the_same(spoken: str, key: str, state: str) -> None:
    by_voice, by_key = Driver(DEMO), Driver(DEMO)
    by_voice.run([*MENU, ("say", spoken, None)])
    by_key.run([*MENU, ("dtmf", key, None)])
    assert by_voice.machine.state_name == by_key.machine.state_name == state
    assert by_voice.machine.record == by_key.machine.record


@pytest.mark.parametrize(("said", "state"), [
    ("operator", "transfer_to_operator"), ("an operator", "transfer_to_operator"),
    ("Operator please.", "transfer_to_operator"), ("I want to talk to an agent", "transfer_to_operator"),
    ("Agent.", "transfer_to_operator"), ("goodbye", "goodbye"), ("Good bye.", "goodbye"),
    ("Good-bye!", "goodbye"), ("bye", "goodbye"), ("Okay, bye bye.", "goodbye"),
    ("Balance.", "ask_account"), ("What's my account balance?", "ask_account"),
    ("How much money do I have", "ask_account"),
])
def test_menu_is_tolerant_of_how_recognizers_write_things(said: str, state: str) -> None:
    driver = Driver(DEMO)
    driver.run([*MENU, ("say", said, None)])
    assert driver.machine.state_name == state


def test_webhook_receives_the_call_context() -> None:
    driver = Driver(DEMO)
    driver.run([*MENU, ("say", "balance", None), ("done", None, None), ("dtmf", "4321#", None)])
    assert driver.webhook is not None
    payload = driver.webhook.payload
    assert payload["call_id"] == "call-1"
    assert payload["dialplan"] == "demo"
    assert payload["state"] == "lookup"
    assert payload["caller"] == "+15551230000"
    assert payload["variables"]["account"] == "4321"  # type: ignore[index]
    assert driver.webhook.timeout_s == 3.0


def test_stale_timer_and_stale_webhook_answers_are_ignored() -> None:
    driver = Driver(DEMO)
    driver.run(MENU)
    first_timer = next(iter(driver.timers))
    driver.run([("say", "balance", None)])
    from voicebot.dialog import events as ev

    assert driver.machine.handle(ev.TimerFired(driver.now_s, first_timer)) == []
    assert driver.machine.handle(ev.WebhookSucceeded(driver.now_s, "webhook-99", {}, "goodbye")) == []
    assert driver.machine.state_name == "ask_account"


def test_events_after_the_end_produce_nothing() -> None:
    driver = Driver(DEMO)
    driver.run([*MENU, ("dtmf", "#", None), ("done", None, None)])
    assert driver.machine.finished
    assert driver.act("say", "balance") == []
    assert driver.act("dtmf", "1") == []
