"""The recognition client's pure parts: chunking, ring buffer, rotation planning, backoff, dedup rule.

No sockets and no sleeps: responses are fed straight into the stream's handlers.
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
    FinalReceived,
    PartialReceived,
    RecognitionStream,
    RotationLimits,
    SessionClosed,
    SessionWindow,
    UtteranceEnded,
    _Session,
    is_quiet,
    rotation_due,
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


# ---- the stream's response handling, fed directly (no server, no sockets) ----


def response(**event: object) -> pb.StreamingResponse:
    return pb.StreamingResponse(session_uuid=pb.SessionUuid(uuid="srv"), channel_tag="0", **event)


def alt(text: str, start: int, end: int) -> pb.AlternativeUpdate:
    return pb.AlternativeUpdate(
        alternatives=[pb.Alternative(text=text, start_time_ms=start, end_time_ms=end)])


def drain(stream: RecognitionStream) -> list[object]:
    events = list(stream._events)
    stream._events.clear()
    return events


def make_stream() -> RecognitionStream:
    return RecognitionStream(ClientSettings(target="127.0.0.1:1"), clock=lambda: 0.0)


def add_session(stream: RecognitionStream, base_ms: int, session_id: str = "s1") -> _Session:
    session = _Session(session_id, SessionWindow(base_ms), asyncio.Queue(), confirmed=True)
    stream._sessions.add(session)
    stream._active = session
    return session


async def test_final_refinement_and_eou_make_one_final_on_the_call_timeline() -> None:
    stream = make_stream()
    stream._ring.append(b"\x00\x00" * 8 * 20_000)  # 20 s of call audio so far
    s = add_session(stream, base_ms=10_000)
    stream._on_response(s, response(partial=pb.AlternativeUpdate()))  # empty partial: no event
    stream._on_response(s, response(partial=alt("four five", 1000, 1800)))
    assert s.in_utterance
    stream._on_response(s, response(final=alt("four five six", 1000, 2500),
                                    audio_cursors=pb.AudioCursors(final_index=1)))
    stream._on_response(s, response(final_refinement=pb.FinalRefinement(
        final_index=1, normalized_text=alt("456", 1000, 2500))))
    stream._on_response(s, response(eou_update=pb.EouUpdate(time_ms=3100)))
    assert drain(stream) == [
        PartialReceived("four five", 11_000, 11_800, "s1"),
        FinalReceived("four five six", "456", 11_000, 12_500, "s1"),
        UtteranceEnded(13_100, "s1"),
    ]
    assert not s.in_utterance
    # The replay ring now starts where the recognizer closed the utterance.
    assert stream._eou_ms == 13_100 and stream._ring.start_ms == 13_100


async def test_partial_after_its_eou_is_stale_and_ignored() -> None:
    stream = make_stream()
    s = add_session(stream, base_ms=0)
    stream._on_response(s, response(final=alt("hello", 100, 900)))
    stream._on_response(s, response(eou_update=pb.EouUpdate(time_ms=900)))
    drain(stream)
    stream._on_response(s, response(partial=alt("hello", 100, 900)))  # a late partial decode
    assert drain(stream) == [] and not s.in_utterance
    stream._on_response(s, response(partial=alt("next", 1500, 2000)))
    assert drain(stream) == [PartialReceived("next", 1500, 2000, "s1")] and s.in_utterance


async def test_retired_session_delivers_nothing_more() -> None:
    """The dedup rule: after the switch only the new session reports; each utterance comes once."""
    stream = make_stream()
    stream._ring.append(b"\x00\x00" * 8 * 30_000)
    old = add_session(stream, base_ms=0, session_id="old")
    stream._on_response(old, response(final=alt("first", 1000, 2000)))
    stream._on_response(old, response(eou_update=pb.EouUpdate(time_ms=2600)))
    stream._retire(old, "rotated")
    new = add_session(stream, base_ms=stream._eou_ms, session_id="new")
    assert old.window.cut_ms == 2600 and new.window.base_ms == 2600
    # The old session flushes the utterance that was in flight when it was half-closed ...
    stream._on_response(old, response(final=alt("second", 3000, 4000)))
    stream._on_response(old, response(eou_update=pb.EouUpdate(time_ms=4600)))
    # ... and the new session, which got it replayed from 2600, recognizes it too.
    stream._on_response(new, response(final=alt("second", 400, 1400)))
    stream._on_response(new, response(eou_update=pb.EouUpdate(time_ms=2000)))
    finals = [e for e in drain(stream) if isinstance(e, FinalReceived)]
    assert finals == [FinalReceived("first", None, 1000, 2000, "old"),
                      FinalReceived("second", None, 3000, 4000, "new")]
    assert old.half_closed and old.requests.get_nowait() is None


async def test_failed_session_drops_finals_without_eou_and_schedules_reconnect() -> None:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", reconnect_initial_s=0.5),
                               clock=lambda: 100.0, rng=lambda: 0.5)
    s = add_session(stream, base_ms=0)
    stream._on_response(s, response(final=alt("cut off", 100, 900)))
    stream._on_session_done(s, ("UNAVAILABLE", "connection reset"))
    events = drain(stream)
    assert events == [SessionClosed("s1", "server: UNAVAILABLE connection reset")]
    assert stream._active is None
    assert stream._reconnect_at == pytest.approx(100.5)
    assert stream._unavailable_since == 100.0


async def test_fatal_status_is_a_non_retryable_error() -> None:
    from voicebot.stt.client import RecognitionError

    stream = make_stream()
    s = add_session(stream, base_ms=0)
    with pytest.raises(RecognitionError, match="UNAUTHENTICATED: unknown API key") as exc:
        stream._on_session_done(s, ("UNAUTHENTICATED", "unknown API key"))
    assert exc.value.retryable is False


async def test_push_audio_is_bounded_and_counts_drops() -> None:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", max_pending_audio_ms=100))
    for _ in range(10):
        stream.push_audio(b"\x00\x00" * 160)  # 20 ms each
    assert stream.dropped_audio_ms == 100
    assert stream._inbox.qsize() == 5


async def test_partials_are_dropped_not_finals_when_the_consumer_lags() -> None:
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", max_pending_partials=2))
    s = add_session(stream, base_ms=0)
    for i in range(5):
        stream._on_response(s, response(partial=alt(f"p{i}", 0, 100 * i)))
    stream._on_response(s, response(final=alt("done", 0, 500)))
    stream._on_response(s, response(eou_update=pb.EouUpdate(time_ms=900)))
    events = drain(stream)
    assert stream.dropped_partials == 3
    assert sum(isinstance(e, PartialReceived) for e in events) == 2
    assert any(isinstance(e, FinalReceived) for e in events)


def test_options_are_the_standard_cloud_options() -> None:
    stream = RecognitionStream(ClientSettings(target="x:1", language="ru-RU"))
    request = stream._options()
    assert isinstance(request, pb.StreamingRequest)
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


async def test_audio_after_end_input_is_dropped_and_counted() -> None:
    stream = make_stream()
    stream.push_audio(b"\x00\x00" * 160)
    stream.end_input()
    stream.push_audio(b"\x00\x00" * 160)  # a frame racing the hang-up
    assert stream.dropped_audio_ms == 20
    assert [kind for kind, _a, _b in (stream._inbox.get_nowait() for _ in range(2))] == ["audio", "end"]


async def test_burst_is_released_at_real_time_pace_with_a_small_lead() -> None:
    now = [0.0]
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", pacing_lead_ms=200), clock=lambda: now[0])
    s = add_session(stream, base_ms=0)
    for _ in range(50):  # 1 s pushed at once
        stream._held.append(b"\x00\x00" * 160)
    stream._release_held(0.0)
    assert stream.call_ms == 200  # only the lead goes out before any time has passed
    now[0] = 0.5
    stream._release_held(now[0])
    assert stream.call_ms == 700
    assert 0.0 < stream._next_timeout() <= 0.03  # the owner wakes for the next 20 ms frame
    now[0] = 2.0
    stream._release_held(now[0])
    assert stream.call_ms == 1000 and not stream._held
    sent = [s.requests.get_nowait() for _ in range(s.requests.qsize())]
    assert sum(len(r.chunk.data) for r in sent) == 1000 * 16  # type: ignore[attr-defined]


async def test_silence_fill_keeps_the_timeline_with_the_wall_clock() -> None:
    now = [0.0]
    stream = RecognitionStream(ClientSettings(target="127.0.0.1:1", silence_fill_after_ms=300),
                               clock=lambda: now[0])
    s = add_session(stream, base_ms=0)
    stream._accept_audio(b"\x00\x00" * 8 * 100)  # 100 ms of audio at t = 0
    now[0] = 0.2
    stream._on_tick()
    assert s.requests.qsize() == 1  # not yet: under silence_fill_after_ms
    now[0] = 1.0
    stream._on_tick()  # a gap (hold): silence up to the wall clock
    assert stream.call_ms == 1000
    requests = [s.requests.get_nowait() for _ in range(s.requests.qsize())]
    assert requests[-1].silence_chunk.duration_ms == 900  # type: ignore[attr-defined]
    assert s.audio_ms == 1000
