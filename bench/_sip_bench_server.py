"""The voicebot side of bench/sip_bench.py: a Telephony process that answers every call.

Each call is answered, plays a looping speech prompt (queued again on every PlaybackFinished) and has
its frames consumed, as the app's recognition feed would (no recognizer): by a task iterating
frames() (default) or by a synchronous set_frame_handler() callback (``--frames callback``). Prints one
JSON line ``{"sip_port": ...}`` once listening, then a JSON stats line every second, and a final
one on SIGTERM/SIGINT after a graceful stop.

    .venv/bin/python bench/_sip_bench_server.py --sip-port 0 --rtp-ports 30000-31999 --max-calls 400
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from voicebot import logging as vlog
from voicebot.media.frames import Frame
from voicebot.telephony import CallLeg, PlaybackFinished, Telephony, TelephonyConfig
from voicebot.testing.speech import telephone_speech


class Counters:
    def __init__(self) -> None:
        self.answered = 0
        self.answer_failed = 0
        self.ended: dict[str, int] = {}
        self.frames = 0
        self.prompts = 0
        self.packets_sent = 0
        self.packets_received = 0
        self.lost = 0


async def handle(leg: CallLeg, prompt: bytes, counters: Counters, frame_mode: str) -> None:
    try:
        await leg.answer()
    except Exception as exc:  # a failed answer is counted; the caller got an error response
        counters.answer_failed += 1
        print(json.dumps({"answer_error": str(exc)}), file=sys.stderr, flush=True)
        return
    counters.answered += 1

    def on_frame(frame: Frame) -> None:
        counters.frames += 1

    async def consume() -> None:
        async for _ in leg.frames():
            counters.frames += 1

    if frame_mode == "callback":
        leg.set_frame_handler(on_frame)

    frames = asyncio.create_task(consume())
    leg.play(prompt)
    async for event in leg.events():
        if isinstance(event, PlaybackFinished) and not event.interrupted:
            counters.prompts += 1
            leg.play(prompt)
    await frames
    ended = await leg.ended()
    counters.ended[ended.cause] = counters.ended.get(ended.cause, 0) + 1
    stats = leg.stats()
    counters.packets_sent += stats.packets_sent
    counters.packets_received += stats.packets_received
    counters.lost += stats.lost


def snapshot(telephony: Telephony, counters: Counters) -> dict[str, object]:
    clock = telephony.media_clock.stats()
    return {
        "active": telephony.active_legs,
        "answered": counters.answered,
        "answer_failed": counters.answer_failed,
        "ended": counters.ended,
        "frames": counters.frames,
        "prompts_finished": counters.prompts,
        "packets_sent": counters.packets_sent,
        "packets_received": counters.packets_received,
        "lost": counters.lost,
        "clock_ticks": clock.ticks,
        "clock_late_ticks": clock.late_ticks,
        "clock_skipped_ticks": clock.skipped_ticks,
        "clock_max_lateness_ms": round(clock.max_lateness_ms, 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sip-port", type=int, default=0)
    parser.add_argument("--rtp-ports", default="30000-31999", help="LOW-HIGH, or 0-0 for any free port")
    parser.add_argument("--max-calls", type=int, default=400)
    parser.add_argument("--frames", choices=("iterator", "callback"), default="iterator",
                        help="consume frames with a task per call (frames()) or set_frame_handler()")
    parser.add_argument("--prompt", default="Thank you for calling. Please tell me, in a few words, "
                                            "why you are calling today.")
    args = parser.parse_args()
    vlog.configure(level="warning", json=True)
    low, high = (int(x) for x in args.rtp_ports.split("-"))
    prompt = telephone_speech(args.prompt)
    config = TelephonyConfig(sip_host="127.0.0.1", sip_port=args.sip_port, rtp_host="127.0.0.1",
                             rtp_port_min=low, rtp_port_max=high, max_calls=args.max_calls,
                             rate_limit_per_s=1000.0, rate_limit_burst=2000.0)
    counters = Counters()
    tasks: set[asyncio.Task[None]] = set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Telephony(config) as telephony:
        print(json.dumps({"sip_port": telephony.sip_address[1]}), flush=True)

        async def accept() -> None:
            async for leg in telephony.incoming():
                task = asyncio.create_task(handle(leg, prompt, counters, args.frames))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

        acceptor = asyncio.create_task(accept())
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                print(json.dumps(snapshot(telephony, counters)), flush=True)
        acceptor.cancel()
        await telephony.stop(grace_s=2.0)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        print(json.dumps({"final": snapshot(telephony, counters)}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
