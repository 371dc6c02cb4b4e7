"""The recording in the call record (schema 3): path, format, length and the turn timeline, on
both backends; `voicebot calls show` prints it (text and --json)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebot.records import RecordingMark, RecordsError, SyncCallRecordStore, UnknownCall


def test_recording_and_timeline_round_trip(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    store.call_started("r@h", direction="inbound", from_uri="sip:alice@a", to_uri="sip:bot@b")
    assert store.get_call("r@h").recording is None  # type: ignore[union-attr]
    store.recording_started("r@h", path="/rec/r.wav", format="stereo", sample_rate_hz=8000, at=10.0)
    store.recording_mark("r@h", kind="prompt", start_ms=0, end_ms=2400, prompt_id=1, text="Hello.")
    store.recording_mark("r@h", kind="pause", start_ms=5000, end_ms=9000)
    store.recording_mark("r@h", kind="utterance", start_ms=2600, end_ms=3900, text="operator")
    store.recording_ended("r@h", duration_ms=12000, at=22.0)
    recording = store.get_call("r@h").recording  # type: ignore[union-attr]
    assert recording is not None
    assert (recording.path, recording.robot_path, recording.format, recording.sample_rate_hz) == (
        "/rec/r.wav", None, "stereo", 8000)
    assert (recording.started_at, recording.ended_at, recording.duration_ms, recording.error) == (
        10.0, 22.0, 12000, None)
    assert recording.marks == (  # in timeline order
        RecordingMark("prompt", 0, 2400, 1, "Hello."),
        RecordingMark("utterance", 2600, 3900, None, "operator"),
        RecordingMark("pause", 5000, 9000, None, None),
    )
    store.close()


def test_recording_writes_are_checked(target: str | Path) -> None:
    store = SyncCallRecordStore(target)
    with pytest.raises(UnknownCall):
        store.recording_started("nope", path="/x.wav", format="stereo", sample_rate_hz=8000)
    store.call_started("m@h", direction="outbound", from_uri="sip:bot@b", to_uri="sip:bob@a")
    with pytest.raises(RecordsError, match="format must be 'stereo' or 'mono-pair', not 'flac'"):
        store.recording_started("m@h", path="/x.flac", format="flac", sample_rate_hz=8000)
    with pytest.raises(RecordsError, match="kind must be utterance, prompt or pause, not 'dtmf'"):
        store.recording_mark("m@h", kind="dtmf", start_ms=0, end_ms=1)
    store.recording_started("m@h", path="/r/m.caller.wav", robot_path="/r/m.robot.wav", format="mono-pair",
                            sample_rate_hz=8000)
    store.recording_ended("m@h", duration_ms=400, error="cannot write recording /r/m.caller.wav: No space")
    recording = store.get_call("m@h").recording  # type: ignore[union-attr]
    assert recording is not None and recording.robot_path == "/r/m.robot.wav"
    assert recording.error == "cannot write recording /r/m.caller.wav: No space"
    store.close()


@pytest.mark.unit
def test_calls_show_prints_the_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from voicebot.cli import main

    db = tmp_path / "calls.db"
    store = SyncCallRecordStore(db)
    store.call_started("r@h", direction="inbound", from_uri="sip:alice@a", to_uri="sip:bot@b")
    store.call_started("plain@h", direction="inbound", from_uri="sip:alice@a", to_uri="sip:bot@b")
    store.recording_started("r@h", path="/rec/r.wav", format="stereo", sample_rate_hz=8000)
    store.recording_mark("r@h", kind="prompt", start_ms=0, end_ms=2400, prompt_id=1, text="Hello.")
    store.recording_mark("r@h", kind="utterance", start_ms=2600, end_ms=3900, text="operator")
    store.recording_mark("r@h", kind="pause", start_ms=5000, end_ms=9000)
    store.recording_ended("r@h", duration_ms=12000)
    store.close()

    assert main(["calls", "--records-db", str(db), "show", "r@h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("Recording:  /rec/r.wav   (stereo, 12.00 s)")
    assert lines[at + 1:at + 4] == ["      0.00-2.40s  robot #1   Hello.",
                                    "      2.60-3.90s  caller     operator",
                                    "      5.00-9.00s  paused"]
    assert main(["calls", "--records-db", str(db), "show", "--json", "r@h"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recording"]["path"] == "/rec/r.wav"
    assert data["recording"]["marks"][0] == {"kind": "prompt", "start_ms": 0, "end_ms": 2400, "prompt_id": 1,
                                             "text": "Hello."}
    assert main(["calls", "--records-db", str(db), "show", "plain@h"]) == 0
    assert "Recording:  -" in capsys.readouterr().out
