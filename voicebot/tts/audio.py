"""Audio-file prompts: PCM WAV of any common rate, mono or stereo, made ready for the phone once.

Files are read with the standard ``wave`` module (8/16/24/32-bit integer PCM), mixed down to mono
and converted to 16-bit with ``audioop``, then resampled to 8 kHz with libsoxr. A dialplan's audio
prompts are loaded when the dialplan is loaded (:class:`AudioPromptStore`), never per call.
"""

from __future__ import annotations

# The standard library's audioop up to 3.12; the audioop-lts package provides the same module on 3.13+.
import audioop
import wave
from pathlib import Path

from voicebot.tts.base import PROMPT_SAMPLE_RATE_HZ, PcmAudio, resample_pcm16
from voicebot.tts.errors import AudioFileError

MAX_PROMPT_DURATION_S = 600.0


def load_wav(path: Path) -> PcmAudio:
    """Read ``path`` and return it as 8 kHz 16-bit mono PCM."""
    try:
        with wave.open(str(path), "rb") as w:
            channels = w.getnchannels()
            width_bytes = w.getsampwidth()
            rate_hz = w.getframerate()
            frame_count = w.getnframes()
            if rate_hz <= 0 or frame_count / rate_hz > MAX_PROMPT_DURATION_S:
                raise AudioFileError(
                    f"{path}: {frame_count} frames at {rate_hz} Hz is not a prompt "
                    f"(limit {MAX_PROMPT_DURATION_S:.0f} s)"
                )
            frames = w.readframes(frame_count)
    except FileNotFoundError:
        raise AudioFileError(f"{path}: audio prompt file not found") from None
    except (wave.Error, EOFError) as exc:
        raise AudioFileError(f"{path}: not a PCM WAV file ({exc}); convert it with e.g. "
                             f"'sox in.mp3 -b 16 out.wav'") from None
    except OSError as exc:
        raise AudioFileError(f"{path}: cannot read audio prompt ({exc.strerror})") from None
    if channels not in (1, 2):
        raise AudioFileError(f"{path}: {channels} channels; audio prompts must be mono or stereo")
    if width_bytes not in (1, 2, 3, 4):
        raise AudioFileError(f"{path}: {8 * width_bytes}-bit samples are not supported")
    if width_bytes == 1:
        # 8-bit WAV is unsigned (offset binary); audioop works on signed samples.
        frames = audioop.bias(frames, 1, -128)
    if channels == 2:
        frames = audioop.tomono(frames, width_bytes, 0.5, 0.5)
    if width_bytes != 2:
        frames = audioop.lin2lin(frames, width_bytes, 2)
    return PcmAudio(resample_pcm16(frames, rate_hz, PROMPT_SAMPLE_RATE_HZ))


class AudioPromptStore:
    """Audio-file prompts loaded once and shared by every call that plays them."""

    def __init__(self) -> None:
        self._audio: dict[Path, PcmAudio] = {}

    def load(self, path: Path) -> PcmAudio:
        key = path.resolve()
        audio = self._audio.get(key)
        if audio is None:
            audio = load_wav(key)
            self._audio[key] = audio
        return audio

    def get(self, path: Path) -> PcmAudio:
        """A prompt loaded before; a missing one is a programming error (load at dialplan load)."""
        try:
            return self._audio[path.resolve()]
        except KeyError:
            raise AudioFileError(f"{path}: audio prompt was not loaded with its dialplan") from None

    def __len__(self) -> int:
        return len(self._audio)
