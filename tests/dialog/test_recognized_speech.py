"""What the real recognizer makes of espeak-ng telephone speech, fed to the example dialplans.

This is the path the whole-call tests take (espeak-ng -> 8 kHz G.711 -> Whisper base -> dialog),
minus the network: it shows that the intents tolerate how the model writes things ("Operator
please.", "Good bye.", "1 2 3 4", "0123", "Yeah, please."). Some single words are misheard on
synthetic speech ("operator" alone -> "There we go.", "balance" -> "Ballon."); phrases are robust,
which is what the tests below use and what whole-call tests should say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.dialog.script import Driver
from voicebot.dialog.ir import Dialplan
from voicebot.dialog.loader import load_dialplan

pytestmark = pytest.mark.model

ROOT = Path(__file__).parents[2]
DEMO = load_dialplan(ROOT / "dialplans" / "demo.yaml")
REMINDER = load_dialplan(ROOT / "dialplans" / "reminder.yaml")


@pytest.fixture(scope="module")
def hear() -> Iterator[Callable[[str], str]]:
    from voicebot.stt.audio import pcm16_to_float32, resample
    from voicebot.stt.model import load_engine
    from voicebot.testing.speech import silence, telephone_speech

    engine = load_engine(workers=2)

    def transcribe(text: str) -> str:
        pcm = silence(500) + telephone_speech(text) + silence(700)
        audio = resample(pcm16_to_float32(pcm), 8000, 16000)
        return engine.transcribe(audio, language="en", partial=False).text

    yield transcribe


def _state_after(plan: Dialplan, heard: list[str]) -> tuple[str | None, dict[str, str]]:
    driver = Driver(plan)
    driver.run([("start", None, None), ("done", None, None)])
    for text in heard:
        driver.act("say", text)
        driver.act("done")
    return driver.machine.state_name, driver.machine.variables


@pytest.mark.parametrize(("plan", "said", "state"), [
    (DEMO, ["an operator please"], "transfer_to_operator"),
    (DEMO, ["I want to talk to an agent"], "transfer_to_operator"),
    (DEMO, ["goodbye"], "goodbye"),
    (DEMO, ["my account balance", "one two three four"], "lookup"),
    (REMINDER, ["yes please"], "confirmed"),
    (REMINDER, ["no"], "cancelled"),
], ids=["operator", "agent", "goodbye", "balance+account", "yes", "no"])
def test_recognized_speech_drives_the_dialplan(
    hear: Callable[[str], str], plan: Dialplan, said: list[str], state: str
) -> None:
    heard = [hear(text) for text in said]
    got, variables = _state_after(plan, heard)
    assert got == state, f"said {said}, recognizer heard {heard}"
    if state == "lookup":
        assert variables["account"] == "1234", heard
