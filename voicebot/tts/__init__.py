"""Prompt synthesis: the :class:`PromptSynthesizer` seam, espeak-ng, an on-disk cache, WAV prompts."""

from voicebot.tts.audio import AudioPromptStore, load_wav
from voicebot.tts.base import PROMPT_SAMPLE_RATE_HZ, PcmAudio, PromptSynthesizer, resample_pcm16
from voicebot.tts.cache import CachingSynthesizer, default_cache_dir
from voicebot.tts.errors import AudioFileError, SynthesisError, TtsError
from voicebot.tts.espeak import EspeakSynthesizer

__all__ = [
    "PROMPT_SAMPLE_RATE_HZ",
    "AudioFileError",
    "AudioPromptStore",
    "CachingSynthesizer",
    "EspeakSynthesizer",
    "PcmAudio",
    "PromptSynthesizer",
    "SynthesisError",
    "TtsError",
    "default_cache_dir",
    "load_wav",
    "resample_pcm16",
]
