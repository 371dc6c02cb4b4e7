"""Guesses by meaning with the real sentence-embedding model, in demo.yaml's menu: callers' own
words that no phrase list holds are asked about, never acted on; off-topic speech stays no-match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dialog.script import Driver
from voicebot.dialog.loader import load_dialplan
from voicebot.meaning import PhraseSimilarity, shared_similarity

pytestmark = pytest.mark.model

DEMO = load_dialplan(Path(__file__).parents[2] / "dialplans" / "demo.yaml")

WELCOME = "play:Welcome to the voice bot demo."
MENU: list[tuple[str, Any, list[str] | None]] = [
    ("start", None, [WELCOME, "listen"]), ("done", None, ["timer:no_input+6"]),
]
DID_GOODBYE = "play:Sorry, did you say goodbye, to end the call? Please say yes or no."
DID_OPERATOR = "play:Sorry, did you say operator? Please say yes or no."
DID_BALANCE = "play:Sorry, did you say balance? Please say yes or no."
NO_MATCH = "play:Sorry, I did not get that. Say balance, operator, or goodbye."
BYE = "play!:Thank you for calling. Goodbye."


@pytest.fixture(scope="module")
def similarity() -> PhraseSimilarity:
    return shared_similarity()


@pytest.mark.parametrize(("said", "question"), [
    ("I'm all done", DID_GOODBYE),
    ("No, that's it.", DID_GOODBYE),  # the "no," answers "anything else?" (held-out set 4)
    ("I'd like to end this call now", DID_GOODBYE),
    ("is there anybody there I can talk to", DID_OPERATOR),
    ("what's left in my account", DID_BALANCE),
])
def test_words_no_list_holds_are_asked_about(similarity: PhraseSimilarity, said: str, question: str) -> None:
    driver = Driver(DEMO, similarity=similarity)
    driver.run([*MENU, ("say", said, ["cancel:no_input", question, "listen"])])
    assert driver.machine.state_name == "menu"


def test_yes_to_the_guess_acts_on_it(similarity: PhraseSimilarity) -> None:
    driver = Driver(DEMO, similarity=similarity)
    driver.run([
        *MENU,
        ("say", "I'm all done", ["cancel:no_input", DID_GOODBYE, "listen"]),
        ("say", "yes", ["stop", "timer:no_input+6", "cancel:no_input", "record:outcome=goodbye", "mute",
                        BYE]),
    ])
    assert driver.machine.state_name == "goodbye"


def test_no_to_the_guess_is_a_no_match(similarity: PhraseSimilarity) -> None:
    driver = Driver(DEMO, similarity=similarity)
    driver.run([
        *MENU,
        ("say", "is there anybody there I can talk to", ["cancel:no_input", DID_OPERATOR, "listen"]),
        ("done", None, ["timer:no_input+6"]),
        ("say", "no", ["cancel:no_input", NO_MATCH, "listen"]),
    ])
    assert driver.machine.state_name == "menu"


@pytest.mark.parametrize("said", [
    "what's the weather like today", "I'd like to order a pizza", "my dog is called Rex",
    "I lost my credit card", "what are your opening hours",
])
def test_off_topic_speech_is_still_no_match(similarity: PhraseSimilarity, said: str) -> None:
    driver = Driver(DEMO, similarity=similarity)
    driver.run([*MENU, ("say", said, ["cancel:no_input", NO_MATCH, "listen"])])


def test_a_negated_request_is_not_guessed(similarity: PhraseSimilarity) -> None:
    # Close in meaning to "i'm finished" (the embedding does not see the "not"); never a guess.
    assert max(similarity.similarities("i'm not finished yet", ["i'm finished"])) >= 0.5
    driver = Driver(DEMO, similarity=similarity)
    driver.run([*MENU, ("say", "I'm not finished yet", ["cancel:no_input", NO_MATCH, "listen"])])
