"""Utterance normalization and matching: intents, yes/no, digit strings, numbers.

Recognizers disagree on surface form ("Operator.", "operator please", "one two three four",
"1234", "1, 2, 3, 4"), so both the caller's words and the dialplan's phrases go through the same
:func:`normalize`: lower case, punctuation dropped, number words turned into digits token by token.
A phrase matches with a score in [0, 1] (:func:`phrase_score`): its words in order, each exact (1),
inflected (0.95) or a sound-alike (at most 0.75, :mod:`voicebot.dialog.phonetic`), with up to
three filler words inside ("a real person" for "a person", 0.92 per word) but never a negation.
Repeated n-grams, which Whisper produces on short utterances, are collapsed before matching. The
most confident intent wins, then the longest phrase, then the intent declared first; what to do
with a confidence is :mod:`voicebot.dialog.understand`'s business. Digit strings
(:func:`parse_digits`) allow "oh", "double"/"triple", pairs ("forty seven"), recognizer forms
("3-1-0-0", "4,7,9,2") and spoken corrections. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voicebot.dialog.ir import Intent
from voicebot.dialog.phonetic import is_inflection, word_similarity

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
    "that works", "works for me", "sounds good", "that's fine", "perfect", "go ahead", "certainly",
)
NO_PHRASES = (
    "no", "nope", "nah", "not", "negative", "cancel", "can't", "cannot", "i can't", "won't",
    "i won't", "incorrect", "wrong", "doesn't work",
)

_PUNCT = re.compile(r"[^\w\s'*#]+")
_SPACE = re.compile(r"\s+")


def tokenize(text: str) -> list[str]:
    """Lower-case words without punctuation; apostrophes kept inside words ("can't")."""
    lowered = text.lower().replace("’", "'").replace("-", " ")
    words = _SPACE.split(_PUNCT.sub(" ", lowered).strip())
    return [w.strip("'") for w in words if w.strip("'")]


# Compound pronouns a recognizer writes as two words ("I need to talk to some one"): joined before
# numbers are read, so "one" stays part of the word instead of becoming "1". "no one" is left as it is.
_COMPOUNDS = {
    ("some", "one"): "someone", ("some", "body"): "somebody", ("any", "one"): "anyone",
    ("any", "body"): "anybody", ("every", "one"): "everyone", ("every", "body"): "everybody",
}


def join_compounds(tokens: Sequence[str]) -> list[str]:
    """``tokens`` with the two-word spellings of :data:`_COMPOUNDS` joined into one word."""
    out: list[str] = []
    for token in tokens:
        if out and (out[-1], token) in _COMPOUNDS:
            out[-1] = _COMPOUNDS[(out[-1], token)]
        else:
            out.append(token)
    return out


def normalize(text: str) -> tuple[str, ...]:
    """Tokens with compound pronouns joined ("some one" -> "someone") and spoken numbers turned
    into digit tokens ("twenty three" -> "23")."""
    return tuple(_number_groups(join_compounds(tokenize(text))))


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
                # "twenty zero" is 2 0 0 said in pairs, never 20 + 0.
                if last in ("units", "teens") or (last == "tens" and _UNITS[w] == 0):
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


# -- repetition ---------------------------------------------------------------------------------


def collapse_repeats(tokens: Sequence[str]) -> tuple[str, ...]:
    """Drop immediately repeated n-grams: Whisper repeats itself on short utterances ("No matter.
    No matter."); "no matter no matter" -> "no matter", "bye bye" -> "bye"."""
    out = list(tokens)
    changed = True
    while changed:
        changed = False
        for n in range(len(out) // 2, 0, -1):
            for i in range(len(out) - 2 * n + 1):
                if out[i:i + n] == out[i + n:i + 2 * n]:
                    del out[i + n:i + 2 * n]
                    changed = True
                    break
            if changed:
                break
    return tuple(out)


_REPEATED_TEXT = re.compile(r"^\s*(.+?)(?:[\s,.;!?]+\1)+[\s.!?]*$", re.IGNORECASE | re.DOTALL)


def collapse_repeated_text(text: str) -> str:
    """The text once when the whole utterance is one phrase said several times, else unchanged."""
    found = _REPEATED_TEXT.match(text)
    return found.group(1).strip() if found else text


# -- digits -------------------------------------------------------------------------------------

# Words that stand for a digit only next to other digits, where a digit string is expected.
_HOMOPHONES = {"to": "two", "too": "two", "for": "four", "fore": "four", "won": "one", "ate": "eight",
               "niner": "nine", "o": "zero", "oh": "zero", "nought": "zero", "naught": "zero"}
# Said between digits to take back what came before ("four five, no, four six").
_CORRECTIONS = frozenset({"no", "sorry", "correction", "wait", "actually", "oops", "mean", "scratch"})
_ORDINAL = re.compile(r"^(\d+)(?:st|nd|rd|th)$")
# A digit string with at most this many words around it that are neither digits nor filler still
# counts, as a guess: recognizers append words to short utterances ("3-1-0-0 I made.") and mishear
# a carrier phrase ("My count number is 6251.", "In my account number, in six, two, five, one.").
# The words may come before the digits or after them, never between.
MAX_TRAILING_WORDS = 2
MIN_DIGITS_BEFORE_TRAILING = 3
TRAILING_CONFIDENCE = 0.7


@dataclass(frozen=True, slots=True)
class SpokenDigits:
    """The digits a caller said; ``confidence`` is 1.0 unless words had to be ignored."""

    digits: str
    confidence: float


def _is_digit_word(token: str) -> bool:
    return token.isdigit() or token in _UNITS or token in _TEENS or token in _TENS


def _digit_tokens(tokens: Sequence[str]) -> list[str]:
    """Map "oh", ordinals and (next to digits) homophones onto number words."""
    out: list[str] = []
    for i, token in enumerate(tokens):
        ordinal = _ORDINAL.match(token)
        if ordinal:
            out.append(ordinal.group(1))
        elif token in ("oh", "o", "nought", "naught"):
            out.append("zero")
        elif token in _HOMOPHONES:
            neighbours = [*tokens[max(i - 1, 0):i], *tokens[i + 1:i + 2]]
            out.append(_HOMOPHONES[token] if any(_is_digit_word(n) for n in neighbours) else token)
        else:
            out.append(token)
    return out


def parse_digits(text: str) -> SpokenDigits:
    """The digit string in an utterance of digits and filler, with spoken corrections applied.

    "1, 2, 3 4" / "one two three four" / "3-1-0-0" -> "1234"-style strings; "double four" -> "44"
    (and "Double 419." -> "4419": "double" repeats the next digit, not a written group);
    "forty seven ninety two" -> "4792"; "four five, no, four six" -> "46" (a correction of k digits
    replaces the last k digits said, or all of them when it is as long). Any other word makes the
    result empty, so "operator" never reads as digits -- except up to two words before or after
    three or more digits (a misheard carrier phrase, words appended to the digits), which give the
    digits with a lower confidence. Fillers ("it's", "my number is", "um") may stand around the
    digits, but between two digits only hesitations ("um", "and", "dash").
    """
    segments: list[list[str]] = [[]]
    repeat = 1
    trailing = 0
    leading = 0
    carrier = False
    for token in _number_groups(_digit_tokens(tokenize(text))):
        if token.isdigit():
            if trailing or carrier:
                return SpokenDigits("", 0.0)  # words between digits: not a digit string
            # "double" repeats the digit said next: "double 4" -> 44, and Whisper's "Double 419." for
            # "double four one nine" -> 4419 (only the first digit of a written group is doubled).
            segments[-1].append(token[0] * repeat + token[1:])
            repeat = 1
        elif token in _REPEAT:
            repeat = _REPEAT[token]
        elif token in _CORRECTIONS:
            carrier = False
            if segments[-1]:
                segments.append([])
        elif token in _FILLER:
            # A carrier word inside the digits ("I-8-7-6-I-4-3-2" for "nine eight seven six five
            # four three two") is a digit the recognizer misheard, not a filler: only hesitations
            # may sit between digits.
            carrier = carrier or (bool(segments[-1]) and token not in _HESITATIONS)
            continue
        elif not any(segments):
            leading += 1  # a misheard carrier phrase, if enough digits follow
            if leading > MAX_TRAILING_WORDS:
                return SpokenDigits("", 0.0)
        elif sum(len(d) for s in segments for d in s) >= MIN_DIGITS_BEFORE_TRAILING:
            trailing += 1
            if leading + trailing > MAX_TRAILING_WORDS:
                return SpokenDigits("", 0.0)
        else:
            return SpokenDigits("", 0.0)
    said = "".join(segments[0])
    for segment in segments[1:]:
        repair = "".join(segment)
        if not repair:
            return SpokenDigits("", 0.0)  # "1 2 3 4, no": taken back, nothing said instead
        said = repair if len(repair) >= len(said) else said[:len(said) - len(repair)] + repair
    if not said or (leading and len(said) < MIN_DIGITS_BEFORE_TRAILING):
        return SpokenDigits("", 0.0)
    return SpokenDigits(said, TRAILING_CONFIDENCE if trailing or leading else 1.0)


def digits_in(text: str) -> str:
    """All digits the caller said or typed, in order ("1, 2, 3 4" -> "1234"); "" if not digits."""
    return parse_digits(text).digits


_FILLER = frozenset({
    "it's", "its", "it", "is", "my", "number", "account", "the", "um", "uh", "er", "ah", "and",
    "please", "that's", "thats", "i", "think", "so", "okay", "ok", "yes", "pound", "hash", "dash",
    "hmm", "mm", "well", "code", "pin", "that", "was",
})
# The fillers that may also stand between digits: hesitations and separators ("four seven, um, nine
# two", "two dash five"); the others ("it's", "my", "I", "the") only before or after them.
_HESITATIONS = frozenset({"um", "uh", "er", "ah", "hmm", "mm", "and", "dash", "pound", "hash"})

# -- phrases ------------------------------------------------------------------------------------

# Words the caller may put inside a phrase ("a real person" for "a person"): at most MAX_GAP in
# one place, each costing GAP_PENALTY of the score. A negation is never skipped: "that's not all"
# must not match "that's all".
MAX_GAP = 3
GAP_PENALTY = 0.92
_NEGATIONS = frozenset(
    {"not", "no", "don't", "dont", "never", "can't", "cannot", "won't", "isn't", "nothing"}
)


def is_negation(token: str) -> bool:
    """A negation word: "not", "no", "never", "nothing", "cannot", any "...n't"."""
    return token in _NEGATIONS or token.endswith("n't")


def negated(tokens: Sequence[str]) -> bool:
    """The words hold a negation (:func:`is_negation`)."""
    return any(is_negation(t) for t in tokens)


# Two said words joined stand for one phrase word only when both are at least this long ("operate
# her"); joining "I" or "a" onto a neighbour makes too many sound-alikes ("I don't" ~ "agent").
MIN_JOIN_LETTERS = 3
# A phrase right after one of these (or after bridge words, below) is negated, not said: "not sure"
# is not "sure", "don't transfer me" is not "transfer me". ("no" is left out: "no, balance" answers
# with balance.)
_NEGATORS = frozenset({"not", "don't", "dont", "never", "isn't", "didn't", "doesn't", "wasn't", "aren't"})
# Words that may stand between a negator and the phrase or keyword it negates: "don't want a
# person", "not the balance", "don't need to speak to someone", "I'm not going to hang up". Any
# other word ends the negation's reach: "I don't know, operator" asks for the operator (the
# recognizer's comma is gone by now).
_NEGATION_BRIDGE = frozenset({
    "want", "wanna", "need", "like", "to", "a", "an", "the", "my", "any", "your", "me", "just", "really",
    "speak", "talk", "hear", "check", "get", "with", "about", "all", "going", "gonna",
})
MAX_BRIDGE = 4


def negated_at(said: Sequence[str], j: int) -> bool:
    """The word at ``said[j]`` is negated: a negator right before it, or before at most MAX_BRIDGE
    words of :data:`_NEGATION_BRIDGE` that lead up to it."""
    for back in range(1, MAX_BRIDGE + 2):
        if j - back < 0:
            return False
        word = said[j - back]
        if word in _NEGATORS:
            return True
        if word not in _NEGATION_BRIDGE or back > MAX_BRIDGE:
            return False
    return False
# A phrase ending in one of these is negated by a "not" or "never" right after it: English puts the
# negation after the auxiliary ("I will not be there" is no "i will", "I can not come" no "i can").
_AUXILIARIES = frozenset({
    "will", "can", "would", "could", "should", "shall", "may", "might", "must", "do", "does", "did",
    "am", "is", "are", "was", "were", "have", "has", "had", "i'll", "i'm", "it's", "that's", "i'd",
})
_AFTER_AUXILIARY = frozenset({"not", "never"})
# Long utterances are free text; matching looks at their start only.
MAX_MATCH_TOKENS = 60
# Politeness and filler: callers add them everywhere and recognizers hear them well, so a said
# filler word stands for itself only, never as a sound-alike of a phrase word ("please" is not a
# misheard "balance"; "hurry up please" must not become a guess on the strength of "please").
FILLER_WORDS = frozenset({
    "please", "thanks", "thank", "okay", "ok", "well", "um", "uh", "er", "ah", "hmm", "mm",
    "so", "just", "like", "sorry", "hello", "hi", "hey", "oh", "yeah", "now", "then", "really",
})
# Function words of a phrase ("a person", "of course", "talk to someone") carry little sound and
# are the ones a recognizer swaps ("on course", "talk to the person"). In a phrase with at least
# MIN_CONTENT_LETTERS letters of content words, a said function word may stand for the phrase's,
# at FUNCTION_SWAP: as much a guess as a sound-alike, so it is confirmed before it is acted on.
# The content words themselves are always needed.
FUNCTION_WORDS = frozenset({
    "a", "an", "the", "to", "of", "my", "me", "i", "i'd", "i'm", "it", "is", "in", "on", "for",
    "with", "at", "and", "you", "your",
})
FUNCTION_SWAP = 0.75
MIN_CONTENT_LETTERS = 5


def phrase_score(tokens: Sequence[str], phrase: Sequence[str]) -> float:
    """How well ``phrase`` occurs in ``tokens``, in [0, 1].

    Words must come in order; each scores by :func:`word_similarity`, a phrase word may match two
    said words joined ("operate her" ~ "operator") and two phrase words one said word ("good bye"
    = "goodbye"); skipped words inside the phrase cost :data:`GAP_PENALTY` each. The score is the
    product, so one sound-alike word makes the whole phrase a guess.
    """
    said = tuple(tokens[:MAX_MATCH_TOKENS])
    words = tuple(phrase)
    n, m = len(said), len(words)
    if not m or not n:
        return 0.0
    at_memo: dict[tuple[int, int], float] = {}
    after_memo: dict[tuple[int, int], float] = {}
    swappable = sum(len(w) for w in words if w not in FUNCTION_WORDS) >= MIN_CONTENT_LETTERS
    negatable = words[-1] in _AUXILIARIES

    def at(i: int, j: int) -> float:
        """Best score for words[i:] with words[i] matched starting exactly at said[j]."""
        if i == m:
            return 1.0
        if j >= n:
            return 0.0
        key = (i, j)
        if key in at_memo:
            return at_memo[key]
        best = 0.0
        # A negation is never part of a sound-alike ("don't transfer" ~ "transfer"), nor is a
        # filler word (see FILLER_WORDS): both stand for themselves only.
        plain = not is_negation(said[j]) and said[j] not in FILLER_WORDS
        score = word_similarity(said[j], words[i]) if plain or said[j] == words[i] else 0.0
        if swappable and words[i] in FUNCTION_WORDS and said[j] in FUNCTION_WORDS:
            score = max(score, FUNCTION_SWAP)
        steps = [(1, 1, score)]
        if (j + 1 < n and plain and not is_negation(said[j + 1]) and said[j + 1] not in FILLER_WORDS
                and min(len(said[j]), len(said[j + 1])) >= MIN_JOIN_LETTERS):
            steps.append((1, 2, word_similarity(said[j] + said[j + 1], words[i])))
        if i + 1 < m and said[j] == words[i] + words[i + 1]:
            steps.append((2, 1, 1.0))
        for di, dj, score in steps:
            if score > best:
                best = max(best, score * after(i + di, j + dj))
        at_memo[key] = best
        return best

    def after(i: int, j: int) -> float:
        """Best score for words[i:] after a match that ended before said[j], allowing a gap."""
        if i == m:
            return 0.0 if negatable and j < n and said[j] in _AFTER_AUXILIARY else 1.0
        key = (i, j)
        if key in after_memo:
            return after_memo[key]
        best = 0.0
        for gap in range(MAX_GAP + 1):
            if j + gap >= n:
                break
            if gap and is_negation(said[j + gap - 1]):
                break  # "that doesn't work" is no "that ... works"
            best = max(best, GAP_PENALTY ** gap * at(i, j + gap))
        after_memo[key] = best
        return best

    negation = words[0] in _NEGATORS
    return max((at(0, j) for j in range(n) if negation or not negated_at(said, j)), default=0.0)


@dataclass(frozen=True, slots=True)
class IntentMatch:
    intent: Intent
    length: int  # words in the phrase that matched; longer is more specific
    confidence: float = 1.0  # how sure the match is, in (0, 1]


def match_intent(tokens: Sequence[str], intents: Sequence[Intent]) -> IntentMatch | None:
    """The best-scoring intent for ``tokens`` (any confidence above 0), or None.

    Highest confidence wins; among equal confidences the longest phrase, then the intent declared
    first. The tokens are also tried with repeated n-grams collapsed. Callers compare
    ``confidence`` against their thresholds (see :mod:`voicebot.dialog.understand`).
    """
    variants = [tuple(tokens)]
    collapsed = collapse_repeats(tokens)
    if collapsed != variants[0]:
        variants.append(collapsed)
    best: IntentMatch | None = None
    for intent in intents:
        found: IntentMatch | None = None
        for said in variants:
            for phrase in intent.phrases:
                score = phrase_score(said, phrase)
                if score > 0 and (found is None or (score, len(phrase)) > (found.confidence, found.length)):
                    found = IntentMatch(intent, len(phrase), score)
            for index, word in enumerate(said):
                if negated_at(said, index):
                    continue  # negated, as a phrase is: "not finished" does not say "finished"
                for keyword in intent.keywords:
                    score = word_similarity(word, keyword) if word == keyword or is_inflection(
                        word, keyword) else 0.0  # keywords: exact or inflected, never sound-alikes
                    if score > 0 and (found is None or (score, 1) > (found.confidence, found.length)):
                        found = IntentMatch(intent, 1, score)
        if found is not None and (
            best is None
            or (round(found.confidence, 6), found.length) > (round(best.confidence, 6), best.length)
        ):
            best = found
    return best


def match_dtmf(key: str, intents: Sequence[Intent]) -> Intent | None:
    for intent in intents:
        if intent.dtmf == key:
            return intent
    return None
