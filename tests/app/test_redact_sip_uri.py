"""A SIP URI's password never reaches a log line or an error message (``app.registering`` logs
``[sip] registrar``, which may carry one: RFC 3261 §19.1.1 deprecates it, configs still have it)."""

from __future__ import annotations

import pytest

from voicebot.app import redact_sip_uri

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("uri", "shown"), [
    ("sip:100:secret@pbx", "sip:100:***@pbx"),
    ("sips:alice:s3cr3t@pbx.test:5061;transport=tls", "sips:alice:***@pbx.test:5061;transport=tls"),
    ("SIP:100:secret@10.0.0.1", "SIP:100:***@10.0.0.1"),
    ("sip:100:p@ss@pbx", "sip:100:***@pbx"),  # an '@' in the password hides it all the same
    ("sip:100:@pbx", "sip:100:***@pbx"),
    ("100:secret@pbx", "100:***@pbx"),  # no scheme (refused by the config check, shown in its message)
    # nothing to hide: as given
    ("sip:pbx.example.com", "sip:pbx.example.com"),
    ("sip:pbx.example.com:5060;transport=udp", "sip:pbx.example.com:5060;transport=udp"),
    ("sip:100@pbx:5060", "sip:100@pbx:5060"),
    ("sip:[2001:db8::1]:5060", "sip:[2001:db8::1]:5060"),
    ("sip:100@[2001:db8::1]:5060", "sip:100@[2001:db8::1]:5060"),
    ("", ""),
])
def test_redact_sip_uri(uri: str, shown: str) -> None:
    assert redact_sip_uri(uri) == shown
