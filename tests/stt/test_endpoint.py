"""WebRtcEndpointer: the state machine with a scripted classifier, then the real VAD on speech."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicebot.errors import ConfigError
from voicebot.stt.endpoint import DEFAULT_MAX_PAUSE_MS, WebRtcEndpointer
from voicebot.stt.engine import (
    EndpointEvent,
    PauseStarted,
    SpeechResumed,
    SpeechStarted,
    UtteranceEnded,
)
from voicebot.testing.speech import real_speech_set, silence, telephone_speech, to_telephone_band

pytestmark = pytest.mark.unit

RATE_HZ = 8000
FRAME_MS = 20
FRAME_BYTES = RATE_HZ * FRAME_MS // 1000 * 2


def scripted(**kwargs: int) -> WebRtcEndpointer:
    """An endpointer whose 'VAD' calls a frame speech when its first byte is non-zero."""
    params = {"max_pause_ms": 200, "min_speech_ms": 60, "hangover_ms": 40, "frame_ms": FRAME_MS} | kwargs
    return WebRtcEndpointer(RATE_HZ, classifier=lambda frame, rate: frame[0] != 0, **params)


def frames(script: str) -> bytes:
    """'S' is a 20 ms speech frame, '_' a 20 ms non-speech frame."""
    return b"".join((b"\x01" if c == "S" else b"\x00") * FRAME_BYTES for c in script)


def run(ep: WebRtcEndpointer, script: str) -> list[EndpointEvent]:
    return ep.feed(frames(script))


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # silence only: nothing
        ("__________", []),
        # a 40 ms blip is shorter than min_speech_ms=60
        ("__SS______________", []),
        # speech from 40 ms; pause after 40 ms hangover; ended after 200 ms pause
        (
            "__SSSSS" + "_" * 12,
            [SpeechStarted(40), PauseStarted(40, 140), UtteranceEnded(40, 140)],
        ),
        # a 20 ms gap inside speech is below the hangover: no pause at all
        ("SSS_SSS" + "_" * 3, [SpeechStarted(0), PauseStarted(0, 140)]),
        # speech resumes within the pause
        (
            "SSS____SSS" + "_" * 11,
            [SpeechStarted(0), PauseStarted(0, 60), SpeechResumed(140), PauseStarted(0, 200),
             UtteranceEnded(0, 200)],
        ),
        # a blip inside the pause does not resume it, and the pause keeps counting through it
        (
            "SSS____SS" + "_" * 6,
            [SpeechStarted(0), PauseStarted(0, 60), UtteranceEnded(0, 60)],
        ),
        # two utterances
        (
            "SSS" + "_" * 10 + "SSSS" + "_" * 10,
            [SpeechStarted(0), PauseStarted(0, 60), UtteranceEnded(0, 60),
             SpeechStarted(260), PauseStarted(260, 340), UtteranceEnded(260, 340)],
        ),
    ],
)
def test_scripted_frames(script: str, expected: list[EndpointEvent]) -> None:
    assert run(scripted(), script) == expected


def test_arbitrary_chunking_gives_same_events() -> None:
    pcm = frames("__SSSSS____SSS" + "_" * 12)
    whole = scripted().feed(pcm)
    for chunk in (2, 96, 320, 322, 1000):
        ep = scripted()
        got: list[EndpointEvent] = []
        for i in range(0, len(pcm), chunk):
            got += ep.feed(pcm[i : i + chunk])
        assert got == whole, chunk
    assert whole[0] == SpeechStarted(40)


def test_trailing_nonspeech_counts_only_while_speaking() -> None:
    ep = scripted()
    assert ep.trailing_nonspeech_ms == 0
    run(ep, "SSSS_")
    assert ep.trailing_nonspeech_ms == 20
    run(ep, "S")
    assert ep.trailing_nonspeech_ms == 0
    run(ep, "__")  # the 40 ms hangover: paused, no longer "may be starting"
    assert ep.trailing_nonspeech_ms == 0


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="even number of bytes"):
        scripted().feed(b"\x00\x00\x00")


def test_feed_silence_ends_the_utterance_and_advances_the_timeline() -> None:
    ep = scripted()
    assert run(ep, "SSSS") == [SpeechStarted(0)]
    assert ep.feed_silence(1000) == [PauseStarted(0, 80), UtteranceEnded(0, 80)]
    assert ep.now_ms == 1080
    # A long silence in idle is skipped, not looped; the timeline is still exact.
    ep.feed_silence(3_600_000)
    assert ep.now_ms == 1080 + 3_600_000
    assert run(ep, "SSS") == [SpeechStarted(1080 + 3_600_000)]


def test_feed_silence_completes_a_partial_frame() -> None:
    ep = scripted()
    ep.feed(frames("SSSS") + b"\x01" * 100)  # 100 bytes (50 samples) of a speech frame pending
    assert ep.now_ms == 80
    events = ep.feed_silence(300)
    # The pending frame is topped up with zeros and judged (speech: first byte non-zero).
    assert events == [PauseStarted(0, 100), UtteranceEnded(0, 100)]
    # 80 ms + 50 samples + 300 ms fed = 386.25 ms; 19 whole frames (380 ms) are classified and
    # the last 50 zero samples wait in the remainder.
    assert ep.now_ms == 380
    assert ep.flush() == [] and ep.now_ms == 386


def test_flush_closes_an_open_utterance() -> None:
    ep = scripted()
    run(ep, "SSSSS")
    assert ep.flush() == [UtteranceEnded(0, 100)]
    assert ep.flush() == []
    ep2 = scripted()
    run(ep2, "SSSS___")
    assert ep2.flush() == [UtteranceEnded(0, 80)]


def test_flush_without_speech_or_with_only_a_blip_is_empty() -> None:
    ep = scripted()
    run(ep, "__S")
    assert ep.flush() == []


def test_set_max_pause_ms_applies_to_the_running_pause() -> None:
    ep = scripted(max_pause_ms=10_000)
    assert run(ep, "SSS" + "_" * 10) == [SpeechStarted(0), PauseStarted(0, 60)]
    ep.set_max_pause_ms(100)
    assert run(ep, "_") == [UtteranceEnded(0, 60)]
    with pytest.raises(ConfigError, match="max_pause_ms"):
        ep.set_max_pause_ms(0)


def test_long_speech_is_cut_at_max_utterance_ms() -> None:
    ep = scripted(max_utterance_ms=200)
    events = run(ep, "S" * 16)
    assert events == [SpeechStarted(0), UtteranceEnded(0, 200), SpeechStarted(200)]
    # Reaching the limit inside the hangover ends the utterance at its last speech, not at the limit.
    ep = scripted(max_utterance_ms=200, hangover_ms=100)
    assert run(ep, "S" * 9 + "__") == [SpeechStarted(0), UtteranceEnded(0, 180)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate_hz": 11025}, "sample_rate_hz must be one of"),
        ({"frame_ms": 25}, "frame_ms must be one of"),
        ({"aggressiveness": 4}, "aggressiveness must be 0..3"),
        ({"max_pause_ms": -1}, "max_pause_ms must be > 0"),
        ({"min_speech_ms": -1}, "min_speech_ms must be >= 0"),
        ({"energy_gate_db": -3}, "energy_gate_db must be >= 0"),
    ],
)
def test_bad_configuration_is_a_config_error(kwargs: dict[str, int], message: str) -> None:
    args: dict[str, int] = {"sample_rate_hz": 8000} | kwargs
    with pytest.raises(ConfigError, match=message):
        WebRtcEndpointer(**args)


# ---- the energy gate ----


def level_frames(script: str) -> bytes:
    """'L' a loud 20 ms frame (about -10 dBFS), 'q' a quiet one (40 dB lower), '_' silence."""
    level = {"L": 10000, "q": 100, "_": 0}
    return b"".join(level[c].to_bytes(2, "little", signed=True) * (FRAME_BYTES // 2) for c in script)


def gated(gate_db: float) -> WebRtcEndpointer:
    """A 'VAD' that, like the real one on a fading word, calls every non-silent frame speech."""
    return WebRtcEndpointer(
        RATE_HZ, max_pause_ms=200, min_speech_ms=60, hangover_ms=40, frame_ms=FRAME_MS,
        classifier=lambda frame, rate: any(frame), energy_gate_db=gate_db,
    )


def test_energy_gate_ends_the_utterance_where_the_energy_dies_not_where_the_vad_lets_go() -> None:
    script = "__" + "L" * 10 + "q" * 10 + "_" * 15  # loud 40..240 ms, a quiet tail to 440 ms
    ungated = gated(0).feed(level_frames(script))
    assert ungated[-1] == UtteranceEnded(40, 440)
    ep = gated(30)
    pcm = level_frames(script)
    # The pause, its speculative final (after the 40 ms hangover) and the 200 ms max pause all count
    # from the end of the loud part (240 ms): the utterance ends at 440 ms, not 640 ms.
    assert ep.feed(pcm[: 14 * FRAME_BYTES]) == [SpeechStarted(40), PauseStarted(40, 240)]
    assert ep.feed(pcm[14 * FRAME_BYTES : 21 * FRAME_BYTES]) == []
    assert ep.feed(pcm[21 * FRAME_BYTES : 22 * FRAME_BYTES]) == [UtteranceEnded(40, 240)]


def test_energy_gate_keeps_quiet_speech_that_starts_an_utterance_and_forgets_old_peaks() -> None:
    # A quiet utterance on its own is found (the gate works only inside an utterance) ...
    assert gated(30).feed(level_frames("q" * 10 + "_" * 15))[0] == SpeechStarted(0)
    # ... and a quiet one 10 s after a loud one keeps its own words: the old peak has decayed.
    ep = gated(30)
    events = ep.feed(level_frames("L" * 10 + "_" * 500 + "q" * 10 + "_" * 15))
    assert events[-1] == UtteranceEnded(10_200, 10_400), events


# ---- the real WebRTC VAD ----


@pytest.mark.parametrize("rate_hz", [8000, 16000, 48000])
def test_real_vad_finds_the_synthetic_sentence(rate_hz: int) -> None:
    import audioop

    speech = telephone_speech("please connect me to the billing department")
    pcm = silence(500) + speech + silence(1500)
    if rate_hz != 8000:
        pcm, _ = audioop.ratecv(pcm, 2, 1, 8000, rate_hz, None)
    # Where the sound really is: espeak pads its output with silence at both ends.
    loud_10ms = [
        i * 10 for i in range(len(speech) // 160) if audioop.rms(speech[i * 160 : (i + 1) * 160], 2) > 300
    ]
    sound_start_ms, sound_end_ms = 500 + loud_10ms[0], 500 + loud_10ms[-1] + 10
    ep = WebRtcEndpointer(rate_hz)
    events = ep.feed(pcm) + ep.flush()
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, UtteranceEnded)]
    assert len(starts) == 1 and len(ends) == 1, events
    assert abs(starts[0].start_ms - sound_start_ms) <= 150, (starts, sound_start_ms)
    assert abs(ends[0].end_ms - sound_end_ms) <= 200, (ends, sound_end_ms)
    # The utterance ended from the pause, not from flush(): the pause came before the audio ran out.
    assert events[-1] == ends[0] and ends[0].end_ms + DEFAULT_MAX_PAUSE_MS <= len(pcm) // (rate_hz // 500)


def test_real_vad_splits_two_sentences_on_a_long_pause_only() -> None:
    first = telephone_speech("my account number is four five six")
    second = telephone_speech("i would like to pay my bill")
    long_gap = silence(300) + first + silence(1200) + second + silence(1200)
    ep = WebRtcEndpointer(8000)
    events = ep.feed(long_gap) + ep.flush()
    assert sum(isinstance(e, UtteranceEnded) for e in events) == 2, events
    # espeak ends a sentence with ~0.5 s of fading sound and padding; the energy gate counts all of
    # it as pause, so back to back the two sentences are one pause of about 0.5 s apart.
    short_gap = silence(300) + first + second + silence(1200)
    ep = WebRtcEndpointer(8000)
    events = ep.feed(short_gap) + ep.flush()
    assert sum(isinstance(e, UtteranceEnded) for e in events) == 1, events


def test_real_human_recording_is_one_utterance() -> None:
    item = next(u for u in real_speech_set() if "0870" in u.name)
    pcm = to_telephone_band(item.wav_path) + silence(1000)
    ep = WebRtcEndpointer(8000)
    events = ep.feed(pcm) + ep.flush()
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1, events
    assert sum(isinstance(e, UtteranceEnded) for e in events) == 1, events


def test_noise_floor_is_not_speech() -> None:
    import random

    rng = random.Random(7)
    samples = [rng.randint(-40, 40) for _ in range(8000 * 3)]  # about -60 dBFS hiss
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    ep = WebRtcEndpointer(8000)
    assert ep.feed(pcm) + ep.flush() == []


# ---- properties over random frame scripts ----


@settings(max_examples=200, deadline=None)
@given(
    script=st.text(alphabet="S_", max_size=120),
    chunk_bytes=st.integers(min_value=1, max_value=700).map(lambda n: 2 * n),
    max_pause_ms=st.sampled_from([20, 60, 200, 600]),
)
def test_event_grammar_and_chunking_invariance(script: str, chunk_bytes: int, max_pause_ms: int) -> None:
    pcm = frames(script)
    ep = scripted(max_pause_ms=max_pause_ms, max_utterance_ms=1000)
    whole = ep.feed(pcm) + ep.flush()
    ep2 = scripted(max_pause_ms=max_pause_ms, max_utterance_ms=1000)
    pieces: list[EndpointEvent] = []
    for i in range(0, len(pcm), chunk_bytes):
        pieces += ep2.feed(pcm[i : i + chunk_bytes])
    assert pieces + ep2.flush() == whole

    # Grammar: Started (Paused (Resumed Paused)* )? Ended, repeated; times never go back.
    state = "idle"
    last_ms = 0
    for event in whole:
        if isinstance(event, SpeechStarted):
            assert state == "idle"
            state, start, at = "speaking", event.start_ms, event.start_ms
        elif isinstance(event, PauseStarted):
            assert state == "speaking" and event.utterance_start_ms == start
            state, at = "paused", event.pause_start_ms
        elif isinstance(event, SpeechResumed):
            assert state == "paused"
            state, at = "speaking", event.at_ms
        else:
            assert isinstance(event, UtteranceEnded) and state in ("speaking", "paused")
            assert event.start_ms == start < event.end_ms <= start + 1000
            state, at = "idle", event.end_ms
        assert at >= last_ms
        last_ms = at
    assert state == "idle"  # flush closes whatever is open
    assert last_ms <= len(script) * FRAME_MS
