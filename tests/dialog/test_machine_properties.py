"""Random conversations against both example dialplans: the machine never breaks its own rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.dialog.script import Driver
from voicebot.dialog import events as ev
from voicebot.dialog.loader import load_dialplan

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
PLANS = [load_dialplan(ROOT / "dialplans" / "demo.yaml"), load_dialplan(ROOT / "dialplans" / "reminder.yaml")]

UTTERANCES = [
    "", "balance", "operator", "goodbye", "yes", "no", "reschedule", "one two three four", "9 8 7 6",
    "12", "what?", "I want to talk to an agent", "uh", "another time", "1234",
    # guesses that start a "did you say" question, and answers to it
    "operate her please", "Barrens", "Good boy.", "yeah", "nope", "no, balance",
    # spoken digits with corrections and recognizer forms
    "four five six seven, no, four five six eight", "3-1-0-0", "4,7,9,2 I made.",
    # n-best
    ("4th Heaven I'm 2", "4 7 9 2"), ("mumble", "operator"), ("Ballon.", "balance", "ballet"),
]
ACTIONS = st.one_of(
    st.tuples(st.just("say"), st.sampled_from(UTTERANCES)),
    st.tuples(st.just("partial"), st.sampled_from(["", "b", "hello"])),
    st.tuples(st.just("vad"), st.none()),
    st.tuples(st.just("dtmf"), st.sampled_from(["0", "1", "2", "3", "#", "*", "1234#", "98765432"])),
    st.tuples(st.just("done"), st.none()),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 3, 6, 9])),
    st.tuples(st.just("hook_ok"), st.sampled_from([
        {}, {"next": "unknown_account"}, {"next": "menu"}, {"variables": {"balance_spoken": "5 dollars"}},
    ])),
    st.tuples(st.just("hook_fail"), st.just("HTTP 500")),
    st.tuples(st.just("xfer_fail"), st.just("403")),
    st.tuples(st.just("hangup"), st.none()),
    # outbound: the answering-machine judgement, the beep, the end of the greeting's speech
    st.tuples(st.just("amd"), st.sampled_from([("human", "short"), ("machine", "long"), ("unknown", "")])),
    st.tuples(st.just("beep"), st.none()),
    st.tuples(st.just("vad_end"), st.none()),
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([0, 1]), st.booleans(), st.lists(ACTIONS, max_size=25))
def test_random_conversations_keep_the_invariants(
    plan_index: int, detection: bool, actions: list[tuple[str, object]]
) -> None:
    driver = Driver(PLANS[plan_index])
    driver.act("start_amd" if detection else "start")
    paused = False
    listening = driver.machine.listening
    expectation = driver.machine.expectation
    live_timers = set(driver.timers)
    for action, arg in actions:
        if action in ("hook_ok", "hook_fail") and driver.webhook is None:
            continue
        was_finished = driver.machine.finished
        outstanding = len(driver.playing)  # prompts queued and not finished or stopped
        commands = [c for c, _at in driver.act(action, arg)]
        if was_finished:
            assert commands == []
        for command in commands:
            if isinstance(command, ev.StartListening):
                # Again while listening only to say that the expectation changed.
                assert not listening or command.expectation != expectation
                listening = True
                expectation = command.expectation
            elif isinstance(command, ev.StopListening):
                assert listening
                listening = False
                expectation = None
            elif isinstance(command, ev.SetTimer):
                assert command.timer_id not in live_timers
                live_timers.add(command.timer_id)
            elif isinstance(command, ev.CancelTimer):
                assert command.timer_id in live_timers
                live_timers.discard(command.timer_id)
            elif isinstance(command, ev.StopPrompt):
                assert outstanding > 0
                outstanding = 0
            elif isinstance(command, ev.PauseRecording | ev.ResumeRecording):
                # Only changes are sent: pause and resume alternate, starting with a pause.
                assert paused == isinstance(command, ev.ResumeRecording)
                paused = not paused
            elif isinstance(command, ev.PlayPrompt):
                outstanding += 1
                assert command.text  # every prompt in the examples renders to words
                assert "{" not in command.text
        # Fired timers are gone too.
        live_timers &= set(driver.timers) | {c.timer_id for c in commands if isinstance(c, ev.SetTimer)}
        assert listening == driver.machine.listening
        assert expectation == driver.machine.expectation
        if not driver.machine.finished:
            assert driver.machine.prompt_playing == bool(driver.playing)
        if driver.machine.finished:
            assert not listening
            assert not driver.timers, "a finished dialog left timers running"
        if driver.machine.state_name is not None:
            assert driver.machine.state_name in driver.plan.states
        if driver.machine.awaiting_beep:
            # Holding the message: nothing of the state plays, nothing is listened to.
            assert not listening and not driver.playing
        if "answer_type" in driver.machine.variables:
            assert driver.machine.record["answer_type"] == driver.machine.variables["answer_type"]
        if "guess" in driver.machine.variables and not driver.machine.finished:
            # Asking "did you say ...?" happens only in a listening state, and expects yes or no.
            state = driver.plan.states[driver.machine.state_name or ""]
            assert state.listen is not None
            if driver.machine.listening:
                assert driver.machine.expectation is not None
                assert driver.machine.expectation.mode == "yesno"
