"""SIP + RTP benchmark: N concurrent calls with media from sipp into a voicebot telephony process.

For each N, starts ``bench/_sip_bench_server.py`` (a Telephony that answers every call, plays a
looping speech prompt and consumes every 20 ms frame; no recognizer), a ``dumpcap`` capture on lo
of the RTP that process sends (its RTP port range as the capture filter, so the kernel's capture
timestamps measure the gaps the receiver sees), and sipp as the caller: ``-r`` calls/s up to
``-l N`` / ``-m N`` calls, each playing a speech pcap (G.711 mu-law RTP, 20 ms) into its call for
``--call-seconds`` and then sending BYE. Once all N calls are up it measures the server's CPU from
/proc/<pid>/stat for ``--seconds``, and the outgoing inter-packet gaps of every call in that window.

    .venv/bin/python bench/sip_bench.py --calls 50 100 200

Prints one row per N: calls established / failed (sipp's own counts), server CPU% (100 = one
core) and per call, gap p50/p99/max, packets captured vs expected in the window, and the media
clock's late/skipped ticks, and how busy the whole machine was (sipp, dumpcap and everyone else's
work included). Bounded: each N takes about ramp + call length + 10 s; every process
it starts is stopped on the way out.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sip.peers import free_udp_port  # noqa: E402
from tests.telephony.sipp import Play, uac_scenario  # noqa: E402
from voicebot.testing.pcap import read_udp, write_rtp_pcap  # noqa: E402
from voicebot.testing.speech import silence, telephone_speech  # noqa: E402

SPEECH = ("Hello, I am calling about my order. It was supposed to arrive on Monday, but it has not "
          "arrived yet. The order number is seven three one four. Could you please check where it is, "
          "and tell me when it will be delivered? Thank you very much.")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process from /proc/<pid>/stat (fields 14 and 15, proc(5))."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat (busy = all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def make_pcap(path: Path, seconds: float) -> int:
    speech = telephone_speech(SPEECH) + silence(500)
    needed = int(seconds * 16000)
    audio = (speech * (needed // len(speech) + 1))[:needed]
    return write_rtp_pcap(path, audio, payload_type=0)


class Server:
    def __init__(self, rtp_ports: str, log: IO[str], frames: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "_sip_bench_server.py"), "--rtp-ports", rtp_ports,
             "--max-calls", "1000", "--frames", frames],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        first = json.loads(self.proc.stdout.readline())
        self.sip_port = int(first["sip_port"])
        self.last: dict[str, Any] = {}

    def wait_for(self, predicate: Any, timeout_s: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("bench server exited early; see its log")
            self.last = json.loads(line)
            if predicate(self.last):
                return self.last
        raise TimeoutError(f"bench server did not reach the expected state: {self.last}")

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        final: dict[str, Any] = {}
        try:
            out, _ = self.proc.communicate(timeout=20)
            for line in out.splitlines():
                record = json.loads(line)
                final = record.get("final", final)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return final


def sipp_counts(stat_dir: Path) -> tuple[int, int]:
    """SuccessfulCall(C) and FailedCall(C) from the last line of sipp's -trace_stat CSV."""
    files = sorted(stat_dir.glob("*.csv"))
    if not files:
        return 0, 0
    rows = list(csv.DictReader(files[-1].open(), delimiter=";"))
    if not rows:
        return 0, 0
    last = rows[-1]
    return int(last.get("SuccessfulCall(C)", 0)), int(last.get("FailedCall(C)", 0))


def run_one(calls: int, *, rate: float, call_s: float, window_s: float, workdir: Path,
            pcap: Path, rtp_low: int, frames: str) -> dict[str, Any]:
    rtp_high = rtp_low + 2 * calls + 200
    rtp_ports = f"{rtp_low}-{rtp_high}"
    capture_file = workdir / f"capture-{calls}.pcap"
    log = (workdir / f"server-{calls}.log").open("w")
    server = Server(rtp_ports, log, frames)
    sipp_media_port = free_udp_port()
    # Our RTP goes from the server's port range to sipp's media port (where sipp's pcap playback
    # comes from, so symmetric RTP latches there); both ends in the filter keep other engineers'
    # traffic in the same port range out of the measurement.
    dumpcap = subprocess.Popen(
        ["dumpcap", "-q", "-P", "-i", "lo", "-f",
         f"udp and src portrange {rtp_ports} and dst port {sipp_media_port}",
         "-w", str(capture_file), "-a", f"duration:{int(call_s + calls / rate + 30)}", "-B", "64"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    scenario = workdir / "bench.xml"
    scenario.write_text(uac_scenario([Play(pcap, int(call_s * 1000))]))
    stat_dir = workdir / f"sipp-{calls}"
    stat_dir.mkdir(exist_ok=True)
    time.sleep(1.0)  # dumpcap needs a moment before it captures
    sipp = subprocess.Popen(
        ["sipp", "-sf", str(scenario), "-i", "127.0.0.1", "-p", str(free_udp_port()),
         "-mp", str(sipp_media_port), "-r", f"{rate:g}", "-rp", "1000", "-l", str(calls), "-m", str(calls),
         "-s", "bot", "-nostdin", "-skip_rlimit", "-trace_stat", "-stf", str(stat_dir / "stat.csv"),
         "-fd", "1",
         "-trace_err", "-timeout", f"{int(call_s + calls / rate + 30)}s", "-timeout_error",
         f"127.0.0.1:{server.sip_port}"],
        cwd=stat_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict[str, Any] = {"calls": calls}
    try:
        ramp_s = calls / rate
        server.wait_for(lambda s: s.get("active", 0) >= calls, ramp_s + 20)
        time.sleep(1.0)  # settle
        before = server.wait_for(lambda s: True, 5)
        user0, sys0 = cpu_seconds(server.proc.pid)
        busy0, total0 = machine_busy()
        wall0, t0 = time.monotonic(), time.time()
        # Keep reading the server's once-a-second stats lines until the window is over.
        after = server.wait_for(lambda s: time.monotonic() >= wall0 + window_s, window_s + 10)
        user1, sys1 = cpu_seconds(server.proc.pid)
        busy1, total1 = machine_busy()
        wall1, t1 = time.monotonic(), time.time()
        elapsed = wall1 - wall0
        result.update(
            cpu_pct=100 * ((user1 - user0) + (sys1 - sys0)) / elapsed,
            user_pct=100 * (user1 - user0) / elapsed, sys_pct=100 * (sys1 - sys0) / elapsed,
            machine_pct=100 * (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0),
            active_min=min(before.get("active", 0), after.get("active", 0)),
            late_ticks=after["clock_late_ticks"] - before["clock_late_ticks"],
            skipped_ticks=after["clock_skipped_ticks"] - before["clock_skipped_ticks"],
            window_s=elapsed, window=(t0, t1))
        sipp.wait(timeout=call_s + ramp_s + 60)
    finally:
        for proc in (sipp,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        final = server.stop()
        time.sleep(0.5)
        if dumpcap.poll() is None:
            dumpcap.send_signal(signal.SIGINT)
            try:
                dumpcap.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dumpcap.kill()
                dumpcap.wait()
        log.close()
    result["established"], result["failed"] = sipp_counts(stat_dir)
    result["server_final"] = final
    gaps, packets = analyse(capture_file, *result["window"])
    result.update(gap_p50=percentile(gaps, 0.5), gap_p99=percentile(gaps, 0.99),
                  gap_max=max(gaps, default=0.0), packets=packets,
                  expected=int(calls * result["window_s"] / 0.020))
    with contextlib.suppress(OSError):
        capture_file.unlink()
    return result


def analyse(capture_file: Path, t0: float, t1: float) -> tuple[list[float], int]:
    """Inter-arrival gaps (ms) per source port (= per call) of the packets captured in [t0, t1]."""
    last: dict[int, float] = {}
    gaps: list[float] = []
    packets = 0
    per_port: collections.Counter[int] = collections.Counter()
    for datagram in read_udp(capture_file):
        if not t0 <= datagram.time_s <= t1:
            continue
        port = datagram.src[1]
        packets += 1
        per_port[port] += 1
        previous = last.get(port)
        if previous is not None:
            gaps.append((datagram.time_s - previous) * 1000)
        last[port] = datagram.time_s
    return gaps, packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--rate", type=float, default=50.0, help="new calls per second (default 50)")
    parser.add_argument("--call-seconds", type=float, default=20.0, help="length of each call (default 20)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per N (default 10)")
    parser.add_argument("--rtp-low", type=int, default=26000, help="first RTP port (default 26000)")
    parser.add_argument("--frames", choices=("iterator", "callback"), default="iterator",
                        help="server consumes frames via frames() (default) or set_frame_handler()")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sip-bench-") as tmp:
        workdir = Path(tmp)
        pcap = workdir / "speech.pcap"
        make_pcap(pcap, args.call_seconds)
        for calls in args.calls:
            if calls / args.rate + 1 + args.seconds > args.call_seconds:
                sys.exit(f"--call-seconds {args.call_seconds:g} is too short: ramp {calls / args.rate:g} s "
                         f"+ 1 s + window {args.seconds:g} s must fit in one call")
            row = run_one(calls, rate=args.rate, call_s=args.call_seconds, window_s=args.seconds,
                          workdir=workdir, pcap=pcap, rtp_low=args.rtp_low, frames=args.frames)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "window"}), file=sys.stderr, flush=True)
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
          f"calls at {args.rate:g}/s, {args.call_seconds:g} s each, window {args.seconds:g} s, "
          f"frames via {args.frames}\n")
    print("| calls | established / failed | CPU % (1 core = 100) | user / sys % | CPU % per call "
          "| gap p50 ms | gap p99 ms | gap max ms | packets / expected | clock late / skipped ticks "
          f"| whole machine CPU % ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['calls']} | {r['established']} / {r['failed']} | {r['cpu_pct']:.1f} "
              f"| {r['user_pct']:.0f} / {r['sys_pct']:.0f} | {r['cpu_pct'] / r['calls']:.2f} "
              f"| {r['gap_p50']:.1f} | {r['gap_p99']:.1f} | {r['gap_max']:.1f} "
              f"| {r['packets']} / {r['expected']} | {r['late_ticks']} / {r['skipped_ticks']} "
              f"| {r['machine_pct']:.0f} |")


if __name__ == "__main__":
    main()
