"""Concurrent real-time sessions through the real ``voicebot stt-server`` and the real model.

Usage: .venv/bin/python bench/stt_bench.py [--sessions 1,2,4,8] [--utterances 3] [--workers 2]
       .venv/bin/python bench/stt_bench.py --variants "beam=5,win=12,gate=0;beam=1,win=8" --rounds 2
       .venv/bin/python bench/stt_bench.py --sessions 1,4 --hints

``--hints`` runs every N twice on the same server, in turn: once as a plain v3 client (no hints) and
once with the demo menu's recognition hints on the call metadata (``x-voicebot-hints-bin``: the
menu prompt and its 19 phrases, voicebot.stt.hints). The utterances are not menu phrases, so every
final pays the full rescoring of all 19 phrases and must be rejected (the free decode stays first):
the worst case for latency, and word accuracy falls if a phrase is wrongly accepted.

``--variants`` compares server settings: one server per ``;``-separated variant (key=value pairs:
beam = final beam size, win = minimum decode window s, gate = endpointer energy gate dB (0 off),
hang = endpointer hangover ms, pause = default max pause ms, aggr = VAD aggressiveness; unset keys
keep the server's defaults; ``default`` = no overrides), all started up front, then for each N the
variants take turns (A/B/A/B, ``--rounds`` times), so a load change on the shared machine hits them
alike. Each line is labelled with its variant; the load average is printed per round.

Starts ``voicebot stt-server`` as a subprocess on 127.0.0.1 (free port, --no-auth), then for each N
opens N RecognizeStreaming sessions at once (starts staggered over 100 ms) from a client built from
the generated protos. Each session streams, at real-time pace in 100 ms chunks of 8 kHz LINEAR16,
``--utterances`` recorded human utterances (pocketsphinx-testdata after the telephone path: 300-3400
Hz, G.711 mu-law round trip), each preceded by 0.5 s and followed by 2 s of silence.

Per N it prints:
  eos->final  wall time from sending the chunk holding the end of speech (found from the signal's
              energy) to receiving that utterance's ``final``; it includes the endpointer's pause
              (max_pause_ms, 600 ms default), which the speculative decode overlaps.
  1st partial wall time from sending the chunk holding the start of speech to the first ``partial``.
  RTF         server CPU seconds / seconds of audio streamed (all sessions): compute per audio second.
  CPU %       server process CPU over the round (/proc/<pid>/stat utime+stime; 200 % = both cores).
  finals      finals received / utterances sent, and word accuracy of the finals (normalized as in
              bench/stt_wer.py), to show that load does not silently drop results.
  partial     utterances that got at least one partial / utterances sent: the server skips
              partial decodes when its workers are busy, so this falls (and RTF with it) under load.
Bounded: every session has a deadline of its audio length + 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # stdlib up to 3.12; audioop-lts provides it on 3.13+

import grpc

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt._proto import stt_service_pb2_grpc
from voicebot.stt.hints import menu_hints
from voicebot.testing.speech import g711_roundtrip, real_speech_set, silence, to_telephone_band

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stt_wer import edit_distance, score_text  # the sibling benchmark's scoring

DEMO_MENU = menu_hints(
    "Welcome to the voice bot demo. Say balance to hear your account balance, operator to speak with "
    "a person, or goodbye to end the call.",
    ["operator", "agent", "an agent", "a person", "human", "representative", "talk to someone",
     "goodbye", "good bye", "bye", "bye bye", "hang up", "that's all", "nothing else",
     "balance", "account balance", "my balance", "check my balance", "how much"],
)

RATE_HZ = 8000
CHUNK_MS = 100
LEAD_MS = 500
TAIL_MS = 2000
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Utterance:
    transcript: str
    pcm: bytes
    speech_start_ms: int  # within pcm (energy based)
    speech_end_ms: int


@dataclass
class SessionResult:
    eos_to_final_s: list[float] = field(default_factory=list)
    first_partial_s: list[float] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    expected: list[str] = field(default_factory=list)
    audio_s: float = 0.0
    error: str = ""


def speech_span_ms(pcm: bytes) -> tuple[int, int]:
    frame = RATE_HZ // 100 * 2  # 10 ms
    loud = [i for i in range(len(pcm) // frame) if audioop.rms(pcm[i * frame : (i + 1) * frame], 2) > 300]
    return (loud[0] * 10, loud[-1] * 10 + 10) if loud else (0, len(pcm) // 16)


def load_utterances() -> list[Utterance]:
    items = []
    for u in real_speech_set():
        pcm = g711_roundtrip(to_telephone_band(u.wav_path))
        start, end = speech_span_ms(pcm)
        items.append(Utterance(u.transcript, pcm, start, end))
    return items


def options() -> pb.StreamingRequest:
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                audio_format=pb.AudioFormatOptions(
                    raw_audio=pb.RawAudio(audio_encoding=pb.RawAudio.LINEAR16_PCM, sample_rate_hertz=RATE_HZ)
                ),
                text_normalization=pb.TextNormalizationOptions(
                    text_normalization=pb.TextNormalizationOptions.TEXT_NORMALIZATION_DISABLED
                ),
                language_restriction=pb.LanguageRestrictionOptions(
                    restriction_type=pb.LanguageRestrictionOptions.WHITELIST, language_code=["en-US"]
                ),
                audio_processing_type=pb.RecognitionModelOptions.REAL_TIME,
            )
        )
    )


async def run_session(
    port: int, plan: list[Utterance], delay_s: float, metadata: tuple[tuple[str, bytes], ...] = ()
) -> SessionResult:
    await asyncio.sleep(delay_s)
    result = SessionResult(expected=[u.transcript for u in plan])
    # The stream and, per utterance, where its speech starts and ends on the stream timeline.
    stream = b""
    marks: list[tuple[int, int]] = []
    for u in plan:
        stream += silence(LEAD_MS)
        base_ms = len(stream) // 16
        marks.append((base_ms + u.speech_start_ms, base_ms + u.speech_end_ms))
        stream += u.pcm + silence(TAIL_MS)
    result.audio_s = len(stream) / 16000
    loop = asyncio.get_running_loop()
    sent_at_ms: dict[int, float] = {}  # stream position (ms, end of chunk) -> wall time sent

    async def requests():  # type: ignore[no-untyped-def]
        yield options()
        step = 2 * RATE_HZ * CHUNK_MS // 1000
        start = loop.time()
        for n, i in enumerate(range(0, len(stream), step)):
            yield pb.StreamingRequest(chunk=pb.AudioChunk(data=stream[i : i + step]))
            sent_at_ms[(n + 1) * CHUNK_MS] = loop.time()
            await asyncio.sleep(max(0.0, start + (n + 1) * CHUNK_MS / 1000 - loop.time()))

    def sent_wall(position_ms: int) -> float | None:
        chunk_end = -(-position_ms // CHUNK_MS) * CHUNK_MS  # the chunk holding this instant
        return sent_at_ms.get(max(CHUNK_MS, chunk_end))

    utterance = 0
    got_partial = False
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stt_service_pb2_grpc.RecognizerStub(channel)
            call = stub.RecognizeStreaming(requests(), timeout=result.audio_s + 60, metadata=metadata)
            async for response in call:
                now = loop.time()
                kind = response.WhichOneof("Event")
                if utterance >= len(marks):
                    continue
                start_ms, end_ms = marks[utterance]
                if kind == "partial" and not got_partial and response.partial.alternatives:
                    sent = sent_wall(start_ms)
                    if sent is not None:
                        result.first_partial_s.append(now - sent)
                    got_partial = True
                elif kind == "final":
                    alternatives = response.final.alternatives
                    text = alternatives[0].text if alternatives else ""
                    final_end_ms = alternatives[0].end_time_ms if alternatives else end_ms
                    # A final for a blip before the utterance would be early; match it by time.
                    if final_end_ms + 300 < start_ms:
                        continue
                    sent = sent_wall(end_ms)
                    if sent is not None:
                        result.eos_to_final_s.append(now - sent)
                    result.finals.append(text)
                    utterance += 1
                    got_partial = False
    except grpc.aio.AioRpcError as exc:
        result.error = f"{exc.code().name}: {exc.details()}"
    return result


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run_round(
    port: int, pid: int, n: int, utterances: list[Utterance], per_session: int,
    metadata: tuple[tuple[str, bytes], ...] = (),
) -> str:
    plans = [
        [utterances[(s * per_session + k) % len(utterances)] for k in range(per_session)] for s in range(n)
    ]
    ticks0, wall0 = cpu_ticks(pid), time.monotonic()
    results = await asyncio.gather(
        *(run_session(port, plan, 0.1 * s / n, metadata) for s, plan in enumerate(plans))
    )
    cpu_s = (cpu_ticks(pid) - ticks0) / CLK_TCK
    wall_s = time.monotonic() - wall0
    eos = [x for r in results for x in r.eos_to_final_s]
    first = [x for r in results for x in r.first_partial_s]
    audio_s = sum(r.audio_s for r in results)
    errors = words = 0
    for r in results:
        for k, ref in enumerate(r.expected):
            ref_words = score_text(ref)
            errors += edit_distance(ref_words, score_text(r.finals[k]) if k < len(r.finals) else [])
            words += len(ref_words)
    finals = sum(len(r.finals) for r in results)
    expected = sum(len(r.expected) for r in results)
    failures = [r.error for r in results if r.error]
    line = (
        f"{n:>3}{pct(eos, 0.5):>10.2f}{pct(eos, 0.95):>10.2f}"
        f"{pct(first, 0.5):>10.2f}{pct(first, 0.95):>10.2f}"
        f"{cpu_s / audio_s:>7.2f}{100 * cpu_s / wall_s:>8.0f}{f'{finals}/{expected}':>9}"
        f"{100 - 100 * errors / max(1, words):>10.1f}{f'{len(first)}/{expected}':>10}"
    )
    if failures:
        line += f"  errors: {'; '.join(sorted(set(failures)))}"
    return line


def parse_variant(spec: str) -> dict[str, int]:
    fields: dict[str, int] = {}
    if spec.strip() == "default":
        return fields
    for pair in spec.split(","):
        key, sep, value = pair.strip().partition("=")
        if not sep or key not in ("beam", "win", "gate", "hang", "pause", "aggr") or not value.isdigit():
            raise SystemExit(f"bad variant {spec!r}: use beam=N,win=S,gate=DB,hang=MS,pause=MS,aggr=N")
        fields[key] = int(value)
    return fields


def write_stats(path: str, stats: dict[str, object]) -> None:
    Path(path).write_text(json.dumps(stats))  # a few hundred bytes: not worth a thread


async def serve_variant(spec: str, workers: int, stats_file: str | None) -> None:
    """``--serve``: run the real server in this process with one variant's settings."""
    from voicebot.logging import configure
    from voicebot.stt import endpoint, session
    from voicebot.stt.model import WhisperEngine, base_model_files
    from voicebot.stt.server import ServerConfig
    from voicebot.stt.server import start_server as start

    configure(level="warning")
    v = parse_variant(spec)
    engine_kw = {k2: v[k1] for k1, k2 in (("beam", "final_beam_size"), ("win", "min_window_s")) if k1 in v}
    engine = WhisperEngine(base_model_files(), workers=workers, **engine_kw)  # type: ignore[arg-type]

    def endpointer(rate_hz: int, max_pause_ms: int) -> endpoint.WebRtcEndpointer:
        if max_pause_ms == session.DEFAULT_PAUSE_MS and "pause" in v:
            max_pause_ms = v["pause"]
        kw = {k2: v[k1] for k1, k2 in (("gate", "energy_gate_db"), ("hang", "hangover_ms"),
                                        ("aggr", "aggressiveness")) if k1 in v}
        return endpoint.WebRtcEndpointer(rate_hz, max_pause_ms=max_pause_ms, **kw)  # type: ignore[arg-type]

    config = ServerConfig(listen="127.0.0.1:0", allow_no_auth=True, workers=workers,
                          max_sessions=64, max_queued=64)
    running = await start(config, engine=engine, endpointer_factory=endpointer)
    print(f"voicebot stt-server listening on 127.0.0.1:{running.port}", flush=True)
    while True:  # the pool's counters, for the parent to difference per round
        if stats_file:
            write_stats(stats_file, dataclasses.asdict(running.pool.stats()))
        await asyncio.sleep(0.2)


def start_server(
    workers: int, variant: str | None = None, stats_file: str | None = None
) -> tuple[subprocess.Popen[str], int]:
    voicebot = Path(sys.executable).with_name("voicebot")
    if variant is None:
        command = [str(voicebot), "--log-level", "warning", "stt-server", "--listen", "127.0.0.1:0",
                   "--no-auth", "--workers", str(workers), "--max-sessions", "64", "--max-queued", "64"]
    else:
        command = [sys.executable, __file__, "--serve", variant, "--workers", str(workers)]
        if stats_file:
            command += ["--stats-file", stats_file]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    proc.kill()
    raise SystemExit("voicebot stt-server did not report a listening port within 120 s")


async def compare_variants(args: argparse.Namespace) -> None:
    utterances = load_utterances()
    specs = [v.strip() for v in args.variants.split(";") if v.strip()]
    stats_dir = tempfile.mkdtemp(prefix="stt-bench-")
    stats_files = [str(Path(stats_dir) / f"pool-{i}.json") for i in range(len(specs))]
    servers = [start_server(args.workers, spec, f) for spec, f in zip(specs, stats_files, strict=True)]

    def pool_stats(i: int) -> dict[str, float]:
        try:
            return dict(json.loads(Path(stats_files[i]).read_text()))
        except (OSError, ValueError):
            return {}

    print(f"{len(specs)} servers, --workers {args.workers}, variants interleaved per N, "
          f"{args.rounds} round(s)")
    print("machine: shared 2-core VM (other engineers' tests running); client runs on the same cores\n")
    header = (
        f"{'N':>3}{'eos>fin50':>10}{'eos>fin95':>10}{'1stpar50':>10}{'1stpar95':>10}"
        f"{'RTF':>7}{'CPU %':>8}{'finals':>9}{'word acc%':>10}{'partial':>10}"
        f"{'wait max':>9}{'behind P':>9}  load  variant"
    )
    print(header)
    print("-" * len(header))
    try:
        # The first decodes of a fresh CTranslate2 replica are slow (allocation): warm every server
        # up with one session of one utterance per worker, and do not count it.
        for proc, port in servers:
            await run_round(port, proc.pid, args.workers, utterances[:1], 1)
        for n in args.sessions:
            for _ in range(args.rounds):
                for i, (spec, (proc, port)) in enumerate(zip(specs, servers, strict=True)):
                    before = pool_stats(i)
                    line = await run_round(port, proc.pid, n, utterances, args.utterances)
                    await asyncio.sleep(0.5)  # the server rewrites its counters every 0.2 s
                    after = pool_stats(i)
                    # The longest wait of a final for a worker since start (a max cannot be
                    # differenced), and finals of this round that found a partial on a busy pool.
                    behind = after.get("finals_behind_partial", 0) - before.get("finals_behind_partial", 0)
                    wait = after.get("final_wait_s_max", float("nan"))
                    print(f"{line}{wait:>9.2f}{behind:>9.0f}  {os.getloadavg()[0]:4.1f}  {spec}", flush=True)
    finally:
        for proc, _port in servers:
            proc.terminate()
        for proc, _port in servers:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def main_async(args: argparse.Namespace) -> None:
    if args.serve is not None:
        await serve_variant(args.serve, args.workers, args.stats_file)
        return
    if args.variants:
        await compare_variants(args)
        return
    utterances = load_utterances()
    t0 = time.monotonic()
    proc, port = start_server(args.workers)
    print(f"server pid {proc.pid} on 127.0.0.1:{port}, --workers {args.workers}, "
          f"ready in {time.monotonic() - t0:.1f} s (model load included)")
    print("machine: shared 2-core VM (other engineers' tests running); client runs on the same cores\n")
    header = (
        f"{'N':>3}{'eos>fin50':>10}{'eos>fin95':>10}{'1stpar50':>10}{'1stpar95':>10}"
        f"{'RTF':>7}{'CPU %':>8}{'finals':>9}{'word acc%':>10}{'partial':>10}"
        + ("  hints  load" if args.hints else "")
    )
    print(header)
    print("-" * len(header))
    try:
        for n in args.sessions:
            if not args.hints:
                print(await run_round(port, proc.pid, n, utterances, args.utterances), flush=True)
                continue
            for label, metadata in (("none", ()), ("menu", DEMO_MENU.to_metadata())):
                line = await run_round(port, proc.pid, n, utterances, args.utterances, metadata)
                print(f"{line}  {label:<5}{os.getloadavg()[0]:>6.1f}", flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,2,4,8", help="comma-separated N (default 1,2,4,8)")
    parser.add_argument("--utterances", type=int, default=3, help="utterances per session (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="server decode workers (default 2)")
    parser.add_argument("--variants", help='compare server settings, e.g. "beam=5,win=12;beam=1,win=8"')
    parser.add_argument("--rounds", type=int, default=1, help="A/B rounds per N with --variants")
    parser.add_argument("--hints", action="store_true", help="each N without and with demo menu hints")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: one variant's server process
    parser.add_argument("--stats-file", help=argparse.SUPPRESS)  # internal: where --serve writes pool stats
    args = parser.parse_args()
    args.sessions = [int(x) for x in args.sessions.split(",")]
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
