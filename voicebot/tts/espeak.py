"""The embedded prompt synthesizer: espeak-ng in a subprocess, resampled to 8 kHz.

espeak-ng writes a 22050 Hz 16-bit mono WAV to stdout. When it streams to a pipe it cannot seek
back to fill in the RIFF and ``data`` chunk sizes, so it writes placeholders (0x7ffff000-ish); the
parser below therefore trusts the ``fmt `` chunk and takes everything after the ``data`` header
as samples (:class:`voicebot.media.wav.WavHeaderReader`, the package's one RIFF reader). The process
runs through ``asyncio.create_subprocess_exec`` so synthesis never blocks the event loop, and the
audio is resampled with libsoxr.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess

from voicebot.media.wav import WAVE_FORMAT_PCM, WavError, WavHeaderReader
from voicebot.tts.base import PcmAudio, resample_pcm16
from voicebot.tts.errors import SynthesisError
from voicebot.tts.text import TEXT_NORMALIZER_VERSION, normalize_for_speech

DEFAULT_VOICE = "en-us"
DEFAULT_SPEED_WPM = 160
DEFAULT_TIMEOUT_S = 30.0


def parse_streamed_wav(data: bytes) -> tuple[int, bytes]:
    """Return (sample_rate_hz, 16-bit mono PCM) from a WAV whose chunk sizes may be placeholders."""
    reader = WavHeaderReader()
    try:
        found = reader.feed(data)
        if found is None:
            reader.close()
            raise WavError("WAV has no 'data' chunk", "no_data")
    except WavError as exc:
        if exc.kind in ("too_short", "not_riff", "not_wave"):
            raise SynthesisError(f"espeak-ng did not write a WAV file (first bytes {data[:12]!r})") from None
        raise SynthesisError(f"espeak-ng {exc}") from None
    fmt, pcm = found
    if fmt.format_tag != WAVE_FORMAT_PCM or fmt.channels != 1 or fmt.bits_per_sample != 16:
        raise SynthesisError(
            f"espeak-ng wrote format {fmt.format_tag}, {fmt.channels} channel(s), {fmt.bits_per_sample} bit; "
            "expected PCM mono 16-bit"
        )
    if len(pcm) % 2:
        pcm = pcm[:-1]
    return fmt.sample_rate_hz, pcm


def espeak_version(executable: str = "espeak-ng") -> str:
    """The engine's version line, part of the cache key (run once at start-up, not per call)."""
    path = shutil.which(executable)
    if path is None:
        raise SynthesisError(f"{executable} not found on PATH; install it (scripts/setup does)")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False, timeout=10)
    words = out.stdout.split()
    # "eSpeak NG text-to-speech: 1.51  Data at: ..." -> "1.51"
    for i, word in enumerate(words):
        if word.endswith("text-to-speech:") and i + 1 < len(words):
            return words[i + 1]
    return out.stdout.strip() or "unknown"


class EspeakSynthesizer:
    """:class:`~voicebot.tts.base.PromptSynthesizer` backed by the espeak-ng command."""

    def __init__(
        self,
        *,
        executable: str = "espeak-ng",
        speed_wpm: int = DEFAULT_SPEED_WPM,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        normalize_text: bool = True,
    ) -> None:
        path = shutil.which(executable)
        if path is None:
            raise SynthesisError(f"{executable} not found on PATH; install it (scripts/setup does)")
        if not 80 <= speed_wpm <= 450:
            raise SynthesisError(f"speed_wpm must be 80..450, not {speed_wpm}")
        self._path = path
        self._speed_wpm = speed_wpm
        self._timeout_s = timeout_s
        self._normalize = normalize_text
        text_rules = f"text{TEXT_NORMALIZER_VERSION}" if normalize_text else "textraw"
        self._engine_id = f"espeak-ng/{espeak_version(path)}/s{speed_wpm}/{text_rules}"

    @property
    def engine_id(self) -> str:
        return self._engine_id

    async def synthesize(self, text: str, *, voice: str = DEFAULT_VOICE) -> PcmAudio:
        if self._normalize and voice.lower().startswith("en"):
            # The rules are English; other languages' digits are left to espeak-ng's own reading.
            text = normalize_for_speech(text)
        if not text.strip():
            return PcmAudio(b"")
        # Text goes on stdin, never the command line: a prompt starting with "-" is not an option.
        proc = await asyncio.create_subprocess_exec(
            self._path, "--stdout", "-v", voice, "-s", str(self._speed_wpm),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(text.encode("utf-8")), self._timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SynthesisError(
                f"espeak-ng took longer than {self._timeout_s} s for {len(text)} characters", retryable=True
            ) from None
        except BaseException:
            # Cancelled with the call: do not leave the child behind.
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise SynthesisError(
                f"espeak-ng exited with {proc.returncode} for voice {voice!r}: "
                f"{stderr.decode('utf-8', 'replace').strip()}"
            )
        rate_hz, pcm = parse_streamed_wav(stdout)
        # soxr is CPU work of a few ms per second of audio; keep it off the event loop anyway.
        resampled = await asyncio.to_thread(resample_pcm16, pcm, rate_hz)
        return PcmAudio(resampled)
