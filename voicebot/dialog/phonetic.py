"""Word similarity that survives recognition errors: a metaphone-like key plus edit distance.

A recognizer that mishears a word usually keeps its consonant skeleton ("Barrens" for "balance",
"operate her" for "operator", "Good boy" for "goodbye"). :func:`phonetic_key` reduces a word to
that skeleton, in the spirit of Lawrence Philips' Metaphone but much smaller: spelling variants are
folded (``ph`` -> f, soft ``c`` -> s, ``ck`` -> k, ``th`` -> 0), vowels after the first letter
are dropped, and voiced/voiceless pairs are merged (b/p, d/t, g/k, v/f, z/s), which G.711 speech
at 8 kHz blurs most. :func:`word_similarity` compares two words on their letters and their keys
with a normalized Levenshtein distance and returns a score in [0, 1]: 1 for the same word, 0.95
for an inflection ("balances"), at most :data:`FUZZY_WEIGHT` for a sound-alike, and 0 below
:data:`MIN_RATIO` or for short words, whose keys collide too easily ("by", "buy", "boy", "bee"),
except a short word's exact homophones (:data:`HOMOPHONES`: "by" for "bye"), a guess too.
Keys are compared with a weighted distance (:func:`key_distance`): a sound swapped for a close one
(m/n, p/t/k) costs half an edit, and a word that starts with "h" may be heard without it ("'ang
up" for "hang up"), as accents and the narrow telephone band do. Pure, no dependencies.
"""

from __future__ import annotations

import re
from functools import lru_cache

from voicebot.editdistance import levenshtein

# A sound-alike is a guess: even identical keys score below the default "act" threshold (0.8), so
# a dialplan asks (``confirm``) before acting on one.
FUZZY_WEIGHT = 0.75
# Letter or key similarity below this is not a sound-alike at all.
MIN_RATIO = 0.75
# The key without a word's leading "h" (see key_variants) must match at least this well: the
# dropped h is a difference of its own ("I'm done" is not "human").
MIN_H_DROPPED_RATIO = 0.8
# Expected words shorter than this match exactly or by inflection only, or by an exact homophone.
MIN_FUZZY_LETTERS = 4
# A short dialplan word and the words that sound exactly like it. No spelling tells them apart, so
# a recognizer writes whichever its language model prefers: Whisper base wrote "bye" as "by" for
# the natural voices of the intent bench ("I have to go by." for Piper's "I have to go, bye", "By
# then." for Flite's "bye then"; docs/intent-bench.md, eighth round). Each is a word of its own
# too ("pay by card"), so it stands for the dialplan's word as a sound-alike does, a guess at
# FUZZY_WEIGHT: asked about ("Did you say goodbye?"), never acted on alone. Words a recognizer
# writes for digits ("for", "to") are the digit parser's (voicebot.dialog.match), not here.
HOMOPHONES: dict[str, frozenset[str]] = {
    "bye": frozenset({"by", "buy"}),
}
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


# Sounds whose place of articulation the telephone band blurs (voicing is folded already): the
# nasals m/n and the stops p/t/k, told apart mostly by formant transitions and bursts above
# 3.4 kHz. Swapping two of one class costs SIMILAR_COST instead of a whole edit. (l/r, s/sh and
# f/th were tried as classes too: they won nothing on the intent bench and made more needless
# "did you say ...?" questions on off-topic speech.)
_SIMILAR_CLASSES = ("mn", "ptk")
MIN_WEIGHTED_KEY = 3
_CLASS = {ch: i for i, group in enumerate(_SIMILAR_CLASSES) for ch in group}
SIMILAR_COST = 0.5


def _substitution_cost(a: str, b: str) -> float:
    if a == b:
        return 0.0
    same = a in _CLASS and _CLASS[a] == _CLASS.get(b)
    return SIMILAR_COST if same else 1.0


@lru_cache(maxsize=65536)
def key_distance(a: str, b: str) -> float:
    """Weighted edit distance between two phonetic keys (see the module docstring)."""
    previous = [float(j) for j in range(len(b) + 1)]
    for i in range(len(a)):
        current = [float(i + 1)]
        for j in range(len(b)):
            current.append(min(previous[j + 1] + 1.0, current[j] + 1.0,
                               previous[j] + _substitution_cost(a[i], b[j])))
        previous = current
    return previous[-1]


def key_ratio(a: str, b: str) -> float:
    """1 - normalized weighted key distance, in [0, 1]. Keys shorter than MIN_WEIGHTED_KEY are
    compared plainly: in two sounds a half edit still leaves "need" ~ "nope", "rick" ~ "right"."""
    if not a and not b:
        return 1.0
    if max(len(a), len(b)) < MIN_WEIGHTED_KEY:
        return ratio(a, b)
    return max(0.0, 1.0 - key_distance(a, b) / max(len(a), len(b)))


def key_variants(key: str) -> tuple[str, ...]:
    """The key and, for a word that starts with "h" before a vowel, the key without it ("hang" ->
    "hnk", "ank"): dropped h's are common in accents and the h is the quietest sound on a line."""
    if key.startswith("h") and len(key) > 1:
        return (key, "a" + key[1:])
    return (key,)


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
    if said in HOMOPHONES.get(expected, ()):
        return FUZZY_WEIGHT
    if (
        len(expected) < MIN_FUZZY_LETTERS
        or len(said) < MIN_FUZZY_LETTERS - 1
        or not said.replace("'", "").isalpha()
        or not expected.replace("'", "").isalpha()
    ):
        return 0.0
    if abs(syllables(said) - syllables(expected)) > MAX_SYLLABLE_DIFFERENCE:
        return 0.0  # "order" is not a short "operator": a recognizer keeps the rhythm
    return FUZZY_WEIGHT * sound_ratio(said, expected)


def sound_ratio(said: str, expected: str) -> float:
    """How alike two spellings sound, in [0, 1]: the better of the letters' and the keys' ratio,
    0 below :data:`MIN_RATIO` or when the first consonants differ (the first consonant is heard
    best; "I'm not" is not "agent")."""
    said_key = phonetic_key(said)
    best = 0.0
    for n, expected_key in enumerate(key_variants(phonetic_key(expected))):
        if said_key.lstrip("a")[:1] != expected_key.lstrip("a")[:1]:
            continue
        found = max(ratio(said, expected), key_ratio(said_key, expected_key))
        if found >= (MIN_RATIO if n == 0 else MIN_H_DROPPED_RATIO):
            best = max(best, found)
    return best
