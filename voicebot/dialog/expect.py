"""What a listening state expects the caller to say, for the recognizer.

Built purely from the state (and the prompt text the caller just heard, variables substituted):
``mode`` is ``digits`` for a digit/number capture, ``yesno`` for a confirmation question or a
state whose intents are only the built-in yes/no sets, ``menu`` for intents, ``free`` for free
text. ``phrases`` are the intents' and the global handlers' phrases and keywords as written, in
order, without duplicates. The field names and bounds are those of
``voicebot.stt.hints.RecognitionHints`` (which the dialog does not import), so the application's
conversion is ``RecognitionHints(mode=e.mode, prompt=e.prompt, phrases=e.phrases,
min_digits=e.min_digits, max_digits=e.max_digits)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from voicebot.dialog.ir import Intent, Listen

ExpectMode = Literal["free", "menu", "digits", "yesno"]
# The recognition hints' bounds (voicebot.stt.hints): a hint beyond them would be refused.
MAX_PHRASES = 200
MAX_PHRASE_CHARS = 200
MAX_PROMPT_CHARS = 1000
MAX_DIGITS = 32


@dataclass(frozen=True, slots=True)
class Expectation:
    mode: ExpectMode = "free"
    prompt: str = ""
    phrases: tuple[str, ...] = ()
    min_digits: int = 1
    max_digits: int = MAX_DIGITS


def _phrases(intents: Sequence[Intent]) -> list[str]:
    out: list[str] = []
    for intent in intents:
        out += [t for t in intent.texts if t.strip() and len(t) <= MAX_PHRASE_CHARS]
    return out


def _prompt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_PROMPT_CHARS else text[-MAX_PROMPT_CHARS:]  # the end was heard last


def expectation_for(
    listen: Listen,
    global_intents: Sequence[Intent],
    prompt: str,
    *,
    confirming: bool = False,
    yes_no: Sequence[str] = (),
) -> Expectation:
    """The expectation of a state that listens; ``confirming`` while it asks "Did you say ...?"
    (``yes_no`` are then the answers' phrases)."""
    globals_ = _phrases(global_intents)
    capture = listen.capture
    if confirming:
        mode: ExpectMode = "yesno"
        phrases = [*yes_no, *_phrases(listen.intents), *globals_]
    elif capture is not None and capture.kind in ("digits", "number"):
        mode = "digits"
        phrases = [*_phrases(listen.intents), *globals_]
    elif capture is not None and capture.kind == "text":
        mode = "free"
        phrases = [*_phrases(listen.intents), *globals_]
    elif listen.intents and all(i.builtin in ("yes", "no") for i in listen.intents):
        mode = "yesno"
        phrases = [*_phrases(listen.intents), *globals_]
    else:
        mode = "menu"
        phrases = [*_phrases(listen.intents), *globals_]
    unique = tuple(dict.fromkeys(phrases))[:MAX_PHRASES]
    min_digits, max_digits = 1, MAX_DIGITS
    if mode == "digits" and capture is not None:
        max_digits = min(capture.max_digits, MAX_DIGITS)
        min_digits = min(capture.min_digits, max_digits)
    return Expectation(mode, _prompt(prompt), unique, min_digits, max_digits)
