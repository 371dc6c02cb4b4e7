"""The recognition client's pure parts and the adapter's own synchronous edges.

Pure parts: chunking, ring buffer, rotation planning, backoff, the dedup window, the session
options. Adapter edges that need no server: the bounded ``push_audio``, the drop after
``end_input``, the consumer's event buffer. The state machine itself is in test_stream_core.py.
No sockets, no sleeps, no private members.
"""

from __future__ import annotations

import asyncio
import math
import struct

import pytest

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.client import (
    AudioRing,
    Backoff,
    ClientSettings,
    EventBuffer,
    FinalReceived,
    PartialReceived,
    RecognitionError,
    RecognitionStream,
    RotationLimits,
    SessionWindow,
    StreamEvent,
    UtteranceEnded,
    is_quiet,
    rotation_due,
    session_options,
    split_chunks,
)

pytestmark = pytest.mark.unit


def tone(duration_ms: int, amplitude: int = 8000, freq_hz: int = 440) -> bytes:
    n = duration_ms * 8
    samples = (int(amplitude * math.sin(2 * math.pi * freq_hz * i / 8000)) for i in range(n))
    return struct.pack(f"<{n}h", *samples)


def test_split_chunks_at_most_max_ms_and_lossless() -> None:
    pcm = tone(250)
    pieces = split_chunks(pcm, 100)
    assert [len(p) // 16 for p in pieces] == [100, 100, 50]
    assert b"".join(pieces) == pcm
    assert split_chunks(b"", 100) == []


def test_is_quiet() -> None:
    assert is_quiet(b"\x00\x00" * 800)
    assert is_quiet(tone(100, amplitude=100))
    assert not is_quiet(tone(100, amplitude=4000))
    assert is_quiet(b"")


@pytest.mark.parametrize(
    ("audio_ms", "data_bytes", "at_pause", "expected"),
    [
        (0, 0, True, None),
        (10_000, 0, True, None),  # far from the limit: never rotate
        (12_000, 0, False, None),  # inside the pause margin but the caller speaks: wait
        (12_000, 0, True, "pause"),  # inside the pause margin at a pause: rotate
        (17_000, 0, False, "force"),  # inside the force margin: rotate now
        (17_000, 0, True, "force"),
        (1_000, 19_000 * 16, False, "force"),  # the byte limit counts too
        (1_000, 12_000 * 16, True, "pause"),
    ],
)
def test_rotation_due(audio_ms: int, data_bytes: int, at_pause: bool, expected: str | None) -> None:
    limits = RotationLimits(max_audio_ms=20_000, max_bytes=20_000 * 16, pause_margin_ms=8_000,
                            force_margin_ms=3_000)
    assert rotation_due(limits, audio_ms=audio_ms, data_bytes=data_bytes, at_pause=at_pause) == expected


def test_rotation_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="force_margin_ms < pause_margin_ms"):
        RotationLimits(max_audio_ms=20_000, pause_margin_ms=3_000, force_margin_ms=8_000)


def test_backoff_doubles_caps_and_resets() -> None:
    b = Backoff(initial_s=0.2, max_s=1.0, rng=lambda: 0.5)  # 0.5 = no jitter
    assert [round(b.next_delay_s(), 3) for _ in range(5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
    b.reset()
    assert b.next_delay_s() == pytest.approx(0.2)


def test_backoff_jitter_bounds() -> None:
    low = Backoff(initial_s=1.0, max_s=1.0, rng=lambda: 0.0).next_delay_s()
    high = Backoff(initial_s=1.0, max_s=1.0, rng=lambda: 1.0).next_delay_s()
    assert (low, high) == (pytest.approx(0.8), pytest.approx(1.2))


def test_ring_keeps_audio_since_mark_and_replays_silence_as_duration() -> None:
    ring = AudioRing(max_ms=10_000)
    a, b = tone(500), tone(300, freq_hz=700)
    ring.append(a)
    ring.append_silence(200)
    ring.append(b)
    assert ring.end_ms == 1000 and ring.start_ms == 0
    assert ring.replay() == [a, 200, b]
    ring.trim_before_ms(400)  # mid-segment: keeps the last 100 ms of a
    assert ring.start_ms == 400
    assert ring.replay() == [a[400 * 16:], 200, b]
    ring.trim_before_ms(600)  # mid-silence
    assert ring.replay() == [100, b]
    ring.trim_before_ms(5000)  # past the end: clamps
    assert ring.replay() == [] and ring.start_ms == ring.end_ms == 1000


def test_ring_is_bounded_and_counts_drops() -> None:
    ring = AudioRing(max_ms=1000)
    for _ in range(15):
        ring.append(tone(100))
    assert ring.end_ms == 1500 and ring.start_ms == 500
    assert ring.dropped_ms == 500
    assert sum(len(x) for x in ring.replay() if isinstance(x, bytes)) == 1000 * 16


def test_session_window_maps_to_call_time() -> None:
    w = SessionWindow(base_ms=42_000)
    assert w.to_call_ms(1500) == 43_500
    assert w.delivers()
    w.cut_ms = 43_000
    assert not w.delivers()


# ---- the adapter's synchronous edges ----


def test_push_audio_is_bounded_and_counts_drops() -> None:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", max_pending_audio_ms=100))
    for _ in range(10):
        stream.push_audio(b"\x00\x00" * 160)  # 20 ms each, nobody takes them yet
    assert stream.dropped_audio_ms == 100
    assert stream.pending_audio_ms == 100


def test_audio_after_end_input_is_dropped_and_counted() -> None:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1"))
    stream.push_audio(b"\x00\x00" * 160)
    stream.end_input()
    stream.push_audio(b"\x00\x00" * 160)  # a frame racing the hang-up
    assert stream.dropped_audio_ms == 20
    assert stream.pending_audio_ms == 20


async def drain(buffer: EventBuffer) -> list[StreamEvent]:
    buffer.put(None)
    return [event async for event in buffer]


async def test_partials_are_dropped_not_finals_when_the_consumer_lags() -> None:
    buffer = EventBuffer(max_partials=2)
    for i in range(5):
        buffer.put(PartialReceived(f"p{i}", 0, 100 * i, "s1"))
    buffer.put(FinalReceived("done", None, 0, 500, "s1"))
    buffer.put(UtteranceEnded(900, "s1"))
    events = await drain(buffer)
    assert buffer.dropped_partials == 3
    assert events == [PartialReceived("p0", 0, 0, "s1"), PartialReceived("p1", 0, 100, "s1"),
                      FinalReceived("done", None, 0, 500, "s1"), UtteranceEnded(900, "s1")]


async def test_an_error_ends_the_iteration_after_the_events_before_it() -> None:
    buffer = EventBuffer(max_partials=2)
    buffer.put(UtteranceEnded(900, "s1"))
    buffer.put(RecognitionError("recognizer at x:1 refused the stream: UNAUTHENTICATED: no", retryable=False))
    seen: list[StreamEvent] = []
    with pytest.raises(RecognitionError, match="UNAUTHENTICATED") as exc:
        async for event in buffer:
            seen.append(event)
    assert seen == [UtteranceEnded(900, "s1")] and exc.value.retryable is False


async def test_a_consumer_waiting_for_events_wakes_when_one_comes() -> None:
    buffer = EventBuffer(max_partials=2)
    consumer = asyncio.create_task(anext(aiter(buffer)))
    await asyncio.sleep(0)
    assert not consumer.done()
    buffer.put(UtteranceEnded(1, "s1"))
    assert await asyncio.wait_for(consumer, 1) == UtteranceEnded(1, "s1")


def test_options_are_the_standard_cloud_options() -> None:
    request = session_options(ClientSettings(target="x:1", language="ru-RU"))
    model = request.session_options.recognition_model
    assert model.audio_format.raw_audio.audio_encoding == pb.RawAudio.LINEAR16_PCM
    assert model.audio_format.raw_audio.sample_rate_hertz == 8000
    assert model.audio_format.raw_audio.audio_channel_count == 1
    enabled = pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
    assert model.text_normalization.text_normalization == enabled
    assert list(model.language_restriction.language_code) == ["ru-RU"]
    assert model.language_restriction.restriction_type == pb.LanguageRestrictionOptions.WHITELIST
    assert model.audio_processing_type == pb.RecognitionModelOptions.REAL_TIME
    assert request.session_options.eou_classifier.WhichOneof("Classifier") == "default_classifier"


def test_settings_from_config() -> None:
    from voicebot.config import load_config

    rc = load_config(env={
        "VOICEBOT_STT_SESSION_MAX_AUDIO_S": "20", "VOICEBOT_STT_ROTATE_AT_PAUSE_MARGIN_S": "8",
        "VOICEBOT_STT_ROTATE_FORCE_MARGIN_S": "3", "VOICEBOT_STT_REPLAY_BUFFER_S": "10"}).recognizer
    s = ClientSettings.from_config(rc, target="127.0.0.1:5000", api_key="k")
    assert s.limits == RotationLimits(max_audio_ms=20_000, max_bytes=10_000_000, pause_margin_ms=8_000,
                                      force_margin_ms=3_000)
    assert (s.target, s.api_key, s.replay_buffer_ms) == ("127.0.0.1:5000", "k", 10_000)
