"""Fixtures for the call-pipeline tests: one real recognition engine per test session, and a
started :class:`~voicebot.app.App` on 127.0.0.1 with ephemeral SIP and RTP ports."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from voicebot.app import App
from voicebot.call.outcome import CallOutcome
from voicebot.config import Config, HostPort, PortRange, load_config

REPO = Path(__file__).resolve().parents[2]
TRANSFER_TARGET = "sip:agent@127.0.0.1:5099"


@pytest.fixture(scope="session")
def engine() -> Any:
    """Whisper base, loaded once for every test here that needs the real recognizer."""
    from voicebot.stt.model import load_engine

    return load_engine("base", workers=2)


@pytest.fixture(scope="session")
def tts_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tts-cache")


def app_config(tmp_path: Path, tts_cache: Path, *, dialplan: str = "dialplans/demo.yaml",
               env: dict[str, str] | None = None, **overrides: str) -> Config:
    values = {"dialog.dialplan": str(REPO / dialplan), "dialog.transfer_target": TRANSFER_TARGET,
              "records.path": str(tmp_path / "calls.db"), "tts.cache_dir": str(tts_cache)}
    values.update(overrides)
    config = load_config(None, env=env or {}, overrides=values)
    # Ephemeral SIP and RTP ports (the config file format wants real ones; tests need port 0).
    return dataclasses.replace(
        config, sip=dataclasses.replace(config.sip, listen=HostPort("127.0.0.1", 0)),
        rtp=dataclasses.replace(config.rtp, ports=PortRange(0, 0)))


@pytest.fixture
def make_app(tmp_path: Path, tts_cache: Path, engine: Any) -> Callable[..., App]:
    def make(**kwargs: Any) -> App:
        dialplan = kwargs.pop("dialplan", "dialplans/demo.yaml")
        overrides = kwargs.pop("overrides", {})
        env = kwargs.pop("env", None)
        config = app_config(tmp_path, tts_cache, dialplan=dialplan, env=env, **overrides)
        return App(config, engine=engine, **kwargs)

    return make


@pytest.fixture
async def app(make_app: Callable[..., App]) -> AsyncIterator[App]:
    async with make_app() as running:
        yield running


def sip_address(app: App) -> tuple[str, int]:
    return app.telephony.sip_address


async def wait_outcomes(app: App, count: int, timeout_s: float = 20.0) -> list[CallOutcome]:
    """The first ``count`` finished calls (the record is complete once a call's outcome is in)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(app.outcomes) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{len(app.outcomes)} of {count} calls ended within {timeout_s} s")
        await asyncio.sleep(0.05)
    return app.outcomes[:count]
