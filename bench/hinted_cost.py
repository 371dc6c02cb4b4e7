"""CPU time per hinted final: the engine's menu / yes-no decode on the intent bench's audio.

Usage: PYTHONPATH=$PWD .venv/bin/python bench/hinted_cost.py [--voices espeak:en-us@175,piper:joe@1.00]
           [--cases menu,yesno,oog] [--reps 1]

Every menu, yes/no and menu out-of-grammar case of bench/intent_bench.py for the given voices
(synthesized into the bench's cache if missing), with 150 ms of silence either side, resampled to
16 kHz, is decoded as a final with the hints the dialog sends for its state
(``WhisperEngine.transcribe(..., partial=False, hints=...)``: free decode, rescoring, word times). It
prints the process CPU time per final (mean, p50, p95): one decode at a time on one CTranslate2
worker, so the CPU time is what the final costs and moves little with the shared machine's load,
unlike the wall time (also printed, with the load average). Run it from two trees to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.intent_bench as ib
from voicebot.dialog.loader import load_dialplan
from voicebot.stt.audio import pcm16_to_float32, resample
from voicebot.stt.model import load_engine
from voicebot.testing.speech import silence
from voicebot.testing.voices import parse_voice


def _quantile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="espeak:en-us@175,piper:joe@1.00")
    parser.add_argument("--cases", default="menu,yesno,oog")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get(
        "XDG_CACHE_HOME", Path.home() / ".cache")) / "voicebot" / "intent-bench")
    args = parser.parse_args()
    engine = load_engine("base", workers=1)
    plans = {name: load_dialplan(path) for name, path in ib.DIALPLANS.items()}
    voices = [parse_voice(name) for name in args.voices.split(",") if name.strip()]
    kinds = args.cases.split(",")
    # Menu and yes/no states only: ask_account is a digits state (no rescoring).
    cases = [c for c in ib.build_cases(plans, voices, kinds, False) if c.state != "ask_account"]
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for case in cases:
        pcm = silence(150) + ib.line_audio(case, args.cache_dir, None) + silence(150)
        hints = ib.Reached(plans[case.plan], case.state).hints()
        items.append((resample(pcm16_to_float32(pcm), 8000, 16000), hints))
    if not items:
        raise SystemExit("no cases selected")
    engine.transcribe(items[0][0], language="en-US", partial=False, hints=items[0][1])  # warm-up, uncounted
    cpu_s: list[float] = []
    wall_s: list[float] = []
    for _ in range(args.reps):
        for samples, hints in items:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            engine.transcribe(samples, language="en-US", partial=False, hints=hints)
            cpu_s.append(time.process_time() - cpu0)
            wall_s.append(time.perf_counter() - wall0)
    print(f"{len(cpu_s)} finals ({args.voices}): CPU per final mean {statistics.mean(cpu_s) * 1000:.0f} ms, "
          f"p50 {_quantile(cpu_s, 0.5) * 1000:.0f} ms, p95 {_quantile(cpu_s, 0.95) * 1000:.0f} ms; "
          f"wall mean {statistics.mean(wall_s) * 1000:.0f} ms, p95 {_quantile(wall_s, 0.95) * 1000:.0f} ms; "
          f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
