"""The recognition-hints extension over the wire: a real server on 127.0.0.1:0, a real gRPC client.

The engine is a deterministic stand-in that records the hints each decode got and, for a menu hint,
answers like the real engine's rescoring does (the phrase first, the free text as the second
alternative), so these tests show what the server and session do with hints without a model.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from tests.stt.test_server import (
    KEY,
    FakeEngine,
    ServerFactory,
    chunks,
    make_server,
    options,
    recognize,
    silence,
    speech,
)
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.engine import Hypothesis
from voicebot.stt.hints import HINTS_METADATA_KEY, RecognitionHints, menu_hints

pytestmark = pytest.mark.adapter

__all__ = ["make_server"]  # the fixture, imported for pytest

AUTH = ("authorization", f"Api-Key {KEY}")


class HintedFakeEngine(FakeEngine):
    """FakeEngine that takes hints: 'hello world' free; a menu hint makes it report the first
    phrase with confidence 0.8 and the free text as the second alternative."""

    accepts_hints = True

    def __init__(self) -> None:
        super().__init__()
        self.hints_seen: list[tuple[bool, RecognitionHints | None]] = []  # (partial, hints)
        self._hints_lock = threading.Lock()

    def transcribe(
        self,
        audio: npt.NDArray[np.float32],
        *,
        language: str | None,
        partial: bool,
        hints: RecognitionHints | None = None,
    ) -> Hypothesis:
        with self._hints_lock:
            self.hints_seen.append((partial, hints))
        free = super().transcribe(audio, language=language, partial=partial)
        if hints is None or hints.mode != "menu" or partial or not free.text:
            return free
        return Hypothesis(hints.phrases[0], (), 0.8, free.language, alternatives=(free,))


def stream() -> list[pb.StreamingRequest]:
    return [options(), *chunks(silence(200) + speech(1200) + silence(1000))]


def finals(responses: Sequence[pb.StreamingResponse]) -> list[list[tuple[str, float]]]:
    return [
        [(a.text, round(a.confidence, 3)) for a in r.final.alternatives]
        for r in responses
        if r.WhichOneof("Event") == "final"
    ]


def results(responses: Sequence[pb.StreamingResponse]) -> list[tuple[str, object]]:
    """Everything but the timing-dependent parts (status keep-alives, wall times, cursors)."""
    out: list[tuple[str, object]] = []
    for r in responses:
        kind = str(r.WhichOneof("Event"))
        if kind == "final":
            alternatives = r.final.alternatives
            out.append((kind, [(a.text, a.confidence, a.start_time_ms, a.end_time_ms) for a in alternatives]))
        elif kind == "final_refinement":
            out.append((kind, [a.text for a in r.final_refinement.normalized_text.alternatives]))
        elif kind == "eou_update":
            out.append((kind, r.eou_update.time_ms))
    return out


async def test_hints_reach_every_decode_of_the_session(make_server: ServerFactory) -> None:
    engine = HintedFakeEngine()
    server = await make_server(engine=engine)
    hints = menu_hints("Say balance or operator.", ["balance", "operator"])
    responses, code, details = await recognize(
        server.port, stream(), metadata=(AUTH, *hints.to_metadata())  # type: ignore[arg-type]
    )
    assert (code, details) == (grpc.StatusCode.OK, "")
    assert engine.hints_seen and all(seen == hints for _partial, seen in engine.hints_seen)
    assert any(not partial for partial, _seen in engine.hints_seen)
    # The matched phrase first, the free decode as the second alternative.
    assert finals(responses) == [[("balance", 0.8), ("hello world", 0.9)]]


async def test_a_client_without_hints_gets_exactly_the_plain_results(make_server: ServerFactory) -> None:
    plain = await make_server(engine=FakeEngine())
    hinted_engine = HintedFakeEngine()
    hinted = await make_server(engine=hinted_engine)
    before, code_before, _ = await recognize(plain.port, stream(), metadata=(AUTH,))
    after, code_after, _ = await recognize(hinted.port, stream(), metadata=(AUTH,))
    assert code_before == code_after == grpc.StatusCode.OK
    assert results(after) == results(before)
    assert finals(after) == [[("hello world", 0.9)]]
    assert hinted_engine.hints_seen and all(seen is None for _p, seen in hinted_engine.hints_seen)


async def test_an_engine_without_the_extension_ignores_hints(make_server: ServerFactory) -> None:
    server = await make_server(engine=FakeEngine())
    hints = menu_hints("", ["balance"])
    responses, code, _ = await recognize(
        server.port, stream(), metadata=(AUTH, *hints.to_metadata())  # type: ignore[arg-type]
    )
    assert code == grpc.StatusCode.OK
    assert finals(responses) == [[("hello world", 0.9)]]


@pytest.mark.parametrize(
    ("value", "details"),
    [
        (b"{not json", "hints: x-voicebot-hints-bin is not UTF-8 JSON (Expecting property name enclosed "
                       "in double quotes: line 1 column 2 (char 1))"),
        (b'{"v":1,"mode":"grammar"}', "hints: mode 'grammar' is not one of free, menu, digits, yesno"),
        (b'{"v":2}', "hints: version 2 is not supported (expected 1)"),
        (b'{"v":1,"mode":"digits","min_digits":9,"max_digits":4}',
         "hints: need 1 <= min_digits (9) <= max_digits (4) <= 32"),
        (b'{"v":1,"colour":"red"}', "hints: unknown field(s) colour"),
    ],
    ids=["not-json", "bad-mode", "bad-version", "bad-digits", "unknown-field"],
)
async def test_malformed_hints_end_the_call_with_invalid_argument(
    make_server: ServerFactory, value: bytes, details: str
) -> None:
    engine = HintedFakeEngine()
    server = await make_server(engine=engine)
    responses, code, message = await recognize(
        server.port, [options()], metadata=(AUTH, (HINTS_METADATA_KEY, value))  # type: ignore[arg-type]
    )
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, details)
    assert responses == []
    assert engine.hints_seen == []
    # The session slot was given back: the server still serves.
    _r, code_after, _m = await recognize(server.port, stream(), metadata=(AUTH,))
    assert code_after == grpc.StatusCode.OK
    assert server.pool.stats().sessions == 0
