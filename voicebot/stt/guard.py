"""Repetition and hallucination guard for short utterances (pure text, no model).

Whisper base, decoding greedily, sometimes loops: a short answer comes back twice ("No matter. No
matter."), a digit string runs on until the token cap ("5 5 5 5 5 5 5 5 5 5 5 5 5" for "five
five"), or the decoder stutters on a syllable ("ma'er, l'l'l'l'l"). The engine (``model.py``) asks
:func:`looks_degenerate` whether a greedy result needs the beam-search fallback, and passes every
text it reports through :func:`collapse_repeats`.

The rules are deliberately narrow, because real speech repeats too ("no, no", "bye bye", "four five
four five" as an account number):

* a unit of 1 to 8 words said twice or more in a row is collapsed to one when the unit ends a
  sentence (``.``, ``!``, ``?``): that is Whisper repeating a whole short sentence ("Human. Human."
  for one "human"; a caller who really says "Yes. Yes." loses nothing by hearing it once);
  Digits too: "5, 5. 5, 5." (measured, beam 2, for one "five five") is one sentence said twice;
* any unit (1 to 8 words) repeated 4 times or more in a row without a sentence end is collapsed to
  one, except digit and number words, which are left for the digit logic of the caller ("4 5 4 5 4
  5 4 5" may be an account number; a loop there is caught by :func:`looks_degenerate` and
  re-decoded instead of guessed at);
* :func:`looks_degenerate`: the decode ran into its token cap, a unit of 1-4 characters repeats 4
  times or more in a row ("l'l'l'l'"), the text compresses better than zlib ratio 2.4 (Whisper's own
  fallback threshold; meaningful from about 40 characters), the collapse above would change it, or
  it holds more than 6 spoken units a second of voiced audio (a digit of a digit group is a unit:
  telephone callers say digits one by one, 2-4 a second; "5 5 5 5 5 5 5 5 5 5 5 5 5" came back
  for one second of "five five").
"""

from __future__ import annotations

import re
import zlib

# Whisper's reference decoder falls back to a higher temperature above this gzip ratio.
COMPRESSION_RATIO_LIMIT = 2.4
MIN_CHARS_FOR_RATIO = 40
MAX_UNIT_WORDS = 8
MAX_UNITS_PER_S = 6.0
MIN_VOICED_S_FOR_RATE = 0.3
LOOP_REPEATS = 4  # a unit repeated this often in a row is a loop, whatever it is
_CHAR_LOOP = re.compile(r"(\S{1,4}?)\1{3,}")
_SENTENCE_END = (".", "!", "?")
_NUMBER_WORDS = frozenset((
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    "hundred", "thousand", "double", "triple",
))


def _key(word: str) -> str:
    """Comparison form of a word: lower case, punctuation around it dropped."""
    return word.lower().strip(".,!?;:\"'()-")


def _is_number(word: str) -> bool:
    key = _key(word)
    return bool(key) and (key.replace("-", "").isdigit() or key in _NUMBER_WORDS)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_repeats(text: str) -> str:
    """``text`` with repeated sentences and word loops said once (see the module docstring)."""
    words = text.split()
    changed = True
    while changed:
        changed = False
        for size in range(1, min(MAX_UNIT_WORDS, len(words) // 2) + 1):
            i = 0
            while i + 2 * size <= len(words):
                unit = [_key(w) for w in words[i : i + size]]
                repeats = 1
                while words[i + repeats * size : i + (repeats + 1) * size] and [
                    _key(w) for w in words[i + repeats * size : i + (repeats + 1) * size]
                ] == unit:
                    repeats += 1
                numeric = all(_is_number(w) for w in words[i : i + size])
                sentence = words[i + size - 1].endswith(_SENTENCE_END)
                if repeats >= 2 and any(unit) and (sentence or (repeats >= LOOP_REPEATS and not numeric)):
                    # Keep the last copy: it carries the sentence's final punctuation.
                    del words[i : i + (repeats - 1) * size]
                    changed = True
                i += 1
    return " ".join(words)


def spoken_units(text: str) -> int:
    """Words, with every digit of a digit group counted as one ("4792" is four spoken digits)."""
    units = 0
    for word in text.split():
        digits = sum(c.isdigit() for c in word)
        units += digits if digits else 1
    return units


def looks_degenerate(text: str, *, hit_token_cap: bool = False, voiced_s: float | None = None) -> bool:
    """Whether a greedy result looks like a decoding loop worth a beam-search retry.

    ``voiced_s``: seconds of voiced audio the text came from (enables the speaking-rate check)."""
    if hit_token_cap:
        return True
    if (
        voiced_s is not None
        and voiced_s >= MIN_VOICED_S_FOR_RATE
        and spoken_units(text) > MAX_UNITS_PER_S * voiced_s
    ):
        return True
    # Letters in the unit: "5555" is an account number, "l'l'l'l'" is a stutter.
    if any(any(c.isalpha() for c in m.group(1)) for m in _CHAR_LOOP.finditer(text)):
        return True
    if len(text) >= MIN_CHARS_FOR_RATIO and compression_ratio(text) > COMPRESSION_RATIO_LIMIT:
        return True
    return collapse_repeats(text) != " ".join(text.split())
