"""Word similarity that survives recognition errors: a metaphone-like key plus edit distance.

A recognizer that mishears a word usually keeps its consonant skeleton ("Barrens" for "balance",
"operate her" for "operator", "Good boy" for "goodbye"). :func:`phonetic_key` reduces a word to
that skeleton, in the spirit of Lawrence Philips' Metaphone but much smaller: spelling variants are
folded (``ph`` -> f, soft ``c`` -> s, ``ck`` -> k, ``th`` -> 0), vowels after the first letter
are dropped, and voiced/voiceless pairs are merged (b/p, d/t, g/k, v/f, z/s), which G.711 speech
at 8 kHz blurs most. :func:`word_similarity` compares two words on their letters and their keys
with a normalized Levenshtein distance and returns a score in [0, 1]: 1 for the same word, 0.95
for an inflection ("balances"), at most :data:`FUZZY_WEIGHT` for a sound-alike, and 0 below
:data:`MIN_RATIO` or for short words, whose keys collide too easily ("by", "buy", "boy", "bee").
Pure, no dependencies.
"""

from __future__ import annotations

import re
from functools import lru_cache

# A sound-alike is a guess: even identical keys score below the default "act" threshold (0.8), so
# a dialplan asks (``confirm``) before acting on one.
FUZZY_WEIGHT = 0.75
# Letter or key similarity below this is not a sound-alike at all.
MIN_RATIO = 0.7
# Expected words shorter than this match exactly or by inflection only.
MIN_FUZZY_LETTERS = 4
INFLECTION_SCORE = 0.95
# Recognizers inflect and split words ("balances", "agents"): a phrase word of at least this many
# letters also matches the word with up to MAX_SUFFIX more letters.
MIN_STEM_LETTERS = 5
MAX_SUFFIX = 2

# A sound-alike has about as many syllables (vowel groups) as the word.
MAX_SYLLABLE_DIFFERENCE = 1

_NOT_LETTER = re.compile(r"[^a-z]")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")
_VOWELS = frozenset("aeiouy")
# Voiced/voiceless pairs, folded onto one letter.
_FOLD = str.maketrans({"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "q": "k"})


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute; each costs 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def ratio(a: str, b: str) -> float:
    """1 - normalized edit distance: 1.0 for equal strings, 0.0 for nothing in common."""
    if not a and not b:
        return 1.0
    return 1.0 - levenshtein(a, b) / max(len(a), len(b))


@lru_cache(maxsize=4096)
def phonetic_key(word: str) -> str:
    """The consonant skeleton of ``word`` ("operator" -> "aprtr", "balance" -> "plns")."""
    w = _NOT_LETTER.sub("", word.lower())
    if not w:
        return ""
    for prefix, replacement in (("kn", "n"), ("gn", "n"), ("wr", "r"), ("ps", "s"), ("wh", "w")):
        if w.startswith(prefix):
            w = replacement + w[len(prefix):]
    # "X" (sh, ch) and "0" (th) are key letters of their own.
    for old, new in (
        ("x", "ks"), ("tion", "Xn"), ("sch", "sk"), ("ph", "f"), ("ck", "k"), ("sh", "X"), ("ch", "X"),
        ("th", "0"), ("gh", "h"), ("qu", "kw"), ("dg", "j"),
    ):
        w = w.replace(old, new)
    out: list[str] = []
    for i, ch in enumerate(w):
        nxt = w[i + 1] if i + 1 < len(w) else ""
        if ch in _VOWELS:
            if i == 0:
                out.append("a")  # a leading vowel sound counts, which one does not
            continue
        if ch == "c":
            ch = "s" if nxt in ("e", "i", "y") else "k"
        elif ch == "g" and nxt in ("e", "i", "y"):
            ch = "j"
        elif ch in ("h", "w") and not (i == 0 and nxt in _VOWELS):
            continue  # silent unless it starts a syllable at the front of the word
        out.append(ch.translate(_FOLD))
    key: list[str] = []
    for ch in out:
        if not key or key[-1] != ch:
            key.append(ch)
    return "".join(key)


def syllables(word: str) -> int:
    """Vowel groups, a rough syllable count ("operator" 4, "balance" 3, "barrens" 2)."""
    return len(_VOWEL_GROUP.findall(word.lower()))


def is_inflection(said: str, expected: str) -> bool:
    """``said`` is ``expected`` with a short ending ("balances", "agents", "operators")."""
    return (
        len(expected) >= MIN_STEM_LETTERS
        and said.startswith(expected)
        and 0 < len(said) - len(expected) <= MAX_SUFFIX
        and said[len(expected):].isalpha()
    )


@lru_cache(maxsize=65536)
def word_similarity(said: str, expected: str) -> float:
    """How well the recognized word ``said`` stands for the dialplan's word ``expected``."""
    if said == expected:
        return 1.0
    if is_inflection(said, expected):
        return INFLECTION_SCORE
    if (
        len(expected) < MIN_FUZZY_LETTERS
        or len(said) < MIN_FUZZY_LETTERS - 1
        or not said.replace("'", "").isalpha()
        or not expected.replace("'", "").isalpha()
    ):
        return 0.0
    if abs(syllables(said) - syllables(expected)) > MAX_SYLLABLE_DIFFERENCE:
        return 0.0  # "order" is not a short "operator": a recognizer keeps the rhythm
    said_key, expected_key = phonetic_key(said), phonetic_key(expected)
    if said_key.lstrip("a")[:1] != expected_key.lstrip("a")[:1]:
        return 0.0  # the first consonant is heard best; "I'm not" is not "agent"
    best = max(ratio(said, expected), ratio(said_key, expected_key))
    return FUZZY_WEIGHT * best if best >= MIN_RATIO else 0.0
