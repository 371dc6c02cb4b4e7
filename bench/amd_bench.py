"""Answering-machine detection on generated answers through the telephone path.

Usage: .venv/bin/python bench/amd_bench.py [--voices en-us,en-gb,...] [--noise-snr-db 20] [--verbose]

The set: people answering (short greetings and sentence-long ones, then the silence of someone
waiting for the caller) and voicemail greetings of several lengths, with and without a beep, in
several espeak-ng voices and rates, 8 kHz, 300-3400 Hz, G.711 mu-law round trip, optional line
noise. Each answer is fed to voicebot.amd.AnsweringMachineDetector frame by frame (cadence and
beep; the recognizer's words are not used here, so this is the detector's floor: a deployment
that feeds partials decides voicemail earlier and more often right).

Prints accuracy, the share of people judged machine and of machines judged human, unknowns, and
the time to decision after the answer (p50/p95/max) per class. Aims (issue 10): >= 90 % correct,
<= 3 % of people judged machine, people decided within 3 s.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import statistics
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebot.amd import AnsweringMachineDetector
from voicebot.media.frames import BYTES_PER_FRAME
from voicebot.testing.speech import silence, telephone_speech

HUMAN_GREETINGS = (
    "Hello?", "Hello.", "Yeah?", "Hi.", "Yes?", "Hello, who's this?", "Speaking.", "Hi, it's Anna.",
    "Hello, this is Mark.", "Good morning.", "Yes, hello?",
    # Sentence-long: what app_amd tends to call a machine.
    "Good afternoon, Smith residence, Mary speaking.",
    "Hello, you're speaking with David, how can I help?",
)
MACHINE_GREETINGS = (
    "Leave a message.",
    "Hi, it's Tom. Leave a message after the tone.",
    "You have reached the voicemail of Sarah Lee. Please leave your name and number after the beep.",
    "Hi, you've reached the Johnson family. We can't come to the phone right now, but if you leave a "
    "message we will call you back as soon as we can.",
    "The person you are calling is not available. Please record your message after the tone. When you "
    "have finished recording, you may hang up.",
    "Thank you for calling Dr. Patel's office. Our office hours are nine to five, Monday to Friday. "
    "Please leave a message and we will return your call on the next business day.",
)
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-029")
RATES_WPM = (140, 175)
BEEP_HZ = (1000.0, 1400.0)


@dataclass(frozen=True)
class Answer:
    kind: str  # human | machine
    text: str
    voice: str
    rate_wpm: int
    beep_hz: float | None
    pcm: bytes


def tone(freq_hz: float, ms: int, amplitude: float = 9000.0) -> bytes:
    n = 8000 * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * freq_hz * i / 8000))
                                  for i in range(n)))


def with_noise(pcm: bytes, snr_db: float, seed: int) -> bytes:
    import random

    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    voiced = [s for s in samples if abs(s) > 300] or [1]
    power = sum(s * s for s in voiced) / len(voiced)
    sigma = math.sqrt(power / (10 ** (snr_db / 10)))
    rng = random.Random(seed)
    return struct.pack(f"<{len(samples)}h", *(max(-32768, min(32767, int(s + rng.gauss(0, sigma))))
                                             for s in samples))


def build_set(voices: tuple[str, ...], cache: Path) -> list[Answer]:
    cache.mkdir(parents=True, exist_ok=True)
    answers: list[Answer] = []

    def speech(text: str, voice: str, rate: int) -> bytes:
        key = hashlib.sha256(f"{voice}|{rate}|{text}".encode()).hexdigest()[:20]
        path = cache / f"{key}.raw"
        if not path.exists():
            path.write_bytes(telephone_speech(text, voice=voice, words_per_minute=rate))
        return path.read_bytes()

    for i, voice in enumerate(voices):
        rate = RATES_WPM[i % len(RATES_WPM)]
        for text in HUMAN_GREETINGS:
            # A person answers after a short ring-off pause, then waits for the caller.
            answers.append(Answer("human", text, voice, rate, None,
                                  silence(300) + speech(text, voice, rate) + silence(4000)))
        for j, text in enumerate(MACHINE_GREETINGS):
            beep = BEEP_HZ[(i + j) % len(BEEP_HZ)] if (i + j) % 3 != 2 else None
            tail = (silence(400) + tone(beep, 500) if beep else b"") + silence(3000)
            answers.append(Answer("machine", text, voice, rate, beep,
                                  silence(200) + speech(text, voice, rate) + tail))
    return answers


def decide(pcm: bytes) -> tuple[str, str, int]:
    detector = AnsweringMachineDetector()
    for i in range(0, len(pcm) - BYTES_PER_FRAME + 1, BYTES_PER_FRAME):
        detector.feed(pcm[i:i + BYTES_PER_FRAME])
        if detector.decision is not None:
            break
    d = detector.decision
    return ("unknown", "no decision", len(pcm) // 16) if d is None else (d.result, d.reason, d.decided_ms)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", default=",".join(VOICES))
    parser.add_argument("--noise-snr-db", type=float, default=None)
    parser.add_argument("--cache", type=Path, default=Path("var/bench-cache/amd"))
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    answers = build_set(tuple(v for v in args.voices.split(",") if v), args.cache)
    rows = []
    for n, a in enumerate(answers):
        pcm = with_noise(a.pcm, args.noise_snr_db, n) if args.noise_snr_db is not None else a.pcm
        result, reason, at_ms = decide(pcm)
        rows.append((a, result, reason, at_ms))
        if args.verbose or (result != a.kind):
            verdict = "ok " if result == a.kind else "BAD"
            print(f"{verdict} {a.kind:7} -> {result:7} {reason:16} {at_ms:5d} ms "
                  f"{a.voice:15} {a.rate_wpm} wpm beep={a.beep_hz} {a.text[:60]!r}")
    humans = [r for r in rows if r[0].kind == "human"]
    machines = [r for r in rows if r[0].kind == "machine"]
    correct = sum(1 for a, res, _, _ in rows if res == a.kind)
    print(f"\nanswers: {len(rows)} ({len(humans)} people, {len(machines)} voicemail; voices {args.voices}; "
          f"noise {args.noise_snr_db if args.noise_snr_db is not None else 'none'} dB SNR)")
    print("| measure | value |\n|---|---:|")
    print(f"| correct | {correct}/{len(rows)} = {100 * correct / len(rows):.1f} % |")
    hm = sum(1 for _, res, _, _ in humans if res == "machine")
    mh = sum(1 for _, res, _, _ in machines if res == "human")
    unknown = sum(1 for _, res, _, _ in rows if res == "unknown")
    print(f"| people judged machine | {hm}/{len(humans)} = {100 * hm / max(len(humans), 1):.1f} % |")
    print(f"| voicemail judged human | {mh}/{len(machines)} = {100 * mh / max(len(machines), 1):.1f} % |")
    print(f"| unknown | {unknown}/{len(rows)} |")
    for label, group in (("people", humans), ("voicemail", machines)):
        times = [at / 1000 for _, _, _, at in group]
        print(f"| decision time, {label} (p50 / p95 / max) | {statistics.median(times):.2f} / "
              f"{pct(times, 0.95):.2f} / {max(times):.2f} s |")
    reasons: dict[str, int] = {}
    for _, res, reason, _ in rows:
        reasons[f"{res}:{reason}"] = reasons.get(f"{res}:{reason}", 0) + 1
    print("reasons: " + ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
