"""Answering-machine detection: the beep detector on tones and noise, the cadence rules on shaped
frames (a fake clock is the audio itself), voicemail phrases, and real telephone-band speech."""

from __future__ import annotations

import math
import random
import struct

import pytest

from voicebot.amd import (
    AmdDecided,
    AmdSettings,
    AnsweringMachineDetector,
    BeepDetector,
    machine_phrase,
)
from voicebot.media.frames import BYTES_PER_FRAME, SAMPLES_PER_FRAME

RATE = 8000


def tone(freq_hz: float, ms: int, *, amplitude: float = 8000.0, start: int = 0) -> bytes:
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(amplitude * math.sin(2 * math.pi * freq_hz * (start + i) / RATE))
                                  for i in range(n)))


def noise(ms: int, *, amplitude: float = 6000.0, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    n = RATE * ms // 1000
    return struct.pack(f"<{n}h", *(int(rng.gauss(0, amplitude / 3)) for _ in range(n)))


def silence(ms: int) -> bytes:
    return bytes(RATE * ms // 1000 * 2)


def frames(pcm: bytes) -> list[bytes]:
    usable = len(pcm) - len(pcm) % BYTES_PER_FRAME
    return [pcm[i:i + BYTES_PER_FRAME] for i in range(0, usable, BYTES_PER_FRAME)]


def run(detector: AnsweringMachineDetector, pcm: bytes) -> list[object]:
    events: list[object] = []
    for frame in frames(pcm):
        events += detector.feed(frame)
    return events


def speechlike(words: int, *, word_ms: int = 300, gap_ms: int = 120, seed: int = 3) -> bytes:
    """Bursts of broadband sound (not tonal) with short gaps: the cadence of words."""
    out = b""
    for w in range(words):
        out += noise(word_ms, seed=seed + w) + silence(gap_ms)
    return out


# ---- beep ----

@pytest.mark.unit
@pytest.mark.parametrize("freq_hz", [440.0, 1000.0, 1400.0, 2000.0])
def test_a_steady_tone_is_one_beep_at_its_frequency(freq_hz: float) -> None:
    detector = BeepDetector()
    found = [e for f in frames(silence(200) + tone(freq_hz, 400) + silence(200)) if (e := detector.feed(f))]
    assert len(found) == 1
    beep = found[0]
    assert abs(beep.frequency_hz - freq_hz) <= 25
    assert 180 <= beep.start_ms <= 220 and 580 <= beep.end_ms <= 620


@pytest.mark.unit
def test_noise_speech_and_short_blips_are_not_beeps() -> None:
    detector = BeepDetector()
    pcm = noise(1000) + speechlike(4) + tone(1000, 80) + silence(200) + tone(700, 100, amplitude=20)
    assert [e for f in frames(pcm) if (e := detector.feed(f))] == []


@pytest.mark.unit
def test_a_quiet_tone_under_the_level_floor_is_ignored_and_a_tone_in_line_noise_is_found() -> None:
    assert [e for f in frames(tone(1000, 400, amplitude=100)) if (e := BeepDetector().feed(f))] == []
    detector = BeepDetector()
    mixed = b""
    t, n = tone(1000, 400), noise(400, amplitude=800)
    for i in range(0, len(t), 2):
        a = struct.unpack_from("<h", t, i)[0] + struct.unpack_from("<h", n, i)[0]
        mixed += struct.pack("<h", max(-32768, min(32767, a)))
    assert len([e for f in frames(mixed + silence(100)) if (e := detector.feed(f))]) == 1


# ---- cadence ----

@pytest.mark.unit
def test_short_hello_then_silence_is_human_within_two_seconds() -> None:
    detector = AnsweringMachineDetector()
    events = run(detector, silence(300) + speechlike(1, word_ms=450) + silence(2000))
    decided = [e for e in events if isinstance(e, AmdDecided)]
    assert len(decided) == 1
    assert (decided[0].result, decided[0].reason) == ("human", "short-greeting")
    assert decided[0].decided_ms <= 2000
    assert decided[0].evidence["words"] == 1


@pytest.mark.unit
def test_a_greeting_that_goes_on_is_machine() -> None:
    detector = AnsweringMachineDetector()
    events = run(detector, speechlike(12, word_ms=260, gap_ms=100))
    decided = [e for e in events if isinstance(e, AmdDecided)]
    assert [(d.result, d.reason) for d in decided] in (
        [("machine", "long-greeting")], [("machine", "max-words")])


@pytest.mark.unit
def test_nothing_said_is_unknown_at_the_initial_silence_limit() -> None:
    detector = AnsweringMachineDetector(AmdSettings(initial_silence_ms=2000))
    events = run(detector, silence(3000))
    assert [(e.result, e.reason, e.decided_ms) for e in events if isinstance(e, AmdDecided)] == [
        ("unknown", "initial-silence", 2000)]


@pytest.mark.unit
def test_a_beep_decides_machine_and_is_still_reported_after_a_decision() -> None:
    detector = AnsweringMachineDetector()
    events = run(detector, speechlike(2) + silence(300) + tone(1000, 500) + silence(300))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["BeepDetected", "AmdDecided"]
    assert detector.decision is not None and detector.decision.reason == "beep"
    human = AnsweringMachineDetector()
    run(human, speechlike(1) + silence(1500))
    assert human.decision is not None and human.decision.result == "human"
    later = run(human, tone(1000, 400) + silence(100))
    assert [type(e).__name__ for e in later] == ["BeepDetected"]  # wait_for_beep keeps working


@pytest.mark.unit
def test_words_decide_machine_before_the_cadence_does() -> None:
    detector = AnsweringMachineDetector()
    run(detector, speechlike(2))
    events = detector.transcript("Hi, you've reached Anna", final=False)
    assert [(e.result, e.reason, e.evidence["phrase"]) for e in events if isinstance(e, AmdDecided)] == [
        ("machine", "phrase", "you've reached")]
    assert detector.transcript("please leave a message", final=True) == []  # decided once


@pytest.mark.unit
@pytest.mark.parametrize(("text", "phrase"), [
    ("Please leave a message after the tone.", "please leave"),
    ("Leave a message after the beep", "leave a message"),
    ("I'm NOT available right now", "not available"),
    ("You’ve reached the voicemail of", "you've reached"),
    ("Hello? Who is this?", None),
    ("Yes, speaking.", None),
])
def test_machine_phrases(text: str, phrase: str | None) -> None:
    assert machine_phrase(text) == phrase


@pytest.mark.unit
def test_bad_frames_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="AMD frames are 320 bytes"):
        AnsweringMachineDetector().feed(b"\0" * 100)
    with pytest.raises(ValueError, match="max_words must be positive"):
        AmdSettings(max_words=0)
    assert SAMPLES_PER_FRAME == 160


# ---- real speech through the phone line ----

@pytest.mark.adapter
@pytest.mark.parametrize(("text", "expected"), [
    ("Hello?", "human"),
    ("Yes, hello.", "human"),
    ("Hi, you have reached the Johnson family. We cannot take your call right now. Please leave your "
     "name and number and we will call you back.", "machine"),
])
def test_espeak_greetings_by_cadence_alone(text: str, expected: str) -> None:
    from voicebot.testing.speech import telephone_speech

    detector = AnsweringMachineDetector()
    pcm = telephone_speech(text) + silence(2500)
    run(detector, pcm)
    assert detector.decision is not None
    assert detector.decision.result == expected, detector.decision
