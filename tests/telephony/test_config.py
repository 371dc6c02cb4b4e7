"""Pure parts of the telephony API: the advertised address and result helpers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.telephony.sipp import Play, uac_scenario
from voicebot.telephony import LegEnded, TelephonyConfig, TransferResult

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("sip_host", "rtp_host", "advertised", "expected"),
    [
        ("127.0.0.1", "127.0.0.1", None, "127.0.0.1"),
        ("0.0.0.0", "10.0.0.7", None, "10.0.0.7"),  # a wildcard bind advertises the RTP address
        ("0.0.0.0", "0.0.0.0", None, "127.0.0.1"),
        ("0.0.0.0", "0.0.0.0", "203.0.113.7", "203.0.113.7"),  # behind NAT: the configured one
        ("10.0.0.5", "10.0.0.6", None, "10.0.0.5"),
    ],
)
def test_public_host(sip_host: str, rtp_host: str, advertised: str | None, expected: str) -> None:
    config = TelephonyConfig(sip_host=sip_host, rtp_host=rtp_host, advertised_host=advertised)
    assert config.public_host == expected


def test_config_and_events_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TelephonyConfig().max_calls = 5  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        LegEnded("bye", "remote").cause = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("status", "succeeded"), [(200, True), (202, True), (486, False), (603, False)])
def test_transfer_result_succeeded_is_2xx(status: int, succeeded: bool) -> None:
    assert TransferResult(status, "x").succeeded is succeeded


def test_checked_in_manual_scenario_is_current() -> None:
    """tests/telephony/scenarios/uac_speech.xml (for calling a running voicebot by hand, see
    docs/telephony.md) is exactly what the test generator writes."""
    scenario = Path(__file__).parent / "scenarios" / "uac_speech.xml"
    assert scenario.read_text() == uac_scenario([Play(Path("speech.pcap"), 20000)])
