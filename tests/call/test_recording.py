"""CallRecording on the real RTP session core (no sockets): the robot's channel is exactly the audio
the sender put in its packets (a flushed prompt cut at the flush), the caller's is the frames as
played out, both on one 20 ms grid; prompt/utterance/pause marks; pause writes silence on both
channels; recognition time is moved onto the recording's timeline; retention by file age."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.call.recording import (
    CallRecording,
    RecordingSettings,
    TimelineMark,
    recording_paths,
    retention_loop,
    sweep_recordings,
)
from voicebot.media.frames import Frame, FrameKind
from voicebot.media.g711 import ulaw_to_pcm16
from voicebot.rtp.packet import RtpPacket
from voicebot.rtp.session import RemoteMedia, RtpSession

pytestmark = pytest.mark.unit

STARTED_AT = 1_796_000_000.0  # 2026-11-30 00:53:20 UTC


def tone(n_frames: int, value: int) -> bytes:
    return np.full(160 * n_frames, value, dtype="<i2").tobytes()


def caller_frame(i: int) -> Frame:
    """Caller frame i: a ramp that names the frame (sample k of frame i is i * 7 + k % 5)."""
    return Frame(FrameKind.AUDIO, (np.arange(160) % 5 + i * 7).astype("<i2").tobytes())


class Tick:
    """One media tick as RtpStream._on_tick does it: the sender ticks, then the received frame and
    the prompt audio taken in that tick go to the tap."""

    def __init__(self, recording: CallRecording) -> None:
        self.session = RtpSession(ssrc=1, sequence_number=1, timestamp=0)
        self.session.set_remote(RemoteMedia(("127.0.0.1", 40000), 0, 101, 20))
        self.recording = recording
        self.sent: list[bytes] = []  # decoded audio of the packets sent, one per tick
        self.n = 0

    def __call__(self, count: int = 1) -> None:
        for _ in range(count):
            datagrams = self.session.tick()
            assert len(datagrams) == 1
            self.sent.append(ulaw_to_pcm16(RtpPacket.parse(datagrams[0]).payload))
            played = self.session.last_played
            self.recording.on_media(caller_frame(self.n), *(played if played is not None else (None, None)))
            self.n += 1


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm[0::2], pcm[1::2]


def test_robot_channel_is_what_was_sent_and_a_flush_cuts_it(tmp_path: Path) -> None:
    marks: list[TimelineMark] = []
    rec = CallRecording(RecordingSettings(tmp_path), "a@b", started_at=STARTED_AT, on_mark=marks.append)
    tick = Tick(rec)
    tick(5)  # 100 ms of nothing sent
    first = tick.session.play(tone(10, 1000))  # a 200 ms prompt
    second = tick.session.play(tone(25, -2000))  # a 500 ms prompt, flushed after 140 ms
    rec.prompt_text(first, "Hello.")
    tick(10 + 7)
    tick.session.flush()
    tick(8)
    rec.close()
    left, right = read(rec.path)
    assert len(left) == len(right) == 30 * 160
    # The caller's channel: every frame in order.
    sent_by_caller = [np.frombuffer(caller_frame(i).pcm, "<i2") for i in range(30)]
    assert np.array_equal(left, np.concatenate(sent_by_caller))
    expected = np.concatenate([np.zeros(5 * 160), np.full(10 * 160, 1000), np.full(7 * 160, -2000),
                               np.zeros(8 * 160)]).astype("<i2")
    assert np.array_equal(right, expected)
    # ... which is what the packets carried (G.711 rounds the levels).
    decoded = np.frombuffer(b"".join(tick.sent), "<i2")
    assert np.corrcoef(decoded.astype(float), right.astype(float))[0, 1] > 0.99
    assert np.all(decoded[22 * 160:] == decoded[-1])  # silence packets after the flush
    assert marks == [TimelineMark("prompt", 100, 300, first, "Hello."),
                     TimelineMark("prompt", 300, 440, second, None)]
    assert rec.duration_ms == 600


def test_pause_writes_silence_on_both_channels_and_keeps_the_timeline(tmp_path: Path) -> None:
    marks: list[TimelineMark] = []
    rec = CallRecording(RecordingSettings(tmp_path), "p@b", started_at=STARTED_AT, on_mark=marks.append)
    tick = Tick(rec)
    tick.session.play(tone(40, 3000))
    tick(10)
    assert rec.pause() and not rec.pause()
    tick(15)
    assert rec.resume() and not rec.resume()
    tick(10)
    assert rec.pause()  # still paused at the end: the mark ends with the call
    tick(5)
    rec.close()
    left, right = read(rec.path)
    assert len(left) == 40 * 160
    for lo, hi in ((10, 25), (35, 40)):
        assert not left[lo * 160:hi * 160].any() and not right[lo * 160:hi * 160].any()
    assert left[:10 * 160].any() and right[:10 * 160].all() and right[25 * 160:35 * 160].all()
    assert [m for m in marks if m.kind == "pause"] == [TimelineMark("pause", 200, 500),
                                                       TimelineMark("pause", 700, 800)]
    # The prompt's mark is not cut by the pause: it played (the caller heard it), it just is not kept.
    assert [(m.start_ms, m.end_ms) for m in marks if m.kind == "prompt"] == [(0, 800)]


def test_mono_pair_writes_two_files_with_the_same_samples(tmp_path: Path) -> None:
    rec = CallRecording(RecordingSettings(tmp_path, "mono-pair"), "m@b", started_at=STARTED_AT)
    tick = Tick(rec)
    tick.session.play(tone(3, 500))
    tick(6)
    rec.close()
    assert [p.name for p in rec.paths] == ["20261130T005320Z-m_b.caller.wav",
                                           "20261130T005320Z-m_b.robot.wav"]
    with wave.open(str(rec.paths[0])) as caller, wave.open(str(rec.paths[1])) as robot:
        assert caller.getnchannels() == robot.getnchannels() == 1
        assert caller.getnframes() == robot.getnframes() == 6 * 160
        assert np.frombuffer(robot.readframes(960), "<i2").tolist() == [500] * 480 + [0] * 480
        assert caller.readframes(160) == caller_frame(0).pcm


def test_file_names_are_safe_and_never_overwrite(tmp_path: Path) -> None:
    name = recording_paths(RecordingSettings(tmp_path), "1-2@10.0.0.1;x/../y", STARTED_AT)[0].name
    assert name == "20261130T005320Z-1-2_10.0.0.1_x_.._y.wav"
    one = CallRecording(RecordingSettings(tmp_path), "same", started_at=STARTED_AT)
    two = CallRecording(RecordingSettings(tmp_path), "same", started_at=STARTED_AT)
    one.close()
    two.close()
    assert one.path != two.path and two.path.name == "20261130T005320Z-same_2.wav"


def test_utterances_move_from_recognition_time_to_the_recordings_timeline(tmp_path: Path) -> None:
    marks: list[TimelineMark] = []
    rec = CallRecording(RecordingSettings(tmp_path), "u@b", started_at=STARTED_AT, on_mark=marks.append)
    # Two frames were queued before the tap was installed; the recognizer got those first, so its
    # time 0 is 40 ms before the recording's.
    early = [caller_frame(100), caller_frame(101)]
    tapped = [caller_frame(i) for i in range(5)]
    for frame in tapped:
        rec.on_media(frame, None, None)
    for frame in early + tapped[:2]:
        rec.frame_consumed(frame)
    assert rec.aligned
    rec.utterance(1000, 1800, "operator")
    rec.close()
    assert marks == [TimelineMark("utterance", 960, 1760, None, "operator")]


def test_a_write_error_stops_the_recording_not_the_call(tmp_path: Path) -> None:
    # A file size limit stands in for a full disk: writes beyond 40 kB fail with EFBIG.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, limits[1]))
    try:
        rec = CallRecording(RecordingSettings(tmp_path), "e@b", started_at=STARTED_AT)
        for i in range(100):  # 2 s of stereo: 64 kB
            rec.on_media(caller_frame(i), None, None)  # must never raise into the media clock
        rec.close()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert rec.failed is not None and "File too large" in rec.failed
    assert rec.duration_ms == 2000  # the timeline went on
    with wave.open(str(rec.path)) as w:
        assert w.getnframes() == 8000  # the first second, synced before the limit


def _aged(path: Path, age_days: float, now_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    os.utime(path, (now_s - age_days * 86400, now_s - age_days * 86400))
    return path


def test_retention_deletes_recordings_older_than_the_limit_only(tmp_path: Path) -> None:
    now = STARTED_AT
    old = _aged(tmp_path / "old.wav", 31, now)
    old_nested = _aged(tmp_path / "2026" / "old.robot.wav", 45, now)
    young = _aged(tmp_path / "young.wav", 29, now)
    other = _aged(tmp_path / "notes.txt", 400, now)
    assert sweep_recordings(tmp_path, retention_days=30, now_s=now) == [old_nested, old]
    assert not old.exists() and not old_nested.exists() and young.exists() and other.exists()
    assert sweep_recordings(tmp_path, retention_days=0, now_s=now + 10 * 86400) == []  # 0 keeps all
    assert sweep_recordings(tmp_path / "missing", retention_days=1, now_s=now) == []


async def test_retention_runs_at_start_and_then_daily(tmp_path: Path) -> None:
    clock = [STARTED_AT]
    sleeps: list[float] = []
    day_passed = asyncio.Event()
    woken = asyncio.Event()

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        woken.set()
        await day_passed.wait()
        day_passed.clear()

    first = _aged(tmp_path / "a.wav", 8, clock[0])
    second = _aged(tmp_path / "b.wav", 6.5, clock[0])
    task = asyncio.create_task(retention_loop(RecordingSettings(tmp_path, retention_days=7),
                                              wall_clock=lambda: clock[0], sleep=sleep))
    try:
        await asyncio.wait_for(woken.wait(), 5)
        assert not first.exists() and second.exists()  # at start
        woken.clear()
        clock[0] += 86400  # a day later b.wav is 7.5 days old
        day_passed.set()
        await asyncio.wait_for(woken.wait(), 5)
        assert not second.exists()
        assert sleeps == [86400.0, 86400.0]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_prompt_audio_not_sent_while_held_is_silence_on_the_robot_channel(tmp_path: Path) -> None:
    rec = CallRecording(RecordingSettings(tmp_path), "h@b", started_at=STARTED_AT)
    session = RtpSession(ssrc=1, sequence_number=1, timestamp=0)
    session.set_remote(RemoteMedia(("127.0.0.1", 40000), 0, 101, 20))
    session.play(tone(10, 700))
    for n in range(10):
        if n == 4:  # the caller puts us on hold (re-INVITE a=sendonly): the prompt runs on unheard
            session.set_remote(RemoteMedia(("127.0.0.1", 40000), 0, 101, 20, send=False))
        sent = session.tick()
        assert bool(sent) == (n < 4)
        played = session.last_played
        rec.on_media(caller_frame(n), *(played if played is not None else (None, None)))
    rec.close()
    _, right = read(rec.path)
    assert right.tolist() == [700] * 4 * 160 + [0] * 6 * 160


def test_a_clock_stall_puts_the_gap_into_the_robots_next_silence(tmp_path: Path) -> None:
    marks: list[TimelineMark] = []
    rec = CallRecording(RecordingSettings(tmp_path), "s@b", started_at=STARTED_AT, on_mark=marks.append)
    session = RtpSession(ssrc=1, sequence_number=1, timestamp=0)
    session.set_remote(RemoteMedia(("127.0.0.1", 40000), 0, 101, 20))
    prompt_id = session.play(tone(10, 900))
    n = 0

    def tick(catch_up: int = 0) -> None:
        nonlocal n
        session.tick()
        played = session.last_played
        rec.on_media(caller_frame(n), *(played if played is not None else (None, None)), True)
        n += 1
        for _ in range(catch_up):  # frames pulled after a stall: no send tick with them
            rec.on_media(caller_frame(n), None, None, False)
            n += 1

    for i in range(14):
        tick(catch_up=2 if i == 3 else 0)  # the stall hits mid-prompt: 2 extra received frames
    rec.close()
    left, right = read(rec.path)
    assert len(left) == len(right) == 16 * 160
    received = [np.frombuffer(caller_frame(i).pcm, "<i2") for i in range(16)]
    assert np.array_equal(left, np.concatenate(received))
    # The prompt is whole and uninterrupted (as the caller heard it); the 40 ms gap follows it.
    assert right.tolist() == [900] * 10 * 160 + [0] * 6 * 160
    assert marks == [TimelineMark("prompt", 0, 200, prompt_id, None)]


def test_a_prompt_resumed_after_a_gap_keeps_its_text(tmp_path: Path) -> None:
    """A streamed prompt pauses between sentences while the next is synthesized: the audio after
    the gap is a second mark of the same prompt, saying what it plays like the first."""
    marks: list[TimelineMark] = []
    rec = CallRecording(RecordingSettings(tmp_path), "g@b", started_at=STARTED_AT, on_mark=marks.append)
    rec.prompt_text(7, "Your balance is twelve dollars. Anything else?")
    audio = tone(1, 500)
    for n, prompt_id in enumerate([7] * 5 + [None] * 3 + [7] * 4 + [None] * 2):
        rec.on_media(caller_frame(n), prompt_id, audio if prompt_id is not None else None)
    rec.close()
    text = "Your balance is twelve dollars. Anything else?"
    assert marks == [TimelineMark("prompt", 0, 100, 7, text), TimelineMark("prompt", 160, 240, 7, text)]
