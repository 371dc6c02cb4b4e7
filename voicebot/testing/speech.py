"""Telephone-band test speech.

:func:`telephone_speech` synthesizes text with espeak-ng, band-limits and resamples it to 8 kHz
with sox, and passes it through G.711 (mu-law by default) and back, so the result is exactly what
voicebot's RTP path hands to recognition for a caller saying that text. :func:`real_speech_set`
lists the recorded human speech with transcripts in Debian's ``pocketsphinx-testdata``.
:func:`add_line_noise` adds telephone-band line noise at an exact signal-to-noise ratio, measured
against the active speech (the 20 ms frames within 40 dB of the loudest), so leading and trailing
silence do not change what "20 dB" means.
"""

from __future__ import annotations

# The standard library's audioop up to 3.12; the audioop-lts package provides the same module on 3.13+.
import audioop
import shutil
import subprocess
import tempfile
import wave
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebot.media.frames import SAMPLE_RATE_HZ

POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")


class SpeechToolMissing(RuntimeError):
    """espeak-ng or sox is not installed (scripts/setup installs them)."""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SpeechToolMissing(f"{tool} not found on PATH; run scripts/setup")
    return path


def to_telephone_band(wav_path: Path) -> bytes:
    """Any WAV file -> 16-bit mono 8 kHz PCM, band-limited to 300-3400 Hz like a phone line.

    Deterministic: the same file gives the same bytes on every run. sox adds TPDF dither from a
    time-seeded generator whenever an effect (here ``sinc`` and the rate change) raises the internal
    bit depth, so without ``-D`` every synthesis of one text differed in its low bits and a bench
    or test result could change run to run on identical input (issue 12). ``-D`` turns dither off
    rather than fixing its seed (``-R``): the output then does not depend on sox's generator, and
    silence stays digital silence.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.raw"
        subprocess.run(
            [_need("sox"), "-q", "-D", str(wav_path), "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16",
             "-e", "signed-integer", "-t", "raw", str(out), "sinc", "300-3400"],
            check=True,
        )
        return out.read_bytes()


def g711_roundtrip(pcm16: bytes, law: str = "ulaw") -> bytes:
    """Encode 16-bit PCM to G.711 and decode it back (the loss a phone call adds)."""
    if law == "ulaw":
        return audioop.ulaw2lin(audioop.lin2ulaw(pcm16, 2), 2)
    if law == "alaw":
        return audioop.alaw2lin(audioop.lin2alaw(pcm16, 2), 2)
    raise ValueError(f"law must be 'ulaw' or 'alaw', not {law!r}")


def telephone_speech(text: str, *, voice: str = "en-us", words_per_minute: int = 150,
                     law: str = "ulaw", noise_snr_db: float | None = None) -> bytes:
    """``text`` spoken by espeak-ng as 16-bit 8 kHz PCM after a G.711 round trip, with line noise
    at ``noise_snr_db`` (None: a clean line) added before the codec, as on an analogue loop."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            [_need("espeak-ng"), "-v", voice, "-s", str(words_per_minute), "-w", str(wav_path), text],
            check=True,
        )
        return telephone_path(wav_path, law=law, noise_snr_db=noise_snr_db, noise_seed=text)


def telephone_path(wav_path: Path, *, law: str = "ulaw", noise_snr_db: float | None = None,
                   noise_seed: str = "") -> bytes:
    """Any WAV file through the phone line: 300-3400 Hz at 8 kHz, optional line noise at
    ``noise_snr_db`` (reproducible per ``noise_seed``), then a G.711 round trip."""
    pcm = to_telephone_band(wav_path)
    if noise_snr_db is not None:
        pcm = add_line_noise(pcm, noise_snr_db, seed=noise_seed)
    return g711_roundtrip(pcm, law)


# A frame counts as speech when its power is within this much of the loudest frame.
ACTIVE_RANGE_DB = 40.0
ACTIVE_FRAME_MS = 20
BAND_LOW_HZ = 300
BAND_HIGH_HZ = 3400


def _samples(pcm16: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(pcm16, dtype="<i2").astype(np.float64)


def active_power(pcm16: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> float:
    """Mean power (in squared 16-bit units) of the frames that carry speech; 0.0 for silence."""
    x = _samples(pcm16)
    frame = sample_rate_hz * ACTIVE_FRAME_MS // 1000
    n = len(x) // frame
    if n == 0:
        return float(np.mean(x * x)) if len(x) else 0.0
    powers = np.mean(x[: n * frame].reshape(n, frame) ** 2, axis=1)
    loudest = float(powers.max())
    if loudest <= 0.0:
        return 0.0
    active = powers[powers >= loudest * 10 ** (-ACTIVE_RANGE_DB / 10)]
    return float(active.mean())


def line_noise(n_samples: int, *, seed: str = "",
               sample_rate_hz: int = SAMPLE_RATE_HZ) -> npt.NDArray[np.float64]:
    """Gaussian noise band-limited to 300-3400 Hz with unit mean power (reproducible per seed)."""
    rng = np.random.default_rng(zlib.crc32(seed.encode("utf-8")))
    white = rng.standard_normal(n_samples)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sample_rate_hz)
    spectrum[(freqs < BAND_LOW_HZ) | (freqs > BAND_HIGH_HZ)] = 0.0
    noise: npt.NDArray[np.float64] = np.fft.irfft(spectrum, n_samples)
    power = float(np.mean(noise * noise))
    return noise / np.sqrt(power) if power > 0.0 else noise


def add_line_noise(pcm16: bytes, snr_db: float, *, seed: str = "",
                   sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """``pcm16`` plus telephone-band noise whose power is ``snr_db`` below the active speech power
    (see :func:`active_power`); silent input stays silent (there is no level to refer to)."""
    signal = _samples(pcm16)
    power = active_power(pcm16, sample_rate_hz)
    if power <= 0.0 or len(signal) == 0:
        return pcm16
    noise = line_noise(len(signal), seed=seed, sample_rate_hz=sample_rate_hz)
    noisy = signal + noise * np.sqrt(power / 10 ** (snr_db / 10))
    out: bytes = np.clip(np.round(noisy), -32768, 32767).astype("<i2").tobytes()
    return out


def silence(duration_ms: int) -> bytes:
    return b"\x00\x00" * (SAMPLE_RATE_HZ * duration_ms // 1000)


def write_wav(path: Path, pcm16: bytes, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate_hz)
        w.writeframes(pcm16)


@dataclass(frozen=True, slots=True)
class RecordedUtterance:
    name: str
    wav_path: Path
    transcript: str


def real_speech_set() -> list[RecordedUtterance]:
    """Recorded human speech with reference transcripts (cards + librivox sets)."""
    items: list[RecordedUtterance] = []
    for subset in ("cards", "librivox"):
        folder = POCKETSPHINX_DATA / subset
        trans_file = folder / ("cards.transcription" if subset == "cards" else "transcription")
        if not trans_file.exists():
            continue
        for line in trans_file.read_text().splitlines():
            line = line.strip()
            if not line or "(" not in line:
                continue
            text, _, name = line.rpartition("(")
            name = name.rstrip(")").strip()
            wav_path = folder / f"{Path(name).name}.wav"
            if wav_path.exists():
                words = [w for w in text.split() if w not in ("<s>", "</s>")]
                items.append(RecordedUtterance(name, wav_path, " ".join(words).lower()))
    return items
