"""Prompt voices compared: speed, time to first audio, and intelligibility on the phone.

Usage: .venv/bin/python bench/tts_bench.py [--repeat N] [--verbose]
       .venv/bin/python bench/tts_bench.py --call-path N
       .venv/bin/python bench/tts_bench.py --wire N [--voicebot-src DIR]

``--call-path N``: the issue's measure for dynamic text, time from ``PlayPrompt`` to the first RTP
packet with sound on the wire, N prompts per mode, modes alternating. A dynamic prompt (a balance,
a name, a date: text with per-call values, so never cached) goes through the application's prompt
chain (``open_prompts``: Piper joe, memo and disk cache in a temporary directory) and the pipeline's
streaming renderer (voicebot.call.streaming), into a real :class:`~voicebot.rtp.session.RtpSession`
ticked every 20 ms by the event loop, whose packets go over UDP on 127.0.0.1 to a receiver that
notes the arrival of the first packet whose decoded audio is above the silence threshold. Modes:
``whole`` (the path before streaming: ``Prompts.render`` waits for the whole prompt) and ``stream``
(``StreamingRenderer.render`` returns with the first sentence, the rest is fed into the playout as
the voice renders it). The next prompt starts once the previous one has played out. p50/p95/max
per mode, with the load average before and after, and the CPU seconds this process spent until
the packet arrived (all threads: about what the wait would be on an idle core).

``--wire N``: the same on a real call, N sipp calls to a real ``voicebot run`` (tests/e2e/harness)
with tests/e2e/dialplans/dynamic.yaml, whose greeting says the call's reference (a fresh Call-ID of
ten digits each call, so never cached), captured with dumpcap on lo: per call, the time from the
robot's first RTP packet (it starts sending at the answer, when the dialog plays the greeting) to
its first packet with sound. ``--voicebot-src DIR`` runs the robot from another checkout (its
PYTHONPATH), e.g. the main branch for the numbers before streaming.

Voices: espeak-ng (``espeak:en-us``), Piper with the bundled joe voice (``piper:en_US-joe-medium``)
and SpeechKit TTS v3 through voicebot's client against the local fake server of the tests
(tests/tts/fake_speechkit.py, 127.0.0.1, which renders with espeak-ng at 175 wpm: it measures the
client and wire path, not Yandex's voices).

Per voice, over a fixed set of IVR prompts (money, dates, times and digit strings among them):

- RTF: synthesis wall time / seconds of audio, whole prompts, no cache (lower is faster); CPU RTF:
  the CPU seconds this process and its espeak-ng children spent instead, which the other users of
  a shared machine inflate much less than wall time (SpeechKit's includes the in-process fake);
- first audio: request -> first 8 kHz audio in hand. Piper streams (``VoiceRouter.stream``, sentence
  by sentence with a short first clause); the others return the whole prompt. p50 and max, and
  the CPU time spent until then (p50), about what it would take on an idle core;
- WER: the embedded recognizer (Whisper base, as shipped) transcribes the voice's own output after
  the telephone path (300-3400 Hz band, G.711 mu-law round trip, back up to 16 kHz), scored like
  bench/stt_wer.py, prompt and transcript both read through voicebot.tts.text first (so "$12" and
  "twelve dollars" agree). Readings the normalizer cannot map ("230 PM" for "two thirty PM") still
  count as errors, for every voice alike.

One synthesis thread per engine, one recognizer worker. The machine is a shared 2-core VM: the
load average is printed before and after; compare voices within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import audioop
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stt_wer import edit_distance, phone, score_text  # noqa: E402

from tests.tts.fake_speechkit import FakeBehaviour, start_fake  # noqa: E402
from voicebot.stt.model import WhisperEngine, base_model_files  # noqa: E402
from voicebot.testing.speech import g711_roundtrip, silence, to_telephone_band, write_wav  # noqa: E402
from voicebot.tts import EspeakSynthesizer, VoiceRouter, make_synthesizer  # noqa: E402
from voicebot.tts.speechkit import SpeechKitTtsSettings  # noqa: E402
from voicebot.tts.text import normalize_for_speech  # noqa: E402

PROMPTS = (
    "Thank you for calling. Your call is important to us.",
    "Please say or enter your account number, followed by the pound key.",
    "Your balance is $1,234.50 as of 2026-12-06.",
    "Your appointment is confirmed for 14:30 on Friday.",
    "I did not catch that. Please say yes or no.",
    "To speak with an operator, say operator at any time.",
    "Your order has shipped and should arrive within three business days.",
    "Your reference number is 48213907. Goodbye and have a nice day.",
)


@dataclass
class VoiceResult:
    name: str
    synth_s: list[float] = field(default_factory=list)
    synth_cpu_s: list[float] = field(default_factory=list)
    first_audio_cpu_s: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    first_audio_s: list[float] = field(default_factory=list)
    errors: int = 0
    words: int = 0


def cpu_s() -> float:
    """CPU seconds of this process (all threads) and its waited-for children (espeak-ng)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def spoken_words(text: str) -> list[str]:
    """Both the prompt and the transcript are read through the same normalizer, then scored like
    bench/stt_wer.py, so "$1,234.50" written by the recognizer and the spelled-out prompt agree."""
    return score_text(normalize_for_speech(text))


def telephone(pcm8k: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "prompt.wav"
        write_wav(wav, silence(300) + pcm8k + silence(300))
        return g711_roundtrip(to_telephone_band(wav))


async def measure(router: VoiceRouter, spec: str, result: VoiceResult, engine: WhisperEngine,
                  repeat: int, verbose: bool) -> None:
    await router.synthesize("Warm up.", voice=spec)
    for _ in range(repeat):
        for text in PROMPTS:
            start, start_cpu = time.perf_counter(), cpu_s()
            audio = await router.synthesize(text, voice=spec)
            result.synth_s.append(time.perf_counter() - start)
            result.synth_cpu_s.append(cpu_s() - start_cpu)
            result.audio_s.append(audio.duration_s)
            start, start_cpu = time.perf_counter(), cpu_s()
            async for _chunk in router.stream(text, voice=spec):
                result.first_audio_s.append(time.perf_counter() - start)
                result.first_audio_cpu_s.append(cpu_s() - start_cpu)
                break
            reference = spoken_words(text)
            hyp = await asyncio.to_thread(
                engine.transcribe, phone(telephone(audio.pcm)), language="en-US", partial=False
            )
            errors = edit_distance(reference, spoken_words(hyp.text))
            result.errors += errors
            result.words += len(reference)
            if verbose:
                print(f"  [{result.name}] {errors} err: {hyp.text!r}")


async def run(repeat: int, verbose: bool) -> None:
    load_before = os.getloadavg()
    engine = WhisperEngine(base_model_files(), workers=1)
    behaviour = FakeBehaviour()
    server, target = await start_fake(EspeakSynthesizer(speed_wpm=175), behaviour)
    # No disk cache: every prompt is synthesized, which is what RTF and first audio measure.
    router = make_synthesizer(
        "piper:en_US-joe-medium", voices=["espeak:en-us", "speechkit:fake"],
        speechkit=SpeechKitTtsSettings(target=target, api_key="bench", timeout_s=10.0),
    )
    voices = (("espeak-ng", "espeak:en-us"), ("piper joe", "piper:en_US-joe-medium"),
              ("speechkit (fake)", "speechkit:fake"))
    results = []
    try:
        for name, spec in voices:
            result = VoiceResult(name)
            await measure(router, spec, result, engine, repeat, verbose)
            results.append(result)
    finally:
        await router.aclose()
        await server.stop(grace=None)
    assert router.fallbacks == 0, "a voice fell back to espeak-ng: its numbers would not be its own"
    load_after = os.getloadavg()
    print(f"{len(PROMPTS)} prompts x {repeat}; load average before {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
          f"{load_after[2]:.2f} (shared 2-core VM)\n")
    header = (f"{'voice':<18}{'audio s':>8}{'RTF':>7}{'max':>6}{'CPU RTF':>8}{'1st audio ms p50':>17}"
              f"{'max':>6}{'CPU p50':>8}{'words':>6}{'errors':>7}{'WER %':>7}")
    print(header)
    print("-" * len(header))
    for r in results:
        rtfs = [s / a for s, a in zip(r.synth_s, r.audio_s, strict=True)]
        print(
            f"{r.name:<18}{sum(r.audio_s):>8.1f}{sum(r.synth_s) / sum(r.audio_s):>7.3f}{max(rtfs):>6.2f}"
            f"{sum(r.synth_cpu_s) / sum(r.audio_s):>8.3f}"
            f"{1000 * statistics.median(r.first_audio_s):>17.0f}{1000 * max(r.first_audio_s):>6.0f}"
            f"{1000 * statistics.median(r.first_audio_cpu_s):>8.0f}"
            f"{r.words:>6}{r.errors:>7}{100.0 * r.errors / max(1, r.words):>7.1f}"
        )


# ---- --call-path: PlayPrompt -> first RTP packet with sound, whole vs streamed ----

NAMES = ("Alice", "Bob", "Carmen", "Dmitri", "Eleanor", "Farid", "Grace", "Hiroshi")
MONTHS = ("January", "March", "May", "July", "September", "November")
SOUND_RMS = 300  # as tests/e2e/harness.py: decoded mu-law above this is sound, not silence


def dynamic_text(rng: random.Random) -> str:
    """One prompt with per-call values (never the same twice, so never in a cache)."""
    kind = rng.randrange(3)
    if kind == 0:
        return (f"The balance of account {rng.randrange(10**7, 10**8)} is "
                f"${rng.randrange(1, 99999):,}.{rng.randrange(100):02d}. Is there anything else?")
    if kind == 1:
        return (f"Hello {rng.choice(NAMES)}, your appointment is on {rng.choice(MONTHS)} "
                f"{rng.randrange(1, 29)} at {rng.randrange(8, 18)}:{rng.choice(('00', '15', '30', '45'))}. "
                "Say yes to confirm.")
    return (f"Your order {rng.randrange(10**5, 10**6)} shipped on 2026-{rng.randrange(1, 13):02d}-"
            f"{rng.randrange(1, 29):02d} and should arrive within {rng.randrange(2, 9)} business days.")


class FirstSound(asyncio.DatagramProtocol):
    """The receiving end: when the first packet with sound arrives after :meth:`arm`."""

    def __init__(self) -> None:
        self.arrived: asyncio.Future[tuple[float, float]] | None = None

    def arm(self) -> asyncio.Future[tuple[float, float]]:
        self.arrived = asyncio.get_running_loop().create_future()
        return self.arrived

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.arrived is None or self.arrived.done() or len(data) <= 12:
            return
        if audioop.rms(audioop.ulaw2lin(data[12:], 2), 2) >= SOUND_RMS:
            self.arrived.set_result((time.perf_counter(), cpu_s()))


async def run_call_path(count: int) -> None:
    from voicebot.call.streaming import PromptFeeds, StreamingRenderer
    from voicebot.dialog.events import PlayPrompt
    from voicebot.prompts import open_prompts
    from voicebot.rtp.session import RemoteMedia, RtpSession, SessionConfig

    load_before = os.getloadavg()
    loop = asyncio.get_running_loop()
    receiver = FirstSound()
    rx_transport, _ = await loop.create_datagram_endpoint(lambda: receiver, local_addr=("127.0.0.1", 0))
    tx_transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                          local_addr=("127.0.0.1", 0))
    session = RtpSession(SessionConfig(unverified_send_limit_ms=0), ssrc=1, sequence_number=1, timestamp=0)
    session.set_remote(RemoteMedia(rx_transport.get_extra_info("sockname")[:2], 0, None, 20))

    quiet = asyncio.Event()  # nothing left to play
    underrun_ms: list[int] = []  # per streamed prompt: ticks with nothing to send while it streamed
    feeding = False

    async def media_clock() -> None:
        next_s = time.perf_counter()
        while True:  # one tick per 20 ms on an absolute schedule, as the RTP adapter does
            next_s += 0.020
            await asyncio.sleep(max(0.0, next_s - time.perf_counter()))
            idle = not session.playing  # before the tick: no audio for this packet
            for datagram in session.tick():
                tx_transport.sendto(datagram, session.send_address)
            if feeding and idle:
                underrun_ms[-1] += 20  # the next sentence was not rendered in time: a gap
            if not session.playing:
                quiet.set()

    def play(pcm16: bytes, prompt_seq: int) -> None:
        quiet.clear()
        session.play(pcm16)

    ticker = loop.create_task(media_clock())
    with tempfile.TemporaryDirectory() as cache:
        prompts = await asyncio.to_thread(open_prompts, Path(cache))
        streaming = StreamingRenderer(prompts)
        feeds = PromptFeeds(play, lambda prompt_seq: None)
        rng = random.Random(11)
        results: dict[str, list[float]] = {"whole": [], "stream": []}
        cpu: dict[str, list[float]] = {"whole": [], "stream": []}
        try:
            await prompts.render(PlayPrompt(0, "Warm up, please.", None, "en-us", True))
            for i in range(2 * count):
                mode = ("whole", "stream")[i % 2]
                prompt = PlayPrompt(i + 1, dynamic_text(rng), None, "en-us", True)
                arrived = receiver.arm()
                start, start_cpu = time.perf_counter(), cpu_s()
                if mode == "whole":
                    play(await prompts.render(prompt), prompt.prompt_seq)
                else:
                    play(await streaming.render(prompt), prompt.prompt_seq)
                    rest = streaming.take_rest(prompt.prompt_seq)
                    if rest is not None:
                        feeds.start(prompt.prompt_seq, rest)
                        underrun_ms.append(0)
                        feeding = True
                at, at_cpu = await asyncio.wait_for(arrived, 30)
                results[mode].append(at - start)
                cpu[mode].append(at_cpu - start_cpu)
                await feeds.drained()
                feeding = False
                await quiet.wait()  # the next prompt starts on a quiet line
        finally:
            await feeds.aclose()
            ticker.cancel()
            rx_transport.close()
            tx_transport.close()
            await prompts.aclose()
    load_after = os.getloadavg()
    print(f"PlayPrompt -> first RTP packet with sound, dynamic text, Piper joe, {count} prompts per mode; "
          f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} (shared 2-core VM)\n")
    print(f"{'mode':<30}{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'<300 ms':>9}{'CPU p50':>9}{'CPU p95':>9}")
    for mode, label in (("whole", "whole prompt (before)"), ("stream", "first sentence streamed")):
        values = sorted(1000 * v for v in results[mode])
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        under = sum(v < 300 for v in values)
        cpus = sorted(1000 * v for v in cpu[mode])
        cpu_p95 = cpus[round(0.95 * (len(cpus) - 1))]
        print(f"{label:<30}{statistics.median(values):>8.0f}{p95:>8.0f}{values[-1]:>8.0f}"
              f"{under:>6}/{len(values):<3}{statistics.median(cpus):>8.0f}{cpu_p95:>9.0f}")
    gaps = [g for g in underrun_ms if g]
    detail = f", {sum(gaps)} ms in all, longest {max(gaps)} ms" if gaps else ""
    print(f"\nstreamed prompts with a gap (the next sentence not rendered before the last one ended): "
          f"{len(gaps)}/{len(underrun_ms)}{detail}")


async def run_wire(count: int, voicebot_src: Path) -> None:
    from tests.e2e.harness import DIALPLANS, Capture, Pause, call, flows, speech_pcap, start_voicebot

    load_before = os.getloadavg()
    waits_ms: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bot = await asyncio.to_thread(
            start_voicebot, work / "bot", tts_cache=work / "tts", dialplan=DIALPLANS / "dynamic.yaml",
            env={"PYTHONPATH": str(voicebot_src)})
        try:
            speech = speech_pcap(work, [Pause(20000)])
            rng = random.Random()
            for i in range(count):
                call_id = "".join(rng.choice("0123456789") for _ in range(10))
                with Capture(work / f"rtp-{i}.pcap", bot.rtp_ports) as capture:
                    result = await call(bot, "caller_bye", work, call_id=call_id, timeout_s=60,
                                        pcap=speech.path, pause_ms=0, bye_timeout_ms=40000)
                if result.returncode != 0:
                    raise RuntimeError(f"call {i} failed: {result.explain()}")
                (_, flow), *_ = flows(capture.datagrams(), bot.rtp_ports).items()
                robot = [p for p in flow["robot"] if p.payload_type == 0]
                sound = [p for p in robot if p.rms > SOUND_RMS]
                waits_ms.append((sound[0].time_s - robot[0].time_s) * 1000)
        finally:
            bot.stop()
        # The streaming robot logs how long the dialog's prompt lane waited for the first sentence.
        lane_ms = sorted(float(e["first_audio_ms"]) for e in bot.log_events("call.prompt.streamed"))
    load_after = os.getloadavg()
    values = sorted(waits_ms)
    print(f"robot from {voicebot_src}: first robot RTP packet -> first with sound, dynamic greeting, "
          f"{count} calls; load average before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"p50 {statistics.median(values):.0f} ms, p95 {values[round(0.95 * (len(values) - 1))]:.0f} ms, "
          f"max {values[-1]:.0f} ms, under 300 ms: {sum(v < 300 for v in values)}/{len(values)}")
    if lane_ms:
        print(f"prompt lane's wait for the first sentence (call.prompt.streamed): p50 "
              f"{statistics.median(lane_ms):.0f} ms, p95 {lane_ms[round(0.95 * (len(lane_ms) - 1))]:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=1, help="passes over the prompt set (default 1)")
    parser.add_argument("--verbose", action="store_true", help="print each transcript")
    parser.add_argument("--call-path", type=int, default=0, metavar="N",
                        help="measure PlayPrompt -> first RTP audio of N dynamic prompts per mode instead")
    parser.add_argument("--wire", type=int, default=0, metavar="N",
                        help="measure it on N real calls to voicebot run (sipp, dumpcap) instead")
    parser.add_argument("--voicebot-src", type=Path, default=ROOT,
                        help="checkout the robot runs from with --wire (default: this one)")
    args = parser.parse_args()
    if args.wire > 0:
        asyncio.run(run_wire(args.wire, args.voicebot_src.resolve()))
    elif args.call_path > 0:
        asyncio.run(run_call_path(args.call_path))
    else:
        asyncio.run(run(args.repeat, args.verbose))
    return 0


if __name__ == "__main__":
    sys.exit(main())
