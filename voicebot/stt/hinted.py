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
# Menu / yes-no rescoring. Each candidate phrase is forced against the audio; its mean token
# log-probability minus the free decode's (how much less likely the phrase is than what the model
# would write unconstrained) is the phrase's margin. The best phrase is accepted when its margin is
# at least REJECT_MARGIN and its own mean log-probability at least MIN_PHRASE_LOGPROB. Measured on
# espeak-ng (en-us, en) and Piper joe telephone speech, demo menu (docs/stt-server.md): in-grammar
# margins -0.0 to -2.4, out-of-grammar -3.1 to -5.2; in-grammar mean log-probabilities >= -4.1.
REJECT_MARGIN = -2.75
MIN_PHRASE_LOGPROB = -5.0
RESCORE_MARGIN_FRAMES = ENCODER_FRAMES_PER_S // 2
# Only the candidates whose first token is among this many most probable first tokens of the free
# decode's first step are forced (a menu of 19 phrases has 18 distinct first tokens): forcing costs
# ~12 ms a phrase on an idle core and several times that under load.
RESCORE_FIRST_TOKENS = 5
# A free decode this many words longer than the longest candidate is a sentence, not a menu answer:
# no phrase can explain its audio (measured margins below -3.8), so none is forced.
RESCORE_EXTRA_WORDS = 3
YESNO_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("yes", "yes"), ("yes", "yeah"), ("yes", "yes please"), ("yes", "that's right"), ("yes", "correct"),
    ("no", "no"), ("no", "nope"), ("no", "no thank you"), ("no", "that's wrong"),
)


@dataclass(frozen=True, slots=True)
class PhraseScore:
    """One candidate phrase forced against the audio: the text to report and the mean token logprob."""

    reported: str
    phrase: str
    mean_logprob: float


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
        self, encoded: Any, code: str, candidates: Sequence[tuple[str, str]], num_frames: int
    ) -> list[PhraseScore]:
        """Force every candidate phrase against the audio in one batch (CTranslate2 ``align``):
        the mean log-probability of the phrase's tokens given the audio, plain prompt."""
        if not candidates:
            return []
        tokens = [self._phrase_tokens(phrase) for _reported, phrase in candidates]
        one = np.asarray(encoded)  # [1, frames, d_model], float32 on the CPU
        # Only the encoder frames of the audio (+ 0.5 s): every batch entry recomputes the decoder's
        # cross-attention keys and values over its frames, which is most of the cost (measured
        # 48 ms a phrase over an 8 s window, 13 ms over 2 s).
        frames = min(one.shape[1], num_frames // 2 + RESCORE_MARGIN_FRAMES)
        batch = np.ascontiguousarray(np.repeat(one[:, :frames], len(tokens), axis=0))
        results = self._model.align(
            ctranslate2.StorageView.from_array(batch), self._prompt(code), tokens, min(num_frames, 2 * frames)
        )
        scores: list[PhraseScore] = []
        for (reported, phrase), result in zip(candidates, results, strict=True):
            probs = np.asarray(result.text_token_probs, dtype=np.float64)[: len(tokens[len(scores)])]
            mean = float(np.mean(np.log(np.maximum(probs, 1e-12)))) if probs.size else -math.inf
            scores.append(PhraseScore(reported, phrase, mean))
        return scores

    def _rescored(
        self,
        encoded: Any,
        code: str,
        samples: Float32Array,
        hints: RecognitionHints,
        free: DetectedHypothesis,
        free_logprob: float,
        first_logprobs: npt.NDArray[np.float32] | None = None,
    ) -> DetectedHypothesis:
        """Menu / yes-no: the best candidate first and the free decode after it, or only the free
        decode when the speech is out of grammar. Confidence of a match: 1.0 when the phrase is as
        likely as the free decode, falling linearly to 0.5 at :data:`REJECT_MARGIN`; a rejected
        free decode keeps at most 0.49 (the same scale), so ``>= 0.5`` always means "in grammar"."""
        candidates = self._candidates(hints)
        said = phrase_key(free.text)
        for reported, phrase in candidates:
            if phrase_key(phrase) == said:  # the model wrote the phrase unconstrained: no need to force
                return self._matched(reported, 1.0, samples, free)
        longest = max(len(phrase.split()) for _reported, phrase in candidates)
        if len(said.split()) > longest + RESCORE_EXTRA_WORDS:
            return self._rejected(free, free.confidence)
        candidates = self._likely(candidates, first_logprobs)
        num_frames = max(1, len(samples) // HOP_LENGTH)
        scores = self.score_phrases(encoded, code, candidates, num_frames)
        if not scores:
            return free
        best = max(scores, key=lambda s: s.mean_logprob)
        margin = best.mean_logprob - free_logprob
        confidence = float(min(1.0, max(0.0, 1.0 + 0.5 * margin / -REJECT_MARGIN)))
        if margin < REJECT_MARGIN or best.mean_logprob < MIN_PHRASE_LOGPROB:
            return self._rejected(free, confidence)
        return self._matched(best.reported, confidence, samples, free)

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
    "DIGIT_TOKEN_CHARS", "MAX_PROMPT_TOKENS", "MIN_PHRASE_LOGPROB", "REJECT_MARGIN", "RESCORE_EXTRA_WORDS",
    "RESCORE_FIRST_TOKENS", "RESCORE_MARGIN_FRAMES", "YESNO_CANDIDATES", "HintedDecoding", "PhraseScore",
    "phrase_key",
]
