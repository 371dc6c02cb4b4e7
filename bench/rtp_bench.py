"""RTP media-plane benchmark: N concurrent call legs on 127.0.0.1 through voicebot.rtp.

For each N, this process opens N :class:`~voicebot.rtp.udp.RtpStream` on one shared media clock, each
playing a prompt (G.711 mu-law, 20 ms) to its own socket in a separate *peer* process; the peer also
sends 20 ms caller audio back to every stream (so each leg both sends and receives, jitter buffer
and decoding included). The peer timestamps every arrival and reports the inter-packet gaps per
stream. This process reports its own CPU over the measured window.

    .venv/bin/python bench/rtp_bench.py --calls 50 100 200 --seconds 10

Prints one table row per N: CPU% of this process (100% = one core), CPU per call, outgoing
inter-packet gap p50/p99/max as seen by the peer, packets the peer received vs expected, frames
decoded here, and media-clock late/skipped ticks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import selectors
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebot import logging as vlog
from voicebot.media.g711 import ULAW
from voicebot.rtp.jitter import Frame, FrameKind
from voicebot.rtp.packet import serialize_rtp
from voicebot.rtp.session import SessionConfig
from voicebot.rtp.udp import MediaClock, PortAllocator, RtpPortRange, RtpStream

# Linux <asm-generic/socket.h>: kernel receive timestamps as struct timespec, so the gaps measured
# are the wire's, not the peer process's scheduling (Python's socket module does not name these).
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


# ------------------------------------------------------------------- peer process


def run_peer(calls: int, seconds: float, warmup_s: float, caller_audio: bool) -> None:
    """Bind N sockets, announce their ports, then receive (timestamping) and send 20 ms audio."""
    sockets = []
    for _ in range(calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sockets.append(sock)
    print(json.dumps([s.getsockname()[1] for s in sockets]), flush=True)
    targets = json.loads(sys.stdin.readline())
    selector = selectors.DefaultSelector()
    for index, sock in enumerate(sockets):
        selector.register(sock, selectors.EVENT_READ, index)
    arrivals: list[list[float]] = [[] for _ in range(calls)]
    payload = ULAW.encode(struct.pack("<160h", *[(i * 300) % 8000 - 4000 for i in range(160)]))
    start = time.monotonic()
    measure_from = start + warmup_s
    end = measure_from + seconds
    n = 0
    seq = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        next_send = start + n * 0.02
        if now >= next_send:
            header_ts = (n * 160) & 0xFFFFFFFF
            for index, sock in enumerate(sockets if caller_audio else ()):
                datagram = serialize_rtp(0, seq & 0xFFFF, header_ts, 0x1000 + index, payload)
                with contextlib.suppress(OSError):
                    sock.sendto(datagram, ("127.0.0.1", targets[index]))
            seq += 1
            n += 1
            continue
        for key, _ in selector.select(timeout=max(0.0, next_send - now)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            while True:
                try:
                    _, ancillary, _, _ = sock.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                if time.monotonic() < measure_from:
                    continue
                for level, kind, data in ancillary:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        seconds_, nanos = _TIMESPEC.unpack_from(data)
                        arrivals[key.data].append(seconds_ + nanos / 1e9)
    gaps = [(b - a) * 1000 for times in arrivals for a, b in itertools.pairwise(times)]
    received = sum(len(t) for t in arrivals)
    peer_cpu_pct = 100 * time.process_time() / (time.monotonic() - start)
    print(json.dumps({"gaps_ms": [percentile(gaps, 0.5), percentile(gaps, 0.99), max(gaps, default=0.0)],
                      "received": received, "expected": int(calls * seconds / 0.02),
                      "peer_cpu_pct": peer_cpu_pct}), flush=True)


# ------------------------------------------------------------------- voicebot side


async def per_call_pacer(stream: RtpStream) -> None:
    """The alternative design, for comparison only: one task per call with its own 20 ms deadlines."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while True:
        n += 1
        await asyncio.sleep(max(0.0, start + n * 0.02 - loop.time()))
        stream._on_tick()


async def run_voicebot(calls: int, seconds: float, warmup_s: float, per_call_tasks: bool = False,
                       caller_audio: bool = True) -> dict[str, float]:
    command = [sys.executable, __file__, "--peer", str(calls), "--seconds", str(seconds),
               "--warmup", str(warmup_s), *([] if caller_audio else ["--no-caller-audio"])]
    peer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert peer.stdin is not None and peer.stdout is not None
    peer_ports = json.loads(peer.stdout.readline())
    clock = MediaClock()
    ports = PortAllocator(RtpPortRange("127.0.0.1", 0, 0))
    frames = [0]

    def on_frame(frame: Frame) -> None:
        if frame.kind is FrameKind.AUDIO:
            frames[0] += 1

    streams = []
    prompt = struct.pack("<8000h", *[(i * 131) % 12000 - 6000 for i in range(8000)])  # 1 s, repeated
    for port in peer_ports:
        stream = RtpStream(clock, ports, SessionConfig())
        stream.on_frame = on_frame
        await stream.open()
        stream.set_remote(("127.0.0.1", port))
        for _ in range(int(seconds + warmup_s) + 2):
            stream.play(prompt)
        streams.append(stream)
    tasks = []
    if per_call_tasks:
        for stream in streams:
            clock.unregister(stream)
            tasks.append(asyncio.create_task(per_call_pacer(stream)))
    peer.stdin.write(json.dumps([s.local_port for s in streams]) + "\n")
    peer.stdin.flush()
    await asyncio.sleep(warmup_s)
    frames[0] = 0
    clock_before = clock.stats()
    cpu0, wall0 = os.times(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, wall1 = os.times(), time.monotonic()
    clock_after = clock.stats()
    report = json.loads(await asyncio.get_running_loop().run_in_executor(None, peer.stdout.readline))
    peer.wait()
    lost = sum(s.stats().session.jitter.lost for s in streams)
    for stream in streams:
        await stream.close()
    clock.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    user_pct = 100 * (cpu1.user - cpu0.user) / (wall1 - wall0)
    sys_pct = 100 * (cpu1.system - cpu0.system) / (wall1 - wall0)
    cpu_pct = user_pct + sys_pct
    p50, p99, worst = report["gaps_ms"]
    return {
        "calls": calls, "cpu_pct": cpu_pct, "user_pct": user_pct, "sys_pct": sys_pct,
        "cpu_pct_per_call": cpu_pct / calls, "gap_p50_ms": p50,
        "gap_p99_ms": p99, "gap_max_ms": worst, "peer_received": report["received"],
        "peer_expected": report["expected"], "frames_decoded": frames[0],
        "frames_expected": int(calls * seconds / 0.02), "lost": lost, "peer_cpu_pct": report["peer_cpu_pct"],
        "late_ticks": clock_after.late_ticks - clock_before.late_ticks,
        "skipped_ticks": clock_after.skipped_ticks - clock_before.skipped_ticks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per N (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (default 1)")
    parser.add_argument("--per-call-tasks", action="store_true",
                        help="pace with one asyncio task per call, not the shared MediaClock (comparison)")
    parser.add_argument("--no-caller-audio", action="store_true",
                        help="the peer only receives (measures the sending side alone)")
    parser.add_argument("--peer", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        run_peer(args.peer, args.seconds, args.warmup, not args.no_caller_audio)
        return 0
    vlog.configure(level="warning", json=False)
    print("| calls | CPU % (1 core = 100) | user / sys % | CPU % per call | gap p50 ms | gap p99 ms "
          "| gap max ms | packets at peer | frames decoded | late / skipped ticks | peer CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for calls in args.calls:
        r = asyncio.run(run_voicebot(calls, args.seconds, args.warmup, args.per_call_tasks,
                                     not args.no_caller_audio))
        print(f"| {r['calls']} | {r['cpu_pct']:.1f} | {r['user_pct']:.0f} / {r['sys_pct']:.0f} "
              f"| {r['cpu_pct_per_call']:.3f} | {r['gap_p50_ms']:.1f} "
              f"| {r['gap_p99_ms']:.1f} | {r['gap_max_ms']:.1f} | {r['peer_received']}/{r['peer_expected']} "
              f"| {r['frames_decoded']}/{r['frames_expected']} | {r['late_ticks']} / {r['skipped_ticks']} "
              f"| {r['peer_cpu_pct']:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
