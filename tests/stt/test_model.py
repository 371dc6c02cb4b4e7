"""WhisperEngine with the real Whisper base model: telephone speech in, words out.

The model loads once per module (a few seconds); every test here is kept to one or two decodes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from voicebot.errors import ConfigError
from voicebot.stt.audio import pcm16_to_float32, resample
from voicebot.stt.engine import UnsupportedLanguage
from voicebot.stt.model import (
    BASE_MODEL_SHA256,
    DetectedHypothesis,
    ModelError,
    ModelIntegrityError,
    WhisperEngine,
    _segments,
    base_model_files,
    load_engine,
    log_mel_spectrogram,
    max_new_tokens,
    mel_filters,
    whisper_code,
    window_s,
)
from voicebot.testing.speech import (
    g711_roundtrip,
    real_speech_set,
    silence,
    telephone_speech,
    to_telephone_band,
)

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine() -> Iterator[WhisperEngine]:
    yield load_engine(workers=2)


def phone_audio(pcm8k: bytes) -> npt.NDArray[np.float32]:
    """8 kHz telephone PCM as the server hands it to the engine: float32 at 16 kHz via soxr."""
    return resample(pcm16_to_float32(pcm8k), 8000, 16000)


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[\w']+", text.lower()))


def heard(text: str, reference: str) -> float:
    """Share of the reference's words found in ``text``.

    espeak speech through G.711 sits where the CPU's rounding decides single words (issue 12: "My
    account balance, please." -> "My account, ma'er, l'en, please." on AVX-512, "my account mail
    and please" with CT2_FORCE_CPU_ISA=AVX2) while the audio is the same bytes every run. So the
    espeak tests ask for most of the words, never for one particular word.
    """
    said = words_of(text.replace("good bye", "goodbye"))
    wanted = reference.lower().split()
    return sum(w in said for w in wanted) / len(wanted)


def lcs_length(a: str, b: str) -> int:
    """Length of the longest common subsequence."""
    row = [0] * (len(b) + 1)
    for ch in a:
        prev_diag = 0
        for j, other in enumerate(b, 1):
            prev_diag, row[j] = row[j], prev_diag + 1 if ch == other else max(row[j], row[j - 1])
    return row[-1]


# ---- pure parts of the front end ----


def test_window_and_token_cap_follow_the_measured_rule() -> None:
    assert window_s(0.5) == 8
    assert window_s(6.0) == 8
    assert window_s(6.2) == 9
    assert window_s(10.2) == 13
    assert window_s(0.5, min_window_s=12) == 12
    assert window_s(40.0) == 30
    assert max_new_tokens(2.0) == 26


def test_mel_filters_match_whispers_shape_and_cover_the_band() -> None:
    filters = mel_filters(80)
    assert filters.shape == (80, 201)
    assert (filters >= 0).all()
    assert (filters.sum(axis=1) > 0).all()  # every band has some FFT bins
    # Slaney normalization: filter height falls as bands widen at high frequency.
    assert filters[0].max() > filters[-1].max()


def test_log_mel_of_a_tone_peaks_in_the_right_band() -> None:
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    features = log_mel_spectrogram(tone, n_frames=300)
    assert features.shape == (80, 300)
    band = int(np.argmax(features[:, 50]))
    centres = (mel_filters(80) * np.linspace(0, 8000, 201)).sum(axis=1) / mel_filters(80).sum(axis=1)
    assert abs(centres[band] - 1000) < 120
    # The zero padding after the tone sits at the floor: 8 (log10 units) below the peak, scaled.
    assert features[:, 250].max() == pytest.approx(features.max() - 2.0, abs=1e-5)


def test_long_audio_is_cut_at_the_quietest_moment_before_28_s() -> None:
    rate = 16000
    audio = np.full(70 * rate, 0.1, dtype=np.float32)
    audio[26 * rate : 26 * rate + 320] = 0.0  # a 20 ms gap 2 s before the limit
    pieces = _segments(audio)
    assert pieces[0] == (0, 26 * rate + 320)
    assert all(end - start <= 28 * rate for start, end in pieces)
    assert [p[0] for p in pieces[1:]] == [p[1] for p in pieces[:-1]] and pieces[-1][1] == len(audio)
    assert _segments(audio[: 20 * rate]) == [(0, 20 * rate)]


# ---- languages ----


@pytest.mark.parametrize(
    ("tag", "code"), [("ru-RU", "ru"), ("EN-us", "en"), ("en", "en"), ("zh-Hans-CN", "zh"), ("he-IL", "he"),
                      ("iw", "he"), ("nb-NO", "no"), ("kk_KZ", "kk")],
)
def test_bcp47_to_whisper_code(tag: str, code: str) -> None:
    assert whisper_code(tag) == code


def test_resolve_language(engine: WhisperEngine) -> None:
    assert engine.resolve_language([]) is None
    assert engine.resolve_language(["auto"]) is None
    assert engine.resolve_language(["ru-RU", "AUTO"]) is None
    assert engine.resolve_language(["ru-RU"]) == "ru-RU"
    assert engine.resolve_language(["xx-XX", "en-US"]) == "en-US"  # unknown ones are skipped
    assert engine.resolve_language(["ru-RU", "en-US"]) == "ru-RU,en-US"
    with pytest.raises(UnsupportedLanguage, match="'xx-XX', 'qq' is not supported by model 'base'"):
        engine.resolve_language(["xx-XX", "qq"])
    with pytest.raises(UnsupportedLanguage, match="'tlh' is not supported"):
        engine.transcribe(np.zeros(16000, dtype=np.float32), language="tlh", partial=True)


# ---- recognition ----


def test_telephone_espeak_sentence(engine: WhisperEngine) -> None:
    audio = phone_audio(silence(300) + telephone_speech("please connect me to the billing department"))
    hyp = engine.transcribe(audio, language="en-US", partial=False)
    # espeak's "billing" through G.711 is heard as "willing": most words, not all.
    assert heard(hyp.text, "please connect me to the billing department") >= 0.5, hyp.text
    assert hyp.language == "en-US"
    assert isinstance(hyp, DetectedHypothesis) and hyp.language_probability == 1.0  # fixed, not detected
    assert 0.3 < hyp.confidence <= 1.0
    # Aligned word times lie inside the audio, in order, and the first word starts after the silence.
    assert [w.text for w in hyp.words] == hyp.text.split()
    starts = [w.start_ms for w in hyp.words]
    assert starts == sorted(starts)
    assert all(w.start_ms <= w.end_ms <= len(audio) * 1000 // 16000 for w in hyp.words)
    assert hyp.words[0].start_ms >= 150


def test_real_human_recording_and_language_detection(engine: WhisperEngine) -> None:
    item = next(u for u in real_speech_set() if u.name.endswith("0880"))
    audio = phone_audio(g711_roundtrip(to_telephone_band(item.wav_path)))
    hyp = engine.transcribe(audio, language=None, partial=False)
    assert {"not", "young", "man"} <= words_of(hyp.text), hyp.text
    assert hyp.language == "en-US"  # detected
    # Whisper's detection probability of English on clear English speech.
    assert isinstance(hyp, DetectedHypothesis) and 0.5 < hyp.language_probability <= 1.0
    # Restricted to two languages, the probability is renormalized over the two.
    pair = engine.transcribe(audio, language="ru-RU,en-US", partial=True)
    assert isinstance(pair, DetectedHypothesis) and pair.language == "en-US"
    assert hyp.language_probability <= pair.language_probability <= 1.0


def test_spoken_digits(engine: WhisperEngine) -> None:
    speech = telephone_speech("my account number is four five six seven")
    audio = phone_audio(silence(300) + speech + silence(300))
    hyp = engine.transcribe(audio, language="en", partial=False)
    # Whisper writes digits itself. On espeak's voice (and depending on the CPU's rounding)
    # it gives "4567", "456, and...", "4.67" or "456,000": at least three of the four in order.
    assert lcs_length(re.sub(r"\D", "", hyp.text), "4567") >= 3, hyp.text
    assert heard(hyp.text, "my account number is") >= 0.5, hyp.text


def test_partial_recognizes_with_estimated_word_times(engine: WhisperEngine) -> None:
    audio = phone_audio(silence(500) + telephone_speech("thank you goodbye"))
    hyp = engine.transcribe(audio, language="en", partial=True)
    assert heard(hyp.text, "thank you goodbye") >= 0.5, hyp.text
    assert hyp.language == "en-US"
    # Partials spread the words over the voiced span: nothing before the leading silence.
    assert hyp.words and hyp.words[0].start_ms >= 450
    assert hyp.words[-1].end_ms <= len(audio) * 1000 // 16000


def test_silence_and_noise_give_empty_text(engine: WhisperEngine) -> None:
    assert engine.transcribe(np.zeros(32000, dtype=np.float32), language="en", partial=False).text == ""
    rng = np.random.default_rng(3)
    hiss = (rng.standard_normal(32000) * 0.002).astype(np.float32)
    hyp = engine.transcribe(hiss, language="en", partial=False)
    assert hyp.text == "" and hyp.words == () and hyp.confidence == 0.0
    assert engine.transcribe(np.zeros(100, dtype=np.float32), language="en", partial=True).text == ""
    # Nothing decoded: the language is the requested one, or unknown ("") when it had to be detected.
    quiet = np.zeros(8000, dtype=np.float32)
    assert engine.transcribe(quiet, language="ru-RU", partial=True).language == "ru-RU"
    assert engine.transcribe(quiet, language=None, partial=True).language == ""


def test_words_are_decoded_whole_even_when_tokens_split_characters(engine: WhisperEngine) -> None:
    text = " Мой ёжик четыре, 鬱蒼 Қазақстан ok"
    ids = engine._tokenizer.encode(text, add_special_tokens=False).ids
    # Byte-level BPE splits some of these characters across tokens; words must still be whole.
    assert any("\ufffd" in engine._tokenizer.decode([i]) for i in ids)
    assert [w for w, _ in engine._word_groups(ids)] == ["Мой", "ёжик", "четыре,", "鬱蒼", "Қазақстан", "ok"]


def test_non_finite_samples_do_not_poison_the_decode(engine: WhisperEngine) -> None:
    audio = np.full(16000, np.nan, dtype=np.float32)
    assert engine.transcribe(audio, language="en", partial=True).text == ""


def test_audio_longer_than_one_window_keeps_word_times_on_its_own_timeline(engine: WhisperEngine) -> None:
    # 29 s of silence (skipped without a decode) then speech: the words come from the second piece.
    speech = phone_audio(telephone_speech("thank you goodbye"))
    audio = np.concatenate([np.zeros(29 * 16000, dtype=np.float32), speech])
    hyp = engine.transcribe(audio, language="en", partial=False)
    assert heard(hyp.text, "thank you goodbye") >= 0.5, hyp.text
    assert hyp.words and hyp.words[0].start_ms >= 29_000
    assert hyp.words[-1].end_ms <= len(audio) * 1000 // 16000


def test_concurrent_calls_give_the_same_answer(engine: WhisperEngine) -> None:
    audio = phone_audio(telephone_speech("my account number is four five six"))
    expected = engine.transcribe(audio, language="en", partial=True).text
    results: list[str] = []

    def work() -> None:
        results.append(engine.transcribe(audio, language="en", partial=True).text)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [expected, expected]


# ---- loading ----


def test_sha_mismatch_is_a_clear_error() -> None:
    message = rf"has SHA-256 {BASE_MODEL_SHA256}, expected 0+:.*reinstall"
    with pytest.raises(ModelIntegrityError, match=message):
        base_model_files(expected_sha256="0" * 64)


def test_operator_model_directory(tmp_path: Path) -> None:
    files = base_model_files()
    (tmp_path / "model.bin").write_bytes(files.model_bin)
    (tmp_path / "config.json").write_bytes(files.config_json)
    (tmp_path / "vocabulary.txt").write_bytes(files.vocabulary)
    (tmp_path / "tokenizer.json").write_bytes(files.tokenizer_json)
    with pytest.raises(ModelIntegrityError, match="not the one configured"):
        load_engine(model_path=str(tmp_path), expected_sha256="f" * 64)
    own = load_engine(model_path=str(tmp_path), workers=1)
    assert own.name == tmp_path.name and own.multilingual
    hyp = own.transcribe(phone_audio(telephone_speech("thank you goodbye")), language="en", partial=True)
    assert heard(hyp.text, "thank you goodbye") >= 0.5, hyp.text


def test_bad_model_locations_and_names(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_engine(model_path=str(tmp_path / "nope"))
    with pytest.raises(ModelError, match=r"has no model\.bin"):
        load_engine(model_path=str(tmp_path))
    with pytest.raises(ConfigError, match="unknown model name 'huge'"):
        load_engine("huge")
