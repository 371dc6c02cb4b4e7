"""The pure mapping from a SIP call's ending (and the reason we hung up with) to the leg's cause."""

from __future__ import annotations

import pytest

from voicebot.telephony.causes import SIP_CAUSES, Direction, is_retryable, leg_end_cause

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("sip_cause", "local_cause", "direction", "expected"), [
    # The peer ended it.
    ("remote_bye", None, "inbound", ("bye", "remote")),
    ("remote_bye", "shutdown", "inbound", ("bye", "remote")),  # its BYE crossed ours: it was first
    ("cancelled", None, "inbound", ("cancelled", "remote")),
    ("ack-timeout", None, "inbound", ("ack-timeout", "remote")),
    ("failed", None, "outbound", ("failed", "remote")),
    ("failed", "timeout", "outbound", ("failed", "remote")),
    # We ended it: a plain hang-up, or with the reason we gave.
    ("local_bye", None, "inbound", ("bye", "local")),
    ("local_bye", "rtp-timeout", "inbound", ("rtp-timeout", "local")),
    ("local_bye", "shutdown", "outbound", ("shutdown", "local")),
    ("local_cancel", None, "outbound", ("cancelled", "local")),
    ("local_cancel", "timeout", "outbound", ("timeout", "local")),
    ("local_cancel", "cancelled", "outbound", ("cancelled", "local")),
    ("rejected", None, "inbound", ("rejected", "local")),
    ("rejected", "rejected", "inbound", ("rejected", "local")),
    ("rejected", "shutdown", "inbound", ("shutdown", "local")),
    # No answer: the application's on an inbound call, the peer's on an outbound one.
    ("timeout", None, "inbound", ("timeout", "local")),
    ("timeout", None, "outbound", ("timeout", "remote")),
    # A cause the SIP layer adds later passes through as the peer's.
    ("transport_error", None, "inbound", ("transport_error", "remote")),
])
def test_leg_end_cause(sip_cause: str, local_cause: str | None, direction: Direction,
                       expected: tuple[str, str]) -> None:
    assert leg_end_cause(sip_cause, local_cause=local_cause, direction=direction) == expected


def test_every_sip_cause_in_the_table_maps_to_a_dashed_leg_cause() -> None:
    for sip_cause in SIP_CAUSES:
        cause, _side = leg_end_cause(sip_cause, local_cause=None, direction="inbound")
        assert "_" not in cause, cause


@pytest.mark.parametrize(("status", "retryable"), [
    (408, True), (480, True), (486, True), (503, True),
    (None, False), (403, False), (404, False), (603, False),
])
def test_retryable_final_statuses(status: int | None, retryable: bool) -> None:
    assert is_retryable(status) is retryable
