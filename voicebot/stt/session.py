"""One SpeechKit STT v3 ``RecognizeStreaming`` session as a sans-IO state machine.

Theory of operation. :class:`Session` never touches a socket, a thread or a clock. The adapter
(``server.py``) feeds it what happens and carries out the commands it returns:

* ``receive(request, now_s)`` for every ``StreamingRequest``; ``half_close()`` when the client ends
  its side; ``decoded(job_id, result)`` / ``decode_skipped(job_id)`` / ``decode_failed(job_id,
  error)`` when the worker pool is done with a job; ``handle_timer(now_s)`` at ``get_timer()``.
* Commands out: :class:`Send` (a response; the adapter stamps ``response_wall_time_ms`` when it
  writes it), :class:`StartDecode` (hand a span of PCM to the pool), :class:`CancelDecode` (a
  speculative or partial decode that is no longer wanted) and :class:`Close` (end the RPC with a
  gRPC status, ``"OK"`` included).

The timeline is the audio itself: ``received_data_ms`` advances with every ``chunk`` and
``silence_chunk``; the endpointer (``voicebot.stt.endpoint``) segments it into utterances. While
the caller speaks (REAL_TIME mode) a partial decode of the growing utterance is requested every
``partial_interval_ms`` of new audio, at most one at a time, and the pool may skip it when busy, so
partials get rarer under load. When a pause *begins* (``PauseStarted``) the final decode starts at
once; if speech resumes it is cancelled, and if the pause reaches the limit (``UtteranceEnded``)
its result becomes the final, so the end-of-speech -> final latency is the pause length minus the
decode time rather than their sum. Finals leave in utterance order, each followed by a
``final_refinement`` (when text normalization is ENABLED) and an ``eou_update``. In FULL_DATA mode
there are no partials and the results are held until the client half-closes. Half-close flushes the
open utterance and, once every final is out, closes with OK.

Recognition hints (``voicebot.stt.hints``, the ``x-voicebot-hints-bin`` metadata extension) are
given once, at construction, by the adapter that read them; every decode of the session carries
them (:attr:`DecodeJob.hints`), and a final whose hypothesis has n-best entries (menu / yes-no
rescoring) lists them after the first alternative. A session without hints is exactly the plain one.

Limits (5 min of audio, 10 MiB of data, 5 s idle by default) end the session with a
``status_code`` CLOSED response and then a gRPC status whose message names the limit:
OUT_OF_RANGE for audio duration and data size (the client went past a documented per-session range
and should rotate sessions), DEADLINE_EXCEEDED for idle. RESOURCE_EXHAUSTED is kept for server
overload (``pool.py``), so a client can tell "my session is too long" from "the server is full".
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from voicebot.media.wav import WAVE_FORMAT_PCM, WavError, WavFormat, WavHeaderReader
from voicebot.stt._proto import stt_pb2 as pb
from voicebot.stt.engine import (
    Endpointer,
    EndpointEvent,
    Hypothesis,
    PauseStarted,
    SpeechResumed,
    SpeechStarted,
    UnsupportedLanguage,
    UtteranceEnded,
)
from voicebot.stt.errors import (
    DecodeFailed,
    IdleTimeout,
    InvalidRequest,
    SessionLimitExceeded,
    SttServerError,
)
from voicebot.stt.hints import RecognitionHints

SUPPORTED_RATES_HZ = (8000, 16000, 48000)
# ``max_pause_between_words_hint_ms`` is clamped to this range: below 300 ms ordinary gaps between
# words would split utterances, above 5 s the 5 s idle rule makes longer pauses meaningless.
MIN_PAUSE_HINT_MS = 300
MAX_PAUSE_HINT_MS = 5000
DEFAULT_PAUSE_MS = 600  # DefaultEouClassifier type DEFAULT (or unset)
HIGH_SENSITIVITY_PAUSE_MS = 400  # DefaultEouClassifier type HIGH: faster, more false ends
# With the external classifier only the client's ``eou`` (or half-close) ends an utterance.
EXTERNAL_PAUSE_MS = 24 * 3600 * 1000
# A partial is not started when the audio so far ends in at least this much non-speech.
PARTIAL_HOLD_NONSPEECH_MS = 60
_MAX_WAV_HEADER_BYTES = 64 * 1024
_OPTIONS = "session_options"
_MODEL = "session_options.recognition_model"
_FORMAT = f"{_MODEL}.audio_format"


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Per-session limits (the SpeechKit streaming limits by default)."""

    max_audio_ms: int = 300_000  # audio duration, chunks and silence_chunks together
    max_data_bytes: int = 10 * 1024 * 1024  # bytes of chunk.data (10 MiB)
    idle_timeout_s: float = 5.0  # longest gap between two client messages


@dataclass(frozen=True, slots=True)
class SessionConfig:
    limits: SessionLimits = field(default_factory=SessionLimits)
    keepalive_interval_s: float = 1.0  # status_code WORKING cadence
    partial_interval_ms: int = 500  # new audio between two partial decodes of one utterance
    preroll_ms: int = 150  # audio before the detected speech start given to the decoder
    postroll_ms: int = 150  # audio after the detected speech end given to the decoder (when received)


# ---- commands ----


@dataclass(frozen=True, slots=True)
class DecodeJob:
    """A span of 16-bit mono PCM for the engine; ``offset_ms`` is where it starts on the timeline."""

    job_id: int
    final: bool
    pcm16: bytes
    sample_rate_hz: int
    offset_ms: int
    language: str | None
    normalize: bool
    hints: RecognitionHints | None = None  # the session's recognition hints, None = plain decode


@dataclass(frozen=True, slots=True)
class DecodeResult:
    hypothesis: Hypothesis
    normalized_text: str | None  # set when the job asked for normalization


@dataclass(frozen=True, slots=True)
class Send:
    response: pb.StreamingResponse


@dataclass(frozen=True, slots=True)
class StartDecode:
    job: DecodeJob


@dataclass(frozen=True, slots=True)
class CancelDecode:
    job_id: int


@dataclass(frozen=True, slots=True)
class Close:
    """End the RPC: ``grpc_code`` is a ``grpc.StatusCode`` member name (``"OK"`` for success)."""

    grpc_code: str
    message: str


Command = Send | StartDecode | CancelDecode | Close


@dataclass(frozen=True, slots=True)
class SessionStats:
    audio_ms: int
    data_bytes: int
    finals: int
    partials: int
    partials_skipped: int
    close_reason: str


# ---- internal state ----


@dataclass(slots=True)
class _Pending:
    """One entry of the in-order output queue: a final (job) and/or an eou_update."""

    start_ms: int
    end_ms: int
    eou_time_ms: int
    send_eou: bool
    job_id: int | None = None  # None: only an eou_update (external ``eou`` with no speech)
    result: DecodeResult | None = None


@dataclass(slots=True)
class _Speculation:
    job_id: int
    start_ms: int
    end_ms: int
    result: DecodeResult | None = None


class _WavHeader:
    """The container_audio WAV header of one stream (:class:`voicebot.media.wav.WavHeaderReader`)
    with this server's limits and the request-field wording of its errors."""

    def __init__(self) -> None:
        self._reader = WavHeaderReader(max_header_bytes=_MAX_WAV_HEADER_BYTES)

    def feed(self, data: bytes) -> tuple[int, bytes] | None:
        """Returns (sample_rate_hz, first PCM bytes) once the header is complete, else None."""
        try:
            found = self._reader.feed(data)
        except WavError as exc:
            if exc.kind in ("not_riff", "not_wave"):
                raise InvalidRequest(
                    "chunk.data: invalid WAV container: the audio does not start with a RIFF/WAVE header "
                    "(container_audio WAV needs the whole file, header first)"
                ) from None
            raise InvalidRequest(f"chunk.data: invalid WAV container: {exc}") from None
        if found is None:
            return None
        fmt, pcm = found
        return self._check_fmt(fmt), pcm

    @staticmethod
    def _check_fmt(fmt: WavFormat) -> int:
        if fmt.format_tag != WAVE_FORMAT_PCM:
            raise InvalidRequest(
                f"chunk.data: WAV format tag {fmt.format_tag:#06x} is not supported; "
                "container_audio WAV must be 16-bit signed PCM"
            )
        if fmt.bits_per_sample != 16:
            raise InvalidRequest(
                f"chunk.data: WAV has {fmt.bits_per_sample}-bit samples; "
                "container_audio WAV must be 16-bit PCM"
            )
        if fmt.channels != 1:
            raise InvalidRequest(
                f"chunk.data: WAV has {fmt.channels} channels; only mono (1 channel) is supported"
            )
        if fmt.sample_rate_hz not in SUPPORTED_RATES_HZ:
            raise InvalidRequest(
                f"chunk.data: WAV sample rate {fmt.sample_rate_hz} Hz is not supported; "
                "use 8000, 16000 or 48000 Hz"
            )
        return fmt.sample_rate_hz


def _enum_name(enum_type: object, value: int) -> str:
    try:
        return str(enum_type.Name(value))  # type: ignore[attr-defined]
    except ValueError:
        return str(value)


class Session:
    """The protocol core of one recognition stream (see the module docstring)."""

    def __init__(
        self,
        *,
        session_uuid: str,
        user_request_id: str,
        resolve_language: Callable[[Sequence[str]], str | None],
        endpointer_factory: Callable[[int, int], Endpointer],
        now_s: float,
        config: SessionConfig | None = None,
        hints: RecognitionHints | None = None,
    ) -> None:
        """``endpointer_factory(sample_rate_hz, max_pause_ms)`` makes the segmenter once the rate is known;
        ``hints`` (from the call metadata) go with every decode of this session."""
        self.config = config or SessionConfig()
        self.hints = hints
        self._uuid = pb.SessionUuid(uuid=session_uuid, user_request_id=user_request_id)
        self._resolve_language = resolve_language
        self._endpointer_factory = endpointer_factory
        self._last_message_s = now_s
        self._last_status_s = now_s
        # options
        self._started = False
        self._rate_hz = 0
        self._wav: _WavHeader | None = None
        self._language: str | None = None
        self._normalize = False
        self._full_data = False
        self._external_eou = False
        self._max_pause_ms = DEFAULT_PAUSE_MS
        self._endpointer: Endpointer | None = None
        # audio
        self._samples = 0  # samples on the timeline (silence_chunk included)
        self._data_bytes = 0
        self._carry = b""  # an odd trailing byte waiting for its pair
        self._pcm = bytearray()
        self._pcm_start_sample = 0
        # utterance state
        self._utt_start_ms: int | None = None  # set from SpeechStarted to UtteranceEnded
        self._paused = False
        self._speculation: _Speculation | None = None
        self._partial_job: int | None = None
        self._partial_end_ms = 0
        self._next_partial_ms = 0
        self._pending: deque[_Pending] = deque()
        self._next_job_id = 1
        self._offsets: dict[int, int] = {}  # job id -> timeline ms of the job's first sample
        # cursors (all monotonic)
        self._final_index = 0
        self._final_time_ms = 0
        self._eou_time_ms = 0
        # lifecycle
        self._input_done = False
        self._closed = False
        self._close_reason = ""
        self._finals = 0
        self._partials = 0
        self._partials_skipped = 0

    # ---- public surface ----

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def received_data_ms(self) -> int:
        return self._samples * 1000 // self._rate_hz if self._rate_hz else 0

    def stats(self) -> SessionStats:
        return SessionStats(
            audio_ms=self.received_data_ms,
            data_bytes=self._data_bytes,
            finals=self._finals,
            partials=self._partials,
            partials_skipped=self._partials_skipped,
            close_reason=self._close_reason,
        )

    def receive(self, request: pb.StreamingRequest, now_s: float) -> list[Command]:
        if self._closed:
            return []
        self._last_message_s = now_s
        out: list[Command] = []
        try:
            self._receive(request, out)
        except SttServerError as exc:
            return out + self._fail(exc)
        return out

    def half_close(self) -> list[Command]:
        """The client ended its request stream: flush the open utterance, then close with OK."""
        if self._closed or self._input_done:
            return []
        out: list[Command] = []
        if not self._started:
            return self._finish("OK", "client closed before session_options", out)
        self._input_done = True
        self._cancel_partial(out)
        if self._endpointer is not None:
            self._on_events(self._endpointer.flush(), out, forced_eou_ms=None)
        self._drain(out)
        return out

    def decoded(self, job_id: int, result: DecodeResult) -> list[Command]:
        if self._closed:
            return []
        out: list[Command] = []
        if job_id == self._partial_job:
            self._partial_job = None
            self._emit_partial(result, self._offsets.pop(job_id, 0), out)
        elif self._speculation is not None and job_id == self._speculation.job_id:
            self._speculation.result = result
        else:
            for item in self._pending:
                if item.job_id == job_id:
                    item.result = result
        self._drain(out)
        return out

    def decode_skipped(self, job_id: int) -> list[Command]:
        """The pool had no room for a partial; the next one is tried after more audio."""
        if job_id == self._partial_job:
            self._partial_job = None
            self._offsets.pop(job_id, None)
            self._partials_skipped += 1
        return []

    def decode_failed(self, job_id: int, error: str) -> list[Command]:
        if self._closed:
            return []
        if job_id == self._partial_job:  # a partial is best effort
            self._partial_job = None
            return []
        wanted = any(item.job_id == job_id for item in self._pending) or (
            self._speculation is not None and self._speculation.job_id == job_id
        )
        if not wanted:
            return []
        return self._fail(DecodeFailed(f"recognition failed on the server: {error}"))

    def get_timer(self) -> float:
        """When ``handle_timer`` must run next (same clock as ``now_s``)."""
        idle_deadline = self._last_message_s + self.config.limits.idle_timeout_s
        if not self._started:
            return idle_deadline  # keep-alives start with the session
        deadline = self._last_status_s + self.config.keepalive_interval_s
        if not self._input_done:
            deadline = min(deadline, idle_deadline)
        return deadline

    def handle_timer(self, now_s: float) -> list[Command]:
        if self._closed:
            return []
        limit_s = self.config.limits.idle_timeout_s
        if not self._input_done and now_s - self._last_message_s >= limit_s:
            return self._fail(
                IdleTimeout(
                    f"idle limit: no message from the client for {limit_s:g} s "
                    "(send audio or silence_chunk at least every few seconds)"
                )
            )
        out: list[Command] = []
        if self._started and now_s - self._last_status_s >= self.config.keepalive_interval_s:
            self._last_status_s = now_s
            out.append(self._status(pb.WORKING, ""))
        return out

    # ---- requests ----

    def _receive(self, request: pb.StreamingRequest, out: list[Command]) -> None:
        kind = request.WhichOneof("Event")
        if self._input_done:
            raise InvalidRequest("request after the client half-closed the stream")
        if kind == "session_options":
            if self._started:
                raise InvalidRequest("session_options may only be sent once, as the first message")
            self._start(request.session_options, out)
            return
        if kind is None:
            raise InvalidRequest("StreamingRequest has no event set (expected chunk, silence_chunk or eou)")
        if not self._started:
            raise InvalidRequest(
                f"{kind} arrived before session_options; the first message must be session_options"
            )
        if kind == "chunk":
            self._on_chunk(request.chunk.data, out)
        elif kind == "silence_chunk":
            duration_ms = request.silence_chunk.duration_ms
            if duration_ms < 0:
                raise InvalidRequest(f"silence_chunk.duration_ms must be >= 0, got {duration_ms}")
            self._on_silence(duration_ms, out)
        elif kind == "eou":
            self._on_eou(out)

    def _start(self, options: pb.StreamingOptions, out: list[Command]) -> None:
        model = options.recognition_model
        if not model.HasField("audio_format"):
            raise InvalidRequest(f"{_FORMAT} is required (raw_audio LINEAR16_PCM or container_audio WAV)")
        fmt = model.audio_format
        which = fmt.WhichOneof("AudioFormat")
        if which == "raw_audio":
            raw = fmt.raw_audio
            if raw.audio_encoding != pb.RawAudio.LINEAR16_PCM:
                name = _enum_name(pb.RawAudio.AudioEncoding, raw.audio_encoding)
                raise InvalidRequest(f"{_FORMAT}.raw_audio.audio_encoding must be LINEAR16_PCM, got {name}")
            if raw.sample_rate_hertz not in SUPPORTED_RATES_HZ:
                raise InvalidRequest(
                    f"{_FORMAT}.raw_audio.sample_rate_hertz must be 8000, 16000 or 48000, "
                    f"got {raw.sample_rate_hertz}"
                )
            channels = raw.audio_channel_count or 1
            if channels != 1:
                raise InvalidRequest(
                    f"{_FORMAT}.raw_audio.audio_channel_count must be 1 (mono), got {raw.audio_channel_count}"
                )
            self._rate_hz = int(raw.sample_rate_hertz)
        elif which == "container_audio":
            kind = fmt.container_audio.container_audio_type
            if kind != pb.ContainerAudio.WAV:
                name = _enum_name(pb.ContainerAudio.ContainerAudioType, kind)
                raise InvalidRequest(
                    f"{_FORMAT}.container_audio.container_audio_type {name} is not supported by this server; "
                    "use WAV or raw_audio LINEAR16_PCM"
                )
            self._wav = _WavHeader()
        else:
            raise InvalidRequest(f"{_FORMAT} must set raw_audio or container_audio")

        restriction = model.language_restriction
        codes: list[str] = []
        if restriction.restriction_type != pb.LanguageRestrictionOptions.BLACKLIST:
            codes = list(restriction.language_code)  # a blacklist is only a hint: detect instead
        try:
            self._language = self._resolve_language(codes)
        except UnsupportedLanguage as exc:
            raise InvalidRequest(f"{_MODEL}.language_restriction.language_code: {exc.message}") from exc

        enabled = pb.TextNormalizationOptions.TEXT_NORMALIZATION_ENABLED
        self._normalize = model.text_normalization.text_normalization == enabled
        self._full_data = model.audio_processing_type == pb.RecognitionModelOptions.FULL_DATA
        eou = options.eou_classifier
        if eou.WhichOneof("Classifier") == "external_classifier":
            self._external_eou = True
            self._max_pause_ms = EXTERNAL_PAUSE_MS
        elif eou.WhichOneof("Classifier") == "default_classifier":
            hint = eou.default_classifier.max_pause_between_words_hint_ms
            if hint < 0:
                raise InvalidRequest(
                    f"{_OPTIONS}.eou_classifier.default_classifier.max_pause_between_words_hint_ms "
                    f"must be >= 0, got {hint}"
                )
            if hint:
                self._max_pause_ms = max(MIN_PAUSE_HINT_MS, min(MAX_PAUSE_HINT_MS, int(hint)))
            elif eou.default_classifier.type == pb.DefaultEouClassifier.HIGH:
                self._max_pause_ms = HIGH_SENSITIVITY_PAUSE_MS
        self._started = True
        if self._rate_hz:
            self._endpointer = self._endpointer_factory(self._rate_hz, self._max_pause_ms)
        # The first response is a WORKING status, as in the official example's output.
        out.append(self._status(pb.WORKING, ""))

    def _on_chunk(self, data: bytes, out: list[Command]) -> None:
        limits = self.config.limits
        self._data_bytes += len(data)
        if self._data_bytes > limits.max_data_bytes:
            raise SessionLimitExceeded(
                f"data size limit: the session received {self._data_bytes} bytes of audio data, the limit "
                f"is {limits.max_data_bytes} bytes; start a new session to continue"
            )
        if self._wav is not None:
            header = self._wav.feed(data)
            if header is None:
                return
            self._rate_hz, data = header
            self._wav = None
            self._endpointer = self._endpointer_factory(self._rate_hz, self._max_pause_ms)
        data = self._carry + data
        if len(data) % 2:
            data, self._carry = data[:-1], data[-1:]
        else:
            self._carry = b""
        self._check_duration(len(data) // 2)
        self._samples += len(data) // 2
        self._pcm += data
        assert self._endpointer is not None
        self._on_events(self._endpointer.feed(data), out, forced_eou_ms=None)
        self._after_audio(out)

    def _on_silence(self, duration_ms: int, out: list[Command]) -> None:
        if self._endpointer is None:  # WAV header not complete yet: nothing to place the silence on
            raise InvalidRequest("silence_chunk arrived before the WAV header of container_audio")
        samples = self._rate_hz * duration_ms // 1000
        self._check_duration(samples)
        self._samples += samples
        self._pcm += bytes(2 * samples)
        self._on_events(self._endpointer.feed_silence(duration_ms), out, forced_eou_ms=None)
        self._after_audio(out)

    def _on_eou(self, out: list[Command]) -> None:
        """A client-side end of utterance: close the open one now (eou_time_ms = received_data_ms)."""
        at_ms = self.received_data_ms
        self._cancel_partial(out)
        before = len(self._pending)
        if self._endpointer is not None:
            self._on_events(self._endpointer.flush(), out, forced_eou_ms=at_ms)
        if len(self._pending) == before:
            self._pending.append(_Pending(start_ms=at_ms, end_ms=at_ms, eou_time_ms=at_ms, send_eou=True))
        self._drain(out)

    def _check_duration(self, new_samples: int) -> None:
        limit_ms = self.config.limits.max_audio_ms
        total_ms = (self._samples + new_samples) * 1000 // self._rate_hz
        if total_ms > limit_ms:
            raise SessionLimitExceeded(
                f"audio duration limit: the session reached {total_ms} ms of audio, the limit is "
                f"{limit_ms} ms; start a new session to continue"
            )

    # ---- endpointing ----

    def _on_events(
        self, events: list[EndpointEvent], out: list[Command], *, forced_eou_ms: int | None
    ) -> None:
        for event in events:
            if isinstance(event, SpeechStarted):
                self._utt_start_ms = event.start_ms
                self._paused = False
                self._next_partial_ms = event.start_ms + self.config.partial_interval_ms
                self._partial_end_ms = event.start_ms
            elif isinstance(event, PauseStarted):
                self._paused = True
                self._cancel_partial(out)
                if not self._full_data:
                    self._speculate(event, out)
            elif isinstance(event, SpeechResumed):
                self._paused = False
                self._drop_speculation(out)
            elif isinstance(event, UtteranceEnded):
                self._end_utterance(event, out, forced_eou_ms)

    def _speculate(self, event: PauseStarted, out: list[Command]) -> None:
        self._drop_speculation(out)
        job = self._job(event.utterance_start_ms, event.pause_start_ms, final=True)
        self._speculation = _Speculation(job.job_id, event.utterance_start_ms, event.pause_start_ms)
        out.append(StartDecode(job))

    def _drop_speculation(self, out: list[Command]) -> None:
        if self._speculation is not None:
            self._cancel(self._speculation.job_id, out)
            self._speculation = None

    def _end_utterance(self, event: UtteranceEnded, out: list[Command], forced_eou_ms: int | None) -> None:
        self._utt_start_ms = None
        self._paused = False
        self._cancel_partial(out)
        if forced_eou_ms is not None:
            send_eou, eou_ms = True, forced_eou_ms
        else:
            # With the external classifier an utterance cut by length gets its final, but only the
            # client's eou produces an eou_update ("there could be several finals before eou update").
            send_eou, eou_ms = not self._external_eou, event.end_ms
        item = _Pending(start_ms=event.start_ms, end_ms=event.end_ms, eou_time_ms=eou_ms, send_eou=send_eou)
        spec = self._speculation
        self._speculation = None
        if spec is not None and (spec.start_ms, spec.end_ms) == (event.start_ms, event.end_ms):
            item.job_id, item.result = spec.job_id, spec.result
        else:
            if spec is not None:
                self._cancel(spec.job_id, out)
            job = self._job(event.start_ms, event.end_ms, final=True)
            item.job_id = job.job_id
            out.append(StartDecode(job))
        self._pending.append(item)

    def _after_audio(self, out: list[Command]) -> None:
        now_ms = self.received_data_ms
        if (
            not self._full_data
            and self._utt_start_ms is not None
            and not self._paused
            and self._partial_job is None
            and not self._pending
            and now_ms >= self._next_partial_ms
            and not self._pause_may_be_starting()
        ):
            job = self._job(self._utt_start_ms, now_ms, final=False)
            self._partial_job = job.job_id
            self._partial_end_ms = now_ms
            self._next_partial_ms = now_ms + self.config.partial_interval_ms
            out.append(StartDecode(job))
        self._drain(out)
        self._trim()

    def _pause_may_be_starting(self) -> bool:
        """The audio ends in non-speech: a partial started now would likely be cancelled by the
        pause a moment later and hold a worker the speculative final needs; wait for the next chunk.
        (``trailing_nonspeech_ms`` is WebRtcEndpointer's; other endpointers never skip.)"""
        trailing_ms = int(getattr(self._endpointer, "trailing_nonspeech_ms", 0))
        return trailing_ms >= PARTIAL_HOLD_NONSPEECH_MS

    def _trim(self) -> None:
        """Forget audio no decode can need any more (keep a second before the utterance)."""
        anchor_ms = self._utt_start_ms if self._utt_start_ms is not None else self.received_data_ms
        keep_sample = max(0, (anchor_ms - self.config.preroll_ms - 1000) * self._rate_hz // 1000)
        excess = keep_sample - self._pcm_start_sample
        if excess > 2 * self._rate_hz:  # trim in steps of seconds, not on every chunk
            del self._pcm[: 2 * excess]
            self._pcm_start_sample = keep_sample

    def _job(self, start_ms: int, end_ms: int, *, final: bool) -> DecodeJob:
        first_ms = max(0, start_ms - self.config.preroll_ms)
        last_ms = min(self.received_data_ms, end_ms + self.config.postroll_ms) if final else end_ms
        first = max(first_ms * self._rate_hz // 1000, self._pcm_start_sample)
        last = max(first, last_ms * self._rate_hz // 1000)
        pcm = bytes(self._pcm[2 * (first - self._pcm_start_sample) : 2 * (last - self._pcm_start_sample)])
        job_id = self._next_job_id
        self._next_job_id += 1
        offset_ms = first * 1000 // self._rate_hz
        self._offsets[job_id] = offset_ms
        return DecodeJob(
            job_id=job_id,
            final=final,
            pcm16=pcm,
            sample_rate_hz=self._rate_hz,
            offset_ms=offset_ms,
            language=self._language,
            normalize=final and self._normalize,
            hints=self.hints,
        )

    def _cancel(self, job_id: int, out: list[Command]) -> None:
        self._offsets.pop(job_id, None)
        out.append(CancelDecode(job_id))

    def _cancel_partial(self, out: list[Command]) -> None:
        if self._partial_job is not None:
            self._cancel(self._partial_job, out)
            self._partial_job = None

    # ---- output ----

    def _emit_partial(self, result: DecodeResult, offset_ms: int, out: list[Command]) -> None:
        if (
            self._utt_start_ms is None
            or self._paused
            or self._pending
            or self._input_done
            or not result.hypothesis.text.strip()
        ):
            return  # stale: the utterance moved on while the partial was decoding
        alternative = self._alternative(
            result.hypothesis, self._utt_start_ms, self._partial_end_ms, 0.0, offset_ms
        )
        self._partials += 1
        out.append(Send(self._response(partial=pb.AlternativeUpdate(alternatives=[alternative]))))

    def _drain(self, out: list[Command]) -> None:
        """Send finished finals in utterance order (all at the end in FULL_DATA mode)."""
        if self._full_data and not self._input_done:
            return
        while self._pending:
            item = self._pending[0]
            if item.job_id is not None and item.result is None:
                break
            self._pending.popleft()
            result = item.result
            offset_ms = self._offsets.pop(item.job_id, 0) if item.job_id is not None else 0
            if result is not None and result.hypothesis.text.strip():
                self._emit_final(item, result, offset_ms, out)
            elif not item.send_eou or item.job_id is not None:
                continue  # nothing was recognized: noise, not an utterance
            if item.send_eou:
                self._eou_time_ms = max(self._eou_time_ms, item.eou_time_ms)
                out.append(Send(self._response(eou_update=pb.EouUpdate(time_ms=item.eou_time_ms))))
        if self._input_done and not self._pending and self._speculation is None:
            self._finish("OK", "client half-closed", out)

    def _emit_final(self, item: _Pending, result: DecodeResult, offset_ms: int, out: list[Command]) -> None:
        self._final_index += 1
        self._finals += 1
        self._final_time_ms = max(self._final_time_ms, item.end_ms)
        hyp = result.hypothesis
        # The n-best entries a hinted decode found (menu / yes-no rescoring) follow the first.
        alternatives = [
            self._alternative(h, item.start_ms, item.end_ms, h.confidence, offset_ms)
            for h in (hyp, *(a for a in hyp.alternatives if a.text.strip()))
        ]
        out.append(Send(self._response(final=pb.AlternativeUpdate(alternatives=alternatives))))
        if self._normalize:
            normalized = result.normalized_text
            if normalized is None:
                normalized = result.hypothesis.text
            refined = pb.Alternative(
                text=normalized,
                start_time_ms=item.start_ms,
                end_time_ms=item.end_ms,
                confidence=result.hypothesis.confidence,
            )
            refinement = pb.FinalRefinement(
                final_index=self._final_index, normalized_text=pb.AlternativeUpdate(alternatives=[refined])
            )
            out.append(Send(self._response(final_refinement=refinement)))

    def _alternative(
        self, hyp: Hypothesis, start_ms: int, end_ms: int, confidence: float, offset_ms: int
    ) -> pb.Alternative:
        """The hypothesis on the session timeline; every alternative has at least one timed word."""
        words = [
            pb.Word(
                text=w.text.strip(),
                start_time_ms=min(max(start_ms, offset_ms + w.start_ms), end_ms),
                end_time_ms=min(max(start_ms, offset_ms + w.end_ms), end_ms),
            )
            for w in hyp.words
            if w.text.strip()
        ]
        if not words:
            # The engine gave no timings: spread the words evenly over the span.
            texts = hyp.text.split()
            step = (end_ms - start_ms) / max(1, len(texts))
            words = [
                pb.Word(
                    text=t, start_time_ms=start_ms + int(i * step), end_time_ms=start_ms + int((i + 1) * step)
                )
                for i, t in enumerate(texts)
            ]
        alternative = pb.Alternative(
            words=words,
            text=hyp.text.strip(),
            start_time_ms=start_ms,
            end_time_ms=end_ms,
            confidence=confidence,
        )
        if hyp.language:
            # The engine's detection probability (model.DetectedHypothesis); an engine that does
            # not estimate it decoded in the language it was told to, so 1.0.
            probability = float(getattr(hyp, "language_probability", 1.0))
            alternative.languages.append(
                pb.LanguageEstimation(language_code=hyp.language, probability=probability)
            )
        return alternative

    def _cursors(self) -> pb.AudioCursors:
        received = self.received_data_ms
        return pb.AudioCursors(
            received_data_ms=received,
            partial_time_ms=received,
            final_time_ms=self._final_time_ms,
            final_index=self._final_index,
            eou_time_ms=self._eou_time_ms,
        )

    def _response(self, **event: object) -> pb.StreamingResponse:
        response = pb.StreamingResponse(
            session_uuid=self._uuid, audio_cursors=self._cursors(), channel_tag="0", **event  # type: ignore[arg-type]
        )
        return response

    def _status(self, code: int, message: str) -> Send:
        return Send(self._response(status_code=pb.StatusCode(code_type=code, message=message)))  # type: ignore[arg-type]

    # ---- ending ----

    def _fail(self, exc: SttServerError) -> list[Command]:
        out: list[Command] = []
        if isinstance(exc, (SessionLimitExceeded, IdleTimeout)):
            out.append(self._status(pb.CLOSED, exc.message))
        return self._finish(exc.grpc_code, exc.message, out)

    def _finish(self, grpc_code: str, message: str, out: list[Command]) -> list[Command]:
        self._closed = True
        self._close_reason = message if grpc_code != "OK" else "completed"
        if self._speculation is not None:
            self._cancel(self._speculation.job_id, out)
            self._speculation = None
        self._cancel_partial(out)
        out.append(Close(grpc_code, message))
        return out
