"""An outbound call that rings longer than Timer B (64*T1 = 32 s), pumped in memory end to end.

This is the user-visible face of the Proceeding-state Timer B bug pinned at the transaction level in
tests/sip/test_transaction_timers.py: the caller side gives up on a ringing call after 32 s.
"""

from __future__ import annotations

import pytest

from tests.sip.test_useragent import call_in, make_net
from voicebot.sip.events import CallEstablished, CallProgressed, CallTerminated

pytestmark = pytest.mark.unit


def test_call_ringing_for_twenty_seconds_is_answered() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    net.advance(20.0, step=1.0)
    assert not [e for e in net.a_events if isinstance(e, CallTerminated)]
    net.b.answer(call_id, net.now, local_rtp_port=40000)
    net.pump()
    assert [type(e) for e in net.a_events] == [CallProgressed, CallEstablished]


def test_call_ringing_for_forty_seconds_is_still_answered() -> None:
    net = make_net()
    call_id, _ = call_in(net)
    net.b.ringing(call_id, net.now)
    net.pump()
    net.advance(40.0, step=1.0)
    assert not [e for e in net.a_events if isinstance(e, CallTerminated)]
    net.b.answer(call_id, net.now, local_rtp_port=40000)
    net.pump()
    assert [type(e) for e in net.a_events] == [CallProgressed, CallEstablished]
