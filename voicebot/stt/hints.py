"""Recognition hints: what the dialog expects the caller to say, as a documented v3 extension.

The SpeechKit STT v3 API has no field for "the caller is answering this menu". voicebot owns both
the dialog and the embedded recognizer, so the call-leg client tells the embedded server what it
expects on the ``RecognizeStreaming`` call's request metadata, under one binary key:

    x-voicebot-hints-bin: UTF-8 JSON {"v": 1, "mode": "menu", "prompt": "...", "phrases": [...],
                                       "min_digits": 4, "max_digits": 8}

gRPC servers ignore metadata they do not know, so the cloud service (and any third-party v3 server)
behaves exactly as without hints, and a third-party client that sends none gets exactly the plain
behaviour from our server. A hint applies to the whole session, so the client opens a new session
when the dialog starts listening for something else (``voicebot.stt.stream``).

Modes:

* ``free``: any speech; ``prompt`` (the text the caller just heard) may still bias decoding.
* ``menu``: a closed set of ``phrases`` (intents and globals); the engine may rescore them against
  the audio and report the best as an alternative with its confidence, or none when the speech is
  out of grammar.
* ``digits``: a digit string of ``min_digits``..``max_digits`` digits.
* ``yesno``: a yes/no answer.

Pure: no grpc import; the adapters pass the (key, value) pairs through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from voicebot.stt.errors import InvalidRequest

HINTS_METADATA_KEY = "x-voicebot-hints-bin"
HINTS_VERSION = 1
HintMode = Literal["free", "menu", "digits", "yesno"]
HINT_MODES: tuple[HintMode, ...] = ("free", "menu", "digits", "yesno")
# Bounds that keep a hint cheap to parse and to rescore: a menu is a handful of intents with a few
# phrases each, a prompt is one or two sentences.
MAX_HINTS_BYTES = 16 * 1024
MAX_PHRASES = 200
MAX_PHRASE_CHARS = 200
MAX_PROMPT_CHARS = 1000
MAX_DIGITS = 32


@dataclass(frozen=True, slots=True)
class RecognitionHints:
    """What the dialog expects next. ``phrases`` only matter in ``menu`` mode, the digit bounds
    only in ``digits`` mode; ``prompt`` in every mode."""

    mode: HintMode = "free"
    prompt: str = ""
    phrases: tuple[str, ...] = ()
    min_digits: int = 1
    max_digits: int = MAX_DIGITS

    def __post_init__(self) -> None:
        if self.mode not in HINT_MODES:
            raise InvalidRequest(f"hints: mode {self.mode!r} is not one of {', '.join(HINT_MODES)}")
        if len(self.prompt) > MAX_PROMPT_CHARS:
            raise InvalidRequest(f"hints: prompt is {len(self.prompt)} characters, at most "
                                 f"{MAX_PROMPT_CHARS}")
        if len(self.phrases) > MAX_PHRASES:
            raise InvalidRequest(f"hints: {len(self.phrases)} phrases, at most {MAX_PHRASES}")
        for phrase in self.phrases:
            if not phrase.strip() or len(phrase) > MAX_PHRASE_CHARS:
                raise InvalidRequest(f"hints: phrase {phrase[:40]!r} is empty or longer than "
                                     f"{MAX_PHRASE_CHARS} characters")
        if not 1 <= self.min_digits <= self.max_digits <= MAX_DIGITS:
            raise InvalidRequest(f"hints: need 1 <= min_digits ({self.min_digits}) <= max_digits "
                                 f"({self.max_digits}) <= {MAX_DIGITS}")

    def to_json(self) -> bytes:
        body: dict[str, object] = {"v": HINTS_VERSION, "mode": self.mode}
        if self.prompt:
            body["prompt"] = self.prompt
        if self.phrases:
            body["phrases"] = list(self.phrases)
        if self.mode == "digits":
            body["min_digits"] = self.min_digits
            body["max_digits"] = self.max_digits
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def to_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((HINTS_METADATA_KEY, self.to_json()),)


def parse_hints(data: bytes) -> RecognitionHints:
    """Decode the metadata value; every problem is an :class:`InvalidRequest` naming the field."""
    if len(data) > MAX_HINTS_BYTES:
        raise InvalidRequest(f"hints: {len(data)} bytes, at most {MAX_HINTS_BYTES}")
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"hints: {HINTS_METADATA_KEY} is not UTF-8 JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidRequest("hints: expected a JSON object")
    unknown = sorted(set(body) - {"v", "mode", "prompt", "phrases", "min_digits", "max_digits"})
    if unknown:
        raise InvalidRequest(f"hints: unknown field(s) {', '.join(unknown)}")
    if body.get("v") != HINTS_VERSION:
        raise InvalidRequest(f"hints: version {body.get('v')!r} is not supported (expected {HINTS_VERSION})")
    mode = body.get("mode", "free")
    prompt = body.get("prompt", "")
    phrases = body.get("phrases", [])
    min_digits = body.get("min_digits", 1)
    max_digits = body.get("max_digits", MAX_DIGITS)
    if not isinstance(mode, str) or mode not in HINT_MODES:
        raise InvalidRequest(f"hints: mode {mode!r} is not one of {', '.join(HINT_MODES)}")
    if not isinstance(prompt, str):
        raise InvalidRequest("hints: prompt must be a string")
    if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
        raise InvalidRequest("hints: phrases must be a list of strings")
    for name, value in (("min_digits", min_digits), ("max_digits", max_digits)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(f"hints: {name} must be an integer")
    return RecognitionHints(mode=mode, prompt=prompt, phrases=tuple(phrases),
                            min_digits=min_digits, max_digits=max_digits)


def hints_from_metadata(metadata: Iterable[tuple[str, str | bytes]]) -> RecognitionHints | None:
    """The hints in a call's metadata, or None when it carries none (plain v3 clients)."""
    for key, value in metadata:
        if key.lower() == HINTS_METADATA_KEY:
            return parse_hints(value if isinstance(value, bytes) else value.encode("utf-8"))
    return None


def menu_hints(prompt: str, phrases: Sequence[str]) -> RecognitionHints:
    """Convenience for a closed menu: phrases de-duplicated in order."""
    return RecognitionHints(mode="menu", prompt=prompt, phrases=tuple(dict.fromkeys(phrases)))
