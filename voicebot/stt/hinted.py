"""The hinted decoding modes of the Whisper engine (recognition hints, voicebot.stt.hints).

* Prompt biasing: ``hints.prompt`` (what the caller just heard) goes before the decoder's start
  tokens as Whisper's previous-text context, cut to its last :data:`MAX_PROMPT_TOKENS` tokens.
* Digits mode: the audio is read twice, once free (prompt-biased) and once with every token suppressed
  that is not a digit word ("oh", "double", "forty", "twelve") or a separator, by a beam search that
  keeps its :data:`DIGITS_HYPOTHESES` best readings. Their probabilities make a posterior over the
  digit strings they spell (:func:`digit_posteriors`); the likeliest string of the expected length
  is the constrained reading. Both readings are forced against the audio (CTranslate2 ``align()``)
  and reported with a confidence from those scores and the posterior, the constrained one first (as
  its digit string) and the free one last, so the dialog can read "double four one nine" and "my
  account number is six two five one", reject what the model itself finds unlikely, and read back
  a number the beam was torn about.
* Menu / yes-no rescoring: the free decode is compared with each candidate phrase forced against the
  audio in one batch (CTranslate2 ``align()``); the best phrase is reported first and the free
  decode after it, or only the free decode when the speech is out of grammar.

:class:`HintedDecoding` is a part of :class:`voicebot.stt.model.WhisperEngine`, which provides the
model, the tokenizer and the special token ids it declares.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from voicebot.editdistance import levenshtein
from voicebot.stt.engine import WordTiming
from voicebot.stt.features import (
    ENCODER_FRAMES_PER_S,
    HOP_LENGTH,
    MAX_TEXT_TOKENS,
    Float32Array,
    spread_words,
)
from voicebot.stt.guard import looks_degenerate
from voicebot.stt.hints import RecognitionHints
from voicebot.stt.normalize import normalize_numbers

if TYPE_CHECKING:
    from voicebot.stt.model import DetectedHypothesis

# Previous-text context (hints.prompt) is cut to its last tokens: Whisper trained with at most half
# of the 448-token context as previous text.
MAX_PROMPT_TOKENS = MAX_TEXT_TOKENS // 2 - 1
# Characters Whisper writes digit strings with ("4-7-9-2", "4 7 9 2", "479, 2.").
DIGIT_TOKEN_CHARS = frozenset("0123456789 ,.-")
# Digits mode, constrained reading: only these words (each where it is a single token, in lower case
# or capitalized, with or without a leading space) and separators. Digit words, not numerals, because
# Whisper base hears a synthetic voice's "four seven nine two" better when it must spell it out: on
# the intent bench's digit cases (11 voices) the constrained reading was right for 62 of 134 strings
# with these words and for 47 with numerals plus number words (tens, teens).
DIGIT_WORDS: dict[str, str] = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9",
}
DIGIT_REPEATS: dict[str, int] = {"double": 2, "triple": 3}
# Number words callers read digit strings in pairs with ("forty-seven ninety-two", "twelve
# thirty-four", "fifty-one eighty"): the constrained reading may write them too, and
# :func:`read_digits` reads them as the server's text normalization does. Measured on the digit
# cases of the intent bench (108) and a held-out set (72: other strings, other voices), the right
# string was the best reading of a 5-beam for 52 and 28 of them with these words, 49 and 25
# without (docs/stt-server.md "Digits mode, measured").
NUMBER_WORDS = (
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred",
)
DIGIT_SEPARATORS = (",", ".", "-")
# Digits mode, which readings count. A reading's confidence comes from its mean token log-probability
# forced against the audio with the decode's prompt (on the frames of DIGITS_MARGIN_FRAMES): 1.0 at 0,
# 0.5 at DIGITS_MIN_LOGPROB, and below it at most DIGITS_REJECTED_CONFIDENCE, which the dialog
# rejects. Measured on the intent bench's default set (108 synthetic digit clips, 2 human, 32
# off-topic answers in the digit state): right strings scored -0.13 to -1.82 (5th-95th percentile,
# the better of words and numerals), wrong ones -0.95 to -3.99, off-topic speech forced into digits
# -3.14 to -5.40; -2.5 lies between right strings and off-topic speech.
DIGITS_MIN_LOGPROB = -2.5
# A constrained reading this much less likely than the free decode is rejected the same way: the model
# heard words, not digits ("my dog is called Rex" forced into "oh, oh, oh, oh, oh, oh"). Same clips:
# right strings the free decode wrote otherwise were at most 1.1 below it, off-topic speech at least
# 1.64 below (90 % of them 2.2 to 5.2 below).
DIGITS_REJECT_MARGIN = -1.5
# A constrained reading that says one word this many times in a row is the decoder filling speech it
# cannot spell with digit words ("Oh, oh, oh, oh, oh, oh" for "my dog is called Rex"), as the guard's
# loop rule (voicebot.stt.guard.LOOP_REPEATS) says of any other word; the free decode still counts.
DIGIT_LOOP_REPEATS = 4
DIGITS_REJECTED_CONFIDENCE = 0.39
# The constrained reading is a beam search that keeps this many readings: their probabilities say
# how torn the model was between digit strings. Beam 2 (the final decode's) and one reading was
# right for 43 of the bench's 108 digit cases and 22 of the 72 held-out ones; a 5-beam's best
# reading of the expected length for 52 and 28.
DIGITS_BEAM_SIZE = 5
DIGITS_HYPOTHESES = 5
# A digit string's posterior (its readings' share of the beam's probability) maps to a confidence
# through these points, piecewise linear. The dialog acts on a first reading of 0.64 and more
# (act_above 0.8 x its CONFIDENT_RECOGNITION 0.8), reads a number back from 0.4 (reject_below 0.5)
# and rejects below. Measured on the 180 cases above, a posterior of 0.9 or more was right 51 times
# and wrong 5, from 0.4 to 0.9 right 20 and wrong 23: a string is acted on from a posterior of 0.9,
# read back from 0.4 (its other caps allowing), rejected below.
DIGITS_POSTERIOR_POINTS = ((0.0, 0.0), (0.4, 0.4), (0.9, 0.64), (1.0, 1.0))
# A caller who says the number inside a sentence ("my account number is six two five one", "it
# is four one eight two") gives the constrained decoder words it cannot write: it spells them as
# digits ("Oh, one."; "74182"). When the free decode begins with such words and a number follows
# ("My account number is 6251.", "It is 4182."), they go before the constrained reading as a forced
# prefix, and the beam reads only the number. Only words that can introduce a number: these and the
# words of the prompt the caller just heard ("account", "number"). A misheard first digit ("Heaven
# 03381." for "seven zero three three eight one", "Nero 8 3117.") is no carrier: forced as a prefix
# it would take the digit away. Measured (digit cases of the intent bench and its held-out set, 180):
# the free decode began with words and went on with digits 25 times; 16 were carrier phrases, all
# read right with the prefix; the 9 others were misheard digits, which these words leave alone.
CARRIER_WORDS = frozenset({
    "my", "the", "our", "it", "it's", "its", "is", "that's", "that", "this", "and", "um", "uh", "er",
    "ah", "so", "ok", "okay", "yes", "yeah", "sure", "account", "number", "id", "reference",
    "customer", "card", "phone", "pin", "code", "please",
})
# Never a carrier, even in the prompt ("press one for sales, two for support"): what Whisper writes
# for a misheard digit ("For 7 9 2." for "four seven nine two", "It's a 0215." for "it's eight oh
# two one five"), and the digit words themselves.
NOT_CARRIERS = frozenset({"a", "an", "for", "fore", "to", "too", "won", "ate", "free", "tree", "then", "i"})
# A free decode holding other digits than the constrained reading is held to the posterior the beam
# gave its digits, but never below this: a number voicebot's dialog may read back, never act on
# alone (as a further hypothesis it weighs 0.65 x 0.9 / 0.8 = 0.73: under act_above 0.8, over
# reject_below 0.5, and still 0.51 with words around the digits, x 0.7). Its own score says how
# much the model liked its words, not how sure it was of the number ("Account number 7, 7, 7, 2,
# 9." scored 0.83 for "account number seven seven two nine"), yet it is sometimes the only right
# reading ("My count number is 6251.").
FREE_DIGITS_CONFIDENCE = 0.65
# Menu / yes-no rescoring. Each candidate phrase is forced against the audio followed by a full stop
# (the sentence-end probe), and so is the free decode, in one batch on the same frames with the same
# plain prompt. A reading's log-probability is the sum over its tokens plus END_WEIGHT times the
# probe's (the free decode's own final punctuation is its probe); the phrase's margin is its
# log-probability minus the free decode's: the log of how much less likely the model finds the
# phrase than its own reading of the same audio. Accepted when the margin is at least REJECT_MARGIN
# and the phrase's mean log-probability per token (probe included) at least MIN_PHRASE_LOGPROB.
# A sum, not a mean per token: a mean cannot see what a phrase leaves out, so "i will be there" for
# "I will not be there" (one very unlikely token among five) or "i can" for "I can't make it" (two
# likely tokens) scored as well as the whole sentence. Measured on the intent bench's audio
# (docs/stt-server.md "Rescoring, measured"): the accuracy is flat for REJECT_MARGIN -5.5 .. -6.
REJECT_MARGIN = -6.0
MIN_PHRASE_LOGPROB = -5.0
# The sentence-end probe: the probability that the caller's sentence ends after the phrase. A phrase
# that is only the beginning of what was said has words left over, and the model's probability of a
# full stop right after it says so (measured log-probabilities: -4.4 after "I can" of "I can't make
# it", -0.5 after "I can't make it"). Weighted half a token: a caller's "please" or "thanks" after a
# phrase costs it a little, not all.
END_WEIGHT = 0.5
# The encoder frames given to the forced decoder: the audio's and this much after it. Whisper's
# decoder is unsure of words near the end of what it attends to: with only 0.5 s after the audio the
# forced scores of right phrases on short espeak answers fell by 1-4 nats a token ("of course" -8.3
# a token against -4.0 over the whole window; "balance" -7.7 against -5.9), so short answers were
# rejected; 2 s gives nearly the whole window's scores.
RESCORE_MARGIN_FRAMES = 2 * ENCODER_FRAMES_PER_S
# Digits mode forces its readings on the audio's encoder frames + 2 s, the frames the menu's rescoring
# uses (RESCORE_MARGIN_FRAMES, above). Until December 2026 it used + 0.5 s, on which the decoder is unsure
# of the words near the end of what it attends to: the model's own free decode of a clear Piper
# string scored -3.98 a token there against -0.23 over 2 s ("7-0-3-3-8-1"), so right strings and
# off-topic speech overlapped (5th percentile of right strings -6.66, median of off-topic -4.78),
# and a right string of clear speech was rejected as often as a wrong one was caught.
DIGITS_MARGIN_FRAMES = RESCORE_MARGIN_FRAMES
# Only the candidates whose first token is among this many most probable first tokens of the free
# decode's first step are forced (a menu of 19 phrases has 18 distinct first tokens): forcing costs
# ~12 ms a phrase on an idle core and several times that under load. 4 and 5 gave the same results
# on the intent bench's audio (3 lost two cases), and 4 pays for the longer frames above.
RESCORE_FIRST_TOKENS = 4
# A free decode this many words longer than the longest candidate is a sentence, not a menu answer:
# no phrase can explain its audio (measured margins below -3.8), so none is forced.
RESCORE_EXTRA_WORDS = 3
# Words that make what was said a negation. A forced phrase without one, where the free decode has
# one, flips the answer, and either side can be the one that misheard: forcing skips a short word
# at little cost ("i will be there" for espeak's "I will not be there", 0.58; "I won't be there."
# forced to "i will be there", 0.83), and the free decode hears a "not" that was never said
# (espeak's "that's right" as "Not right.", where the forced "right" was right). Such a phrase
# keeps at most GUESS_CONFIDENCE: the dialog asks "Did you say ...?" before it acts
# (0.6 / its CONFIDENT_RECOGNITION 0.8 = 0.75, under the default act_above 0.8), and the free
# decode after it contests it. Not forcing such phrases, or reading a negated free decode as the
# answer, measured worse: two espeak "that's right" acted on as a no (intent bench, yes/no).
NEGATION_WORDS = frozenset(
    {"not", "no", "never", "nope", "nah", "cannot", "nothing", "none", "nobody", "neither", "nor"}
)
GUESS_CONFIDENCE = 0.6
# A free decode this unsure (its mean token probability) is the model failing to write the words:
# a phrase forced onto such audio is a guess too, kept at most at GUESS_CONFIDENCE. Short common
# phrases fit garbled audio: "that's all" for espeak's "operator" ("For that one.", 0.29) and for
# "put me through to someone" (0.28), "see you" for "not this time" (0.24), "how much" for "who am
# I speaking with" (0.22; 0.37 with other silence around it), all acted on before. Measured on the
# intent bench (docs/intent-bench.md, fifth round): no route lost; wrong answers acted on 1 -> 0 of
# 499 (default set) and 5 -> 3 of 228 (held-out); the price is "did you say ...?" turns, 30 -> 55
# and 24 -> 32, nearly all on espeak voices (0.3 asked 42 and 24 but misses the 0.37 above).
UNSURE_DECODE_CONFIDENCE = 0.4
YESNO_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("yes", "yes"), ("yes", "yeah"), ("yes", "yes please"), ("yes", "that's right"), ("yes", "correct"),
    ("no", "no"), ("no", "nope"), ("no", "no thank you"), ("no", "that's wrong"),
)


@dataclass(frozen=True, slots=True)
class PhraseScore:
    """One reading forced against the audio: the text to report, the log-probabilities of its tokens
    (summed) and of the sentence-end probe after them."""

    reported: str
    phrase: str
    token_logprob: float
    end_logprob: float
    n_tokens: int

    @property
    def logprob(self) -> float:
        """The reading's log-probability: its tokens and the probe, weighted END_WEIGHT."""
        return self.token_logprob + END_WEIGHT * self.end_logprob

    @property
    def mean_logprob(self) -> float:
        """Per token, the probe counted as END_WEIGHT of a token."""
        return self.logprob / (self.n_tokens + END_WEIGHT)


def phrase_key(text: str) -> str:
    """Comparison form of a phrase: lower case, words only ("Check my balance." == "check my balance")."""
    return " ".join("".join(c for c in w if c.isalnum() or c == "'") for w in text.lower().split()).strip()


def _holds(said: str, phrase: str) -> bool:
    """``said`` (a phrase_key) has the words of ``phrase`` in a row."""
    words, inner = said.split(), phrase.split()
    return bool(inner) and any(words[i:i + len(inner)] == inner for i in range(len(words) - len(inner) + 1))


def negated(key: str) -> bool:
    """``key`` (a phrase_key) holds a negation: a word of :data:`NEGATION_WORDS` or one ending in
    "n't" ("won't", "can't", "don't")."""
    return any(w in NEGATION_WORDS or w.endswith("n't") for w in key.split())


def drops_negation(said: str, phrase: str) -> bool:
    """The free decode (``said``, a phrase_key) is a negation and ``phrase`` is not: reporting the
    phrase would flip what the free decode heard."""
    return negated(said) and not negated(phrase_key(phrase))


def read_digits(text: str) -> str:
    """The digit string of a constrained digits-mode reading ("Double four, one- nine." -> "4419",
    "4-7-9-2" -> "4792", "Forty-seven ninety-two." -> "4792"); "" when it holds anything else or no
    digit. Number words are read by the server's text normalization (voicebot.stt.normalize)."""
    digits: list[str] = []
    repeat = 1
    plain = text.lower().replace(",", " ").replace(".", " ")
    for word in normalize_numbers(plain).replace("-", " ").split():
        if word.isdigit():
            digits.append(word[0] * repeat + word[1:])
            repeat = 1
        elif word in DIGIT_WORDS:
            digits.append(DIGIT_WORDS[word] * repeat)
            repeat = 1
        elif word in DIGIT_REPEATS:
            repeat = DIGIT_REPEATS[word]
        else:
            return ""
    return "".join(digits)


def loops_one_word(text: str) -> bool:
    """Whether a constrained reading says one word :data:`DIGIT_LOOP_REPEATS` times in a row."""
    words = text.lower().replace("-", " ").replace(",", " ").replace(".", " ").split()
    run = 1
    for previous, word in itertools.pairwise(words):
        run = run + 1 if word == previous else 1
        if run >= DIGIT_LOOP_REPEATS:
            return True
    return False


def digit_new_tokens(max_new: int, hints: RecognitionHints) -> int:
    """Digits mode's cap on a constrained reading's tokens: a digit string needs at most about two
    tokens a digit (" four", ","), and a reading that does not stop there is a loop."""
    return min(max_new, 2 * hints.max_digits + 4)


def carrier_prefix(free_text: str, prompt: str = "") -> str:
    """The free decode's leading words when they are a carrier phrase followed by a number ("My
    account number is" of "My account number is 6251."): every word one of :data:`CARRIER_WORDS` or
    of ``prompt`` or a near miss of one (:func:`_sounds_like_one_of`: "My count number is 6251."),
    and the next word a digit, numeral or digit word. "" otherwise."""
    never = NOT_CARRIERS | set(DIGIT_WORDS) | set(NUMBER_WORDS) | set(DIGIT_REPEATS)
    known = (CARRIER_WORDS | set(phrase_key(prompt).split())) - never
    words = free_text.split()
    for index, word in enumerate(words):
        bare = phrase_key(word)
        if bare in known or (bare not in never and _sounds_like_one_of(bare, known)):
            continue
        first = bare.split("-")[0] if bare else ""
        starts_number = any(c.isdigit() for c in bare) or first in DIGIT_WORDS or first in NUMBER_WORDS \
            or first in DIGIT_REPEATS
        return " ".join(words[:index]).rstrip(",") if index and starts_number else ""
    return ""


def _sounds_like_one_of(word: str, known: frozenset[str] | set[str]) -> bool:
    """Whisper's near misses of a carrier word: its tail without a weak first syllable ("count" for
    "account", "ference" for "reference": 4 letters or more, and what is missing holds a vowel, so
    "hone" is no "phone"), or one letter off in a word of 6 or more ("acount", "numbers"; a shorter
    carrier is too close to a digit: "phone" and "one")."""
    if len(word) < 4 or not word.isalpha():
        return False
    for carrier in known:
        lost = carrier[: len(carrier) - len(word)]
        if lost and carrier.endswith(word) and any(c in "aeiouy" for c in lost):
            return True
        if len(carrier) >= 6 and abs(len(carrier) - len(word)) <= 1 and levenshtein(word, carrier) == 1:
            return True
    return False


@dataclass(frozen=True, slots=True)
class DigitReading:
    """A digit string the constrained beam spelled: as first written, and its share of the beam."""

    digits: str
    text: str
    posterior: float


def digit_posteriors(
    readings: Sequence[tuple[str, float]], min_digits: int, max_digits: int
) -> list[DigitReading]:
    """The digit strings of a constrained beam's readings (text, summed log-probability), each with
    its posterior: the probability of the readings that spell it over all of them (a reading that
    spells no digit string, or loops, still counts in the total: the beam was unsure). Strings of
    ``min_digits``..``max_digits`` digits first, each group by posterior, likeliest first."""
    if not readings:
        return []
    top = max(logprob for _text, logprob in readings)
    total = sum(math.exp(logprob - top) for _text, logprob in readings)
    found: dict[str, DigitReading] = {}
    for text, logprob in readings:
        digits = read_digits(text)
        if not digits or loops_one_word(text):
            continue
        share = math.exp(logprob - top) / total
        seen = found.get(digits)
        if seen is None:
            found[digits] = DigitReading(digits, text, share)
        else:
            found[digits] = dataclasses.replace(seen, posterior=seen.posterior + share)
    return sorted(found.values(),
                  key=lambda r: (not min_digits <= len(r.digits) <= max_digits, -r.posterior))


def posterior_confidence(posterior: float) -> float:
    """Digits mode: a confidence from a digit string's posterior (:data:`DIGITS_POSTERIOR_POINTS`)."""
    xs, ys = zip(*DIGITS_POSTERIOR_POINTS, strict=True)
    return float(np.interp(min(1.0, max(0.0, posterior)), xs, ys))


def margin_confidence(margin: float) -> float:
    """Digits mode: a constrained reading's confidence from how much less likely it is than the free
    decode (1.0 as likely, 0.5 at :data:`DIGITS_REJECT_MARGIN`, at most
    :data:`DIGITS_REJECTED_CONFIDENCE` below it)."""
    confidence = float(min(1.0, max(0.0, 1.0 + 0.5 * margin / -DIGITS_REJECT_MARGIN)))
    if margin < DIGITS_REJECT_MARGIN:
        return min(confidence, DIGITS_REJECTED_CONFIDENCE)
    return confidence


def digits_confidence(mean_logprob: float) -> float:
    """Digits mode: a reading's confidence from its forced mean token log-probability."""
    confidence = float(min(1.0, max(0.0, 1.0 + 0.5 * mean_logprob / -DIGITS_MIN_LOGPROB)))
    if mean_logprob < DIGITS_MIN_LOGPROB:
        return min(confidence, DIGITS_REJECTED_CONFIDENCE)
    return confidence


class HintedDecoding:
    """The hinted modes, mixed into the engine; the engine sets what is declared here."""

    _model: Any  # ctranslate2.models.Whisper
    _tokenizer: Tokenizer
    multilingual: bool
    _sot: int
    _transcribe: int
    _no_timestamps: int
    _eot: int
    _startofprev: int | None
    _lang_token: dict[str, int]
    _digit_suppress: list[int] | None

    def _alignment_words(
        self, token_ids: Sequence[int], alignment: Any, samples: Float32Array
    ) -> tuple[WordTiming, ...]:
        raise NotImplementedError  # the engine's (voicebot.stt.model)

    def _candidates(self, hints: RecognitionHints) -> list[tuple[str, str]]:
        """(text to report, phrase to score) for a menu or yes/no hint."""
        pairs = [(p.strip(), p.strip()) for p in hints.phrases]
        if hints.mode == "yesno":
            pairs = list(YESNO_CANDIDATES) + pairs
        return list(dict.fromkeys(pairs))

    def encode_text(self, text: str) -> list[int]:
        """Text tokens as the decoder writes them.

        The bundled tokenizer.json lacks some BPE merges: it encodes " to" as "Ġ" + "to" although
        the vocabulary (and the decoder) has the single token "Ġto", and forcing the split form
        scores a correct phrase near zero. So each pre-token ("Ġto", "'s") is looked up whole
        first, and only pieces the vocabulary lacks go through BPE.
        """
        pre = self._tokenizer.pre_tokenizer
        if pre is None:
            return [int(t) for t in self._tokenizer.encode(text, add_special_tokens=False).ids]
        ids: list[int] = []
        for piece, (start, end) in pre.pre_tokenize_str(text):
            whole = self._tokenizer.token_to_id(piece)
            if whole is not None:
                ids.append(int(whole))
            else:
                ids += [int(t) for t in self._tokenizer.encode(text[start:end], add_special_tokens=False).ids]
        return ids

    def _phrase_tokens(self, phrase: str) -> list[int]:
        # Whisper writes a sentence capitalized, after a space: score the phrase in that form.
        return self.encode_text(" " + phrase[:1].upper() + phrase[1:])

    def score_phrases(
        self, encoded: Any, code: str, candidates: Sequence[tuple[str, str]], num_frames: int,
        free_tokens: Sequence[int] = (),
    ) -> tuple[list[PhraseScore], PhraseScore | None, Any]:
        """Force every candidate phrase, followed by a full stop, and the free decode's tokens against
        the audio in one batch (CTranslate2 ``align``), plain prompt: the phrases' scores, the free
        decode's (None without ``free_tokens``) and its alignment result (for word times)."""
        tokens = [self._phrase_tokens(phrase) for _reported, phrase in candidates]
        end = self._sentence_end()
        forced = [[*t, end] for t in tokens]
        if free_tokens:
            # A free decode that ends a sentence itself ("Balance.") has its probe already.
            last = self._tokenizer.decode([int(free_tokens[-1])]).strip()
            own_end = bool(last) and last[-1] in ".?!"
            forced.append(list(free_tokens) if own_end else [*free_tokens, end])
        if not forced:
            return [], None, None
        results, token_logprobs = self._force(encoded, self._prompt(code), forced, num_frames,
                                              RESCORE_MARGIN_FRAMES)
        readings = [*candidates, ("", "")] if free_tokens else list(candidates)
        scores: list[PhraseScore] = []
        for (reported, phrase), sequence, logprobs in zip(readings, forced, token_logprobs, strict=True):
            if logprobs.size < len(sequence) or not sequence:
                scores.append(PhraseScore(reported, phrase, -math.inf, -math.inf, 1))
            elif (reported, phrase) == ("", "") and len(sequence) == len(free_tokens):
                # The free decode's own final punctuation is part of what the model wrote: in full.
                scores.append(PhraseScore("", "", float(logprobs.sum()), 0.0, len(sequence)))
            else:
                scores.append(PhraseScore(reported, phrase, float(logprobs[:-1].sum()), float(logprobs[-1]),
                                          len(sequence) - 1))
        if free_tokens:
            return scores[:-1], scores[-1], results[-1]
        return scores, None, None

    def _force(
        self, encoded: Any, prompt: list[int], sequences: Sequence[list[int]], num_frames: int,
        margin_frames: int,
    ) -> tuple[list[Any], list[npt.NDArray[np.float64]]]:
        """Force each token sequence against the audio in one batch (CTranslate2 ``align``): the
        alignment results and each sequence's token log-probabilities (as many as it has tokens, or
        fewer when the model returned fewer). Only the encoder frames of the audio and
        ``margin_frames`` after it are given: every batch entry recomputes the decoder's
        cross-attention keys and values over its frames, which is most of the cost (measured 48 ms
        a phrase over an 8 s window, 13 ms over 2 s)."""
        one = np.asarray(encoded)  # [1, frames, d_model], float32 on the CPU
        frames = min(one.shape[1], num_frames // 2 + margin_frames)
        batch = np.ascontiguousarray(np.repeat(one[:, :frames], len(sequences), axis=0))
        results = self._model.align(
            ctranslate2.StorageView.from_array(batch), prompt, list(sequences), min(num_frames, 2 * frames)
        )
        logprobs = [
            np.log(np.maximum(np.asarray(result.text_token_probs, dtype=np.float64)[: len(sequence)], 1e-12))
            for sequence, result in zip(sequences, results, strict=True)
        ]
        return list(results), logprobs

    def _sentence_end(self) -> int:
        return self.encode_text(".")[0]

    def _rescored(
        self,
        encoded: Any,
        code: str,
        samples: Float32Array,
        hints: RecognitionHints,
        free: DetectedHypothesis,
        free_tokens: Sequence[int],
        first_logprobs: npt.NDArray[np.float32] | None = None,
        align_words: bool = True,
    ) -> DetectedHypothesis:
        """Menu / yes-no: the best candidate first and the free decode after it, or only the free
        decode when the speech is out of grammar. Confidence of a match: 1.0 when the phrase is as
        likely as the free decode, falling linearly to 0.5 at :data:`REJECT_MARGIN`; a rejected
        free decode keeps at most 0.49 (the same scale), so ``>= 0.5`` always means "in grammar".
        ``free_tokens`` (the free decode's) are forced in the phrases' batch: the margin's reference
        and, with ``align_words``, the free decode's word times (one pass over the audio's frames
        instead of a second one over the whole window)."""
        candidates = self._candidates(hints)
        said = phrase_key(free.text)
        # The model wrote a phrase unconstrained: no need to force any.
        exact = next((reported for reported, phrase in candidates if phrase_key(phrase) == said), None)
        longest = max(len(phrase.split()) for _reported, phrase in candidates)
        # A free decode much longer than any phrase is a sentence no phrase can explain: none is forced.
        sentence = len(said.split()) > longest + RESCORE_EXTRA_WORDS
        # The model wrote a phrase after other words ("My account balance, please.", "What's my
        # balance?"): a request in a carrier phrase, which the dialog reads from the free decode
        # (fillers, negations); forcing could only put another phrase first. Not when the decode
        # begins with a phrase and goes on ("Not right.", "I can make it."): that is the start of
        # a sentence that may say something else, and the forced phrases decide as before.
        contained = (exact is None and not sentence
                     and any(_holds(said, phrase_key(phrase)) for _r, phrase in candidates)
                     and not any(self._continued(phrase, said, free_tokens) for _r, phrase in candidates))
        if exact is not None or sentence or contained:
            forced = []
        else:
            # A phrase the free decode wrote and then went on ("i can" of "I can't make it", "not"
            # of "Not right.") is no reading of the whole audio: only the dialog knows whether the
            # words after it are a filler ("please") or change the meaning; it reads the free decode.
            whole = [c for c in candidates if not self._continued(c[1], said, free_tokens)]
            forced = self._likely(whole, first_logprobs)
        if not forced and not align_words:
            free_tokens = ()
        num_frames = max(1, len(samples) // HOP_LENGTH)
        scores, reference, alignment = self.score_phrases(encoded, code, forced, num_frames, free_tokens)
        if align_words and alignment is not None:
            free = dataclasses.replace(free, words=self._alignment_words(free_tokens, alignment, samples))
        if exact is not None:
            return self._matched(exact, 1.0, samples, free)
        if contained:
            return free
        if sentence:
            return self._rejected(free, free.confidence)
        if not scores or reference is None:
            return free
        best = max(scores, key=lambda s: s.logprob)
        # The reference is the free decode as the model wrote it: forced here under the plain prompt,
        # or as generated under the hints' prompt (its own mean token log-probability), whichever is
        # more likely. A decode the prompt pulled off course ("Once the weather like to me." for
        # "What's the weather like today?" after the demo's welcome) is improbable under the plain
        # prompt alone, and against that low reference a short phrase ("how much") came within the
        # margin: an off-topic question acted on as a balance request (tests/e2e/test_understanding).
        own = math.log(max(free.confidence, 1e-12)) * (len(free_tokens) + END_WEIGHT)
        margin = best.logprob - max(reference.logprob, own)
        confidence = float(min(1.0, max(0.0, 1.0 + 0.5 * margin / -REJECT_MARGIN)))
        if margin < REJECT_MARGIN or best.mean_logprob < MIN_PHRASE_LOGPROB:
            return self._rejected(free, confidence)
        if drops_negation(said, best.phrase) or free.confidence < UNSURE_DECODE_CONFIDENCE:
            confidence = min(confidence, GUESS_CONFIDENCE)  # asked, never acted on alone
        return self._matched(best.reported, confidence, samples, free)

    def _continued(self, phrase: str, said: str, free_tokens: Sequence[int]) -> bool:
        """The free decode (``said``: its phrase_key) begins with ``phrase`` and has more words:
        word by word, or token by token ("I can" + "'t make it")."""
        words, free_words = phrase_key(phrase).split(), said.split()
        if len(free_words) > len(words) and free_words[: len(words)] == words:
            return True
        tokens = self._phrase_tokens(phrase)
        if len(free_tokens) <= len(tokens) or [int(t) for t in free_tokens[: len(tokens)]] != tokens:
            return False
        return bool(phrase_key(self._tokenizer.decode([int(t) for t in free_tokens[len(tokens):]])))

    def _likely(
        self, candidates: list[tuple[str, str]], first_logprobs: npt.NDArray[np.float32] | None
    ) -> list[tuple[str, str]]:
        """The candidates whose first token is among the RESCORE_FIRST_TOKENS most probable first
        tokens (by the free decode's first step); all of them when that step is unknown."""
        if first_logprobs is None:
            return candidates
        firsts = {c: self._phrase_tokens(c[1])[:1] for c in candidates}
        distinct = {t[0] for t in firsts.values() if t}
        keep = set(sorted(distinct, key=lambda t: -float(first_logprobs[t]))[:RESCORE_FIRST_TOKENS])
        return [c for c in candidates if firsts[c] and firsts[c][0] in keep]

    @staticmethod
    def _rejected(free: DetectedHypothesis, confidence: float) -> DetectedHypothesis:
        return dataclasses.replace(free, confidence=min(free.confidence, confidence, 0.49), alternatives=())

    def _matched(
        self, reported: str, confidence: float, samples: Float32Array, free: DetectedHypothesis
    ) -> DetectedHypothesis:
        return dataclasses.replace(free, text=reported, words=spread_words(reported, samples),
                                   confidence=confidence, alternatives=(free,))

    def _digit_suppress_tokens(self) -> list[int]:
        """Every text token that is not a digit word of :data:`DIGIT_WORDS` / :data:`DIGIT_REPEATS`
        or a separator (built once, ~50k ids)."""
        if self._digit_suppress is None:
            allowed: set[int] = set()
            for word in (*DIGIT_WORDS, *DIGIT_REPEATS, *NUMBER_WORDS):
                for form in (word, word.capitalize(), " " + word, " " + word.capitalize()):
                    ids = self.encode_text(form)
                    if len(ids) == 1:  # a word split into pieces would let the pieces spell anything
                        allowed.add(ids[0])
            for separator in DIGIT_SEPARATORS:
                allowed.update(self.encode_text(separator))
            # -1: plus the model's default suppressed symbols.
            self._digit_suppress = [-1, *(t for t in range(self._eot) if t not in allowed)]
        return self._digit_suppress

    def _score_readings(
        self, encoded: Any, code: str, hints: RecognitionHints, readings: Sequence[str], num_frames: int
    ) -> list[float]:
        """Digits mode: each reading forced against the audio in one batch, with the prompt the
        readings were decoded with (what the caller just heard makes "4792" more likely than "For
        family"); its mean token log-probability. Unlike a menu phrase, a reading is the model's
        own output under that prompt, so it is scored in the same context."""
        tokens = [self.encode_text(" " + text) for text in readings]
        _results, token_logprobs = self._force(encoded, self._prompt(code, hints), tokens, num_frames,
                                               DIGITS_MARGIN_FRAMES)
        return [float(np.mean(logprobs)) if logprobs.size else -math.inf for logprobs in token_logprobs]

    def _digit_nbest(
        self, encoded: Any, code: str, hints: RecognitionHints, max_new: int, voiced_s: float | None,
        prefix: str = "",
    ) -> list[DigitReading]:
        """Digits mode: the constrained beam (:data:`DIGITS_BEAM_SIZE`, its
        :data:`DIGITS_HYPOTHESES` best readings) and the digit strings they spell with their
        posteriors (:func:`digit_posteriors`: the likeliest of the expected length first); empty
        when no reading spells one. A reading that loops (ran into its token cap, more digits a
        second than anyone says, one word over and over) is the decoder filling silence or words it
        cannot spell: it spells nothing, but its probability still counts against the others.
        ``prefix`` (a carrier phrase, :func:`carrier_prefix`) is forced before the readings and is
        part of the reported text, not of the digits."""
        forced = self.encode_text(" " + prefix) if prefix else []
        prompt = self._prompt(code, hints) + forced
        max_length = min(MAX_TEXT_TOKENS, len(prompt) + digit_new_tokens(max_new, hints))
        result = self._model.generate(
            encoded, [prompt], beam_size=DIGITS_BEAM_SIZE, num_hypotheses=DIGITS_HYPOTHESES,
            max_length=max_length, return_scores=True, suppress_blank=True,
            suppress_tokens=self._digit_suppress_tokens(),
        )[0]
        readings: list[tuple[str, float]] = []
        for raw, score in zip(result.sequences_ids, result.scores, strict=True):
            ids = [int(t) for t in raw]
            if forced and ids[: len(forced)] == forced:
                ids = ids[len(forced):]  # CTranslate2 returns a Whisper prefix with the reading
            tokens = [t for t in ids if t < self._eot]
            text = self._tokenizer.decode(tokens).strip()
            # CTranslate2 reports a reading's log-probability divided by its length (length_penalty
            # 1); multiplied back, the end of text counted as a token, it is about the sum, which is
            # what a posterior weighs (readings after a prefix all share it).
            logprob = float(score) * (len(tokens) + 1)
            hit_cap = self._eot not in ids and len(ids) >= max_length - len(prompt)
            if looks_degenerate(text, hit_token_cap=hit_cap, voiced_s=voiced_s):
                text = ""
            readings.append((text, logprob))
        found = digit_posteriors(readings, hints.min_digits, hints.max_digits)
        return [dataclasses.replace(r, text=f"{prefix} {r.text}") for r in found] if prefix else found

    def _digit_readings(
        self,
        encoded: Any,
        code: str,
        samples: Float32Array,
        hints: RecognitionHints,
        free: DetectedHypothesis,
        found: Sequence[DigitReading],
    ) -> DetectedHypothesis:
        """Digits mode: the constrained reading (the first of ``found``, the beam's digit strings;
        reported as its digit string) first and the free decode last, each forced against the
        audio (the constrained one both as written and as numerals, since Whisper prefers to write
        "4792"; the better counts). Confidences: :func:`digits_confidence` of the score, and for the
        constrained reading at most :func:`margin_confidence` of how much less likely it is than the
        free decode and :func:`posterior_confidence` of its posterior in the beam. A free decode that
        holds other digits is held to the posterior the beam gave those digits, but not below
        :data:`FREE_DIGITS_CONFIDENCE`, and when the constrained reading has the expected length
        and is not rejected, not above it either (unless the beam itself gave the free decode's
        digits more): a second opinion, which the dialog reads back rather than acts on. One
        hypothesis when both read as the same digits."""
        reading = found[0] if found else None
        digits = reading.digits if reading is not None else ""
        readings = [(digits, reading.text), (digits, digits)] if reading is not None else []
        if free.text:
            readings.append((free.text, free.text))
        if not readings:
            return free
        num_frames = max(1, len(samples) // HOP_LENGTH)
        texts = [text for _reported, text in readings]
        scores = self._score_readings(encoded, code, hints, texts, num_frames)
        if reading is None:
            return dataclasses.replace(free, confidence=digits_confidence(scores[0]))
        heard = max(scores[:2])
        sure = posterior_confidence(reading.posterior)
        if not free.text or read_digits(free.text) == digits:
            both = max(scores)
            return dataclasses.replace(free, text=digits, words=spread_words(digits, samples),
                                       confidence=min(digits_confidence(both), sure), alternatives=())
        confidence = min(digits_confidence(heard), margin_confidence(heard - scores[2]), sure)
        rest = dataclasses.replace(free, confidence=digits_confidence(scores[2]))
        said = "".join(c for c in normalize_numbers(free.text) if c.isdigit())
        if said:
            share = sum(r.posterior for r in found if r.digits == said)
            held = max(posterior_confidence(share), FREE_DIGITS_CONFIDENCE)
            expected = hints.min_digits <= len(digits) <= hints.max_digits
            if expected and confidence > DIGITS_REJECTED_CONFIDENCE:
                held = min(held, max(confidence, posterior_confidence(share)))  # a second opinion
            rest = dataclasses.replace(rest, confidence=min(rest.confidence, held))
        return dataclasses.replace(free, text=digits, words=spread_words(digits, samples),
                                   confidence=confidence, alternatives=(rest,))

    def _prompt(self, code: str, hints: RecognitionHints | None = None) -> list[int]:
        if not self.multilingual:
            start = [self._sot, self._no_timestamps]
        else:
            start = [self._sot, self._lang_token[code], self._transcribe, self._no_timestamps]
        if hints is None or not hints.prompt.strip() or self._startofprev is None:
            return start
        # Previous-text context: what the caller just heard biases the words and their spelling.
        previous = self.encode_text(" " + hints.prompt.strip())
        return [int(self._startofprev), *(int(t) for t in previous[-MAX_PROMPT_TOKENS:]), *start]


__all__ = [
    "DIGIT_TOKEN_CHARS", "END_WEIGHT", "GUESS_CONFIDENCE", "MAX_PROMPT_TOKENS", "MIN_PHRASE_LOGPROB",
    "NEGATION_WORDS", "REJECT_MARGIN", "RESCORE_EXTRA_WORDS", "RESCORE_FIRST_TOKENS", "RESCORE_MARGIN_FRAMES",
    "UNSURE_DECODE_CONFIDENCE", "YESNO_CANDIDATES", "DigitReading", "HintedDecoding", "PhraseScore",
    "carrier_prefix", "digit_new_tokens", "digit_posteriors", "drops_negation", "negated", "phrase_key",
    "posterior_confidence",
]
