"""voicebot.net: the one is_loopback, shared by the recognizer's listen check and the CLI."""

from __future__ import annotations

import pytest

from voicebot.net import is_loopback

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("10.0.0.1", False), ("example.com", False), ("", False),
    ("[10.0.0.1]", False), ("localhost.example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
