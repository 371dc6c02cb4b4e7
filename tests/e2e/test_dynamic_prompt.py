"""A dynamic prompt heard on a whole call: sipp calls ``voicebot run`` with tests/e2e/dialplans/dynamic.yaml,
whose greeting carries the call's reference (its Call-ID), text no cache can have. The robot streams
it (the log says so), the caller receives it as paced RTP audio as long as the whole sentence, the
robot hangs up only after the last of it (the streamed prompt finished once, at its end), and the
completed stream is in the TTS cache afterwards, so the next call would get it whole.

The time from the robot's first RTP packet (it starts sending at the answer, when the dialog plays
the greeting) to its first packet with sound is printed (``-s``): the wire view of the first
audio; bench/tts_bench.py --call-path measures it under control.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import (
    DIALPLANS,
    Capture,
    Pause,
    Voicebot,
    call,
    explain,
    flows,
    sound_runs,
    speech_pcap,
    start_voicebot,
)

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def dynamic_bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Voicebot]:
    bot = start_voicebot(tmp_path_factory.mktemp("dynamic-bot"), tts_cache=tts_cache,
                         dialplan=DIALPLANS / "dynamic.yaml")
    try:
        yield bot
    finally:
        bot.stop()


def cached_prompts(tts_cache: Path) -> set[Path]:
    return set(tts_cache.rglob("*.pcm"))


async def test_a_dynamic_prompt_is_streamed_heard_whole_and_cached(
    dynamic_bot: Voicebot, tmp_path: Path, pcap_cache: Path, tts_cache: Path
) -> None:
    reference = "".join(random.choice("0123456789") for _ in range(10))
    call_id = reference  # the greeting says "Your reference is {call_id}": digits read one by one
    before = cached_prompts(tts_cache)
    speech = speech_pcap(pcap_cache, [Pause(30000)])  # the caller listens
    with Capture(tmp_path / "rtp.pcap", dynamic_bot.rtp_ports) as capture:
        result = await call(dynamic_bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=90,
                            pcap=speech.path, pause_ms=0, bye_timeout_ms=60000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", dynamic_bot)
    record = dynamic_bot.wait_call_ended(call_id)
    assert record["summary"]["hangup_side"] == "robot", record["summary"]

    streamed = [e for e in dynamic_bot.log_events("call.prompt.streamed") if e.get("call_id") == call_id]
    assert [e["prompt_seq"] for e in streamed] == [1], dynamic_bot.log_events("call.prompt.streamed")

    (_, flow), *_ = flows(capture.datagrams(), dynamic_bot.rtp_ports).items()
    robot = [p for p in flow["robot"] if p.payload_type == 0]
    assert robot, "no PCMU RTP from the robot"
    runs = [run for run in sound_runs([p for p in robot if p.rms > 300], gap_s=1.0)]
    assert runs, "the robot sent no audible RTP"
    # "Your reference is <ten digits>. Thank you for calling, we will call you back tomorrow.
    # Goodbye." is well over 6 s of speech: all of it arrived, as one prompt (pauses between
    # sentences, no gap of a second), not just the first sentence.
    longest = max(runs, key=len)
    assert (longest[-1].time_s - longest[0].time_s) >= 6.0, [(r[0].time_s, r[-1].time_s) for r in runs]
    assert len(runs) == 1, [(r[0].time_s, r[-1].time_s) for r in runs]
    first_sound_ms = (runs[0][0].time_s - robot[0].time_s) * 1000
    print(f"\nfirst robot RTP packet -> first with sound: {first_sound_ms:.0f} ms; "
          f"lane wait for the first sentence: {streamed[0]['first_audio_ms']} ms")

    # The completed stream was cached: one new prompt file, the greeting of this call.
    assert len(cached_prompts(tts_cache) - before) == 1
