"""Word error rate and decode time of the recognition engine on telephone speech.

Usage: .venv/bin/python bench/stt_wer.py [--no-reference] [--verbose]

Sets: the recorded human speech of pocketsphinx-testdata (voicebot.testing.speech.real_speech_set)
and a few espeak-ng sentences, all through the telephone path: 8 kHz, 300-3400 Hz, G.711 mu-law
round trip, then back up to 16 kHz with soxr, exactly what the server hands to the engine.

Modes: ``final`` (beam 5, our short window + token cap + word alignment), ``partial`` (greedy),
and ``ref30`` (beam 5 with Whisper's reference 30 s window and no token cap) to show what the short
window saves. One decode per utterance and mode, one worker, one core (intra_threads=1).

Scoring: both sides lower-cased, hyphens split, punctuation dropped, "mr"/"mrs" spelled out,
numbers normalized with voicebot.stt.normalize and adjacent digit groups joined, so "10 of clubs"
and "ten of clubs" agree. WER = word-level Levenshtein distance / reference words, over the set.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import numpy.typing as npt

from voicebot.stt.audio import pcm16_to_float32, resample
from voicebot.stt.model import MAX_WINDOW_S, WhisperEngine, base_model_files
from voicebot.stt.normalize import normalize_numbers
from voicebot.testing.speech import (
    g711_roundtrip,
    real_speech_set,
    silence,
    telephone_speech,
    to_telephone_band,
)

ESPEAK_SENTENCES = (
    "please connect me to the billing department",
    "i would like to check the status of my order",
    "my account number is four five six seven",
    "yes that is correct",
    "no thank you goodbye",
    "can i speak to a human operator please",
)
_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint"}


def score_text(text: str) -> list[str]:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    words = [_ABBREVIATIONS.get(w, w) for w in text.split()]
    words = normalize_numbers(" ".join(words)).split()
    joined: list[str] = []
    for w in words:  # "5 5" and "55" are the same spoken digit string
        if joined and w.isdigit() and joined[-1].isdigit():
            joined[-1] += w
        else:
            joined.append(w)
    return joined


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


@dataclass
class Item:
    name: str
    reference: str
    audio: npt.NDArray[np.float32]


def phone(pcm8k: bytes) -> npt.NDArray[np.float32]:
    return resample(pcm16_to_float32(pcm8k), 8000, 16000)


def load_sets() -> dict[str, list[Item]]:
    human = [
        Item(u.name, u.transcript, phone(g711_roundtrip(to_telephone_band(u.wav_path))))
        for u in real_speech_set()
    ]
    synthetic = [
        Item(f"espeak-{i}", s, phone(silence(300) + telephone_speech(s) + silence(300)))
        for i, s in enumerate(ESPEAK_SENTENCES)
    ]
    return {"human (pocketsphinx)": human, "espeak-ng": synthetic}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-reference", action="store_true", help="skip the slow 30 s-window mode")
    parser.add_argument("--verbose", action="store_true", help="print every hypothesis")
    args = parser.parse_args()

    t0 = time.perf_counter()
    files = base_model_files()
    engine = WhisperEngine(files, workers=1)
    load_s = time.perf_counter() - t0
    reference = None if args.no_reference else WhisperEngine(
        files, workers=1, min_window_s=MAX_WINDOW_S, cap_tokens=False, word_alignment=False
    )
    sets = load_sets()
    print(f"model: whisper {engine.name} int8, CTranslate2, intra_threads=1; load {load_s:.1f} s")
    print("machine: shared 2-core VM, other engineers' tests running; times are wall clock\n")
    header = (
        f"{'set':<22}{'mode':<9}{'utts':>5}{'ref words':>10}{'WER %':>8}"
        f"{'mean s':>8}{'p50 s':>8}{'max s':>8}{'RTF':>7}"
    )
    print(header)
    print("-" * len(header))
    modes: list[tuple[str, WhisperEngine, bool]] = [("final", engine, False), ("partial", engine, True)]
    if reference is not None:
        modes.append(("ref30", reference, False))
    for set_name, items in sets.items():
        engine.transcribe(items[0].audio, language="en", partial=False)  # warm-up
        audio_s = sum(len(it.audio) for it in items) / 16000
        for mode, eng, partial in modes:
            errors = words = 0
            times: list[float] = []
            for it in items:
                start = time.perf_counter()
                hyp = eng.transcribe(it.audio, language="en-US", partial=partial)
                times.append(time.perf_counter() - start)
                ref_words = score_text(it.reference)
                errors += edit_distance(ref_words, score_text(hyp.text))
                words += len(ref_words)
                if args.verbose:
                    print(f"  [{mode}] {it.name}: {hyp.text!r} (conf {hyp.confidence:.2f}) | {it.reference}")
            wer = 100.0 * errors / max(1, words)
            print(
                f"{set_name:<22}{mode:<9}{len(items):>5}{words:>10}{wer:>8.1f}{statistics.mean(times):>8.2f}"
                f"{statistics.median(times):>8.2f}{max(times):>8.2f}{sum(times) / audio_s:>7.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
