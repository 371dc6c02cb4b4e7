"""Concurrent whole calls through ``voicebot run``: reaction time from the end of the caller's speech
to the robot's answer, per number of simultaneous calls.

Usage: .venv/bin/python bench/call_bench.py [--calls 1,4,8,16] [--lead-s 13] [--stagger-ms 0]
                                            [--stt-workers 2] [--no-hints]
       CT2_FORCE_CPU_ISA=GENERIC .venv/bin/python bench/call_bench.py --calls 1,4   (another ISA)

Starts ``voicebot run`` (demo dialplan, embedded recognizer, free SIP port and RTP range, temp
records and TTS cache) and, for each N, places N sipp calls at once (one sipp process each;
``--stagger-ms`` spreads their starts so that their speech ends do not all coincide). Every caller
stays silent for ``--lead-s`` (the menu greeting plays out), says "My account balance, please."
(espeak-ng -> 8 kHz -> G.711 mu-law pcap), listens, and hangs up; the demo answers with "Please
say or key in your account number, then press pound.". The robot runs as a real deployment does:
recognition hints on (the app's default: each listening state tells the embedded recognizer its
prompt and phrases, and the menu's finals are rescored against the demo menu's phrases);
``--no-hints`` turns them off for comparison. The caller's audio is the same bytes on every run and
every machine (voicebot.testing.speech), and ``CT2_FORCE_CPU_ISA`` (GENERIC, AVX2, AVX512; unset:
AVX2 where the CPU has it, even with AVX-512) is passed to the robot, so runs with different ISAs
differ only in the model's arithmetic.

A ``dumpcap`` capture on lo (filtered to the robot's RTP port range) gives both directions of every
call, keyed by the robot's RTP port. Per call:
  speech end  the capture time of the caller's last audible packet (RMS > 300): the end of speech as
              the robot's socket saw it;
  answer      the capture time of the robot's first audible packet after that (the answer prompt;
              measured only for completed calls, where it is the account-number question);
  reaction    answer - speech end. It includes the recognizer's end-of-utterance pause (VAD
              max pause), the final decode, the dialog step and the prompt start.
A call counts as completed when sipp finished without error and the dialog routed it where the
caller asked to go: the call record shows the robot went to ``ask_account`` (the menu's "balance"
intent), whatever words the recognizer wrote. The other outcomes are counted by where the dialog
went instead: ``misrouted`` (another state, e.g. the operator), ``no route`` (it stayed in the menu:
no match, no input, or a "did you say ...?" question the silent caller never answers). Each round
also prints what the recognizer heard, per distinct text, so a run on another CPU shows what changed.
Per N it prints reaction p50/p95/max, completed/failed, and the voicebot
process's CPU% over the round (/proc/<pid>/stat utime+stime, children included; 200 % = both cores
of this 2-core machine), the N sipp callers' CPU% (they share the machine), and the app's own
``call.reaction`` log p50 (its VAD's speech end -> answer queued), and for the round's finals the
embedded recognizer's queue wait for a decode worker and decode time (p50/max, from its
``stt.pool.final_decoded`` log lines): reaction ~ pause (600 ms) + wait + decode - the speculative
head start. The 1-minute load average at the start of each round is printed (the machine is shared).
Bounded: every call has a deadline of its pcap length + 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import (
    Capture,
    Pause,
    Say,
    Voicebot,
    call,
    flows,
    new_call_id,
    sound_runs,
    speech_pcap,
    start_voicebot,
)
from tests.sip.peers import SippResult

SOUND_RMS = 300
SENTENCE = "My account balance, please."
ROUTED_TO = "ask_account"  # the demo menu's "balance" intent goes here
MENU = "menu"
HOLD_AFTER_SPEECH_S = 6.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[11:15] = utime stime cutime cstime (proc(5), counted from field 3 "state" = index 0)
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def outcome_of(sipp_ok: bool, visited: list[str]) -> str:
    """Where the dialog routed a call: completed, misrouted (to which state), no route, or a sipp error."""
    if ROUTED_TO in visited:
        return "completed" if sipp_ok else "completed, sipp failed"
    elsewhere = [state for state in visited if state != MENU]
    if elsewhere:
        return f"misrouted to {elsewhere[0]}"
    return "no route (stayed in the menu)" if visited else "no call record"


def p50_max(values: list[float]) -> str:
    if not values:
        return f"{'-':>11}"
    return f"{statistics.median(values):>5.0f}/{max(values):<5.0f}"


async def staggered_call(delay_s: float, *args: Any, **kwargs: Any) -> SippResult:
    await asyncio.sleep(delay_s)
    return await call(*args, **kwargs)


async def one_round(bot: Voicebot, n: int, pcap: Path, pcap_s: float, lead_s: float,
                    work: Path, stagger_s: float) -> str:
    round_dir = work / f"round-{n}"
    round_dir.mkdir()
    call_ids = [new_call_id(f"bench{n}-{i}") for i in range(n)]
    reactions_logged_before = len(bot.log_events("call.reaction"))
    finals_logged_before = len(bot.log_events("stt.pool.final_decoded"))
    load_1min = os.getloadavg()[0]
    with Capture(round_dir / "rtp.pcap", bot.rtp_ports) as capture:
        cpu0, wall0, sipp0 = cpu_seconds(bot.pid), time.monotonic(), children_cpu_seconds()
        results = await asyncio.gather(*(
            staggered_call(i * stagger_s, bot, "caller_hangup", round_dir, call_id=cid, name=f"caller-{i}",
                           timeout_s=pcap_s + 60, pcap=pcap, pause_ms=0, hold_ms=int((pcap_s + 1.0) * 1000))
            for i, cid in enumerate(call_ids)))
        cpu1, wall1, sipp1 = cpu_seconds(bot.pid), time.monotonic(), children_cpu_seconds()
    cpu_pct = 100 * (cpu1 - cpu0) / (wall1 - wall0)
    sipp_pct = 100 * (sipp1 - sipp0) / (wall1 - wall0)  # the N sipp processes, reaped by now

    completed, errors = 0, []
    completed_ids: set[str] = set()
    outcomes: Counter[str] = Counter()
    heard: Counter[str] = Counter()
    for cid, result in zip(call_ids, results, strict=True):
        record = bot.calls_show(cid)
        visited = [s["state"] for s in record["states"]] if record else []
        texts = [u["text"] for u in record["utterances"]] if record else []
        heard.update(texts[:1] or ["(nothing)"])
        outcome = outcome_of(result.returncode == 0, visited)
        outcomes[outcome] += 1
        if outcome == "completed":
            completed += 1
            completed_ids.add(cid)
        else:
            errors.append(f"{cid}: {outcome}, sipp exit {result.returncode}, states {visited}, heard {texts}")

    # Which call each robot RTP port served: the robot sends to the caller's SDP port, which its
    # sip.invite.received log line names with the Call-ID.
    datagrams = capture.datagrams()
    call_of_port = {e.get("remote_rtp_port"): e.get("call_id") for e in bot.log_events("sip.invite.received")}
    reactions: list[float] = []
    overlapped = 0
    for port, flow in flows(datagrams, bot.rtp_ports).items():
        sent_to = Counter(d.dst[1] for d in datagrams if d.src[1] == port).most_common(1)
        if not sent_to or call_of_port.get(sent_to[0][0]) not in completed_ids:
            continue  # a failed call's next prompt is a re-prompt, not the answer
        caller = [p for p in flow["caller"] if p.rms > SOUND_RMS]
        robot = [p for p in flow["robot"] if p.rms > SOUND_RMS]
        if not caller or not robot:
            continue
        speech_start, speech_end = caller[0].time_s, caller[-1].time_s
        greeting = next(sound_runs(robot, gap_s=1.0))
        if greeting[-1].time_s > speech_start:
            overlapped += 1  # the caller spoke into the greeting (barge-in): --lead-s is too short
        answer = next((p for p in robot if p.time_s > speech_end), None)
        if answer is not None:
            reactions.append((answer.time_s - speech_end) * 1000)
    logged = [e.get("reaction_ms") for e in bot.log_events("call.reaction")[reactions_logged_before:]]
    logged_ms = [float(x) for x in logged if isinstance(x, int | float)]
    finals = bot.log_events("stt.pool.final_decoded")[finals_logged_before:]
    wait_ms = [float(e["wait_ms"]) for e in finals if not e.get("cancelled")]
    decode_ms = [float(e["decode_ms"]) for e in finals if not e.get("cancelled")]

    if reactions:
        line = (f"{n:>3}  {quantile(reactions, 0.5):>8.0f}  {quantile(reactions, 0.95):>8.0f}  "
                f"{max(reactions):>8.0f}  {completed:>5}/{n - completed:<5}  {cpu_pct:>6.0f}  "
                f"{sipp_pct:>6.0f}  "
                f"{statistics.median(logged_ms) if logged_ms else float('nan'):>9.0f}")
    else:
        line = (f"{n:>3}  {'-':>8}  {'-':>8}  {'-':>8}  {completed:>5}/{n - completed:<5}  {cpu_pct:>6.0f}  "
                f"{sipp_pct:>6.0f}  {'-':>9}")
    line += f"  {p50_max(wait_ms)}  {p50_max(decode_ms)}  {load_1min:>5.1f}"
    line += "\n     heard: " + "; ".join(f"{text!r} x{count}" for text, count in heard.most_common())
    if set(outcomes) != {"completed"}:
        line += "\n     outcomes: " + "; ".join(f"{o} x{c}" for o, c in outcomes.most_common())
    if overlapped:
        line += f"  ({overlapped} callers spoke into the greeting)"
    for error in errors[:3]:
        line += f"\n     failed: {error}"
    return line


async def main_async(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="call-bench-"))
    t0 = time.monotonic()
    isa = os.environ.get("CT2_FORCE_CPU_ISA", "")
    bot = start_voicebot(work / "bot", tts_cache=work / "tts-cache",
                         recognizer={"hints": not args.no_hints},
                         extra_args=("--max-calls", "40", "--stt-workers", str(args.stt_workers)))
    print(f"voicebot run pid {bot.pid} on 127.0.0.1:{bot.sip_port}, "
          f"RTP {bot.rtp_ports[0]}-{bot.rtp_ports[1]}, --stt-workers {args.stt_workers}, "
          f"ready in {time.monotonic() - t0:.1f} s")
    print(f"CT2_FORCE_CPU_ISA={isa or '(unset: ' + cpu_isa() + ')'}, recognition hints "
          f"{'off (--no-hints)' if args.no_hints else 'on (the default)'}")
    print(f"machine: shared {os.cpu_count()}-core VM (other engineers' tests running); "
          "sipp and dumpcap share the cores\n")
    script: list[Say | Pause] = [Pause(int(args.lead_s * 1000)), Say(SENTENCE),
                                 Pause(int(HOLD_AFTER_SPEECH_S * 1000))]
    speech = speech_pcap(work, script)
    print(f'caller: {args.lead_s:.0f} s silence, "{SENTENCE}" '
          f"({speech.utterances[0][2] - speech.utterances[0][1]:.2f} s), "
          f"{HOLD_AFTER_SPEECH_S:.0f} s listening\n")
    if args.stagger_ms:
        print(f"calls of a round start {args.stagger_ms:.0f} ms apart\n")
    print("  N  react p50  react p95  react max  done/failed  CPU %  sipp %  app p50 ms"
          "  wait p50/max  decode p50/max  load")
    print("     (ms, end of caller speech -> first packet of the robot's answer, from the capture;"
          " wait/decode: the recognizer's finals, ms)")
    try:
        for n in args.calls:
            line = await one_round(bot, n, speech.path, speech.duration_s, args.lead_s, work,
                                   args.stagger_ms / 1000)
            print(line, flush=True)
    finally:
        bot.stop()
    print(f"\nwork files (captures, sipp logs, voicebot log): {work}")


def cpu_isa() -> str:
    """The ISA CTranslate2 picks here by itself (from /proc/cpuinfo's flags): AVX2 when the CPU has
    it, AVX512 or not (CTranslate2 4.x leaves AVX512 out of its automatic dispatch; only
    CT2_FORCE_CPU_ISA=AVX512 selects it), then AVX, then GENERIC. Its bundled oneMKL and oneDNN
    kernels choose their own, up to AVX-512, whatever CTranslate2 runs."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return "unknown CPU"
    wide = ", CPU has AVX-512" if "avx512f" in flags else ""
    if "avx2" in flags:
        return "AVX2" + wide
    return "AVX" if "avx" in flags else "GENERIC"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,4,8,16", help="concurrent calls per round (default: 1,4,8,16)")
    parser.add_argument("--lead-s", type=float, default=13.0,
                        help="caller silence before speaking; the greeting is 11.2 s (default: 13)")
    parser.add_argument("--stagger-ms", type=float, default=0.0,
                        help="start call i of a round i x this later (default: 0, all at once)")
    parser.add_argument("--stt-workers", type=int, default=2, help="embedded recognizer decode workers (2)")
    parser.add_argument("--no-hints", action="store_true",
                        help="run the robot without recognition hints ([recognizer] hints = false)")
    args = parser.parse_args()
    args.calls = [int(x) for x in args.calls.split(",")]
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
