"""Fixtures for the telephony tests: a started Telephony on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voicebot.telephony import Telephony, TelephonyConfig


def config(**overrides: object) -> TelephonyConfig:
    base: dict[str, object] = {"sip_host": "127.0.0.1", "sip_port": 0, "rtp_host": "127.0.0.1",
                               "rtp_port_min": 0, "rtp_port_max": 0}
    base.update(overrides)
    return TelephonyConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
async def telephony() -> AsyncIterator[Telephony]:
    async with Telephony(config()) as tel:
        yield tel
