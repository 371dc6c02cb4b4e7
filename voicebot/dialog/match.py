"""Utterance normalization and matching: intents, yes/no, digit strings, numbers.

Recognizers disagree on surface form ("Operator.", "operator please", "one two three four",
"1234", "1, 2, 3, 4"), so both the caller's words and the dialplan's phrases go through the same
:func:`normalize`: lower case, punctuation dropped, number words turned into digits token by token.
An intent phrase matches when its tokens occur contiguously in the utterance; the longest matching
phrase wins and ties go to the intent declared first. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voicebot.dialog.ir import Intent

_UNITS = {
    "zero": 0, "oh": 0, "o": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5,
    "six": 6, "seven": 7, "eight": 8, "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
# Words that can only mean a digit where a number is expected ("oh" is also an interjection).
_DIGIT_ONLY = {"oh", "o", "nought"}
_REPEAT = {"double": 2, "triple": 3}

YES_PHRASES = (
    "yes", "yeah", "yep", "yup", "sure", "correct", "right", "that's right", "that is right",
    "confirm", "confirmed", "ok", "okay", "absolutely", "of course", "i can", "i will", "definitely",
)
NO_PHRASES = (
    "no", "nope", "nah", "not", "negative", "cancel", "can't", "cannot", "i can't", "won't",
    "i won't", "incorrect", "wrong",
)

_PUNCT = re.compile(r"[^\w\s'*#]+")
_SPACE = re.compile(r"\s+")


def tokenize(text: str) -> list[str]:
    """Lower-case words without punctuation; apostrophes kept inside words ("can't")."""
    lowered = text.lower().replace("’", "'").replace("-", " ")
    words = _SPACE.split(_PUNCT.sub(" ", lowered).strip())
    return [w.strip("'") for w in words if w.strip("'")]


def normalize(text: str) -> tuple[str, ...]:
    """Tokens with spoken numbers turned into digit tokens ("twenty three" -> "23")."""
    tokens = tokenize(text)
    out: list[str] = []
    for group in _number_groups(tokens):
        out.append(group)
    return tuple(out)


def _number_groups(tokens: Sequence[str]) -> Iterable[str]:
    """Yield tokens, folding each run of number words into one decimal token.

    "one two three" is three numbers (digits read one by one), "twenty three" is one, "one
    hundred five" is one. A new group starts when a units word follows a units or teens word.
    """
    i = 0
    while i < len(tokens):
        if not _starts_number(tokens, i):
            yield tokens[i]
            i += 1
            continue
        total = 0
        current = 0
        last: str | None = None  # "units", "teens", "tens", "scale"
        while i < len(tokens):
            w = tokens[i]
            if w in _UNITS:
                if last in ("units", "teens"):
                    break
                current += _UNITS[w]
                last = "units"
            elif w in _TEENS:
                if last in ("units", "teens", "tens"):
                    break
                current += _TEENS[w]
                last = "teens"
            elif w in _TENS:
                if last in ("units", "teens", "tens"):
                    break
                current += _TENS[w]
                last = "tens"
            elif w in _SCALES and last is not None and last != "scale":
                scale = _SCALES[w]
                if scale == 100:
                    current *= 100
                else:
                    total += current * scale
                    current = 0
                last = "scale"
            elif w == "and" and last == "scale" and i + 1 < len(tokens) and (
                tokens[i + 1] in _UNITS or tokens[i + 1] in _TEENS or tokens[i + 1] in _TENS
            ):
                pass
            else:
                break
            i += 1
        yield str(total + current)


def _starts_number(tokens: Sequence[str], i: int) -> bool:
    word = tokens[i]
    if word in _DIGIT_ONLY:
        # "oh" is zero only next to other digits ("five oh one"), not in "oh no".
        neighbours = [*tokens[max(i - 1, 0):i], *tokens[i + 1:i + 2]]
        return any((n in _UNITS and n not in _DIGIT_ONLY) or n.isdigit() for n in neighbours)
    return word in _UNITS or word in _TEENS or word in _TENS


def digits_in(text: str) -> str:
    """All digits the caller said or typed, in order ("1, 2, 3 4" / "one two three four" -> "1234").

    Only works when the utterance is digits and filler: any other word that is not a filler
    makes the result empty, so "operator" never reads as digits.
    """
    tokens = tokenize(text)
    out: list[str] = []
    repeat = 1
    for token in _number_groups(tokens):
        if token.isdigit():
            out.append(token * repeat)
            repeat = 1
        elif token in _REPEAT:
            repeat = _REPEAT[token]
        elif token in _FILLER:
            continue
        else:
            return ""
    return "".join(out)


_FILLER = frozenset({
    "it's", "its", "it", "is", "my", "number", "account", "the", "um", "uh", "er", "ah", "and",
    "please", "that's", "thats", "i", "think", "so", "okay", "ok", "yes", "pound", "hash", "dash",
})


@dataclass(frozen=True, slots=True)
class IntentMatch:
    intent: Intent
    length: int  # tokens matched; longer is more specific


# Recognizers inflect and split words ("balances", "agents", "good bye" for "goodbye"); a phrase
# word of at least this many letters also matches the word with up to MAX_SUFFIX more letters.
MIN_STEM_LETTERS = 5
MAX_SUFFIX = 2


def _word_matches(said: str, expected: str) -> bool:
    if said == expected:
        return True
    return (
        len(expected) >= MIN_STEM_LETTERS
        and said.startswith(expected)
        and len(said) - len(expected) <= MAX_SUFFIX
        and said[len(expected):].isalpha()
    )


def _contains(haystack: Sequence[str], needle: Sequence[str]) -> bool:
    """``needle``'s words in a row in ``haystack``, allowing inflection and split/joined words."""
    n = len(needle)
    if n == 0:
        return False
    for i in range(len(haystack) - n + 1):
        if all(_word_matches(haystack[i + k], needle[k]) for k in range(n)):
            return True
    # Split or joined compounds: "good bye" vs "goodbye", "bye bye" vs "byebye".
    joined = "".join(needle)
    for width in range(1, n + 2):
        for i in range(len(haystack) - width + 1):
            if width != n and "".join(haystack[i:i + width]) == joined:
                return True
    return False


def match_intent(tokens: Sequence[str], intents: Sequence[Intent]) -> IntentMatch | None:
    """The most specific intent whose phrase or keyword occurs in ``tokens``."""
    best: IntentMatch | None = None
    token_set = set(tokens)
    for intent in intents:
        length = 0
        for phrase in intent.phrases:
            if len(phrase) > length and _contains(tokens, phrase):
                length = len(phrase)
        if length == 0 and intent.keywords & token_set:
            length = 1
        if length and (best is None or length > best.length):
            best = IntentMatch(intent, length)
    return best


def match_dtmf(key: str, intents: Sequence[Intent]) -> Intent | None:
    for intent in intents:
        if intent.dtmf == key:
            return intent
    return None
