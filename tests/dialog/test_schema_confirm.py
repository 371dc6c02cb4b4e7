"""How ``confirm`` settings load: defaults, the dialplan's, a state's, an intent's, and what the
IR keeps for hints (phrases as written) and questions (how to say an intent)."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from voicebot.dialog.errors import DialplanError
from voicebot.dialog.ir import (
    DEFAULT_ACT_ABOVE,
    DEFAULT_CONFIRM_TEXT,
    DEFAULT_REJECT_BELOW,
    Confirm,
    ConfirmOverride,
    Listen,
)
from voicebot.dialog.loader import load_dialplan_text

pytestmark = pytest.mark.unit

PLAN = """
dialplan: s
start: a
voice: en-gb
{top}
globals:
  operator: {{phrases: ["an Operator", "agent"], keywords: ["human"], {op_confirm}goto: z}}
states:
  a:
    prompt: "Hi."
    voice: en-us
    {state}
    listen:
      intents:
        agree: {{builtin: "yes", goto: z}}
        pay_bill: {{dtmf: "1", goto: z}}
    no_input: {{goto: z}}
    no_match: {{goto: z}}
  z: {{hangup: true}}
"""


def _load(top: str = "", state: str = "", op_confirm: str = "") -> tuple[Listen, ConfirmOverride | None]:
    plan = load_dialplan_text(PLAN.format(top=top, state=state, op_confirm=op_confirm))
    listen = plan.states["a"].listen
    assert listen is not None
    return listen, plan.global_intents[0].confirm


def test_defaults() -> None:
    listen, override = _load()
    confirm = listen.confirm
    assert (confirm.enabled, confirm.retries, confirm.act_above, confirm.reject_below) == (
        True, 1, DEFAULT_ACT_ABOVE, DEFAULT_REJECT_BELOW)
    assert confirm.prompt is not None and confirm.prompt.text is not None
    assert confirm.prompt.text.source == DEFAULT_CONFIRM_TEXT
    assert confirm.prompt.voice == "en-us"  # the state's voice
    assert confirm.prompt.barge_in
    assert override is None


def test_the_dialplan_default_then_the_state_then_the_intent() -> None:
    listen, override = _load(
        top='confirm: {act_above: 0.9, reject_below: 0.6, retries: 2, prompt: "Top {guess}?"}',
        state="confirm: {reject_below: 0.4}",
        op_confirm='confirm: {say: "a person", act_above: 0.95}, ',
    )
    confirm = listen.confirm
    assert (confirm.act_above, confirm.reject_below, confirm.retries) == (0.9, 0.4, 2)
    assert confirm.prompt is not None and confirm.prompt.text is not None
    assert confirm.prompt.text.source == "Top {guess}?"
    assert confirm.prompt.voice == "en-gb"  # written at the top: the dialplan's voice
    assert override == ConfirmOverride(enabled=None, prompt=None, act_above=0.95, reject_below=None)
    merged = confirm.merged(override)
    assert (merged.act_above, merged.reject_below, merged.retries) == (0.95, 0.4, 2)


@pytest.mark.parametrize(("top", "state", "enabled"), [
    ("confirm: false", "", False),
    ("confirm: false", "confirm: true", True),
    ("confirm: false", "confirm: {act_above: 0.9}", True),  # settings turn it on
    ("", "confirm: false", False),
])
def test_on_and_off(top: str, state: str, enabled: bool) -> None:
    listen, _ = _load(top=top, state=state)
    assert listen.confirm.enabled is enabled


def test_intent_on_off() -> None:
    _, override = _load(op_confirm="confirm: false, ")
    assert Confirm().merged(override).enabled is False
    # Settings on an intent keep the state's on/off: a state that never asks, never asks.
    listen, override = _load(state="confirm: false", op_confirm='confirm: {say: "someone"}, ')
    assert listen.confirm.merged(override).enabled is False
    listen, override = _load(state="confirm: false", op_confirm="confirm: true, ")
    assert listen.confirm.merged(override).enabled is True
    assert Confirm(enabled=False).merged(ConfirmOverride(enabled=True)).enabled is True
    assert Confirm().merged(None) == Confirm()


def test_what_intents_keep_for_hints_and_questions() -> None:
    plan = load_dialplan_text(PLAN.format(top="", state="", op_confirm=""))
    operator = plan.global_intents[0]
    assert operator.texts == ("an Operator", "agent", "human")  # as written, phrases then keywords
    assert operator.phrases == (("an", "operator"), ("agent",))
    assert operator.say == "an Operator"  # the first phrase, unless confirm: {say: ...}
    listen = plan.states["a"].listen
    assert listen is not None
    agree, pay_bill = listen.intents
    assert agree.builtin == "yes" and "yes" in agree.texts and agree.say == "yes"
    assert pay_bill.builtin is None and pay_bill.texts == () and pay_bill.say == "pay bill"


def test_an_audio_question_is_an_audio_file_of_the_plan(tmp_path: Path) -> None:
    wav = tmp_path / "did_you_say.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    text = PLAN.format(top="", state="confirm: {audio: did_you_say.wav}",
                       op_confirm="confirm: {audio: did_you_say.wav, barge_in: false}, ")
    plan = load_dialplan_text(text, base_dir=tmp_path)
    assert plan.audio_files() == [wav.resolve(), wav.resolve()]


@pytest.mark.parametrize(("top", "state", "op_confirm", "message"), [
    ("confirm: {reject_below: 0.9}", "", "",
     "<string>:5: top level confirm: reject_below 0.9 is more than act_above 0.8"),
    ("", "confirm: {act_above: -1}", "",
     "<string>:12: state 'a' confirm: 'act_above' must be a confidence from 0 to 1, not -1"),
    ("", "confirm: {retries: 11}", "",
     "<string>:12: state 'a' confirm: 'retries' must be a whole number from 0 to 10, not 11"),
    ("", "confirm: {barge_in: false}", "",
     "<string>:12: state 'a' confirm: 'barge_in' without a 'prompt' or 'audio' to interrupt"),
    ("", "", "confirm: {act_above: 0.5, reject_below: 0.6}, ",
     "<string>:7: globals intent 'operator' confirm: reject_below 0.6 is more than act_above 0.5"),
    ("", "", "confirm: [yes], ",
     "<string>:7: globals intent 'operator' confirm: 'confirm' (true, false or settings) must be a mapping "
     "of keys, not a list"),
    ("confirm: {prompt: \"{who}?\"}", "", "",
     "<string>:5: top level confirm: 'prompt' uses unknown variable 'who' (declare it under 'variables:')"),
])
def test_errors_name_file_line_and_key(top: str, state: str, op_confirm: str, message: str) -> None:
    with pytest.raises(DialplanError) as caught:
        load_dialplan_text(PLAN.format(top=top, state=state, op_confirm=op_confirm))
    assert message in str(caught.value).splitlines()
