"""Simultaneous speech ends: N call-leg recognition streams against the embedded server (issue 5).

Usage: .venv/bin/python bench/stt_sync_bench.py [--calls 8] [--rounds 1] [--stagger-ms 0]
       [--lead-s 13] [--tail-s 6] [--workers 2] [--channel shared|per-call]

The smallest setup that reproduces what ``bench/call_bench.py`` showed for N simultaneous calls:
the real recognizer (Whisper base, ``start_server`` in this process, on this event loop, as
``voicebot run`` embeds it), N :class:`~voicebot.stt.client.RecognitionStream` clients on one shared
channel (as the app), each fed 20 ms frames at real time by a deadline-paced feeder: ``--lead-s`` of
line noise, "My account balance, please." (espeak-ng, telephone band, G.711), ``--tail-s`` of line
noise, then ``end_input``. Without ``--stagger-ms`` every stream's speech ends in the same 20 ms.

A call **completes** when its stream delivered the utterance's final before the tail ended (the
caller of call_bench hangs up then) and no session of it was closed by the server.

Printed per round:
  completed     calls that got their final in time / calls
  final p50/max wall time from the end of speech (the frame that carries it) to FinalReceived
  server closes sessions the server ended with an error (e.g. DEADLINE_EXCEEDED idle limit)
  loop lag      p50 / p99 / max lateness of a 5 ms ticker on the event loop
  tick gap      p99 / max interval between the ticks of one 20 ms deadline clock (what the
                robot's RTP playout experiences; 20 ms is perfect)
  recv gap      the longest time the server went without a client message, over all sessions,
                and the longest client-send -> server-receive delay of an audio chunk
  pool          decode count, total decode s, longest wait of a final for a worker
Bounded: a round ends at lead + speech + tail + 20 s whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from voicebot.stt import client as stt_client
from voicebot.stt import session as stt_session
from voicebot.stt.client import (
    ClientSettings,
    FinalReceived,
    RecognitionError,
    RecognitionStream,
    SessionClosed,
    open_channel,
)
from voicebot.testing.speech import telephone_speech

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * 16
SENTENCE = "My account balance, please."


def line_noise(duration_ms: int, seed: int) -> bytes:
    """Quiet line hiss (about -60 dBFS) rather than digital zero, as a real phone line gives."""
    import random

    rng = random.Random(seed)
    n = duration_ms * 8
    return b"".join(int(rng.gauss(0, 30)).to_bytes(2, "little", signed=True) for _ in range(n))


def speech_end_ms(pcm16: bytes) -> int:
    """Where the last 20 ms frame above -40 dBFS ends."""
    last = 0
    for i in range(0, len(pcm16) - FRAME_BYTES + 1, FRAME_BYTES):
        if audioop.rms(pcm16[i:i + FRAME_BYTES], 2) > 330:
            last = i + FRAME_BYTES
    return last // 16


# ---- instrumentation (this process only; patched in, nothing in the package changes) ----

@dataclass
class Probe:
    sent: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    received: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))

    def install(self) -> None:
        probe = self
        original_requests = stt_client.RecognitionStream._requests

        async def requests(stream: Any, session: Any) -> AsyncIterator[object]:
            count = 0
            async for item in original_requests(stream, session):
                count += 1
                probe.sent[session.session_id].append((time.monotonic(), count))
                yield item

        stt_client.RecognitionStream._requests = requests  # type: ignore[method-assign,assignment]
        original_receive = stt_session.Session.receive

        def receive(session: Any, request: Any, now_s: float) -> Any:
            key = session._uuid.user_request_id
            probe.received[key].append((time.monotonic(), len(probe.received[key]) + 1))
            return original_receive(session, request, now_s)

        stt_session.Session.receive = receive  # type: ignore[method-assign,assignment]

    def gaps(self) -> tuple[float, float]:
        """Longest server gap between two client messages; longest send -> receive delay."""
        longest_gap = 0.0
        longest_delay = 0.0
        for key, received in self.received.items():
            times = [t for t, _ in received]
            for a, b in itertools.pairwise(times):
                longest_gap = max(longest_gap, b - a)
            sent = dict((n, t) for t, n in self.sent.get(key, []))
            for t, n in received:
                if n in sent:
                    longest_delay = max(longest_delay, t - sent[n])
        return longest_gap, longest_delay


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class CallResult:
    final_after_s: float | None = None
    text: str = ""
    server_closes: list[str] = field(default_factory=list)
    error: str = ""


async def one_call(index: int, channel: Any, settings: ClientSettings, audio: bytes, end_ms: int,
                   start_at: float, deadline_s: float) -> CallResult:
    result = CallResult()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, start_at - loop.time()))
    stream = RecognitionStream(settings, channel=channel, call_id=f"bench-{index}")
    stream.start()
    speech_end_at: list[float] = []

    async def feed() -> None:
        t0 = loop.time()
        for n, i in enumerate(range(0, len(audio), FRAME_BYTES)):
            await asyncio.sleep(max(0.0, t0 + n * FRAME_MS / 1000 - loop.time()))
            stream.push_audio(audio[i:i + FRAME_BYTES])
            if not speech_end_at and (n + 1) * FRAME_MS >= end_ms:
                speech_end_at.append(loop.time())
        stream.end_input()

    async def listen() -> None:
        try:
            async for event in stream:
                if isinstance(event, FinalReceived) and result.final_after_s is None and speech_end_at:
                    result.final_after_s = loop.time() - speech_end_at[0]
                    result.text = event.text
                elif isinstance(event, SessionClosed) and event.reason.startswith("server:") \
                        and "OK" not in event.reason:
                    result.server_closes.append(event.reason)
        except RecognitionError as exc:
            result.error = exc.message

    try:
        async with asyncio.timeout(deadline_s):
            await asyncio.gather(feed(), listen())
    except TimeoutError:
        result.error = result.error or "round deadline"
    finally:
        await stream.aclose()
    return result


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        lags.append(loop.time() - t - 0.005)


async def media_clock(gaps: list[float], stop: asyncio.Event) -> None:
    """A 20 ms deadline clock like voicebot.rtp.udp.MediaClock; records the interval between ticks."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    last = start
    while not stop.is_set():
        n += 1
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
        now = loop.time()
        gaps.append(now - last)
        last = now
        behind = int((now - (start + n * 0.02)) / 0.02)
        if behind > 3:
            n += behind


async def run_round(args: argparse.Namespace, server_port: int, audio: bytes, end_ms: int,
                    probe: Probe, pool: Any, backlog_ms: int) -> dict[str, Any]:
    settings = ClientSettings(target=f"127.0.0.1:{server_port}", backlog_chunk_max_ms=backlog_ms)
    shared = open_channel(settings) if args.channel == "shared" else None
    channels = [shared or open_channel(settings) for _ in range(args.calls)]
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    gaps: list[float] = []
    stop = asyncio.Event()
    tasks = [asyncio.create_task(ticker(lags, stop)), asyncio.create_task(media_clock(gaps, stop))]
    before = pool.stats()
    cpu0 = os.times()
    wall0 = time.monotonic()
    start = loop.time() + 0.2
    duration_s = len(audio) / 16000
    if args.stall_ms:
        async def stall() -> None:
            # The whole process starves (a blocked loop, a preempted GIL holder) just after the
            # speech ends, when the finals queue: the deterministic form of the loaded machine.
            await asyncio.sleep(max(0.0, start + end_ms / 1000 + 0.4 - loop.time()))
            time.sleep(args.stall_ms / 1000)  # noqa: ASYNC251  (the point: block the loop)

        tasks.append(asyncio.create_task(stall()))
    results = await asyncio.gather(*(
        one_call(i, channels[i], settings, audio, end_ms, start + i * args.stagger_ms / 1000,
                 duration_s + 20 + i * args.stagger_ms / 1000)
        for i in range(args.calls)))
    stop.set()
    await asyncio.gather(*tasks)
    cpu1 = os.times()
    wall = time.monotonic() - wall0
    for ch in {id(c): c for c in channels}.values():
        await ch.close(None)
    after = pool.stats()
    tail_s = args.tail_s
    completed = [r for r in results if r.final_after_s is not None and r.final_after_s < tail_s
                 and not r.server_closes and not r.error]
    finals = [r.final_after_s for r in results if r.final_after_s is not None]
    recv_gap, recv_delay = probe.gaps()
    return {
        "completed": len(completed),
        "calls": args.calls,
        "final_p50": statistics.median(finals) if finals else float("nan"),
        "final_max": max(finals) if finals else float("nan"),
        "server_closes": sum(len(r.server_closes) for r in results),
        "close_reasons": sorted({c for r in results for c in r.server_closes}),
        "errors": sorted({r.error for r in results if r.error}),
        "lag_p50": pct(lags, 0.5) * 1000, "lag_p99": pct(lags, 0.99) * 1000, "lag_max": max(lags) * 1000,
        "tick_p99": pct(gaps, 0.99) * 1000, "tick_max": max(gaps) * 1000,
        "recv_gap": recv_gap, "recv_delay": recv_delay,
        "decodes": (after.finals_done - before.finals_done) + (after.partials_done - before.partials_done),
        "decode_s": after.decode_s_total - before.decode_s_total,
        "final_wait_max": after.final_wait_s_max,
        "cpu_pct": 100 * ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall,
        "texts": sorted({r.text for r in results if r.text}),
    }


async def main_async(args: argparse.Namespace) -> None:
    from voicebot.stt.model import load_engine
    from voicebot.stt.server import ServerConfig, start_server
    from voicebot.stt.session import SessionConfig, SessionLimits

    probe = Probe()
    probe.install()
    speech = telephone_speech(SENTENCE)
    end_ms = args.lead_s * 1000 + speech_end_ms(speech)
    audio = line_noise(args.lead_s * 1000, 1) + speech + line_noise(args.tail_s * 1000, 2)
    engine = await asyncio.to_thread(load_engine, "base", workers=args.workers)
    running = await start_server(ServerConfig(
        listen="127.0.0.1:0", allow_no_auth=True, workers=args.workers,
        session=SessionConfig(limits=SessionLimits(idle_timeout_s=args.idle_s))), engine=engine)
    print(f"# calls={args.calls} stagger={args.stagger_ms} ms workers={args.workers} "
          f"channel={args.channel} hogs={args.hogs} stall={args.stall_ms} ms idle={args.idle_s} s "
          f"switchinterval={sys.getswitchinterval()} load={os.getloadavg()[0]:.1f}",
          flush=True)
    try:
        for r in range(args.rounds):
            probe.sent.clear()
            probe.received.clear()
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])  # noqa: ASYNC220
                    for _ in range(args.hogs)]
            try:
                backlog_ms = args.backlog_ms[r % len(args.backlog_ms)]
                out = await run_round(args, running.port, audio, end_ms, probe, running.pool, backlog_ms)
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            print(
                f"round {r + 1} backlog_chunk_max_ms={backlog_ms}: "
                f"completed {out['completed']}/{out['calls']}  "
                f"final p50 {out['final_p50']:.2f} s max {out['final_max']:.2f} s  "
                f"server closes {out['server_closes']}  "
                f"loop lag p50/p99/max {out['lag_p50']:.1f}/{out['lag_p99']:.1f}/{out['lag_max']:.0f} ms  "
                f"tick gap p99/max {out['tick_p99']:.0f}/{out['tick_max']:.0f} ms  "
                f"recv gap {out['recv_gap']:.2f} s delay {out['recv_delay']:.2f} s  "
                f"decodes {out['decodes']} ({out['decode_s']:.1f} s) final wait max "
                f"{out['final_wait_max']:.2f} s  cpu {out['cpu_pct']:.0f} %  "
                f"load {os.getloadavg()[0]:.1f}", flush=True)
            for reason in out["close_reasons"] + out["errors"]:
                print(f"    {reason}")
            if args.verbose:
                print(f"    texts: {out['texts']}")
    finally:
        await running.stop(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--stagger-ms", type=int, default=0)
    parser.add_argument("--lead-s", type=int, default=13)
    parser.add_argument("--tail-s", type=int, default=6)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--channel", choices=("shared", "per-call"), default="shared")
    parser.add_argument("--switch-interval-ms", type=float, default=None,
                        help="sys.setswitchinterval for the GIL experiment (default: Python's 5 ms)")
    parser.add_argument("--hogs", type=int, default=0,
                        help="busy-loop processes run during each round: the CPU contention of a loaded "
                             "machine (the failures were seen at load average 4.5-6)")
    parser.add_argument("--backlog-ms", default="1000",
                        help="ClientSettings.backlog_chunk_max_ms per round, comma-separated and taken in "
                             "turn (A/B on the shared machine: 1000,0; 0 = one message per pushed frame)")
    parser.add_argument("--stall-ms", type=int, default=0,
                        help="freeze the whole process this long 0.4 s after the speech ends (time.sleep "
                             "on the event loop): a starvation longer than the idle limit, on demand")
    parser.add_argument("--idle-s", type=float, default=5.0, help="the server's idle limit (default 5 s)")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    args.backlog_ms = [int(v) for v in args.backlog_ms.split(",")]
    if not args.verbose:
        import logging

        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
