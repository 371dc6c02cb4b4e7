"""Type-ahead: keys pressed while a prompt without barge-in plays wait for the state to listen.

Decided (docs/dialplans.md, "Type-ahead"): keys belong to the listening state they were typed in.
They are kept while its prompt plays and consumed in order once it listens. A key that moves the
caller on passes the keys typed after it to the next state if that state listens (a caller who
knows the menus types "1" and the account number in one go); entering a state that does not
listen drops them, and keys typed in such a state (a webhook wait, a transfer) are dropped.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dialog.script import Driver
from voicebot.dialog.loader import load_dialplan_text
from voicebot.dialog.machine import MAX_TYPEAHEAD_KEYS

pytestmark = pytest.mark.unit

PLAN = """
dialplan: t
start: menu
globals:
  operator: {phrases: ["operator"], dtmf: "0", goto: bye}
states:
  menu:
    prompt: "Press 1 for balance, 2 to pay."
    barge_in: false
    listen:
      intents:
        balance: {dtmf: "1", goto: account}
        pay: {dtmf: "2", goto: wait}
    no_input: {retries: 0, goto: bye}
    no_match: {retries: 1, prompt: "Press 1 or 2.", barge_in: false, goto: bye}
  account:
    prompt: "Key your account number."
    barge_in: false
    listen:
      digits: {into: account, min_digits: 4, max_digits: 4, goto: thanks}
    no_input: {retries: 0, goto: bye}
    no_match: {retries: 0, goto: bye}
  wait:
    prompt: "One moment."
    webhook: {url: "builtin:demo-balance", goto: menu, on_error: menu}
  thanks:
    record: {account: "{account}"}
    prompt: "Thanks."
    barge_in: false
    hangup: true
  bye:
    prompt: "Bye."
    barge_in: false
    hangup: true
"""


def _driver() -> Driver:
    driver = Driver(load_dialplan_text(PLAN))
    driver.run([("start", None, ["play!:Press 1 for balance, 2 to pay."])])
    return driver


def test_a_key_during_a_prompt_without_barge_in_is_kept_until_listening() -> None:
    driver = _driver()
    driver.run([
        ("dtmf", "1", []),  # not listening yet, not lost either
        ("done", None, ["listen", "timer:no_input+5", "cancel:no_input", "play!:Key your account number.",
                        "mute"]),
    ])
    assert driver.machine.state_name == "account"


def test_one_burst_carries_into_the_next_listening_state() -> None:
    driver = _driver()
    driver.run([("dtmf", "11234", []), ("done", None, None)])
    assert driver.machine.state_name == "account"  # the rest waits for "Key your account number."
    driver.run([("done", None, None)])
    assert driver.machine.state_name == "thanks"
    assert driver.machine.record == {"account": "1234"}


def test_keys_after_a_move_to_a_state_that_does_not_listen_are_dropped() -> None:
    driver = _driver()
    driver.run([("dtmf", "21234", []), ("done", None, None)])
    assert driver.machine.state_name == "wait"
    driver.run([("dtmf", "1", [])])  # typed during the webhook wait: belongs to no question
    driver.run([("hook_ok", {}, None), ("done", None, ["listen", "timer:no_input+5"])])
    assert driver.machine.state_name == "menu"


def test_type_ahead_during_a_re_prompt_without_barge_in() -> None:
    driver = _driver()
    driver.run([
        ("done", None, ["listen", "timer:no_input+5"]),
        ("dtmf", "9", ["cancel:no_input", "play!:Press 1 or 2.", "mute"]),
        ("dtmf", "0", []),
        ("done", None, ["listen", "timer:no_input+5", "cancel:no_input", "mute", "play!:Bye."]),
    ])
    assert driver.machine.state_name == "bye"


def test_speech_during_a_prompt_without_barge_in_is_still_ignored() -> None:
    driver = _driver()
    driver.run([("say", "operator", []), ("done", None, ["listen", "timer:no_input+5"])])
    assert driver.machine.state_name == "menu"


def test_the_buffer_is_bounded_and_counts_what_it_drops() -> None:
    driver = _driver()
    driver.act("dtmf", "3" * (MAX_TYPEAHEAD_KEYS + 5))
    assert driver.machine.typeahead_dropped == 5


def test_a_hangup_ends_type_ahead() -> None:
    driver = _driver()
    driver.run([("dtmf", "1", []), ("hangup", None, None), ("done", None, [])])
    assert driver.machine.finished


def _settle(driver: Driver) -> None:
    """Let every queued prompt play out (a webhook wait stays a wait)."""
    for _ in range(10):
        if not driver.playing:
            return
        driver.act("done")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="0123456789*#", max_size=12))
def test_typing_ahead_is_the_same_as_typing_after_the_prompt(keys: str) -> None:
    ahead = _driver()
    ahead.act("dtmf", keys)  # during "Press 1 for balance, 2 to pay." (no barge-in)
    _settle(ahead)
    after = _driver()
    after.act("done")
    after.act("dtmf", keys)  # the same keys once the menu listens
    _settle(after)
    assert ahead.machine.transitions == after.machine.transitions
    assert ahead.machine.record == after.machine.record
    assert ahead.machine.variables.get("account") == after.machine.variables.get("account")
