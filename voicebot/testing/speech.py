"""Telephone-band test speech.

:func:`telephone_speech` synthesizes text with espeak-ng, band-limits and resamples it to 8 kHz
with sox, and passes it through G.711 (mu-law by default) and back, so the result is exactly what
voicebot's RTP path hands to recognition for a caller saying that text. :func:`real_speech_set`
lists the recorded human speech with transcripts in Debian's ``pocketsphinx-testdata``.
"""

from __future__ import annotations

# The standard library's audioop up to 3.12; the audioop-lts package provides the same module on 3.13+.
import audioop
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

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
    """Any WAV file -> 16-bit mono 8 kHz PCM, band-limited to 300-3400 Hz like a phone line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.raw"
        subprocess.run(
            [_need("sox"), "-q", str(wav_path), "-r", str(SAMPLE_RATE_HZ), "-c", "1", "-b", "16",
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
                     law: str = "ulaw") -> bytes:
    """``text`` spoken by espeak-ng as 16-bit 8 kHz PCM after a G.711 round trip."""
    with tempfile.TemporaryDirectory() as tmp:
        wav_path = Path(tmp) / "speech.wav"
        subprocess.run(
            [_need("espeak-ng"), "-v", voice, "-s", str(words_per_minute), "-w", str(wav_path), text],
            check=True,
        )
        return g711_roundtrip(to_telephone_band(wav_path), law)


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
