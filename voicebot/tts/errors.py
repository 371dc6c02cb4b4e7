"""Errors of prompt synthesis and audio-file prompts."""

from __future__ import annotations

from voicebot.errors import VoicebotError


class TtsError(VoicebotError):
    """Prompt audio could not be produced."""


class SynthesisError(TtsError):
    """The speech engine failed; the message carries its exit status and stderr."""


class AudioFileError(TtsError):
    """An audio-file prompt is missing or not a readable PCM WAV file; the message names the file."""


class VoiceUnavailableError(TtsError):
    """The requested voice is not installed, does not load, or its files fail their SHA-256 check."""


class VoiceSpecError(TtsError):
    """A voice spec (``engine:voice``) is malformed or names an unknown engine; the message quotes it."""
