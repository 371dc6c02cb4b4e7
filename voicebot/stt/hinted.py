"""The hinted decoding modes of the Whisper engine (recognition hints, voicebot.stt.hints).

* Prompt biasing: ``hints.prompt`` (what the caller just heard) goes before the decoder's start
  tokens as Whisper's previous-text context, cut to its last :data:`MAX_PROMPT_TOKENS` tokens.
* Digits mode: every text token that is not made of digits and separators is suppressed.
* Menu / yes-no rescoring: the free decode is compared with each candidate phrase forced against the
  audio in one batch (CTranslate2 ``align()``); the best phrase is reported first and the free
  decode after it, or only the free decode when the speech is out of grammar.

:class:`HintedDecoding` is a part of :class:`voicebot.stt.model.WhisperEngine`, which provides the
model, the tokenizer and the special token ids it declares.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from voicebot.stt.engine import WordTiming
from voicebot.stt.features import (
    ENCODER_FRAMES_PER_S,
    HOP_LENGTH,
    MAX_TEXT_TOKENS,
    Float32Array,
    spread_words,
)
from voicebot.stt.hints import RecognitionHints

if TYPE_CHECKING:
    from voicebot.stt.model import DetectedHypothesis

# Previous-text context (hints.prompt) is cut to its last tokens: Whisper trained with at most half
# of the 448-token context as previous text.
MAX_PROMPT_TOKENS = MAX_TEXT_TOKENS // 2 - 1
# Digits mode: characters a token may consist of (digits and the separators Whisper writes between
# spoken digits: "4-7-9-2", "4 7 9 2", "479, 2.").
DIGIT_TOKEN_CHARS = frozenset("0123456789 ,.-")
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
# Only the candidates whose first token is among this many most probable first tokens of the free
# decode's first step are forced (a menu of 19 phrases has 18 distinct first tokens): forcing costs
# ~12 ms a phrase on an idle core and several times that under load. 4 and 5 gave the same results
# on the intent bench's audio (3 lost two cases), and 4 pays for the longer frames above.
RESCORE_FIRST_TOKENS = 4
# A free decode this many words longer than the longest candidate is a sentence, not a menu answer:
# no phrase can explain its audio (measured margins below -3.8), so none is forced.
RESCORE_EXTRA_WORDS = 3
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
        one = np.asarray(encoded)  # [1, frames, d_model], float32 on the CPU
        # Only the encoder frames of the audio (+ RESCORE_MARGIN_FRAMES): every batch entry
        # recomputes the decoder's cross-attention keys and values over its frames, which is most of
        # the cost (measured 48 ms a phrase over an 8 s window, 13 ms over 2 s).
        frames = min(one.shape[1], num_frames // 2 + RESCORE_MARGIN_FRAMES)
        batch = np.ascontiguousarray(np.repeat(one[:, :frames], len(forced), axis=0))
        results = self._model.align(
            ctranslate2.StorageView.from_array(batch), self._prompt(code), forced, min(num_frames, 2 * frames)
        )
        readings = [*candidates, ("", "")] if free_tokens else list(candidates)
        scores: list[PhraseScore] = []
        for (reported, phrase), sequence, result in zip(readings, forced, results, strict=True):
            probs = np.asarray(result.text_token_probs, dtype=np.float64)[: len(sequence)]
            logprobs = np.log(np.maximum(probs, 1e-12))
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
        if exact is not None or sentence:
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
        if sentence:
            return self._rejected(free, free.confidence)
        if not scores or reference is None:
            return free
        best = max(scores, key=lambda s: s.logprob)
        margin = best.logprob - reference.logprob
        confidence = float(min(1.0, max(0.0, 1.0 + 0.5 * margin / -REJECT_MARGIN)))
        if margin < REJECT_MARGIN or best.mean_logprob < MIN_PHRASE_LOGPROB:
            return self._rejected(free, confidence)
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
        """Every text token that is not made of digits and separators (built once, ~50k ids)."""
        if self._digit_suppress is None:
            suppress = [-1]  # plus the model's default suppressed symbols
            for token_id in range(self._eot):
                piece = self._tokenizer.decode([token_id])
                if not piece or not set(piece) <= DIGIT_TOKEN_CHARS or not piece.strip(" ,.-").isdigit():
                    suppress.append(token_id)
            self._digit_suppress = suppress
        return self._digit_suppress

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
    "DIGIT_TOKEN_CHARS", "END_WEIGHT", "MAX_PROMPT_TOKENS", "MIN_PHRASE_LOGPROB", "REJECT_MARGIN",
    "RESCORE_EXTRA_WORDS", "RESCORE_FIRST_TOKENS", "RESCORE_MARGIN_FRAMES", "YESNO_CANDIDATES",
    "HintedDecoding", "PhraseScore", "phrase_key",
]
