"""Text normalization for final results: spoken numbers become digits.

SpeechKit's ``TEXT_NORMALIZATION_ENABLED`` turns "four five six seven" into "4567"; a voice robot
needs that to match account numbers and menu choices. This module does it for English and Russian
number words (nominative forms), leaving every other word, its case and its punctuation alone.

How it works: the text is split on whitespace; each token's core (without surrounding punctuation,
hyphenated parts split) is looked up in a per-language table. A maximal run of adjacent number words
(not broken by punctuation) is read left to right into groups: a word that can extend the current
number does ("twenty" + "three", "one" + "hundred" + "and" + "five", "две" + "тысячи" + "сто"); a word
that cannot starts a new group ("four" | "five", "nineteen" | "eighty" + "four"). The groups of a run
are written next to each other without spaces, because adjacent spoken numbers are a digit string
(phone, account, card, year: "nineteen eighty four" -> "1984"). "oh" counts as zero only inside such
a run, and a lone "one" after a determiner ("this one", "no one") stays a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_EN_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9,
}
_EN_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_EN_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
    "ninety": 90,
}
_EN_SCALES = {"thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}

_RU_UNITS = {
    "ноль": 0, "нуль": 0, "один": 1, "одна": 1, "одно": 1, "два": 2, "две": 2, "три": 3, "четыре": 4,
    "пять": 5, "шесть": 6, "семь": 7, "восемь": 8, "девять": 9,
}
_RU_TEENS = {
    "десять": 10, "одиннадцать": 11, "двенадцать": 12, "тринадцать": 13, "четырнадцать": 14,
    "пятнадцать": 15, "шестнадцать": 16, "семнадцать": 17, "восемнадцать": 18, "девятнадцать": 19,
}
_RU_TENS = {
    "двадцать": 20, "тридцать": 30, "сорок": 40, "пятьдесят": 50, "шестьдесят": 60, "семьдесят": 70,
    "восемьдесят": 80, "девяносто": 90,
}
_RU_HUNDREDS = {
    "сто": 100, "двести": 200, "триста": 300, "четыреста": 400, "пятьсот": 500, "шестьсот": 600,
    "семьсот": 700, "восемьсот": 800, "девятьсот": 900,
}
_RU_SCALES = {
    "тысяча": 1000, "тысячи": 1000, "тысяч": 1000,
    "миллион": 1_000_000, "миллиона": 1_000_000, "миллионов": 1_000_000,
    "миллиард": 1_000_000_000, "миллиарда": 1_000_000_000, "миллиардов": 1_000_000_000,
}

_DETERMINERS = frozenset(
    ["this", "that", "the", "no", "any", "every", "each", "some", "which", "another", "a", "an"]
)
_MULTIPLIERS = {"double": 2, "triple": 3}

_PUNCT = ".,!?;:\"'«»()[]…"
_TOKEN_RE = re.compile(rf"^([{re.escape(_PUNCT)}]*)(.*?)([{re.escape(_PUNCT)}]*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Word:
    kind: str  # unit, teen, tens, hundred (en multiplier), hundreds (ru word), scale, and, a, oh, times
    value: int


def _lookup(word: str) -> _Word | None:
    w = word.lower().replace("ё", "е")
    for table, kind in (
        (_EN_UNITS, "unit"), (_EN_TEENS, "teen"), (_EN_TENS, "tens"), (_EN_SCALES, "scale"),
        (_RU_UNITS, "unit"), (_RU_TEENS, "teen"), (_RU_TENS, "tens"), (_RU_HUNDREDS, "hundreds"),
        (_RU_SCALES, "scale"), (_MULTIPLIERS, "times"),
    ):
        if w in table:
            return _Word(kind, table[w])
    if w == "hundred":
        return _Word("hundred", 100)
    if w == "and":
        return _Word("and", 0)
    if w in ("a", "an"):
        return _Word("a", 1)
    if w == "oh":
        return _Word("oh", 0)
    return None


class _Group:
    """One number being read: ``total`` of completed scales plus ``current`` below 1000."""

    def __init__(self) -> None:
        self.total = 0
        self.current = 0
        self.last_kind = ""
        self.last_scale = 0
        self.words = 0
        self.pending_and = False
        self.digits: str | None = None  # "double five" -> "55"

    def try_add(self, word: _Word) -> bool:
        kind, value = word.kind, word.value
        if self.digits is not None:
            return False
        last = self.last_kind
        if kind == "and":
            # "one hundred and five": only inside a number, right after a hundred or a scale word.
            if last in ("hundred", "hundreds", "scale") and not self.pending_and:
                self.pending_and = True
                return True
            return False
        if self.pending_and and kind not in ("unit", "teen", "tens"):
            return False
        if kind in ("unit", "oh"):
            ok = self.words == 0 or (
                last in ("tens", "hundred", "hundreds", "scale") and self.current % 10 == 0
            )
            if kind == "oh" or (kind == "unit" and value == 0):
                ok = self.words == 0  # zero never extends a number
            if not ok:
                return False
            self.current += value
        elif kind in ("teen", "tens"):
            after_hundred = last in ("hundred", "hundreds", "scale") and self.current % 100 == 0
            if not (self.words == 0 or after_hundred):
                return False
            self.current += value
        elif kind == "hundred":
            # "five hundred", "a hundred", "nineteen hundred", "twenty five hundred"
            if not (last in ("unit", "teen", "tens", "a") and 1 <= self.current <= 99):
                return False
            self.current *= 100
        elif kind == "hundreds":
            if not (self.words == 0 or (last == "scale" and self.current == 0)):
                return False
            self.current += value
        elif kind == "scale":
            if self.last_scale and value >= self.last_scale:
                return False
            if self.current == 0:
                if self.words:
                    return False
                self.current = 1  # a bare scale word: "тысяча двести" is 1200
            self.total += self.current * value
            self.current = 0
            self.last_scale = value
        else:
            return False
        self.last_kind = kind
        self.words += 1
        self.pending_and = False
        return True

    def text(self) -> str:
        if self.digits is not None:
            return self.digits
        return str(self.total + self.current)


def _split_core(token: str) -> tuple[str, str, str]:
    match = _TOKEN_RE.match(token)
    assert match is not None  # the pattern matches any string
    return match.group(1), match.group(2), match.group(3)


def _number_parts(core: str) -> list[_Word] | None:
    """The number words of a token core ("twenty-three" -> two), or None if it is not all numbers."""
    if not core:
        return None
    parts = core.split("-")
    words = [_lookup(p) for p in parts]
    if any(w is None for w in words):
        return None
    return [w for w in words if w is not None]


_NUMERIC_KINDS = frozenset({"unit", "teen", "tens", "hundreds", "scale", "oh"})


def normalize_numbers(text: str) -> str:
    """Spoken English/Russian numbers in ``text`` -> digits; everything else unchanged."""
    tokens = text.split()
    parsed = [(*_split_core(tok), _number_parts(_split_core(tok)[1])) for tok in tokens]
    out: list[str] = []
    i = 0
    while i < len(tokens):
        lead, _core, _trail, words = parsed[i]
        starts_number = words is not None and (
            any(w.kind in _NUMERIC_KINDS for w in words) or words[0].kind in ("a", "times", "oh")
        )
        if not starts_number:
            out.append(tokens[i])
            i += 1
            continue
        # Collect the run: adjacent number tokens with no punctuation between them.
        j = i
        run: list[tuple[int, _Word]] = []
        while j < len(tokens):
            lead_j, _core_j, trail_j, words_j = parsed[j]
            if words_j is None or (j > i and lead_j):
                break
            run += [(j, w) for w in words_j]
            j += 1
            if trail_j:
                break
        text_out, used = _read_run(run, tokens, i)
        if used == 0:
            out.append(tokens[i])
            i += 1
            continue
        last_token = run[used - 1][0]
        trail_out = parsed[last_token][2]
        out.append(lead + text_out + trail_out)
        i = last_token + 1
    return " ".join(out)


def _read_run(run: list[tuple[int, _Word]], tokens: list[str], first: int) -> tuple[str, int]:
    """Read number groups from the start of ``run``; returns the digits and how many words were used.

    A run must end on a token boundary; trailing "and"/"a" are given back to the text.
    """
    groups: list[_Group] = []
    used = 0
    k = 0
    while k < len(run):
        _, word = run[k]
        if word.kind == "times" and k + 1 < len(run) and run[k + 1][1].kind in ("unit", "oh"):
            digit = str(run[k + 1][1].value)
            group = _Group()
            group.digits = digit * word.value
            groups.append(group)
            k += 2
            used = k
            continue
        if word.kind == "oh" and not _has_digit_neighbour(run, k):
            break
        if word.kind == "a" and not (k + 1 < len(run) and run[k + 1][1].kind in ("hundred", "scale")):
            break
        if groups and groups[-1].try_add(word):
            k += 1
        else:
            group = _Group()
            if word.kind == "a":
                group.current = 1
                group.last_kind = "a"
                group.words = 1
            elif not group.try_add(word):
                break
            groups.append(group)
            k += 1
        if word.kind not in ("and", "a"):
            used = k
    # Never end in the middle of a hyphenated token ("five-and-..."): leave such a run as words.
    if used and used < len(run) and run[used][0] == run[used - 1][0]:
        return "", 0
    if not groups or used == 0:
        return "", 0
    # Recompute on exactly the used words so trailing "and"/"a" are not in the number.
    if used < k:
        return _read_run(run[:used], tokens, first)
    # A lone "one" after a determiner is a pronoun ("this one", "no one"), not a number.
    if (
        len(groups) == 1 and groups[0].words == 1 and groups[0].digits is None
        and groups[0].total + groups[0].current == 1 and first > 0
        and _split_core(tokens[first - 1])[1].lower() in _DETERMINERS
    ):
        return "", 0
    return "".join(g.text() for g in groups), used


def _has_digit_neighbour(run: list[tuple[int, _Word]], k: int) -> bool:
    neighbours = [run[n][1] for n in (k - 1, k + 1) if 0 <= n < len(run)]
    return any(w.kind in ("unit", "oh", "teen", "tens") for w in neighbours)
