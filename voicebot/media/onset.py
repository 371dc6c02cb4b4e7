"""Speech onset for barge-in, and trimming a prompt's silent edges: energy and VAD on 8 kHz PCM.

Both are pure functions of the samples (sans-IO: time comes in as ``now_s``). ``media`` is a leaf:
nothing here imports the protocol packages.
"""

from __future__ import annotations

import audioop
from collections import deque

from voicebot.media.frames import BYTES_PER_FRAME, FRAME_MS, SAMPLE_RATE_HZ, SAMPLE_WIDTH_BYTES

SILENCE_RMS = 300  # below this a 10 ms window counts as silence (about -40 dBFS)
KEEP_LEAD_MS = 10
KEEP_TAIL_MS = 120


class SpeechOnsetDetector:
    """Decides from 20 ms frames that the caller started speaking (for barge-in), sans-IO.

    A frame counts as speech when webrtcvad (mode 3, the strictest) says so and it is louder than
    ``min_rms``; speech has started when ``need_frames`` of the last ``window_frames`` frames were
    speech. The onset reported is the time of the first speech frame in that window, so the
    barge-in latency is measured from when the caller started, not from when we were sure. The
    recognizer's first non-empty partial barges in too; this only makes it faster (a partial
    needs ~500 ms of speech plus a decode).
    """

    def __init__(self, *, need_frames: int = 8, window_frames: int = 10, min_rms: int = 500) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(3)
        self.need_frames = need_frames
        self.window_frames = window_frames
        self.min_rms = min_rms
        self._window: deque[tuple[bool, float]] = deque(maxlen=window_frames)

    def reset(self) -> None:
        self._window.clear()

    def feed(self, pcm16: bytes, now_s: float) -> float | None:
        """Feed one 20 ms frame that ended at ``now_s``; returns the onset time once speech started."""
        if len(pcm16) != BYTES_PER_FRAME:
            return None
        voiced = (audioop.rms(pcm16, SAMPLE_WIDTH_BYTES) >= self.min_rms
                  and self._vad.is_speech(pcm16, SAMPLE_RATE_HZ))
        self._window.append((voiced, now_s - FRAME_MS / 1000))
        if sum(v for v, _ in self._window) < self.need_frames:
            return None
        onset = next(t for v, t in self._window if v)
        self._window.clear()
        return onset


def trim_silence(pcm16: bytes, *, threshold_rms: int = SILENCE_RMS, keep_lead_ms: int = KEEP_LEAD_MS,
                 keep_tail_ms: int = KEEP_TAIL_MS) -> bytes:
    """Cut a prompt's leading and trailing silence down to ``keep_*_ms``.

    espeak-ng starts a prompt with 40-100 ms of silence and ends it with ~350 ms: the first would
    be added to every reaction time, the second delays whatever follows the prompt (the listening
    timer, a transfer, the BYE). All-silent audio is returned as it is.
    """
    window = SAMPLE_RATE_HZ * SAMPLE_WIDTH_BYTES // 100  # 10 ms of 16-bit samples
    loud = [i for i in range(0, len(pcm16), window)
            if audioop.rms(pcm16[i:i + window], SAMPLE_WIDTH_BYTES) >= threshold_rms]
    if not loud:
        return pcm16
    start = max(0, loud[0] - keep_lead_ms * window // 10)
    end = min(len(pcm16), loud[-1] + window + keep_tail_ms * window // 10)
    return pcm16[start:end]


__all__ = ["KEEP_LEAD_MS", "KEEP_TAIL_MS", "SILENCE_RMS", "SpeechOnsetDetector", "trim_silence"]
