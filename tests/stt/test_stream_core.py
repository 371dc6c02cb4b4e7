"""The sans-IO recognition stream core, pumped by hand: no event loop, no sockets, no sleeps.

:class:`Pump` plays the adapter: a fake clock, a transport that takes every queued request (or
stalls), and the recognizer's responses written out by the test. Only the core's public surface is
used: inputs, ``get_timer``/``handle_timer``, ``next_request`` and the outputs.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections import defaultdict

import pytest

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.hints import HINTS_METADATA_KEY, menu_hints
from voicebot.stt.stream import (
    CancelSession,
    ClientSettings,
    FinalReceived,
    HalfClose,
    OpenSession,
    Output,
    PartialReceived,
    Request,
    RotationLimits,
    SendAudio,
    SendSilence,
    SessionClosed,
    SessionOpened,
    StreamCore,
    StreamFailed,
    Transmit,
    UtteranceEnded,
)

pytestmark = pytest.mark.unit

FRAME_MS = 20
T0 = 100.0


def tone(duration_ms: int, amplitude: int = 8000, freq_hz: int = 440) -> bytes:
    n = duration_ms * 8
    samples = (int(amplitude * math.sin(2 * math.pi * freq_hz * i / 8000)) for i in range(n))
    return struct.pack(f"<{n}h", *samples)


def quiet(duration_ms: int) -> bytes:
    return b"\x00\x00" * 8 * duration_ms


def response(**event: object) -> pb.StreamingResponse:
    return pb.StreamingResponse(session_uuid=pb.SessionUuid(uuid="srv"), channel_tag="0", **event)


def alt(text: str, start: int, end: int) -> pb.AlternativeUpdate:
    return pb.AlternativeUpdate(
        alternatives=[pb.Alternative(text=text, start_time_ms=start, end_time_ms=end)])


def final(text: str, start: int, end: int, index: int = 0) -> pb.StreamingResponse:
    return response(final=alt(text, start, end), audio_cursors=pb.AudioCursors(final_index=index))


def eou(time_ms: int) -> pb.StreamingResponse:
    return response(eou_update=pb.EouUpdate(time_ms=time_ms))


def partial(text: str, start: int, end: int) -> pb.StreamingResponse:
    return response(partial=alt(text, start, end))


SMALL_LIMITS = RotationLimits(max_audio_ms=20_000, max_bytes=10_000_000, pause_margin_ms=8_000,
                              force_margin_ms=3_000)


class Pump:
    """Drives a :class:`StreamCore` as the adapter would, with a clock the test moves."""

    def __init__(self, **settings: object) -> None:
        self.settings = ClientSettings(target="127.0.0.1:1", **settings)  # type: ignore[arg-type]
        ids = (f"s{i}" for i in itertools.count(1))
        self.core = StreamCore(self.settings, rng=lambda: 0.5, new_session_id=lambda: next(ids))
        self.now = T0
        self.outputs: list[Output] = []
        self.opened: dict[str, OpenSession] = {}
        self.sent: dict[str, list[Request]] = defaultdict(list)
        self.stalled = False  # the transport takes nothing (gRPC or the loop is behind)
        self.event_cursor = 0

    # ---- inputs ----

    def apply(self, outputs: list[Output]) -> list[Output]:
        self.outputs.extend(outputs)
        for output in outputs:
            if isinstance(output, OpenSession):
                self.opened[output.session_id] = output
        if not self.stalled:
            self.take_all()
        return outputs

    def start(self) -> list[Output]:
        return self.apply(self.core.start(self.now))

    def push(self, pcm16: bytes, *, is_silence: bool | None = None) -> None:
        self.apply(self.core.push_audio(pcm16, self.now, is_silence=is_silence))

    def speak(self, pcm16: bytes, *, is_silence: bool | None = None) -> None:
        """Push 20 ms frames at real time, running timers due in between (a live call)."""
        step = FRAME_MS * 16
        for i in range(0, len(pcm16), step):
            self.advance(FRAME_MS / 1000)
            self.push(pcm16[i:i + step], is_silence=is_silence)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way."""
        target = self.now + seconds
        for _ in range(100_000):
            timer = self.core.get_timer()
            if timer is None or timer > target:
                break
            before = (timer, len(self.outputs))
            self.now = max(self.now, timer)
            self.apply(self.core.handle_timer(self.now))
            assert (self.core.get_timer(), len(self.outputs)) != before, "a timer that never fires"
        self.now = target
        self.apply(self.core.handle_timer(self.now))

    def respond(self, session_id: str, *responses: pb.StreamingResponse) -> list[Output]:
        out: list[Output] = []
        for r in responses:
            out += self.apply(self.core.receive_response(session_id, r, self.now))
        return out

    def end(self, session_id: str, code: str = "OK", message: str = "") -> list[Output]:
        return self.apply(self.core.session_ended(session_id, code, message, self.now))

    def take_all(self) -> None:
        for session_id in self.opened:
            while (request := self.core.next_request(session_id)) is not None:
                self.sent[session_id].append(request)

    # ---- what came out ----

    def events(self) -> list[Output]:
        """Events since the last call (commands left out)."""
        new = self.outputs[self.event_cursor:]
        self.event_cursor = len(self.outputs)
        return [o for o in new if not isinstance(o, OpenSession | Transmit | CancelSession)]

    def sessions(self) -> list[OpenSession]:
        return list(self.opened.values())

    def audio_sent(self, session_id: str) -> bytes:
        return b"".join(r.pcm16 for r in self.sent[session_id] if isinstance(r, SendAudio))

    def timeline_sent_ms(self, session_id: str) -> int:
        return sum(len(r.pcm16) // 16 if isinstance(r, SendAudio) else r.duration_ms
                   for r in self.sent[session_id] if isinstance(r, SendAudio | SendSilence))


def started(**settings: object) -> Pump:
    pump = Pump(**settings)
    pump.start()
    return pump


# ---- opening, sending, pacing ----


def test_start_opens_one_session_with_the_standard_options_and_its_request_id() -> None:
    pump = Pump(language="ru-RU")
    outputs = pump.start()
    assert len(outputs) == 1 and isinstance(outputs[0], OpenSession)
    opened = outputs[0]
    assert (opened.session_id, opened.reason, opened.base_ms, opened.replay_ms) == ("s1", "start", 0, 0)
    assert opened.metadata == (("x-client-request-id", "s1"),)
    model = opened.options.session_options.recognition_model
    assert list(model.language_restriction.language_code) == ["ru-RU"]
    assert pump.events() == []  # SessionOpened waits for the server's first answer
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    assert pump.events() == [SessionOpened("s1", 0, "start")]


def test_audio_goes_out_in_chunks_of_at_most_chunk_max_ms_and_lossless() -> None:
    pump = started(chunk_max_ms=100, backlog_chunk_max_ms=100)
    speech = tone(250)
    pump.push(speech)  # one 250 ms frame
    assert [len(r.pcm16) // 16 for r in pump.sent["s1"] if isinstance(r, SendAudio)] == [100, 100, 50]
    assert pump.audio_sent("s1") == speech and pump.core.call_ms == 250


def test_pieces_queued_before_the_transport_takes_any_join_up_to_the_backlog_limit() -> None:
    pump = started(chunk_max_ms=100)  # backlog_chunk_max_ms 1000 by default
    pump.push(tone(250))
    assert [len(r.pcm16) // 16 for r in pump.sent["s1"] if isinstance(r, SendAudio)] == [250]


def test_burst_is_released_at_real_time_pace_with_a_small_lead() -> None:
    pump = started(pacing_lead_ms=200)
    for _ in range(50):  # 1 s pushed at once
        pump.push(quiet(FRAME_MS))
    assert pump.core.call_ms == 200  # only the lead goes out before any time has passed
    assert pump.core.held_audio_ms == 800
    timer = pump.core.get_timer()
    assert timer is not None and 0.0 < timer - pump.now <= 0.03  # wakes for the next 20 ms frame
    pump.advance(0.5)
    assert pump.core.call_ms == 700
    pump.advance(0.3)
    assert pump.core.call_ms == 1000 and pump.core.held_audio_ms == 0
    assert len(pump.audio_sent("s1")) == 1000 * 16


def test_silence_fill_keeps_the_timeline_with_the_clock() -> None:
    pump = started(silence_fill_after_ms=300)
    pump.push(quiet(100))  # 100 ms of audio at t = 0
    pump.now += 0.2
    pump.apply(pump.core.handle_timer(pump.now))
    assert pump.timeline_sent_ms("s1") == 100  # not yet: under silence_fill_after_ms
    pump.now = T0 + 1.0
    pump.apply(pump.core.handle_timer(pump.now))  # a gap (hold): silence up to the clock
    assert pump.core.call_ms == 1000
    assert pump.sent["s1"][-1] == SendSilence("s1", 900)
    assert pump.timeline_sent_ms("s1") == 1000


def test_a_hold_is_filled_with_silence_chunks_that_keep_pace_with_the_clock() -> None:
    pump = started()
    pump.speak(quiet(1000))
    pump.advance(7.0)  # on hold: nothing pushed
    assert pump.core.call_ms == pytest.approx(8000, abs=310)
    assert all(isinstance(r, SendSilence) for r in pump.sent["s1"][-5:])
    assert pump.timeline_sent_ms("s1") == pump.core.call_ms


# ---- responses ----


def test_final_refinement_and_eou_make_one_final_on_the_call_timeline() -> None:
    pump = started()
    pump.speak(quiet(12_000))
    pump.respond("s1", eou(10_000))  # the recognizer closed an utterance at 10 s
    assert pump.core.eou_mark_ms == 10_000
    pump.end("s1", "UNAVAILABLE", "connection reset")
    pump.advance(0.2)  # the backoff (no jitter with rng 0.5)
    s2 = pump.opened["s2"]
    assert (s2.reason, s2.base_ms) == ("reconnect", 10_000)
    pump.events()
    pump.respond("s2", partial("", 0, 0))  # empty partial: no event
    pump.respond("s2", partial("four five", 1000, 1800))
    pump.respond("s2", final("four five six", 1000, 2500, index=1))
    pump.respond("s2", response(final_refinement=pb.FinalRefinement(
        final_index=1, normalized_text=alt("456", 1000, 2500))))
    pump.respond("s2", eou(3100))
    assert pump.events() == [
        SessionOpened("s2", 10_000, "reconnect"),
        PartialReceived("four five", 11_000, 11_800, "s2"),
        FinalReceived("four five six", "456", 11_000, 12_500, "s2"),
        UtteranceEnded(13_100, "s2"),
    ]
    assert pump.core.eou_mark_ms == 13_100


def test_partial_after_its_eou_is_stale_and_ignored() -> None:
    pump = started()
    pump.speak(quiet(3000))
    pump.respond("s1", final("hello", 100, 900), eou(900))
    pump.events()
    pump.respond("s1", partial("hello", 100, 900))  # a late partial decode
    assert pump.events() == []
    pump.respond("s1", partial("next", 1500, 2000))
    assert pump.events() == [PartialReceived("next", 1500, 2000, "s1")]


# ---- rotation ----


def test_rotation_at_a_pause_replays_only_the_pause_since_the_last_eou() -> None:
    pump = started(limits=SMALL_LIMITS, replay_buffer_ms=10_000)
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    pump.speak(tone(2000))
    pump.respond("s1", partial("apple", 0, 1500))
    pump.speak(quiet(1000))
    pump.respond("s1", final("apple trees", 0, 2000), eou(2600))
    pump.speak(quiet(8000))  # 11 s: headroom 9 s, outside the pause margin
    assert len(pump.opened) == 1
    pump.speak(quiet(1000))  # 12 s: inside the pause margin, at a pause
    assert [o.reason for o in pump.sessions()] == ["start", "rotation-pause"]
    s2 = pump.opened["s2"]
    assert s2.base_ms == 2600
    assert s2.replay_ms == pump.core.call_ms - 2600
    assert pump.sent["s1"][-1] == HalfClose("s1")
    assert pump.audio_sent("s2") == quiet(s2.replay_ms)[: len(pump.audio_sent("s2"))]
    assert SessionClosed("s1", "rotated") in pump.events()


def test_forced_rotation_replays_the_utterance_in_progress_and_each_utterance_comes_once() -> None:
    """The dedup rule: after the switch only the new session reports; each utterance comes once."""
    pump = started(limits=SMALL_LIMITS, replay_buffer_ms=12_000)
    pump.speak(tone(5000))
    pump.respond("s1", final("first", 0, 5000), eou(5600))
    pump.speak(quiet(1000) + tone(5000))  # speaking without a pause from 6 s on
    pump.respond("s1", partial("second", 6000, 11_000))
    pump.speak(tone(5000))  # 16 s: inside the pause margin, but mid-utterance
    assert len(pump.opened) == 1
    pump.speak(tone(1000))  # 17 s: inside the force margin, still speaking
    assert [o.reason for o in pump.sessions()] == ["start", "rotation-forced"]
    s2 = pump.opened["s2"]
    assert (s2.base_ms, s2.replay_ms) == (5600, 11_400)
    call_audio = tone(5000) + quiet(1000) + tone(5000) + tone(5000) + tone(1000)
    assert pump.audio_sent("s2") == call_audio[5600 * 16:]
    pump.events()
    # The old session flushes the utterance that was in flight when it was half-closed ...
    pump.respond("s1", final("second", 6000, 17_000), eou(17_600))
    # ... and the new session, which got it replayed from 5600, recognizes it too.
    pump.respond("s2", final("second", 400, 11_400), eou(12_000))
    pump.end("s1")
    finals = [e for e in pump.events() if isinstance(e, FinalReceived)]
    assert finals == [FinalReceived("second", None, 6000, 17_000, "s2")]
    assert pump.core.eou_mark_ms == 17_600


def test_no_rotation_into_a_session_that_would_be_due_again_at_once() -> None:
    pump = started(limits=SMALL_LIMITS, replay_buffer_ms=30_000)
    pump.speak(tone(18_000))  # no eou at all: the replay would be the whole 18 s
    assert len(pump.opened) == 1
    # The server's limit ends it; the client reopens at once and goes on.
    pump.end("s1", "OUT_OF_RANGE", "audio duration limit")
    assert [o.reason for o in pump.sessions()] == ["start", "reconnect"]


def test_a_second_rotation_follows_the_first_session_by_session() -> None:
    pump = started(limits=SMALL_LIMITS, replay_buffer_ms=10_000)
    for n in range(5):  # 5 x 10 s: 2 s of speech, a final, 8 s of pause
        current = list(pump.opened)[-1]
        base = pump.opened[current].base_ms
        start = pump.core.call_ms
        pump.speak(tone(2000))
        pump.respond(current, final(f"utterance {n}", start - base, start - base + 2000),
                     eou(start - base + 2000))
        pump.speak(quiet(8000))
    reasons = [o.reason for o in pump.sessions()]
    assert reasons[0] == "start" and len(reasons) >= 3
    assert set(reasons[1:]) == {"rotation-pause"}
    finals = [e for e in pump.events() if isinstance(e, FinalReceived)]
    assert [f.text for f in finals] == [f"utterance {n}" for n in range(5)]
    assert [f.start_ms for f in finals] == [n * 10_000 for n in range(5)]


# ---- reconnect ----


def test_failed_session_drops_finals_without_eou_and_reconnects_after_backoff() -> None:
    pump = started(reconnect_initial_s=0.5)
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    pump.speak(tone(1000))
    pump.respond("s1", final("cut off", 100, 900))
    pump.events()
    pump.end("s1", "UNAVAILABLE", "connection reset")
    assert pump.events() == [SessionClosed("s1", "server: UNAVAILABLE connection reset")]
    assert pump.core.active_session_id is None
    pump.speak(tone(300))  # the caller goes on talking meanwhile
    assert len(pump.opened) == 1
    assert seconds_to_reconnect(pump) == pytest.approx(0.2, abs=0.011)  # 0.5 s after the failure
    s2 = pump.opened["s2"]
    assert (s2.reason, s2.base_ms) == ("reconnect", 0)
    # The new session gets everything since E = 0, so "cut off" is recognized again, whole.
    assert pump.audio_sent("s2")[: 1300 * 16] == tone(1000) + tone(300)


def seconds_to_reconnect(pump: Pump, step_s: float = 0.01) -> float:
    """Move the clock in small steps until the core opens its next session."""
    before, started_at = len(pump.opened), pump.now
    while len(pump.opened) == before:
        assert pump.now - started_at < 10, "no reconnect within 10 s"
        pump.advance(step_s)
    return pump.now - started_at


def test_backoff_doubles_while_the_recognizer_is_away_and_resets_once_it_answers() -> None:
    pump = started(reconnect_initial_s=0.2, reconnect_max_s=1.0)
    delays = []
    for n in range(1, 6):
        pump.end(f"s{n}", "UNAVAILABLE", "connection refused")
        delays.append(seconds_to_reconnect(pump))
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.0, 1.0], abs=0.011)
    pump.respond("s6", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    pump.end("s6", "UNAVAILABLE", "connection reset")
    assert seconds_to_reconnect(pump) == pytest.approx(0.2, abs=0.011)


@pytest.mark.parametrize("code", ["OUT_OF_RANGE", "DEADLINE_EXCEEDED"])
def test_the_servers_limit_and_idle_codes_reopen_at_once(code: str) -> None:
    pump = started()
    pump.speak(tone(500))
    pump.end("s1", code, "limit")
    assert [o.reason for o in pump.sessions()] == ["start", "reconnect"]
    assert pump.opened["s2"].replay_ms == 500


def test_ok_from_the_server_before_end_of_input_reopens_at_once() -> None:
    pump = started()
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    pump.speak(tone(200))
    pump.end("s1")
    assert SessionClosed("s1", "server: OK") in pump.events()
    assert [o.reason for o in pump.sessions()] == ["start", "reconnect"]


@pytest.mark.parametrize("code", ["UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT"])
def test_fatal_status_is_a_non_retryable_failure_that_cancels_what_is_left(code: str) -> None:
    pump = started(limits=SMALL_LIMITS)
    pump.speak(tone(1000))
    pump.respond("s1", final("a", 0, 1000), eou(1000))
    pump.speak(quiet(12_000))  # rotation at a pause: s1 retired, still open
    assert list(pump.opened) == ["s1", "s2"]
    outputs = pump.end("s2", code, "unknown API key")
    assert outputs[-2:] == [CancelSession("s1"), StreamFailed(
        f"recognizer at 127.0.0.1:1 refused the stream: {code}: unknown API key", False)]
    assert pump.core.finished and pump.core.get_timer() is None
    assert pump.core.push_audio(tone(20), pump.now) == []


def test_an_unreachable_recognizer_fails_retryable_after_the_give_up_time() -> None:
    pump = started(reconnect_initial_s=0.2, reconnect_max_s=1.0, reconnect_give_up_s=5.0)
    failed = []
    for _ in range(20):
        for session_id in list(pump.opened):
            if session_id not in failed:
                failed.append(session_id)
                pump.end(session_id, "UNAVAILABLE", "connection refused")
        pump.advance(0.5)
        if pump.core.finished:
            break
    assert pump.outputs[-1] == StreamFailed(
        "recognizer at 127.0.0.1:1 unreachable for 5 s; check that it is running", True)
    assert pump.core.finished and 5.0 < pump.now - T0 < 6.5


# ---- end of input ----


def test_end_input_flushes_held_audio_half_closes_and_finishes_after_the_last_final() -> None:
    pump = started()
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    for _ in range(50):
        pump.push(tone(FRAME_MS))  # 1 s in a burst: 200 ms go out, the rest is held
    pump.apply(pump.core.end_input(pump.now))
    assert pump.core.call_ms == 1000 and pump.sent["s1"][-1] == HalfClose("s1")
    assert pump.core.get_timer() is None and not pump.core.finished
    pump.respond("s1", final("bye", 0, 1000))
    pump.end("s1")  # OK without an eou_update: the pending final is delivered, not lost
    assert pump.events()[-2:] == [FinalReceived("bye", None, 0, 1000, "s1"),
                                  SessionClosed("s1", "input ended")]
    assert pump.core.finished
    assert pump.core.push_audio(tone(20), pump.now) == []


def test_a_reconnect_during_the_flush_replays_and_half_closes_at_once() -> None:
    pump = started()
    pump.speak(tone(1000))
    pump.apply(pump.core.end_input(pump.now))
    pump.end("s1", "UNAVAILABLE", "connection reset")
    assert not pump.core.finished
    pump.advance(0.2)
    assert pump.opened["s2"].reason == "reconnect"
    assert pump.sent["s2"][-1] == HalfClose("s2") and pump.audio_sent("s2") == tone(1000)
    pump.respond("s2", final("hello", 0, 900), eou(1000))
    pump.end("s2")
    assert pump.core.finished
    assert [e.text for e in pump.events() if isinstance(e, FinalReceived)] == ["hello"]


# ---- the caller says what a frame is ----


def test_frames_marked_silent_make_a_pause_whatever_their_energy() -> None:
    pump = started(limits=SMALL_LIMITS)
    pump.speak(tone(1000))
    pump.respond("s1", final("a", 0, 1000), eou(1000))
    pump.speak(tone(12_000), is_silence=True)  # loud concealment the jitter buffer knows about
    assert [o.reason for o in pump.sessions()] == ["start", "rotation-pause"]


def test_frames_marked_not_silent_are_no_pause_whatever_their_energy() -> None:
    pump = started(limits=SMALL_LIMITS)
    pump.speak(tone(6000))
    pump.respond("s1", final("a", 0, 6000), eou(6000))
    pump.speak(quiet(10_000), is_silence=False)
    assert len(pump.opened) == 1  # quiet, but the caller says it is speech: no pause rotation
    pump.speak(quiet(1500), is_silence=False)
    assert [o.reason for o in pump.sessions()] == ["start", "rotation-forced"]


def test_unmarked_frames_are_judged_by_energy() -> None:
    pump = started(limits=SMALL_LIMITS)
    pump.speak(tone(1000))
    pump.respond("s1", final("a", 0, 1000), eou(1000))
    pump.speak(tone(14_000, amplitude=100))  # line hiss
    assert [o.reason for o in pump.sessions()] == ["start", "rotation-pause"]


# ---- session metadata (recognition hints) ----


HINTS = menu_hints("Say sales or support.", ["sales", "support"]).to_metadata()


def test_metadata_set_before_start_goes_with_the_first_session() -> None:
    pump = Pump()
    pump.apply(pump.core.set_session_metadata(HINTS, pump.now))
    pump.start()
    assert pump.opened["s1"].metadata == (("x-client-request-id", "s1"), *HINTS)
    pump.speak(quiet(1000))
    assert len(pump.opened) == 1


def test_new_metadata_between_utterances_rotates_to_a_session_carrying_it() -> None:
    pump = started()
    pump.respond("s1", response(status_code=pb.StatusCode(code_type=pb.WORKING)))
    pump.speak(tone(1000))
    pump.respond("s1", final("hello", 0, 1000), eou(1300))
    pump.speak(quiet(500))
    pump.events()
    pump.apply(pump.core.set_session_metadata(HINTS, pump.now))
    s2 = pump.opened["s2"]
    assert (s2.reason, s2.base_ms, s2.replay_ms) == ("context", 1300, 200)
    assert dict(s2.metadata)[HINTS_METADATA_KEY] == HINTS[0][1]
    assert pump.sent["s1"][-1] == HalfClose("s1")
    assert pump.events() == [SessionClosed("s1", "rotated")]
    # The same pairs again change nothing.
    pump.apply(pump.core.set_session_metadata(list(HINTS), pump.now))
    pump.speak(quiet(500))
    assert len(pump.opened) == 2


def test_new_metadata_during_an_utterance_waits_for_its_final() -> None:
    pump = started()
    pump.speak(tone(1000))
    pump.respond("s1", partial("sal", 0, 800))
    pump.apply(pump.core.set_session_metadata(HINTS, pump.now))
    pump.speak(tone(500) + quiet(500))
    assert len(pump.opened) == 1  # the caller is mid-utterance: no cut
    pump.respond("s1", final("sales", 0, 1500))
    assert len(pump.opened) == 1  # a final waiting for its eou_update is still in progress
    pump.respond("s1", eou(1700))
    assert pump.opened["s2"].reason == "context" and pump.opened["s2"].base_ms == 1700
    assert [e.text for e in pump.events() if isinstance(e, FinalReceived)] == ["sales"]


def test_metadata_set_while_reconnecting_goes_with_the_reconnect() -> None:
    pump = started()
    pump.speak(tone(500))
    pump.end("s1", "UNAVAILABLE", "connection reset")
    pump.apply(pump.core.set_session_metadata(HINTS, pump.now))
    pump.advance(0.2)
    assert [o.reason for o in pump.sessions()] == ["start", "reconnect"]
    assert pump.opened["s2"].metadata[1:] == HINTS
    pump.speak(quiet(500))
    assert len(pump.opened) == 2


def test_no_context_rotation_after_end_of_input() -> None:
    pump = started()
    pump.speak(quiet(500))
    pump.apply(pump.core.end_input(pump.now))
    pump.apply(pump.core.set_session_metadata(HINTS, pump.now))
    assert len(pump.opened) == 1



def test_a_session_replaced_before_the_server_answered_is_reported_opened_then_closed() -> None:
    """The dialog's first expectation arrives right after the call's first session opened: that
    session is replaced before any response, and must still close in the record (not linger)."""
    pump = started()
    assert [o.session_id for o in pump.sessions()] == ["s1"]
    pump.apply(pump.core.set_session_metadata([(HINTS_METADATA_KEY, menu_hints("Menu.", ["operator"])
                                                .to_json())], pump.now))
    assert [o.session_id for o in pump.sessions()] == ["s1", "s2"]
    pump.events()
    pump.respond("s1", response())
    closed = [e for e in pump.events() if isinstance(e, SessionOpened | SessionClosed)]
    assert [(type(e).__name__, e.session_id) for e in closed] == [("SessionOpened", "s1"),
                                                                  ("SessionClosed", "s1")]
    assert [e.reason for e in closed if isinstance(e, SessionClosed)] == ["rotated"]


def test_a_final_carries_the_recognizers_alternatives_and_confidences() -> None:
    pump = started()
    pump.speak(tone(600))
    alternatives = [pb.Alternative(text="operator", start_time_ms=0, end_time_ms=600, confidence=0.8),
                    pb.Alternative(text="operate her", start_time_ms=0, end_time_ms=600, confidence=0.4),
                    pb.Alternative(text=" ", start_time_ms=0, end_time_ms=600, confidence=0.1)]
    pump.respond("s1", pb.StreamingResponse(final=pb.AlternativeUpdate(alternatives=alternatives)), eou(700))
    [final] = [e for e in pump.events() if isinstance(e, FinalReceived)]
    assert (final.text, final.confidence) == ("operator", pytest.approx(0.8))
    assert [(t, round(c, 2)) for t, c in final.alternatives] == [("operate her", 0.4)]
