"""Dialog state (RFC 3261 §12): route sets, targets, CSeq, loose and strict routing."""

from __future__ import annotations

import pytest

from voicebot.sip.dialog import Dialog
from voicebot.sip.headers import Headers
from voicebot.sip.message import Request, make_response

pytestmark = pytest.mark.unit


def invite() -> Request:
    from voicebot.sip.uri import SipUri

    return Request(
        "INVITE",
        SipUri(host="10.0.0.2", user="bot"),
        Headers.of(
            ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"),
            ("Record-Route", "<sip:p1.example;lr>, <sip:p2.example;lr>"),
            ("From", '"Alice" <sip:alice@10.0.0.1>;tag=a'),
            ("To", "<sip:bot@10.0.0.2>"),
            ("Call-ID", "d1"),
            ("CSeq", "7 INVITE"),
            ("Contact", "<sip:alice@10.0.0.1:5070>"),
        ),
    )


def test_uas_dialog_keeps_record_route_order_and_builds_bye() -> None:
    dialog = Dialog.as_uas(invite(), local_tag="b", local_cseq=100)
    assert dialog.route_set == ("<sip:p1.example;lr>", "<sip:p2.example;lr>")
    assert dialog.remote_target.serialize() == "sip:alice@10.0.0.1:5070"
    assert (dialog.remote_tag, dialog.remote_cseq) == ("a", 7)
    bye = dialog.create_request(
        "BYE", via="SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKx", contact="<sip:bot@10.0.0.2>"
    )
    assert bye.uri.serialize() == "sip:alice@10.0.0.1:5070"  # loose routing: the target stays
    assert bye.headers.get_all("Route") == ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
    assert bye.from_addr.tag == "b" and bye.to_addr.tag == "a"
    assert bye.to_addr.display_name == "Alice"
    assert bye.cseq.seq == 101
    again = dialog.create_request("INFO", via="v", contact="c")
    assert again.cseq.seq == 102


def test_uac_dialog_reverses_record_route_and_takes_target_from_2xx() -> None:
    request = invite()
    ok = make_response(request, 200, to_tag="z", extra=(("Contact", "<sip:bot@10.0.0.2:5099>"),))
    dialog = Dialog.as_uac(request, ok)
    assert dialog.route_set == ("<sip:p2.example;lr>", "<sip:p1.example;lr>")
    assert dialog.remote_target.serialize() == "sip:bot@10.0.0.2:5099"
    assert (dialog.local_tag, dialog.remote_tag, dialog.local_cseq) == ("a", "z", 7)
    ack = dialog.create_request("ACK", via="v", contact="c", cseq=7)
    assert ack.cseq.seq == 7 and ack.cseq.method == "ACK" and dialog.local_cseq == 7
    refresh = make_response(request, 200, to_tag="z", extra=(("Contact", "<sip:bot@10.9.9.9>"),))
    dialog.update_target(refresh)
    assert dialog.remote_target.serialize() == "sip:bot@10.9.9.9"


def test_strict_router_goes_in_the_request_uri() -> None:
    request = invite().with_headers(invite().headers.replaced("Record-Route", ["<sip:strict.example>"]))
    dialog = Dialog.as_uas(request, local_tag="b", local_cseq=1)
    bye = dialog.create_request("BYE", via="v", contact="c")
    # RFC 3261 §12.2.1.1: a route without ;lr is a strict router (RFC 2543)
    assert bye.uri.serialize() == "sip:strict.example"
    assert bye.headers.get_all("Route") == ["<sip:alice@10.0.0.1:5070>"]
