"""The sans-IO session core: message order, cursors, errors and limits, pumped in memory.

The endpointer is the real :class:`WebRtcEndpointer` with a scripted classifier (a frame with any
non-zero sample is speech), and decode jobs are answered by a deterministic fake that names the
amplitude levels it finds in the job's audio ("one" for 1000, "two" for 2000, ...), so a test can
tell exactly which audio a final covers. No sockets, threads or sleeps.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from tests.stt.messages import raw_options
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.endpoint import WebRtcEndpointer
from voicebot.stt.engine import Endpointer, Hypothesis, UnsupportedLanguage, WordTiming
from voicebot.stt.hints import RecognitionHints, menu_hints
from voicebot.stt.model import DetectedHypothesis
from voicebot.stt.session import (
    CancelDecode,
    Close,
    Command,
    DecodeJob,
    DecodeResult,
    Send,
    Session,
    SessionConfig,
    SessionLimits,
    StartDecode,
)

pytestmark = pytest.mark.unit

RATE = 8000
LEVEL_WORDS = {1000: "one", 2000: "two", 3000: "three", 4000: "four"}
NORMALIZED = {"one": "1", "two": "2", "three": "3", "four": "4"}


def speech(ms: int, level: int = 1000, rate: int = RATE) -> bytes:
    return struct.pack("<h", level) * (rate * ms // 1000)


def silence(ms: int, rate: int = RATE) -> bytes:
    return bytes(2 * (rate * ms // 1000))


def fake_decode(job: DecodeJob) -> DecodeResult:
    """Words for each amplitude level in the job's audio, timed from its first to last sample."""
    samples = struct.unpack(f"<{len(job.pcm16) // 2}h", job.pcm16)
    spans: dict[int, list[int]] = {}
    for i, value in enumerate(samples):
        if value in LEVEL_WORDS:
            spans.setdefault(value, [i, i])[1] = i
    words = tuple(
        WordTiming(
            LEVEL_WORDS[level], first * 1000 // job.sample_rate_hz, (last + 1) * 1000 // job.sample_rate_hz
        )
        for level, (first, last) in spans.items()
    )
    text = " ".join(w.text for w in words)
    normalized = " ".join(NORMALIZED[w.text] for w in words) if job.normalize else None
    return DecodeResult(Hypothesis(text, words, 0.875, "en-US"), normalized)


def scripted_endpointer(calls: list[tuple[int, int]]) -> object:
    def factory(rate: int, max_pause_ms: int) -> Endpointer:
        calls.append((rate, max_pause_ms))
        return WebRtcEndpointer(rate, max_pause_ms=max_pause_ms, classifier=lambda frame, _rate: any(frame))

    return factory


def resolve(codes: Sequence[str]) -> str | None:
    for code in codes:
        if code.lower() in ("xx-xx", "kl-gl"):
            raise UnsupportedLanguage(f"language {code!r} is not supported by model 'fake'")
    return codes[0] if codes else None


def chunk(data: bytes) -> pb.StreamingRequest:
    return pb.StreamingRequest(chunk=pb.AudioChunk(data=data))


@dataclass
class Harness:
    """Pumps one Session; ``auto`` answers every decode job as soon as it starts."""

    auto: bool = True
    config: SessionConfig = field(default_factory=SessionConfig)
    user_request_id: str = "req-1"
    now_s: float = 0.0
    responses: list[pb.StreamingResponse] = field(default_factory=list)
    jobs: dict[int, DecodeJob] = field(default_factory=dict)
    started: list[DecodeJob] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    closed: Close | None = None
    endpointer_calls: list[tuple[int, int]] = field(default_factory=list)
    hints: RecognitionHints | None = None
    session: Session = field(init=False)

    def __post_init__(self) -> None:
        self.session = Session(
            session_uuid="sess-1",
            user_request_id=self.user_request_id,
            resolve_language=resolve,
            endpointer_factory=scripted_endpointer(self.endpointer_calls),  # type: ignore[arg-type]
            now_s=self.now_s,
            config=self.config,
            hints=self.hints,
        )

    def run(self, commands: list[Command]) -> None:
        work = list(commands)
        while work:
            command = work.pop(0)
            if isinstance(command, Send):
                self.responses.append(command.response)
            elif isinstance(command, StartDecode):
                self.started.append(command.job)
                if self.auto:
                    work.extend(self.session.decoded(command.job.job_id, fake_decode(command.job)))
                else:
                    self.jobs[command.job.job_id] = command.job
            elif isinstance(command, CancelDecode):
                self.cancelled.append(command.job_id)
                self.jobs.pop(command.job_id, None)
            else:
                assert self.closed is None, "Close must be the last command"
                self.closed = command

    def send(self, request: pb.StreamingRequest, advance_s: float = 0.0) -> None:
        self.now_s += advance_s
        self.run(self.session.receive(request, self.now_s))

    def audio(self, pcm: bytes, chunk_ms: int = 100, rate: int = RATE) -> None:
        """Send ``pcm`` in chunks of ``chunk_ms``, advancing the clock at real-time pace."""
        step = 2 * rate * chunk_ms // 1000
        for i in range(0, len(pcm), step):
            self.send(chunk(pcm[i : i + step]), advance_s=chunk_ms / 1000)

    def answer(self, job_id: int) -> None:
        job = self.jobs.pop(job_id)
        self.run(self.session.decoded(job_id, fake_decode(job)))

    def half_close(self) -> None:
        self.run(self.session.half_close())

    def events(self) -> list[str]:
        return [str(r.WhichOneof("Event")) for r in self.responses]

    def results(self) -> list[tuple[str, str]]:
        """(event, text) for result events; keep-alives left out."""
        out = []
        for r in self.responses:
            kind = str(r.WhichOneof("Event"))
            if kind in ("partial", "final"):
                out.append((kind, getattr(r, kind).alternatives[0].text))
            elif kind == "final_refinement":
                out.append((kind, r.final_refinement.normalized_text.alternatives[0].text))
            elif kind == "eou_update":
                out.append((kind, str(r.eou_update.time_ms)))
        return out


def assert_invariants(responses: list[pb.StreamingResponse]) -> None:
    previous = pb.AudioCursors()
    for r in responses:
        assert r.session_uuid.uuid == "sess-1"
        assert r.channel_tag == "0"
        c = r.audio_cursors
        for name in ("received_data_ms", "partial_time_ms", "final_time_ms", "final_index", "eou_time_ms"):
            assert getattr(c, name) >= getattr(previous, name), name
        assert c.final_time_ms <= c.received_data_ms
        previous = c


# ---- options ----


def test_first_response_is_working_status_with_ids() -> None:
    h = Harness()
    h.send(raw_options())
    assert h.events() == ["status_code"]
    first = h.responses[0]
    assert first.status_code.code_type == pb.WORKING
    assert first.session_uuid.uuid == "sess-1"
    assert first.session_uuid.user_request_id == "req-1"
    assert first.channel_tag == "0"
    assert h.closed is None


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            raw_options(rate=22050),
            "session_options.recognition_model.audio_format.raw_audio.sample_rate_hertz "
            "must be 8000, 16000 or 48000, got 22050",
        ),
        (
            raw_options(channels=2),
            "session_options.recognition_model.audio_format.raw_audio.audio_channel_count "
            "must be 1 (mono), got 2",
        ),
        (
            raw_options(encoding=pb.RawAudio.AUDIO_ENCODING_UNSPECIFIED),
            "session_options.recognition_model.audio_format.raw_audio.audio_encoding must be LINEAR16_PCM, "
            "got AUDIO_ENCODING_UNSPECIFIED",
        ),
        (
            pb.StreamingRequest(session_options=pb.StreamingOptions()),
            "session_options.recognition_model.audio_format is required (raw_audio LINEAR16_PCM or "
            "container_audio WAV)",
        ),
        (
            raw_options(languages=["xx-XX"]),
            "session_options.recognition_model.language_restriction.language_code: language 'xx-XX' is not "
            "supported by model 'fake'",
        ),
        (
            raw_options(
                eou=pb.EouClassifierOptions(
                    default_classifier=pb.DefaultEouClassifier(max_pause_between_words_hint_ms=-5)
                )
            ),
            "session_options.eou_classifier.default_classifier.max_pause_between_words_hint_ms must be >= 0, "
            "got -5",
        ),
        (
            chunk(b"\x00\x00"),
            "chunk arrived before session_options; the first message must be session_options",
        ),
        (
            pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=100)),
            "silence_chunk arrived before session_options; the first message must be session_options",
        ),
        (
            pb.StreamingRequest(),
            "StreamingRequest has no event set (expected chunk, silence_chunk or eou)",
        ),
    ],
    ids=[
        "rate",
        "channels",
        "encoding",
        "no-format",
        "language",
        "negative-pause",
        "chunk-first",
        "silence-first",
        "empty",
    ],
)
def test_bad_first_message_is_invalid_argument(request_: pb.StreamingRequest, message: str) -> None:
    h = Harness()
    h.send(request_)
    assert h.closed == Close("INVALID_ARGUMENT", message)
    assert h.responses == []


@pytest.mark.parametrize(
    ("kind", "name"), [(pb.ContainerAudio.OGG_OPUS, "OGG_OPUS"), (pb.ContainerAudio.MP3, "MP3")]
)
def test_unsupported_container_names_the_field(kind: pb.ContainerAudio.ContainerAudioType, name: str) -> None:
    h = Harness()
    options = pb.StreamingOptions(
        recognition_model=pb.RecognitionModelOptions(
            audio_format=pb.AudioFormatOptions(container_audio=pb.ContainerAudio(container_audio_type=kind))
        )
    )
    h.send(pb.StreamingRequest(session_options=options))
    assert h.closed == Close(
        "INVALID_ARGUMENT",
        f"session_options.recognition_model.audio_format.container_audio.container_audio_type {name} is not "
        "supported by this server; use WAV or raw_audio LINEAR16_PCM",
    )


def test_second_session_options_is_invalid_argument() -> None:
    h = Harness()
    h.send(raw_options())
    h.send(raw_options())
    assert h.closed == Close(
        "INVALID_ARGUMENT", "session_options may only be sent once, as the first message"
    )


def test_negative_silence_is_invalid_argument() -> None:
    h = Harness()
    h.send(raw_options())
    h.send(pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=-1)))
    assert h.closed == Close("INVALID_ARGUMENT", "silence_chunk.duration_ms must be >= 0, got -1")


def test_channel_count_zero_means_mono() -> None:
    h = Harness()
    h.send(raw_options(channels=0))
    assert h.closed is None
    assert h.endpointer_calls == [(RATE, 600)]


@pytest.mark.parametrize(
    ("eou", "pause_ms"),
    [
        (None, 600),
        (
            pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(max_pause_between_words_hint_ms=100)
            ),
            300,
        ),
        (
            pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(max_pause_between_words_hint_ms=900)
            ),
            900,
        ),
        (
            pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(max_pause_between_words_hint_ms=60_000)
            ),
            5000,
        ),
        (
            pb.EouClassifierOptions(
                default_classifier=pb.DefaultEouClassifier(type=pb.DefaultEouClassifier.HIGH)
            ),
            400,
        ),
    ],
    ids=["default", "clamped-low", "as-given", "clamped-high", "high-sensitivity"],
)
def test_pause_hint_sets_the_endpointer_pause(eou: pb.EouClassifierOptions | None, pause_ms: int) -> None:
    h = Harness()
    h.send(raw_options(eou=eou))
    assert h.endpointer_calls == [(RATE, pause_ms)]


# ---- results ----


def test_realtime_order_partials_final_refinement_eou() -> None:
    h = Harness()
    h.send(raw_options())
    h.audio(silence(300) + speech(1200, 1000) + speech(600, 2000) + silence(1000))
    results = h.results()
    kinds = [k for k, _ in results]
    assert kinds[0] == "partial"
    assert kinds[-3:] == ["final", "final_refinement", "eou_update"]
    assert set(kinds[:-3]) == {"partial"}
    assert ("final", "one two") in results
    assert ("final_refinement", "1 2") in results
    final = next(r for r in h.responses if r.WhichOneof("Event") == "final")
    refinement = next(r for r in h.responses if r.WhichOneof("Event") == "final_refinement")
    eou = next(r for r in h.responses if r.WhichOneof("Event") == "eou_update")
    alternative = final.final.alternatives[0]
    # Speech ran from 300 ms to 2100 ms; the final and the eou_update carry the utterance end.
    assert (alternative.start_time_ms, alternative.end_time_ms) == (300, 2100)
    assert [(w.text, w.start_time_ms, w.end_time_ms) for w in alternative.words] == [
        ("one", 300, 1500),
        ("two", 1500, 2100),
    ]
    assert alternative.confidence == pytest.approx(0.875)
    # A plain Hypothesis: the engine decoded in the language it was told, so probability 1.
    assert [(x.language_code, x.probability) for x in alternative.languages] == [("en-US", 1.0)]
    assert eou.eou_update.time_ms == alternative.end_time_ms == final.audio_cursors.final_time_ms
    assert refinement.final_refinement.final_index == final.audio_cursors.final_index == 1
    assert eou.audio_cursors.eou_time_ms == 2100
    assert_invariants(h.responses)
    assert h.closed is None


def test_partials_are_rationed_by_new_audio() -> None:
    h = Harness()
    h.send(raw_options())
    h.audio(speech(3000) + silence(1000))
    partial_jobs = [j for j in h.started if not j.final]
    # A partial every 500 ms of audio: at 500, 1000, ... 3000 ms of speech, never more often.
    assert 4 <= len(partial_jobs) <= 6
    ends = [j.offset_ms + len(j.pcm16) // 2 * 1000 // RATE for j in partial_jobs]
    assert all(b - a >= 500 for a, b in itertools.pairwise(ends))


def test_no_partial_is_started_while_a_pause_may_be_starting() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    # The first partial is due at 500 ms, but the audio then ends in 60-80 ms of non-speech: a
    # pause (and the speculative final) may follow, so the partial waits for speech to go on.
    h.audio(speech(440) + silence(80), chunk_ms=20)
    assert not [j for j in h.started if not j.final]
    h.audio(speech(40), chunk_ms=20)
    assert len([j for j in h.started if not j.final]) == 1


def test_final_decode_starts_when_the_pause_begins() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(1000) + silence(300), chunk_ms=20)
    finals = [j for j in h.started if j.final]
    assert len(finals) == 1, "the speculative final starts after the hangover, long before the 600 ms pause"
    assert not any(r.WhichOneof("Event") == "final" for r in h.responses)
    h.answer(finals[0].job_id)
    assert not any(r.WhichOneof("Event") == "final" for r in h.responses), "held until the pause completes"
    h.audio(silence(400), chunk_ms=20)
    assert [k for k, _ in h.results() if k != "partial"] == ["final", "final_refinement", "eou_update"]
    assert len([j for j in h.started if j.final]) == 1, "the speculative result was used, not decoded again"


def test_final_reports_the_engines_language_detection_probability() -> None:
    h = Harness(auto=False)
    h.send(raw_options(languages=["ru-RU", "en-US"]))
    h.audio(speech(1000) + silence(300), chunk_ms=20)
    job = next(j for j in h.started if j.final)
    plain = fake_decode(h.jobs.pop(job.job_id))
    detected = DetectedHypothesis(
        plain.hypothesis.text, plain.hypothesis.words, 0.9, "ru-RU", language_probability=0.73
    )
    h.run(h.session.decoded(job.job_id, DecodeResult(detected, plain.normalized_text)))
    h.audio(silence(400), chunk_ms=20)
    final = next(r for r in h.responses if r.WhichOneof("Event") == "final")
    languages = final.final.alternatives[0].languages
    assert [(x.language_code, round(x.probability, 3)) for x in languages] == [("ru-RU", 0.73)]


def test_speech_resuming_cancels_the_speculative_final() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(1000, 1000) + silence(300), chunk_ms=20)
    speculative = next(j for j in h.started if j.final)
    h.audio(speech(500, 2000) + silence(1000), chunk_ms=20)
    assert speculative.job_id in h.cancelled
    finals = [j for j in h.started if j.final]
    assert len(finals) == 2
    h.answer(finals[1].job_id)
    assert ("final", "one two") in h.results()


def test_finals_leave_in_utterance_order() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(600, 1000) + silence(1000) + speech(600, 2000) + silence(1000), chunk_ms=20)
    first, second = (j for j in h.started if j.final)
    for job in [j for j in h.started if not j.final and j.job_id in h.jobs]:
        h.jobs.pop(job.job_id)
    h.answer(second.job_id)
    assert not any(k == "final" for k, _ in h.results())
    h.answer(first.job_id)
    assert [(k, t) for k, t in h.results() if k == "final"] == [("final", "one"), ("final", "two")]
    indexes = [
        r.final_refinement.final_index for r in h.responses if r.WhichOneof("Event") == "final_refinement"
    ]
    assert indexes == [1, 2]
    assert_invariants(h.responses)


def test_normalization_disabled_sends_no_refinement() -> None:
    h = Harness()
    h.send(raw_options(normalization=False))
    h.audio(speech(800) + silence(1000))
    assert [k for k, _ in h.results() if k != "partial"] == ["final", "eou_update"]


def test_silence_chunk_advances_the_timeline_and_ends_the_utterance() -> None:
    h = Harness()
    h.send(raw_options())
    h.audio(speech(800))
    h.send(pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=2000)))
    assert [k for k, _ in h.results() if k != "partial"] == ["final", "final_refinement", "eou_update"]
    assert h.responses[-1].audio_cursors.received_data_ms == 2800
    assert h.responses[-1].eou_update.time_ms == 800


def test_external_classifier_eou_ends_the_utterance_at_received_data() -> None:
    h = Harness()
    h.send(raw_options(eou=pb.EouClassifierOptions(external_classifier=pb.ExternalEouClassifier())))
    h.audio(speech(700) + silence(2500))
    assert all(k == "partial" for k, _ in h.results()), "no server-side end of utterance"
    h.send(pb.StreamingRequest(eou=pb.Eou()))
    assert [k for k, _ in h.results() if k != "partial"] == ["final", "final_refinement", "eou_update"]
    eou = h.responses[-1]
    assert (
        eou.eou_update.time_ms == eou.audio_cursors.eou_time_ms == eou.audio_cursors.received_data_ms == 3200
    )
    assert_invariants(h.responses)


def test_eou_without_speech_sends_only_an_eou_update() -> None:
    h = Harness()
    h.send(raw_options(eou=pb.EouClassifierOptions(external_classifier=pb.ExternalEouClassifier())))
    h.audio(silence(500))
    h.send(pb.StreamingRequest(eou=pb.Eou()))
    assert h.results() == [("eou_update", "500")]


def test_half_close_flushes_the_open_utterance_then_ok() -> None:
    h = Harness()
    h.send(raw_options())
    h.audio(speech(900, 3000))
    h.half_close()
    assert [k for k, _ in h.results() if k != "partial"] == ["final", "final_refinement", "eou_update"]
    assert ("final", "three") in h.results()
    assert h.closed == Close("OK", "client half-closed")
    assert h.session.stats().close_reason == "completed"


def test_half_close_waits_for_the_final_decode() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(900))
    h.half_close()
    assert h.closed is None
    final = next(j for j in h.started if j.final and j.job_id in h.jobs)
    h.answer(final.job_id)
    assert h.closed == Close("OK", "client half-closed")


def test_full_data_holds_results_until_half_close_and_has_no_partials() -> None:
    h = Harness()
    h.send(raw_options(full_data=True))
    h.audio(speech(1500, 1000) + silence(1000) + speech(1500, 2000) + silence(1000), chunk_ms=200)
    assert h.results() == []
    h.half_close()
    assert [k for k, _ in h.results()] == [
        "final",
        "final_refinement",
        "eou_update",
        "final",
        "final_refinement",
        "eou_update",
    ]
    assert [t for k, t in h.results() if k == "final"] == ["one", "two"]
    assert h.closed == Close("OK", "client half-closed")
    assert not any(not j.final for j in h.started)
    assert_invariants(h.responses)


def test_noise_that_decodes_to_nothing_is_not_an_utterance() -> None:
    h = Harness()
    h.send(raw_options())
    h.audio(speech(500, 7) + silence(1000))  # level 7 has no word in the fake engine
    assert h.results() == []
    assert h.session.stats().finals == 0


def test_skipped_partial_is_retried_after_more_audio() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(600))
    first = next(j for j in h.started if not j.final)
    h.run(h.session.decode_skipped(first.job_id))
    h.jobs.pop(first.job_id)
    h.audio(speech(600))
    assert len([j for j in h.started if not j.final]) == 2
    assert h.session.stats().partials_skipped == 1


def test_decode_failure_of_a_final_is_internal() -> None:
    h = Harness(auto=False)
    h.send(raw_options())
    h.audio(speech(600) + silence(900))
    final = next(j for j in h.started if j.final)
    h.run(h.session.decode_failed(final.job_id, "RuntimeError: boom"))
    assert h.closed == Close("INTERNAL", "recognition failed on the server: RuntimeError: boom")


def test_odd_byte_chunks_are_reassembled() -> None:
    h = Harness()
    h.send(raw_options())
    pcm = speech(800) + silence(1000)
    for i in range(0, len(pcm), 333):
        h.send(chunk(pcm[i : i + 333]), advance_s=0.02)
    assert ("final", "one") in h.results()
    assert h.session.received_data_ms == 1800


# ---- WAV ----


def wav_header(rate: int = RATE, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFFF)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", 0xFFFFFFFF))
    )


def wav_options() -> pb.StreamingRequest:
    return pb.StreamingRequest(
        session_options=pb.StreamingOptions(
            recognition_model=pb.RecognitionModelOptions(
                audio_format=pb.AudioFormatOptions(
                    container_audio=pb.ContainerAudio(container_audio_type=pb.ContainerAudio.WAV)
                )
            )
        )
    )


def test_wav_container_header_split_across_chunks() -> None:
    h = Harness()
    h.send(wav_options())
    data = wav_header(16000) + speech(700, 2000, rate=16000) + silence(1000, rate=16000)
    h.send(chunk(data[:10]))
    h.send(chunk(data[10:30]))
    h.audio(data[30:], rate=16000)
    assert h.endpointer_calls == [(16000, 600)]
    assert ("final", "two") in h.results()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"OggS" + bytes(40),
            "chunk.data: invalid WAV container: the audio does not start with a RIFF/WAVE header "
            "(container_audio WAV needs the whole file, header first)",
        ),
        (wav_header(channels=2), "chunk.data: WAV has 2 channels; only mono (1 channel) is supported"),
        (wav_header(bits=8), "chunk.data: WAV has 8-bit samples; container_audio WAV must be 16-bit PCM"),
        (
            wav_header(rate=44100),
            "chunk.data: WAV sample rate 44100 Hz is not supported; use 8000, 16000 or 48000 Hz",
        ),
        (
            wav_header(tag=3, bits=32),
            "chunk.data: WAV format tag 0x0003 is not supported; container_audio WAV must be "
            "16-bit signed PCM",
        ),
    ],
    ids=["not-riff", "stereo", "8-bit", "44k1", "float"],
)
def test_undecodable_wav_is_invalid_argument(data: bytes, message: str) -> None:
    h = Harness()
    h.send(wav_options())
    h.send(chunk(data))
    assert h.closed == Close("INVALID_ARGUMENT", message)


# ---- limits and timers ----


def test_duration_limit_closes_with_closed_status_then_out_of_range() -> None:
    h = Harness(config=SessionConfig(limits=SessionLimits(max_audio_ms=1000)))
    h.send(raw_options())
    h.audio(silence(1000))
    assert h.closed is None, "exactly at the limit is allowed"
    h.send(chunk(silence(100)))
    message = (
        "audio duration limit: the session reached 1100 ms of audio, the limit is 1000 ms; "
        "start a new session to continue"
    )
    assert h.closed == Close("OUT_OF_RANGE", message)
    assert h.responses[-1].status_code.code_type == pb.CLOSED
    assert h.responses[-1].status_code.message == message


def test_silence_counts_towards_the_duration_limit() -> None:
    h = Harness(config=SessionConfig(limits=SessionLimits(max_audio_ms=1000)))
    h.send(raw_options())
    h.send(pb.StreamingRequest(silence_chunk=pb.SilenceChunk(duration_ms=1500)))
    assert h.closed is not None and h.closed.grpc_code == "OUT_OF_RANGE"


def test_size_limit_closes_with_closed_status_then_out_of_range() -> None:
    h = Harness(config=SessionConfig(limits=SessionLimits(max_data_bytes=3000)))
    h.send(raw_options())
    h.send(chunk(bytes(2000)))
    h.send(chunk(bytes(2000)))
    message = (
        "data size limit: the session received 4000 bytes of audio data, the limit is 3000 bytes; "
        "start a new session to continue"
    )
    assert h.closed == Close("OUT_OF_RANGE", message)
    assert h.responses[-1].status_code.code_type == pb.CLOSED


def test_idle_limit_fires_on_the_timer() -> None:
    h = Harness()
    h.send(raw_options())
    h.send(chunk(silence(100)), advance_s=0.1)
    assert h.session.get_timer() == pytest.approx(1.0)  # next keep-alive comes first
    h.run(h.session.handle_timer(1.0))
    assert h.responses[-1].status_code.code_type == pb.WORKING
    h.run(h.session.handle_timer(5.0))
    assert h.closed is None, "4.9 s after the last message"
    h.run(h.session.handle_timer(5.1))
    message = (
        "idle limit: no message from the client for 5 s "
        "(send audio or silence_chunk at least every few seconds)"
    )
    assert h.closed == Close("DEADLINE_EXCEEDED", message)
    assert h.responses[-1].status_code.code_type == pb.CLOSED
    assert h.responses[-1].status_code.message == message


def test_keepalives_every_interval_with_cursors() -> None:
    h = Harness()
    h.send(raw_options())
    for second in range(1, 4):
        h.send(chunk(silence(1000)), advance_s=0.0)
        h.run(h.session.handle_timer(float(second)))
    statuses = [r for r in h.responses if r.WhichOneof("Event") == "status_code"]
    assert len(statuses) == 4  # the first response plus one per second
    assert [s.audio_cursors.received_data_ms for s in statuses[1:]] == [1000, 2000, 3000]


def test_nothing_after_close() -> None:
    h = Harness()
    h.send(chunk(b"\x00\x00"))
    assert h.closed is not None
    assert h.session.receive(raw_options(), 1.0) == []
    assert h.session.handle_timer(100.0) == []


def test_before_options_only_the_idle_timer_runs() -> None:
    h = Harness()
    assert h.session.get_timer() == pytest.approx(5.0)
    h.run(h.session.handle_timer(2.0))
    assert h.responses == [] and h.session.get_timer() == pytest.approx(5.0)
    h.run(h.session.handle_timer(5.0))
    assert h.closed is not None and h.closed.grpc_code == "DEADLINE_EXCEEDED"
    assert h.responses[-1].status_code.code_type == pb.CLOSED


# ---- recognition hints (voicebot.stt.hints) ----


def test_hints_go_with_every_decode_partials_and_finals() -> None:
    hints = RecognitionHints(mode="digits", prompt="Say your account number.", min_digits=4, max_digits=8)
    h = Harness(hints=hints)
    h.send(raw_options())
    h.audio(speech(1500) + silence(800) + speech(600, 2000) + silence(800), chunk_ms=20)
    assert any(not j.final for j in h.started) and sum(j.final for j in h.started) >= 2
    assert all(j.hints == hints for j in h.started)


def test_without_hints_every_job_is_plain_and_the_output_unchanged() -> None:
    plain, hinted = Harness(), Harness(hints=menu_hints("", ["one"]))
    for h in (plain, hinted):
        h.send(raw_options())
        h.audio(speech(1500) + silence(800), chunk_ms=20)
    assert plain.started and all(j.hints is None for j in plain.started)
    # The session itself does nothing else with hints: the same responses, only the jobs differ.
    assert [r.WhichOneof("Event") for r in plain.responses] == [
        r.WhichOneof("Event") for r in hinted.responses
    ]
    assert [j.hints for j in hinted.started] == [hinted.hints] * len(hinted.started)


def test_a_final_lists_the_engines_n_best_after_the_first_alternative() -> None:
    h = Harness(auto=False, hints=menu_hints("", ["check my balance"]))
    h.send(raw_options())
    h.audio(speech(1000) + silence(300), chunk_ms=20)
    job = next(j for j in h.started if j.final)
    free = fake_decode(h.jobs.pop(job.job_id)).hypothesis
    empty = Hypothesis("", (), 0.1, "en-US")
    matched = Hypothesis("check my balance", (), 0.75, "en-US", alternatives=(free, empty))
    h.run(h.session.decoded(job.job_id, DecodeResult(matched, None)))
    h.audio(silence(400), chunk_ms=20)
    final = next(r for r in h.responses if r.WhichOneof("Event") == "final")
    alternatives = final.final.alternatives
    # The match first, then the free decode; an empty n-best entry is not sent.
    assert [(a.text, round(a.confidence, 3)) for a in alternatives] == [
        ("check my balance", 0.75), ("one", 0.875)
    ]
    # Both on the utterance's span, both with timed words (spread when the engine gave none).
    assert {(a.start_time_ms, a.end_time_ms) for a in alternatives} == {
        (alternatives[0].start_time_ms, alternatives[0].end_time_ms)
    }
    assert [w.text for w in alternatives[0].words] == ["check", "my", "balance"]
    assert [w.text for w in alternatives[1].words] == ["one"]
