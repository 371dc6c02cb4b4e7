"""Prompt synthesis: the :class:`PromptSynthesizer` seam, voices (Piper, espeak-ng, SpeechKit) behind
:func:`make_synthesizer`, an on-disk cache, WAV prompts. Piper and SpeechKit load lazily."""

from voicebot.tts.audio import AudioPromptStore, load_wav
from voicebot.tts.base import PROMPT_SAMPLE_RATE_HZ, PcmAudio, PromptSynthesizer, resample_pcm16
from voicebot.tts.cache import CacheCounted, CachingSynthesizer, PromptCache, default_cache_dir
from voicebot.tts.errors import (
    AudioFileError,
    SynthesisError,
    TtsError,
    VoiceSpecError,
    VoiceUnavailableError,
)
from voicebot.tts.espeak import EspeakSynthesizer
from voicebot.tts.speechkit import SpeechKitTtsSettings
from voicebot.tts.voices import (
    DEFAULT_VOICE_SPEC,
    VoiceRouter,
    VoiceSpec,
    make_synthesizer,
    parse_voice_spec,
)

__all__ = [
    "DEFAULT_VOICE_SPEC",
    "PROMPT_SAMPLE_RATE_HZ",
    "AudioFileError",
    "AudioPromptStore",
    "CacheCounted",
    "CachingSynthesizer",
    "EspeakSynthesizer",
    "PcmAudio",
    "PromptCache",
    "PromptSynthesizer",
    "SpeechKitTtsSettings",
    "SynthesisError",
    "TtsError",
    "VoiceRouter",
    "VoiceSpec",
    "VoiceSpecError",
    "VoiceUnavailableError",
    "default_cache_dir",
    "load_wav",
    "make_synthesizer",
    "parse_voice_spec",
    "resample_pcm16",
]
