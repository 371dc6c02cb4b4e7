"""Hostile-traffic benchmark for the SIP user agent (issue 9): floods from one source on loopback.

Starts a real user agent (``SipEndpoint``, the asyncio adapter over the sans-IO core) in its own
process on 127.0.0.1 that answers every call, then runs phases of a few seconds each:

* ``baseline``: no attack;
* ``bye-flood``: ``--rate`` BYEs/s to unknown dialogs from 127.0.0.2 (issue 9 item 3);
* ``invite-flood``: ``--rate`` INVITEs/s from 127.0.0.2, never ACKed (item 2, the flood variant);
* ``squat``: INVITEs from 127.0.0.2 at 10/s, each 200 ACKed and the call left silent (item 2).

During every phase a real caller on 127.0.0.1 places a call every 0.5 s (INVITE, wait for the
200 up to 2 s, ACK, BYE), and a prober on 127.0.0.3 (a dispatcher's health check) sends OPTIONS
every 100 ms. The UA runs with the defaults an open deployment has: no trunk networks (any source
may call), rate limit 20/s per source, 8 calls and 2 unconfirmed calls per source, max_calls 16.
Per phase it prints: real calls
answered within 2 s, the UA process's CPU (100 = one core), OPTIONS latency p50/p99 and lost
probes, and the datagrams sent by the attacker. Then a sans-IO micro-benchmark: the core's cost per
datagram (receive + flush + next timer, as the adapter does) with 100 / 1k / 10k live transactions.

Loopback only, bounded: every phase stops after ``--phase-s`` seconds, the server exits on its
own after ``--phase-s * 6 + 30`` seconds even if this process dies.

    .venv/bin/python bench/flood_bench.py --rate 1000 --phase-s 6
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog

from voicebot.sip.config import UaConfig
from voicebot.sip.message import Request, make_response, parse_message
from voicebot.sip.transaction import ServerTransaction, TimerConfig
from voicebot.sip.udp import IncomingCall, SipEndpoint
from voicebot.sip.useragent import UserAgent

ATTACKER = "127.0.0.2"
CALLER = "127.0.0.1"
PROXY = "127.0.0.3"
SDP = "v=0\r\no=a 1 1 IN IP4 {h}\r\ns=-\r\nc=IN IP4 {h}\r\nt=0 0\r\nm=audio {p} RTP/AVP 0\r\n"


# ------------------------------------------------------------------ the user agent under test


async def serve(max_calls: int, lifetime_s: float, per_source: bool) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    config = UaConfig(
        local_host="127.0.0.1",
        local_port=0,
        max_calls=max_calls,
        per_source_exempt=(),  # the real caller on 127.0.0.1 gets no local-proxy exemption here
        # --no-per-source: the defence off, to show what the squat does without it
        max_calls_per_source=8 if per_source else 0,
        max_unconfirmed_per_source=2 if per_source else 0,
        max_unconfirmed_calls=None if per_source else max_calls,
    )

    async def on_call(call: IncomingCall) -> None:
        call.answer("127.0.0.1", 20000)
        try:
            await call.ended(timeout_s=lifetime_s)
        except TimeoutError:
            call.hangup()

    endpoint = SipEndpoint(config, bind_host="127.0.0.1", bind_port=0, on_call=on_call)
    await endpoint.start()
    print(json.dumps({"sip_port": endpoint.local_address[1]}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), lifetime_s)
    stats = endpoint.ua.stats
    print(json.dumps({"stats": {k: getattr(stats, k) for k in stats.__dataclass_fields__}}), flush=True)
    await endpoint.stop()


# ------------------------------------------------------------------ the peers


class Peer(asyncio.DatagramProtocol):
    """One UDP socket; responses are matched to waiters by Call-ID (first final, or any for OPTIONS)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiters: dict[str, asyncio.Future[bytes]] = {}
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received += 1
        if not data.startswith(b"SIP/2.0 "):
            return
        code = int(data[8:11])
        call_id = _header(data, b"call-id")
        future = self.waiters.get(call_id)
        if future is not None and not future.done() and (code >= 200 or code == 0):
            future.set_result(data)

    def send(self, text: str, dest: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(text.encode(), dest)


def _header(data: bytes, name: bytes) -> str:
    for line in data.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip().decode()
    return ""


async def open_peer(host: str) -> tuple[Peer, int]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    return peer, int(transport.get_extra_info("sockname")[1])


def invite_text(host: str, port: int, call_id: str, branch: str) -> str:
    body = SDP.format(h=host, p=7000)
    return (
        f"INVITE sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:c@{host}>;tag=f{branch}\r\nTo: <sip:bot@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:c@{host}:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


def in_dialog_text(
    method: str, host: str, port: int, call_id: str, from_tag: str, to_tag: str, cseq: int, branch: str
) -> str:
    return (
        f"{method} sip:bot@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:c@{host}>;tag={from_tag}\r\n"
        f"To: <sip:bot@127.0.0.1>;tag={to_tag}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )


def options_text(host: str, port: int, n: int) -> str:
    return (
        f"OPTIONS sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch=z9hG4bKo{n};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{host}>;tag=p{n}\r\nTo: <sip:bot@127.0.0.1>\r\n"
        f"Call-ID: opt{n}@{host}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )


@dataclass
class PhaseResult:
    name: str
    calls: int = 0
    answered_2s: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    options_ms: list[float] = field(default_factory=list)
    options_lost: int = 0
    attack_sent: int = 0
    cpu_pct: float = 0.0


async def real_caller(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult, n: int) -> None:
    call_id = f"real{n}-{result.name}@{CALLER}"
    branch = f"r{n}{result.name}"
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    peer.waiters[call_id] = future
    result.calls += 1
    peer.send(invite_text(CALLER, port, call_id, branch), ua)
    try:
        answer = await asyncio.wait_for(future, 2.0)
    except TimeoutError:
        return
    finally:
        peer.waiters.pop(call_id, None)
    code = int(answer[8:11])
    if code != 200:
        result.refused[code] = result.refused.get(code, 0) + 1
        return
    result.answered_2s += 1
    to_tag = _header(answer, b"to").split("tag=")[-1].split(";")[0]
    ack = in_dialog_text("ACK", CALLER, port, call_id, f"f{branch}", to_tag, 1, f"a{branch}")
    peer.send(ack, ua)
    peer.send(in_dialog_text("BYE", CALLER, port, call_id, f"f{branch}", to_tag, 2, f"b{branch}"), ua)


async def caller_loop(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult) -> None:
    tasks = []
    try:
        for n in range(200):
            tasks.append(asyncio.create_task(real_caller(peer, port, ua, result, n)))
            await asyncio.sleep(0.5)
    except asyncio.CancelledError:
        await asyncio.gather(*tasks)  # calls in flight get their full 2 s
        raise


async def prober_loop(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult) -> None:
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Task[None]] = []

    async def probe(n: int) -> None:
        call_id = f"opt{n}@{PROXY}"
        future: asyncio.Future[bytes] = loop.create_future()
        peer.waiters[call_id] = future
        start = time.perf_counter()
        peer.send(options_text(PROXY, port, n), ua)
        try:
            await asyncio.wait_for(future, 1.0)
            result.options_ms.append((time.perf_counter() - start) * 1000)
        except TimeoutError:
            result.options_lost += 1
        finally:
            peer.waiters.pop(call_id, None)

    n = random.randrange(1 << 30)
    try:
        while True:
            n += 1
            pending.append(asyncio.create_task(probe(n)))
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        await asyncio.gather(*pending)
        raise


AttackFn = Callable[[Peer, int, tuple[str, int], PhaseResult, float], Coroutine[Any, Any, None]]


async def no_attack(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult, rate: float) -> None:
    await asyncio.sleep(3600)


async def paced(rate: float, result: PhaseResult, send_one: Callable[[int], None]) -> None:
    """Send ``rate`` datagrams per second in 10 ms batches, until cancelled."""
    start = time.perf_counter()
    n = 0
    while True:
        due = int((time.perf_counter() - start) * rate)
        while n < due:
            send_one(n)
            n += 1
            result.attack_sent += 1
        await asyncio.sleep(0.01)


async def bye_flood(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult, rate: float) -> None:
    await paced(
        rate,
        result,
        lambda n: peer.send(
            in_dialog_text("BYE", ATTACKER, port, f"bye{n}@{ATTACKER}", "x", "nosuch", 2, f"bf{n}"), ua
        ),
    )


async def invite_flood(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult, rate: float) -> None:
    await paced(
        rate, result, lambda n: peer.send(invite_text(ATTACKER, port, f"fl{n}@{ATTACKER}", f"fl{n}"), ua)
    )


async def squat(peer: Peer, port: int, ua: tuple[str, int], result: PhaseResult, rate: float) -> None:
    loop = asyncio.get_running_loop()

    async def take_slot(n: int) -> None:
        call_id = f"sq{n}@{ATTACKER}"
        future: asyncio.Future[bytes] = loop.create_future()
        peer.waiters[call_id] = future
        peer.send(invite_text(ATTACKER, port, call_id, f"sq{n}"), ua)
        result.attack_sent += 1
        try:
            answer = await asyncio.wait_for(future, 2.0)
        except TimeoutError:
            return
        if answer.startswith(b"SIP/2.0 200"):
            to_tag = _header(answer, b"to").split("tag=")[-1].split(";")[0]
            # ACKed, then silent: the call holds a slot until someone hangs up
            peer.send(in_dialog_text("ACK", ATTACKER, port, call_id, f"fsq{n}", to_tag, 1, f"asq{n}"), ua)

    slots: set[asyncio.Task[None]] = set()
    n = 0
    while True:
        n += 1
        task = asyncio.create_task(take_slot(n))
        slots.add(task)
        task.add_done_callback(slots.discard)
        await asyncio.sleep(0.1)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


async def run_phase(
    name: str, attack: AttackFn, ua: tuple[str, int], pid: int, rate: float, phase_s: float
) -> PhaseResult:
    result = PhaseResult(name)
    caller, caller_port = await open_peer(CALLER)
    proxy, proxy_port = await open_peer(PROXY)
    attacker, attacker_port = await open_peer(ATTACKER)
    ticks0, t0 = cpu_ticks(pid), time.perf_counter()
    attack_task = asyncio.create_task(attack(attacker, attacker_port, ua, result, rate))
    probe_task = asyncio.create_task(prober_loop(proxy, proxy_port, ua, result))
    calls_task = asyncio.create_task(caller_loop(caller, caller_port, ua, result))
    await asyncio.sleep(phase_s)
    calls_task.cancel()
    attack_task.cancel()
    ticks1, t1 = cpu_ticks(pid), time.perf_counter()
    probe_task.cancel()
    for task in (calls_task, attack_task, probe_task):
        with contextlib.suppress(asyncio.CancelledError):
            await task
    result.cpu_pct = 100.0 * (ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
    for peer in (caller, proxy, attacker):
        assert peer.transport is not None
        peer.transport.close()
    await asyncio.sleep(0.5)  # let the last real call's BYE and the probes' answers settle
    return result


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_server(args: argparse.Namespace) -> subprocess.Popen[str]:
    lifetime_s = args.phase_s * 6 + 30
    command = [sys.executable, __file__, "--serve", "--max-calls", str(args.max_calls)]
    if args.no_per_source:
        command.append("--no-per-source")
    return subprocess.Popen([*command, "--lifetime-s", str(lifetime_s)], stdout=subprocess.PIPE, text=True)


async def flood(args: argparse.Namespace, server: subprocess.Popen[str]) -> None:
    assert server.stdout is not None
    line = await asyncio.to_thread(server.stdout.readline)
    ua = ("127.0.0.1", int(json.loads(line)["sip_port"]))
    phases: list[tuple[str, AttackFn]] = [
        ("baseline", no_attack),
        ("bye-flood", bye_flood),
        ("invite-flood", invite_flood),
        ("squat", squat),
    ]
    print(
        f"# UA pid {server.pid} on {ua[0]}:{ua[1]}, max_calls {args.max_calls}, "
        f"attack rate {args.rate:g}/s, {args.phase_s:g} s per phase, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'phase':<13} {'real calls answered <2s':>24} {'refused':>10} {'UA CPU%':>8} "
        f"{'OPTIONS p50 ms':>15} {'p99 ms':>8} {'lost':>5} {'attack sent':>12}"
    )
    for name, attack in phases:
        r = await run_phase(name, attack, ua, server.pid, args.rate, args.phase_s)
        refused = ",".join(f"{k}x{v}" for k, v in sorted(r.refused.items())) or "-"
        print(
            f"{name:<13} {f'{r.answered_2s}/{r.calls}':>24} {refused:>10} {r.cpu_pct:>8.1f} "
            f"{percentile(r.options_ms, 0.5):>15.2f} {percentile(r.options_ms, 0.99):>8.2f} "
            f"{r.options_lost:>5} {r.attack_sent:>12}",
            flush=True,
        )
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


def stop_server(server: subprocess.Popen[str]) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        out, _ = server.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
        return
    for text in out.splitlines():
        if text.startswith('{"stats"'):
            print("# UA stats:", text)


# ------------------------------------------------------------------ sans-IO per-datagram cost


def core_cost(live: int, samples: int = 2000) -> float:
    """µs per datagram (receive + flush + next timer) with ``live`` transactions in the core."""
    ua = UserAgent(UaConfig(local_host="127.0.0.1", allowed_networks=(f"{PROXY}/32",)), rng=random.Random(1))
    for n in range(live):
        ua.receive_datagram(options_text(PROXY, 5060, n).encode(), (PROXY, 5060), n * 1e-4)
        ua.datagrams_to_send()
    ua.get_timer()
    assert ua.live_transactions == live
    data = [options_text(PROXY, 5060, live + n).encode() for n in range(samples)]
    start = time.perf_counter()
    for n, datagram in enumerate(data):
        ua.receive_datagram(datagram, (PROXY, 5060), 1.0 + n * 1e-5)
        ua.datagrams_to_send()
        ua.get_timer()
    return (time.perf_counter() - start) / samples * 1e6


def scan_cost(live: int, samples: int = 200) -> float:
    """µs for the old next-timer computation: a min() over every live transaction's deadline."""
    out: list[tuple[bytes, tuple[str, int]]] = []
    txns = []
    for n in range(live):
        message = parse_message(options_text(PROXY, 5060, n).encode())
        assert isinstance(message, Request)
        txn = ServerTransaction(message, (PROXY, 5060), n * 1e-4, TimerConfig(), out)
        txn.send(make_response(message, 200, to_tag="t"), n * 1e-4)
        txns.append(txn)
    start = time.perf_counter()
    for _ in range(samples):
        present = [d for d in (t.deadline() for t in txns) if d is not None]
        min(present)
    return (time.perf_counter() - start) / samples * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="attack datagrams per second")
    parser.add_argument("--phase-s", type=float, default=6.0, help="seconds per phase")
    parser.add_argument("--max-calls", type=int, default=16, help="the UA's max_calls (the app's default)")
    parser.add_argument(
        "--no-per-source", action="store_true", help="turn the per-source caps off (comparison)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime-s", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.max_calls, args.lifetime_s, not args.no_per_source))
        return
    server = start_server(args)
    try:
        asyncio.run(flood(args, server))
    finally:
        stop_server(server)
    print()
    print("# sans-IO core, per datagram (receive + flush + get_timer), OPTIONS from a trunk")
    print(f"{'live transactions':>18} {'µs/datagram':>12} {'old min() scan alone, µs':>25}")
    costs = []
    for live in (100, 1000, 10_000):
        costs.append(core_cost(live))
        print(f"{live:>18} {costs[-1]:>12.1f} {scan_cost(live):>25.1f}")
    ratio = costs[-1] / costs[0]
    print(f"# 10k / 100 ratio {ratio:.2f} (flat = about 1); median {statistics.median(costs):.1f} µs")


if __name__ == "__main__":
    main()
