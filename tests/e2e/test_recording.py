"""A recorded call into ``voicebot run`` ([recording] enabled in its config): sipp speaks a speech
pcap, the robot answers with the demo dialplan, dumpcap captures the RTP both ways. The stereo WAV's
left channel is what the caller sent and its right what the robot sent (each cross-correlated with
the decoded captured RTP), on one timeline: the record's utterance marks lie on the caller's speech
and its prompt marks on the robot's. At start, retention deleted the recordings older than
``retention_days``. A ``voicebot run`` killed mid-call (SIGKILL) leaves a WAV that plays up to its
last whole second. (Pause/resume is checked at the pipeline level, tests/call: the demo dialplan has
no ``record: pause`` yet.)"""

from __future__ import annotations

import asyncio
import audioop
import json
import os
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.conftest import needs_tools
from tests.e2e.harness import (
    VOICEBOT,
    Capture,
    Pause,
    Say,
    Voicebot,
    call,
    explain,
    new_call_id,
    speech_pcap,
    start_voicebot,
)
from voicebot.testing.pcap import UdpDatagram

pytestmark = [pytest.mark.e2e, needs_tools, pytest.mark.timeout(240)]

DAY_S = 86400


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recording directory, holding two recordings of earlier runs before the robot starts."""
    directory = tmp_path_factory.mktemp("recordings")
    now = time.time()
    for name, age_days in (("20251001T000000Z-old@x.wav", 40), ("20261101T000000Z-recent@x.wav", 5)):
        (directory / name).write_bytes(b"RIFF")
        os.utime(directory / name, (now - age_days * DAY_S, now - age_days * DAY_S))
    return directory


@pytest.fixture(scope="module")
def recording_bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path,
                  recordings: Path) -> Iterator[Voicebot]:
    section = (f"\n[recording]\nenabled = true\ndir = {json.dumps(str(recordings))}\n"
               'format = "stereo"\nretention_days = 30\n')
    bot = start_voicebot(tmp_path_factory.mktemp("recording-bot"), tts_cache=tts_cache,
                         config_sections=section)
    try:
        yield bot
    finally:
        bot.stop()


def rtp_audio(datagrams: list[UdpDatagram], *, src_port: int | None = None,
              dst_port: int | None = None) -> np.ndarray:
    """The decoded PCMU audio of one direction's RTP, packet after packet, as int16 samples."""
    out = bytearray()
    for d in datagrams:
        if (src_port is not None and d.src[1] != src_port) or (dst_port is not None and d.dst[1] != dst_port):
            continue
        data = d.payload
        if len(data) < 12 or data[0] >> 6 != 2 or data[1] & 0x7F != 0:
            continue
        out += audioop.ulaw2lin(data[12 + 4 * (data[0] & 0x0F):], 2)
    return np.frombuffer(bytes(out), dtype="<i2")


def best_correlation(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    """Peak normalized cross-correlation of two signals over every lag, and that lag in samples."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    n = len(a) + len(b) - 1
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    corr = np.concatenate([corr[-(len(b) - 1):], corr[:len(a)]])  # lags -(len(b)-1) .. len(a)-1
    peak = int(np.argmax(corr))
    # Normalize by the energy of the overlapping parts at that lag.
    lag = peak - (len(b) - 1)
    a_part = a[max(0, lag):lag + len(b)]
    b_part = b[max(0, -lag):max(0, -lag) + len(a_part)]
    denom = float(np.sqrt((a_part ** 2).sum() * (b_part ** 2).sum())) or 1.0
    return float(corr[peak]) / denom, lag


def prompts_sent(robot: np.ndarray, *, quiet_frames: int = 10) -> list[np.ndarray]:
    """The robot's RTP audio cut into its audible stretches (prompts), split at >= 200 ms of silence.

    A prompt is compared on its own: after a media-clock stall the recording puts the stall's gap
    into the robot's next silence, while the RTP timestamps (and so this concatenation) have none."""
    frames = robot[:len(robot) // 160 * 160].reshape(-1, 160)
    loud = np.abs(frames.astype(np.int32)).max(axis=1) > 64
    segments, start, quiet = [], None, 0
    for i, is_loud in enumerate(loud):
        if is_loud:
            start = i if start is None else start
            quiet = 0
        elif start is not None:
            quiet += 1
            if quiet >= quiet_frames:
                segments.append(frames[start:i - quiet + 1].reshape(-1))
                start, quiet = None, 0
    if start is not None:
        segments.append(frames[start:].reshape(-1))
    return [s for s in segments if len(s) >= 8000 // 2]


def rms_ms(channel: np.ndarray, start_ms: int, end_ms: int) -> float:
    part = channel[start_ms * 8:end_ms * 8].astype(np.float64)
    return float(np.sqrt((part ** 2).mean())) if len(part) else 0.0


def test_retention_deleted_old_recordings_at_start(recording_bot: Voicebot, recordings: Path) -> None:
    deadline = time.monotonic() + 10
    while (recordings / "20251001T000000Z-old@x.wav").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (recordings / "20251001T000000Z-old@x.wav").exists(), recording_bot.log_tail()
    assert (recordings / "20261101T000000Z-recent@x.wav").exists()
    assert recording_bot.log_events("recording.retention.deleted")[0]["count"] == 1


async def test_recorded_call_has_both_sides_on_one_timeline(
    recording_bot: Voicebot, tmp_path: Path, pcap_cache: Path, recordings: Path
) -> None:
    speech = speech_pcap(pcap_cache, [Pause(2000), Say("No thanks, goodbye."), Pause(10000)])
    call_id = new_call_id("recorded")
    with Capture(tmp_path / "rtp.pcap", recording_bot.rtp_ports) as capture:
        result = await call(recording_bot, "caller_bye", tmp_path, call_id=call_id, timeout_s=60,
                            pcap=speech.path, pause_ms=0, bye_timeout_ms=40000)
    assert result.returncode == 0, explain(result, tmp_path, "caller_bye", recording_bot)
    record = recording_bot.wait_call_ended(call_id)
    rec = record["recording"]  # its end is written right before the call's
    assert rec is not None and rec["duration_ms"] is not None and rec["error"] is None, record
    path = Path(rec["path"])
    assert path.parent == recordings and path.suffix == ".wav" and rec["format"] == "stereo"

    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert w.getnframes() * 1000 // 8000 == rec["duration_ms"]
    left, right = pcm[0::2], pcm[1::2]

    datagrams = capture.datagrams()
    robot_port = next(d.dst[1] for d in datagrams
                      if recording_bot.rtp_ports[0] <= d.dst[1] <= recording_bot.rtp_ports[1])
    sent_by_caller = rtp_audio(datagrams, dst_port=robot_port)
    sent_by_robot = rtp_audio(datagrams, src_port=robot_port)
    assert len(sent_by_caller) > 8000 * 5 and len(sent_by_robot) > 8000 * 5

    # Left = the caller's audio as received (the jitter buffer's output is the decoded PCMU itself);
    # right = the robot's prompts before G.711 encoding (so not bit-exact, but nearly).
    caller_corr, caller_lag = best_correlation(left, sent_by_caller)
    assert caller_corr > 0.98, (caller_corr, caller_lag)
    prompts = prompts_sent(sent_by_robot)
    assert len(prompts) >= 2, "the robot sent fewer than two prompts (greeting, goodbye)"
    robot_lags = []
    for prompt in prompts:
        robot_corr, robot_lag = best_correlation(right, prompt)
        assert robot_corr > 0.98, (robot_corr, robot_lag, len(prompt))
        robot_lags.append(robot_lag)
    # The wrong pairing does not correlate: the channels are not swapped or mixed.
    assert best_correlation(left, prompts[0])[0] < 0.5
    assert best_correlation(right, sent_by_caller)[0] < 0.5
    # One timeline: the greeting starts with the answer on both the wire and the WAV, within a few
    # frames of the caller's first audio (lags in samples; 8 per ms).
    assert robot_lags[0] <= 8 * 100 and abs(caller_lag) <= 8 * 100, (caller_lag, robot_lags)

    marks = rec["marks"]
    prompt_marks = [m for m in marks if m["kind"] == "prompt"]
    utterances = [m for m in marks if m["kind"] == "utterance"]
    assert prompt_marks and prompt_marks[0]["prompt_id"] is not None and prompt_marks[0]["text"], marks
    assert any("goodbye" in (m["text"] or "").lower().replace(" ", "") for m in utterances), marks
    # Each prompt's audio on the robot's channel lies inside a prompt mark.
    for prompt, lag in zip(prompts, robot_lags, strict=True):
        start_ms, end_ms = lag / 8, (lag + len(prompt)) / 8
        assert any(m["start_ms"] - 100 <= start_ms and end_ms <= m["end_ms"] + 100 for m in prompt_marks), (
            start_ms, end_ms, prompt_marks)
    # A player jumping to a mark finds that side speaking.
    for m in prompt_marks:
        if m["end_ms"] - m["start_ms"] >= 500:
            assert rms_ms(right, m["start_ms"], m["end_ms"]) > 300, m
    for m in utterances:
        assert rms_ms(left, m["start_ms"], m["end_ms"]) > 300, m
    # The caller's speech starts 2 s after the first packet: the utterance lies there on the WAV.
    speech_start_ms = speech.utterances[0][1] * 1000 + caller_lag / 8
    assert abs(utterances[0]["start_ms"] - speech_start_ms) < 600, (utterances[0], speech_start_ms)

    show = [str(VOICEBOT), "calls", "--records-db", str(recording_bot.records_db), "show", call_id]
    shown = (await asyncio.to_thread(subprocess.run, show, capture_output=True, text=True, timeout=60,
                                     check=True)).stdout
    assert f"Recording:  {path}   (stereo, " in shown
    assert recording_bot.log_events("call.recording.finished")


async def test_sigkilled_robot_leaves_a_playable_recording(
    tmp_path: Path, tts_cache: Path, pcap_cache: Path
) -> None:
    directory = tmp_path / "recordings"
    bot = start_voicebot(tmp_path / "bot", tts_cache=tts_cache, config_sections=(
        f"\n[recording]\nenabled = true\ndir = {json.dumps(str(directory))}\n"))
    try:
        speech = speech_pcap(pcap_cache, [Pause(1500), Say("Hello there."), Pause(15000)])
        sipp = asyncio.create_task(call(bot, "caller_bye", tmp_path, call_id=new_call_id("killed"),
                                        timeout_s=40, pcap=speech.path, pause_ms=0, bye_timeout_ms=6000))
        deadline = time.monotonic() + 20
        while not list(directory.glob("*.wav")):
            assert time.monotonic() < deadline and not sipp.done(), bot.log_tail()
            await asyncio.sleep(0.05)
        await asyncio.sleep(3.5)  # three whole seconds synced, the fourth under way
        bot.proc.kill()
        bot.proc.wait(10)
        await sipp  # sipp gives up on its BYE: the robot is gone
    finally:
        bot.stop()
    (path,) = directory.glob("*.wav")
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        frames = w.getnframes()
        pcm = np.frombuffer(w.readframes(frames), dtype="<i2")
    # The header covers whole seconds up to the last sync, never more than the file holds.
    assert frames % 8000 == 0 and 3 * 8000 <= frames <= 4 * 8000, frames
    assert path.stat().st_size >= 44 + frames * 4
    left, right = pcm[0::2], pcm[1::2]
    assert rms_ms(right, 0, 1000) > 300  # the greeting
    assert rms_ms(left, 1600, 2800) > 300  # "Hello there."
