"""Exactly once, none cut: the core against a simulated recognizer, over generated calls.

Hypothesis makes a call (utterances and pauses), small session limits and a few moments when the
recognizer drops the active session. A :class:`FakeRecognizer` per session hears what the core
sends (``next_request``) and reports like the real server: a partial while an utterance is heard,
its final and ``eou_update`` once the pause after it is heard, a flush of the utterance in progress
on half-close, then OK. Whatever the rotations and reconnects, every spoken utterance must come out
as exactly one final with its own span on the call timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.stream import (
    ClientSettings,
    FinalReceived,
    HalfClose,
    OpenSession,
    RotationLimits,
    SendAudio,
    SendSilence,
    StreamCore,
    StreamFailed,
)

pytestmark = pytest.mark.unit

FRAME_MS = 20
PAUSE_MS = 600  # the recognizer's end-of-utterance pause
LOUD = b"\x00\x20" * 8 * FRAME_MS  # constant 8192: loud
QUIET = b"\x00\x00" * 8 * FRAME_MS


@dataclass
class FakeRecognizer:
    """One session's server: knows where the utterances are on the call timeline (the test's truth)."""

    session_id: str
    base_ms: int
    utterances: list[tuple[int, int]]
    heard_ms: int = 0  # session timeline
    reported: set[int] = field(default_factory=set)
    partial_sent: set[int] = field(default_factory=set)
    half_closed: bool = False

    def hear(self, request: SendAudio | SendSilence) -> list[pb.StreamingResponse]:
        self.heard_ms += len(request.pcm16) // 16 if isinstance(request, SendAudio) else request.duration_ms
        out = []
        heard_to = self.base_ms + self.heard_ms
        for n, (start, end) in enumerate(self.utterances):
            if n in self.reported or start < self.base_ms:
                continue
            if start + 200 <= heard_to < end and n not in self.partial_sent:
                self.partial_sent.add(n)
                out.append(self._response(partial=self._alt(n, start, heard_to)))
            if heard_to >= end + PAUSE_MS:
                out += self._final(n, start, end)
        return out

    def flush(self) -> list[pb.StreamingResponse]:
        """Half-close: the utterance in progress is closed where the audio ends."""
        heard_to = self.base_ms + self.heard_ms
        out = []
        for n, (start, end) in enumerate(self.utterances):
            if n not in self.reported and self.base_ms <= start < heard_to:
                out += self._final(n, start, min(end, heard_to))
        return out

    def _final(self, n: int, start: int, end: int) -> list[pb.StreamingResponse]:
        self.reported.add(n)
        return [self._response(final=self._alt(n, start, end)),
                self._response(eou_update=pb.EouUpdate(time_ms=end - self.base_ms))]

    def _alt(self, n: int, start: int, end: int) -> pb.AlternativeUpdate:
        return pb.AlternativeUpdate(alternatives=[pb.Alternative(
            text=f"utterance {n}", start_time_ms=start - self.base_ms, end_time_ms=end - self.base_ms)])

    def _response(self, **event: object) -> pb.StreamingResponse:
        return pb.StreamingResponse(session_uuid=pb.SessionUuid(uuid=self.session_id), **event)


# Utterance <= 7 s after a pause <= 4 s: a forced rotation's replay stays under the 12 s a new
# session may start with (max_audio_ms - pause_margin_ms), so the core may always rotate in time.
calls = st.lists(st.tuples(st.integers(300, 7000), st.integers(1000, 4000)), min_size=1, max_size=12)
drops = st.lists(st.integers(0, 60_000), max_size=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(call=calls, drop_at_ms=drops)
def test_every_utterance_once_and_whole_through_rotations_and_reconnects(
        call: list[tuple[int, int]], drop_at_ms: list[int]) -> None:
    utterances: list[tuple[int, int]] = []
    t = 1000
    for speech_ms, pause_ms in call:
        start = t // FRAME_MS * FRAME_MS
        t = start + speech_ms // FRAME_MS * FRAME_MS
        utterances.append((start, t))
        t += pause_ms
    total_ms = t // FRAME_MS * FRAME_MS + 1000
    limits = RotationLimits(max_audio_ms=20_000, pause_margin_ms=8_000, force_margin_ms=3_000)
    core = StreamCore(ClientSettings(target="sim:1", replay_buffer_ms=12_000, limits=limits), rng=lambda: 0.5)
    servers: dict[str, FakeRecognizer] = {}
    finals: list[FinalReceived] = []
    drops_left = sorted(d // FRAME_MS * FRAME_MS for d in drop_at_ms if d < total_ms)

    def run(outputs: list[object], now_s: float) -> None:
        work = list(outputs)
        while work:
            output = work.pop(0)
            if isinstance(output, OpenSession):
                event(f"opened for {output.reason}")
                servers[output.session_id] = FakeRecognizer(output.session_id, output.base_ms, utterances)
            elif isinstance(output, FinalReceived):
                finals.append(output)
            elif isinstance(output, StreamFailed):
                raise AssertionError(output)
            for session_id, server in list(servers.items()):
                responses: list[pb.StreamingResponse] = []
                while (request := core.next_request(session_id)) is not None:
                    if isinstance(request, HalfClose):
                        server.half_closed = True
                        responses += server.flush()
                    else:
                        responses += server.hear(request)
                for response in responses:
                    work += core.receive_response(session_id, response, now_s)
                # The client always rotated before the recognizer's per-session limit.
                assert server.heard_ms <= 20_000, (session_id, server.heard_ms)
                if server.half_closed:
                    del servers[session_id]
                    work += core.session_ended(session_id, "OK", "", now_s)

    now_ms = 0
    run(core.start(0.0), 0.0)
    while now_ms < total_ms:
        now_ms += FRAME_MS
        frame = LOUD if any(s <= now_ms - FRAME_MS < e for s, e in utterances) else QUIET
        run(core.push_audio(frame, now_ms / 1000), now_ms / 1000)
        if drops_left and now_ms >= drops_left[0]:
            drops_left.pop(0)
            active = core.active_session_id
            if active is not None and active in servers:
                del servers[active]  # the recognizer went away mid-call
                now_s = now_ms / 1000
                run(core.session_ended(active, "UNAVAILABLE", "connection reset", now_s), now_s)
    run(core.end_input(now_ms / 1000), now_ms / 1000)
    for _ in range(1000):
        if core.finished:
            break
        timer = core.get_timer()
        assert timer is not None, "waiting for nothing"
        run(core.handle_timer(timer), timer)
    assert core.finished
    assert sorted((f.start_ms, f.end_ms) for f in finals) == utterances
    assert [f.text for f in finals] == [f"utterance {n}" for n in range(len(utterances))]
