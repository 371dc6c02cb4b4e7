"""The whole-call fixtures (TTS and speech-pcap caches) of tests/e2e, for the campaign e2e test."""

from tests.e2e.conftest import pcap_cache, tts_cache

__all__ = ["pcap_cache", "tts_cache"]
