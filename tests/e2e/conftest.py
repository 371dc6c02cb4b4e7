"""Fixtures for whole-call tests: one ``voicebot run`` per module, speech pcaps and TTS cached per session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Voicebot, start_voicebot

TRANSFER_TARGET = "sip:operator@127.0.0.1:5099"

_TOOLS = ("sipp", "espeak-ng", "sox", "dumpcap")
missing_tools = [tool for tool in _TOOLS if shutil.which(tool) is None]
needs_tools = pytest.mark.skipif(bool(missing_tools), reason=f"{missing_tools} missing: run scripts/setup")


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Prompts synthesized once for every robot the session starts."""
    return tmp_path_factory.mktemp("tts-cache")


@pytest.fixture(scope="session")
def pcap_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Caller speech pcaps, rendered once per distinct script."""
    return tmp_path_factory.mktemp("speech-pcaps")


@pytest.fixture(scope="module")
def demo_bot(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[Voicebot]:
    """``voicebot run`` with dialplans/demo.yaml and the embedded recognizer, shared by a module's calls."""
    bot = start_voicebot(tmp_path_factory.mktemp("demo-bot"), tts_cache=tts_cache,
                         transfer_target=TRANSFER_TARGET)
    try:
        yield bot
    finally:
        bot.stop()
