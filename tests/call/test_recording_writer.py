"""The streaming WAV writer: the header it writes, sizes rewritten each second, a file that a
SIGKILLed writer leaves behind plays up to its last second, and interleaving."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from voicebot.media.recorder import (
    HEADER_BYTES,
    RecordingError,
    StreamingWavWriter,
    interleave,
    wav_header,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_header_is_the_canonical_44_byte_pcm_header() -> None:
    header = wav_header(channels=2, sample_rate_hz=8000, data_bytes=3200)
    assert len(header) == HEADER_BYTES == 44
    riff, riff_size, wave_id, fmt, fmt_size, tag, channels, rate, byte_rate, align, bits, data, size = (
        struct.unpack("<4sI4s4sIHHIIHH4sI", header))
    assert (riff, wave_id, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert riff_size == 36 + 3200 and size == 3200
    assert (fmt_size, tag, channels, rate, byte_rate, align, bits) == (16, 1, 2, 8000, 32000, 4, 16)


def test_sizes_follow_the_data_once_a_second_and_exactly_at_close(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    writer = StreamingWavWriter(path, channels=2)
    frame = bytes(640)  # 20 ms stereo
    for _ in range(49):
        writer.write(frame)
    assert struct.unpack("<I", path.read_bytes()[40:44])[0] == 0  # not a second yet
    writer.write(frame)  # the 50th frame: one second, synced
    on_disk = path.read_bytes()
    assert struct.unpack("<I", on_disk[40:44])[0] == 32000
    assert struct.unpack("<I", on_disk[4:8])[0] == 36 + 32000
    assert len(on_disk) == HEADER_BYTES + 32000
    writer.write(frame * 3)
    writer.close()
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 8000, 8480)
    assert writer.duration_ms == 1060


def test_partial_sample_frames_are_refused_with_the_reason(tmp_path: Path) -> None:
    writer = StreamingWavWriter(tmp_path / "a.wav", channels=2)
    with pytest.raises(RecordingError,
                       match=r"6 bytes is not a whole number of 2-channel 16-bit sample frames"):
        writer.write(bytes(6))
    writer.close()
    with pytest.raises(RecordingError, match="is closed"):
        writer.write(bytes(4))


def test_an_unwritable_directory_is_a_recording_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"cannot write recording .*file/sub/a\.wav"):
        StreamingWavWriter(blocker / "sub" / "a.wav", channels=1)


def test_interleave_puts_left_then_right() -> None:
    left = np.array([1, 2, 3], dtype="<i2").tobytes()
    right = np.array([-1, -2, -3], dtype="<i2").tobytes()
    assert np.frombuffer(interleave(left, right), dtype="<i2").tolist() == [1, -1, 2, -2, 3, -3]
    with pytest.raises(ValueError, match="left 6 bytes, right 4 bytes"):
        interleave(left, right[:4])


WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from voicebot.media.recorder import StreamingWavWriter
w = StreamingWavWriter(Path(sys.argv[1]), channels=2)
n = 0
while True:
    left = (np.arange(n * 160, n * 160 + 160) % 1000).astype("<i2")
    frame = np.empty(320, dtype="<i2"); frame[0::2] = left; frame[1::2] = -left
    w.write(frame.tobytes())
    n += 1
    if n == 125:  # 2.5 s written: two syncs on disk, half a second only in the buffer
        print("ready", flush=True)
    time.sleep(0.0005 if n < 125 else 0.02)
"""


@pytest.mark.adapter
def test_a_sigkilled_writer_leaves_a_playable_file_up_to_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "crash.wav"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
    assert proc.returncode == -signal.SIGKILL
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate()) == (2, 8000)
        frames = w.getnframes()
        pcm = np.frombuffer(w.readframes(frames), dtype="<i2")
    # Two or three whole seconds (the third if the writer reached it before the kill), never more
    # than the file holds, and the samples are the ones written, in order, on both channels.
    assert frames in (16000, 24000)
    assert path.stat().st_size >= HEADER_BYTES + frames * 4
    expected = (np.arange(frames) % 1000).astype("<i2")
    assert np.array_equal(pcm[0::2], expected)
    assert np.array_equal(pcm[1::2], -expected)
